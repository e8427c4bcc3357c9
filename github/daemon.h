/* `kiln run`'s GitHub side: one thread per `github:` entry running a
 * reconciler round (github/round.h) at start and every poll_interval (30
 * s), or at once when woken (a verified webhook, a runner VM that
 * stopped). Slots come from lib/slots.h, shared with the GitLab loop;
 * runner VMs from github/vm.h. */
#ifndef KILN_GHDAEMON_H
#define KILN_GHDAEMON_H

#include "lib/result.h"
#include "runner/config.h"

#define GH_ROUND_S 30 /* without a poll_interval */

/* Start the entries of cfg (which must outlive gh_daemon_stop). An entry
 * that cannot be set up is logged and skipped: the others, and GitLab,
 * are served. KILN_OK also when cfg has none. */
enum kiln_rc gh_daemon_start(const struct kiln_config *cfg, struct kiln_err *e);

/* Run every entry's next round now. */
void gh_daemon_wake(void);

/* Stop the threads (a round in progress finishes) and free them. */
void gh_daemon_stop(void);

#endif
