/* An OCI image's User as the agent runs it (agent/image.h). Apart from
 * the rest of the agent so that the unit tests can take it alone. */
#ifndef KILN_AGENT_IMAGEUSER_H
#define KILN_AGENT_IMAGEUSER_H

#include <stddef.h>
#include <sys/types.h>

/* Resolve a docker User ("name|uid[:group|gid]") against passwd and group
 * texts (either may be NULL): 0 with *uid and *gid set, or -1 with one line in
 * err. A named user's gid is its passwd entry's unless a group is given. */
int image_resolve_user(const char *user, const char *passwd, const char *group, uid_t *uid, gid_t *gid, char *err,
		       size_t size);

#endif
