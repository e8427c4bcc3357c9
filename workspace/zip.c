#include "workspace/zip.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workspace/fstree.h"
#include "lib/paths.h"

#define MAX_DEPTH 64
#define CHUNK 65536
#define CD_RECORD 100                 /* a central record past its name, at most */
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define END_SIZE 22
#define END64_SIZE 56
#define LOCATOR64_SIZE 20

/* libarchive's last error, or a fallback when it has none. */
static const char *why(struct archive *a)
{
	const char *s = archive_error_string(a);

	return s ? s : "libarchive error";
}

/* libarchive converts names between an entry's charset and the current
 * locale's; kiln runs in the C locale, where a UTF-8 name (the zip flag
 * GitLab's and kiln's archives set) cannot be converted and comes back
 * NULL. This thread works in C.UTF-8 while it reads or writes a zip. */
struct utf8_scope {
	locale_t loc, old;
};

static void utf8_begin(struct utf8_scope *u)
{
	u->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	u->old = u->loc ? uselocale(u->loc) : (locale_t)0;
}

static void utf8_end(struct utf8_scope *u)
{
	if (!u->loc)
		return;
	uselocale(u->old);
	freelocale(u->loc);
}

/* --- writing ------------------------------------------------------------- */

struct zw {
	struct archive *a;
	struct archive_entry *ent;
	unsigned n;                /* entries so far */
	uint64_t cd;               /* central directory bytes libarchive holds, at most */
	uint64_t total, max;
	struct zip_stats *st;
	struct kiln_err *e;
	const char *path;
	unsigned char buf[CHUNK];
};

/* Append the entry name for sb: content from fd (regular files) or the
 * link's target. */
static enum kiln_rc add(struct zw *z, const char *name, const struct stat *sb, int fd, const char *target)
{
	uint64_t left = S_ISREG(sb->st_mode) ? (uint64_t)sb->st_size : 0;

	if (z->n >= ZIP_MAX_ENTRIES)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: more than %u entries", z->path, ZIP_MAX_ENTRIES);
	z->n++;
	z->cd += CD_RECORD + strlen(name);
	if (z->cd > ZIP_MAX_CENTRAL)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: %s: names make a central directory larger than %llu bytes",
				 z->path, name, (unsigned long long)ZIP_MAX_CENTRAL);
	if (z->total + left > z->max)
		return kiln_fail(z->e, KILN_E_LIMIT, "zip %s: %s makes it larger than %llu bytes", z->path, name,
				 (unsigned long long)z->max);
	archive_entry_clear(z->ent);
	archive_entry_set_pathname(z->ent, name);
	archive_entry_set_mode(z->ent, sb->st_mode & (S_IFMT | 0777)); /* no setuid, setgid or sticky bit */
	archive_entry_set_mtime(z->ent, sb->st_mtime, 0);
	archive_entry_set_size(z->ent, (la_int64_t)left);
	if (target)
		archive_entry_set_symlink(z->ent, target);
	if (archive_write_header(z->a, z->ent) < ARCHIVE_WARN)
		return kiln_fail(z->e, KILN_E_IO, "zip %s: %s: %s", z->path, name, why(z->a));
	/* The size stated above is what goes in: a file that grows meanwhile
	 * is cut there, one that shrinks fails. */
	while (left > 0) {
		ssize_t n = read(fd, z->buf, left < sizeof(z->buf) ? (size_t)left : sizeof(z->buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_fail_errno(z->e, "zip: reading %s", name);
		if (n == 0)
			return kiln_fail(z->e, KILN_E_IO, "zip %s: %s shrank while being read", z->path, name);
		if (archive_write_data(z->a, z->buf, (size_t)n) != n)
			return kiln_fail(z->e, KILN_E_IO, "zip %s: %s: %s", z->path, name, why(z->a));
		left -= (uint64_t)n;
		z->total += (uint64_t)n;
	}
	return KILN_OK;
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
			rc = add(z, path, &sb, -1, NULL);
			if (!rc)
				rc = walk(z, sub, path, depth + 1);
			close(sub);
		} else if (S_ISREG(sb.st_mode)) {
			int fd = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

			if (fd < 0) {
				rc = kiln_fail_errno(z->e, "zip: %s", path);
				break;
			}
			rc = add(z, path, &sb, fd, NULL);
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
			target[tl] = '\0';
			rc = add(z, path, &sb, -1, target);
			if (!rc)
				z->st->links++;
		} else {
			z->st->skipped++;
		}
	}
	fstree_names_free(names, n);
	return rc;
}

