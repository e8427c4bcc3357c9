#include "workspace/guestdisk/ext4walk.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#include "lib/vec.h"

#define READ_CHUNK 65536

struct ext4walk {
	ext2_filsys fs;
	int fd;
};

/* An io_manager over an open fd: libext2fs's unix_io opens by name, and
 * in the jail the image has none. Reads past the end are short reads, as
 * unix_io makes them; writes are refused (the walk only reads). */
struct fdio {
	int fd;
};

static errcode_t fdio_open(const char *name, int flags, io_channel *channel);

static errcode_t fdio_close(io_channel ch)
{
	if (--ch->refcount > 0)
		return 0;
	free(ch->private_data);
	free(ch->name);
	free(ch);
	return 0;
}

static errcode_t fdio_set_blksize(io_channel ch, int blksize)
{
	if (blksize <= 0 || blksize > 65536)
		return EXT2_ET_INVALID_ARGUMENT;
	ch->block_size = blksize;
	return 0;
}

static errcode_t fdio_read64(io_channel ch, unsigned long long block, int count, void *data)
{
	const struct fdio *io = ch->private_data;
	unsigned long long off;
	size_t size, got = 0;

	/* A negative count is a byte count (libext2fs's convention). */
	size = count < 0 ? (size_t)-(long)count : (size_t)count * (size_t)ch->block_size;
	if (count >= 0 && count > (1 << 20))
		return EXT2_ET_INVALID_ARGUMENT;
	if (__builtin_mul_overflow(block, (unsigned long long)ch->block_size, &off) || off > (unsigned long long)LLONG_MAX)
		return EXT2_ET_LLSEEK_FAILED;
	while (got < size) {
		ssize_t n = pread(io->fd, (char *)data + got, size - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got < size) {
		memset((char *)data + got, 0, size - got);
		return EXT2_ET_SHORT_READ;
	}
	return 0;
}

static errcode_t fdio_read(io_channel ch, unsigned long block, int count, void *data)
{
	return fdio_read64(ch, block, count, data);
}

static errcode_t fdio_write64(io_channel ch, unsigned long long block, int count, const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t fdio_write(io_channel ch, unsigned long block, int count, const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t fdio_flush(io_channel ch)
{
	return 0;
}

static struct struct_io_manager fdio_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "kiln fd I/O manager",
	.open = fdio_open,
	.close = fdio_close,
	.set_blksize = fdio_set_blksize,
	.read_blk = fdio_read,
	.write_blk = fdio_write,
	.flush = fdio_flush,
	.read_blk64 = fdio_read64,
	.write_blk64 = fdio_write64,
};

/* name is "fd:N". */
static errcode_t fdio_open(const char *name, int flags, io_channel *channel)
{
	io_channel ch = NULL;
	struct fdio *io = NULL;
	char *end;
	long fd;

	if (!name || strncmp(name, "fd:", 3))
		return EXT2_ET_BAD_DEVICE_NAME;
	errno = 0;
	fd = strtol(name + 3, &end, 10);
	if (errno || *end || fd < 0 || fd > INT_MAX)
		return EXT2_ET_BAD_DEVICE_NAME;
	if ((flags & IO_FLAG_RW))
		return EXT2_ET_RO_FILSYS;
	if (!(ch = calloc(1, sizeof(*ch))) || !(io = calloc(1, sizeof(*io))) || !(ch->name = strdup(name))) {
		free(io);
		free(ch);
		return EXT2_ET_NO_MEMORY;
	}
	io->fd = (int)fd;
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &fdio_manager;
	ch->block_size = 1024;
	ch->refcount = 1;
	ch->private_data = io;
	*channel = ch;
	return 0;
}

static enum kiln_rc fs_fail(struct kiln_err *e, errcode_t err, const char *what, const char *path)
{
	return kiln_fail(e, err == EXT2_ET_NO_MEMORY ? KILN_E_NOMEM : KILN_E_SYNTAX, "%s /%s: %s", what, path,
			 error_message(err));
}

enum kiln_rc ext4walk_open(struct ext4walk **wp, int fd, struct kiln_err *e)
{
	struct ext4walk *w;
	struct stat st;
	char name[32];
	errcode_t err;

	*wp = NULL;
	if (fstat(fd, &st) < 0)
		return kiln_fail_errno(e, "the workspace image");
	if (!(w = calloc(1, sizeof(*w))))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	w->fd = fd;
	initialize_ext2_error_table();
	snprintf(name, sizeof(name), "fd:%d", fd);
	err = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP, 0, 0, &fdio_manager, &w->fs);
	if (err) {
		free(w);
		return kiln_fail(e, KILN_E_SYNTAX, "the workspace image is not a readable ext4 file system: %s",
				 error_message(err));
	}
	/* Every block a walk may follow must be inside the file. */
	if (ext2fs_blocks_count(w->fs->super) > (uint64_t)st.st_size / (uint64_t)w->fs->blocksize) {
		ext4walk_close(w);
		return kiln_fail(e, KILN_E_SYNTAX, "the workspace image's file system claims more blocks than the file has");
	}
	*wp = w;
	return KILN_OK;
}

void ext4walk_close(struct ext4walk *w)
{
	if (!w)
		return;
	if (w->fs)
		ext2fs_close_free(&w->fs);
	free(w);
}

/* The inode at path below the root, which must exist. */
static enum kiln_rc lookup(struct ext4walk *w, const char *path, ext2_ino_t *ino, struct kiln_err *e)
{
	errcode_t err;

	if (!*path) {
		*ino = EXT2_ROOT_INO;
		return KILN_OK;
	}
	/* Links in the path resolve inside the image: nothing leaves it. */
	err = ext2fs_namei(w->fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino);
	if (err == EXT2_ET_FILE_NOT_FOUND)
		return kiln_fail(e, KILN_E_NOTFOUND, "/%s is not in the workspace image", path);
	if (err)
		return fs_fail(e, err, "looking up", path);
	return KILN_OK;
}

static enum kiln_rc read_inode(struct ext4walk *w, ext2_ino_t ino, struct ext2_inode *in, const char *rel,
			       struct kiln_err *e)
{
	errcode_t err;

	if (ino < EXT2_FIRST_INO(w->fs->super) && ino != EXT2_ROOT_INO)
		return kiln_fail(e, KILN_E_SYNTAX, "/%s: names a reserved inode (%u)", rel, ino);
	if (ino > w->fs->super->s_inodes_count)
		return kiln_fail(e, KILN_E_SYNTAX, "/%s: inode %u is past the file system's %u", rel, ino,
				 w->fs->super->s_inodes_count);
	if ((err = ext2fs_read_inode(w->fs, ino, in)))
		return fs_fail(e, err, "reading the inode of", rel);
	return KILN_OK;
}

/* Stream size bytes of the file ino into sink->data. */
static enum kiln_rc copy_data(struct ext4walk *w, ext2_ino_t ino, uint64_t size, const char *rel,
			      const struct ext4walk_sink *sink, struct kiln_err *e)
{
	ext2_file_t f = NULL;
	enum kiln_rc rc = KILN_OK;
	uint64_t done = 0;
	char *buf = NULL;
	errcode_t err;

	if ((err = ext2fs_file_open(w->fs, ino, 0, &f)))
		return fs_fail(e, err, "opening", rel);
	if (!(buf = malloc(READ_CHUNK))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	while (done < size) {
		unsigned int want = size - done < READ_CHUNK ? (unsigned int)(size - done) : READ_CHUNK, got = 0;

		if ((err = ext2fs_file_read(f, buf, want, &got))) {
			rc = fs_fail(e, err, "reading", rel);
			goto out;
		}
		if (!got) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "/%s: ends after %llu of its %llu bytes", rel,
				       (unsigned long long)done, (unsigned long long)size);
			goto out;
		}
		if ((rc = sink->data(sink->arg, buf, got, e)))
			goto out;
		done += got;
	}
out:
	free(buf);
	ext2fs_file_close(f);
	return rc;
}

