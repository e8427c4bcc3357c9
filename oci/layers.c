#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

#include "lib/paths.h"
#include "lib/sha256.h"
#include "oci/layers.h"

#define WH ".wh."
#define WH_OPQ ".wh..wh..opq"
#define MAX_DEPTH 256

/* Paths this layer created: whiteouts never remove them. An open-addressed
 * set of strings, bounded by OCI_LAYER_MAX_ENTRIES. */
struct pathset {
	char **slot;
	size_t cap, n;
};

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static int set_has(const struct pathset *ps, const char *s)
{
	size_t i;

	if (!ps->cap)
		return 0;
	for (i = hash(s) & (ps->cap - 1); ps->slot[i]; i = (i + 1) & (ps->cap - 1))
		if (!strcmp(ps->slot[i], s))
			return 1;
	return 0;
}

static int set_add(struct pathset *ps, const char *s)
{
	size_t i;

	if (set_has(ps, s))
		return 0;
	if ((ps->n + 1) * 2 > ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 1024, k;
		char **slot = calloc(cap, sizeof(*slot));

		if (!slot)
			return -1;
		for (k = 0; k < ps->cap; k++) {
			if (!ps->slot[k])
				continue;
			for (i = hash(ps->slot[k]) & (cap - 1); slot[i]; i = (i + 1) & (cap - 1))
				;
			slot[i] = ps->slot[k];
		}
		free(ps->slot);
		ps->slot = slot;
		ps->cap = cap;
	}
	for (i = hash(s) & (ps->cap - 1); ps->slot[i]; i = (i + 1) & (ps->cap - 1))
		;
	ps->slot[i] = strdup(s);
	if (!ps->slot[i])
		return -1;
	ps->n++;
	return 0;
}

static void set_free(struct pathset *ps)
{
	size_t i;

	for (i = 0; i < ps->cap; i++)
		free(ps->slot[i]);
	free(ps->slot);
}

/* The layer's bytes, uncompressed here (not by libarchive) so that the
 * uncompressed stream can be hashed for its diff_id. */
enum src_kind { SRC_PLAIN, SRC_GZIP, SRC_ZSTD };

struct src {
	int fd;
	enum src_kind kind;
	z_stream z;
	int z_live;
	ZSTD_DStream *zs;
	size_t zs_last; /* ZSTD_decompressStream's last answer: 0 at a frame's end */
	int member_end;  /* gzip: the last member ended and no byte came since */
	unsigned char in[1 << 16];
	size_t in_len, in_pos;
	int in_eof;
	unsigned char out[1 << 17];
	EVP_MD_CTX *md;
	char err[200];
};

static int src_fill(struct src *s)
{
	ssize_t n;

	if (s->in_pos < s->in_len || s->in_eof)
		return 0;
	do
		n = read(s->fd, s->in, sizeof(s->in));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(s->err, sizeof(s->err), "reading: %s", strerror(errno));
		return -1;
	}
	s->in_len = (size_t)n;
	s->in_pos = 0;
	s->in_eof = n == 0;
	return 0;
}

/* Up to sizeof(s->out) uncompressed bytes into s->out: their count, 0 at
 * the end, -1 with s->err set. */
