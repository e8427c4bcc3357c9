/* The GitLab runner API client (shared/ref/gitlab-runner-protocol.md,
 * sections 0-5) on libcurl: HTTPS checked against the runner's CA file,
 * User-Agent "kiln <version>", an X-Request-Id per request, the retry
 * layer (408, 429, 500, 502, 503, 504 and >= 512, and network errors: up
 * to GL_MAX_ATTEMPTS tries, waiting Retry-After or RateLimit-ResetTime,
 * else 100 ms doubling with jitter up to 60 s), and replies capped in size.
 *
 * A gl_client keeps one curl handle, so its connections, between calls: use
 * each from one thread at a time. gl_global_init() must run before the
 * first client is made and before threads start. */
#ifndef KILN_GLCLIENT_H
#define KILN_GLCLIENT_H

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define GL_MAX_REPLY (64u << 10)      /* replies other than a job payload */
#define GL_TRACE_CHUNK (1u << 20)     /* at most this much log per PATCH */
#define GL_MAX_ATTEMPTS 5             /* tries of one request in the retry layer */
#define GL_FINAL_RETRIES 10           /* failed final updates before giving up */
#define GL_FINAL_BACKOFF_MAX_S 3600   /* gitlab-runner's final update backoff: 1 s doubling to 60 min */
#define GL_FINAL_MAX_S (2 * 60 * 60)  /* the final update loop's whole budget (10 retries: ~17 min of waits) */
#define GL_TIMEOUT_S 3600             /* one transfer, headers to the last byte (gitlab-runner: 60 min) */
#define GL_HEADER_TIMEOUT_S 600       /* request sent to response headers (gitlab-runner: 10 min) */

struct gl_client {
	char api[1024];           /* <url>/api/v4 (a trailing '/' or '/ci' stripped) */
	char ca_file[PATH_MAX];   /* trusted besides the system's CAs; "" for none */
	char cert_file[PATH_MAX]; /* client certificate (PEM) and its key; "" for none */
	char key_file[PATH_MAX];
	/* When set, a transfer in progress aborts and retries end (shutdown).
	 * NULL: never. */
	const volatile sig_atomic_t *stop;
	int max_attempts;         /* GL_MAX_ATTEMPTS */
	long backoff_min_ms;      /* 100 */
	long backoff_max_ms;      /* 60000 */
	long timeout_s;           /* one transfer, GL_TIMEOUT_S */
	long header_timeout_s;    /* the request sent to the reply's headers, GL_HEADER_TIMEOUT_S */
	long final_backoff_ms;    /* the final update's first wait after a failure, 1000 */
	/* During a transfer with a body (an artifact): called at most every
	 * progress_s seconds, and at its end when it was called before, with the bytes sent (or
	 * received) so far and the total (0: unknown). NULL: none. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	int progress_s;           /* 10 */
	bool debug_trace;         /* CI_DEBUG_TRACE: trace PATCHes say debug_trace=true */
	void *curl;               /* CURL *, made on first use */
};

struct gl_reply {
	long status;              /* HTTP status of the last try; 0: none came */
	char *body;               /* NUL-terminated, at most the call's cap; NULL when empty */
	size_t len;
	char job_status[32];      /* Job-Status, or "" */
	char last_update[128];    /* X-GitLab-Last-Update, or "" */
	long long range_end;      /* N of "Range: 0-N", -1 without */
	int update_interval;      /* X-GitLab-Trace-Update-Interval (s), -1 without */
	int retry_after_ms;       /* Retry-After / RateLimit-ResetTime, -1 without */
	int attempts;             /* tries made */
};

/* Once per process, before any thread: curl's global state. */
void gl_global_init(void);

/* Set c up for the GitLab at url ("https://gitlab.example.com"), trusting
 * the system's CAs plus ca_file (NULL or "": none). Fails on a URL that is not http(s). */
enum kiln_rc gl_client_init(struct gl_client *c, const char *url, const char *ca_file, struct kiln_err *e);
/* Present cert_file (PEM, the chain) with key_file to the server; nothing
 * when either is NULL or "". Fails naming a file that cannot be read. */
enum kiln_rc gl_client_tls(struct gl_client *c, const char *cert_file, const char *key_file, struct kiln_err *e);
void gl_client_free(struct gl_client *c);
void gl_reply_free(struct gl_reply *r);

