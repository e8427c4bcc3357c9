/* A disk image as the block device sees it: plain read-write, read-only,
 * or copy-on-write over a base image that is never written.
 *
 * The copy-on-write overlay is an anonymous temporary file (O_TMPFILE, or
 * mkstemp + unlink) of the base's size, sparse, so nothing of it survives
 * the process however it ends. A bitmap with one bit per 64 KiB cluster
 * says which clusters live in the overlay; a cluster is copied there whole
 * on its first write, within the overlay's cap (cow_limit). Not
 * thread-safe: one caller at a time. */
#ifndef VMM_COW_H
#define VMM_COW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define COW_CLUSTER_SIZE (64 * 1024)

struct cow_disk {
	int base_fd;          /* the image; O_RDONLY when cow or read_only */
	int overlay_fd;       /* -1 unless cow and writable */
	bool cow;             /* writes go to the overlay */
	bool read_only;
	uint64_t size;        /* bytes, from open or the last cow_rescan */
	uint64_t *bitmap;     /* bit per cluster: 1 = in the overlay */
	uint64_t overlay_max; /* bytes the overlay may hold (cow_limit); 0: the disk's size */
	uint64_t overlay_used; /* bytes of clusters copied into it */
	uint8_t *cluster_buf; /* COW_CLUSTER_SIZE bytes for copy-ups */
};

/* Open base_path. With cow (and not read_only), writes land in an overlay
 * made in tmp_dir and the base is opened read-only; read_only refuses
 * writes. 0 or -errno; on failure c is left closed (cow_close is safe). */
int cow_open(struct cow_disk *c, const char *base_path, bool cow, bool read_only, const char *tmp_dir);

/* Cap the overlay of a copy-on-write disk at max_bytes (0: none beyond
 * the disk's own size): a write that needs a cluster more than that fails
 * with -ENOSPC, as on a full disk; clusters already in the overlay stay
 * writable. So each VM costs the host at most that much, whatever its
 * image's size. */
void cow_limit(struct cow_disk *c, uint64_t max_bytes);

/* Read up to len bytes at off; short only at the end of the disk (0 at or
 * past it). Bytes read or -errno. */
ssize_t cow_pread(struct cow_disk *c, void *buf, size_t len, uint64_t off);

/* Write len bytes at off: len, -EROFS when read-only, -ENOSPC when any of
 * it lies past the end (the disk never grows) or the overlay is full
 * (cow_limit), or -errno. */
ssize_t cow_pwrite(struct cow_disk *c, const void *buf, size_t len, uint64_t off);

/* fdatasync the file writes go to (the overlay with cow); 0 when read-only.
 * 0 or -errno. */
int cow_flush(struct cow_disk *c);

/* Size of the disk in bytes. */
uint64_t cow_size(const struct cow_disk *c);

/* Take the image file's current size, for an image the host filled in
 * after open (Firecracker's drive rescan). A copy-on-write disk keeps its
 * size: its overlay and bitmap were made for the base as it was. 1 when the
 * size changed, 0 when not, or -errno (the size is then unchanged). */
int cow_rescan(struct cow_disk *c);

/* Close everything and drop the overlay; fds go back to -1. Idempotent. */
void cow_close(struct cow_disk *c);

/* Snapshots: the disk's size and mode, and for a copy-on-write disk its
 * overlay (bitmap and every cluster in it), so that the guest's view of
 * the disk comes back with its memory. The clusters go in the state file,
 * whose ceiling bounds how much a template may have written. 0 or
 * -errno. */
struct snap_writer;
struct snap_reader;
int cow_save(struct cow_disk *c, struct snap_writer *w);
/* Into a disk opened the same way (same size and mode), its overlay still
 * empty: -EINVAL when the record does not fit it, or -errno. A plain
 * writable disk may have grown since: it keeps the saved size (the
 * guest's) until cow_rescan. */
int cow_restore(struct cow_disk *c, struct snap_reader *r);

#endif
