#include "github/client.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "build-config.h"
#include "lib/clock.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/vec.h"

#define API_DEFAULT "https://api.github.com"

struct gh_etag_slot {
	char *url;
	char *etag;
	char *body;
	size_t len;
	char next[1024];
};

void gh_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool local_host(const char *hostpart)
{
	return !strncmp(hostpart, "127.0.0.1", 9) || !strncmp(hostpart, "localhost", 9);
}

enum kiln_rc gh_client_init(struct gh_client *c, const char *api_url, const char *ca_file, struct kiln_err *e)
{
	size_t n;

	memset(c, 0, sizeof(*c));
	if (!api_url || !*api_url)
		api_url = API_DEFAULT;
	if (strncmp(api_url, "https://", 8) && !(strncmp(api_url, "http://", 7) == 0 && local_host(api_url + 7)))
		return kiln_fail(e, KILN_E_INVALID, "github api_url '%s': not an https:// URL", api_url);
	n = strlen(api_url);
	while (n > 0 && api_url[n - 1] == '/')
		n--;
	if (n >= sizeof(c->api))
		return kiln_fail(e, KILN_E_INVALID, "github api_url: longer than %zu bytes", sizeof(c->api) - 1);
	memcpy(c->api, api_url, n);
	if (ca_file && strlen(ca_file) >= sizeof(c->ca_file))
		return kiln_fail(e, KILN_E_INVALID, "github tls_ca_file: path too long");
	snprintf(c->ca_file, sizeof(c->ca_file), "%s", ca_file ? ca_file : "");
	c->max_attempts = 5;
	c->backoff_min_ms = 1000;
	c->backoff_max_ms = 60000;
	c->secondary_min_ms = 60000;
	c->max_wait_ms = 120000;
	c->mutation_gap_ms = 1000;
	c->timeout_s = 60;
	c->rl_remaining = -1;
	return KILN_OK;
}

static void wipe_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void gh_client_free(struct gh_client *c)
{
	unsigned i;

	if (c->cache) {
		for (i = 0; i < GH_ETAG_SLOTS; i++) {
			free(c->cache[i].url);
			free(c->cache[i].etag);
			free(c->cache[i].body);
		}
		free(c->cache);
	}
	if (c->curl)
		curl_easy_cleanup(c->curl);
	wipe_free(c->bearer);
	memset(c, 0, sizeof(*c));
}

void gh_reply_free(struct gh_reply *r)
{
	/* Replies carry tokens (access_tokens) and JIT configurations. */
	if (r->body) {
		OPENSSL_cleanse(r->body, r->len);
		free(r->body);
	}
	memset(r, 0, sizeof(*r));
}

enum kiln_rc gh_client_set_bearer(struct gh_client *c, const char *token, struct kiln_err *e)
{
	char *t = NULL;

	if (token && !(t = strdup(token)))
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	wipe_free(c->bearer);
	c->bearer = t;
	return KILN_OK;
}

static bool valid_name(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > GH_NAME_MAX || (n <= 2 && s[0] == '.' && (n == 1 || s[1] == '.')))
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

enum kiln_rc gh_scope_parse(const char *url, struct gh_scope *s, char *api, struct kiln_err *e)
{
	const char *p, *host, *slash, *o, *r = NULL, *end;
	size_t hlen, olen, rlen = 0;

