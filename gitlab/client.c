#include "gitlab/client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "build-config.h"
#include "lib/clock.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "gitlab/metrics.h"
#include "job/payload.h"
#include "lib/vec.h"

#ifndef KILN_REVISION
#define KILN_REVISION "unknown"
#endif

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void gl_global_init(void)
{
	pthread_once(&curl_once, curl_init_once);
}

enum kiln_rc gl_client_init(struct gl_client *c, const char *url, const char *ca_file, struct kiln_err *e)
{
	size_t n;

	memset(c, 0, sizeof(*c));
	c->max_attempts = GL_MAX_ATTEMPTS;
	c->backoff_min_ms = 100;
	c->backoff_max_ms = 60000;
	c->timeout_s = GL_TIMEOUT_S;
	c->header_timeout_s = GL_HEADER_TIMEOUT_S;
	c->final_backoff_ms = 1000;
	c->progress_s = 10;
	if (!url || (strncmp(url, "https://", 8) && strncmp(url, "http://", 7)))
		return kiln_fail(e, KILN_E_INVALID, "GitLab URL '%s': must start with https:// or http://",
				 url ? url : "");
	n = strlen(url);
	if (n + sizeof("/api/v4") > sizeof(c->api))
		return kiln_fail(e, KILN_E_LIMIT, "GitLab URL '%.64s...': longer than %zu bytes", url,
				 sizeof(c->api) - sizeof("/api/v4"));
	memcpy(c->api, url, n + 1);
	/* gitlab-runner accepts ".../" and ".../ci" for the same server. */
	while (n > 0 && c->api[n - 1] == '/')
		c->api[--n] = '\0';
	if (n >= 3 && !strcmp(c->api + n - 3, "/ci")) {
		n -= 3;
		c->api[n] = '\0';
		while (n > 0 && c->api[n - 1] == '/')
			c->api[--n] = '\0';
	}
	memcpy(c->api + n, "/api/v4", sizeof("/api/v4"));
	if (ca_file && *ca_file) {
		if (strlen(ca_file) >= sizeof(c->ca_file))
			return kiln_fail(e, KILN_E_LIMIT, "tls_ca_file %s: path too long", ca_file);
		if (access(ca_file, R_OK) < 0)
			return kiln_fail_errno(e, "tls_ca_file %s", ca_file);
		snprintf(c->ca_file, sizeof(c->ca_file), "%s", ca_file);
	}
	return KILN_OK;
}

enum kiln_rc gl_client_tls(struct gl_client *c, const char *cert_file, const char *key_file, struct kiln_err *e)
{
	if (!cert_file || !*cert_file || !key_file || !*key_file)
		return KILN_OK;
	if (strlen(cert_file) >= sizeof(c->cert_file) || strlen(key_file) >= sizeof(c->key_file))
		return kiln_fail(e, KILN_E_LIMIT, "tls_cert_file/tls_key_file: path too long");
	if (access(cert_file, R_OK) < 0)
		return kiln_fail_errno(e, "tls_cert_file %s", cert_file);
	if (access(key_file, R_OK) < 0)
		return kiln_fail_errno(e, "tls_key_file %s", key_file);
	snprintf(c->cert_file, sizeof(c->cert_file), "%s", cert_file);
	snprintf(c->key_file, sizeof(c->key_file), "%s", key_file);
	return KILN_OK;
}

/* curl has loaded its own CA bundle into the context: add the runner's. */
static CURLcode on_ssl_ctx(CURL *curl, void *ssl_ctx, void *arg)
{
	const struct gl_client *c = arg;
	struct kiln_err e = { 0 };

	(void)curl;
	if (kiln_tls_trust(SSL_CTX_get_cert_store(ssl_ctx), c->ca_file, &e)) {
		log_warn("%s", e.msg);
		return CURLE_SSL_CACERT_BADFILE;
	}
	return CURLE_OK;
}

/* The system's CAs plus the runner's CA file (not CURLOPT_CAINFO, which
 * would replace them), and the client certificate when there is one. */