static ssize_t src_next(struct src *s)
{
	for (;;) {
		size_t made = 0;

		if (src_fill(s) != 0)
			return -1;
		if (s->kind == SRC_PLAIN) {
			made = s->in_len - s->in_pos;
			memcpy(s->out, s->in + s->in_pos, made);
			s->in_pos = s->in_len;
		} else if (s->in_eof) {
			if (s->kind == SRC_GZIP ? !s->member_end : s->zs_last != 0) {
				snprintf(s->err, sizeof(s->err), "the %s stream is truncated",
					 s->kind == SRC_GZIP ? "gzip" : "zstd");
				return -1;
			}
			return 0;
		} else if (s->kind == SRC_GZIP) {
			int r;

			if (s->member_end) {
				/* Another member follows: gzip allows several. */
				if (inflateReset(&s->z) != Z_OK) {
					snprintf(s->err, sizeof(s->err), "gzip: inflateReset failed");
					return -1;
				}
				s->member_end = 0;
			}
			s->z.next_in = s->in + s->in_pos;
			s->z.avail_in = (uInt)(s->in_len - s->in_pos);
			s->z.next_out = s->out;
			s->z.avail_out = sizeof(s->out);
			r = inflate(&s->z, Z_NO_FLUSH);
			s->in_pos = s->in_len - s->z.avail_in;
			made = sizeof(s->out) - s->z.avail_out;
			if (r == Z_STREAM_END)
				s->member_end = 1;
			else if (r != Z_OK && r != Z_BUF_ERROR) {
				snprintf(s->err, sizeof(s->err), "bad gzip data: %s", s->z.msg ? s->z.msg : "inflate failed");
				return -1;
			}
		} else {
			ZSTD_inBuffer ib = { s->in, s->in_len, s->in_pos };
			ZSTD_outBuffer ob = { s->out, sizeof(s->out), 0 };

			s->zs_last = ZSTD_decompressStream(s->zs, &ob, &ib);
			if (ZSTD_isError(s->zs_last)) {
				snprintf(s->err, sizeof(s->err), "bad zstd data: %s", ZSTD_getErrorName(s->zs_last));
				return -1;
			}
			s->in_pos = ib.pos;
			made = ob.pos;
		}
		if (made) {
			EVP_DigestUpdate(s->md, s->out, made);
			return (ssize_t)made;
		}
		if (s->kind == SRC_PLAIN)
			return 0;
	}
}

static la_ssize_t src_read(struct archive *ar, void *ud, const void **buf)
{
	struct src *s = ud;
	ssize_t n = src_next(s);

	*buf = s->out;
	if (n < 0) {
		archive_set_error(ar, EIO, "%s", s->err);
		return -1;
	}
	return n;
}

static int src_open(struct src *s, const char *path)
{
	unsigned char magic[4] = { 0 };
	ssize_t n;

	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0)
		return -1;
	n = pread(s->fd, magic, sizeof(magic), 0);
	if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
		s->kind = SRC_GZIP;
		if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
			return errno = ENOMEM, -1;
		s->z_live = 1;
	} else if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
		s->kind = SRC_ZSTD;
		s->zs = ZSTD_createDStream();
		if (!s->zs)
			return errno = ENOMEM, -1;
	}
	s->md = EVP_MD_CTX_new();
	if (!s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
		return errno = ENOMEM, -1;
	return 0;
}

static void src_close(struct src *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->z_live)
		inflateEnd(&s->z);
	ZSTD_freeDStream(s->zs);
	EVP_MD_CTX_free(s->md);
}

/* Folders whose times are set last (writing into them changes them). */
struct dirtime {
	char *path;
	struct timespec mtime;
};

struct apply {
	int root;
	const char *layer;
	struct pathset made;
	struct dirtime *dirs;
	size_t n_dirs, cap_dirs;
	struct oci_layer_stats st;
	int is_root;
};

/* Clean a tar name into out: no leading "/" or "./", no "." or empty
 * components; a ".." component is refused. "" is the root itself. */
static int clean_name(const char *in, char *out, size_t size)
{
	size_t n = 0;
	const char *p = in;

	while (*p) {
		const char *c;
		size_t k;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		c = strchr(p, '/');
		k = c ? (size_t)(c - p) : strlen(p);
		if (k == 1 && p[0] == '.') {
			p += k;
			continue;
		}
		if (k == 2 && p[0] == '.' && p[1] == '.')
			return -1;
		if (n + k + 2 > size)
			return -2;
		if (n)
			out[n++] = '/';
		memcpy(out + n, p, k);
		n += k;
		p += k;
	}
	out[n] = '\0';
	return 0;
}