enum kiln_rc zip_write_dir(const char *dir, const char *path, uint64_t max_bytes, struct zip_stats *st,
			   struct kiln_err *e)
{
	struct utf8_scope u;
	struct zw *z;
	enum kiln_rc rc = KILN_OK;
	int dfd, fd = -1;

	memset(st, 0, sizeof(*st));
	if (!(z = calloc(1, sizeof(*z))))
		return kiln_fail(e, KILN_E_NOMEM, "zip: out of memory");
	utf8_begin(&u);
	z->max = max_bytes ? max_bytes : ZIP_MAX_BYTES;
	z->st = st;
	z->e = e;
	z->path = path;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = kiln_fail_errno(e, "zip: %s", dir);
		goto out;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = kiln_fail_errno(e, "creating %s", path);
		goto out;
	}
	if (!(z->a = archive_write_new()) || !(z->ent = archive_entry_new())) {
		rc = kiln_fail(e, KILN_E_NOMEM, "zip: out of memory");
		goto out;
	}
	/* Deflate, as GitLab expects; no padding after the end record. */
	if (archive_write_set_format_zip(z->a) != ARCHIVE_OK ||
	    archive_write_zip_set_compression_deflate(z->a) != ARCHIVE_OK ||
	    archive_write_set_format_option(z->a, "zip", "hdrcharset", "UTF-8") != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(z->a, 1) != ARCHIVE_OK || archive_write_open_fd(z->a, fd) != ARCHIVE_OK) {
		rc = kiln_fail(e, KILN_E_IO, "zip %s: %s", path, why(z->a));
		goto out;
	}
	if ((rc = walk(z, dfd, "", 0)))
		goto out;
	if (archive_write_close(z->a) != ARCHIVE_OK) {
		rc = kiln_fail(e, KILN_E_IO, "zip %s: %s", path, why(z->a));
		goto out;
	}
	if (close(fd) < 0)
		rc = kiln_fail_errno(e, "writing %s", path);
	fd = -1;
out:
	if (z->a)
		archive_write_free(z->a);
	archive_entry_free(z->ent);
	if (fd >= 0)
		close(fd);
	if (rc && dfd >= 0)
		unlink(path);
	if (dfd >= 0)
		close(dfd);
	free(z);
	utf8_end(&u);
	return rc;
}

/* --- reading ------------------------------------------------------------- */

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
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

/* libarchive reads the whole central directory into memory before the
 * first entry (measured: 200,000 entries, an 18 MB archive, take 36 MB):
 * the end record's entry count and directory size, zip64's included, are
 * held to the ceilings first. Anything malformed is left to libarchive. */
static enum kiln_rc directory_fits(int fd, const char *path, struct kiln_err *e)
{
	uint8_t tail[LOCATOR64_SIZE + END_SIZE + 65535];
	uint8_t end64[END64_SIZE];
	uint64_t count, cd_size;
	size_t n;
	struct stat sb;
	uint8_t *p;
	enum kiln_rc rc;

	if (fstat(fd, &sb) < 0)
		return kiln_fail_errno(e, "%s", path);
	if ((uint64_t)sb.st_size < END_SIZE)
		return KILN_OK;
	n = (uint64_t)sb.st_size < sizeof(tail) ? (size_t)sb.st_size : sizeof(tail);
	if ((rc = read_at(fd, tail, n, (uint64_t)sb.st_size - n, path, e)))
		return rc;
	for (p = tail + n - END_SIZE; get_le(p, 4) != SIG_END; p--)
		if (p == tail)
			return KILN_OK;
	count = get_le(p + 10, 2);
	cd_size = get_le(p + 12, 4);
	if (p - tail >= LOCATOR64_SIZE && get_le(p - LOCATOR64_SIZE, 4) == SIG_LOCATOR64 &&
	    !read_at(fd, end64, sizeof(end64), get_le(p - LOCATOR64_SIZE + 8, 8), path, e) &&
	    get_le(end64, 4) == SIG_END64) {
		count = get_le(end64 + 32, 8);
		cd_size = get_le(end64 + 40, 8);
	}
	if (count > ZIP_MAX_ENTRIES)
		return kiln_fail(e, KILN_E_LIMIT, "zip %s: %llu entries, more than %u", path, (unsigned long long)count,
				 ZIP_MAX_ENTRIES);
	if (cd_size > ZIP_MAX_CENTRAL)
		return kiln_fail(e, KILN_E_LIMIT, "zip %s: a central directory of %llu bytes, more than %llu", path,
				 (unsigned long long)cd_size, (unsigned long long)ZIP_MAX_CENTRAL);
	return KILN_OK;
}

