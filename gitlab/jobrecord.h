/* What `kiln run` keeps on disk about the GitLab jobs it takes, under the
 * state folder:
 *
 *   payloads/<id>.json  the last JOBREC_KEEP_PAYLOADS payloads received,
 *                       secrets scrubbed, for `kiln replay` (mode 0600)
 *   running/<id>.json   the journal: one file per job this process runs,
 *                       with what a kiln restarted after a crash needs to
 *                       report the job failed (mode 0600: it holds the job
 *                       token, which GitLab revokes when the job ends)
 *   paused/<sha256 of the runner's token>.json
 *                       a runner `kiln run` paused (GitLab refused its job
 *                       requests): its name, URL, until when (seconds since
 *                       the epoch) and why, for `kiln status`
 */
#ifndef KILN_JOBRECORD_H
#define KILN_JOBRECORD_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define JOBREC_SCRUBBED "[MASKED]"
#define JOBREC_KEEP_PAYLOADS 1000 /* payload records `kiln run` keeps */

/* Scrub doc (a job payload) in place: the job token, the dependencies'
 * tokens, registry passwords, the values of masked and file variables
 * become "[MASKED]"; credentials in any URL ("scheme://user:pass@host")
 * are removed; any other string holding one of those secrets has it
 * replaced. */
void jobrec_scrub(json_t *doc);

/* Save the payload text (len bytes) scrubbed as <state_dir>/payloads/<id>.json. */
enum kiln_rc jobrec_save_payload(const char *state_dir, long long id, const char *text, size_t len,
				 struct kiln_err *e);

/* Remove the saved payloads beyond the newest keep (by job id, which
 * GitLab hands out in increasing order). Returns how many were removed. */
size_t jobrec_prune_payloads(const char *state_dir, size_t keep);

/* The path of a saved payload. */
void jobrec_payload_path(const char *state_dir, long long id, char *buf, size_t size);

struct jobrec_running {
	long long id;
	char token[256];          /* the job token */
	char url[1024];           /* the GitLab */
	char ca_file[PATH_MAX];   /* "" for the system's CAs */
	char runner[256];         /* the runner's name, for messages */
	int pid;                  /* the kiln that runs it */
	long long pid_start;      /* that process's start time (clock ticks since boot) */
	uint64_t sent;            /* log bytes GitLab acknowledged */
	uint32_t crc;             /* their CRC32 */
	/* Once the job has ended, before GitLab has its final update: how it
	 * ended, so that a kiln restarted after a crash reports that rather
	 * than a failure. state "" while the job runs. */
	char state[16];           /* "success" or "failed" */
	char failure_reason[64];  /* as sent to GitLab; "" for none */
	int exit_code;
};

/* Write (or replace) the journal entry of r->id; pid and pid_start are
 * this process's. */
enum kiln_rc jobrec_journal_write(const char *state_dir, struct jobrec_running *r, struct kiln_err *e);
void jobrec_journal_remove(const char *state_dir, long long id);

/* The entries whose kiln is gone (*n of them in *out, caller frees *out).
 * Unreadable entries are skipped with a warning. */
enum kiln_rc jobrec_journal_orphans(const char *state_dir, struct jobrec_running **out, size_t *n,
				    struct kiln_err *e);

/* Note that the runner with token is paused until (seconds since the
 * epoch) for reason; best effort (a warning when it cannot be written). */
void jobrec_pause_write(const char *state_dir, const char *token, const char *name, const char *url, long until,
			const char *reason);
/* The runner runs again: its note removed. */
void jobrec_pause_clear(const char *state_dir, const char *token);
/* Whether the runner with token has a pause note; until and reason (size
 * bytes) from it. A note whose time has passed still counts: the caller
 * compares until with the clock. */
bool jobrec_pause_read(const char *state_dir, const char *token, long *until, char *reason, size_t size);

#endif