static int open_in_root(int root, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};

	if (!*path)
		path = ".";
	return (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
}

/* Remove name in dirfd and, for a folder, everything below it, never
 * following a symlink. */
static int remove_at(int dirfd, const char *name, int depth)
{
	struct dirent *d;
	DIR *dir;
	int fd, rc = 0;

	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	if (depth > MAX_DEPTH) {
		errno = ELOOP;
		return -1;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -1;
	}
	while (rc == 0 && (d = readdir(dir))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		rc = remove_at(fd, d->d_name, depth + 1);
	}
	closedir(dir);
	if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

/* The folder path (any string: the kernel resolves it, symlinks and ".."
 * included, inside the root) opened O_PATH; missing folders are made
 * (0755, as tar does for implied folders), also where a symlink on the way
 * dangles: its target is made, inside the root, as containerd does. Only
 * single names are ever created, each in a folder resolved inside the
 * root. */
static int ensure_dir(struct apply *a, const char *path, int depth)
{
	char head[PATH_MAX], last[NAME_MAX + 1], target[PATH_MAX], next[PATH_MAX];
	const char *slash;
	size_t n = strlen(path);
	ssize_t tl;
	int fd, pfd;

	fd = open_in_root(a->root, path, O_PATH | O_DIRECTORY);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	if (depth > MAX_DEPTH) {
		errno = ELOOP;
		return -1;
	}
	while (n > 0 && path[n - 1] == '/')
		n--;
	slash = memrchr(path, '/', n);
	snprintf(head, sizeof(head), "%.*s", slash ? (int)(slash - path) : 0, path);
	if ((size_t)(n - (slash ? (size_t)(slash - path) + 1 : 0)) > NAME_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(last, sizeof(last), "%.*s", (int)(n - (slash ? (size_t)(slash - path) + 1 : 0)), slash ? slash + 1 : path);
	if (!last[0] || !strcmp(last, ".") || !strcmp(last, "..")) {
		errno = ENOENT;
		return -1;
	}
	pfd = ensure_dir(a, head, depth + 1);
	if (pfd < 0)
		return -1;
	if (mkdirat(pfd, last, 0755) != 0) {
		if (errno != EEXIST) {
			close(pfd);
			return -1;
		}
		/* There but not resolvable: a symlink whose target is missing. */
		tl = readlinkat(pfd, last, target, sizeof(target) - 1);
		close(pfd);
		if (tl < 0) {
			errno = ENOTDIR;
			return -1;
		}
		target[tl] = '\0';
		if (snprintf(next, sizeof(next), "%s%s%s", target[0] == '/' ? "" : head,
			     target[0] == '/' || !head[0] ? "" : "/", target) >= (int)sizeof(next)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		fd = ensure_dir(a, next, depth + 1);
		if (fd < 0)
			return -1;
		close(fd);
	} else {
		close(pfd);
	}
	return open_in_root(a->root, path, O_PATH | O_DIRECTORY);
}

/* The parent folder of clean path p, made when missing (ensure_dir). */
static int open_parent(struct apply *a, const char *p, int depth)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(p, '/');

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - p) : 0, p);
	if (depth > MAX_DEPTH)
		return open_in_root(a->root, dir, O_PATH | O_DIRECTORY);
	return ensure_dir(a, dir, depth);
}