/* A link's target into buf (EXT4WALK_MAX_LINK + 1 bytes). */
static enum kiln_rc read_link(struct ext4walk *w, ext2_ino_t ino, struct ext2_inode *in, const char *rel, char *buf,
			      struct kiln_err *e)
{
	uint64_t size = EXT2_I_SIZE(in);
	ext2_file_t f = NULL;
	unsigned int got = 0;
	errcode_t err;

	if (!size || size > EXT4WALK_MAX_LINK)
		return kiln_fail(e, KILN_E_SYNTAX, "/%s: a link target of %llu bytes", rel, (unsigned long long)size);
	if ((in->i_flags & EXT4_INLINE_DATA_FL)) {
		size_t isz = 0;

		if ((err = ext2fs_inline_data_size(w->fs, ino, &isz)))
			return fs_fail(e, err, "reading the link", rel);
		/* inline data is at most the inode's size plus its xattr area */
		if (isz != size || isz > EXT4WALK_MAX_LINK)
			return kiln_fail(e, KILN_E_SYNTAX, "/%s: the link's inline data does not match its size", rel);
		if ((err = ext2fs_inline_data_get(w->fs, ino, in, buf, &isz)))
			return fs_fail(e, err, "reading the link", rel);
	} else if (ext2fs_is_fast_symlink(in)) {
		/* The target is in the inode's block map: 60 bytes at most. */
		if (size >= sizeof(in->i_block))
			return kiln_fail(e, KILN_E_SYNTAX, "/%s: a fast link of %llu bytes", rel, (unsigned long long)size);
		memcpy(buf, in->i_block, size);
	} else {
		if ((err = ext2fs_file_open(w->fs, ino, 0, &f)))
			return fs_fail(e, err, "opening the link", rel);
		err = ext2fs_file_read(f, buf, (unsigned int)size, &got);
		ext2fs_file_close(f);
		if (err)
			return fs_fail(e, err, "reading the link", rel);
		if (got != size)
			return kiln_fail(e, KILN_E_SYNTAX, "/%s: a link target shorter than its size", rel);
	}
	buf[size] = '\0';
	if (strlen(buf) != size)
		return kiln_fail(e, KILN_E_SYNTAX, "/%s: a NUL in a link target", rel);
	return KILN_OK;
}

