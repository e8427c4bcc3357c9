#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "lib/http.h"
#include "lib/paths.h"
#include "lib/sha256.h"
#include "oci/registry.h"

#define ERR_BODY_MAX 4096
#define TOKEN_MAX (64u << 10)
#define AUTH_HDR_MAX (TOKEN_MAX + 64)

struct oci_client {
	struct oci_ref ref;
	char base[600];        /* scheme://host/v2/path */
	char *username, *password, *ca_file;
	long timeout_s;
	int (*canceled)(void *arg);
	void *cancel_arg;
	char *auth;            /* "Authorization: ..." header line, or NULL */
};

/* One request's reply: status, headers kiln reads, and the body's sink. */
struct reply {
	int head;       /* HEAD: headers only */
	long status;
	char content_type[160];
	char digest[80];
	char www_auth[1200];
	long retry_after;
	/* memory sink */
	char *buf;
	size_t len, cap, max;
	int over;
	/* file sink: hashed and counted */
	int fd;
	EVP_MD_CTX *md;
	uint64_t written, limit;
	int werr;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted: the GitLab client's own call is harmless */
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

enum kiln_rc oci_client_new(const struct oci_ref *ref, const struct oci_registry_opts *opts,
			    struct oci_client **out, struct kiln_err *e)
{
	struct oci_client *c;

