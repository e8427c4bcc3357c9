#include "cache/s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* One request's reply: a 2xx body goes to out (GET), anything else is
 * kept, bounded, to say why. */
struct reply {
	FILE *out;
	long status;
	char body[S3_REPLY_MAX];
	size_t len;
	char etag[S3_ETAG_MAX];
	bool write_failed;
};

/* A part of the file being uploaded: [off, off + left). */
struct source {
	FILE *f;
	curl_off_t left;
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = sz * n, room;

	if (r->out && r->status >= 200 && r->status < 300) {
		if (fwrite(p, 1, len, r->out) != len) {
			r->write_failed = true;
			return 0;
		}
		return len;
	}
	room = sizeof(r->body) - 1 - r->len;
	if (len < room)
		room = len;
	memcpy(r->body + r->len, p, room);
	r->len += room;
	r->body[r->len] = '\0';
	return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = sz * n;

	if (len > 5 && !strncmp(p, "HTTP/", 5)) {
		/* A new response (after 100 Continue, say): its status. */
		const char *sp = memchr(p, ' ', len);

		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
	} else if (len > 5 && !strncasecmp(p, "etag:", 5)) {
		size_t i = 5, j = 0;

		while (i < len && (p[i] == ' ' || p[i] == '\t'))
			i++;
		while (i < len && p[i] != '\r' && p[i] != '\n' && j + 1 < sizeof(r->etag))
			r->etag[j++] = p[i++];
		r->etag[j] = '\0';
	}
	return len;
}

static size_t on_read(char *p, size_t sz, size_t n, void *arg)
{
	struct source *s = arg;
	size_t want = sz * n, got;

	if ((curl_off_t)want > s->left)
		want = (size_t)s->left;
	if (!want)
		return 0;
	got = fread(p, 1, want, s->f);
	if (got == 0)
		return CURL_READFUNC_ABORT; /* the file shrank under us */
	s->left -= (curl_off_t)got;
	return got;
}

/* Percent-encode an object key for the URL, keeping '/' (S3 signs the
 * path as sent, so this is also the canonical URI). */
static bool encode_key(const char *key, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t j = 0;

	for (; *key; key++) {
		unsigned char ch = (unsigned char)*key;

		if (j + 4 > size)
			return false;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    strchr("-_.~/", ch)) {
			out[j++] = (char)ch;
		} else {
			out[j++] = '%';
			out[j++] = hex[ch >> 4];
			out[j++] = hex[ch & 15];
		}
	}
	out[j] = '\0';
	return true;
}

static void classify(const struct reply *r, CURLcode cc, enum s3_fail *why)
{
	if (!why)
		return;
	if (cc != CURLE_OK || r->status >= 500 || r->status == 0)
		*why = S3_DOWN;
	else if (r->status == 404)
		*why = S3_MISSING;
	else
		*why = S3_REFUSED;
}

/* Say what the server or the connection said. */
static enum kiln_rc failed(const struct s3_client *c, const char *what, const struct reply *r, CURLcode cc,
			   const char *errbuf, struct kiln_err *e)
{
	char code[128] = "", msg[256] = "";

	if (cc != CURLE_OK && !(r->write_failed))
		return kiln_fail(e, KILN_E_IO, "S3 %s %s: %s", c->server, what,
				 errbuf[0] ? errbuf : curl_easy_strerror(cc));
	if (r->write_failed)
		return kiln_fail(e, KILN_E_IO, "S3 %s %s: writing the download: %s", c->server, what, strerror(errno));
	s3_xml_value(r->body, r->len, "Code", code, sizeof(code));
	s3_xml_value(r->body, r->len, "Message", msg, sizeof(msg));
	if (r->status == 404)
		return kiln_fail(e, KILN_E_NOTFOUND, "S3 %s %s: not found%s%s", c->server, what, code[0] ? ": " : "",
				 code);
	if (r->status == 401 || r->status == 403)
		return kiln_fail(e, KILN_E_INVALID, "S3 %s %s: credentials refused (HTTP %ld %s%s%s)", c->server, what,
				 r->status, code[0] ? code : "Forbidden", msg[0] ? ": " : "", msg);
	return kiln_fail(e, KILN_E_IO, "S3 %s %s: HTTP %ld%s%s%s%s", c->server, what, r->status, code[0] ? " " : "",
			 code, msg[0] ? ": " : "", msg);
}