/* One API call through the retry layer: method on api + path, with a JSON
 * (or text/plain when ctype says so) body of len bytes; job_token adds
 * JOB-TOKEN, runner_token RUNNER-TOKEN, content_range Content-Range. r gets
 * the last reply (body capped at max_reply bytes: more is an error).
 * KILN_OK when a reply came, whatever its status; KILN_E_IO naming the
 * call when none did after the retries, or when c->stop was set. */
enum kiln_rc gl_call(struct gl_client *c, const char *method, const char *path, const char *runner_token,
		     const char *job_token, const char *ctype, const void *body, size_t len,
		     const char *content_range, size_t max_reply, struct gl_reply *r, struct kiln_err *e);

/* The "info" object kiln sends on registration, verify, job requests and
 * updates: name "kiln", version, revision, platform, architecture,
 * executor, shell, the 31 feature booleans (true only for what kiln
 * implements), config {"gpus": ""} and labels {}, as gitlab-runner's
 * VersionInfo. New reference. */
json_t *gl_info(const char *executor);

/* An RFC 3339 time as GitLab writes it ("2026-12-01T10:00:00.000Z",
 * "...+02:00") in seconds since the epoch; 0 when absent, unreadable or
 * before 1970 (GitLab's "never expires" is 0001-01-01). */
long long gl_parse_time(const char *s);

/* POST /runners/verify. KILN_OK with *id (0 when an old server answers
 * plain text) and *expires_at (token_expires_at, 0: never; may be NULL);
 * KILN_E_INVALID when the token is refused (403) or the runner is
 * orphaned (422); KILN_E_IO otherwise. */
enum kiln_rc gl_verify(struct gl_client *c, const char *token, const char *system_id, const char *executor,
		       long long *id, long long *expires_at, struct kiln_err *e);

/* What a legacy registration asks of GitLab, as gitlab-runner's
 * RegisterRunnerParameters: NULL and 0 leave a field out. */
struct gl_register_params {
	const char *description, *executor;
	const char *tag_list;          /* "a,b" */
	const char *access_level;      /* not_protected, ref_protected */
	const char *maintenance_note;
	bool run_untagged, locked, paused;
	int maximum_timeout;           /* seconds */
};

/* Legacy registration, POST /runners with a registration token: *token
 * gets the runner's authentication token (caller frees), *id its id,
 * *expires_at its expiry (0: never; may be NULL). KILN_E_INVALID for 403
 * (bad token), 410 (disabled) and 400. */
enum kiln_rc gl_register(struct gl_client *c, const char *reg_token, const struct gl_register_params *p,
			 char **token, long long *id, long long *expires_at, struct kiln_err *e);

/* POST /runners/reset_authentication_token: GitLab replaces the runner's
 * token (the old one stops working). *new_token (caller frees) and
 * *expires_at (0: never) on 201; KILN_E_INVALID for 403. */
enum kiln_rc gl_reset_token(struct gl_client *c, const char *token, char **new_token, long long *expires_at,
			    struct kiln_err *e);

/* Unregister: DELETE /runners/managers (token, system_id) for glrt-
 * tokens, DELETE /runners (the whole runner) for legacy ones. KILN_OK on
 * 204; KILN_E_NOTFOUND when the server no longer knows it (403, 404). */
enum kiln_rc gl_unregister(struct gl_client *c, const char *token, const char *system_id,
			   struct kiln_err *e);

enum gl_poll { GL_NO_JOB, GL_JOB, GL_UNHEALTHY };

/* POST /jobs/request. last_update (128 bytes) is sent and updated from any
 * non-empty X-GitLab-Last-Update. GL_JOB: *payload (caller frees, at most
 * PAYLOAD_MAX_BYTES) and *len; GL_UNHEALTHY: 403; GL_NO_JOB: anything
 * else, e saying why when it was not a plain 204. */
enum gl_poll gl_request_job(struct gl_client *c, const char *token, const char *system_id, const char *executor,
			    char last_update[128], char **payload, size_t *len, struct kiln_err *e);

struct gl_update {
	const char *state;           /* running, success or failed */
	const char *failure_reason;  /* already mapped (gl_failure_reason); NULL for none */
	int exit_code;               /* sent when not 0 */
	bool output;                 /* send checksum and bytesize */
	uint32_t crc;                /* CRC32 (IEEE) of the whole trace */
	uint64_t bytesize;
	const char *executor;        /* for info */
};