static enum kiln_rc whiteout(struct apply *a, const char *path, int pfd, const char *base, struct kiln_err *e)
{
	char victim[PATH_MAX], dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 0, path);
	if (!strcmp(base, WH_OPQ)) {
		/* Hide the folder's lower children, keeping what this layer made. */
		int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct dirent *d;
		DIR *dr;

		if (fd < 0)
			return kiln_fail_errno(e, "layer %s: opaque whiteout %s", a->layer, path);
		dr = fdopendir(fd);
		if (!dr) {
			close(fd);
			return kiln_fail_errno(e, "layer %s: opaque whiteout %s", a->layer, path);
		}
		while ((d = readdir(dr))) {
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			snprintf(victim, sizeof(victim), "%s%s%s", dir, dir[0] ? "/" : "", d->d_name);
			if (set_has(&a->made, victim))
				continue;
			if (remove_at(fd, d->d_name, 0) != 0) {
				closedir(dr);
				return kiln_fail_errno(e, "layer %s: removing %s", a->layer, victim);
			}
		}
		closedir(dr);
		return KILN_OK;
	}
	if (!strncmp(base, WH WH, 8))
		return KILN_OK; /* other AUFS metadata: skip */
	base += strlen(WH);
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return kiln_fail(e, KILN_E_INVALID, "layer %s: whiteout '%s' names no file", a->layer, path);
	snprintf(victim, sizeof(victim), "%s%s%s", dir, dir[0] ? "/" : "", base);
	if (set_has(&a->made, victim))
		return KILN_OK;
	if (remove_at(pfd, base, 0) != 0)
		return kiln_fail_errno(e, "layer %s: whiteout of %s", a->layer, victim);
	return KILN_OK;
}

static enum kiln_rc write_data(struct apply *a, struct archive *ar, int fd, const char *path,
			       struct kiln_err *e)
{
	const void *buf;
	size_t n;
	la_int64_t off, end = 0;
	int r;

	while ((r = archive_read_data_block(ar, &buf, &n, &off)) == ARCHIVE_OK) {
		if (pwrite(fd, buf, n, off) != (ssize_t)n)
			return kiln_fail_errno(e, "layer %s: writing %s", a->layer, path);
		end = off + (la_int64_t)n;
		a->st.bytes += n;
	}
	if (r != ARCHIVE_EOF)
		return kiln_fail(e, KILN_E_SYNTAX, "layer %s: reading %s: %s", a->layer, path,
				 archive_error_string(ar));
	/* A sparse file's trailing hole. */
	(void)end;
	return KILN_OK;
}

/* Owner, xattrs, mode, times, in that order: chown clears setuid bits and
 * security.capability. */
static enum kiln_rc set_meta(struct apply *a, struct archive_entry *en, int pfd, const char *base, int fd,
			     const char *path, struct kiln_err *e)
{
	mode_t type = archive_entry_filetype(en);
	struct timespec ts[2];
	const char *xname;
	const void *xval;
	size_t xsize;

	if (fchownat(pfd, base, (uid_t)archive_entry_uid(en), (gid_t)archive_entry_gid(en), AT_SYMLINK_NOFOLLOW) != 0 &&
	    (a->is_root || errno != EPERM))
		return kiln_fail_errno(e, "layer %s: chown %s", a->layer, path);
	if (fd >= 0) {
		archive_entry_xattr_reset(en);
		while (archive_entry_xattr_next(en, &xname, &xval, &xsize) == ARCHIVE_OK) {
			if (!strcmp(xname, "security.selinux") || !strcmp(xname, "system.nfs4_acl"))
				continue;
			if (fsetxattr(fd, xname, xval, xsize, 0) != 0)
				a->st.skipped++; /* ENOTSUP, EPERM for trusted.*: not fatal */
		}
	}
	if (type != AE_IFLNK && fchmodat(pfd, base, archive_entry_perm(en) & 07777, 0) != 0)
		return kiln_fail_errno(e, "layer %s: chmod %s", a->layer, path);
	ts[0].tv_sec = archive_entry_atime(en);
	ts[0].tv_nsec = archive_entry_atime_nsec(en);
	ts[1].tv_sec = archive_entry_mtime(en);
	ts[1].tv_nsec = archive_entry_mtime_nsec(en);
	if (!archive_entry_atime_is_set(en))
		ts[0] = ts[1];
	if (type == AE_IFDIR) {
		if (a->n_dirs == a->cap_dirs) {
			size_t cap = a->cap_dirs ? a->cap_dirs * 2 : 256;
			struct dirtime *d = realloc(a->dirs, cap * sizeof(*d));

			if (!d)
				return kiln_fail(e, KILN_E_NOMEM, "layer %s: out of memory", a->layer);
			a->dirs = d;
			a->cap_dirs = cap;
		}
		a->dirs[a->n_dirs].path = strdup(path);
		if (!a->dirs[a->n_dirs].path)
			return kiln_fail(e, KILN_E_NOMEM, "layer %s: out of memory", a->layer);
		a->dirs[a->n_dirs++].mtime = ts[1];
		return KILN_OK;
	}
	if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) != 0)
		return kiln_fail_errno(e, "layer %s: times of %s", a->layer, path);
	return KILN_OK;
}

