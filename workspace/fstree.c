#include "workspace/fstree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/paths.h"
#include "lib/vec.h"

/* A destination folder that is made only when something goes into it. */
struct lazy {
	struct lazy *parent;
	const char *name;
	mode_t mode;
	int fd;                     /* -1 until opened */
};

struct walk {
	const char *src, *dst;
	fstree_want_fn want;
	void *arg;
	struct fstree_stats *st;
	struct kiln_err *e;
	char rel[PATH_MAX];         /* the entry being copied, relative to src */
};

/* Remove name in dfd, whatever it is, without following links. */
static int remove_at(int dfd, const char *name, int depth)
{
	struct dirent *de;
	DIR *d;
	int fd, rc = 0;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	if (depth > FSTREE_MAX_DEPTH) {
		errno = ELOOP;
		return -1;
	}
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	while (!rc && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = remove_at(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	if (rc)
		return rc;
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -1 : 0;
}

/* The folder name in pfd, made (or made in place of what is there). */
static int open_dir_in(int pfd, const char *name, mode_t mode)
{
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno != ENOENT) {
		if (errno != ENOTDIR && errno != ELOOP)
			return -1;
		if (remove_at(pfd, name, 0) < 0)
			return -1;
	}
	if (mkdirat(pfd, name, (mode & 0777) | 0700) < 0 && errno != EEXIST)
		return -1;
	return openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int lazy_fd(struct lazy *l)
{
	int pfd;

	if (l->fd >= 0 || !l->parent)
		return l->fd;
	pfd = lazy_fd(l->parent);
	if (pfd < 0)
		return -1;
	l->fd = open_dir_in(pfd, l->name, l->mode);
	return l->fd;
}

static int copy_data(int in, int out, uint64_t *copied)
{
	char buf[65536];

	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

		if (n > 0) {
			*copied += (uint64_t)n;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return -1;
		break;
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf)), w = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return (int)n;
		while (w < n) {
			ssize_t k = write(out, buf + w, (size_t)(n - w));

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return -1;
			w += k;
		}
		*copied += (uint64_t)n;
	}
}

static int copy_file(int sfd, const char *name, int dfd, const struct stat *sst, uint64_t *copied)
{
	struct timespec times[2] = { sst->st_atim, sst->st_mtim };
	int in = -1, out = -1, rc = -1;

	in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0 || remove_at(dfd, name, 0) < 0)
		goto out;
	out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0 || copy_data(in, out, copied) < 0 || fchmod(out, sst->st_mode & 0777) < 0 ||
	    futimens(out, times) < 0)
		goto out;
	rc = 0;
out:
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0)
		rc = -1;
	return rc;
}

