/* A GitLab job's trace (protocol reference, sections 4 and 5): the log as
 * GitLab gets it, and the thread that sends it.
 *
 * Everything written goes through the job's masker (gitlab/mask.h) first,
 * then into a buffer bounded by the output limit (GitLab's default 4 MiB):
 * past it the log is cut at a UTF-8 character boundary, gitlab-runner's
 * yellow "Job's log exceeded limit" notice is appended, and the job goes
 * on. Bytes that start no valid UTF-8 character become U+FFFD, as in
 * gitlab-runner's trace buffer. The CRC32 and size sent in the final update
 * cover exactly the bytes kept (and sent).
 *
 * With a GitLab to talk to, an uploader thread PATCHes what is new every
 * update interval (3 s at first, then X-GitLab-Trace-Update-Interval, at
 * most 15 min), at most 1 MiB per request, resends from the server's
 * offset after a 416, PUTs state=running as a keep-alive after 30 s
 * without contact, and turns Job-Status into a cancel: `canceling` sets
 * *cancel to JOB_CANCEL_GRACEFUL, `canceled` or `failed` (and a 403:
 * the job is gone) to JOB_CANCEL_NOW; a 404, which may come from a proxy,
 * is retried like a server error. trace_finish stops it and makes the
 * final update.
 *
 * All functions may be called from any thread; writes are serialised. */
#ifndef KILN_TRACE_H
#define KILN_TRACE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gitlab/mask.h"
#include "lib/result.h"

#define TRACE_DEFAULT_LIMIT (4u << 20)
#define TRACE_MAX_LIMIT (100u << 20)    /* GitLab's ci_jobs_trace_size_limit */
#define TRACE_FIRST_INTERVAL_S 3
#define TRACE_KEEPALIVE_S 30

struct trace_opts {
	/* The GitLab; url NULL: no uploader (the trace only collects). */
	const char *url;
	const char *ca_file;
	const char *cert_file, *key_file; /* client certificate, or NULL */
	long long job_id;
	const char *token;            /* the job token */
	const char *executor;         /* for the info sent with PUT */
	size_t limit;                 /* bytes kept; 0: TRACE_DEFAULT_LIMIT */
	int first_interval_s;         /* 0: TRACE_FIRST_INTERVAL_S */
	bool debug_trace;             /* CI_DEBUG_TRACE: PATCH with debug_trace=true */
	/* Where Job-Status lands (enum job_cancel); NULL: ignored. */
	volatile sig_atomic_t *cancel;
	/* After each acknowledged PATCH: the server holds bytes [0, offset),
	 * whose CRC32 is crc (the crash journal keeps them). May be NULL. */
	void (*sent)(void *arg, size_t offset, uint32_t crc);
	void *sent_arg;
};

struct trace;

/* Make a trace and, when o->url is set, start its uploader. */
enum kiln_rc trace_start(struct trace **t, const struct trace_opts *o, struct kiln_err *e);

/* The masker: add the job's secrets and prefixes before the first write. */
struct mask *trace_masker(struct trace *t);

/* Append n bytes of job output (masked). */
void trace_write(struct trace *t, const void *buf, size_t n);
/* Append a formatted line of kiln's own (masked too). */
void trace_printf(struct trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A section marker as gitlab-runner writes it:
 * "\e[0Ksection_start:<unix time>:<name>\r\e[0K" then, when header is not
 * NULL, the header in bold cyan on its own line; or
 * "\e[0Ksection_end:<unix time>:<name>\r\e[0K" on a line of its own. */
void trace_section(struct trace *t, const char *name, bool begin, const char *header);

/* The bytes kept so far, their CRC32 (IEEE) and whether the limit cut them. */
void trace_stat(struct trace *t, size_t *len, uint32_t *crc, bool *truncated);
/* A copy of the kept bytes (caller frees), for tests and replays. */
char *trace_copy(struct trace *t, size_t *len);

/* Whether GitLab said the job is gone (403 to a PATCH). */
bool trace_aborted(struct trace *t);

/* Stop the uploader, release what the masker held back, and make the final
 * update: state "success" or "failed", failure_reason already mapped (NULL
 * on success), exit_code; checksum and size of the whole trace. Without a
 * GitLab only the first two happen. KILN_E_NOTFOUND when GitLab says the
 * job is not running any more. */
enum kiln_rc trace_finish(struct trace *t, const char *state, const char *failure_reason, int exit_code,
			  struct kiln_err *e);

/* Stop the uploader if still running and free everything. */
void trace_free(struct trace *t);

#endif