static void tls_setup(struct gl_client *c)
{
	if (c->ca_file[0]) {
		curl_easy_setopt(c->curl, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
		curl_easy_setopt(c->curl, CURLOPT_SSL_CTX_DATA, c);
#if LIBCURL_VERSION_NUM >= 0x075700
		/* A cached store would be shared with the certificates added to it. */
		curl_easy_setopt(c->curl, CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
	}
	if (c->cert_file[0]) {
		curl_easy_setopt(c->curl, CURLOPT_SSLCERT, c->cert_file);
		curl_easy_setopt(c->curl, CURLOPT_SSLKEY, c->key_file);
	}
}

void gl_client_free(struct gl_client *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	c->curl = NULL;
}

void gl_reply_free(struct gl_reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

static void reply_reset(struct gl_reply *r)
{
	gl_reply_free(r);
	r->status = 0;
	r->job_status[0] = r->last_update[0] = '\0';
	r->range_end = -1;
	r->update_interval = -1;
	r->retry_after_ms = -1;
}

/* --- transfer callbacks -------------------------------------------------- */

struct xfer {
	struct gl_reply *r;
	size_t cap, max;
	int out_fd;                /* the body goes here when >= 0 */
	uint64_t written;
	bool over, write_failed;
	const volatile sig_atomic_t *stop;
	/* The response-header clock starts once the request is sent. */
	long header_timeout_s;
	double sent_at;            /* 0: the request is still going out */
	bool got_header, header_late;
	/* Progress reports (gl_client.progress). */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	int progress_s;
	double progress_at;
	uint64_t done, total;
	bool reported;
};

static double mono_s(void);

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	if (x->out_fd >= 0) {
		size_t off = 0;

		if (x->written + n > x->max) {
			x->over = true;
			return 0;
		}
		while (off < n) {
			ssize_t w = write(x->out_fd, data + off, n - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				x->write_failed = true;
				return 0;
			}
			off += (size_t)w;
		}
		x->written += n;
		return n;
	}
	switch (http_body_append(&x->r->body, &x->r->len, &x->cap, x->max, data, n)) {
	case 0:
		return n;
	case 1:
		x->over = true;
	}
	return 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	struct gl_reply *r = x->r;
	size_t n = size * nmemb, klen;
	char val[256];
	const char *colon, *v, *end = data + n;

	x->got_header = true;
	if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
		/* A new reply (after a 100 Continue or a redirect) starts afresh. */
		r->job_status[0] = r->last_update[0] = '\0';
		r->range_end = -1;
		r->update_interval = -1;
		r->retry_after_ms = -1;
		return n;
	}
	colon = memchr(data, ':', n);
	if (!colon)
		return n;
	klen = (size_t)(colon - data);
	for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	http_copy_value(val, sizeof(val), v, (size_t)(end - v));
#define IS(name) (klen == sizeof(name) - 1 && !strncasecmp(data, name, klen))
	if (IS("Job-Status")) {
		http_copy_value(r->job_status, sizeof(r->job_status), val, strlen(val));
	} else if (IS("X-GitLab-Last-Update")) {
		if (val[0])
			http_copy_value(r->last_update, sizeof(r->last_update), val, strlen(val));
	} else if (IS("X-GitLab-Trace-Update-Interval")) {
		long s = strtol(val, NULL, 10);
		r->update_interval = s < 0 ? -1 : s > 15 * 60 ? 15 * 60 : (int)s;
	} else if (IS("Range")) {
		const char *dash = strchr(val, '-');
		char *e2;
		long long endv = dash ? strtoll(dash + 1, &e2, 10) : -1;
		r->range_end = dash && e2 != dash + 1 && endv >= 0 ? endv : -1;
	} else if (IS("Retry-After") || IS("RateLimit-ResetTime")) {
		long sec = http_retry_after_s(val, 3600);
		if (sec >= 0)
			r->retry_after_ms = (int)sec * 1000;
	}
#undef IS
	return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = arg;
	double now = mono_s();

	if (x->stop && *x->stop)
		return 1;
	/* gitlab-runner's ResponseHeaderTimeout: from the request's last byte
	 * to the reply's headers; the body then has the whole timeout. */
	if (!x->got_header && !x->sent_at && (ultotal <= 0 || ulnow >= ultotal))
		x->sent_at = now;
	if (!x->got_header && x->sent_at && x->header_timeout_s > 0 && now - x->sent_at > (double)x->header_timeout_s) {
		x->header_late = true;
		return 1;
	}
	if (x->progress) {
		x->done = (uint64_t)(ultotal > 0 ? ulnow : dlnow);
		x->total = (uint64_t)(ultotal > 0 ? ultotal : dltotal > 0 ? dltotal : 0);
		if (x->done > 0 && now - x->progress_at >= x->progress_s) {
			x->progress_at = now;
			x->reported = true;
			x->progress(x->progress_arg, x->done, x->total);
		}
	}
	return 0;
}

/* --- the retry layer ----------------------------------------------------- */

static bool status_retryable(long s)
{
	return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504 || s >= 512;
}

static bool curl_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* Sleep ms milliseconds, waking early when *stop is set; false then. */
static bool nap(const volatile sig_atomic_t *stop, long ms)
{
	while (ms > 0) {
		long step = ms > 100 ? 100 : ms;
		struct timespec ts = { step / 1000, (step % 1000) * 1000000L };

		if (stop && *stop)
			return false;
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return !(stop && *stop);
}

static void random_hex(char *out, size_t nbytes)
{
	unsigned char b[32];
	size_t i;

	if (nbytes > sizeof(b))
		nbytes = sizeof(b);
	if (getrandom(b, nbytes, 0) != (ssize_t)nbytes)
		for (i = 0; i < nbytes; i++)
			b[i] = (unsigned char)(rand() ^ (int)(i * 131));
	for (i = 0; i < nbytes; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static long backoff_ms(const struct gl_client *c, int attempt)
{
	long ms = c->backoff_min_ms;
	unsigned r = 0;

	while (attempt-- > 1 && ms < c->backoff_max_ms)
		ms *= 2;
	if (ms > c->backoff_max_ms)
		ms = c->backoff_max_ms;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (unsigned)rand();
	/* Jitter: between half and all of it. */
	return ms / 2 + (long)(r % (unsigned)(ms / 2 + 1));
}

/* The endpoint of "METHOD /jobs/42/trace?x" as metrics name it:
 * "/jobs/:id/trace". */
static void endpoint_of(const char *what, char *buf, size_t size)
{
	const char *p = strchr(what, ' ');
	size_t n = 0;

	for (p = p ? p + 1 : what; *p && *p != '?' && *p != ' ' && n + 4 < size;) {
		if (p[-1] == '/' && *p >= '0' && *p <= '9') {
			memcpy(buf + n, ":id", 3);
			n += 3;
			while (*p >= '0' && *p <= '9')
				p++;
			continue;
		}
		buf[n++] = *p++;
	}
	buf[n] = '\0';
}

static void count_request(const char *method, const char *what, long status, bool retry)
{
	char labels[METRICS_MAX_LABELS] = "", ep[96], st[16];

	endpoint_of(what, ep, sizeof(ep));
	snprintf(st, sizeof(st), "%ld", status);
	metrics_label(labels, sizeof(labels), "endpoint", ep);
	metrics_label(labels, sizeof(labels), "method", method);
	metrics_label(labels, sizeof(labels), "status", st);
	metrics_add("kiln_api_request_statuses_total", labels, 1);
	if (retry) {
		labels[0] = '\0';
		metrics_add("kiln_api_request_retries_total", metrics_label(labels, sizeof(labels), "endpoint", ep), 1);
	}
}

/* One request through the retry layer. */
struct call {
	const char *method;
	const char *url;             /* absolute */
	const char *what;            /* "POST /jobs/request", for messages */
	struct curl_slist *headers;  /* X-Request-Id is added per try */
	const void *body;
	size_t len;
	curl_mime *mime;             /* a multipart body instead */
	int out_fd;                  /* the reply body goes to this file when >= 0 */
	size_t max_reply;
	int max_attempts;            /* 0: the client's */
	bool (*retry)(long status, int attempt); /* NULL: status_retryable */
};

static enum kiln_rc perform(struct gl_client *c, const struct call *k, struct gl_reply *r, struct kiln_err *e)
{
	struct xfer x = { .r = r, .max = k->max_reply, .out_fd = k->out_fd, .stop = c->stop,
			  .header_timeout_s = c->header_timeout_s };
	int attempts = k->max_attempts > 0 ? k->max_attempts : c->max_attempts, attempt;
	char hdr[128], errbuf[CURL_ERROR_SIZE], reqid[65];
	enum kiln_rc rc = KILN_OK;
	CURLcode cc = CURLE_OK;

	reply_reset(r);
	r->attempts = 0;
	if (!c->curl && !(c->curl = curl_easy_init()))
		return kiln_fail(e, KILN_E_NOMEM, "%s: cannot make a curl handle", k->what);
	for (attempt = 1;; attempt++) {
		struct curl_slist *hh, *it;
		bool again;
		long wait;

		reply_reset(r);
		x.cap = 0;
		x.written = 0;
		x.over = x.write_failed = false;
		x.sent_at = 0;
		x.got_header = x.header_late = false;
		x.progress = k->mime || k->out_fd >= 0 ? c->progress : NULL;
		x.progress_arg = c->progress_arg;
		x.progress_s = c->progress_s;
		x.progress_at = mono_s();
		x.done = x.total = 0;
		x.reported = false;
		r->attempts = attempt;
		if (k->out_fd >= 0 && (ftruncate(k->out_fd, 0) < 0 || lseek(k->out_fd, 0, SEEK_SET) < 0)) {
			rc = kiln_fail_errno(e, "%s: the download file", k->what);
			break;
		}
		random_hex(reqid, 16);
		snprintf(hdr, sizeof(hdr), "X-Request-Id: %s", reqid);
		hh = curl_slist_append(NULL, hdr);
		for (it = k->headers; it && hh; it = it->next)
			hh = curl_slist_append(hh, it->data);
		if (!hh) {
			rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", k->what);
			break;
		}
		curl_easy_reset(c->curl);
		errbuf[0] = '\0';
		curl_easy_setopt(c->curl, CURLOPT_URL, k->url);
		curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "kiln " PACKAGE_VERSION);
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hh);
		curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 30L);
		curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout_s);
#if LIBCURL_VERSION_NUM >= 0x075500
		curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "https,http");
#else
		curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP));
