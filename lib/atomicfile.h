/* Replacing a file whole: readers, and the file after a crash, see the old
 * contents or the new, never a part. */
#ifndef KILN_ATOMICFILE_H
#define KILN_ATOMICFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/result.h"

/* Replace path with the len bytes at data: they go to a temporary file in
 * the same folder (path.tmp.PID), are flushed to disk, and the temporary is
 * renamed over path. A new file gets mode (less the umask); 0 means 0666.
 * On failure path is untouched and the temporary removed; e names the file
 * and the step that failed. */
enum kiln_rc kiln_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
			       struct kiln_err *e);

#endif