static bool safe_name(const char *name)
{
	size_t i, start = 0, n = strlen(name);

	if (n == 0 || name[0] == '/')
		return false;
	for (i = 0; i <= n; i++) {
		if (i < n && name[i] == '\\')
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

/* A link target kept: one that cannot lead out of dest however the links
 * there resolve. It is relative, its ".." come first and are no more than
 * the folders above the link (name) inside dest. The climb thus ends in a
 * real folder of dest (the link's folders are made with O_NOFOLLOW), and
 * each name after it is a folder, a file, or a link held to this same
 * rule: no resolution leaves dest. A ".." after a name could climb back
 * out through a link ("self -> ." then "x -> self/.."): refused. */
static bool safe_target(const char *name, const char *target)
{
	size_t depth = 0, i, start = 0, n = strlen(target);
	bool named = false;
	const char *p;

	if (n == 0 || n >= PATH_MAX || target[0] == '/')
		return false;
	for (p = name; (p = strchr(p, '/')); p++)
		depth++;
	for (i = 0; i <= n; i++) {
		size_t len;

		if (i < n && target[i] != '/')
			continue;
		len = i - start;
		if (len == 2 && !memcmp(target + start, "..", 2)) {
			if (named || depth == 0)
				return false;
			depth--;
		} else if (len > 0 && !(len == 1 && target[start] == '.')) {
			named = true;
		}
		start = i + 1;
	}
	return true;
}

/* The folder in dfd that holds name's last component (or, with whole,
 * name itself), each folder on the way made when missing and opened with
 * O_NOFOLLOW: nothing is ever reached through a link. Returns its fd and
 * sets *leaf to the last component, or -1 with errno; ELOOP when a
 * component is a link. */
static int open_parent(int dfd, const char *name, bool whole, const char **leaf)
{
	char buf[PATH_MAX];
	char *c = buf, *slash;
	int fd = dfd;

	snprintf(buf, sizeof(buf), "%s", name);
	for (;;) {
		int sub;

		slash = strchr(c, '/');
		if (slash)
			*slash = '\0';
		if (!whole && (!slash || !slash[1])) {
			*leaf = name + (c - buf);
			return fd == dfd ? fcntl(dfd, F_DUPFD_CLOEXEC, 0) : fd;
		}
		if (!*c)
			break;
		if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST)
			goto fail;
		sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			struct stat sb;
			int err = errno;

			if (err == ENOTDIR && !fstatat(fd, c, &sb, AT_SYMLINK_NOFOLLOW) && S_ISLNK(sb.st_mode))
				err = ELOOP;
			errno = err;
			goto fail;
		}
		if (fd != dfd)
			close(fd);
		fd = sub;
		if (!slash || !slash[1])
			break;
		c = slash + 1;
	}
	*leaf = NULL;
	return fd == dfd ? fcntl(dfd, F_DUPFD_CLOEXEC, 0) : fd;
fail:
	if (fd != dfd) {
		int err = errno;

		close(fd);
		errno = err;
	}
	return -1;
}

/* The current entry's data into out; counts toward *total. */
static enum kiln_rc extract_data(struct archive *a, struct archive_entry *ent, int out, uint64_t *total,
				 uint64_t max, const char *path, const char *name, uint64_t *got, struct kiln_err *e)
{
	unsigned char buf[CHUNK];
	bool sized = archive_entry_size_is_set(ent);
	uint64_t size = sized ? (uint64_t)archive_entry_size(ent) : 0;
	enum kiln_rc rc;

	*got = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(a, buf, sizeof(buf));

		if (n == 0)
			break;
		/* A CRC mismatch comes as ARCHIVE_WARN: an error here too. */
		if (n < 0)
			return kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: %s", path, name, why(a));
		*got += (uint64_t)n;
		*total += (uint64_t)n;
		if (*total > max)
			return kiln_fail(e, KILN_E_LIMIT, "zip %s: more than %llu bytes once extracted", path,
					 (unsigned long long)max);
		if (sized && *got > size)
			return kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: more data than its size says", path, name);
		if ((rc = write_fd(out, buf, (size_t)n, name, e)))
			return rc;
	}
	if (sized && *got != size)
		return kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s: CRC or size mismatch (%llu bytes, %llu declared)", path,
				 name, (unsigned long long)*got, (unsigned long long)size);
	return KILN_OK;
}

enum kiln_rc zip_extract(const char *path, const char *dest, uint64_t max_bytes, struct zip_stats *st,
			 struct kiln_err *e)
{
	uint64_t total = 0, max = max_bytes ? max_bytes : ZIP_MAX_BYTES;
	struct archive *a = NULL;
	struct archive_entry *ent;
	enum kiln_rc rc = KILN_OK;
	struct utf8_scope u;
	unsigned count = 0;
	int zfd, dfd = -1, pfd = -1, out = -1;