#endif
		curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &x);
		curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &x);
		curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, &x);
		tls_setup(c);
		if (k->mime) {
			curl_easy_setopt(c->curl, CURLOPT_MIMEPOST, k->mime);
		} else if (k->body) {
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, k->body);
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k->len);
		}
		if (strcmp(k->method, "POST") || !(k->body || k->mime))
			curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, k->method);
		cc = curl_easy_perform(c->curl);
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
		curl_slist_free_all(hh);
		if (x.progress && x.reported)
			x.progress(x.progress_arg, x.done, x.total);
		if (cc == CURLE_ABORTED_BY_CALLBACK && x.header_late) {
			/* A timeout, retried as curl's own. */
			cc = CURLE_OPERATION_TIMEDOUT;
			snprintf(errbuf, sizeof(errbuf), "no reply headers %ld s after the request was sent",
				 c->header_timeout_s);
		}
		if (cc == CURLE_ABORTED_BY_CALLBACK) {
			rc = kiln_fail(e, KILN_E_IO, "%s: stopped", k->what);
			break;
		}
		if (x.over) {
			rc = kiln_fail(e, KILN_E_LIMIT, "%s: the reply is larger than %zu bytes", k->what, k->max_reply);
			break;
		}
		if (x.write_failed) {
			rc = kiln_fail_errno(e, "%s: writing the reply", k->what);
			break;
		}
		if (cc != CURLE_OK)
			r->status = 0;
		again = cc == CURLE_OK ? (k->retry ? k->retry(r->status, attempt) : status_retryable(r->status))
				       : curl_retryable(cc);
		count_request(k->method, k->what, r->status, again && attempt < attempts);
		if (!again || attempt >= attempts) {
			if (cc != CURLE_OK)
				rc = kiln_fail(e, KILN_E_IO, "%s %s: %s", k->method, k->url,
					       errbuf[0] ? errbuf : curl_easy_strerror(cc));
			break;
		}
		wait = r->retry_after_ms >= 0 ? r->retry_after_ms : backoff_ms(c, attempt);
		if (wait > c->backoff_max_ms)
			wait = c->backoff_max_ms;
		log_debug("%s: %s, try %d of %d in %ld ms", k->what,
			  cc != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(cc)) : "server error", attempt + 1,
			  attempts, wait);
		if (!nap(c->stop, wait)) {
			rc = kiln_fail(e, KILN_E_IO, "%s: stopped", k->what);
			break;
		}
	}
	if (rc)
		r->status = 0;
	return rc;
}

enum kiln_rc gl_call(struct gl_client *c, const char *method, const char *path, const char *runner_token,
		     const char *job_token, const char *ctype, const void *body, size_t len,
		     const char *content_range, size_t max_reply, struct gl_reply *r, struct kiln_err *e)
{
	char url[1536], hdr[512], what[160];
	struct curl_slist *h = NULL;
	struct call k = { .method = method, .url = url, .what = what, .body = body, .len = len, .out_fd = -1,
			  .max_reply = max_reply };
	enum kiln_rc rc;

	reply_reset(r);
	snprintf(what, sizeof(what), "%s %s", method, path);
	if ((size_t)snprintf(url, sizeof(url), "%s%s", c->api, path) >= sizeof(url))
		return kiln_fail(e, KILN_E_LIMIT, "%s: URL too long", what);
	if (body)
		h = curl_slist_append(h, ctype && !strcmp(ctype, "text/plain") ? "Content-Type: text/plain"
										: "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	if (runner_token) {
		snprintf(hdr, sizeof(hdr), "RUNNER-TOKEN: %s", runner_token);
		h = curl_slist_append(h, hdr);
	}
	if (job_token) {
		snprintf(hdr, sizeof(hdr), "JOB-TOKEN: %s", job_token);
		h = curl_slist_append(h, hdr);
	}
	if (content_range) {
		snprintf(hdr, sizeof(hdr), "Content-Range: %s", content_range);
		h = curl_slist_append(h, hdr);
	}
	if (!h)
		return kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", what);
	k.headers = h;
	rc = perform(c, &k, r, e);
	curl_slist_free_all(h);
	return rc;
}

/* --- runner calls -------------------------------------------------------- */

