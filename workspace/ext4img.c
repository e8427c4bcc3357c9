#include "workspace/ext4img.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#include "lib/log.h"
#include "lib/paths.h"
#include "lib/spawn.h"

#define BLOCK 4096ULL
/* Sizes come in steps, so that a repository's next commits reuse its
 * blank. Not coarser: the guest can fill what it is given, and in the
 * sandbox a 320 MiB workspace filled got kiln-vmm killed by its memory
 * cgroup (the host's page cache of the writes counts there). */
#define SIZE_STEP (4ULL << 20)
#define COPY_CHUNK (256 * 1024)

/* nftw has no payload argument: per-thread totals, files with more than
 * one link, and whether the folder holds only what the fast path writes. */
static _Thread_local uint64_t walk_bytes, walk_entries, walk_limit, walk_multi;
static _Thread_local bool walk_plain;

static uint64_t blocks_of(uint64_t size)
{
	return (size + BLOCK - 1) / BLOCK * BLOCK;
}

static int walk_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	if (flag == FTW_NS || flag == FTW_DNR)
		return -1;
	walk_entries++;
	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
		walk_bytes += blocks_of((uint64_t)st->st_size);
	else if (S_ISLNK(st->st_mode) && st->st_size >= 60)
		walk_bytes += BLOCK; /* longer than a fast symlink */
	if (S_ISREG(st->st_mode) && st->st_nlink > 1)
		walk_multi++;
	/* Devices, fifos and sockets are left to mke2fs -d. */
	if (!(S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode) || S_ISREG(st->st_mode)) || ftw->level > EXT4IMG_MAX_DEPTH ||
	    walk_multi > EXT4IMG_MAX_LINKED)
		walk_plain = false;
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

/* A sparse file of size bytes at path, replacing one there. */
static enum kiln_rc make_sparse(const char *path, uint64_t size, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return kiln_fail_errno(e, "workspace image %s", path);
	if (ftruncate(fd, (off_t)size) < 0)
		rc = kiln_fail_errno(e, "workspace image %s: truncate to %llu bytes", path, (unsigned long long)size);
	close(fd);
	return rc;
}

/* mke2fs on the sparse file at image_path, filled from src_dir (NULL:
 * left empty). */
static enum kiln_rc run_mke2fs(const char *src_dir, const char *image_path, const char *label, uint64_t n_inodes,
			       struct kiln_err *e)
{
	char mke2fs[PATH_MAX], inodes[32], *out = NULL;
	char *argv[] = { mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-N", inodes, "-m", "0",
			 "-L", (char *)label, "-O", "^has_journal", "-E", "root_owner=0:0", "-d", (char *)src_dir,
			 (char *)image_path, NULL };
	enum kiln_rc rc;

	if (!find_mke2fs(mke2fs, sizeof(mke2fs)))
		return kiln_fail(e, KILN_E_NOTFOUND,
				 "mke2fs not found in PATH, /usr/sbin or /sbin: install the Debian package e2fsprogs");
	snprintf(inodes, sizeof(inodes), "%llu", (unsigned long long)n_inodes);
	if (!src_dir) {
		argv[19] = (char *)image_path;
		argv[20] = NULL;
	}
	rc = kiln_spawn(argv, NULL, &out, 64 * 1024, e);
	if (rc) {
		size_t n = strlen(e->msg);

		snprintf(e->msg + n, sizeof(e->msg) - n, " (making %s from %s)", image_path,
			 src_dir ? src_dir : "nothing");
	}
	free(out);
	return rc;
}

/* --- the fast path: a blank image, copied and filled in-process ---------- */

/* The blank of this label, size and inode count in cache_dir, made by
 * mke2fs on first use (under a temporary name, then renamed, so that
 * another kiln never copies half of one). Its path goes to buf. */
