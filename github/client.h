/* The GitHub REST API client (shared/ref/github-runner-protocol.md,
 * sections 2d and 3) on libcurl: HTTPS checked against an optional CA
 * file; on every request Accept: application/vnd.github+json,
 * X-GitHub-Api-Version: 2022-11-28 and User-Agent "kiln <version>";
 * replies capped in size; GETs conditional on the ETag of the last reply
 * for the same URL (a 304 costs nothing against the rate limit and gives
 * back the cached body); pagination through Link rel="next"; and the
 * waits GitHub documents: at least 1 s between mutations, on a rate-limit
 * reply (403/429) retry-after, else x-ratelimit-reset when remaining is 0,
 * else at least a minute, then doubling; on 5xx and network errors a
 * jittered doubling backoff. GETs follow up to 3 redirects (https only:
 * GitHub moves renamed repositories).
 *
 * A gh_client keeps one curl handle and its cache: one thread at a time.
 * curl_global_init must have run (gh_global_init, or gl_global_init). */
#ifndef KILN_GHCLIENT_H
#define KILN_GHCLIENT_H

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define GH_MAX_REPLY (4u << 20)     /* one page: 100 runs are ~0.5 MiB */
#define GH_MAX_PAGES 100            /* pages followed by one gh_get_all */
#define GH_MAX_ITEMS 10000          /* items gathered by one gh_get_all */
#define GH_ETAG_SLOTS 512           /* URLs whose last reply is cached */
#define GH_ETAG_BODY_MAX (1u << 20) /* a reply larger than this is not cached */
#define GH_NAME_MAX 100             /* an owner's or repository's name */

/* Where runners register: an organization (repo "") or one repository. */
struct gh_scope {
	char owner[GH_NAME_MAX + 1];
	char repo[GH_NAME_MAX + 1];
};

struct gh_etag_slot;

struct gh_client {
	char api[1024];             /* https://api.github.com, or https://HOST/api/v3 */
	char ca_file[PATH_MAX];     /* "" for the system's CAs */
	char *bearer;               /* Authorization: Bearer value (auth.c sets it); NULL: none */
	/* Called before each request that uses bearer, to make it valid
	 * (an App refreshes its installation token here). NULL: none. */
	enum kiln_rc (*authorize)(void *arg, struct gh_client *c, struct kiln_err *e);
	void *authorize_arg;
	const volatile sig_atomic_t *stop; /* set: waits and transfers end (KILN_E_IO) */
	int max_attempts;           /* tries of one request, 5 */
	long backoff_min_ms;        /* 5xx/network: first wait, 1000 */
	long backoff_max_ms;        /* 5xx/network: longest wait, 60000 */
	long secondary_min_ms;      /* a rate limit without retry-after/reset: 60000 */
	long max_wait_ms;           /* a longer rate-limit wait is not slept: KILN_E_LIMIT; 120000 */
	long mutation_gap_ms;       /* between POST/PATCH/PUT/DELETE, 1000 */
	long timeout_s;             /* one transfer, 60 */
	int64_t blocked_until_ms;   /* mono_ms(): rate limited until then (0: not) */
	int64_t last_mutation_ms;
	bool bearer_refused;        /* a 401 came for bearer: authorize should replace it */
	long rl_remaining;          /* x-ratelimit-remaining of the last reply, -1 unknown */
	long long rl_reset;         /* x-ratelimit-reset (epoch s), 0 unknown */
	uint64_t requests;          /* requests sent */
	uint64_t not_modified;      /* of which answered 304 */
	struct gh_etag_slot *cache; /* GH_ETAG_SLOTS, made on first use */
	unsigned cache_next;
	void *curl;
};

struct gh_reply {
	long status;           /* HTTP status of the last try (a 304 stays 304); 0: none came */
	char *body;            /* NUL-terminated (the cached one after a 304); NULL when empty */
	size_t len;
	char next[1024];       /* Link rel="next", "" without */
	char request_id[64];   /* X-GitHub-Request-Id, for error messages */
	int attempts;
};