	memset(s, 0, sizeof(*s));
	if (!strncmp(url, "https://", 8))
		p = url + 8;
	else if (!strncmp(url, "http://", 7) && local_host(url + 7))
		p = url + 7;
	else
		return kiln_fail(e, KILN_E_INVALID, "github url '%s': not https://HOST/ORG or https://HOST/OWNER/REPO",
				 url);
	host = p;
	slash = strchr(host, '/');
	if (!slash || slash == host)
		return kiln_fail(e, KILN_E_INVALID, "github url '%s': no organization or owner", url);
	hlen = (size_t)(slash - host);
	o = slash + 1;
	end = o + strlen(o);
	while (end > o && end[-1] == '/')
		end--;
	slash = memchr(o, '/', (size_t)(end - o));
	olen = slash ? (size_t)(slash - o) : (size_t)(end - o);
	if (slash) {
		r = slash + 1;
		rlen = (size_t)(end - r);
		if (rlen > 4 && !memcmp(r + rlen - 4, ".git", 4))
			rlen -= 4;
	}
	if (!valid_name(o, olen))
		return kiln_fail(e, KILN_E_INVALID, "github url '%s': '%.*s' is not an organization or owner name", url,
				 (int)(olen > 120 ? 120 : olen), o);
	if (r && (memchr(r, '/', rlen) || !valid_name(r, rlen)))
		return kiln_fail(e, KILN_E_INVALID, "github url '%s': '%.*s' is not a repository name", url,
				 (int)(rlen > 120 ? 120 : rlen), r);
	memcpy(s->owner, o, olen);
	if (r)
		memcpy(s->repo, r, rlen);
	if (api) {
		if (hlen == 10 && !memcmp(host, "github.com", 10))
			snprintf(api, 1024, "%s", API_DEFAULT);
		else if (hlen + 16 >= 1024)
			return kiln_fail(e, KILN_E_INVALID, "github url '%s': host too long", url);
		else
			snprintf(api, 1024, "%.*s%.*s/api/v3", (int)(host - url), url, (int)hlen, host);
	}
	return KILN_OK;
}

bool gh_urlenc(char *buf, size_t size, size_t *n, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			if (*n + 2 > size)
				return false;
			buf[(*n)++] = (char)ch;
		} else {
			if (*n + 4 > size)
				return false;
			buf[(*n)++] = '%';
			buf[(*n)++] = hex[ch >> 4];
			buf[(*n)++] = hex[ch & 15];
		}
	}
	buf[*n] = '\0';
	return true;
}

void gh_link_next(const char *link, char *next, size_t size)
{
	const char *p = link;

	next[0] = '\0';
	/* <url>; rel="next", <url>; rel="last" */
	while ((p = strchr(p, '<'))) {
		const char *close = strchr(p, '>'), *semi, *comma;

		if (!close)
			return;
		comma = strchr(close, ',');
		semi = close + 1;
		if (comma ? (size_t)(comma - semi) : strlen(semi)) {
			size_t plen = comma ? (size_t)(comma - semi) : strlen(semi);
			const char *rel = memmem(semi, plen, "rel=\"next\"", 10);

			if (rel) {
				size_t ulen = (size_t)(close - p - 1);

				if (ulen < size) {
					memcpy(next, p + 1, ulen);
					next[ulen] = '\0';
				}
				return;
			}
		}
		p = close + 1;
	}
}

/* --- one transfer -------------------------------------------------------- */

struct xfer {
	struct gh_reply *r;
	size_t cap, max;
	bool over;
	char etag[256];
	long remaining;
	long long reset;
	long retry_after_s;  /* -1 without */
	const volatile sig_atomic_t *stop;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

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
	struct gh_reply *r = x->r;
	size_t n = size * nmemb, klen;
	char val[1100];
	const char *colon, *v, *end = data + n;

	if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
		r->next[0] = r->request_id[0] = x->etag[0] = '\0';
		x->remaining = -1;
		x->reset = 0;
		x->retry_after_s = -1;
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
	if (IS("ETag")) {
		http_copy_value(x->etag, sizeof(x->etag), val, strlen(val));
	} else if (IS("Link")) {
		gh_link_next(val, r->next, sizeof(r->next));
	} else if (IS("x-ratelimit-remaining")) {
		x->remaining = strtol(val, NULL, 10);
	} else if (IS("x-ratelimit-reset")) {
		x->reset = strtoll(val, NULL, 10);
	} else if (IS("retry-after")) {
		x->retry_after_s = http_retry_after_s(val, 86400);
	} else if (IS("X-GitHub-Request-Id")) {
		http_copy_value(r->request_id, sizeof(r->request_id), val, strlen(val));
	}
#undef IS
	return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct xfer *x = arg;

