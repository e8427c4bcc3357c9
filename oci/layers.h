/* Applying image layers (tar, gzip or zstd, read with libarchive) to a root
 * folder, as image-spec layer.md defines it: OCI whiteouts (".wh.NAME"
 * removes NAME from lower layers, ".wh..wh..opq" hides all of a folder's
 * lower children, neither is created), hard links, symlinks, devices,
 * FIFOs, modes, owners, xattrs and times.
 *
 * Layers are hostile input. Names are cleaned (leading "/" and "./"
 * dropped); a name with a ".." component is refused. Every parent folder is
 * opened with openat2(RESOLVE_IN_ROOT), so symlinks on the way, absolute or
 * climbing, resolve inside the root; the last component is never followed.
 * Hard-link targets resolve the same way and may not be folders. */
#ifndef KILN_OCI_LAYERS_H
#define KILN_OCI_LAYERS_H

#include <stdint.h>

#include "lib/result.h"

#define OCI_LAYER_MAX_ENTRIES 1000000

struct oci_layer_stats {
	uint64_t entries;   /* tar entries read */
	uint64_t bytes;     /* file data written */
	uint64_t skipped;   /* devices skipped (no CAP_MKNOD), xattrs refused */
};

/* Apply the layer in the file layer_path on top of the tree at root_dir
 * (which must exist). Its compression is detected from its first bytes:
 * gzip (through zlib, several members allowed), zstd (through libzstd,
 * several and skippable frames allowed) or none; a corrupt or truncated
 * stream is an error. When diff_id is not NULL ("sha256:<hex>", the
 * config's rootfs.diff_ids entry), the uncompressed stream must hash to it.
 * canceled (NULL: never) is asked before each entry: nonzero stops the
 * apply, KILN_E_LIMIT "... canceled". On failure the tree is left
 * part-applied: callers build into a scratch folder and throw it away.
 * st may be NULL. */
enum kiln_rc oci_layer_apply(const char *root_dir, const char *layer_path, const char *diff_id,
			     int (*canceled)(void *arg), void *arg, struct oci_layer_stats *st, struct kiln_err *e);

#endif
