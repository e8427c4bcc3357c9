/* Small libgit2 helpers every workspace step uses: its errors as kiln's,
 * and SHAs read strictly. Apart from mirror.c so that the pack writer can
 * use them without including the mirror (no include circle). */
#ifndef KILN_GITUTIL_H
#define KILN_GITUTIL_H

#include <git2.h>

#include "lib/result.h"

/* Set "what: <libgit2's last error>" in e (one line); returns rc. e may be
 * NULL. */
enum kiln_rc kiln_git_fail(struct kiln_err *e, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parse exactly 40 hex digits into oid; 0 or -1. */
int ws_parse_sha(git_oid *oid, const char *hex);

#endif
