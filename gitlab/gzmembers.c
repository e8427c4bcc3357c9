#include "gitlab/gzmembers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "workspace/fstree.h"

#define CHUNK 65536

struct gzw {
	int fd;
	const char *path;
	uint64_t total, max;
	struct zip_stats *st;
	struct kiln_err *e;
	unsigned char in[CHUNK], out[CHUNK];
};

static enum kiln_rc put(struct gzw *g, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(g->fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return kiln_fail_errno(g->e, "writing %s", g->path);
		p += w;
		n -= (size_t)w;
	}
	return KILN_OK;
}

/* One member: fd's content under the header name rel. */
static enum kiln_rc member(struct gzw *g, int fd, const char *rel, time_t mtime)
{
	gz_header h = { 0 };
	z_stream z = { 0 };
	enum kiln_rc rc = KILN_OK;
	int flush = Z_NO_FLUSH, zr;

	/* windowBits 15 + 16: a gzip wrapper instead of zlib's. */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return kiln_fail(g->e, KILN_E_NOMEM, "gzip: out of memory");
	h.name = (Bytef *)rel;
	h.time = mtime > 0 && mtime <= 0xffffffffLL ? (uLong)mtime : 0;
	h.os = 3; /* Unix */
	if (deflateSetHeader(&z, &h) != Z_OK) {
		rc = kiln_fail(g->e, KILN_E_IO, "gzip: %s: header refused", rel);
		goto out;
	}
	do {
		ssize_t n = read(fd, g->in, sizeof(g->in));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = kiln_fail_errno(g->e, "gzip: reading %s", rel);
			goto out;
		}
		g->total += (uint64_t)n;
		if (g->total > g->max) {
			rc = kiln_fail(g->e, KILN_E_LIMIT, "gzip %s: more than %llu bytes to compress", g->path,
				       (unsigned long long)g->max);
			goto out;
		}
		g->st->bytes += (uint64_t)n;
		flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
		z.next_in = g->in;
		z.avail_in = (uInt)n;
		do {
			z.next_out = g->out;
			z.avail_out = sizeof(g->out);
			zr = deflate(&z, flush);
			if (zr == Z_STREAM_ERROR) {
				rc = kiln_fail(g->e, KILN_E_IO, "gzip: %s: deflate failed", rel);
				goto out;
			}
			if ((rc = put(g, g->out, sizeof(g->out) - z.avail_out)))
				goto out;
		} while (z.avail_out == 0);
	} while (flush != Z_FINISH);
	g->st->files++;
out:
	deflateEnd(&z);
	return rc;
}

/* The members of the folder dfd, named rel ("" at the top). */
static enum kiln_rc walk(struct gzw *g, int dfd, const char *rel, int depth)
{
	char **names = NULL, path[PATH_MAX];
	size_t n = 0, i;
	enum kiln_rc rc;

	if (depth > GZM_MAX_DEPTH)
		return kiln_fail(g->e, KILN_E_LIMIT, "gzip: %s: deeper than %d folders", rel, GZM_MAX_DEPTH);
	if ((rc = fstree_names(dfd, rel, GZM_MAX_FILES, &names, &n, g->e)))
		return rc;
	for (i = 0; i < n && !rc; i++) {
		struct stat sb;
		int fd;

		if ((size_t)snprintf(path, sizeof(path), "%s%s", rel, names[i]) >= sizeof(path) - 1) {
			rc = kiln_fail(g->e, KILN_E_LIMIT, "gzip: %s%s: path too long", rel, names[i]);
			break;
		}
		if (fstatat(dfd, names[i], &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = kiln_fail_errno(g->e, "gzip: %s", path);
			break;
		}
		if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode)) {
			g->st->skipped++;
			continue;
		}
		if (S_ISREG(sb.st_mode) && g->st->files >= GZM_MAX_FILES) {
			rc = kiln_fail(g->e, KILN_E_LIMIT, "gzip: more than %u files", GZM_MAX_FILES);
			break;
		}
		fd = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (S_ISDIR(sb.st_mode) ? O_DIRECTORY : 0));
		if (fd < 0) {
			rc = kiln_fail_errno(g->e, "gzip: %s", path);
			break;
		}
		if (S_ISDIR(sb.st_mode)) {
			strcat(path, "/");
			rc = walk(g, fd, path, depth + 1);
		} else {
			rc = member(g, fd, path, sb.st_mtime);
		}
		close(fd);
	}
	fstree_names_free(names, n);
	return rc;
}

enum kiln_rc gzm_write_dir(const char *dir, const char *path, uint64_t max_bytes, struct zip_stats *st,
			   struct kiln_err *e)
{
	struct gzw *g = calloc(1, sizeof(*g));
	enum kiln_rc rc;
	int dfd = -1;

	memset(st, 0, sizeof(*st));
	if (!g)
		return kiln_fail(e, KILN_E_NOMEM, "gzip: out of memory");
	g->fd = -1;
	g->path = path;
	g->max = max_bytes;
	g->st = st;
	g->e = e;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = kiln_fail_errno(e, "gzip: %s", dir);
		goto out;
	}
	if ((g->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		rc = kiln_fail_errno(e, "creating %s", path);
		goto out;
	}
	rc = walk(g, dfd, "", 0);
	if (close(g->fd) < 0 && !rc)
		rc = kiln_fail_errno(e, "writing %s", path);
	g->fd = -1;
	if (rc)
		unlink(path);
out:
	if (dfd >= 0)
		close(dfd);
	free(g);
	return rc;
}