/* One folder's names, collected before any is visited so that no walk
 * runs inside libext2fs's iteration. */
struct dirlist {
	struct dent {
		char *name;
		ext2_ino_t ino;
	} *v;
	size_t n, cap;
	const char *rel;
	struct kiln_err *e;
	enum kiln_rc rc;
};

static int collect_cb(struct ext2_dir_entry *de, int offset, int blocksize, char *block, void *arg)
{
	struct dirlist *l = arg;
	int len = ext2fs_dirent_name_len(de);
	char name[256];

	if (len <= 0 || len > 255 || (size_t)len > (size_t)blocksize) {
		l->rc = kiln_fail(l->e, KILN_E_SYNTAX, "/%s: an entry with a name of %d bytes", l->rel, len);
		return DIRENT_ABORT;
	}
	memcpy(name, de->name, (size_t)len);
	name[len] = '\0';
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (memchr(name, '/', (size_t)len) || strlen(name) != (size_t)len) {
		l->rc = kiln_fail(l->e, KILN_E_SYNTAX, "/%s: an entry name holding '/' or NUL", l->rel);
		return DIRENT_ABORT;
	}
	if (l->n == EXT4WALK_MAX_DIR_ENTRIES) {
		l->rc = kiln_fail(l->e, KILN_E_LIMIT, "/%s: more than %u entries", l->rel, EXT4WALK_MAX_DIR_ENTRIES);
		return DIRENT_ABORT;
	}
	if (VEC_GROW(l->v, l->cap, l->n, 1, EXT4WALK_MAX_DIR_ENTRIES)) {
		l->rc = kiln_fail(l->e, KILN_E_NOMEM, "out of memory");
		return DIRENT_ABORT;
	}
	if (!(l->v[l->n].name = strdup(name))) {
		l->rc = kiln_fail(l->e, KILN_E_NOMEM, "out of memory");
		return DIRENT_ABORT;
	}
	l->v[l->n++].ino = de->inode;
	return 0;
}

