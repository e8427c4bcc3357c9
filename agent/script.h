/* The shell script of one job step, as gitlab-runner's bash shell writes it:
 * each command echoed as "$ command" in bold green, then run. Pure: no I/O,
 * so the unit tests can pin the exact text. */
#ifndef KILN_AGENT_SCRIPT_H
#define KILN_AGENT_SCRIPT_H

#include <stddef.h>

/* A generated script never grows past this; a job frame is at most 1 MiB
 * and quoting at most quadruples a command, so only a hostile spec hits it. */
#define SCRIPT_MAX (8u << 20)

/* Render the script running cmds[0..n) in order. The shell's flags
 * (-eo pipefail) stop it at the first failing command, so the text holds no
 * error checks of its own. Each command is trimmed of surrounding
 * whitespace; an empty one becomes a bare `echo`. A multi-line command is
 * echoed as its first line plus " # collapsed multi-line command".
 * Returns 0 with *out a malloc'd NUL-terminated script of *outlen bytes (the
 * caller frees it), -ENOMEM, or -E2BIG past SCRIPT_MAX. */
int script_render(const char *const *cmds, size_t n, char **out, size_t *outlen);

#endif
