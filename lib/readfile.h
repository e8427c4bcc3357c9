/* Reading a whole file into memory, with a ceiling. */
#ifndef KILN_READFILE_H
#define KILN_READFILE_H

#include <stddef.h>

/* Read all of path into *buf (NUL-terminated, caller frees; *len bytes
 * before the NUL). Returns 0; -EFBIG when the file holds more than max
 * bytes; or -errno of the open or read that failed (-ENOENT: no such file),
 * with *buf NULL. Returns -errno rather than a struct kiln_err so that
 * kiln-vmm, whose errors are -errno, uses it too: the caller names the file
 * in its own message. */
int kiln_read_file(const char *path, size_t max, char **buf, size_t *len);

#endif
