/* $NAME and ${NAME} in a string, against the caller's variables: the one
 * shell-less expander behind artifact paths and names, the pipeline's
 * variables, the rules' exists: patterns and the runner's pass over a
 * job's variables (job/jobspec.c). Each caller keeps its own reading
 * through flags. */
#ifndef KILN_VAREXPAND_H
#define KILN_VAREXPAND_H

#include <stddef.h>

#include "lib/result.h"

/* The value of name (len bytes, not NUL-terminated), NULL when it is
 * undefined, or var_as_written to leave the reference as it is written. */
typedef const char *(*var_lookup_n_fn)(void *arg, const char *name, size_t len);
extern const char var_as_written[];

#define VAR_KEEP_UNDEFINED 1u /* an undefined reference stays as written (else: nothing) */
#define VAR_NO_ESCAPE 2u      /* `$$` is not special (else: a literal `$`) */
#define VAR_DIGIT_FIRST 4u    /* a name may start with a digit (else: a letter or '_') */
/* Go's os.Expand, as gitlab-runner expands job variables: a digit or one of
 * `*#$@!?-` is a one-character name, `${...}` takes any bytes up to its `}`,
 * and `${}` or a `${` without its `}` is dropped. */
#define VAR_GO_NAMES 8u
#define VAR_KEEP_ESCAPE 16u   /* `$$` stays `$$` and starts no reference (GitLab's
			       * server side: the runner turns it into `$`) */

/* Expand s onto the byte array *out (*len bytes used, *cap allocated;
 * NUL-terminated after), never past max bytes with the NUL. A `$` that
 * starts no name (`${` needs its `}`) is kept. KILN_E_LIMIT when the
 * result is longer (*out then holds what fit), KILN_E_NOMEM. */
enum kiln_rc var_expand_into(const char *s, unsigned flags, var_lookup_n_fn lookup, void *arg, char **out,
			     size_t *len, size_t *cap, size_t max);

/* The value of name, or NULL when it is undefined (expands to nothing). */
typedef const char *(*var_lookup_fn)(void *arg, const char *name);

/* For var_expand_into with a var_lookup_fn: pass var_by_name as lookup
 * and a struct var_names as arg. A name of 256 bytes or more is left as
 * written; lookup may be NULL (nothing is defined). */
struct var_names {
	var_lookup_fn lookup;
	void *arg;
};
const char *var_by_name(void *arg, const char *name, size_t len);

/* Expand s into out (always NUL-terminated, cut at size - 1 bytes), the
 * runner's reading for artifact paths and names: names may start with a
 * digit and are at most 255 bytes (a longer one is kept as written), an
 * undefined one expands to nothing, `$$` is a literal `$`. */
void var_expand(const char *s, var_lookup_fn lookup, void *arg, char *out, size_t size);

#endif