	memset(st, 0, sizeof(*st));
	zfd = open(path, O_RDONLY | O_CLOEXEC);
	if (zfd < 0)
		return kiln_fail_errno(e, "%s", path);
	utf8_begin(&u);
	if ((rc = directory_fits(zfd, path, e)))
		goto out;
	if (!(a = archive_read_new())) {
		rc = kiln_fail(e, KILN_E_NOMEM, "zip: out of memory");
		goto out;
	}
	/* The seekable reader: it trusts the central directory (as unzip
	 * does), the only place that holds modes and link bits. */
	if (archive_read_support_format_zip_seekable(a) != ARCHIVE_OK || archive_read_open_fd(a, zfd, CHUNK) != ARCHIVE_OK) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s", path, why(a));
		goto out;
	}
	if (kiln_mkdir_p(dest) < 0 || (dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = kiln_fail_errno(e, "creating %s", dest);
		goto out;
	}
	for (;;) {
		char full[PATH_MAX * 2];
		const char *name, *target, *leaf;
		uint64_t got;
		mode_t type;
		int r = archive_read_next_header(a, &ent);

		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "zip %s: %s", path, why(a));
			goto out;
		}
		if (++count > ZIP_MAX_ENTRIES) {
			rc = kiln_fail(e, KILN_E_LIMIT, "zip %s: more than %u entries", path, ZIP_MAX_ENTRIES);
			goto out;
		}
		if (!(name = archive_entry_pathname(ent)))
			name = ""; /* not convertible: skipped as unsafe */
		if (archive_entry_is_encrypted(ent)) {
			rc = kiln_fail(e, KILN_E_INVALID, "zip %s: %s is encrypted", path, name);
			goto out;
		}
		type = archive_entry_filetype(ent);
		target = type == AE_IFLNK ? archive_entry_symlink(ent) : NULL;
		if (!safe_name(name) || strlen(name) >= PATH_MAX || archive_entry_hardlink(ent) ||
		    (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) ||
		    (type == AE_IFLNK && (name[strlen(name) - 1] == '/' || !target || !safe_target(name, target)))) {
			st->skipped++;
			continue;
		}
		snprintf(full, sizeof(full), "%s/%s", dest, name);
		if (type == AE_IFREG && archive_entry_size_is_set(ent) &&
		    total + (uint64_t)archive_entry_size(ent) > max) {
			rc = kiln_fail(e, KILN_E_LIMIT, "zip %s: more than %llu bytes once extracted", path,
				       (unsigned long long)max);
			goto out;
		}
		pfd = open_parent(dfd, name, type == AE_IFDIR, &leaf);
		if (pfd < 0 && errno == ELOOP) {
			st->skipped++; /* through a link: never */
			continue;
		}
		if (pfd < 0) {
			rc = kiln_fail_errno(e, "creating %s", full);
			goto out;
		}
		if (type == AE_IFDIR) {
			close(pfd);
			pfd = -1;
			continue;
		}
		/* What an earlier entry or archive left there is replaced (as
		 * gitlab-runner does), a folder excepted; a file is never
		 * written through a link. */
		if (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT) {
			if (errno == EISDIR && type == AE_IFLNK) {
				st->skipped++;
				close(pfd);
				pfd = -1;
				continue;
			}
			rc = kiln_fail_errno(e, "creating %s", full);
			goto out;
		}
		if (type == AE_IFLNK) {
			if (symlinkat(target, pfd, leaf) < 0) {
				rc = kiln_fail_errno(e, "creating %s", full);
				goto out;
			}
			close(pfd);
			pfd = -1;
			st->links++;
			continue;
		}
		out = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		close(pfd);
		pfd = -1;
		if (out < 0) {
			rc = kiln_fail_errno(e, "creating %s", full);
			goto out;
		}
		rc = extract_data(a, ent, out, &total, max, path, name, &got, e);
		if (!rc && fchmod(out, archive_entry_perm(ent) & 0777) < 0)
			rc = kiln_fail_errno(e, "creating %s", full);
		if (close(out) < 0 && !rc)
			rc = kiln_fail_errno(e, "writing %s", full);
		out = -1;
		if (rc)
			goto out;
		st->files++;
		st->bytes += got;
	}
out:
	if (out >= 0)
		close(out);
	if (pfd >= 0)
		close(pfd);
	if (dfd >= 0)
		close(dfd);
	if (a)
		archive_read_free(a);
	close(zfd);
	utf8_end(&u);
	return rc;
}