static const struct {
	const char *name;
	bool on;
} features[] = {
	/* The key set of gitlab-runner 19.4's info.features; true for what kiln does. */
	{ "variables", true },          /* the payload's variables reach the job */
	{ "image", true },              /* image: picks a kiln image of that name */
	{ "services", true },           /* each in a VM of its own: job/servicevm.h */
	{ "artifacts", true },          /* archive artifacts: gitlab/artifacts.h */
	{ "cache", true },              /* local caches in cache_dir */
	{ "fallback_cache_keys", true },
	{ "shared", false },
	{ "upload_multiple_artifacts", true },
	{ "upload_raw_artifacts", true },
	{ "session", false },
	{ "terminal", false },
	{ "refspecs", true },           /* the workspace fetches git_info.refspecs */
	{ "masking", true },            /* gitlab/mask.h */
	{ "proxy", false },
	{ "raw_variables", true },      /* raw values are not expanded */
	{ "artifacts_exclude", true },
	{ "multi_build_steps", true },  /* every step of the payload runs */
	{ "trace_reset", true },        /* 412: the whole trace again */
	{ "trace_checksum", true },
	{ "trace_size", true },
	{ "vault_secrets", false },
	{ "cancelable", true },
	{ "return_exit_code", true },
	{ "service_variables", true },  /* expanded against the job's: job/services.h */
	{ "service_multiple_aliases", true },
	{ "image_executor_opts", false },
	{ "service_executor_opts", false },
	{ "cancel_gracefully", true },  /* canceling: after_script still runs */
	{ "native_steps_integration", false },
	{ "two_phase_job_commit", false },
	{ "job_inputs", false },
};

json_t *gl_info(const char *executor)
{
	struct utsname u;
	const char *arch = "amd64";
	json_t *info, *f;
	size_t i;

	if (uname(&u) == 0 && !strcmp(u.machine, "aarch64"))
		arch = "arm64";
	else if (uname(&u) == 0 && strcmp(u.machine, "x86_64"))
		arch = u.machine;
	f = json_object();
	for (i = 0; f && i < sizeof(features) / sizeof(features[0]); i++)
		json_object_set_new(f, features[i].name, json_boolean(features[i].on));
	/* config and labels as gitlab-runner's VersionInfo: kiln passes no
	 * GPUs to jobs and has no runner labels. */
	info = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o?, s:{s:s}, s:{}}", "name", "kiln", "version",
			 PACKAGE_VERSION, "revision", KILN_REVISION, "platform", "linux", "architecture", arch,
			 "executor", executor && *executor ? executor : "kiln", "shell", "bash", "features", f,
			 "config", "gpus", "", "labels");
	return info;
}

/* POST/PUT/DELETE a JSON object (stolen) and get the reply. */
static enum kiln_rc call_json(struct gl_client *c, const char *method, const char *path, const char *runner_token,
			      const char *job_token, json_t *obj, size_t max_reply, struct gl_reply *r,
			      struct kiln_err *e)
{
	char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	enum kiln_rc rc;

	json_decref(obj);
	if (!body)
		return kiln_fail(e, KILN_E_NOMEM, "%s %s: out of memory", method, path);
	rc = gl_call(c, method, path, runner_token, job_token, "application/json", body, strlen(body), NULL, max_reply,
		     r, e);
	free(body);
	return rc;
}

static const char *reply_message(const struct gl_reply *r, char *buf, size_t size)
{
	json_t *o = r->body ? json_loads(r->body, 0, NULL) : NULL;
	json_t *m = json_object_get(o, "message");

	if (json_is_string(m))
		snprintf(buf, size, ": %s", json_string_value(m));
	else if (json_is_object(m) || json_is_array(m)) {
		char *s = json_dumps(m, JSON_COMPACT);
		snprintf(buf, size, ": %s", s ? s : "");
		free(s);
	} else
		buf[0] = '\0';
	json_decref(o);
	return buf;
}

