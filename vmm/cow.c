#include "vmm/cow.h"

#include "vmm/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool cluster_in_overlay(const struct cow_disk *c, uint64_t cl)
{
	return (c->bitmap[cl / 64] >> (cl % 64)) & 1;
}

static void mark_cluster(struct cow_disk *c, uint64_t cl)
{
	c->bitmap[cl / 64] |= 1ULL << (cl % 64);
}

/* pread until len bytes, end of file or an error: bytes read or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* pwrite all len bytes: len or -errno. */
static ssize_t pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* An unnamed read-write file in dir: nothing to clean up on any exit. */
static int open_overlay(const char *dir)
{
	char path[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* No O_TMPFILE on this filesystem (or kernel): a named file that is
	 * unlinked at once leaves only a tiny window where it shows. */
	if (snprintf(path, sizeof(path), "%s/kiln-cow-XXXXXX", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (unlink(path) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int cow_open(struct cow_disk *c, const char *base_path, bool cow, bool read_only, const char *tmp_dir)
{
	uint64_t clusters, words;
	off_t end;
	int err;

	*c = (struct cow_disk){ .base_fd = -1, .overlay_fd = -1, .read_only = read_only };
	/* Read-only needs no overlay: nothing is ever written. */
	c->cow = cow && !read_only;

	c->base_fd = open(base_path, (cow || read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (c->base_fd < 0) {
		err = -errno;
		goto fail;
	}
	/* SEEK_END gives the size of regular files and block devices alike. */
	end = lseek(c->base_fd, 0, SEEK_END);
	if (end < 0) {
		err = -errno;
		goto fail;
	}
	c->size = (uint64_t)end;
	if (!c->cow)
		return 0;

	err = open_overlay(tmp_dir);
	if (err < 0)
		goto fail;
	c->overlay_fd = err;
	/* Sparse: the overlay costs only the clusters actually written. */
	if (ftruncate(c->overlay_fd, end) < 0) {
		err = -errno;
		goto fail;
	}
	clusters = c->size / COW_CLUSTER_SIZE + (c->size % COW_CLUSTER_SIZE != 0);
	words = clusters / 64 + 1;
	c->bitmap = calloc(words, sizeof(*c->bitmap));
	c->cluster_buf = malloc(COW_CLUSTER_SIZE);
	if (!c->bitmap || !c->cluster_buf) {
		err = -ENOMEM;
		goto fail;
	}
	return 0;

fail:
	cow_close(c);
	return err;
}

/* Clamp [off, off + len) to the disk; the bytes left. */
static size_t clamp(const struct cow_disk *c, size_t len, uint64_t off)
{
	if (off >= c->size)
		return 0;
	return len > c->size - off ? (size_t)(c->size - off) : len;
}

ssize_t cow_pread(struct cow_disk *c, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	len = clamp(c, len, off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (!c->cow)
		return pread_full(c->base_fd, buf, len, off);

	/* Cluster by cluster, each from wherever its current data is. */
	while (done < len) {
		uint64_t pos = off + done, cl = pos / COW_CLUSTER_SIZE;
		size_t n = COW_CLUSTER_SIZE - pos % COW_CLUSTER_SIZE;
		int fd = cluster_in_overlay(c, cl) ? c->overlay_fd : c->base_fd;
		ssize_t r;

		if (n > len - done)
			n = len - done;
		r = pread_full(fd, (uint8_t *)buf + done, n, pos);
		if (r < 0)
			return r;
		done += (size_t)r;
		if ((size_t)r < n)
			break;  /* the base shrank under us: report what we have */
	}
	return (ssize_t)done;
}

void cow_limit(struct cow_disk *c, uint64_t max_bytes)
{
	c->overlay_max = max_bytes;
}

/* Write n bytes at pos, all inside cluster cl, through the overlay. */
static int write_cluster(struct cow_disk *c, uint64_t cl, const void *buf, size_t n, uint64_t pos)
{
	uint64_t start = cl * COW_CLUSTER_SIZE;
	size_t clen = c->size - start < COW_CLUSTER_SIZE ? (size_t)(c->size - start) : COW_CLUSTER_SIZE;
	bool fresh = !cluster_in_overlay(c, cl);
	ssize_t r;

	if (fresh && c->overlay_max && c->overlay_used + clen > c->overlay_max)
		return -ENOSPC;
	if (!fresh || (pos == start && n == clen)) {
		/* Copied already, or overwritten whole: nothing to preserve. */
		r = pwrite_full(c->overlay_fd, buf, n, pos);
	} else {
		/* First partial write: the rest of the cluster must keep the
		 * base's bytes, so copy it up merged with the new data. */
		r = pread_full(c->base_fd, c->cluster_buf, clen, start);
		if (r < 0)
			return (int)r;
		memset(c->cluster_buf + r, 0, clen - (size_t)r);
		memcpy(c->cluster_buf + (pos - start), buf, n);
		r = pwrite_full(c->overlay_fd, c->cluster_buf, clen, start);
	}
	if (r < 0)
		return (int)r;
	/* Only after the data is there, or a failed write would expose a
	 * half-empty overlay cluster to later reads. */
	mark_cluster(c, cl);
	if (fresh)
		c->overlay_used += clen;
	return 0;
}

ssize_t cow_pwrite(struct cow_disk *c, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	int err;

	if (c->read_only)
		return -EROFS;
	if (off > c->size || len > c->size - off)
		return -ENOSPC;
	if (len > SSIZE_MAX)
		return -EINVAL;
	if (!c->cow)
		return pwrite_full(c->base_fd, buf, len, off);

	while (done < len) {
		uint64_t pos = off + done, cl = pos / COW_CLUSTER_SIZE;
		size_t n = COW_CLUSTER_SIZE - pos % COW_CLUSTER_SIZE;

		if (n > len - done)
			n = len - done;
		err = write_cluster(c, cl, (const uint8_t *)buf + done, n, pos);
		if (err < 0)
			return err;
		done += n;
	}
	return (ssize_t)done;
}

int cow_flush(struct cow_disk *c)
{
	int fd = c->cow ? c->overlay_fd : c->base_fd;

	if (c->read_only)
		return 0;
	return fdatasync(fd) < 0 ? -errno : 0;
}

uint64_t cow_size(const struct cow_disk *c)
{
	return c->size;
}

int cow_rescan(struct cow_disk *c)
{
	off_t end;

	if (c->cow || c->base_fd < 0)
		return 0;
	end = lseek(c->base_fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	if ((uint64_t)end == c->size)
		return 0;
	c->size = (uint64_t)end;
	return 1;
}

void cow_close(struct cow_disk *c)
{
	if (c->overlay_fd >= 0)
		close(c->overlay_fd);
	c->overlay_fd = -1;
	if (c->base_fd >= 0)
		close(c->base_fd);
	c->base_fd = -1;
	free(c->bitmap);
	c->bitmap = NULL;
	free(c->cluster_buf);
	c->cluster_buf = NULL;
}

static uint64_t n_clusters(const struct cow_disk *c)
{
	return (c->size + COW_CLUSTER_SIZE - 1) / COW_CLUSTER_SIZE;
}

int cow_save(struct cow_disk *c, struct snap_writer *w)
{
	uint64_t i, words = c->bitmap ? (n_clusters(c) + 63) / 64 : 0;
	ssize_t n;

	snap_put_u64(w, c->size);
	snap_put_u32(w, c->cow);
	snap_put_u32(w, c->read_only);
	snap_put_u64(w, words);
	for (i = 0; i < words; i++)
		snap_put_u64(w, c->bitmap[i]);
	for (i = 0; i < words * 64; i++) {
		if (!(c->bitmap[i / 64] >> (i % 64) & 1))
			continue;
		n = pread(c->overlay_fd, c->cluster_buf, COW_CLUSTER_SIZE, (off_t)(i * COW_CLUSTER_SIZE));
		if (n < 0)
			return -errno;
		if (n < COW_CLUSTER_SIZE)
			memset(c->cluster_buf + n, 0, (size_t)(COW_CLUSTER_SIZE - n));
		snap_put(w, c->cluster_buf, COW_CLUSTER_SIZE);
	}
	return w->err;
}

int cow_restore(struct cow_disk *c, struct snap_reader *r)
{
	uint64_t size = snap_get_u64(r), words, i, want = c->bitmap ? (n_clusters(c) + 63) / 64 : 0;
	uint32_t cow = snap_get_u32(r), ro = snap_get_u32(r);

	words = snap_get_u64(r);
	if (r->bad || cow != c->cow || ro != c->read_only || words != want)
		return -EINVAL;
	if (size != c->size) {
		/* A plain writable disk whose file grew since the save (a
		 * workspace the host fills in while the VM restores): the guest
		 * goes on with the size it knew until cow_rescan takes the new
		 * one. An overlay's bitmap is of its base's size: not so. */
		if (c->cow || c->read_only || size > c->size)
			return -EINVAL;
		c->size = size;
	}
	for (i = 0; i < words; i++)
		c->bitmap[i] = snap_get_u64(r);
	if (words && (c->bitmap[words - 1] >> 1 >> ((n_clusters(c) - 1) % 64)))
		return -EINVAL; /* bits past the last cluster */
	c->overlay_used = 0;
	for (i = 0; i < words * 64 && !r->bad; i++) {
		if (!(c->bitmap[i / 64] >> (i % 64) & 1))
			continue;
		if (c->overlay_max && c->overlay_used + COW_CLUSTER_SIZE > c->overlay_max)
			return -ENOSPC;
		snap_get(r, c->cluster_buf, COW_CLUSTER_SIZE);
		if (pwrite(c->overlay_fd, c->cluster_buf, COW_CLUSTER_SIZE, (off_t)(i * COW_CLUSTER_SIZE)) !=
		    COW_CLUSTER_SIZE)
			return errno ? -errno : -EIO;
		c->overlay_used += COW_CLUSTER_SIZE;
	}
	return r->bad ? -EINVAL : 0;
}