static enum kiln_rc blank_get(const char *cache_dir, const char *label, uint64_t size, uint64_t n_inodes,
			      char *buf, size_t bufsz, struct kiln_err *e)
{
	char tmp[PATH_MAX];
	enum kiln_rc rc;

	if (snprintf(buf, bufsz, "%s/%s-%llu-%llu.ext4", cache_dir, label, (unsigned long long)size,
		     (unsigned long long)n_inodes) >= (int)bufsz ||
	    snprintf(tmp, sizeof(tmp), "%s.new.%d.%ld", buf, (int)getpid(), (long)gettid()) >= (int)sizeof(tmp))
		return kiln_fail(e, KILN_E_LIMIT, "blank image path too long in %s", cache_dir);
	if (access(buf, R_OK) == 0) {
		utimensat(AT_FDCWD, buf, NULL, 0); /* its last use, for the sweep */
		return KILN_OK;
	}
	if (kiln_mkdir_p(cache_dir) < 0)
		return kiln_fail_errno(e, "creating %s", cache_dir);
	if ((rc = make_sparse(tmp, size, e)) || (rc = run_mke2fs(NULL, tmp, label, n_inodes, e))) {
		unlink(tmp);
		return rc;
	}
	if (rename(tmp, buf) < 0) {
		rc = kiln_fail_errno(e, "renaming %s", tmp);
		unlink(tmp);
		return rc;
	}
	return KILN_OK;
}

/* The least recently used of cache_dir's blanks into oldest; how many
 * there are. Temporary files of a dead kiln, an hour old, go. */
static int blank_oldest(const char *cache_dir, char oldest[NAME_MAX + 1])
{
	struct timespec t_oldest = { 0, 0 };
	struct dirent *d;
	struct stat st;
	int n = 0;
	DIR *dir = opendir(cache_dir);

	oldest[0] = '\0';
	if (!dir)
		return 0;
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.' || fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (strstr(d->d_name, ".new.")) {
			if (st.st_mtime < time(NULL) - 3600)
				unlinkat(dirfd(dir), d->d_name, 0);
			continue;
		}
		n++;
		if (!oldest[0] || st.st_mtim.tv_sec < t_oldest.tv_sec ||
		    (st.st_mtim.tv_sec == t_oldest.tv_sec && st.st_mtim.tv_nsec < t_oldest.tv_nsec)) {
			snprintf(oldest, NAME_MAX + 1, "%s", d->d_name);
			t_oldest = st.st_mtim;
		}
	}
	closedir(dir);
	return n;
}

/* Keep at most EXT4IMG_MAX_BLANKS blanks in cache_dir: the least
 * recently used go first (a use touches its blank). */
static void blank_sweep(const char *cache_dir)
{
	char oldest[NAME_MAX + 1], path[PATH_MAX];
	int round;

	for (round = 0; round < 64 && blank_oldest(cache_dir, oldest) > EXT4IMG_MAX_BLANKS; round++)
		if (snprintf(path, sizeof(path), "%s/%s", cache_dir, oldest) >= (int)sizeof(path) || unlink(path) < 0)
			break;
}

/* from's data (its holes skipped) into to, a file of size bytes. */
static enum kiln_rc copy_sparse(const char *from, const char *to, uint64_t size, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1;
	off_t data = 0, hole, end = (off_t)size;

	if (in < 0)
		return kiln_fail_errno(e, "blank image %s", from);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0 || ftruncate(out, end) < 0) {
		rc = kiln_fail_errno(e, "workspace image %s", to);
		goto out;
	}
	while (data < end && (data = lseek(in, data, SEEK_DATA)) >= 0 && data < end) {
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		while (data < hole) {
			off_t in_off = data, out_off = data;
			ssize_t n = copy_file_range(in, &in_off, out, &out_off, (size_t)(hole - data), 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				rc = n < 0 ? kiln_fail_errno(e, "copying %s to %s", from, to)
					   : kiln_fail(e, KILN_E_IO, "copying %s to %s: it shrank", from, to);
				goto out;
			}
			data += n;
		}
	}
	if (data < 0 && errno != ENXIO)
		rc = kiln_fail_errno(e, "reading %s", from);
out:
	if (out >= 0)
		close(out);
	close(in);
	return rc;
}

/* Files of more than one link met so far: (dev, ino) to the image's
 * inode, so that every further name of one links that inode, as mke2fs -d
 * does. Open addressing; sized from the walk's count, so it never grows. */
struct links {
	struct link_slot {
		dev_t dev;
		ino_t ino;
		ext2_ino_t to; /* 0: free */
	} *slot;
	size_t cap;
};

static struct link_slot *links_find(struct links *l, const struct stat *st)
{
	size_t i = ((size_t)st->st_ino * 0x9e3779b97f4a7c15ULL ^ (size_t)st->st_dev) & (l->cap - 1);

	while (l->slot[i].to && (l->slot[i].dev != st->st_dev || l->slot[i].ino != st->st_ino))
		i = (i + 1) & (l->cap - 1);
	return &l->slot[i];
}

