/* Running helper programs (image recipes, mkfs, git, ip, nft) as child
 * processes: the one fork/exec with captured output and stdin in kiln.
 * Not for the VMM (executors/executor.c clones it into its jail), the
 * jailed disk reader (workspace/guestdisk/diskread.c) nor the guest agent
 * (PID 1, its own children): each needs a launch of its own. */
#ifndef KILN_SPAWN_H
#define KILN_SPAWN_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

/* What a child gets and what comes back; all zero: stdin /dev/null, stdout
 * and stderr inherited, the environment kiln's, a non-zero exit an error. */
struct kiln_spawn_io {
	char *const *env_add; /* NAME=VALUE strings added to the environment */
	const char *input;    /* input_len bytes fed to stdin (NULL: /dev/null) */
	size_t input_len;
	char **out;           /* stdout into *out, NUL-terminated, caller frees */
	size_t out_max;       /* more stdout than this is an error */
	char *err;            /* stderr into err: the first err_size-1 bytes */
	size_t err_size;      /* kept, NUL-terminated, the rest drained */
	bool merge;           /* stdout goes with stderr into err (out NULL) */
	int *status;          /* not NULL: the wait status goes here and an exit
			       * other than 0 is no error */
};

/* Run argv[0] (looked up in PATH when it has no '/') as io says. Fails
 * when it cannot be started, when its stdout passes out_max, or (status
 * NULL) when it does not exit 0: e names the command and its status, and
 * then the first line of a captured stderr. A child that stops reading
 * stdin early is no error of ours (its status tells). */
enum kiln_rc kiln_spawn_io(char *const argv[], const struct kiln_spawn_io *io, struct kiln_err *e);

/* kiln_spawn_io with env_add and, when out is not NULL, stdout captured
 * into *out (at most max bytes); stderr inherited. */
enum kiln_rc kiln_spawn(char *const argv[], char *const env_add[], char **out, size_t max,
			struct kiln_err *e);

/* Look name up in PATH (or under root/ each PATH entry when root is not
 * NULL); writes the full path into buf and returns 1 when found. */
int kiln_which(const char *root, const char *name, char *buf, size_t size);

#endif
