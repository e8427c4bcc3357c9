#include "workspace/guestdisk/tarstream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "lib/clock.h"
#include "lib/paths.h"

#define TARIN_BLOCK 65536

struct tarout {
	struct archive *a;
};

enum kiln_rc tarout_open(struct tarout **tp, int fd, struct kiln_err *e)
{
	struct tarout *t = calloc(1, sizeof(*t));

	*tp = NULL;
	if (!t || !(t->a = archive_write_new())) {
		free(t);
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	/* A pipe: no padding of the last block to 10 KiB. Names are bytes, as
	 * on the disk: no charset conversion to fail on. */
	if (archive_write_set_format_pax_restricted(t->a) != ARCHIVE_OK ||
	    archive_write_set_format_option(t->a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(t->a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(t->a, fd) != ARCHIVE_OK) {
		enum kiln_rc rc = kiln_fail(e, KILN_E_IO, "starting the tar stream: %s", archive_error_string(t->a));

		archive_write_free(t->a);
		free(t);
		return rc;
	}
	*tp = t;
	return KILN_OK;
}

struct tarout_ctx {
	struct tarout *t;
	bool (*want)(void *, const char *, bool);
	void *arg;
};

/* The sink's argument lives as long as the writer: one walk at a time. */
static struct tarout_ctx sink_ctx;

static bool out_want(void *arg, const char *rel, bool folder)
{
	const struct tarout_ctx *c = arg;

	return !c->want || c->want(c->arg, rel, folder);
}

static enum kiln_rc out_begin(void *arg, const struct ext4walk_entry *en, struct kiln_err *e)
{
	const struct tarout_ctx *c = arg;
	struct archive_entry *ae = archive_entry_new();
	enum kiln_rc rc = KILN_OK;

	if (!ae)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	archive_entry_set_pathname(ae, en->rel);
	archive_entry_set_filetype(ae, en->link ? AE_IFLNK : AE_IFREG);
	archive_entry_set_perm(ae, en->perm & 0777);
	archive_entry_set_mtime(ae, en->mtime, 0);
	archive_entry_set_size(ae, en->link ? 0 : (la_int64_t)en->size);
	if (en->link)
		archive_entry_set_symlink(ae, en->target);
	if (archive_write_header(c->t->a, ae) != ARCHIVE_OK)
		rc = kiln_fail(e, KILN_E_IO, "writing %s to the tar stream: %s", en->rel, archive_error_string(c->t->a));
	archive_entry_free(ae);
	return rc;
}

static enum kiln_rc out_data(void *arg, const void *buf, size_t n, struct kiln_err *e)
{
	const struct tarout_ctx *c = arg;

	if (archive_write_data(c->t->a, buf, n) != (la_ssize_t)n)
		return kiln_fail(e, KILN_E_IO, "writing to the tar stream: %s", archive_error_string(c->t->a));
	return KILN_OK;
}

static enum kiln_rc out_end(void *arg, struct kiln_err *e)
{
	const struct tarout_ctx *c = arg;

	if (archive_write_finish_entry(c->t->a) != ARCHIVE_OK)
		return kiln_fail(e, KILN_E_IO, "writing to the tar stream: %s", archive_error_string(c->t->a));
	return KILN_OK;
}

struct ext4walk_sink tarout_sink(struct tarout *t, bool (*want)(void *, const char *, bool), void *arg)
{
	struct ext4walk_sink s = { out_want, out_begin, out_data, out_end, &sink_ctx };

	sink_ctx.t = t;
	sink_ctx.want = want;
	sink_ctx.arg = arg;
	return s;
}

enum kiln_rc tarout_close(struct tarout *t, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;

	if (!t)
		return KILN_OK;
	if (archive_write_close(t->a) != ARCHIVE_OK)
		rc = kiln_fail(e, KILN_E_IO, "ending the tar stream: %s", archive_error_string(t->a));
	archive_write_free(t->a);
	free(t);
	return rc;
}

/* Reading. */

struct tarin {
	int fd;
	double deadline;
	bool timed_out;
	char buf[TARIN_BLOCK];
};

/* libarchive's read callback: the next bytes of the pipe, waiting no later
 * than the deadline (a jailed writer that stalls does not stall kiln). */
static la_ssize_t in_read(struct archive *a, void *arg, const void **out)
{
	struct tarin *t = arg;

	for (;;) {
		struct pollfd p = { t->fd, POLLIN, 0 };
		int wait_ms = -1, n;
		ssize_t got;

		if (t->deadline > 0) {
			double left = t->deadline - mono_s();

			if (left <= 0) {
				t->timed_out = true;
				archive_set_error(a, ETIMEDOUT, "the disk reader ran past its time limit");
				return -1;
			}
			wait_ms = (int)(left * 1000) + 1;
		}
		n = poll(&p, 1, wait_ms);
		if (n < 0 && errno != EINTR) {
			archive_set_error(a, errno, "poll");
			return -1;
		}
		if (n <= 0)
			continue;
		got = read(t->fd, t->buf, sizeof(t->buf));
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0) {
			archive_set_error(a, errno, "reading the tar stream");
			return -1;
		}
		*out = t->buf;
		return got;
	}
}

/* name for a message: the guest chose it, so no control characters or
 * escape sequences reach a terminal or a log, and at most size - 1 bytes. */
static const char *printable(const char *name, char *buf, size_t size)
{
	size_t i;

	if (!name)
		return "(none)";
	for (i = 0; name[i] && i + 1 < size; i++)
		buf[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* Whether rel is a name the reader accepts. */
static bool safe_rel(const char *rel, const char **why)
{
	const char *c = rel;
	int depth = 0;

	if (!*rel || *rel == '/')
		return (*why = "an empty or absolute name"), false;
	if (strlen(rel) >= PATH_MAX)
		return (*why = "a name too long"), false;
	while (*c) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return (*why = "an empty, '.' or '..' component"), false;
		if (depth == 0 && n == 4 && !strncmp(c, ".git", 4))
			return (*why = "a name in .git"), false;
		if (++depth > TARSTREAM_MAX_DEPTH)
			return (*why = "a name too deep"), false;
		c += n;
		if (*c == '/' && !c[1])
			return (*why = "a trailing '/'"), false;
		c += *c == '/';
	}
	return true;
}

/* Open (making it when missing) each folder of rel's parent below dfd,
 * never through a link; returns the parent's fd and sets *leaf. */
static int open_parent(int dfd, char *rel, char **leaf)
{
	int cur = dup(dfd);
	char *c = rel, *slash;

	while (cur >= 0 && (slash = strchr(c, '/'))) {
		int next;

		*slash = '\0';
		if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST)
			next = -1;
		else
			next = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*slash = '/';
		close(cur);
		cur = next;
		c = slash + 1;
	}
	*leaf = c;
	return cur;
}

static enum kiln_rc write_entry(struct archive *a, struct archive_entry *ae, int dfd, const char *rel, const char *shown,
				uint64_t size, struct kiln_err *e)
{
	char path[PATH_MAX], *leaf;
	enum kiln_rc rc = KILN_OK;
	int pfd, fd = -1;
	uint64_t done = 0;

	snprintf(path, sizeof(path), "%s", rel);
	if ((pfd = open_parent(dfd, path, &leaf)) < 0)
		return kiln_fail_errno(e, "artifacts: the folders of %s", shown);
	if (archive_entry_filetype(ae) == AE_IFLNK) {
		const char *target = archive_entry_symlink(ae);

		if (!target || !*target || strlen(target) >= PATH_MAX)
			rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: the link %s has no usable target", shown);
		else if (symlinkat(target, pfd, leaf) < 0)
			rc = errno == EEXIST ? kiln_fail(e, KILN_E_SYNTAX, "artifacts: %s twice in the stream", shown)
					     : kiln_fail_errno(e, "artifacts: %s", shown);
		goto out;
	}
	if ((fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		rc = errno == EEXIST ? kiln_fail(e, KILN_E_SYNTAX, "artifacts: %s twice in the stream", shown)
				     : kiln_fail_errno(e, "artifacts: %s", shown);
		goto out;
	}
	for (;;) {
		char buf[TARIN_BLOCK];
		la_ssize_t n = archive_read_data(a, buf, sizeof(buf));

		if (n < 0) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: reading %s: %s", shown, archive_error_string(a));
			goto out;
		}
		if (n == 0)
			break;
		done += (uint64_t)n;
		if (done > size) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: %s is longer than its header says", shown);
			goto out;
		}
		if (kiln_write_all(fd, buf, (size_t)n) < 0) {
			rc = kiln_fail_errno(e, "artifacts: writing %s", shown);
			goto out;
		}
	}
	if (done != size) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: %s is shorter than its header says", shown);
		goto out;
	}
	{
		/* No setuid, setgid or sticky bit ever comes out of a guest. */
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { archive_entry_mtime(ae), 0 } };