static enum kiln_rc entry(struct apply *a, struct archive *ar, struct archive_entry *en, struct kiln_err *e)
{
	char path[PATH_MAX], target[PATH_MAX];
	const char *name = archive_entry_pathname(en), *base, *hl = archive_entry_hardlink(en);
	mode_t type = archive_entry_filetype(en);
	struct stat old;
	int pfd = -1, fd = -1, exists;
	enum kiln_rc rc = KILN_OK;
	int c;

	if (!name)
		return kiln_fail(e, KILN_E_SYNTAX, "layer %s: an entry has no name", a->layer);
	c = clean_name(name, path, sizeof(path));
	if (c == -1)
		return kiln_fail(e, KILN_E_INVALID, "layer %s: entry '%.200s' climbs out of the root with '..'",
				 a->layer, name);
	if (c != 0)
		return kiln_fail(e, KILN_E_LIMIT, "layer %s: entry name '%.100s...' is too long", a->layer, name);
	if (!path[0]) {
		/* The root itself: only a folder, and only its metadata. */
		if (type != AE_IFDIR || hl)
			return kiln_fail(e, KILN_E_INVALID, "layer %s: the root entry is not a folder", a->layer);
		return KILN_OK;
	}
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (!strncmp(base, WH, strlen(WH))) {
		/* A whiteout in a folder that is not there has nothing to hide. */
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%.*s", (int)(base - path ? base - path - 1 : 0), path);
		pfd = open_in_root(a->root, dir, O_PATH | O_DIRECTORY);
		if (pfd < 0 && errno != ENOENT && errno != ENOTDIR)
			rc = kiln_fail_errno(e, "layer %s: parent folder of %s", a->layer, path);
		else if (pfd >= 0)
			rc = whiteout(a, path, pfd, base, e);
		goto out;
	}
	pfd = open_parent(a, path, 0);
	if (pfd < 0) {
		rc = kiln_fail_errno(e, "layer %s: parent folder of %s", a->layer, path);
		goto out;
	}
	exists = fstatat(pfd, base, &old, AT_SYMLINK_NOFOLLOW) == 0;
	/* Folder over folder keeps its content; anything else replaces. */
	if (exists && !(S_ISDIR(old.st_mode) && type == AE_IFDIR && !hl) && remove_at(pfd, base, 0) != 0) {
		rc = kiln_fail_errno(e, "layer %s: replacing %s", a->layer, path);
		goto out;
	}
	if (hl) {
		const char *tb;
		struct stat ts;
		int tfd;

		c = clean_name(hl, target, sizeof(target));
		if (c != 0 || !target[0]) {
			rc = kiln_fail(e, KILN_E_INVALID, "layer %s: hard link %s -> '%.200s' leaves the root",
				       a->layer, path, hl);
			goto out;
		}
		tb = strrchr(target, '/');
		tb = tb ? tb + 1 : target;
		tfd = open_parent(a, target, MAX_DEPTH + 1); /* resolve only: make nothing for a link */
		if (tfd < 0) {
			rc = kiln_fail_errno(e, "layer %s: hard link %s -> %s", a->layer, path, target);
			goto out;
		}
		if (fstatat(tfd, tb, &ts, AT_SYMLINK_NOFOLLOW) != 0) {
			rc = kiln_fail_errno(e, "layer %s: hard link %s -> %s", a->layer, path, target);
			close(tfd);
			goto out;
		}
		if (S_ISDIR(ts.st_mode)) {
			rc = kiln_fail(e, KILN_E_INVALID, "layer %s: hard link %s -> %s: target is a folder", a->layer,
				       path, target);
			close(tfd);
			goto out;
		}
		if (linkat(tfd, tb, pfd, base, 0) != 0)
			rc = kiln_fail_errno(e, "layer %s: hard link %s -> %s", a->layer, path, target);
		close(tfd);
		if (rc == KILN_OK && set_add(&a->made, path) != 0)
			rc = kiln_fail(e, KILN_E_NOMEM, "layer %s: out of memory", a->layer);
		goto out;
	}
	switch (type) {
	case AE_IFREG:
		fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = kiln_fail_errno(e, "layer %s: creating %s", a->layer, path);
			goto out;
		}
		rc = write_data(a, ar, fd, path, e);
		if (rc == KILN_OK && ftruncate(fd, archive_entry_size(en)) != 0)
			rc = kiln_fail_errno(e, "layer %s: size of %s", a->layer, path);
		break;
	case AE_IFDIR:
		if (!exists || !S_ISDIR(old.st_mode)) {
			if (mkdirat(pfd, base, 0700) != 0) {
				rc = kiln_fail_errno(e, "layer %s: creating folder %s", a->layer, path);
				goto out;
			}
		}
		fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			rc = kiln_fail_errno(e, "layer %s: opening folder %s", a->layer, path);
		break;
	case AE_IFLNK: {
		const char *t = archive_entry_symlink(en);

		if (!t || symlinkat(t, pfd, base) != 0)
			rc = t ? kiln_fail_errno(e, "layer %s: symlink %s", a->layer, path)
			       : kiln_fail(e, KILN_E_SYNTAX, "layer %s: symlink %s has no target", a->layer, path);
		break;
	}
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO: {
		unsigned long ma = (unsigned long)archive_entry_rdevmajor(en), mi = (unsigned long)archive_entry_rdevminor(en);

		if (ma > 0xffffffffUL || mi > 0xffffffffUL) {
			rc = kiln_fail(e, KILN_E_INVALID, "layer %s: device %s has numbers over 32 bits", a->layer, path);
			goto out;
		}
		if (mknodat(pfd, base, type | 0600, type == AE_IFIFO ? 0 : makedev(ma, mi)) != 0) {
			if (errno != EPERM || type == AE_IFIFO) {
				rc = kiln_fail_errno(e, "layer %s: mknod %s", a->layer, path);
				goto out;
			}
			a->st.skipped++; /* no CAP_MKNOD: as peers do, skip devices */
			goto out;
		}
		break;
	}
	default:
		rc = kiln_fail(e, KILN_E_INVALID, "layer %s: entry %s has an unknown file type 0%o", a->layer, path,
			       (unsigned)type);
		goto out;
	}
	if (rc == KILN_OK && set_add(&a->made, path) != 0)
		rc = kiln_fail(e, KILN_E_NOMEM, "layer %s: out of memory", a->layer);
	if (rc == KILN_OK)
		rc = set_meta(a, en, pfd, base, fd, path, e);
