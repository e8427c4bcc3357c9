#include "workspace/packwrite.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "workspace/gitutil.h"
#include "lib/paths.h"
#include "lib/vec.h"

/* ---- oidset ------------------------------------------------------------ */

void oidset_init(struct oidset *s, size_t max)
{
	memset(s, 0, sizeof(*s));
	s->max = max;
}

void oidset_free(struct oidset *s)
{
	free(s->slots);
	free(s->list);
	memset(s, 0, sizeof(*s));
}

static size_t oid_hash(const git_oid *id)
{
	size_t h;

	memcpy(&h, id->id, sizeof(h));
	return h;
}

static git_oid *find_slot(git_oid *slots, size_t cap, const git_oid *id)
{
	size_t i = oid_hash(id) & (cap - 1);

	while (!git_oid_is_zero(&slots[i]) && !git_oid_equal(&slots[i], id))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

bool oidset_has(const struct oidset *s, const git_oid *id)
{
	return s->cap && !git_oid_is_zero(find_slot(s->slots, s->cap, id));
}

int oidset_add(struct oidset *s, const git_oid *id)
{
	git_oid *slot;
	size_t i;

	if (s->cap && !git_oid_is_zero(slot = find_slot(s->slots, s->cap, id)))
		return 0;
	if (s->n >= s->max) {
		errno = E2BIG;
		return -1;
	}
	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		git_oid *ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -1;
		for (i = 0; i < s->n; i++)
			*find_slot(ns, ncap, &s->list[i]) = s->list[i];
		free(s->slots);
		s->slots = ns;
		s->cap = ncap;
	}
	if (VEC_GROW(s->list, s->list_cap, s->n, 1, s->max))
		return -1;
	*find_slot(s->slots, s->cap, id) = *id;
	s->list[s->n++] = *id;
	return 1;
}

/* ---- SHA-1 (the pack trailer) ------------------------------------------ */

struct sha1 {
	uint32_t h[5];
	uint64_t len;
	uint8_t buf[64];
	size_t fill;
};

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(struct sha1 *s, const uint8_t *p)
{
	uint32_t w[80], a, b, c, d, e, t;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 80; i++)
		w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4];
	for (i = 0; i < 80; i++) {
		uint32_t f, k;

		if (i < 20) {
			f = (b & c) | (~b & d); k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d; k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d; k = 0xca62c1d6;
		}
		t = ROL(a, 5) + f + e + k + w[i];
		e = d; d = c; c = ROL(b, 30); b = a; a = t;
	}
	s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}

static void sha1_init(struct sha1 *s)
{
	static const uint32_t init[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };

	memcpy(s->h, init, sizeof(init));
	s->len = 0;
	s->fill = 0;
}

static void sha1_update(struct sha1 *s, const void *data, size_t n)
{
	const uint8_t *p = data;

	s->len += n;
	if (s->fill) {
		size_t k = 64 - s->fill < n ? 64 - s->fill : n;

		memcpy(s->buf + s->fill, p, k);
		s->fill += k;
		p += k;
		n -= k;
		if (s->fill < 64)
			return;
		sha1_block(s, s->buf);
		s->fill = 0;
	}
	for (; n >= 64; p += 64, n -= 64)
		sha1_block(s, p);
	memcpy(s->buf, p, n);
	s->fill = n;
}

