/* GitLab's "gzip" artifact format (report artifacts: junit, dotenv,
 * cobertura...): the regular files of a folder tree as concatenated gzip
 * members, one per file, each member's header naming the file by its path
 * relative to the folder (and carrying its modification time). Files are
 * taken in sorted order, so the same tree always gives the same stream;
 * folders, links and other entries are not members.
 *
 * Written with zlib, not libarchive: each member's header must carry the
 * file's name (gzip's FNAME field), and libarchive 3.6.2 (Debian 12's, the
 * minimum configure takes) cannot set it: its gzip filter's only options
 * are compression-level and timestamp, and a raw-format archive with the
 * gzip filter writes a header with no name (FLG 0). Later libarchive
 * releases add an original-filename option; this file can move then. */
#ifndef KILN_GZMEMBERS_H
#define KILN_GZMEMBERS_H

#include <stdint.h>

#include "lib/result.h"
#include "workspace/zip.h"

#define GZM_MAX_FILES 65535u
#define GZM_MAX_DEPTH 64

/* Write the regular files below dir into a new file at path (replaced;
 * removed again on failure). max_bytes bounds the uncompressed total.
 * st->files and st->bytes count what was written. */
enum kiln_rc gzm_write_dir(const char *dir, const char *path, uint64_t max_bytes, struct zip_stats *st,
			   struct kiln_err *e);

#endif