	pthread_once(&curl_once, curl_init_once);
	c = calloc(1, sizeof(*c));
	if (!c)
		return kiln_fail(e, KILN_E_NOMEM, "registry client: out of memory");
	c->ref = *ref;
	snprintf(c->base, sizeof(c->base), "%s://%s/v2/%s", opts && opts->insecure ? "http" : "https", ref->host,
		 ref->path);
	if (opts) {
		c->username = xstrdup(opts->username);
		c->password = xstrdup(opts->password);
		c->ca_file = xstrdup(opts->ca_file);
		c->timeout_s = opts->timeout_s;
		c->canceled = opts->canceled;
		c->cancel_arg = opts->cancel_arg;
	}
	if (c->timeout_s <= 0)
		c->timeout_s = 60;
	*out = c;
	return KILN_OK;
}

void oci_client_free(struct oci_client *c)
{
	if (!c)
		return;
	free(c->username);
	free(c->password);
	free(c->ca_file);
	free(c->auth);
	free(c);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t len = size * n, k;
	char line[1300];

	k = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
	memcpy(line, p, k);
	line[k] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (!strncmp(line, "HTTP/", 5)) {
		/* A new reply (redirect, 100): forget the last one's headers. */
		char *sp = strchr(line, ' ');

		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		r->content_type[0] = r->digest[0] = r->www_auth[0] = '\0';
		r->retry_after = -1;
		/* A redirect's own body is not part of what follows it. */
		r->len = 0;
		r->over = 0;
		if (r->buf)
			r->buf[0] = '\0';
	} else if (!strncasecmp(line, "Content-Type:", 13)) {
		snprintf(r->content_type, sizeof(r->content_type), "%s", line + 13 + strspn(line + 13, " \t"));
	} else if (!strncasecmp(line, "Docker-Content-Digest:", 22)) {
		snprintf(r->digest, sizeof(r->digest), "%s", line + 22 + strspn(line + 22, " \t"));
	} else if (!strncasecmp(line, "WWW-Authenticate:", 17) && !r->www_auth[0]) {
		snprintf(r->www_auth, sizeof(r->www_auth), "%s", line + 17 + strspn(line + 17, " \t"));
	} else if (!strncasecmp(line, "Retry-After:", 12)) {
		r->retry_after = http_retry_after_s(line + 12, 3600);
	}
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t len = size * n;

	if (r->status == 0 || r->status >= 300 || r->fd < 0) {
		/* Memory: the manifest, a token, or an error body (kept short). */
		size_t max = r->status >= 300 ? ERR_BODY_MAX : r->max;

		if (r->len + len > max) {
			r->over = 1;
			return r->status >= 300 ? len : 0;
		}
		if (r->len + len + 1 > r->cap) {
			size_t cap = r->cap ? r->cap : 16384;
			char *b;

			while (cap < r->len + len + 1)
				cap *= 2;
			b = realloc(r->buf, cap);
			if (!b)
				return 0;
			r->buf = b;
			r->cap = cap;
		}
		memcpy(r->buf + r->len, p, len);
		r->len += len;
		r->buf[r->len] = '\0';
		return len;
	}
	if (r->written + len > r->limit) {
		r->over = 1;
		return 0;
	}
	EVP_DigestUpdate(r->md, p, len);
	if (kiln_write_all(r->fd, p, len) != 0) {
		r->werr = errno;
		return 0;
	}
	r->written += len;
	return len;
}

static int is_canceled(const struct oci_client *c)
{
	return c->canceled && c->canceled(c->cancel_arg);
}

/* libcurl's progress callback: nonzero aborts the transfer. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return is_canceled(ud);
}

/* Forget the last try's reply; a file sink starts over. */
static int reply_reset(struct reply *r)
{
	r->status = 0;
	r->content_type[0] = r->digest[0] = r->www_auth[0] = '\0';
	r->retry_after = -1;
	r->len = 0;
	r->over = 0;
	if (r->buf)
		r->buf[0] = '\0';
	if (r->fd >= 0) {
		r->written = 0;
		r->werr = 0;
		if (ftruncate(r->fd, 0) != 0 || lseek(r->fd, 0, SEEK_SET) != 0)
			return -1;
		if (EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1)
			return -1;
	}
	return 0;
}

/* One HTTP GET (or HEAD) of url with the given Authorization line. */
static enum kiln_rc perform(struct oci_client *c, const char *url, const char *accept, const char *auth,
			    const char *user, const char *pass, struct reply *r, struct kiln_err *e)
{
	struct curl_slist *h = NULL;
	char accept_hdr[300];
	enum kiln_rc rc = KILN_OK;
	CURLcode cc;
	CURL *k;

	k = curl_easy_init();
	if (!k)
		return kiln_fail(e, KILN_E_NOMEM, "registry: curl_easy_init failed");
	if (accept) {
		snprintf(accept_hdr, sizeof(accept_hdr), "Accept: %s", accept);
		h = curl_slist_append(h, accept_hdr);
	}
	if (auth)
		h = curl_slist_append(h, auth);
	curl_easy_setopt(k, CURLOPT_URL, url);
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_USERAGENT, "kiln/" PACKAGE_VERSION);
	curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(k, CURLOPT_MAXREDIRS, 10L);
	/* libcurl drops a custom Authorization header on a redirect to another
	 * host unless this is set: signed blob URLs refuse a second credential. */
	curl_easy_setopt(k, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(k, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(k, CURLOPT_LOW_SPEED_TIME, c->timeout_s);
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(k, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, r);
	if (user) {
		curl_easy_setopt(k, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(k, CURLOPT_USERNAME, user);
		curl_easy_setopt(k, CURLOPT_PASSWORD, pass ? pass : "");
	}
	if (c->ca_file)
		curl_easy_setopt(k, CURLOPT_CAINFO, c->ca_file);
	if (r->head)
		curl_easy_setopt(k, CURLOPT_NOBODY, 1L);
	if (c->canceled) {
		curl_easy_setopt(k, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(k, CURLOPT_XFERINFODATA, c);
		curl_easy_setopt(k, CURLOPT_NOPROGRESS, 0L);
	}
	cc = curl_easy_perform(k);
	if (cc != CURLE_OK) {
		if (cc == CURLE_ABORTED_BY_CALLBACK)
			rc = kiln_fail(e, KILN_E_LIMIT, "registry: GET %s: canceled", url);
		else if (r->over)
			rc = kiln_fail(e, KILN_E_LIMIT, "registry: GET %s: reply is larger than %s", url,
				       r->fd >= 0 ? "the blob's size" : "the cap");
		else if (r->werr)
			rc = kiln_fail(e, KILN_E_IO, "registry: GET %s: writing: %s", url, strerror(r->werr));
		else
			rc = kiln_fail(e, KILN_E_IO, "registry: GET %s: %s", url, curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &r->status);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(k);
	return rc;
}

static size_t base64(const char *in, size_t n, char *out, size_t size)
{
	if ((n + 2) / 3 * 4 + 1 > size)
		return 0;
	return (size_t)EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
}

/* Answer a 401's challenge: a bearer token from the realm, or basic
 * credentials. Sets c->auth. */
static enum kiln_rc authorize(struct oci_client *c, const char *www_auth, struct kiln_err *e)
{
	struct oci_challenge ch;
	struct reply t = { .fd = -1, .max = TOKEN_MAX };
	char scope[600], *url = NULL, *esc_s = NULL, *esc_c = NULL, *hdr = NULL;
	json_t *j = NULL;
	const char *tok;
	enum kiln_rc rc;
	CURL *k = NULL;

	if (!www_auth[0])
		return kiln_fail(e, KILN_E_INVALID, "registry %s: 401 without a WWW-Authenticate challenge",
				 c->ref.host);
	rc = oci_challenge_parse(www_auth, &ch, e);
	if (rc != KILN_OK)
		return rc;
	if (ch.scheme == OCI_AUTH_BASIC) {
		char up[1024], b64[1400];
		int n;

		if (!c->username)
			return kiln_fail(e, KILN_E_INVALID,
					 "registry %s asks for basic credentials and none are configured", c->ref.host);
		n = snprintf(up, sizeof(up), "%s:%s", c->username, c->password ? c->password : "");
		if (n < 0 || (size_t)n >= sizeof(up) || !base64(up, (size_t)n, b64, sizeof(b64)))
			return kiln_fail(e, KILN_E_LIMIT, "registry %s: credentials are too long", c->ref.host);
		free(c->auth);
		if (asprintf(&c->auth, "Authorization: Basic %s", b64) < 0) {
			c->auth = NULL;
			return kiln_fail(e, KILN_E_NOMEM, "registry: out of memory");
		}
		return KILN_OK;
	}
	/* The /v2/ challenge has no scope: the repository's pull scope. */
	snprintf(scope, sizeof(scope), "%s", ch.scope[0] ? ch.scope : "");
	if (!scope[0])
		snprintf(scope, sizeof(scope), "repository:%s:pull", c->ref.path);
	k = curl_easy_init();
	if (!k)
		return kiln_fail(e, KILN_E_NOMEM, "registry: curl_easy_init failed");
	esc_s = curl_easy_escape(k, ch.service, 0);
	esc_c = curl_easy_escape(k, scope, 0);
	if (!esc_s || !esc_c ||
	    asprintf(&url, "%s%cservice=%s&scope=%s", ch.realm, strchr(ch.realm, '?') ? '&' : '?', esc_s, esc_c) < 0) {
		url = NULL;
		rc = kiln_fail(e, KILN_E_NOMEM, "registry: out of memory");
		goto out;
	}
	rc = perform(c, url, NULL, NULL, c->username, c->password, &t, e);
	if (rc != KILN_OK)
		goto out;
	if (t.status != 200) {
		rc = kiln_fail(e, KILN_E_INVALID, "registry %s: token realm %s answered %ld%s", c->ref.host, ch.realm,
			       t.status, t.status == 401 ? " (bad credentials?)" : "");
		goto out;
	}
	j = t.buf ? json_loadb(t.buf, t.len, 0, NULL) : NULL;
	tok = json_string_value(json_object_get(j, "access_token"));
	if (!tok || !*tok)
		tok = json_string_value(json_object_get(j, "token"));
	if (!tok || !*tok || strcspn(tok, "\r\n") != strlen(tok)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "registry %s: token realm %s sent no usable token", c->ref.host,
			       ch.realm);
		goto out;
	}
	if (asprintf(&hdr, "Authorization: Bearer %s", tok) < 0) {
		hdr = NULL;
		rc = kiln_fail(e, KILN_E_NOMEM, "registry: out of memory");
		goto out;
	}
	free(c->auth);
	c->auth = hdr;
	hdr = NULL;
out:
	json_decref(j);
	free(hdr);
	free(url);
	curl_free(esc_s);
	curl_free(esc_c);
	curl_easy_cleanup(k);
	free(t.buf);
	return rc;
}

/* "404 MANIFEST_UNKNOWN: manifest unknown" from an error reply. */
static void error_text(const struct reply *r, char *out, size_t size)
{
	json_t *j = r->buf ? json_loadb(r->buf, r->len, 0, NULL) : NULL;
	json_t *first = json_array_get(json_object_get(j, "errors"), 0);
	const char *code = json_string_value(json_object_get(first, "code"));
	const char *msg = json_string_value(json_object_get(first, "message"));

	snprintf(out, size, "%ld%s%.60s%s%.200s", r->status, code ? " " : "", code ? code : "", msg ? ": " : "",
		 msg ? msg : "");
	json_decref(j);
}

/* GET url with auth and retries; on return r holds a 2xx reply. */
static enum kiln_rc fetch(struct oci_client *c, const char *url, const char *accept, struct reply *r,
			  struct kiln_err *e)
{
	int authed = 0, tries = 0;
	enum kiln_rc rc;
	char why[300];

	for (;;) {
		if (is_canceled(c))
			return kiln_fail(e, KILN_E_LIMIT, "registry: GET %s: canceled", url);
		if (reply_reset(r) != 0)
			return kiln_fail_errno(e, "registry: GET %s: resetting the download", url);
		rc = perform(c, url, accept, c->auth, NULL, NULL, r, e);
		if (rc != KILN_OK)
			return rc;
		if (r->status == 401 && !authed) {
			authed = 1;
			rc = authorize(c, r->www_auth, e);
			if (rc != KILN_OK)
				return rc;
			continue;
		}
		if ((r->status == 429 || r->status == 503 || r->status == 502 || r->status == 504 ||
		     r->status == 408) && ++tries < OCI_MAX_TRIES) {
			long wait = r->retry_after >= 0 ? r->retry_after : 1L << tries;
			long ms;

			/* In short naps: a cancel does not wait out a Retry-After. */
			for (ms = (wait > 60 ? 60 : wait) * 1000; ms > 0 && !is_canceled(c); ms -= 100)
				usleep(100000);
			continue;
		}
		break;
	}
	if (r->status >= 200 && r->status < 300)
		return KILN_OK;
	error_text(r, why, sizeof(why));
	if (r->status == 404)
		return kiln_fail(e, KILN_E_NOTFOUND, "registry: GET %s: %s", url, why);
	if (r->status == 401 || r->status == 403)
		return kiln_fail(e, KILN_E_INVALID, "registry: GET %s: %s (credentials refused or missing)", url, why);
	return kiln_fail(e, KILN_E_IO, "registry: GET %s: %s", url, why);
}

static void digest_buf(const char *b, size_t n, char out[80])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dl = 0;

	EVP_Digest(b, n, d, &dl, EVP_sha256(), NULL);
	memcpy(out, "sha256:", 7);
	sha256_hex(d, out + 7);
}

enum kiln_rc oci_get_manifest(struct oci_client *c, const char *reference, char **body, size_t *len,
			      char mt[160], char digest[80], struct kiln_err *e)
{
	struct reply r = { .fd = -1, .max = OCI_MANIFEST_MAX_BYTES };
	char url[900];
	enum kiln_rc rc;
	size_t n;

	*body = NULL;
	*len = 0;
	snprintf(url, sizeof(url), "%s/manifests/%s", c->base, reference);
	rc = fetch(c, url, OCI_ACCEPT, &r, e);
	if (rc != KILN_OK)
		goto out;
	n = strcspn(r.content_type, "; \t");
	snprintf(mt, 160, "%.*s", (int)n, r.content_type);
	if (oci_mt_kind(mt) == OCI_KIND_UNKNOWN && (!mt[0] || !strcmp(mt, "application/json") ||
						     !strcmp(mt, "application/octet-stream"))) {
		/* Old registries and static mirrors send a generic type: the body's own decides. */
		json_t *j = r.buf ? json_loadb(r.buf, r.len, 0, NULL) : NULL;
		const char *own = json_string_value(json_object_get(j, "mediaType"));

		if (own && oci_mt_kind(own) != OCI_KIND_UNKNOWN)
			snprintf(mt, 160, "%s", own);
		json_decref(j);
	}
	if (oci_mt_kind(mt) == OCI_KIND_UNKNOWN) {
		rc = kiln_fail(e, KILN_E_INVALID, "registry: %s/%s:%s has media type '%s', which kiln does not know",
			       c->ref.domain, c->ref.path, reference, mt[0] ? mt : "(none)");
		goto out;
	}
	digest_buf(r.buf ? r.buf : "", r.len, digest);
	if (oci_digest_valid(reference) && strcmp(reference, digest) != 0) {
		rc = kiln_fail(e, KILN_E_INVALID, "registry: manifest %s arrived with digest %s", reference, digest);
		goto out;
	}
	if (!r.buf) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "registry: manifest %s is empty", reference);
		goto out;
	}
	*body = r.buf;
	*len = r.len;
	r.buf = NULL;
out:
	free(r.buf);
	return rc;
}

enum kiln_rc oci_head_manifest(struct oci_client *c, const char *tag, char digest[80], struct kiln_err *e)
{
	struct reply r = { .fd = -1, .head = 1 };
	char url[900];
	enum kiln_rc rc;

