/* The kernel command line: how the host configures the agent (kiln.channel,
 * kiln.ip, kiln.gw, kiln.dns, kiln.boot_marker). Only the words before a
 * lone `--` count; the words after it are the command of command mode. */
#ifndef KILN_AGENT_CMDLINE_H
#define KILN_AGENT_CMDLINE_H

#include <stddef.h>

/* Enough for the x86 COMMAND_LINE_SIZE (2048) with room to spare. */
#define CMDLINE_MAX 4096

/* Read /proc/cmdline (which must be mounted) into buf, NUL-terminated,
 * truncated to size - 1 bytes. 0, or -errno (buf is then ""). */
int cmdline_read(char *buf, size_t size);

/* The value of the word "key=VALUE" in cmdline, copied to val (size bytes,
 * NUL-terminated). 1 when found, 0 when absent (val is then ""),
 * -ENAMETOOLONG when the value does not fit. */
int cmdline_get(const char *cmdline, const char *key, char *val, size_t size);

/* Whether cmdline holds the bare word `word` (a flag such as
 * kiln.boot_marker). */
int cmdline_has(const char *cmdline, const char *word);

#endif
