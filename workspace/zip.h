/* Zip archives, as GitLab's artifacts and kiln's local cache hold them:
 * a folder tree written into a zip (deflate, zlib), and a zip read back
 * into a folder. No zip64: at most ZIP_MAX_ENTRIES entries and under
 * 4 GiB per file and per archive; larger is KILN_E_LIMIT.
 *
 * Writing takes regular files (their permission bits and modification
 * time; modes are masked to 0777 both ways, so no setuid, setgid or sticky
 * bit is stored or restored), folders, and symbolic links (as Info-ZIP stores them: the target
 * as the content, S_IFLNK in the external attributes); it never follows a
 * link. Reading creates regular files and folders only, inside dest: names
 * that are absolute, hold "..", a backslash or a NUL, and links, are
 * skipped with a count; every entry's CRC32 is checked. */
#ifndef KILN_ZIP_H
#define KILN_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define ZIP_MAX_ENTRIES 65535u
#define ZIP_MAX_BYTES 0xfffffffeULL    /* per file, and the archive */

struct zip_stats {
	unsigned files;            /* regular files written or extracted */
	unsigned skipped;          /* entries left out (reading: unsafe names, links) */
	uint64_t bytes;            /* their uncompressed size */
};

/* Write every entry below dir into a new zip at path (replaced), names
 * relative to dir. max_bytes bounds the uncompressed total (0: ZIP_MAX_BYTES). */
enum kiln_rc zip_write_dir(const char *dir, const char *path, uint64_t max_bytes, struct zip_stats *st,
			   struct kiln_err *e);

/* Extract the zip at path into dest (created when missing). max_bytes
 * bounds the uncompressed total (0: ZIP_MAX_BYTES). */
enum kiln_rc zip_extract(const char *path, const char *dest, uint64_t max_bytes, struct zip_stats *st,
			 struct kiln_err *e);

#endif
