/* $NAME, ${NAME} and $$ in a string, against the caller's variables: the
 * shell-less expansion the runner applies to artifact paths and names. */
#ifndef KILN_VAREXPAND_H
#define KILN_VAREXPAND_H

#include <stddef.h>

/* The value of name, or NULL when it is undefined (expands to nothing). */
typedef const char *(*var_lookup_fn)(void *arg, const char *name);

/* Expand s into out (always NUL-terminated, cut at size - 1 bytes). A `$`
 * not followed by a name is kept; `$$` is a literal `$`. */
void var_expand(const char *s, var_lookup_fn lookup, void *arg, char *out, size_t size);

#endif
