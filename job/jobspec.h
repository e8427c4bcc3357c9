/* Turning a job payload into what the guest agent runs: the environment
 * (the payload's variables plus what the runner defines), files for file
 * variables, and the steps. See docs/agent-protocol.md. */
#ifndef KILN_JOBSPEC_H
#define KILN_JOBSPEC_H

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

#endif
