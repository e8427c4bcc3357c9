/* Packing a folder into an ext4 image file with mke2fs -d: no loop mounts,
 * no root needed.
 *
 * The image is sparse, has no journal (it lives for one job) and is labelled.
 * Its root folder is owned 0:0 with mode 0755; every other file keeps the
 * owner, mode and mtime it has in the folder (the user that runs kiln). Size:
 * content (4 KiB blocks) + 25% + 256 MiB, with at least one inode per 16 KiB
 * and 25% + 4096 more inodes than the folder has entries. */
#ifndef KILN_EXT4IMG_H
#define KILN_EXT4IMG_H

#include <stdint.h>

#include "lib/result.h"

#define EXT4IMG_HEADROOM_BYTES (256ULL << 20)
#define EXT4IMG_DEFAULT_MAX_BYTES (512ULL << 30)

struct ext4img_stats {
	uint64_t content_bytes; /* what the folder's entries take in 4 KiB blocks */
	uint64_t entries;       /* files, folders and links in the folder */
	uint64_t image_bytes;   /* the image's apparent size */
	uint64_t inodes;        /* the inode count asked of mke2fs */
};

/* Size an image for src_dir (the folder becomes the image's root), create it
 * at image_path (replacing a file there) and fill it with mke2fs. max_bytes
 * (0: EXT4IMG_DEFAULT_MAX_BYTES) bounds the image size: KILN_E_LIMIT beyond
 * it. On failure no image is left at image_path. */
enum kiln_rc ext4img_build(const char *src_dir, const char *image_path, const char *label,
			   uint64_t max_bytes, struct ext4img_stats *st, struct kiln_err *e);

#endif