static int copy_link(int sfd, const char *name, int dfd, const struct stat *sst)
{
	char target[PATH_MAX];
	ssize_t n = readlinkat(sfd, name, target, sizeof(target) - 1);

	if (n < 0)
		return -1;
	if (n >= (ssize_t)sizeof(target) - 1 || (sst->st_size > 0 && n != sst->st_size)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	target[n] = '\0';
	if (remove_at(dfd, name, 0) < 0)
		return -1;
	return symlinkat(target, dfd, name);
}

static enum kiln_rc walk_dir(struct walk *w, int sfd, struct lazy *dst, int depth)
{
	size_t base = strlen(w->rel);
	enum kiln_rc rc = KILN_OK;
	struct dirent *de;
	DIR *d;

	if (depth > FSTREE_MAX_DEPTH) {
		close(sfd);
		return kiln_fail(w->e, KILN_E_LIMIT, "copying %s/%s: more than %d levels of folders", w->src, w->rel,
				 FSTREE_MAX_DEPTH);
	}
	d = fdopendir(sfd);
	if (!d) {
		close(sfd);
		return kiln_fail_errno(w->e, "copying %s/%s", w->src, w->rel);
	}
	while (!rc && (de = readdir(d))) {
		struct stat st;
		int n;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		n = snprintf(w->rel + base, sizeof(w->rel) - base, "%s%s", base ? "/" : "", de->d_name);
		if (n < 0 || (size_t)n >= sizeof(w->rel) - base) {
			w->rel[base] = '\0';
			rc = kiln_fail(w->e, KILN_E_LIMIT, "copying %s/%s: path too long", w->src, w->rel);
			break;
		}
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = kiln_fail_errno(w->e, "copying %s/%s", w->src, w->rel);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			struct lazy child = { dst, de->d_name, st.st_mode, -1 };
			int cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (cfd < 0) {
				rc = kiln_fail_errno(w->e, "copying %s/%s", w->src, w->rel);
				break;
			}
			rc = walk_dir(w, cfd, &child, depth + 1);
			if (child.fd >= 0)
				close(child.fd);
		} else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
			int dfd;

			if (w->want && !w->want(w->arg, w->rel))
				continue;
			if (w->st->files >= FSTREE_MAX_FILES ||
			    w->st->bytes + (uint64_t)st.st_size > FSTREE_MAX_BYTES) {
				rc = kiln_fail(w->e, KILN_E_LIMIT, "copying %s: more than %u files or %llu bytes",
					       w->src, FSTREE_MAX_FILES, (unsigned long long)FSTREE_MAX_BYTES);
				break;
			}
			dfd = lazy_fd(dst);
			if (dfd < 0) {
				rc = kiln_fail_errno(w->e, "copying %s/%s: making its folder in %s", w->src, w->rel,
						     w->dst);
				break;
			}
			if (S_ISREG(st.st_mode) ? copy_file(dirfd(d), de->d_name, dfd, &st, &w->st->bytes) < 0
						: copy_link(dirfd(d), de->d_name, dfd, &st) < 0) {
				rc = kiln_fail_errno(w->e, "copying %s/%s to %s", w->src, w->rel, w->dst);
				break;
			}
			w->st->files++;
		}
	}
	w->rel[base] = '\0';
	closedir(d);
	return rc;
}

enum kiln_rc fstree_copy(const char *src, const char *dst, fstree_want_fn want, void *arg,
			 struct fstree_stats *st, struct kiln_err *e)
{
	struct walk w = { .src = src, .dst = dst, .want = want, .arg = arg, .st = st, .e = e };
	struct lazy root = { NULL, dst, 0755, -1 };
	enum kiln_rc rc;
	int sfd;

	memset(st, 0, sizeof(*st));
	sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0)
		return kiln_fail_errno(e, "copying %s", src);
	if (kiln_mkdir_p(dst) < 0 || (root.fd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		close(sfd);
		return kiln_fail_errno(e, "copying %s: %s", src, dst);
	}
	rc = walk_dir(&w, sfd, &root, 0);
	close(root.fd);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void fstree_names_free(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

enum kiln_rc fstree_names(int dfd, const char *rel, size_t max, char ***names, size_t *n, struct kiln_err *e)
{
	const char *what = rel && rel[0] ? rel : ".";
	char **list = NULL;
	size_t cnt = 0, cap = 0;
	enum kiln_rc rc = KILN_OK;
	struct dirent *de;
	DIR *d;
	int dup_fd;

	*names = NULL;
	*n = 0;
	/* A duplicate: closedir must not close the caller's fd. */
	if ((dup_fd = dup(dfd)) < 0 || !(d = fdopendir(dup_fd))) {
		if (dup_fd >= 0)
			close(dup_fd);
		return kiln_fail_errno(e, "reading %s", what);
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((rc = VEC_GROW(list, cap, cnt, 1, max))) {
			rc = rc == KILN_E_LIMIT ? kiln_fail(e, rc, "%s: more than %zu entries", what, max)
						: kiln_fail(e, rc, "%s: out of memory", what);
			break;
		}
		if (!(list[cnt] = strdup(de->d_name))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", what);
			break;
		}
		cnt++;
	}
	closedir(d);
	if (rc) {
		fstree_names_free(list, cnt);
		return rc;
	}
	if (cnt)
		qsort(list, cnt, sizeof(*list), cmp_names);
	*names = list;
	*n = cnt;
	return KILN_OK;
}