	digest[0] = '\0';
	snprintf(url, sizeof(url), "%s/manifests/%s", c->base, tag);
	rc = fetch(c, url, OCI_ACCEPT, &r, e);
	if (rc == KILN_OK && !oci_digest_valid(r.digest))
		rc = kiln_fail(e, KILN_E_NOTFOUND, "registry: HEAD %s: no Docker-Content-Digest", url);
	if (rc == KILN_OK)
		snprintf(digest, 80, "%s", r.digest);
	free(r.buf);
	return rc;
}

enum kiln_rc oci_get_blob_mem(struct oci_client *c, const struct oci_desc *d, size_t max, char **body,
			      struct kiln_err *e)
{
	struct reply r = { .fd = -1, .max = max };
	char url[900], got[80];
	enum kiln_rc rc;

	*body = NULL;
	if (d->size > max)
		return kiln_fail(e, KILN_E_LIMIT, "registry: blob %s is %llu bytes, over the cap of %zu", d->digest,
				 (unsigned long long)d->size, max);
	snprintf(url, sizeof(url), "%s/blobs/%s", c->base, d->digest);
	rc = fetch(c, url, NULL, &r, e);
	if (rc != KILN_OK)
		goto out;
	digest_buf(r.buf ? r.buf : "", r.len, got);
	if (r.len != d->size || strcmp(got, d->digest) != 0) {
		rc = kiln_fail(e, KILN_E_INVALID, "registry: blob %s: got %zu bytes with digest %s, expected %llu",
			       d->digest, r.len, got, (unsigned long long)d->size);
		goto out;
	}
	*body = r.buf ? r.buf : strdup("");
	r.buf = NULL;
out:
	free(r.buf);
	return rc;
}

enum kiln_rc oci_get_blob_file(struct oci_client *c, const struct oci_desc *d, const char *path,
			       struct kiln_err *e)
{
	struct reply r = { .fd = -1, .limit = d->size };
	char url[900], tmp[4096], got[80];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned ml = 0;
	enum kiln_rc rc;

