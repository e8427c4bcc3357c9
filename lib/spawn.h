/* Running helper programs (image recipes, qemu) as child processes. */
#ifndef KILN_SPAWN_H
#define KILN_SPAWN_H

#include <stddef.h>

#include "lib/result.h"

/* Run argv[0] (looked up in PATH when it has no '/') with the NAME=VALUE
 * strings of env_add added to the environment. When out is not NULL the
 * child's stdout is captured into a NUL-terminated *out (caller frees) of at
 * most max bytes, more is an error; otherwise it is inherited. stdin is
 * /dev/null. Succeeds only when the child exits 0. */
enum kiln_rc kiln_spawn(char *const argv[], char *const env_add[], char **out, size_t max,
			struct kiln_err *e);

/* Look name up in PATH (or under root/ each PATH entry when root is not
 * NULL); writes the full path into buf and returns 1 when found. */
int kiln_which(const char *root, const char *name, char *buf, size_t size);

#endif