out:
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

enum kiln_rc oci_layer_apply(const char *root_dir, const char *layer_path, const char *diff_id,
			     int (*canceled)(void *arg), void *arg, struct oci_layer_stats *st, struct kiln_err *e)
{
	struct apply a = { .root = -1, .layer = layer_path, .is_root = geteuid() == 0 };
	struct src *s = calloc(1, sizeof(*s));
	struct archive_entry *en;
	struct archive *ar = NULL;
	enum kiln_rc rc = KILN_OK;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned ml = 0;
	char got[80];
	size_t i;
	ssize_t n;
	int r;

	if (!s)
		return kiln_fail(e, KILN_E_NOMEM, "layer %s: out of memory", layer_path);
	s->fd = -1;
	a.root = open(root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a.root < 0) {
		rc = kiln_fail_errno(e, "layer %s: opening %s", layer_path, root_dir);
		goto out;
	}
	r = open_in_root(a.root, "", O_PATH | O_DIRECTORY);
	if (r < 0) {
		rc = errno == ENOSYS || errno == EPERM
			     ? kiln_fail(e, KILN_E_IO, "layer %s: openat2 is not available (Linux 5.6 or later, "
						    "not blocked by seccomp): layers are only applied with it",
					 layer_path)
			     : kiln_fail_errno(e, "layer %s: opening %s", layer_path, root_dir);
		goto out;
	}
	close(r);
	if (src_open(s, layer_path) != 0) {
		rc = kiln_fail_errno(e, "layer %s: opening", layer_path);
		goto out;
	}
	ar = archive_read_new();
	if (!ar) {
		rc = kiln_fail(e, KILN_E_NOMEM, "layer %s: out of memory", layer_path);
		goto out;
	}
	archive_read_support_filter_none(ar);
	archive_read_support_format_tar(ar);
	archive_read_support_format_gnutar(ar);
	if (archive_read_open(ar, s, NULL, src_read, NULL) != ARCHIVE_OK) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "layer %s: %s", layer_path, s->err[0] ? s->err : archive_error_string(ar));
		goto out;
	}
	while ((r = archive_read_next_header(ar, &en)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (++a.st.entries > OCI_LAYER_MAX_ENTRIES) {
			rc = kiln_fail(e, KILN_E_LIMIT, "layer %s has over %d entries", layer_path,
				       OCI_LAYER_MAX_ENTRIES);
			goto out;
		}
		if (canceled && canceled(arg)) {
			rc = kiln_fail(e, KILN_E_LIMIT, "layer %s: canceled", layer_path);
			goto out;
		}
		rc = entry(&a, ar, en, e);
		if (rc != KILN_OK)
			goto out;
	}
	if (r != ARCHIVE_EOF) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "layer %s: %s", layer_path, s->err[0] ? s->err : archive_error_string(ar));
		goto out;
	}
	/* The rest of the stream (tar's end blocks, padding) counts for the
	 * diff_id and must decompress cleanly too. */
	while ((n = src_next(s)) > 0)
		;
	if (n < 0) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "layer %s: %s", layer_path, s->err);
		goto out;
	}
	EVP_DigestFinal_ex(s->md, md, &ml);
	memcpy(got, "sha256:", 7);
	sha256_hex(md, got + 7);
	if (diff_id && strcmp(diff_id, got) != 0) {
		rc = kiln_fail(e, KILN_E_INVALID, "layer %s: uncompressed it is %s, not the config's diff_id %s",
			       layer_path, got, diff_id);
		goto out;
	}
	/* Folder times last, deepest first (children were written later). */
	for (i = a.n_dirs; i-- > 0;) {
		struct timespec ts[2] = { a.dirs[i].mtime, a.dirs[i].mtime };
		const char *b = strrchr(a.dirs[i].path, '/');
		int fd = open_parent(&a, a.dirs[i].path, MAX_DEPTH + 1);

		if (fd >= 0) {
			utimensat(fd, b ? b + 1 : a.dirs[i].path, ts, AT_SYMLINK_NOFOLLOW);
			close(fd);
		}
	}
out:
	if (st)
		*st = a.st;
	for (i = 0; i < a.n_dirs; i++)
		free(a.dirs[i].path);
	free(a.dirs);
	set_free(&a.made);
	if (ar)
		archive_read_free(ar);
	src_close(s);
	free(s);
	if (a.root >= 0)
		close(a.root);
	return rc;
}