static int cmp_dent(const void *a, const void *b)
{
	return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

static void dirlist_free(struct dirlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

struct walk {
	struct ext4walk *w;
	const struct ext4walk_limits *lim;
	const struct ext4walk_sink *sink;
	uint64_t bytes;
	uint32_t files, visits;
	ext2_ino_t path[EXT4WALK_MAX_DEPTH + 1]; /* the folders being walked */
};

static enum kiln_rc walk_dir(struct walk *k, ext2_ino_t dir, const char *rel, int depth, struct kiln_err *e);

static enum kiln_rc visit(struct walk *k, const char *rel, ext2_ino_t ino, int depth, struct kiln_err *e)
{
	const struct ext4walk_sink *s = k->sink;
	struct ext4walk_entry en = { .rel = rel };
	char target[EXT4WALK_MAX_LINK + 1];
	struct ext2_inode in;
	enum kiln_rc rc;
	int i;

	if (++k->visits > k->lim->max_visits)
		return kiln_fail(e, KILN_E_LIMIT, "more than %u entries in the project folder", k->lim->max_visits);
	if ((rc = read_inode(k->w, ino, &in, rel, e)))
		return rc;
	if (LINUX_S_ISDIR(in.i_mode)) {
		if (s->want && !s->want(s->arg, rel, true))
			return KILN_OK;
		if (depth >= EXT4WALK_MAX_DEPTH)
			return kiln_fail(e, KILN_E_LIMIT, "/%s: more than %d folders deep", rel, EXT4WALK_MAX_DEPTH);
		for (i = 0; i <= depth; i++)
			if (k->path[i] == ino)
				return kiln_fail(e, KILN_E_SYNTAX, "/%s: a folder inside itself", rel);
		k->path[depth + 1] = ino;
		return walk_dir(k, ino, rel, depth + 1, e);
	}
	if (!LINUX_S_ISREG(in.i_mode) && !LINUX_S_ISLNK(in.i_mode))
		return KILN_OK; /* devices, fifos, sockets: never artifacts */
	if (s->want && !s->want(s->arg, rel, false))
		return KILN_OK;
	if (++k->files > k->lim->max_files)
		return kiln_fail(e, KILN_E_LIMIT, "more than %u files", k->lim->max_files);
	en.perm = in.i_mode & 0777;
	en.mtime = (int64_t)in.i_mtime;
	if (LINUX_S_ISLNK(in.i_mode)) {
		if ((rc = read_link(k->w, ino, &in, rel, target, e)))
			return rc;
		en.link = true;
		en.target = target;
	} else {
		en.size = EXT2_I_SIZE(&in);
		/* Charged before a byte is read: a size is a claim. */
		if (en.size > k->lim->max_bytes - k->bytes)
			return kiln_fail(e, KILN_E_LIMIT, "/%s: %llu bytes would pass the %llu-byte ceiling", rel,
					 (unsigned long long)en.size, (unsigned long long)k->lim->max_bytes);
		k->bytes += en.size;
	}
	if ((rc = s->begin(s->arg, &en, e)))
		return rc;
	if (!en.link && en.size && (rc = copy_data(k->w, ino, en.size, rel, s, e)))
		return rc;
	return s->end(s->arg, e);
}

static enum kiln_rc walk_dir(struct walk *k, ext2_ino_t dir, const char *rel, int depth, struct kiln_err *e)
{
	struct dirlist l = { .rel = rel, .e = e };
	enum kiln_rc rc = KILN_OK;
	char child[PATH_MAX];
	errcode_t err;
	size_t i;

	err = ext2fs_dir_iterate(k->w->fs, dir, 0, NULL, collect_cb, &l);
	if (l.rc) {
		rc = l.rc;
		goto out;
	}
	if (err) {
		rc = fs_fail(e, err, "reading the folder", rel);
		goto out;
	}
	if (l.n > 1)  /* an empty folder has no list at all */
		qsort(l.v, l.n, sizeof(*l.v), cmp_dent);
	for (i = 0; i < l.n; i++) {
		if (i && !strcmp(l.v[i].name, l.v[i - 1].name)) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "/%s: the name '%s' twice", rel, l.v[i].name);
			goto out;
		}
		if (snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", l.v[i].name) >= (int)sizeof(child)) {
			rc = kiln_fail(e, KILN_E_LIMIT, "/%s: a path longer than %d bytes", rel, PATH_MAX - 1);
			goto out;
		}
		if ((rc = visit(k, child, l.v[i].ino, depth, e)))
			goto out;
	}
out:
	dirlist_free(&l);
	return rc;
}