	return x->stop && *x->stop ? 1 : 0;
}

/* Sleep ms, in slices so that stop is seen. false when stop was set. */
static bool nap(const volatile sig_atomic_t *stop, long ms)
{
	int64_t until = mono_ms() + ms;

	for (;;) {
		int64_t left = until - mono_ms();
		struct timespec ts;

		if (stop && *stop)
			return false;
		if (left <= 0)
			return true;
		if (left > 100)
			left = 100;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000L;
		nanosleep(&ts, NULL);
	}
}

static long backoff_ms(const struct gh_client *c, int attempt)
{
	long ms = c->backoff_min_ms;
	unsigned r;

	while (attempt-- > 1 && ms < c->backoff_max_ms)
		ms *= 2;
	if (ms > c->backoff_max_ms)
		ms = c->backoff_max_ms;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (unsigned)rand();
	/* Jitter: between half and all of it. */
	return ms / 2 + (long)(r % (unsigned)(ms / 2 + 1));
}

static struct gh_etag_slot *cache_find(struct gh_client *c, const char *url)
{
	unsigned i;

	if (!c->cache)
		return NULL;
	for (i = 0; i < GH_ETAG_SLOTS; i++)
		if (c->cache[i].url && !strcmp(c->cache[i].url, url))
			return &c->cache[i];
	return NULL;
}

/* Remember a 200's ETag and body for url; failing to is only a lost 304. */
static void cache_store(struct gh_client *c, const char *url, const char *etag, const struct gh_reply *r)
{
	struct gh_etag_slot *s;
	char *u, *t, *b = NULL;

	if (!c->cache && !(c->cache = calloc(GH_ETAG_SLOTS, sizeof(*c->cache))))
		return;
	s = cache_find(c, url);
	if (!s) {
		/* Round robin: the oldest entry goes. */
		s = &c->cache[c->cache_next];
		c->cache_next = (c->cache_next + 1) % GH_ETAG_SLOTS;
	}
	u = strdup(url);
	t = strdup(etag);
	if (r->len && (b = malloc(r->len + 1))) {
		memcpy(b, r->body, r->len);
		b[r->len] = '\0';
	}
	if (!u || !t || (r->len && !b)) {
		free(u);
		free(t);
		free(b);
		return;
	}
	free(s->url);
	free(s->etag);
	free(s->body);
	s->url = u;
	s->etag = t;
	s->body = b;
	s->len = r->len;
	snprintf(s->next, sizeof(s->next), "%s", r->next);
}

static bool is_mutation(const char *m)
{
	return strcmp(m, "GET") && strcmp(m, "HEAD");
}

/* A 403 or 429 that is a rate limit, not a refusal (GitHub: a 403 with
 * remaining 0 or retry-after, or whose message says so). */
static bool is_rate_limited(const struct gh_reply *r, const struct xfer *x)
{
	if (r->status == 429)
		return true;
	if (r->status != 403)
		return false;
	return x->retry_after_s >= 0 || x->remaining == 0 || (r->body && strcasestr(r->body, "rate limit"));
}

static void fmt_until(char *buf, size_t size, long wait_ms)
{
	time_t at = time(NULL) + (wait_ms + 999) / 1000;
	struct tm tm;

	gmtime_r(&at, &tm);
	strftime(buf, size, "%H:%M:%S UTC", &tm);
}

enum kiln_rc gh_request(struct gh_client *c, const struct gh_req *q, struct gh_reply *r, struct kiln_err *e)
{
	const char *method = q->method ? q->method : "GET";
	bool mutation = is_mutation(method), get = !strcmp(method, "GET");
	struct curl_slist *hh = NULL;
	struct xfer x;
	char url[2048], hdr[4200], errbuf[CURL_ERROR_SIZE], until[32];
	char *body = NULL;
	int attempt, limited = 0;
	enum kiln_rc rc = KILN_OK;
	CURLcode cc = CURLE_OK;
	struct gh_etag_slot *slot;