/* One signed request: method on key (?query), the body from src (when not
 * NULL), the reply into r. */
static CURLcode request(const struct s3_client *c, const char *method, const char *key, const char *query,
			struct source *src, curl_off_t src_len, const char *post, const char *if_none_match,
			struct reply *r, char *errbuf)
{
	char ekey[2048], url[4096], sigv4[160], auth[1024], tok[4200], inm[S3_ETAG_MAX + 32];
	struct curl_slist *h = NULL;
	CURLcode cc;
	CURL *cu;

	errbuf[0] = '\0';
	r->status = 0;
	r->len = 0;
	r->body[0] = '\0';
	r->etag[0] = '\0';
	if (!encode_key(key, ekey, sizeof(ekey)) ||
	    (size_t)snprintf(url, sizeof(url), "%s://%s/%s/%s%s%s", c->insecure ? "http" : "https", c->server, c->bucket,
			     ekey, query ? "?" : "", query ? query : "") >= sizeof(url)) {
		snprintf(errbuf, CURL_ERROR_SIZE, "the object name is too long");
		return CURLE_URL_MALFORMAT;
	}
	cu = curl_easy_init();
	if (!cu)
		return CURLE_OUT_OF_MEMORY;
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", c->region && *c->region ? c->region : "us-east-1");
	snprintf(auth, sizeof(auth), "%s:%s", c->access_key ? c->access_key : "", c->secret_key ? c->secret_key : "");
	/* S3 wants the payload's hash signed; streaming bodies are not hashed. */
	h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	/* No "Expect:" to turn 100-continue off: libcurl 7.88 then signs a
	 * header it does not send (a real S3 says SignatureDoesNotMatch). */
	if (c->session_token && *c->session_token) {
		snprintf(tok, sizeof(tok), "x-amz-security-token: %s", c->session_token);
		h = curl_slist_append(h, tok);
	}
	if (post)
		h = curl_slist_append(h, "Content-Type: application/xml");
	if (if_none_match && *if_none_match) {
		snprintf(inm, sizeof(inm), "If-None-Match: %s", if_none_match);
		h = curl_slist_append(h, inm);
	}
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(cu, CURLOPT_USERPWD, auth);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s > 0 ? c->connect_timeout_s : 10L);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT, c->timeout_s > 0 ? c->timeout_s : 3600L);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(cu, CURLOPT_HEADERDATA, r);
	if (src) {
		curl_easy_setopt(cu, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(cu, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(cu, CURLOPT_READDATA, src);
		curl_easy_setopt(cu, CURLOPT_INFILESIZE_LARGE, src_len);
	} else if (post) {
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, post);
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, "");
	}
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(cu, CURLOPT_NOBODY, 1L); /* no body to wait for */
	else if (strcmp(method, "GET") && !(src && !strcmp(method, "PUT")))
		curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, method);
	cc = curl_easy_perform(cu);
	if (cc == CURLE_OK)
		curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(cu);
	curl_slist_free_all(h);
	return cc;
}

static bool ok(const struct reply *r, CURLcode cc)
{
	return cc == CURLE_OK && r->status >= 200 && r->status < 300 && !r->write_failed;
}

