/* Packing a folder into an ext4 image file: no loop mounts, no root needed.
 *
 * The image is sparse, has no journal (it lives for one job) and is labelled.
 * Its root folder is owned 0:0 with mode 0755; every other file keeps the
 * owner, mode and times it has in the folder (the user that runs kiln). Size:
 * content (4 KiB blocks) + 25% + 256 MiB, with at least one inode per 16 KiB
 * and 25% + 4096 more inodes than the folder has entries, rounded up to 4
 * MiB.
 *
 * Two ways to make it, the same file system either way. mke2fs -d: one
 * process per image, whose start alone was 110-147 ms of the 145-182 ms a
 * workspace image took in the KVM sandbox. The fast path, for a folder of
 * only folders, files and symlinks (a checkout, whose .git objects are
 * often hard links into the mirror): mke2fs makes a blank of the size
 * once, kept in a cache folder; each image is a copy of the blank's few
 * allocated blocks, filled in-process with libext2fs, and not fsynced.
 * Names of one file within the folder share an inode, as with mke2fs -d.
 * Devices, fifos, sockets and extended attributes (an OCI root) go through
 * mke2fs -d, and so does a folder the fast path fails on (a warning says
 * why). */
#ifndef KILN_EXT4IMG_H
#define KILN_EXT4IMG_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/result.h"

#define EXT4IMG_HEADROOM_BYTES (256ULL << 20)
#define EXT4IMG_DEFAULT_MAX_BYTES (512ULL << 30)

struct ext4img_stats {
	uint64_t content_bytes; /* what the folder's entries take in 4 KiB blocks */
	uint64_t entries;       /* files, folders and links in the folder */
	uint64_t image_bytes;   /* the image's apparent size */
	uint64_t inodes;        /* the inode count asked of mke2fs */
	bool from_blank;        /* made by the fast path */
};

#define EXT4IMG_MAX_DEPTH 512  /* folders below the root the fast path takes */
#define EXT4IMG_MAX_LINKED (4ULL << 20) /* files of several links it takes */
#define EXT4IMG_MAX_BLANKS 16  /* in the cache folder; the least recently used go */

/* Size an image for src_dir (the folder becomes the image's root), create it
 * at image_path (replacing a file there) and fill it: from a blank kept in
 * cache_dir (created when missing) when the folder allows, else (or with
 * cache_dir NULL) with mke2fs -d. max_bytes (0: EXT4IMG_DEFAULT_MAX_BYTES)
 * bounds the image size: KILN_E_LIMIT beyond it. On failure no image is
 * left at image_path. */
enum kiln_rc ext4img_build(const char *src_dir, const char *image_path, const char *label, uint64_t max_bytes,
			   const char *cache_dir, struct ext4img_stats *st, struct kiln_err *e);

#endif