enum kiln_rc ext4walk_tree(struct ext4walk *w, const char *path, const struct ext4walk_limits *lim,
			   const struct ext4walk_sink *sink, struct kiln_err *e)
{
	struct walk k = { .w = w, .lim = lim, .sink = sink };
	struct ext2_inode in;
	enum kiln_rc rc;
	ext2_ino_t ino;

	if ((rc = lookup(w, path, &ino, e)) || (rc = read_inode(w, ino, &in, path, e)))
		return rc;
	if (!LINUX_S_ISDIR(in.i_mode))
		return kiln_fail(e, KILN_E_NOTFOUND, "/%s in the workspace image is not a folder", path);
	k.path[0] = ino;
	return walk_dir(&k, ino, "", 0, e);
}

struct membuf {
	char *buf;
	size_t len, max;
};

static enum kiln_rc mem_begin(void *arg, const struct ext4walk_entry *en, struct kiln_err *e)
{
	struct membuf *m = arg;

	if (en->size > m->max)
		return kiln_fail(e, KILN_E_LIMIT, "%llu bytes, more than %zu", (unsigned long long)en->size, m->max);
	if (!(m->buf = malloc(en->size + 1)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	return KILN_OK;
}

static enum kiln_rc mem_data(void *arg, const void *buf, size_t n, struct kiln_err *e)
{
	struct membuf *m = arg;

	memcpy(m->buf + m->len, buf, n);
	m->len += n;
	return KILN_OK;
}

static enum kiln_rc mem_end(void *arg, struct kiln_err *e)
{
	return KILN_OK;
}

enum kiln_rc ext4walk_read_file(struct ext4walk *w, const char *path, size_t max, char **buf, size_t *len,
				struct kiln_err *e)
{
	struct membuf m = { .max = max };
	struct ext4walk_sink sink = { NULL, mem_begin, mem_data, mem_end, &m };
	struct ext4walk_limits lim = { max, 1, 1 };
	struct walk k = { .w = w, .lim = &lim, .sink = &sink };
	struct ext2_inode in;
	enum kiln_rc rc;
	ext2_ino_t ino;

	*buf = NULL;
	*len = 0;
	if ((rc = lookup(w, path, &ino, e)) || (rc = read_inode(w, ino, &in, path, e)))
		return rc;
	if (!LINUX_S_ISREG(in.i_mode))
		return kiln_fail(e, KILN_E_NOTFOUND, "/%s in the workspace image is not a file", path);
	if ((rc = visit(&k, path, ino, 0, e))) {
		free(m.buf);
		return rc;
	}
	if (!m.buf && !(m.buf = calloc(1, 1)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	*buf = m.buf;
	*len = m.len;
	return KILN_OK;
}