/* Once per process, before any thread. */
void gh_global_init(void);

/* Set c up for api_url (NULL or "": https://api.github.com), trusting
 * ca_file (NULL or "": the system's CAs). KILN_E_INVALID naming the URL
 * when it is not https:// (http:// only to 127.0.0.1 or localhost). */
enum kiln_rc gh_client_init(struct gh_client *c, const char *api_url, const char *ca_file, struct kiln_err *e);
void gh_client_free(struct gh_client *c);
void gh_reply_free(struct gh_reply *r);

/* Replace the bearer token (copied; NULL: none). The old one is wiped. */
enum kiln_rc gh_client_set_bearer(struct gh_client *c, const char *token, struct kiln_err *e);

/* The scope and default API of a runner entry's url: https://github.com/ORG
 * or https://github.com/OWNER/REPO (another host: GitHub Enterprise
 * Server, whose API is https://HOST/api/v3). api (1024 bytes) may be NULL.
 * KILN_E_INVALID naming the URL and what is wrong. */
enum kiln_rc gh_scope_parse(const char *url, struct gh_scope *s, char *api, struct kiln_err *e);

struct gh_req {
	const char *method;    /* NULL: GET */
	const char *path;      /* "/repos/o/r/..." under api, or a whole URL under api (Link) */
	const json_t *body;    /* sent as JSON; NULL: none */
	const char *bearer;    /* instead of c->bearer, without authorize (an App's JWT) */
	bool no_auth;          /* no Authorization at all */
	bool no_cache;         /* a GET without If-None-Match */
	size_t max_reply;      /* 0: GH_MAX_REPLY */
};

/* One request through the waits and retries. KILN_OK when a reply came,
 * whatever its status (r->status); a 304 puts the cached body in r.
 * KILN_E_LIMIT when rate limited for longer than max_wait_ms (the message
 * says until when; calls before then fail at once); KILN_E_IO naming the
 * call when no reply came after the retries, or when stop was set.
 * After an error r holds nothing (no gh_reply_free needed). */
enum kiln_rc gh_request(struct gh_client *c, const struct gh_req *q, struct gh_reply *r, struct kiln_err *e);

/* GitHub's error for a reply: "STATUS: message" from the body's message
 * (and the first errors[].message), cut to fit size. */
const char *gh_reply_error(const struct gh_reply *r, char *buf, size_t size);

/* A failed reply as e: "what: 403 Resource not accessible by integration
 * (request ID)". KILN_E_NOTFOUND for 404, KILN_E_LIMIT for 403/429 rate
 * limits, KILN_E_INVALID for other 4xx, KILN_E_IO for the rest. */
enum kiln_rc gh_fail_reply(struct kiln_err *e, const struct gh_reply *r, const char *what);

/* GET path and each page after it (Link rel="next"), gathering the array
 * key of each page's object (key NULL: the page is the array) into
 * *items (new reference), at most max_items (0: GH_MAX_ITEMS) items and
 * GH_MAX_PAGES pages, else KILN_E_LIMIT. A non-200 reply is an error as
 * gh_fail_reply makes it, naming what. A next link outside api is refused. */
enum kiln_rc gh_get_all(struct gh_client *c, const char *path, const char *key, size_t max_items, const char *what,
			json_t **items, struct kiln_err *e);

/* GET path, 200 required: *out the parsed object (new reference). */
enum kiln_rc gh_get_json(struct gh_client *c, const char *path, const char *what, json_t **out, struct kiln_err *e);

/* The value of a Link header's rel="next" into next (size bytes; "" when
 * absent or too long). */
void gh_link_next(const char *link, char *next, size_t size);

/* Append s to buf (size bytes, at *n) percent-encoded for a path segment
 * or query value. false when it does not fit. */
bool gh_urlenc(char *buf, size_t size, size_t *n, const char *s);

#endif
