/* The interactive shell of a held job (docs/agent-protocol.md, "Holding a
 * failed job"): after EXIT of a failed job whose spec asked for
 * hold_on_failure, the agent waits for SHELL, CANCEL or the end of the host
 * stream instead of powering off. */
#ifndef KILN_AGENT_SHELL_H
#define KILN_AGENT_SHELL_H

#include "agent/jobspec.h"
#include "agent/proto.h"

#define SHELL_OUTPUT_CHUNK 16384
#define SHELL_HANGUP_GRACE_MS 2000   /* SIGHUP, then SIGKILL this much later */

struct shell_io {
	int host;                 /* the host stream (blocking) */
	int sigfd;                /* the agent's signalfd (SIGCHLD) */
	struct ap_reader *rd;     /* the host stream's reader: may hold frames already */
};

/* Hold: wait for SHELL and run `bash -i` (`sh -i` without bash) on a new
 * pseudo-terminal of the size asked, in spec->workdir, with env plus TERM
 * and PS1; its output goes to the host as OUTPUT frames, STDIN frames are
 * typed into it, WINSIZE resizes it. When it exits (or the host sends
 * CANCEL or goes away, which hang it up) the agent sends
 * STEP {"step": "shell", "exit_code": N} if it can. Returns the shell's
 * exit code, or -1 when no shell ran. */
int shell_hold(struct shell_io *io, const struct job_spec *spec, char *const env[]);

#endif
