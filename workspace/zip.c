#include "workspace/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "workspace/fstree.h"
#include "lib/paths.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define LOCAL_SIZE 30
#define CENTRAL_SIZE 46
#define END_SIZE 22
#define FLAG_UTF8 0x0800
#define MADE_BY_UNIX 0x031e   /* Unix, spec 3.0 */
#define MAX_DEPTH 64
#define CHUNK 65536
#define MAX_CENTRAL (64u << 20)

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v & 0xffff);
	put16(p + 2, v >> 16);
}

static unsigned get16(const uint8_t *p)
{
	return p[0] | (unsigned)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

/* --- writing ------------------------------------------------------------- */

struct entry {
	char *name;
	uint32_t crc, csize, usize, offset, attr;
	uint16_t method, time, date;
};

struct zw {
	int fd;
	uint64_t off;              /* where the next byte goes */
	struct entry *ents;
	size_t n, cap;
	uint64_t total, max;
	struct zip_stats *st;
	struct kiln_err *e;
	const char *path;
};

static void dos_time(time_t t, uint16_t *tm_out, uint16_t *date_out)
{
	struct tm tm;

	if (!localtime_r(&t, &tm) || tm.tm_year < 80) {
		*tm_out = 0;
		*date_out = (1 << 5) | 1; /* 1980-01-01 */
		return;
	}
	*tm_out = (uint16_t)((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
	*date_out = (uint16_t)(((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
}

static enum kiln_rc zw_write(struct zw *z, const void *buf, size_t n)
{
	const char *p = buf;

	if (z->off + n > ZIP_MAX_BYTES)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: larger than 4 GiB", z->path);
	while (n > 0) {
		ssize_t w = pwrite(z->fd, p, n, (off_t)z->off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return kiln_fail_errno(z->e, "writing %s", z->path);
		p += w;
		n -= (size_t)w;
		z->off += (uint64_t)w;
	}
	return KILN_OK;
}

static enum kiln_rc local_header(struct zw *z, const struct entry *en, size_t nlen)
{
	uint8_t h[LOCAL_SIZE];

	put32(h, SIG_LOCAL);
	put16(h + 4, 20);
	put16(h + 6, FLAG_UTF8);
	put16(h + 8, en->method);
	put16(h + 10, en->time);
	put16(h + 12, en->date);
	put32(h + 14, en->crc);
	put32(h + 18, en->csize);
	put32(h + 22, en->usize);
	put16(h + 26, (unsigned)nlen);
	put16(h + 28, 0);
	return zw_write(z, h, sizeof(h));
}

/* Append entry name: content from fd (deflated), or data/len (stored). */
static enum kiln_rc add(struct zw *z, const char *name, mode_t mode, time_t mtime, int fd, const char *data,
			size_t len)
{
	struct entry *en;
	size_t nlen = strlen(name);
	uint64_t start = z->off;
	enum kiln_rc rc;

	if (z->n >= ZIP_MAX_ENTRIES)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: more than %u entries", z->path, ZIP_MAX_ENTRIES);
	if (nlen > 0xffff)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: name too long", z->path);
	if (z->n == z->cap) {
		size_t cap = z->cap ? z->cap * 2 : 64;
		struct entry *p = realloc(z->ents, cap * sizeof(*p));

		if (!p)
			return kiln_fail(z->e, KILN_E_NOMEM, "zip: out of memory");
		z->ents = p;
		z->cap = cap;
	}
	en = &z->ents[z->n];
	memset(en, 0, sizeof(*en));
	if (!(en->name = strdup(name)))
		return kiln_fail(z->e, KILN_E_NOMEM, "zip: out of memory");
	z->n++;
	en->offset = (uint32_t)start;
	en->attr = (uint32_t)(mode & (S_IFMT | 0777)) << 16; /* no setuid, setgid or sticky bit */
	en->method = fd >= 0 ? 8 : 0;
	dos_time(mtime, &en->time, &en->date);
	if (fd < 0) {
		en->crc = (uint32_t)crc32(0, (const Bytef *)data, (uInt)len);
		en->csize = en->usize = (uint32_t)len;
		if ((rc = local_header(z, en, nlen)) || (rc = zw_write(z, name, nlen)) || (rc = zw_write(z, data, len)))
			return rc;
		return KILN_OK;
	}
	if ((rc = local_header(z, en, nlen)) || (rc = zw_write(z, name, nlen)))
		return rc;
	{
		unsigned char in[CHUNK], out[CHUNK];
		uint64_t usize = 0, cstart = z->off;
		z_stream zs;
		int flush, zr = Z_OK;

		memset(&zs, 0, sizeof(zs));
		if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return kiln_fail(z->e, KILN_E_NOMEM, "zip: deflate");
		do {
			ssize_t n = read(fd, in, sizeof(in));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				deflateEnd(&zs);
				return kiln_fail_errno(z->e, "reading %s", name);
			}
			usize += (uint64_t)n;
			z->total += (uint64_t)n;
			if (usize > ZIP_MAX_BYTES || z->total > z->max) {
				deflateEnd(&zs);
				return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: %s makes it larger than %llu bytes", z->path,
						 name, (unsigned long long)(usize > ZIP_MAX_BYTES ? ZIP_MAX_BYTES : z->max));
			}
			en->crc = (uint32_t)crc32(en->crc, in, (uInt)n);
			flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
			zs.next_in = in;
			zs.avail_in = (uInt)n;
			do {
				zs.next_out = out;
				zs.avail_out = sizeof(out);
				zr = deflate(&zs, flush);
				if ((rc = zw_write(z, out, sizeof(out) - zs.avail_out))) {
					deflateEnd(&zs);
					return rc;
				}
			} while (zs.avail_out == 0);
		} while (zr != Z_STREAM_END);
		deflateEnd(&zs);
		en->usize = (uint32_t)usize;
		en->csize = (uint32_t)(z->off - cstart);
	}
	{
		/* The sizes and CRC are known now: back into the local header. */
		uint8_t f[12];
		uint64_t end = z->off;

		put32(f, en->crc);
		put32(f + 4, en->csize);
		put32(f + 8, en->usize);
		z->off = start + 14;
		rc = zw_write(z, f, sizeof(f));
		z->off = end;
	}
	return rc;
}

/* Add what is in the folder dfd (named rel, "" at the top), in sorted
 * order: the same tree always makes the same archive. */
static enum kiln_rc walk(struct zw *z, int dfd, const char *rel, int depth)
{
	char **names = NULL, path[PATH_MAX];
	size_t n = 0, i;
	enum kiln_rc rc;

	if (depth > MAX_DEPTH)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip: %s: deeper than %d folders", rel, MAX_DEPTH);
	if ((rc = fstree_names(dfd, rel, ZIP_MAX_ENTRIES, &names, &n, z->e)))
		return rc;
	for (i = 0; i < n && !rc; i++) {
		struct stat sb;

		if ((size_t)snprintf(path, sizeof(path), "%s%s", rel, names[i]) >= sizeof(path) - 1) {
			rc = kiln_fail(z->e, KILN_E_LIMIT, "zip: %s%s: path too long", rel, names[i]);
			break;
		}
		if (fstatat(dfd, names[i], &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = kiln_fail_errno(z->e, "zip: %s", path);
			break;
		}
		if (S_ISDIR(sb.st_mode)) {
			int sub = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			strcat(path, "/");
			if (sub < 0) {
				rc = kiln_fail_errno(z->e, "zip: %s", path);
				break;
			}
			rc = add(z, path, sb.st_mode, sb.st_mtime, -1, "", 0);
			if (!rc)
				rc = walk(z, sub, path, depth + 1);
			close(sub);
		} else if (S_ISREG(sb.st_mode)) {
			int fd = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

			if (fd < 0) {
				rc = kiln_fail_errno(z->e, "zip: %s", path);
				break;
			}
			rc = add(z, path, sb.st_mode, sb.st_mtime, fd, NULL, 0);
			close(fd);
			if (!rc) {
				z->st->files++;
				z->st->bytes += (uint64_t)sb.st_size;
			}
		} else if (S_ISLNK(sb.st_mode)) {
			char target[PATH_MAX];
			ssize_t tl = readlinkat(dfd, names[i], target, sizeof(target) - 1);

			if (tl < 0) {
				rc = kiln_fail_errno(z->e, "zip: %s", path);
				break;
			}
			rc = add(z, path, sb.st_mode, sb.st_mtime, -1, target, (size_t)tl);
		} else {
			z->st->skipped++;
		}
	}
	fstree_names_free(names, n);
	return rc;
}

static enum kiln_rc central(struct zw *z)
{
	uint64_t cd = z->off;
	uint8_t h[CENTRAL_SIZE], end[END_SIZE];
	enum kiln_rc rc;
	size_t i;

	for (i = 0; i < z->n; i++) {
		const struct entry *en = &z->ents[i];
		size_t nlen = strlen(en->name);

		put32(h, SIG_CENTRAL);
		put16(h + 4, MADE_BY_UNIX);
		put16(h + 6, 20);
		put16(h + 8, FLAG_UTF8);
		put16(h + 10, en->method);
		put16(h + 12, en->time);
		put16(h + 14, en->date);
		put32(h + 16, en->crc);
		put32(h + 20, en->csize);
		put32(h + 24, en->usize);
		put16(h + 28, (unsigned)nlen);
		put16(h + 30, 0);
		put16(h + 32, 0);
		put16(h + 34, 0);
		put16(h + 36, 0);
		put32(h + 38, en->attr);
		put32(h + 42, en->offset);
		if ((rc = zw_write(z, h, sizeof(h))) || (rc = zw_write(z, en->name, nlen)))
			return rc;
	}
	put32(end, SIG_END);
	put16(end + 4, 0);
	put16(end + 6, 0);
	put16(end + 8, (unsigned)z->n);
	put16(end + 10, (unsigned)z->n);
	put32(end + 12, (uint32_t)(z->off - cd));
	put32(end + 16, (uint32_t)cd);
	put16(end + 20, 0);
	return zw_write(z, end, sizeof(end));
}

enum kiln_rc zip_write_dir(const char *dir, const char *path, uint64_t max_bytes, struct zip_stats *st,
			   struct kiln_err *e)
{
	struct zw z = { .fd = -1, .max = max_bytes ? max_bytes : ZIP_MAX_BYTES, .st = st, .e = e, .path = path };
	enum kiln_rc rc;
	int dfd;
	size_t i;

	memset(st, 0, sizeof(*st));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return kiln_fail_errno(e, "zip: %s", dir);
	z.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (z.fd < 0) {
		rc = kiln_fail_errno(e, "creating %s", path);
		goto out;
	}
	if ((rc = walk(&z, dfd, "", 0)) || (rc = central(&z)))
		goto out;
	if (close(z.fd) < 0)
		rc = kiln_fail_errno(e, "writing %s", path);
	z.fd = -1;
out:
	if (z.fd >= 0)
		close(z.fd);
	if (rc)
		unlink(path);
	close(dfd);
	for (i = 0; i < z.n; i++)
		free(z.ents[i].name);
	free(z.ents);
	return rc;
}

/* --- reading ------------------------------------------------------------- */

static bool safe_name(const char *name, size_t n)
{
	size_t i, start = 0;

	if (n == 0 || name[0] == '/')
		return false;
	for (i = 0; i <= n; i++) {
		if (i < n && (name[i] == '\\' || name[i] == '\0'))
			return false;
		if (i == n || name[i] == '/') {
			size_t len = i - start;

			/* Empty components only as the trailing '/' of a folder. */
			if ((len == 0 && i != n) || (len == 2 && !memcmp(name + start, "..", 2)) ||
			    (len == 1 && name[start] == '.'))
				return false;
			start = i + 1;
		}
	}
	return true;
}

static enum kiln_rc read_at(int fd, void *buf, size_t n, uint64_t off, const char *path, struct kiln_err *e)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return kiln_fail_errno(e, "reading %s", path);
		if (r == 0)
			return kiln_fail(e, KILN_E_SYNTAX, "zip %s: truncated", path);
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return KILN_OK;
}

static enum kiln_rc write_fd(int fd, const void *buf, size_t n, const char *name, struct kiln_err *e)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return kiln_fail_errno(e, "writing %s", name);
		p += w;
		n -= (size_t)w;
	}
	return KILN_OK;
}

/* Extract one entry's data (at off in zfd) into out. */
static enum kiln_rc extract_data(int zfd, uint64_t off, unsigned method, uint32_t csize, uint32_t usize, uint32_t crc,
				 int out, const char *path, const char *name, struct kiln_err *e)
{
	unsigned char in[CHUNK], buf[CHUNK];
	uint64_t left = csize, got = 0;
	uint32_t c = 0;
	enum kiln_rc rc = KILN_OK;
	z_stream zs;
	int zr = Z_OK;

	if (method != 0 && method != 8)
		return kiln_fail(e, KILN_E_INVALID, "zip %s: %s: compression method %u is not supported", path, name, method);
	if (method == 0 && csize != usize)
		return kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: stored sizes differ", path, name);
	memset(&zs, 0, sizeof(zs));
	if (method == 8 && inflateInit2(&zs, -15) != Z_OK)
		return kiln_fail(e, KILN_E_NOMEM, "zip: inflate");
	while (method == 0 ? left > 0 : zr != Z_STREAM_END) {
		size_t n = left > sizeof(in) ? sizeof(in) : (size_t)left;

		if (n == 0) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: compressed data ends early", path, name);
			break;
		}
		if ((rc = read_at(zfd, in, n, off, path, e)))
			break;
		off += n;
		left -= n;
		if (method == 0) {
			c = (uint32_t)crc32(c, in, (uInt)n);
			got += n;
			if ((rc = write_fd(out, in, n, name, e)))
				break;
			continue;
		}
		zs.next_in = in;
		zs.avail_in = (uInt)n;
		do {
			size_t have;

			zs.next_out = buf;
			zs.avail_out = sizeof(buf);
			zr = inflate(&zs, Z_NO_FLUSH);
			if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
				rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: corrupt data", path, name);
				break;
			}
			have = sizeof(buf) - zs.avail_out;
			got += have;
			if (got > usize) {
				rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: more data than its size says", path, name);
				break;
			}
			c = (uint32_t)crc32(c, buf, (uInt)have);
			if ((rc = write_fd(out, buf, have, name, e)))
				break;
		} while (zs.avail_out == 0 && zr != Z_STREAM_END);
		if (rc)
			break;
	}
	if (method == 8)
		inflateEnd(&zs);
	if (!rc && (got != usize || c != crc))
		rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: CRC or size mismatch", path, name);
	return rc;
}

/* Make the folders of rel (its last component excluded) under dest. */
static enum kiln_rc make_parents(const char *dest, const char *rel, struct kiln_err *e)
{
	char buf[PATH_MAX * 2], *slash;

	snprintf(buf, sizeof(buf), "%s/%s", dest, rel);
	slash = strrchr(buf, '/');
	if (!slash)
		return KILN_OK;
	*slash = '\0';
	if (kiln_mkdir_p(buf) < 0)
		return kiln_fail_errno(e, "creating %s", buf);
	return KILN_OK;
}

enum kiln_rc zip_extract(const char *path, const char *dest, uint64_t max_bytes, struct zip_stats *st,
			 struct kiln_err *e)
{
	uint8_t tail[END_SIZE + 65535], *cd = NULL, *p, *end;
	uint64_t size, cd_off, cd_size, total = 0, max = max_bytes ? max_bytes : ZIP_MAX_BYTES;
	size_t tail_len, i, count;
	enum kiln_rc rc = KILN_OK;
	struct stat sb;
	int zfd, out = -1;

	memset(st, 0, sizeof(*st));
	zfd = open(path, O_RDONLY | O_CLOEXEC);
	if (zfd < 0)
		return kiln_fail_errno(e, "%s", path);
	if (fstat(zfd, &sb) < 0) {
		rc = kiln_fail_errno(e, "%s", path);
		goto out;
	}
	size = (uint64_t)sb.st_size;
	if (size < END_SIZE) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: too short to be a zip", path);
		goto out;
	}
	tail_len = size < sizeof(tail) ? (size_t)size : sizeof(tail);
	if ((rc = read_at(zfd, tail, tail_len, size - tail_len, path, e)))
		goto out;
	/* The end record, searched backwards past any comment. */
	for (p = tail + tail_len - END_SIZE;; p--) {
		if (get32(p) == SIG_END)
			break;
		if (p == tail) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: no end of central directory", path);
			goto out;
		}
	}
	count = get16(p + 10);
	cd_size = get32(p + 12);
	cd_off = get32(p + 16);
	if (cd_off == 0xffffffffu || count == 0xffff) {
		rc = kiln_fail(e, KILN_E_LIMIT, "zip %s: zip64 archives are not supported", path);
		goto out;
	}
	if (cd_off + cd_size > size || cd_size > MAX_CENTRAL) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: bad central directory", path);
		goto out;
	}
	if (kiln_mkdir_p(dest) < 0) {
		rc = kiln_fail_errno(e, "creating %s", dest);
		goto out;
	}
	if (!(cd = malloc(cd_size + 1))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "zip: out of memory");
		goto out;
	}
	if ((rc = read_at(zfd, cd, (size_t)cd_size, cd_off, path, e)))
		goto out;
	end = cd + cd_size;
	for (i = 0, p = cd; i < count; i++) {
		char name[PATH_MAX], full[PATH_MAX * 2];
		uint8_t lh[LOCAL_SIZE];
		unsigned method, nlen, xlen, clen, flags;
		uint32_t crc, csize, usize, attr, off;
		mode_t mode;

		if (p + CENTRAL_SIZE > end || get32(p) != SIG_CENTRAL) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: bad central directory entry %zu", path, i);
			goto out;
		}
		flags = get16(p + 8);
		method = get16(p + 10);
		crc = get32(p + 16);
		csize = get32(p + 20);
		usize = get32(p + 24);
		nlen = get16(p + 28);
		xlen = get16(p + 30);
		clen = get16(p + 32);
		attr = get32(p + 38);
		off = get32(p + 42);
		if (p + CENTRAL_SIZE + nlen + xlen + clen > end || nlen >= sizeof(name)) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: bad central directory entry %zu", path, i);
			goto out;
		}
		memcpy(name, p + CENTRAL_SIZE, nlen);
		name[nlen] = '\0';
		p += CENTRAL_SIZE + nlen + xlen + clen;
		mode = (mode_t)(attr >> 16);
		if (csize == 0xffffffffu || usize == 0xffffffffu || off == 0xffffffffu) {
			rc = kiln_fail(e, KILN_E_LIMIT, "zip %s: %s: zip64 entries are not supported", path, name);
			goto out;
		}
		if (flags & 1) {
			rc = kiln_fail(e, KILN_E_INVALID, "zip %s: %s is encrypted", path, name);
			goto out;
		}
		if (!safe_name(name, nlen) || (mode && S_ISLNK(mode))) {
			st->skipped++;
			continue;
		}
		snprintf(full, sizeof(full), "%s/%s", dest, name);
		if (name[nlen - 1] == '/') {
			if (kiln_mkdir_p(full) < 0) {
				rc = kiln_fail_errno(e, "creating %s", full);
				goto out;
			}
			continue;
		}
		total += usize;
		if (total > max) {
			rc = kiln_fail(e, KILN_E_LIMIT, "zip %s: more than %llu bytes once extracted", path,
				       (unsigned long long)max);
			goto out;
		}
		if ((rc = read_at(zfd, lh, sizeof(lh), off, path, e)))
			goto out;
		if (get32(lh) != SIG_LOCAL) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: bad local header", path, name);
			goto out;
		}
		if ((rc = make_parents(dest, name, e)))
			goto out;
		/* dest holds only what this function made: folders and files, no links. */
		out = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			   mode && S_ISREG(mode) ? (mode & 0777) | 0600 : 0644);
		if (out < 0) {
			rc = kiln_fail_errno(e, "creating %s", full);
			goto out;
		}
		rc = extract_data(zfd, (uint64_t)off + LOCAL_SIZE + get16(lh + 26) + get16(lh + 28), method, csize, usize,
				  crc, out, path, name, e);
		if (close(out) < 0 && !rc)
			rc = kiln_fail_errno(e, "writing %s", full);
		out = -1;
		if (rc)
			goto out;
		if (mode && S_ISREG(mode))
			chmod(full, mode & 0777);
		st->files++;
		st->bytes += usize;
	}
out:
	if (out >= 0)
		close(out);
	free(cd);
	close(zfd);
	return rc;
}
