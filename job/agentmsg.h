/* What the guest agent's frames say (HELLO, STEP, EXIT), read on the host
 * without trusting them: the guest wrote these bytes. Each parser takes a
 * payload as agent/proto.h cut it (at most AP_MAX_PAYLOAD bytes),
 * accepts only a JSON object with the fields in range, and never lets a
 * guest string reach kiln's messages unless it is a word. What the host
 * does with them (one HELLO per VM, the deadline) is job/job.c's. */
#ifndef KILN_AGENTMSG_H
#define KILN_AGENTMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENTMSG_REASON_MAX 48      /* bytes of a failure reason, NUL included */

struct agent_hello {
	bool shell;               /* AP_FEATURE_SHELL: it holds failed jobs */
	bool late_workspace;      /* AP_FEATURE_LATE_WORKSPACE */
	bool oci_image;           /* AP_FEATURE_OCI_IMAGE */
	bool entrypoint;          /* AP_FEATURE_ENTRYPOINT */
};

/* HELLO: the features it lists (unknown ones are ignored). false when the
 * payload is not a JSON object. */
bool agentmsg_hello(const uint8_t *payload, uint32_t len, struct agent_hello *h);

/* STEP: *exit_code, when the payload has one within int's range (else
 * false, and the caller counts the step as failed). */
bool agentmsg_step(const uint8_t *payload, uint32_t len, int *exit_code);

/* EXIT: *exit_code (an integer within int's range, else false) and the
 * failure reason: "" when there is none, the guest's when it is a word of
 * 1-47 of a-z and '_' (GitLab's), "script_failure" for anything else
 * (escape sequences...). */
bool agentmsg_exit(const uint8_t *payload, uint32_t len, int *exit_code, char reason[AGENTMSG_REASON_MAX]);

#endif