		if (fchmod(fd, archive_entry_perm(ae) & 0777) < 0 || futimens(fd, ts) < 0)
			rc = kiln_fail_errno(e, "artifacts: %s", shown);
	}
out:
	if (fd >= 0)
		close(fd);
	close(pfd);
	return rc;
}

enum kiln_rc tarin_extract(int fd, const char *dest, const struct tarin_limits *lim, struct tarin_stats *st,
			   struct kiln_err *e)
{
	struct tarin *in = calloc(1, sizeof(*in));
	struct archive *a = archive_read_new();
	struct archive_entry *ae;
	enum kiln_rc rc = KILN_OK;
	int dfd = -1, r;

	memset(st, 0, sizeof(*st));
	if (!in || !a) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	in->fd = fd;
	in->deadline = lim->deadline;
	if (kiln_mkdir_p(dest) < 0 || (dfd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		rc = kiln_fail_errno(e, "artifacts: %s", dest);
		goto out;
	}
	/* tar alone: no compression filter, no other format to parse. */
	if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_open(a, in, NULL, in_read, NULL) != ARCHIVE_OK) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: the disk reader's stream: %s", archive_error_string(a));
		goto out;
	}
	while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
		const char *rel = archive_entry_pathname(ae), *why = NULL;
		char name[128];
		unsigned type = archive_entry_filetype(ae);
		la_int64_t size = archive_entry_size(ae);

		if ((type != AE_IFREG && type != AE_IFLNK) || archive_entry_hardlink(ae)) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: the disk reader sent %s, neither a file nor a link",
				       printable(rel, name, sizeof(name)));
			goto out;
		}
		if (!rel || !safe_rel(rel, &why)) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: the disk reader sent %s (%s)", why ? why : "no name",
				       printable(rel, name, sizeof(name)));
			goto out;
		}
		printable(rel, name, sizeof(name));
		if (size < 0 || (type == AE_IFLNK && size != 0)) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts: %s has a bad size", name);
			goto out;
		}
		if (st->files >= lim->max_files) {
			rc = kiln_fail(e, KILN_E_LIMIT, "artifacts: more than %u files", lim->max_files);
			goto out;
		}
		if ((uint64_t)size > lim->max_bytes - st->bytes) {
			rc = kiln_fail(e, KILN_E_LIMIT, "artifacts: %s would pass the %llu-byte ceiling", name,
				       (unsigned long long)lim->max_bytes);
			goto out;
		}
		if ((rc = write_entry(a, ae, dfd, rel, name, (uint64_t)size, e)))
			goto out;
		st->files++;
		st->bytes += (uint64_t)size;
	}
	if (r != ARCHIVE_EOF)
		rc = kiln_fail(e, in->timed_out ? KILN_E_LIMIT : KILN_E_SYNTAX, "artifacts: the disk reader's stream: %s",
			       archive_error_string(a));
out:
	if (dfd >= 0)
		close(dfd);
	if (a)
		archive_read_free(a);
	free(in);
	return rc;
}