	memset(r, 0, sizeof(*r));
	if (!strncmp(q->path, "https://", 8) || !strncmp(q->path, "http://", 7)) {
		/* A Link from a reply: only ever to the same API, whose token it gets. */
		size_t al = strlen(c->api);

		if (strncmp(q->path, c->api, al) || (q->path[al] != '/' && q->path[al] != '?'))
			return kiln_fail(e, KILN_E_INVALID, "github: a link to '%.200s' leaves %s", q->path, c->api);
		if (snprintf(url, sizeof(url), "%s", q->path) >= (int)sizeof(url))
			return kiln_fail(e, KILN_E_INVALID, "github: URL too long");
	} else if (snprintf(url, sizeof(url), "%s%s", c->api, q->path) >= (int)sizeof(url)) {
		return kiln_fail(e, KILN_E_INVALID, "github: URL too long: %.100s...", q->path);
	}
	if (!c->curl && !(c->curl = curl_easy_init()))
		return kiln_fail(e, KILN_E_NOMEM, "github: curl_easy_init failed");
	if (q->body && !(body = json_dumps(q->body, JSON_COMPACT)))
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");

	for (attempt = 1; attempt <= c->max_attempts; attempt++) {
		int64_t now = mono_ms();
		long wait;

		if (c->blocked_until_ms > now) {
			wait = (long)(c->blocked_until_ms - now);
			if (wait > c->max_wait_ms) {
				fmt_until(until, sizeof(until), wait);
				rc = kiln_fail(e, KILN_E_LIMIT, "github: %s %s: rate limited until %s", method, q->path,
					       until);
				goto out;
			}
			if (!nap(c->stop, wait))
				goto stopped;
		}
		if (mutation && c->last_mutation_ms && mono_ms() - c->last_mutation_ms < c->mutation_gap_ms &&
		    !nap(c->stop, (long)(c->last_mutation_ms + c->mutation_gap_ms - mono_ms())))
			goto stopped;
		if (!q->bearer && !q->no_auth && c->authorize && (rc = c->authorize(c->authorize_arg, c, e)))
			goto out;

		gh_reply_free(r);
		memset(&x, 0, sizeof(x));
		x.r = r;
		x.max = q->max_reply ? q->max_reply : GH_MAX_REPLY;
		x.remaining = -1;
		x.retry_after_s = -1;
		x.stop = c->stop;
		curl_slist_free_all(hh);
		hh = NULL;
		hh = curl_slist_append(hh, "Accept: application/vnd.github+json");
		hh = curl_slist_append(hh, "X-GitHub-Api-Version: 2022-11-28");
		hh = curl_slist_append(hh, "Expect:");
		if (body)
			hh = curl_slist_append(hh, "Content-Type: application/json");
		if (!q->no_auth && (q->bearer || c->bearer)) {
			snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", q->bearer ? q->bearer : c->bearer);
			hh = curl_slist_append(hh, hdr);
			OPENSSL_cleanse(hdr, sizeof(hdr));
		}
		slot = get && !q->no_cache ? cache_find(c, url) : NULL;
		if (slot && snprintf(hdr, sizeof(hdr), "If-None-Match: %s", slot->etag) < (int)sizeof(hdr))
			hh = curl_slist_append(hh, hdr);
		if (!hh) {
			rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
			goto out;
		}
		curl_easy_reset(c->curl);
		errbuf[0] = '\0';
		curl_easy_setopt(c->curl, CURLOPT_URL, url);
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
		if (c->ca_file[0])
			curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
		if (get) {
			/* GitHub moves renamed repositories with 301/302/307;
			 * curl sends Authorization to the same host only. */
			curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 1L);
			curl_easy_setopt(c->curl, CURLOPT_MAXREDIRS, 3L);
#if LIBCURL_VERSION_NUM >= 0x075500
			curl_easy_setopt(c->curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
			curl_easy_setopt(c->curl, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
		}
		if (body) {
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
		}
		if (strcmp(method, "GET") && !(body && !strcmp(method, "POST")))
			curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
		if (!strcmp(method, "POST") && !body) {
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
		}
		c->requests++;
		cc = curl_easy_perform(c->curl);
		if (mutation)
			c->last_mutation_ms = mono_ms();
		r->attempts = attempt;
		if (c->stop && *c->stop)
			goto stopped;
		if (x.over) {
			rc = kiln_fail(e, KILN_E_LIMIT, "github: %s %s: reply larger than %zu bytes", method, q->path,
				       x.max);
			goto out;
		}
		if (cc != CURLE_OK) {
			r->status = 0;
			if (attempt < c->max_attempts && !nap(c->stop, backoff_ms(c, attempt)))
				goto stopped;
			continue;
		}
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
		if (x.remaining >= 0)
			c->rl_remaining = x.remaining;
		if (x.reset > 0)
			c->rl_reset = x.reset;
		if (is_rate_limited(r, &x)) {
			/* GitHub's order: retry-after; else the reset when none
			 * is left; else a minute, doubling while it goes on. */
			if (x.retry_after_s >= 0)
				wait = x.retry_after_s * 1000;
			else if (x.remaining == 0 && x.reset > 0)
				wait = (long)(x.reset - (long long)time(NULL)) * 1000 + 1000;
			else
				wait = c->secondary_min_ms << (limited < 6 ? limited : 6);
			if (wait < 0)
				wait = 0;
			limited++;
			c->blocked_until_ms = mono_ms() + wait;
			if (wait <= c->max_wait_ms)
				log_warn("github: %s %s: rate limited (%ld), waiting %ld ms", method, q->path, r->status,
					 wait);
			continue;
		}
		if (r->status == 401 && !q->bearer && !q->no_auth)
			c->bearer_refused = true; /* revoked or expired early: the next authorize renews it */
		if (x.remaining == 0 && x.reset > 0)
			c->blocked_until_ms = mono_ms() + ((long)(x.reset - (long long)time(NULL)) + 1) * 1000;
		if (r->status >= 500 && r->status <= 599) {
			if (attempt < c->max_attempts && !nap(c->stop, backoff_ms(c, attempt)))
				goto stopped;
			continue;
		}
		break;
	}
	if (cc != CURLE_OK) {
		rc = kiln_fail(e, KILN_E_IO, "github: %s %s: %s", method, q->path,
			       errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	if (attempt > c->max_attempts && limited && is_rate_limited(r, &x)) {
		fmt_until(until, sizeof(until), (long)(c->blocked_until_ms - mono_ms()));
		rc = kiln_fail(e, KILN_E_LIMIT, "github: %s %s: rate limited until %s", method, q->path, until);
		goto out;
	}
	if (get && r->status == 200 && x.etag[0] && r->len <= GH_ETAG_BODY_MAX && !q->no_cache)
		cache_store(c, url, x.etag, r);
	if (get && r->status == 304) {
		c->not_modified++;
		slot = cache_find(c, url);
		if (slot && slot->len) {
			if (!(r->body = malloc(slot->len + 1))) {
				rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
				goto out;
			}
			memcpy(r->body, slot->body, slot->len + 1);
			r->len = slot->len;
		}
		if (slot)
			snprintf(r->next, sizeof(r->next), "%s", slot->next);
	}
	goto out;
stopped:
	rc = kiln_fail(e, KILN_E_IO, "github: %s %s: stopped", method, q->path);
out:
	if (rc)
		gh_reply_free(r); /* callers free r only after KILN_OK */
	curl_slist_free_all(hh);
	if (body) {
		OPENSSL_cleanse(body, strlen(body));
		free(body);
	}
	return rc;
}

const char *gh_reply_error(const struct gh_reply *r, char *buf, size_t size)
{
	json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
	json_t *errs = j ? json_object_get(j, "errors") : NULL;
	const char *detail = NULL;

	if (json_is_array(errs) && json_array_size(errs)) {
		json_t *e0 = json_array_get(errs, 0);
		detail = json_is_string(e0) ? json_string_value(e0) : json_string_value(json_object_get(e0, "message"));
	}
	if (msg && detail)
		snprintf(buf, size, "%ld %.200s: %.200s", r->status, msg, detail);
	else if (msg)
		snprintf(buf, size, "%ld %.300s", r->status, msg);
	else
		snprintf(buf, size, "%ld", r->status);
	json_decref(j);
	return buf;
}

enum kiln_rc gh_fail_reply(struct kiln_err *e, const struct gh_reply *r, const char *what)
{
	char buf[420];
	enum kiln_rc rc = r->status == 404			     ? KILN_E_NOTFOUND
			  : r->status == 429			     ? KILN_E_LIMIT
			  : r->status >= 400 && r->status < 500 ? KILN_E_INVALID
								     : KILN_E_IO;

	gh_reply_error(r, buf, sizeof(buf));
	if (r->request_id[0])
		return kiln_fail(e, rc, "%s: %s (request %s)", what, buf, r->request_id);
	return kiln_fail(e, rc, "%s: %s", what, buf);
}

enum kiln_rc gh_get_json(struct gh_client *c, const char *path, const char *what, json_t **out, struct kiln_err *e)
{
	struct gh_req q = { .path = path };
	struct gh_reply r;
	json_error_t je;
	enum kiln_rc rc;

	*out = NULL;
	if ((rc = gh_request(c, &q, &r, e)))
		return rc;
	if (r.status != 200 && r.status != 304) {
		rc = gh_fail_reply(e, &r, what);
	} else if (!r.body || !(*out = json_loadb(r.body, r.len, 0, &je)) || !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: the reply is not a JSON object", what);
	}
	gh_reply_free(&r);
	return rc;
}

enum kiln_rc gh_get_all(struct gh_client *c, const char *path, const char *key, size_t max_items, const char *what,
			json_t **items, struct kiln_err *e)
{
	char next[1024];
	json_t *all = json_array(), *page = NULL, *arr;
	struct gh_reply r = { 0 };
	enum kiln_rc rc = KILN_OK;
	int pages = 0;

	*items = NULL;
	if (!all)
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	if (!max_items)
		max_items = GH_MAX_ITEMS;
	snprintf(next, sizeof(next), "%s", path);
	while (next[0]) {
		struct gh_req q = { .path = next };

		if (++pages > GH_MAX_PAGES) {
			rc = kiln_fail(e, KILN_E_LIMIT, "%s: more than %d pages", what, GH_MAX_PAGES);
			goto out;
		}
		if ((rc = gh_request(c, &q, &r, e)))
			goto out;
		if (r.status != 200 && r.status != 304) {
			rc = gh_fail_reply(e, &r, what);
			goto out;
		}
		page = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
		arr = key ? json_object_get(page, key) : page;
		if (!json_is_array(arr)) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "%s: the reply has no array%s%s", what, key ? " " : "",
				       key ? key : "");
			goto out;
		}
		if (json_array_size(all) + json_array_size(arr) > max_items) {
			rc = kiln_fail(e, KILN_E_LIMIT, "%s: more than %zu items", what, max_items);
			goto out;
		}
		if (json_array_extend(all, arr)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
			goto out;
		}
		json_decref(page);
		page = NULL;
		snprintf(next, sizeof(next), "%s", r.next);
		gh_reply_free(&r);
	}
	*items = all;
	all = NULL;
out:
	json_decref(page);
	json_decref(all);
	gh_reply_free(&r);
	return rc;
}
