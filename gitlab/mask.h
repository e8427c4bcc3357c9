/* Masking of a job's log as it streams, before any of it is buffered or
 * leaves the process (protocol reference, section 4, "Masking"):
 *
 * - the values of masked variables (trimmed, deduplicated, longest first)
 *   become "[MASKED]";
 * - after a token prefix (gitlab-runner's defaults, "glpat-", "glrt-",
 *   "glcbt-" and the other prefixes of GitLab's tokens, and up to
 *   MASK_MAX_JOB_PREFIXES of the job's features.token_mask_prefixes), the run of
 *   [A-Za-z0-9._=-] that follows becomes "[MASKED]": "glpat-abc" gives
 *   "glpat-[MASKED]", as gitlab-runner writes it. A prefix not followed by
 *   such a character is left alone;
 * - the values of the URL parameters private_token, authenticity_token,
 *   rss_token and x-amz-signature/credential/security-token (after '?' or
 *   '&', any case) up to the next '?', '&', blank or control character, as
 *   gitlab-runner ends them:
 *   "?private_token=abc&x=1" gives "?private_token=[MASKED]&x=1".
 *
 * Matches span write boundaries: a write may hold back the bytes that could
 * still be the start of a secret (at most the longest secret's length - 1)
 * or of a prefix; the next write or mask_flush releases them. Not thread
 * safe: the caller serialises writes. */
#ifndef KILN_MASK_H
#define KILN_MASK_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define MASK_MAX_JOB_PREFIXES 15      /* from the payload, past the defaults; more are ignored */
#define MASK_MAX_PREFIXES 32          /* the defaults and the job's */
#define MASK_MAX_SECRETS 4096
#define MASK_MAX_SECRET_BYTES (64u << 10)
#define MASK_MAX_HOLD (256u << 20)    /* what is held back plus one write */
#define MASK_TEXT "[MASKED]"

enum { MASK_RUN_NONE, MASK_RUN_TOKEN, MASK_RUN_PARAM };

typedef void (*mask_out_fn)(void *arg, const void *buf, size_t n);

struct mask {
	char **secrets;           /* longest first */
	size_t *lens;
	size_t n_secrets, secrets_cap, lens_cap;
	char *prefixes[MASK_MAX_PREFIXES];
	size_t n_prefixes, n_default_prefixes;
	unsigned char first[256]; /* first bytes of secrets and prefixes */
	char *hold;               /* bytes held back from the last write */
	size_t hold_len, hold_cap;
	int in_run;               /* MASK_RUN_*: dropping a token's or a parameter's characters */
	mask_out_fn out;
	void *arg;
};

/* Start a masker writing to out(arg, ...), with gitlab-runner's default prefixes. */
void mask_init(struct mask *m, mask_out_fn out, void *arg);
void mask_free(struct mask *m);

/* Mask value from now on: trimmed of blanks, ignored when empty or
 * already known. KILN_E_LIMIT past MASK_MAX_SECRETS or for a value over
 * MASK_MAX_SECRET_BYTES (which is then not masked: the caller says so). */
enum kiln_rc mask_add_secret(struct mask *m, const char *value, struct kiln_err *e);

/* Mask tokens starting with prefix (trimmed; ignored when empty, known,
 * or past MASK_MAX_JOB_PREFIXES added after the defaults). */
enum kiln_rc mask_add_prefix(struct mask *m, const char *prefix, struct kiln_err *e);

/* Mask n bytes of the stream. KILN_E_NOMEM, or KILN_E_LIMIT for a write
 * that would hold more than MASK_MAX_HOLD bytes. */
enum kiln_rc mask_write(struct mask *m, const void *buf, size_t n);

/* Release what is held back (the stream ends, or a marker follows). */
void mask_flush(struct mask *m);

#endif