static enum kiln_rc ext2_fail(struct kiln_err *e, errcode_t err, const char *what, const char *path)
{
	return kiln_fail(e, KILN_E_IO, "workspace image: %s %s: %s", what, path, error_message(err));
}

/* ext4 keeps nanoseconds and the epoch's high bits beside each time. */
static uint32_t time_extra(const struct timespec *ts)
{
	return ((uint32_t)ts->tv_nsec << 2) | (uint32_t)(((int64_t)ts->tv_sec - (int32_t)ts->tv_sec) >> 32 & 3);
}

/* ino takes st's owner, permissions and times, as mke2fs -d gives them. */
static errcode_t set_attrs(ext2_filsys fs, ext2_ino_t ino, const struct stat *st)
{
	struct ext2_inode_large in;
	errcode_t err;

	if ((err = ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)&in, sizeof(in))))
		return err;
	in.i_mode = (uint16_t)((in.i_mode & LINUX_S_IFMT) | (st->st_mode & 07777));
	in.i_uid = (uint16_t)st->st_uid;
	ext2fs_set_i_uid_high(in, st->st_uid >> 16);
	in.i_gid = (uint16_t)st->st_gid;
	ext2fs_set_i_gid_high(in, st->st_gid >> 16);
	in.i_atime = (uint32_t)st->st_atim.tv_sec;
	in.i_mtime = (uint32_t)st->st_mtim.tv_sec;
	in.i_ctime = (uint32_t)st->st_ctim.tv_sec;
	if (in.i_extra_isize >= offsetof(struct ext2_inode_large, i_crtime) - EXT2_GOOD_OLD_INODE_SIZE) {
		in.i_atime_extra = time_extra(&st->st_atim);
		in.i_mtime_extra = time_extra(&st->st_mtim);
		in.i_ctime_extra = time_extra(&st->st_ctim);
	}
	return ext2fs_write_inode_full(fs, ino, (struct ext2_inode *)&in, sizeof(in));
}

/* name's entry for ino in dir, the folder grown when it is full. */
static errcode_t link_in(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino, int type)
{
	errcode_t err = ext2fs_link(fs, dir, name, ino, type);

	if (err == EXT2_ET_DIR_NO_SPACE && !(err = ext2fs_expand_dir(fs, dir)))
		err = ext2fs_link(fs, dir, name, ino, type);
	return err;
}

/* Another name for the image's inode ino: an entry and one more link. */
static enum kiln_rc link_again(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino, const char *path,
			       struct kiln_err *e)
{
	struct ext2_inode in;
	errcode_t err;

	if ((err = link_in(fs, dir, name, ino, EXT2_FT_REG_FILE)) || (err = ext2fs_read_inode(fs, ino, &in)))
		return ext2_fail(e, err, "linking", path);
	in.i_links_count++;
	if ((err = ext2fs_write_inode(fs, ino, &in)))
		return ext2_fail(e, err, "linking", path);
	return KILN_OK;
}

/* A regular file: its inode (extent-mapped), its entry, then its bytes
 * read from fd. A further name of a file already written is a link. */
static enum kiln_rc write_file(ext2_filsys fs, ext2_ino_t dir, const char *name, int fd, const struct stat *st,
			       const char *path, char *buf, struct links *links, struct kiln_err *e)
{
	struct ext2_inode in = { 0 };
	struct link_slot *slot = NULL;
	ext2_file_t f = NULL;
	ext2_ino_t ino;
	errcode_t err;

	if (st->st_nlink > 1) {
		if (!links->cap)
			return kiln_fail(e, KILN_E_INVALID, "workspace %s: linked after the walk", path);
		slot = links_find(links, st);
		if (slot->to)
			return link_again(fs, dir, name, slot->to, path, e);
	}
	if ((err = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0600, 0, &ino)) ||
	    (err = link_in(fs, dir, name, ino, EXT2_FT_REG_FILE)))
		return ext2_fail(e, err, "adding", path);
	ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
	if (slot) {
		slot->dev = st->st_dev;
		slot->ino = st->st_ino;
		slot->to = ino;
	}
	in.i_mode = LINUX_S_IFREG | 0600;
	in.i_links_count = 1;
	if (ext2fs_has_feature_extents(fs->super)) {
		ext2_extent_handle_t h;

		/* An empty extent tree in the inode, as a new file has. */
		if ((err = ext2fs_extent_open2(fs, ino, &in, &h)))
			return ext2_fail(e, err, "extents of", path);
		ext2fs_extent_free(h);
	}
	if ((err = ext2fs_write_new_inode(fs, ino, &in)))
		return ext2_fail(e, err, "writing the inode of", path);
	if (st->st_size > 0) {
		if ((err = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &f)))
			return ext2_fail(e, err, "opening", path);
		for (;;) {
			ssize_t n = read(fd, buf, COPY_CHUNK);
			unsigned int done = 0, w;

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ext2fs_file_close(f);
				return kiln_fail_errno(e, "reading %s", path);
			}
			if (n == 0)
				break;
			while (done < (unsigned int)n) {
				if ((err = ext2fs_file_write(f, buf + done, (unsigned int)n - done, &w))) {
					ext2fs_file_close(f);
					return ext2_fail(e, err, "writing", path);
				}
				done += w;
			}
		}
		if ((err = ext2fs_file_close(f)))
			return ext2_fail(e, err, "closing", path);
	}
	if ((err = set_attrs(fs, ino, st)))
		return ext2_fail(e, err, "setting the attributes of", path);
	return KILN_OK;
}

