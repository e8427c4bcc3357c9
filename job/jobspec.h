/* Turning a job payload into what the guest agent runs: the environment
 * (the payload's variables plus what the runner defines), files for file
 * variables, and the steps. See docs/agent-protocol.md. */
#ifndef KILN_JOBSPEC_H
#define KILN_JOBSPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "job/payload.h"
#include "lib/result.h"

#define JOBSPEC_BUILDS_DIR "/builds"

/* The project's folder relative to the builds folder ("group/project"),
 * from job_info.project_full_path, else project_name, else "project";
 * characters outside [A-Za-z0-9._/-] and ".." components are replaced. */
void jobspec_project_path(const struct job_payload *p, char *buf, size_t size);

/* The agent's job spec as JSON text (caller frees *json). */
enum kiln_rc jobspec_build(const struct job_payload *p, char **json, struct kiln_err *e);

/* spec with "clock": {sec, nsec} set to this host's CLOCK_REALTIME now, for
 * the agent to set the guest's clock from (caller frees *json). */
enum kiln_rc jobspec_stamp_clock(const char *spec, char **json, struct kiln_err *e);

/* spec with the variable key=value added to the job's environment, in a
 * new *out (the caller's to free); value is not kept elsewhere. */
enum kiln_rc jobspec_add_env(const char *spec, const char *key, const char *value, char **out,
			     struct kiln_err *e);

/* What an exec spec runs (the agent's "mode": "exec", docs/agent-protocol.md):
 * argv without a shell, as user (NULL: root; add_user: added to the image
 * when it lacks one), in workdir (NULL: the spec's), stdin (NULL: none) on
 * its standard input. */
struct jobspec_exec {
	const char *const *argv;   /* NULL-terminated, at least one */
	const char *user;
	bool add_user;
	const char *workdir;
	const char *stdin_data;
};

/* spec turned into an exec spec for x, in a new *out (the caller's to
 * free): its environment, files, workspace and clock stay, its steps go.
 * x->stdin_data is not kept elsewhere. */
enum kiln_rc jobspec_exec(const char *spec, const struct jobspec_exec *x, char **out, struct kiln_err *e);

#endif