long long gl_parse_time(const char *s)
{
	struct tm tm = { 0 };
	const char *p;
	long long t, off = 0;

	if (!s || !(p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return 0;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (*p == '+' || *p == '-') {
		int h, m;

		if (sscanf(p + 1, "%2d:%2d", &h, &m) != 2)
			return 0;
		off = (h * 3600LL + m * 60LL) * (*p == '+' ? 1 : -1);
		p += 6;
	} else if (*p == 'Z') {
		p++;
	}
	if (*p)
		return 0;
	t = (long long)timegm(&tm) - off;
	return t > 0 ? t : 0; /* GitLab's "never" is 0001-01-01 */
}

/* token_expires_at of a verify, register or reset reply: 0 for none. */
static long long reply_expiry(json_t *o)
{
	return gl_parse_time(json_string_value(json_object_get(o, "token_expires_at")));
}

enum kiln_rc gl_verify(struct gl_client *c, const char *token, const char *system_id, const char *executor,
		       long long *id, long long *expires_at, struct kiln_err *e)
{
	struct gl_reply r = { 0 };
	enum kiln_rc rc;
	char msg[256];
	json_t *o;

	*id = 0;
	if (expires_at)
		*expires_at = 0;
	rc = call_json(c, "POST", "/runners/verify", token, NULL,
		       json_pack("{s:s, s:s?, s:o?}", "token", token, "system_id", system_id, "info", gl_info(executor)),
		       GL_MAX_REPLY, &r, e);
	if (rc)
		goto out;
	switch (r.status) {
	case 200:
		o = r.body ? json_loads(r.body, 0, NULL) : NULL;
		if (json_is_integer(json_object_get(o, "id")))
			*id = json_integer_value(json_object_get(o, "id"));
		if (expires_at)
			*expires_at = reply_expiry(o);
		json_decref(o);
		break;
	case 403:
		rc = kiln_fail(e, KILN_E_INVALID, "%s: the runner token was refused (403 Forbidden)", c->api);
		break;
	case 422:
		rc = kiln_fail(e, KILN_E_INVALID, "%s: the runner is orphaned (422)%s", c->api,
			       reply_message(&r, msg, sizeof(msg)));
		break;
	default:
		rc = kiln_fail(e, KILN_E_IO, "%s: POST /runners/verify answered %ld%s", c->api, r.status,
			       reply_message(&r, msg, sizeof(msg)));
	}
out:
	gl_reply_free(&r);
	return rc;
}

enum kiln_rc gl_register(struct gl_client *c, const char *reg_token, const struct gl_register_params *p,
			 char **token, long long *id, long long *expires_at, struct kiln_err *e)
{
	struct gl_reply r = { 0 };
	enum kiln_rc rc;
	json_t *o = NULL, *t, *body;
	char msg[256];

	*token = NULL;
	*id = 0;
	if (expires_at)
		*expires_at = 0;
	/* The fields gitlab-runner sends: strings and the timeout only when set. */
	body = json_pack("{s:s, s:s*, s:s*, s:s*, s:s*, s:b, s:b, s:b, s:o?}", "token", reg_token, "description",
			 p->description, "maintenance_note", p->maintenance_note, "tag_list", p->tag_list,
			 "access_level", p->access_level, "run_untagged", p->run_untagged, "locked", p->locked,
			 "paused", p->paused, "info", gl_info(p->executor));
	if (body && p->maximum_timeout > 0)
		json_object_set_new(body, "maximum_timeout", json_integer(p->maximum_timeout));
	rc = call_json(c, "POST", "/runners", NULL, NULL, body, GL_MAX_REPLY, &r, e);
	if (rc)
		goto out;
	if (r.status != 201) {
		const char *why = r.status == 403   ? "the registration token was refused"
				  : r.status == 410 ? "registration with registration tokens is disabled on this server"
						    : "POST /runners failed";
		rc = kiln_fail(e, r.status == 403 || r.status == 410 || r.status == 400 ? KILN_E_INVALID : KILN_E_IO,
			       "%s: %s (HTTP %ld)%s", c->api, why, r.status, reply_message(&r, msg, sizeof(msg)));
		goto out;
	}
	o = r.body ? json_loads(r.body, 0, NULL) : NULL;
	t = json_object_get(o, "token");
	if (!json_is_string(t) || !*json_string_value(t)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: POST /runners: the reply has no token", c->api);
		goto out;
	}
	if (json_is_integer(json_object_get(o, "id")))
		*id = json_integer_value(json_object_get(o, "id"));
	if (expires_at)
		*expires_at = reply_expiry(o);
	if (!(*token = strdup(json_string_value(t))))
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
out:
	json_decref(o);
	gl_reply_free(&r);
	return rc;
}

enum kiln_rc gl_reset_token(struct gl_client *c, const char *token, char **new_token, long long *expires_at,
			    struct kiln_err *e)
{
	struct gl_reply r = { 0 };
	enum kiln_rc rc;
	json_t *o = NULL, *t;
	char msg[256];

	*new_token = NULL;
	*expires_at = 0;
	rc = call_json(c, "POST", "/runners/reset_authentication_token", token, NULL, json_pack("{s:s}", "token", token),
		       GL_MAX_REPLY, &r, e);
	if (rc)
		goto out;
	if (r.status != 201) {
		rc = kiln_fail(e, r.status == 403 ? KILN_E_INVALID : KILN_E_IO,
			       "%s: POST /runners/reset_authentication_token answered %ld%s", c->api, r.status,
			       reply_message(&r, msg, sizeof(msg)));
		goto out;
	}
	o = r.body ? json_loads(r.body, 0, NULL) : NULL;
	t = json_object_get(o, "token");
	if (!json_is_string(t) || !*json_string_value(t) || strpbrk(json_string_value(t), "\r\n")) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: reset_authentication_token: the reply has no usable token", c->api);
		goto out;
	}
	*expires_at = reply_expiry(o);
	if (!(*new_token = strdup(json_string_value(t))))
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
out:
	json_decref(o);
	gl_reply_free(&r);
	return rc;
}

bool gl_is_auth_token(const char *token)
{
	return token && !strncmp(token, "glrt-", 5);
}

enum kiln_rc gl_unregister(struct gl_client *c, const char *token, const char *system_id, struct kiln_err *e)
{
	struct gl_reply r = { 0 };
	bool manager = gl_is_auth_token(token);
	const char *path = manager ? "/runners/managers" : "/runners";
	enum kiln_rc rc;
	char msg[256];

	rc = call_json(c, "DELETE", path, token, NULL,
		       manager ? json_pack("{s:s, s:s?}", "token", token, "system_id", system_id)
			       : json_pack("{s:s}", "token", token),
		       GL_MAX_REPLY, &r, e);
	if (rc)
		goto out;
	if (r.status == 403 || r.status == 404)
		rc = kiln_fail(e, KILN_E_NOTFOUND, "%s: DELETE %s: the server does not know this runner (HTTP %ld)",
			       c->api, path, r.status);
	else if (r.status != 204 && r.status != 200)
		rc = kiln_fail(e, KILN_E_IO, "%s: DELETE %s answered %ld%s", c->api, path, r.status,
			       reply_message(&r, msg, sizeof(msg)));
out:
	gl_reply_free(&r);
	return rc;
}

/* The id and job token at the start of a payload (GitLab's presenter
 * writes "id" and "token" first), for a job too large to parse. */
static bool payload_head(const char *s, size_t n, long long *id, char *token, size_t size)
{
	const char *p, *end = s + (n < 4096 ? n : 4096);
	size_t k = 0;

	*id = 0;
	if ((p = memmem(s, (size_t)(end - s), "\"id\":", 5)))
		*id = strtoll(p + 5, NULL, 10);
	if (!(p = memmem(s, (size_t)(end - s), "\"token\":", 8)))
		return false;
	for (p += 8; p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'); p++)
		;
	if (p >= end || *p++ != '"')
		return false;
	for (; p < end && *p != '"' && k + 1 < size; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
		token[k++] = *p;
	}
	token[k] = '\0';
	return *id > 0 && k > 0 && p < end && *p == '"';
}

struct refusal {
	struct gl_client *c;
	long long id;
	const char *token, *text;
	size_t len, sent;
};

static enum kiln_rc refusal_flush(void *arg, bool from_zero, struct kiln_err *e)
{
	struct refusal *f = arg;
	struct gl_reply r = { 0 };
	enum gl_trace res = GL_TRACE_OK;

	if (from_zero)
		f->sent = 0;
	while (f->sent < f->len && (res = gl_patch_trace(f->c, f->id, f->token, f->text, f->len, &f->sent, &r, e)) ==
					   GL_TRACE_OK)
		gl_reply_free(&r);
	gl_reply_free(&r);
	if (res == GL_TRACE_ABORT)
		return KILN_E_NOTFOUND;
	return res == GL_TRACE_OK ? KILN_OK : KILN_E_IO;
}

/* GitLab assigned a job kiln cannot take (its payload is over the limit):
 * say why in its log and fail it as a system failure rather than leave it
 * running until it times out. */
static void refuse_job(struct gl_client *c, long long id, const char *token, const char *executor, const char *why)
{
	char text[512];
	struct refusal f = { .c = c, .id = id, .token = token, .text = text };
	struct gl_update u = { .state = "failed", .failure_reason = "runner_system_failure", .output = true,
			       .executor = executor };
	struct kiln_err e = { 0 };
	int n = snprintf(text, sizeof(text),
			 "\033[0KRunning with kiln %s\033[0;m\n\033[31;1mERROR: Job failed (system failure): %s\033[0;m\n",
			 PACKAGE_VERSION, why);

	f.len = n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0;
	u.crc = (uint32_t)crc32(0, (const Bytef *)text, (uInt)f.len);
	u.bytesize = f.len;
	if (gl_final_update(c, id, token, &u, refusal_flush, &f, &e))
		log_warn("job %lld: reporting it failed: %s", id, e.msg);
}

enum gl_poll gl_request_job(struct gl_client *c, const char *token, const char *system_id, const char *executor,
			    char last_update[128], char **payload, size_t *len, struct kiln_err *e)
{
	struct gl_reply r = { 0 };
	enum gl_poll res = GL_NO_JOB;
	char msg[256];

	*payload = NULL;
	*len = 0;
	if (call_json(c, "POST", "/jobs/request", token, NULL,
		      json_pack("{s:s, s:s?, s:s?, s:o?}", "token", token, "system_id", system_id, "last_update",
				last_update[0] ? last_update : NULL, "info", gl_info(executor)),
		      PAYLOAD_MAX_BYTES, &r, e)) {
		long long id;
		char jt[256], why[160];

		/* Assigned but too large to parse: GitLab must hear of it. */
		if (e->rc == KILN_E_LIMIT && r.body && payload_head(r.body, r.len, &id, jt, sizeof(jt))) {
			snprintf(why, sizeof(why), "the job payload is larger than %u MiB, more than kiln takes",
				 PAYLOAD_MAX_BYTES >> 20);
			log_error("job %lld: %s: reporting it failed", id, why);
			refuse_job(c, id, jt, executor, why);
			kiln_fail(e, KILN_E_LIMIT, "job %lld: %s: reported failed (runner_system_failure)", id, why);
		}
		goto out;
	}
	if (r.last_update[0])
		snprintf(last_update, 128, "%s", r.last_update);
	switch (r.status) {
	case 201:
		if (!r.body || !r.len) {
			kiln_fail(e, KILN_E_SYNTAX, "%s: POST /jobs/request: 201 without a job", c->api);
			break;
		}
		*payload = r.body;
		*len = r.len;
		r.body = NULL;
		res = GL_JOB;
		break;
	case 204:
		kiln_fail(e, KILN_E_NOTFOUND, "no job");
		break;
	case 403:
		kiln_fail(e, KILN_E_INVALID, "%s: the runner token was refused (403 Forbidden)", c->api);
		res = GL_UNHEALTHY;
		break;
	default:
		kiln_fail(e, KILN_E_IO, "%s: POST /jobs/request answered %ld%s", c->api, r.status,
			  reply_message(&r, msg, sizeof(msg)));
	}
out:
	gl_reply_free(&r);
	return res;
}

enum gl_put gl_update_job(struct gl_client *c, long long id, const char *token, const struct gl_update *u,
			  struct gl_reply *r, struct kiln_err *e)
{
	char path[64], sum[32], msg[256];
	json_t *o;

	snprintf(path, sizeof(path), "/jobs/%lld", id);
	o = json_pack("{s:s, s:s, s:o?}", "token", token, "state", u->state, "info", gl_info(u->executor));
	if (o && u->failure_reason && *u->failure_reason)
		json_object_set_new(o, "failure_reason", json_string(u->failure_reason));
	if (o && u->exit_code)
		json_object_set_new(o, "exit_code", json_integer(u->exit_code));
	if (o && u->output) {
		snprintf(sum, sizeof(sum), "crc32:%08x", u->crc);
		json_object_set_new(o, "checksum", json_string(sum));
		json_object_set_new(o, "output", json_pack("{s:s, s:I}", "checksum", sum, "bytesize", (json_int_t)u->bytesize));
	}
	if (call_json(c, "PUT", path, NULL, token, o, GL_MAX_REPLY, r, e))
		return GL_PUT_FAILED;
	if (r->status == 200)
		return GL_PUT_OK;
	if (r->status == 403 || r->status == 404 || !strcmp(r->job_status, "canceled") ||
	    !strcmp(r->job_status, "failed")) {
		kiln_fail(e, KILN_E_NOTFOUND, "PUT %s: the job is not running any more (HTTP %ld%s%s)", path, r->status,
			  r->job_status[0] ? ", Job-Status " : "", r->job_status);
		return GL_PUT_ABORT;
	}
	if (r->status == 202)
		return GL_PUT_ACCEPTED;
	if (r->status == 412)
		return GL_PUT_RESEND;
	kiln_fail(e, KILN_E_IO, "PUT %s answered %ld%s", path, r->status, reply_message(r, msg, sizeof(msg)));
	return GL_PUT_FAILED;
}

enum kiln_rc gl_final_update(struct gl_client *c, long long id, const char *token, const struct gl_update *u,
			     enum kiln_rc (*flush)(void *arg, bool from_zero, struct kiln_err *e), void *arg,
			     struct kiln_err *e)
{
	double deadline = mono_s() + GL_FINAL_MAX_S;
	long fail_wait = c->final_backoff_ms > 0 ? c->final_backoff_ms : 1000;
	int failures = 0;
	bool from_zero = false;
	enum kiln_rc rc = KILN_OK;

	for (;;) {
		struct gl_reply r = { 0 };
		struct kiln_err fe = { 0 };
		enum gl_put res;
		long wait;

		/* As ensureAllTraceSent: no final state while GitLab lacks the
		 * end of the log, else it closes the job with its tail missing. */
		if (flush && flush(arg, from_zero, &fe)) {
			if (fe.rc == KILN_E_NOTFOUND) {
				kiln_fail(e, KILN_E_NOTFOUND, "%s", fe.msg);
				return KILN_E_NOTFOUND;
			}
			res = GL_PUT_FAILED;
			wait = 0;
			kiln_fail(e, fe.rc ? fe.rc : KILN_E_IO, "sending the trace: %s", fe.msg);
		} else {
			from_zero = false;
			res = gl_update_job(c, id, token, u, &r, e);
			wait = (r.update_interval > 0 ? r.update_interval : 3) * 1000L;
			gl_reply_free(&r);
		}
		if (res == GL_PUT_OK)
			return KILN_OK;
		if (res == GL_PUT_ABORT)
			return KILN_E_NOTFOUND;
		if (res == GL_PUT_FAILED) {
			if (++failures > GL_FINAL_RETRIES) {
				rc = e ? e->rc : KILN_E_IO;
				break;
			}
			log_warn("job %lld: final update failed (%s): again in %ld s", id, e ? e->msg : "?",
				 fail_wait / 1000);
			wait = fail_wait;
			fail_wait = fail_wait * 2 > GL_FINAL_BACKOFF_MAX_S * 1000L ? GL_FINAL_BACKOFF_MAX_S * 1000L
										    : fail_wait * 2;
		} else if (res == GL_PUT_RESEND) {
			log_info("job %lld: GitLab asks for the whole trace again (412)", id);
			from_zero = true;
		}
		if (mono_s() + wait / 1000.0 > deadline) {
			rc = kiln_fail(e, KILN_E_LIMIT, "job %lld: the final update did not complete within %d s", id,
				       GL_FINAL_MAX_S);
			break;
		}
		if (!nap(c->stop, wait)) {
			rc = kiln_fail(e, KILN_E_IO, "job %lld: the final update was stopped", id);
			break;
		}
	}
	return rc;
}

enum gl_trace gl_patch_trace(struct gl_client *c, long long id, const char *token, const char *data, size_t total,
			     size_t *offset, struct gl_reply *r, struct kiln_err *e)
{
	char path[64], range[64], msg[256];
	size_t off = *offset > total ? total : *offset, n = total - off;

	if (n > GL_TRACE_CHUNK)
		n = GL_TRACE_CHUNK;
	/* gitlab-runner's query parameter: GitLab then keeps the log as a debug trace. */
	snprintf(path, sizeof(path), "/jobs/%lld/trace%s", id, c->debug_trace ? "?debug_trace=true" : "");
	if (n == 0) {
		reply_reset(r);
		return GL_TRACE_OK;
	}
	snprintf(range, sizeof(range), "%zu-%zu", off, off + n - 1);
	if (gl_call(c, "PATCH", path, NULL, token, "text/plain", data + off, n, range, GL_MAX_REPLY, r, e))
		return GL_TRACE_FAILED;
	switch (r->status) {
	case 202:
		*offset = r->range_end >= 0 ? (size_t)r->range_end : off + n;
		if (*offset > total)
			*offset = total;
		return GL_TRACE_OK;
	case 416:
		if (r->range_end < 0) {
			kiln_fail(e, KILN_E_SYNTAX, "PATCH %s: 416 without a Range", path);
			return GL_TRACE_FAILED;
		}
		*offset = (size_t)r->range_end > total ? total : (size_t)r->range_end;
		kiln_fail(e, KILN_E_INVALID, "PATCH %s: range %s refused (416), the server has %lld bytes", path, range,
			  r->range_end);
		return GL_TRACE_RANGE;
	case 403:
		kiln_fail(e, KILN_E_NOTFOUND, "PATCH %s: the job is not running any more (HTTP %ld)", path, r->status);
		return GL_TRACE_ABORT;
	case 404:
		/* Not an abort: as GitLab itself notes, a 404 can come from
		 * anywhere in the networking stack (a proxy, a load balancer).
		 * A job that is really gone says so to the next PUT. */
		kiln_fail(e, KILN_E_IO, "PATCH %s answered 404%s", path, reply_message(r, msg, sizeof(msg)));
		return GL_TRACE_FAILED;
	default:
		kiln_fail(e, KILN_E_IO, "PATCH %s answered %ld%s", path, r->status, reply_message(r, msg, sizeof(msg)));
		return GL_TRACE_FAILED;
	}
}

/* --- artifacts ------------------------------------------------------------ */

/* The retries of artifact transfers: 503 six tries, other server errors three. */
static bool artifacts_retry(long status, int attempt)
{
	if (status == 503)
		return attempt < 6;
	return (status == 408 || status == 429 || status >= 500) && attempt < 3;
}

/* Where a redirect points (CURLINFO_REDIRECT_URL), into buf. */
static bool redirect_url(struct gl_client *c, char *buf, size_t size)
{
	char *loc = NULL;

	if (curl_easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &loc) != CURLE_OK || !loc || strlen(loc) >= size)
		return false;
	snprintf(buf, size, "%s", loc);
	return true;
}

/* Scheme, host and port of url, lower-cased, into buf ("" when url is
 * not an absolute http(s) URL). */
static void url_origin(const char *url, char *buf, size_t size)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *p;

	buf[0] = '\0';
	if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
	    !curl_url_get(u, CURLUPART_HOST, &host, 0) && !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) &&
	    (!strcasecmp(scheme, "https") || !strcasecmp(scheme, "http")))
		snprintf(buf, size, "%s://%s:%s", scheme, host, port);
	for (p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

bool gl_same_origin(const char *a, const char *b)
{
	char oa[512], ob[512];

	url_origin(a, oa, sizeof(oa));
	url_origin(b, ob, sizeof(ob));
	return oa[0] && !strcmp(oa, ob);
}

enum kiln_rc gl_upload_artifacts(struct gl_client *c, long long id, const char *token, const char *file_path,
				 const char *filename, const char *type, const char *format, const char *expire_in,
				 struct kiln_err *e)
{
	char url[2048], next[2048], hdr[512], what[96], msg[256];
	struct curl_slist *h = NULL;
	struct gl_reply r = { 0 };
	struct call k = { .method = "POST", .url = url, .what = what, .out_fd = -1, .max_reply = GL_MAX_REPLY,
			  .max_attempts = 1 };
	enum kiln_rc rc = KILN_OK;
	char *q_type = NULL, *q_format = NULL, *q_expire = NULL;
	int attempt, redirects = 0;

	if (!c->curl && !(c->curl = curl_easy_init()))
		return kiln_fail(e, KILN_E_NOMEM, "artifacts: cannot make a curl handle");
	snprintf(what, sizeof(what), "POST /jobs/%lld/artifacts", id);
	q_type = curl_easy_escape(c->curl, type, 0);
	q_format = curl_easy_escape(c->curl, format, 0);
	q_expire = expire_in && *expire_in ? curl_easy_escape(c->curl, expire_in, 0) : NULL;
	if (!q_type || !q_format || (expire_in && *expire_in && !q_expire)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", what);
		goto out;
	}
	if ((size_t)snprintf(url, sizeof(url), "%s/jobs/%lld/artifacts?artifact_format=%s&artifact_type=%s%s%s", c->api,
			     id, q_format, q_type, q_expire ? "&expire_in=" : "", q_expire ? q_expire : "") >= sizeof(url)) {
		rc = kiln_fail(e, KILN_E_LIMIT, "%s: URL too long", what);
		goto out;
	}
	snprintf(hdr, sizeof(hdr), "JOB-TOKEN: %s", token);
	h = curl_slist_append(h, hdr);
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	if (!h) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", what);
		goto out;
	}
	k.headers = h;
	/* The retry loop is here, not in perform(): each try gets a fresh body. */
	for (attempt = 1;; attempt++) {
		curl_mimepart *part;
		bool again;

		k.mime = curl_mime_init(c->curl);
		part = k.mime ? curl_mime_addpart(k.mime) : NULL;
		if (!part || curl_mime_name(part, "file") || curl_mime_filedata(part, file_path) ||
		    curl_mime_filename(part, filename) || curl_mime_type(part, "application/octet-stream")) {
			rc = kiln_fail(e, KILN_E_NOMEM, "%s: cannot make the request body from %s", what, file_path);
			break;
		}
		rc = perform(c, &k, &r, e);
		curl_mime_free(k.mime);
		k.mime = NULL;
		/* 307: the same request, elsewhere, which gets the job token
		 * too: only on the same origin (scheme, host and port: no
		 * https to http, no other host). */
		if (!rc && r.status == 307 && redirects < 3 && redirect_url(c, next, sizeof(next))) {
			if (!gl_same_origin(c->api, next)) {
				rc = kiln_fail(e, KILN_E_INVALID, "%s: redirected off %.200s (to %.200s): not followed with the job token",
					       what, c->api, next);
				break;
			}
			snprintf(url, sizeof(url), "%s", next);
			redirects++;
			attempt--;
			continue;
		}
		again = rc ? e->rc == KILN_E_IO && !(c->stop && *c->stop) && attempt < 3
			   : artifacts_retry(r.status, attempt);
		if (!again)
			break;
		log_debug("%s: %s, try %d", what, rc ? e->msg : "server error", attempt + 1);
		if (!nap(c->stop, r.retry_after_ms >= 0 ? r.retry_after_ms : backoff_ms(c, attempt))) {
			rc = kiln_fail(e, KILN_E_IO, "%s: stopped", what);
			break;
		}
	}
	if (rc)
		goto out;
	if (r.status == 201 || r.status == 200)
		goto out;
	if (r.status == 413)
		rc = kiln_fail(e, KILN_E_LIMIT, "%s: too large for GitLab (413)%s", what, reply_message(&r, msg, sizeof(msg)));
	else
		rc = kiln_fail(e, r.status == 403 ? KILN_E_INVALID : KILN_E_IO, "%s answered %ld%s", what, r.status,
			       reply_message(&r, msg, sizeof(msg)));
out:
	curl_mime_free(k.mime);
	curl_slist_free_all(h);
	curl_free(q_type);
	curl_free(q_format);
	curl_free(q_expire);
	gl_reply_free(&r);
	return rc;
}