enum kiln_rc s3_get(const struct s3_client *c, const char *key, const char *dst, const char *if_none_match,
		    char *etag, enum s3_fail *why, struct kiln_err *e)
{
	char errbuf[CURL_ERROR_SIZE];
	struct reply *r = calloc(1, sizeof(*r));
	enum kiln_rc rc = KILN_OK;
	CURLcode cc;

	if (why)
		*why = S3_OK;
	if (!r)
		return kiln_fail(e, KILN_E_NOMEM, "S3: out of memory");
	r->out = fopen(dst, "we");
	if (!r->out) {
		if (why)
			*why = S3_LOCAL;
		rc = kiln_fail_errno(e, "S3 download: creating %s", dst);
		goto out;
	}
	cc = request(c, "GET", key, NULL, NULL, 0, NULL, if_none_match, r, errbuf);
	if (fclose(r->out) != 0 && ok(r, cc))
		r->write_failed = true;
	r->out = NULL;
	if (etag)
		snprintf(etag, S3_ETAG_MAX, "%s", r->etag);
	if (cc == CURLE_OK && r->status == 304) {
		if (why)
			*why = S3_UNCHANGED;
		unlink(dst);
	} else if (!ok(r, cc)) {
		classify(r, cc, why);
		if (r->write_failed && why)
			*why = S3_LOCAL;
		rc = failed(c, key, r, cc, errbuf, e);
		unlink(dst);
	}
out:
	free(r);
	return rc;
}

enum kiln_rc s3_head_bucket(const struct s3_client *c, enum s3_fail *why, struct kiln_err *e)
{
	char errbuf[CURL_ERROR_SIZE];
	struct reply *r = calloc(1, sizeof(*r));
	enum kiln_rc rc = KILN_OK;
	CURLcode cc;

	if (why)
		*why = S3_OK;
	if (!r)
		return kiln_fail(e, KILN_E_NOMEM, "S3: out of memory");
	cc = request(c, "HEAD", "", NULL, NULL, 0, NULL, NULL, r, errbuf);
	if (!ok(r, cc)) {
		classify(r, cc, why);
		rc = failed(c, "bucket", r, cc, errbuf, e);
	}
	free(r);
	return rc;
}

static enum kiln_rc put_part(const struct s3_client *c, const char *key, const char *query, FILE *f, off_t off,
			     curl_off_t len, struct reply *r, enum s3_fail *why, struct kiln_err *e)
{
	char errbuf[CURL_ERROR_SIZE];
	struct source s = { f, len };
	CURLcode cc;

	if (fseeko(f, off, SEEK_SET) < 0) {
		if (why)
			*why = S3_LOCAL;
		return kiln_fail_errno(e, "S3 upload: seeking");
	}
	cc = request(c, "PUT", key, query, &s, len, NULL, NULL, r, errbuf);
	if (!ok(r, cc)) {
		classify(r, cc, why);
		return failed(c, key, r, cc, errbuf, e);
	}
	return KILN_OK;
}

static enum kiln_rc multipart(const struct s3_client *c, const char *key, FILE *f, off_t size, long part,
			      struct reply *r, char *etag, enum s3_fail *why, struct kiln_err *e)
{
	char errbuf[CURL_ERROR_SIZE], id[1024], query[1200], tag[256];
	size_t nparts = (size_t)((size + part - 1) / part), i, cap, len = 0;
	char *done = NULL;
	enum kiln_rc rc = KILN_OK;
	CURLcode cc;