	if (d->size > OCI_MAX_BLOB_BYTES)
		return kiln_fail(e, KILN_E_LIMIT, "registry: blob %s is %llu bytes, over the cap", d->digest,
				 (unsigned long long)d->size);
	if (snprintf(tmp, sizeof(tmp), "%s.part.XXXXXX", path) >= (int)sizeof(tmp))
		return kiln_fail(e, KILN_E_LIMIT, "registry: path %s is too long", path);
	r.md = EVP_MD_CTX_new();
	if (!r.md)
		return kiln_fail(e, KILN_E_NOMEM, "registry: out of memory");
	r.fd = mkstemp(tmp);
	if (r.fd < 0) {
		rc = kiln_fail_errno(e, "registry: creating %s", tmp);
		goto out;
	}
	snprintf(url, sizeof(url), "%s/blobs/%s", c->base, d->digest);
	rc = fetch(c, url, NULL, &r, e);
	if (rc != KILN_OK)
		goto out;
	EVP_DigestFinal_ex(r.md, md, &ml);
	memcpy(got, "sha256:", 7);
	sha256_hex(md, got + 7);
	if (r.written != d->size) {
		rc = kiln_fail(e, KILN_E_INVALID, "registry: blob %s is truncated: %llu of %llu bytes", d->digest,
			       (unsigned long long)r.written, (unsigned long long)d->size);
		goto out;
	}
	if (strcmp(got, d->digest) != 0) {
		rc = kiln_fail(e, KILN_E_INVALID, "registry: blob %s arrived with digest %s", d->digest, got);
		goto out;
	}
	if (fsync(r.fd) != 0 || fchmod(r.fd, 0644) != 0) {
		rc = kiln_fail_errno(e, "registry: writing %s", tmp);
		goto out;
	}
	if (rename(tmp, path) != 0) {
		rc = kiln_fail_errno(e, "registry: renaming %s", tmp);
		goto out;
	}
	tmp[0] = '\0';
out:
	if (r.fd >= 0)
		close(r.fd);
	if (tmp[0] && r.fd >= 0)
		unlink(tmp);
	EVP_MD_CTX_free(r.md);
	free(r.buf);
	return rc;
}