static void sha1_final(struct sha1 *s, uint8_t out[20])
{
	uint64_t bits = s->len * 8;
	uint8_t pad[72] = { 0x80 };
	size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;
	int i;

	for (i = 0; i < 8; i++)
		pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
	sha1_update(s, pad, padlen + 8);
	for (i = 0; i < 20; i++)
		out[i] = (uint8_t)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

/* ---- pack stream ------------------------------------------------------- */

#define OUT_BUF (1 << 20)

struct pack_out {
	git_indexer *idx;
	git_indexer_progress stats;
	struct sha1 sha;
	uint8_t *buf;
	size_t len;
};

static int out_flush(struct pack_out *o)
{
	if (o->len && git_indexer_append(o->idx, o->buf, o->len, &o->stats) < 0)
		return -1;
	o->len = 0;
	return 0;
}

static int out_put(struct pack_out *o, const void *data, size_t n, bool hash)
{
	const uint8_t *p = data;

	if (hash)
		sha1_update(&o->sha, data, n);
	while (n > 0) {
		size_t k = OUT_BUF - o->len < n ? OUT_BUF - o->len : n;

		memcpy(o->buf + o->len, p, k);
		o->len += k;
		p += k;
		n -= k;
		if (o->len == OUT_BUF && out_flush(o) < 0)
			return -1;
	}
	return 0;
}

static int put_object(struct pack_out *o, z_stream *zs, git_odb_object *obj)
{
	uint8_t hdr[16], z[64 * 1024];
	size_t size = git_odb_object_size(obj), h = 0, rest;
	int type = (int)git_odb_object_type(obj), zr;

	hdr[h++] = (uint8_t)((type << 4) | (size & 15)) | (size > 15 ? 0x80 : 0);
	for (rest = size >> 4; rest; rest >>= 7)
		hdr[h++] = (uint8_t)((rest & 0x7f) | (rest > 0x7f ? 0x80 : 0));
	if (size > UINT32_MAX) {
		git_error_set(GIT_ERROR_INVALID, "object larger than 4 GiB");
		return -1;
	}
	if (out_put(o, hdr, h, true) < 0 || deflateReset(zs) != Z_OK)
		return -1;
	zs->next_in = (Bytef *)git_odb_object_data(obj);
	zs->avail_in = (uInt)size;
	do {
		zs->next_out = z;
		zs->avail_out = sizeof(z);
		zr = deflate(zs, Z_FINISH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
			git_error_set(GIT_ERROR_ZLIB, "deflate failed (%d)", zr);
			return -1;
		}
		if (out_put(o, z, sizeof(z) - zs->avail_out, true) < 0)
			return -1;
	} while (zr != Z_STREAM_END);
	return 0;
}

static int stream_pack(struct pack_out *o, z_stream *zs, git_odb *odb, const struct oidset *set)
{
	uint8_t hdr[12], trailer[20];
	uint32_t v;
	size_t i;

	memcpy(hdr, "PACK", 4);
	v = htonl(2);
	memcpy(hdr + 4, &v, 4);
	v = htonl((uint32_t)set->n);
	memcpy(hdr + 8, &v, 4);
	if (out_put(o, hdr, sizeof(hdr), true) < 0)
		return -1;
	for (i = 0; i < set->n; i++) {
		git_odb_object *obj = NULL;
		int err;

		if (git_odb_read(&obj, odb, &set->list[i]) < 0)
			return -1;
		err = put_object(o, zs, obj);
		git_odb_object_free(obj);
		if (err < 0)
			return -1;
	}
	sha1_final(&o->sha, trailer);
	if (out_put(o, trailer, sizeof(trailer), false) < 0 || out_flush(o) < 0)
		return -1;
	return git_indexer_commit(o->idx, &o->stats);
}

enum kiln_rc pack_write(git_odb *odb, const struct oidset *set, const char *pack_dir,
			struct kiln_err *e)
{
	struct pack_out o = { 0 };
	git_indexer_options io;
	z_stream zs;
	bool z_ok = false;
	enum kiln_rc rc = KILN_OK;

	if (set->n > UINT32_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "pack %s: too many objects", pack_dir);
	memset(&zs, 0, sizeof(zs));
	git_indexer_options_init(&io, GIT_INDEXER_OPTIONS_VERSION);
	sha1_init(&o.sha);
	if (!(o.buf = malloc(OUT_BUF)) || deflateInit(&zs, 1) != Z_OK) {
		rc = kiln_fail(e, KILN_E_NOMEM, "pack %s: out of memory", pack_dir);
		goto out;
	}
	z_ok = true;
	if (git_indexer_new(&o.idx, pack_dir, 0, NULL, &io) < 0 || stream_pack(&o, &zs, odb, set) < 0)
		rc = kiln_git_fail(e, KILN_E_IO, "writing a pack into %s", pack_dir);
out:
	if (z_ok)
		deflateEnd(&zs);
	git_indexer_free(o.idx);
	free(o.buf);
	return rc;
}

/* ---- choosing objects -------------------------------------------------- */

int oidset_add_git(struct oidset *set, const git_oid *id)
{
	int r = oidset_add(set, id);

	if (r < 0 && errno == E2BIG)
		git_error_set(GIT_ERROR_INVALID, "more than %zu objects", set->max);
	else if (r < 0)
		git_error_set_oom();
	return r;
}

static int add_tree_level(git_repository *repo, struct oidset *set, const git_oid *id, git_odb *skip,
			  unsigned level)
{
	git_tree *tree = NULL;
	size_t i, n;
	int r;

	if (skip && git_odb_exists(skip, id) == 1)
		return 0;
	r = oidset_add_git(set, id);
	if (r <= 0)
		return r;
	if (level > 1024) {
		git_error_set(GIT_ERROR_INVALID, "trees nested more than 1024 deep");
		return -1;
	}
	if (git_tree_lookup(&tree, repo, id) < 0)
		return -1;
	n = git_tree_entrycount(tree);
	for (i = 0; i < n && r >= 0; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(tree, i);

		switch (git_tree_entry_type(te)) {
		case GIT_OBJECT_TREE:
			r = add_tree_level(repo, set, git_tree_entry_id(te), skip, level + 1);
			break;
		case GIT_OBJECT_BLOB:
			if (!skip || git_odb_exists(skip, git_tree_entry_id(te)) != 1)
				r = oidset_add_git(set, git_tree_entry_id(te));
			break;
		default: /* a gitlink: the submodule's commit is not ours */
			break;
		}
	}
	git_tree_free(tree);
	return r < 0 ? -1 : 0;
}

int pack_add_tree(git_repository *repo, struct oidset *set, const git_oid *tree, git_odb *skip)
{
	return add_tree_level(repo, set, tree, skip, 0);
}

/* ---- copying object files ---------------------------------------------- */

/* ---- copying files ----------------------------------------------------- */

enum kiln_rc file_copy_at(int src_fd, int dst_dir, const char *dst_name, mode_t mode,
				 const char *what, uint64_t *bytes, struct kiln_err *e)
{
	char buf[64 * 1024];
	enum kiln_rc rc = KILN_OK;
	int out = openat(dst_dir, dst_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

	if (out < 0)
		return kiln_fail_errno(e, "%s: create", what);
	for (;;) {
		ssize_t n = copy_file_range(src_fd, NULL, out, NULL, 1 << 30, 0);

		if (n == 0)
			break;
		if (n > 0) {
			*bytes += (uint64_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
			rc = kiln_fail_errno(e, "%s: copy", what);
			goto out;
		}
		/* copy_file_range refused: plain read/write from here on. */
		for (;;) {
			ssize_t r = read(src_fd, buf, sizeof(buf)), w = 0;

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = kiln_fail_errno(e, "%s: read", what);
				goto out;
			}
			if (r == 0)
				break;
			while (w < r) {
				ssize_t k = write(out, buf + w, (size_t)(r - w));
				if (k < 0 && errno == EINTR)
					continue;
				if (k < 0) {
					rc = kiln_fail_errno(e, "%s: write", what);
					goto out;
				}
				w += k;
			}
			*bytes += (uint64_t)r;
		}
		break;
	}
out:
	close(out);
	return rc;
}

/* Hard-link (or copy) the files of the folder src into dst (created). */
static enum kiln_rc link_dir_files(const char *src, const char *dst, struct kiln_err *e)
{
	char sp[PATH_MAX], dp[PATH_MAX];
	struct dirent *de;
	enum kiln_rc rc = KILN_OK;
	uint64_t bytes = 0;
	DIR *d = opendir(src);
	int dst_fd = -1;

	if (!d)
		return kiln_fail_errno(e, "objects folder %s", src);
	if (mkdir(dst, 0755) < 0 && errno != EEXIST) {
		rc = kiln_fail_errno(e, "objects folder %s", dst);
		goto out;
	}
	dst_fd = open(dst, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dst_fd < 0) {
		rc = kiln_fail_errno(e, "objects folder %s", dst);
		goto out;
	}
	while ((de = readdir(d))) {
		int in;

		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (!kiln_path_join(sp, sizeof(sp), src, de->d_name) ||
		    !kiln_path_join(dp, sizeof(dp), dst, de->d_name)) {
			rc = kiln_fail(e, KILN_E_LIMIT, "object path too long under %s", dst);
			goto out;
		}
		if (link(sp, dp) == 0 || errno == EEXIST)
			continue;
		if (errno == ENOENT)
			continue; /* removed meanwhile (a gc in a source repository) */
		if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
			rc = kiln_fail_errno(e, "link %s to %s", sp, dp);
			goto out;
		}
		in = open(sp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (in < 0 && errno == ENOENT)
			continue;
		if (in < 0) {
			rc = kiln_fail_errno(e, "object %s", sp);
			goto out;
		}
		rc = file_copy_at(in, dst_fd, de->d_name, 0444, dp, &bytes, e);
		close(in);
		if (rc)
			goto out;
	}
out:
	if (dst_fd >= 0)
		close(dst_fd);
	closedir(d);
	return rc;
}

static bool is_loose_dir(const char *name)
{
	return strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
}

enum kiln_rc objects_link(const char *src_objects, const char *dst_objects, struct kiln_err *e)
{
	char sp[PATH_MAX], dp[PATH_MAX];
	struct dirent *de;
	enum kiln_rc rc = KILN_OK;
	DIR *d = opendir(src_objects);

	if (!d)
		return kiln_fail_errno(e, "mirror objects %s", src_objects);
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, "pack") != 0 && !is_loose_dir(de->d_name))
			continue;
		if (!kiln_path_join(sp, sizeof(sp), src_objects, de->d_name) ||
		    !kiln_path_join(dp, sizeof(dp), dst_objects, de->d_name)) {
			rc = kiln_fail(e, KILN_E_LIMIT, "object path too long under %s", dst_objects);
			break;
		}
		rc = link_dir_files(sp, dp, e);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