	/* "uploads=": libcurl signs the query as written, S3 canonicalises
	 * the bare name to "uploads=". */
	cc = request(c, "POST", key, "uploads=", NULL, 0, NULL, NULL, r, errbuf);
	if (!ok(r, cc)) {
		classify(r, cc, why);
		return failed(c, key, r, cc, errbuf, e);
	}
	if (!s3_xml_value(r->body, r->len, "UploadId", id, sizeof(id)) || !id[0]) {
		if (why)
			*why = S3_DOWN;
		return kiln_fail(e, KILN_E_SYNTAX, "S3 %s %s: no UploadId in the reply to CreateMultipartUpload",
				 c->server, key);
	}
	/* <Part><PartNumber>n</PartNumber><ETag>...</ETag></Part> per part. */
	cap = 64 + nparts * (64 + sizeof(r->etag));
	done = malloc(cap);
	if (!done) {
		rc = kiln_fail(e, KILN_E_NOMEM, "S3: out of memory");
		goto abort;
	}
	len = (size_t)snprintf(done, cap, "<CompleteMultipartUpload>");
	for (i = 0; i < nparts; i++) {
		off_t off = (off_t)i * part;
		curl_off_t n = size - off < part ? size - off : part;

		/* Sorted by name, as the canonical query string is. */
		snprintf(query, sizeof(query), "partNumber=%zu&uploadId=%s", i + 1, id);
		if ((rc = put_part(c, key, query, f, off, n, r, why, e)))
			goto abort;
		if (!r->etag[0]) {
			if (why)
				*why = S3_DOWN;
			rc = kiln_fail(e, KILN_E_SYNTAX, "S3 %s %s: no ETag for part %zu", c->server, key, i + 1);
			goto abort;
		}
		len += (size_t)snprintf(done + len, cap - len, "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>",
					i + 1, r->etag);
	}
	snprintf(done + len, cap - len, "</CompleteMultipartUpload>");
	snprintf(query, sizeof(query), "uploadId=%s", id);
	cc = request(c, "POST", key, query, NULL, 0, done, NULL, r, errbuf);
	/* CompleteMultipartUpload may say 200 and still fail in its body. */
	if (ok(r, cc) && !s3_xml_value(r->body, r->len, "Code", tag, sizeof(tag))) {
		if (etag)
			s3_xml_value(r->body, r->len, "ETag", etag, S3_ETAG_MAX);
		goto out;
	}
	if (ok(r, cc))
		r->status = 500;
	classify(r, cc, why);
	rc = failed(c, key, r, cc, errbuf, e);
abort:
	/* Parts of an unfinished upload are billed until aborted. */
	snprintf(query, sizeof(query), "uploadId=%s", id);
	request(c, "DELETE", key, query, NULL, 0, NULL, NULL, r, errbuf);
out:
	free(done);
	return rc;
}

enum kiln_rc s3_put(const struct s3_client *c, const char *key, const char *src, char *etag, enum s3_fail *why,
		    struct kiln_err *e)
{
	struct reply *r = calloc(1, sizeof(*r));
	long part = c->part_size > 0 ? c->part_size : S3_PART_SIZE;
	enum kiln_rc rc = KILN_OK;
	struct stat st;
	FILE *f = NULL;

	if (why)
		*why = S3_OK;
	if (etag)
		etag[0] = '\0';
	if (!r)
		return kiln_fail(e, KILN_E_NOMEM, "S3: out of memory");
	f = fopen(src, "re");
	if (!f || fstat(fileno(f), &st) < 0) {
		if (why)
			*why = S3_LOCAL;
		rc = kiln_fail_errno(e, "S3 upload: reading %s", src);
		goto out;
	}
	while (st.st_size / part >= S3_MAX_PARTS)
		part *= 2;
	if (st.st_size <= part) {
		rc = put_part(c, key, NULL, f, 0, st.st_size, r, why, e);
		if (!rc && etag)
			snprintf(etag, S3_ETAG_MAX, "%s", r->etag);
	} else {
		rc = multipart(c, key, f, st.st_size, part, r, etag, why, e);
	}
out:
	if (f)
		fclose(f);
	free(r);
	return rc;
}

bool s3_xml_value(const char *xml, size_t len, const char *tag, char *out, size_t size)
{
	char open[80], close[82];
	size_t no, nc, i, j = 0, start = 0, end = 0;
	bool found = false;

	if (!size)
		return false;
	out[0] = '\0';
	no = (size_t)snprintf(open, sizeof(open), "<%s>", tag);
	nc = (size_t)snprintf(close, sizeof(close), "</%s>", tag);
	if (no >= sizeof(open) || nc >= sizeof(close))
		return false;
	for (i = 0; i + no <= len; i++)
		if (!memcmp(xml + i, open, no)) {
			start = i + no;
			found = true;
			break;
		}
	if (!found)
		return false;
	found = false;
	for (i = start; i + nc <= len; i++)
		if (!memcmp(xml + i, close, nc)) {
			end = i;
			found = true;
			break;
		}
	if (!found)
		return false;
	for (i = start; i < end; i++) {
		static const struct { const char *ent; char ch; } ents[] = {
			{ "&quot;", '"' }, { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&apos;", '\'' },
		};
		char ch = xml[i];
		size_t k;

		if (ch == '&')
			for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
				size_t n = strlen(ents[k].ent);

				if (end - i >= n && !memcmp(xml + i, ents[k].ent, n)) {
					ch = ents[k].ch;
					i += n - 1;
					break;
				}
			}
		if (j + 1 >= size) {
			out[0] = '\0';
			return false;
		}
		out[j++] = ch;
	}
	out[j] = '\0';
	return true;
}