enum kiln_rc gl_download_artifacts(struct gl_client *c, long long id, const char *token, const char *path,
				   uint64_t max_bytes, struct kiln_err *e)
{
	char url[2048], hdr[512], what[96];
	struct curl_slist *h = NULL;
	struct gl_reply r = { 0 };
	struct call k = { .method = "GET", .url = url, .what = what, .max_reply = (size_t)max_bytes,
			  .max_attempts = 3, .retry = artifacts_retry };
	enum kiln_rc rc;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	snprintf(what, sizeof(what), "GET /jobs/%lld/artifacts", id);
	if (fd < 0)
		return kiln_fail_errno(e, "%s: creating %s", what, path);
	k.out_fd = fd;
	snprintf(url, sizeof(url), "%s/jobs/%lld/artifacts", c->api, id);
	snprintf(hdr, sizeof(hdr), "JOB-TOKEN: %s", token);
	h = curl_slist_append(NULL, hdr);
	k.headers = h;
	rc = h ? perform(c, &k, &r, e) : kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", what);
	/* Object storage: the redirect carries its own credentials; the job
	 * token does not follow it. */
	if (!rc && (r.status == 302 || r.status == 307 || r.status == 301 || r.status == 303) &&
	    redirect_url(c, url, sizeof(url))) {
		k.headers = NULL;
		snprintf(what, sizeof(what), "GET /jobs/%lld/artifacts (redirected)", id);
		rc = perform(c, &k, &r, e);
	}
	if (!rc && r.status != 200)
		rc = kiln_fail(e, r.status == 404 ? KILN_E_NOTFOUND : KILN_E_IO, "%s answered %ld", what, r.status);
	if (close(fd) < 0 && !rc)
		rc = kiln_fail_errno(e, "writing %s", path);
	if (rc)
		unlink(path);
	curl_slist_free_all(h);
	gl_reply_free(&r);
	return rc;
}

/* --- failure reasons ----------------------------------------------------- */

const char *gl_failure_reason(const char *reason, const char *const *supported, size_t n)
{
	static const char *const always[] = { "script_failure", "runner_system_failure", "job_execution_timeout" };
	static const struct {
		const char *reason, *fallback;
	} known[] = {
		{ "image_pull_failure", "runner_system_failure" },
		{ "runner_configuration_error", "script_failure" },
		{ "runner_external_dependency_failure", "runner_system_failure" },
		{ "runner_interrupted", NULL },
		{ "runner_unsupported", "runner_system_failure" },
		{ "unknown_failure", NULL },
	};
	size_t i, j;

	if (!reason || !*reason)
		return "script_failure";
	for (i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		if (!strcmp(reason, always[i]))
			return always[i];
	for (j = 0; j < n; j++)
		if (supported[j] && !strcmp(reason, supported[j]))
			return supported[j];
	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(reason, known[i].reason) && known[i].fallback)
			return gl_failure_reason(known[i].fallback, supported, n);
	/* job_canceled (kiln's "canceled") is internal: it goes out as unknown_failure. */
	return "unknown_failure";
}
