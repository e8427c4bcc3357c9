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

/* The home folder (field 6) of user name in passwd into home[0..size): 0, or
 * -1 when name has no entry or the field does not fit. */
int passwd_home(const char *passwd, const char *name, char *home, size_t size);

/* The id a new user (and its own group) gets, as useradd picks one: past
 * 1000 and past every uid below 60000 that passwd holds. */
unsigned long passwd_free_id(const char *passwd);

/* The gids of the groups in group whose member list names user, at most
 * max of them into out: how many. */
size_t group_ids_of(const char *group, const char *user, gid_t *out, size_t max);

/* Whether name is one a passwd line can take as it is: 1..32 of [a-z0-9_-],
 * starting with a letter or '_' (no ':' or newline can get in). */
int user_name_ok(const char *name);

#endif