/* Everything in the folder dfd (at path, for messages) into the image's
 * folder dir, depth levels below the root. */
static enum kiln_rc fill(ext2_filsys fs, int dfd, ext2_ino_t dir, const char *path, int depth, char *buf,
			 struct links *links, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	char sub[PATH_MAX], target[PATH_MAX];
	struct dirent *d;
	struct stat st;
	DIR *ds;
	int fd = dup(dfd);

	if (depth > EXT4IMG_MAX_DEPTH)
		return kiln_fail(e, KILN_E_LIMIT, "workspace %s: deeper than %d folders", path, EXT4IMG_MAX_DEPTH);
	if (fd < 0 || !(ds = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return kiln_fail_errno(e, "workspace %s", path);
	}
	while (!rc && (errno = 0, d = readdir(ds))) {
		ext2_ino_t ino;
		errcode_t err = 0;
		int cfd;

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, d->d_name) >= (int)sizeof(sub)) {
			rc = kiln_fail(e, KILN_E_LIMIT, "workspace: path too long: %s/%s", path, d->d_name);
			break;
		}
		if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = kiln_fail_errno(e, "workspace %s", sub);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			/* mkdir and symlink count nothing as used until linked:
			 * after a full folder grows, they start again. */
			if (!(err = ext2fs_new_inode(fs, dir, LINUX_S_IFDIR | 0755, 0, &ino)) &&
			    (err = ext2fs_mkdir(fs, dir, ino, d->d_name)) == EXT2_ET_DIR_NO_SPACE &&
			    !(err = ext2fs_expand_dir(fs, dir)))
				err = ext2fs_mkdir(fs, dir, ino, d->d_name);
			if (err || (err = set_attrs(fs, ino, &st))) {
				rc = ext2_fail(e, err, "adding the folder", sub);
				break;
			}
			cfd = openat(dfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				rc = kiln_fail_errno(e, "workspace %s", sub);
				break;
			}
			rc = fill(fs, cfd, ino, sub, depth + 1, buf, links, e);
			close(cfd);
		} else if (S_ISREG(st.st_mode)) {
			cfd = openat(dfd, d->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				rc = kiln_fail_errno(e, "workspace %s", sub);
				break;
			}
			rc = write_file(fs, dir, d->d_name, cfd, &st, sub, buf, links, e);
			close(cfd);
		} else if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(dfd, d->d_name, target, sizeof(target) - 1);

			if (n < 0 || n >= (ssize_t)sizeof(target) - 1) {
				rc = n < 0 ? kiln_fail_errno(e, "workspace %s", sub)
					   : kiln_fail(e, KILN_E_LIMIT, "workspace %s: link target too long", sub);
				break;
			}
			target[n] = '\0';
			if (!(err = ext2fs_new_inode(fs, dir, LINUX_S_IFLNK | 0777, 0, &ino)) &&
			    (err = ext2fs_symlink(fs, dir, ino, d->d_name, target)) == EXT2_ET_DIR_NO_SPACE &&
			    !(err = ext2fs_expand_dir(fs, dir)))
				err = ext2fs_symlink(fs, dir, ino, d->d_name, target);
			if (err || (err = set_attrs(fs, ino, &st)))
				rc = ext2_fail(e, err, "adding the link", sub);
		} else {
			/* The walk saw none: the folder changed under us. */
			rc = kiln_fail(e, KILN_E_INVALID, "workspace %s: not a file, folder or link", sub);
		}
	}
	if (!rc && errno)
		rc = kiln_fail_errno(e, "workspace %s", path);
	closedir(ds);
	return rc;
}