/* A small IMDS request into buf (NUL-terminated, bounded). */
static enum kiln_rc imds(const char *base, const char *method, const char *path, const char *hdr, char *buf,
			 size_t size, struct kiln_err *e)
{
	char url[512], errbuf[CURL_ERROR_SIZE] = "";
	struct reply *r = calloc(1, sizeof(*r));
	struct curl_slist *h = NULL;
	enum kiln_rc rc = KILN_OK;
	CURLcode cc;
	CURL *cu;

	if (!r)
		return kiln_fail(e, KILN_E_NOMEM, "IMDS: out of memory");
	cu = curl_easy_init();
	if (!cu) {
		free(r);
		return kiln_fail(e, KILN_E_NOMEM, "IMDS: out of memory");
	}
	snprintf(url, sizeof(url), "%s%s", base, path);
	h = curl_slist_append(h, hdr);
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT, 5L);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, r);
	if (!strcmp(method, "PUT")) {
		curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, "");
	}
	cc = curl_easy_perform(cu);
	if (cc == CURLE_OK)
		curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &r->status);
	if (cc != CURLE_OK)
		rc = kiln_fail(e, KILN_E_IO, "IMDS %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	else if (r->status != 200)
		rc = kiln_fail(e, KILN_E_IO, "IMDS %s: HTTP %ld", url, r->status);
	else
		snprintf(buf, size, "%s", r->body);
	curl_slist_free_all(h);
	curl_easy_cleanup(cu);
	free(r);
	return rc;
}

enum kiln_rc s3_imds_credentials(const char *endpoint, char *access_key, char *secret_key, char *token,
				 struct kiln_err *e)
{
	const char *base = endpoint ? endpoint : "http://169.254.169.254";
	char session[256], hdr[300], role[256], path[400], *doc = malloc(S3_REPLY_MAX);
	const char *ak, *sk, *st;
	enum kiln_rc rc;
	json_error_t jerr;
	json_t *j = NULL;

	if (!doc)
		return kiln_fail(e, KILN_E_NOMEM, "IMDS: out of memory");
	if ((rc = imds(base, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 300", session,
		       sizeof(session), e)))
		goto out;
	session[strcspn(session, "\r\n")] = '\0';
	snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", session);
	if ((rc = imds(base, "GET", "/latest/meta-data/iam/security-credentials/", hdr, role, sizeof(role), e)))
		goto out;
	role[strcspn(role, "\r\n")] = '\0';
	if (!role[0] || strchr(role, '/')) {
		rc = kiln_fail(e, KILN_E_NOTFOUND, "IMDS: the instance has no IAM role");
		goto out;
	}
	snprintf(path, sizeof(path), "/latest/meta-data/iam/security-credentials/%s", role);
	if ((rc = imds(base, "GET", path, hdr, doc, S3_REPLY_MAX, e)))
		goto out;
	j = json_loads(doc, 0, &jerr);
	ak = json_string_value(json_object_get(j, "AccessKeyId"));
	sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	st = json_string_value(json_object_get(j, "Token"));
	if (!ak || !sk || strlen(ak) >= 256 || strlen(sk) >= 256 || (st && strlen(st) >= 4096)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "IMDS: role %s: no usable AccessKeyId/SecretAccessKey", role);
		goto out;
	}
	snprintf(access_key, 256, "%s", ak);
	snprintf(secret_key, 256, "%s", sk);
	snprintf(token, 4096, "%s", st ? st : "");
out:
	json_decref(j);
	free(doc);
	return rc;
}
