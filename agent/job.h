/* Job mode: the guest side of docs/agent-protocol.md on one host stream.
 * Says HELLO, takes one JOB, writes its files, runs its steps (forwarding
 * their output as it comes), obeys CANCEL, and ends with EXIT. */
#ifndef KILN_AGENT_JOB_H
#define KILN_AGENT_JOB_H

/* A stopped step gets SIGTERM, then SIGKILL this much later. */
#define JOB_KILL_GRACE_MS 10000
#define JOB_KILL_GRACE_HARD_MS 1000   /* after a non-graceful cancel */
/* Once a step's shell has ended, its output is drained until EOF or this
 * long without output: a background process may hold the pipe forever. */
#define JOB_DRAIN_QUIET_MS 200
#define JOB_DRAIN_MAX_MS 2000   /* even if output never pauses */
/* One OUTPUT frame carries at most one read of this size. */
#define JOB_OUTPUT_CHUNK 16384

#include <stddef.h>

/* Called once the JOB frame has arrived, before anything of it runs: 0 to
 * go on, -1 (with the reason in err) to fail the job as a system failure. */
typedef int (*job_ready_fn)(char *err, size_t size);

/* Serve one job on host_fd (a connected, blocking stream; not closed here).
 * Expects every signal blocked (init_block_signals): they are taken through
 * a signalfd. Makes the agent the reaper of the job's orphans, also when it
 * is not PID 1. ready may be NULL. Returns the exit code sent in EXIT
 * (0..255; 1 when the job could not run at all). Never powers off: the
 * caller decides. */
int job_serve(int host_fd, job_ready_fn ready);

/* Opens the host stream again: a fd, or -errno. */
typedef int (*job_reopen_fn)(void);

/* Where a stream lost before the JOB frame is opened again (at most
 * JOB_REOPEN_MAX times), under the same fd number, and HELLO said anew: a
 * VM restored from a template finds its connection reset (vsock's
 * transport reset) and its job comes on the new one. NULL (the default):
 * a lost stream ends the job. */
#define JOB_REOPEN_MAX 8
void job_reopen_with(job_reopen_fn fn);

#endif