enum gl_put {
	GL_PUT_OK,        /* 200 */
	GL_PUT_ACCEPTED,  /* 202: not finished, ask again after the interval */
	GL_PUT_RESEND,    /* 412: send the whole trace again from 0 */
	GL_PUT_ABORT,     /* 403, 404, or Job-Status canceled/failed: stop */
	GL_PUT_FAILED,    /* anything else: a reply or network error */
};

/* One PUT /jobs/:id. r gets the reply (Job-Status, interval). */
enum gl_put gl_update_job(struct gl_client *c, long long id, const char *token, const struct gl_update *u,
			  struct gl_reply *r, struct kiln_err *e);

/* The final update loop of gitlab-runner: flush(arg, from_zero) sends
 * what is left of the trace (all of it after a 412), then the PUT. 200 or
 * an abort reply ends it; 202 and 412 wait the reply's interval (3 s
 * without) and go again. A flush that fails (not KILN_E_NOTFOUND, which
 * ends the loop) sends no PUT: like a failed PUT it backs off from
 * c->final_backoff_ms doubling up to GL_FINAL_BACKOFF_MAX_S and goes
 * again, at most GL_FINAL_RETRIES times; the whole loop at most
 * GL_FINAL_MAX_S. Setting c->stop ends it (KILN_E_IO). */
enum kiln_rc gl_final_update(struct gl_client *c, long long id, const char *token, const struct gl_update *u,
			     enum kiln_rc (*flush)(void *arg, bool from_zero, struct kiln_err *e), void *arg,
			     struct kiln_err *e);

enum gl_trace {
	GL_TRACE_OK,      /* 202: *offset moved on */
	GL_TRACE_RANGE,   /* 416: *offset is now the server's size; send again after an interval */
	GL_TRACE_ABORT,   /* 403: the job is gone or not running */
	GL_TRACE_FAILED,  /* 5xx after retries, 404 (maybe a proxy's), network: try again later */
};

/* PATCH /jobs/:id/trace with data[*offset .. min(total, *offset + GL_TRACE_CHUNK)).
 * On 202 *offset becomes the end of the reply's Range (or the end of what
 * was sent), on 416 the server's size; never more than total. r gets the
 * reply, with Job-Status and the update interval. */
enum gl_trace gl_patch_trace(struct gl_client *c, long long id, const char *token, const char *data, size_t total,
			     size_t *offset, struct gl_reply *r, struct kiln_err *e);

/* Whether URLs a and b have one origin: scheme (http or https), host and
 * port (the scheme's default when absent), case aside. */
bool gl_same_origin(const char *a, const char *b);

/* POST /jobs/:id/artifacts: the file at file_path (zip, gzip or raw) as the multipart part
 * "file" named filename, with artifact_type, artifact_format and expire_in
 * (NULL or "": GitLab's default) in the query. 307 is followed on the
 * same origin only (the request carries the job token); one elsewhere
 * fails with KILN_E_INVALID. 503 is tried 6 times, other server errors 3.
 * KILN_E_LIMIT for 413 (too large), KILN_E_INVALID for 403. */
enum kiln_rc gl_upload_artifacts(struct gl_client *c, long long id, const char *token, const char *file_path,
				 const char *filename, const char *type, const char *format, const char *expire_in,
				 struct kiln_err *e);

/* GET /jobs/:id/artifacts with that job's token into the file path, at
 * most max_bytes; a redirect (object storage) is followed without the
 * token. KILN_E_NOTFOUND for 404; path is removed on failure. */
enum kiln_rc gl_download_artifacts(struct gl_client *c, long long id, const char *token, const char *path,
				   uint64_t max_bytes, struct kiln_err *e);

/* The reason to send for kiln's failure reason, checked against the job's
 * features.failure_reasons (n names): "" or NULL means script_failure;
 * script_failure, runner_system_failure and job_execution_timeout always
 * go; others go when listed, else their fallback when it goes, else
 * unknown_failure. A static string. */
const char *gl_failure_reason(const char *reason, const char *const *supported, size_t n);

/* Whether token is a runner authentication token (glrt-), which is
 * verified, not registered. */
bool gl_is_auth_token(const char *token);

#endif