/* src_dir's tree into the copy of a blank at image_path. */
static enum kiln_rc fill_image(const char *src_dir, const char *image_path, uint64_t n_linked, struct kiln_err *e)
{
	struct links links = { NULL, 0 };
	ext2_filsys fs = NULL;
	enum kiln_rc rc;
	errcode_t err;
	char *buf = NULL;
	int dfd;

	/* Twice the files with links, in a power of two: never full. */
	if (n_linked) {
		links.cap = 16;
		while (links.cap < 2 * n_linked)
			links.cap *= 2;
		if (!(links.slot = calloc(links.cap, sizeof(*links.slot))))
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}

	if ((err = ext2fs_open2(image_path, NULL, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs))) {
		free(links.slot);
		return ext2_fail(e, err, "opening", image_path);
	}
	dfd = open(src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	buf = malloc(COPY_CHUNK);
	if (dfd < 0 || !buf) {
		rc = dfd < 0 ? kiln_fail_errno(e, "workspace %s", src_dir) : kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	if ((err = ext2fs_read_bitmaps(fs))) {
		rc = ext2_fail(e, err, "reading the bitmaps of", image_path);
		goto out;
	}
	fs->umask = 0;
	rc = fill(fs, dfd, EXT2_ROOT_INO, src_dir, 1, buf, &links, e);
out:
	if (dfd >= 0)
		close(dfd);
	free(buf);
	free(links.slot);
	/* No fsync: the image lives for one job, and the VM reads it through
	 * the page cache like any file. */
	err = ext2fs_close2(fs, EXT2_FLAG_FLUSH_NO_SYNC);
	if (!rc && err)
		rc = ext2_fail(e, err, "writing", image_path);
	return rc;
}

/* The fast path; KILN_OK with the image complete at image_path. */
static enum kiln_rc build_from_blank(const char *src_dir, const char *image_path, const char *label,
				     const char *cache_dir, uint64_t size, uint64_t n_inodes, uint64_t n_linked,
				     struct kiln_err *e)
{
	char blank[PATH_MAX];
	enum kiln_rc rc;

	if ((rc = blank_get(cache_dir, label, size, n_inodes, blank, sizeof(blank), e)))
		return rc;
	blank_sweep(cache_dir);
	if ((rc = copy_sparse(blank, image_path, size, e)))
		return rc;
	return fill_image(src_dir, image_path, n_linked, e);
}

enum kiln_rc ext4img_build(const char *src_dir, const char *image_path, const char *label, uint64_t max_bytes,
			   const char *cache_dir, struct ext4img_stats *st, struct kiln_err *e)
{
	uint64_t size, n_inodes;
	enum kiln_rc rc;

	memset(st, 0, sizeof(*st));
	if (!max_bytes)
		max_bytes = EXT4IMG_DEFAULT_MAX_BYTES;
	walk_bytes = walk_entries = walk_multi = 0;
	walk_limit = max_bytes;
	walk_plain = true;
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
	size = (size + SIZE_STEP - 1) / SIZE_STEP * SIZE_STEP;
	if (size > max_bytes)
		return kiln_fail(e, KILN_E_LIMIT, "workspace image for %s would take %llu bytes, more than %llu",
				 src_dir, (unsigned long long)size, (unsigned long long)max_bytes);
	if (n_inodes > UINT32_MAX / 2)
		return kiln_fail(e, KILN_E_LIMIT, "workspace %s has too many files", src_dir);
	st->image_bytes = size;
	st->inodes = n_inodes;

	if (cache_dir && walk_plain) {
		struct kiln_err fe = { 0 };

		rc = build_from_blank(src_dir, image_path, label, cache_dir, size, n_inodes, walk_multi, &fe);
		if (!rc) {
			st->from_blank = true;
			return KILN_OK;
		}
		/* mke2fs -d makes it the slow way; a limit stays the job's error. */
		if (rc == KILN_E_LIMIT) {
			unlink(image_path);
			if (e)
				*e = fe;
			return rc;
		}
		log_warn("workspace image %s: %s; making it with mke2fs -d instead", image_path, fe.msg);
	}
	if ((rc = make_sparse(image_path, size, e)) || (rc = run_mke2fs(src_dir, image_path, label, n_inodes, e)))
		unlink(image_path);
	return rc;
}
