#include "workspace/ext4img.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/spawn.h"

#define BLOCK 4096ULL

/* nftw has no payload argument: per-thread totals. */
static _Thread_local uint64_t walk_bytes, walk_entries, walk_limit;

static uint64_t blocks_of(uint64_t size)
{
	return (size + BLOCK - 1) / BLOCK * BLOCK;
}

static int walk_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path; (void)ftw;
	if (flag == FTW_NS || flag == FTW_DNR)
		return -1;
	walk_entries++;
	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
		walk_bytes += blocks_of((uint64_t)st->st_size);
	else if (S_ISLNK(st->st_mode) && st->st_size >= 60)
		walk_bytes += BLOCK; /* longer than a fast symlink */
	if (walk_bytes > walk_limit) {
		errno = EFBIG;
		return -1;
	}
	return 0;
}

static int find_mke2fs(char *buf, size_t size)
{
	static const char *const dirs[] = { "/usr/sbin", "/sbin" };
	size_t i;

	if (kiln_which(NULL, "mke2fs", buf, size))
		return 1;
	for (i = 0; i < 2; i++) {
		snprintf(buf, size, "%s/mke2fs", dirs[i]);
		if (access(buf, X_OK) == 0)
			return 1;
	}
	return 0;
}

enum kiln_rc ext4img_build(const char *src_dir, const char *image_path, const char *label,
			   uint64_t max_bytes, struct ext4img_stats *st, struct kiln_err *e)
{
	char mke2fs[PATH_MAX], inodes[32], opts[64], *out = NULL;
	uint64_t size, n_inodes;
	bool created = false;
	enum kiln_rc rc = KILN_OK;
	int fd = -1;

	memset(st, 0, sizeof(*st));
	if (!max_bytes)
		max_bytes = EXT4IMG_DEFAULT_MAX_BYTES;
	if (!find_mke2fs(mke2fs, sizeof(mke2fs)))
		return kiln_fail(e, KILN_E_NOTFOUND,
				 "mke2fs not found in PATH, /usr/sbin or /sbin: install the Debian package e2fsprogs");
	walk_bytes = walk_entries = 0;
	walk_limit = max_bytes;
	if (nftw(src_dir, walk_one, 16, FTW_PHYS) != 0) {
		if (errno == EFBIG)
			return kiln_fail(e, KILN_E_LIMIT, "workspace %s holds more than %llu bytes",
					 src_dir, (unsigned long long)max_bytes);
		return kiln_fail_errno(e, "workspace %s: walk", src_dir);
	}
	st->content_bytes = walk_bytes;
	st->entries = walk_entries;
	size = walk_bytes + walk_bytes / 4 + EXT4IMG_HEADROOM_BYTES;
	n_inodes = walk_entries + walk_entries / 4 + 4096;
	if (n_inodes < size / 16384)
		n_inodes = size / 16384;
	size += n_inodes * 256;              /* the inode tables */
	size = (size + (4 << 20) - 1) / (4 << 20) * (4 << 20);
	if (size > max_bytes)
		return kiln_fail(e, KILN_E_LIMIT, "workspace image for %s would take %llu bytes, more than %llu",
				 src_dir, (unsigned long long)size, (unsigned long long)max_bytes);
	if (n_inodes > UINT32_MAX / 2)
		return kiln_fail(e, KILN_E_LIMIT, "workspace %s has too many files", src_dir);
	st->image_bytes = size;
	st->inodes = n_inodes;

	fd = open(image_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return kiln_fail_errno(e, "workspace image %s", image_path);
	created = true;
	if (ftruncate(fd, (off_t)size) < 0) {
		rc = kiln_fail_errno(e, "workspace image %s: truncate to %llu bytes", image_path,
				     (unsigned long long)size);
		goto out;
	}
	close(fd);
	fd = -1;
	snprintf(inodes, sizeof(inodes), "%llu", (unsigned long long)n_inodes);
	snprintf(opts, sizeof(opts), "root_owner=0:0");
	{
		char *argv[] = { mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
				 "-N", inodes, "-m", "0", "-L", (char *)label, "-O", "^has_journal",
				 "-E", opts, "-d", (char *)src_dir, (char *)image_path, NULL };

		rc = kiln_spawn(argv, NULL, &out, 64 * 1024, e);
		if (rc) {
			size_t n = strlen(e->msg);
			snprintf(e->msg + n, sizeof(e->msg) - n, " (making %s from %s)", image_path, src_dir);
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(out);
	if (rc && created)
		unlink(image_path);
	return rc;
}
