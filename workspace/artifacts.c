#include "workspace/artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "lib/paths.h"
#include "lib/glob.h"

bool artifacts_glob(const char *pattern, const char *path)
{
	return *pattern && kiln_glob_match(pattern, path, KILN_GLOB_DEEP_TAIL);
}

bool artifacts_normalize(const char *pattern, const char *project_dir, char *buf, size_t size)
{
	const char *p = pattern;
	size_t n, pd = project_dir ? strlen(project_dir) : 0;
	char *c;

	if (pd && !strncmp(p, project_dir, pd) && (p[pd] == '/' || !p[pd]))
		p += pd;
	else if (*p == '/')
		return false;
	while (*p == '/' || (p[0] == '.' && p[1] == '/'))
		p += *p == '/' ? 1 : 2;
	if (snprintf(buf, size, "%s", p) >= (int)size || strpbrk(buf, "\"\\\n"))
		return false;
	/* Collapse "//", drop "/./" and the trailing '/'. */
	for (c = buf; (c = strstr(c, "//"));)
		memmove(c, c + 1, strlen(c));
	for (c = buf; (c = strstr(c, "/./"));)
		memmove(c, c + 2, strlen(c + 1));
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '/')
		buf[--n] = '\0';
	if (n >= 2 && !strcmp(buf + n - 2, "/."))
		buf[n -= 2] = '\0';
	/* The project folder itself: everything in it. */
	if (!n || !strcmp(buf, "."))
		return snprintf(buf, size, "**") < (int)size;
	/* Nothing above the project folder. */
	return strcmp(buf, "..") && strncmp(buf, "../", 3) && !strstr(buf, "/../") &&
	       !(n >= 3 && !strcmp(buf + n - 3, "/.."));
}

static bool in_git(const char *rel)
{
	return !strcmp(rel, ".git") || !strncmp(rel, ".git/", 5);
}

/* Whether some path pattern of a matches rel or one of its folders. */
static bool paths_hit(const struct artifacts_spec *a, const char *rel)
{
	char pat[PATH_MAX], anc[PATH_MAX];
	size_t i;

	for (i = 0; i < a->n_paths; i++) {
		char *slash;

		if (!artifacts_normalize(a->paths[i], a->project_dir, pat, sizeof(pat)))
			continue;
		/* The entry itself, then each folder above it. */
		snprintf(anc, sizeof(anc), "%s", rel);
		do {
			if (artifacts_glob(pat, anc))
				return true;
			slash = strrchr(anc, '/');
			if (slash)
				*slash = '\0';
		} while (slash);
	}
	return false;
}

static bool excluded(const struct artifacts_spec *a, const char *rel)
{
	char pat[PATH_MAX];
	size_t i;

	for (i = 0; i < a->n_exclude; i++)
		if (artifacts_normalize(a->exclude[i], a->project_dir, pat, sizeof(pat)) && artifacts_glob(pat, rel))
			return true;
	return false;
}

bool artifacts_selected(const struct artifacts_spec *a, const char *rel)
{
	if (in_git(rel) || strlen(rel) >= PATH_MAX)
		return false;
	return paths_hit(a, rel) && !excluded(a, rel);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether rel or a folder above it (a submodule) is tracked. */
static bool is_tracked(const struct artifacts_tracked *t, const char *rel)
{
	char anc[PATH_MAX], *slash, *key = anc;

	snprintf(anc, sizeof(anc), "%s", rel);
	do {
		if (t->n && bsearch(&key, t->paths, t->n, sizeof(*t->paths), cmp_str))
			return true;
		slash = strrchr(anc, '/');
		if (slash)
			*slash = '\0';
	} while (slash);
	return false;
}

enum kiln_rc artifacts_tracked_load(struct artifacts_tracked *t, const char *path, struct kiln_err *e)
{
	git_index *idx = NULL;
	enum kiln_rc rc = KILN_OK;
	size_t i, n;

	memset(t, 0, sizeof(*t));
	if (git_libgit2_init() < 0)
		return kiln_fail(e, KILN_E_IO, "artifacts: starting libgit2");
	if (git_index_open(&idx, path) < 0) {
		const git_error *ge = git_error_last();

		rc = kiln_fail(e, KILN_E_SYNTAX, "artifacts:untracked: reading the checkout's git index: %s",
			       ge && ge->message ? ge->message : "unknown error");
		goto out;
	}
	n = git_index_entrycount(idx);
	if (n > ARTIFACTS_MAX_TRACKED) {
		rc = kiln_fail(e, KILN_E_LIMIT, "artifacts:untracked: the git index has %zu entries, more than %u", n,
			       ARTIFACTS_MAX_TRACKED);
		goto out;
	}
	if (n && !(t->paths = calloc(n, sizeof(*t->paths)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		const git_index_entry *ie = git_index_get_byindex(idx, i);

		if (!ie || !ie->path)
			continue;
		if (!(t->paths[t->n] = strdup(ie->path))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			goto out;
		}
		t->n++;
	}
	qsort(t->paths, t->n, sizeof(*t->paths), cmp_str);
out:
	git_index_free(idx);
	git_libgit2_shutdown();
	return rc;
}

void artifacts_tracked_free(struct artifacts_tracked *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		free(t->paths[i]);
	free(t->paths);
	memset(t, 0, sizeof(*t));
}

bool artifacts_wanted(const struct artifacts_spec *a, const struct artifacts_tracked *t, const char *rel)
{
	if (in_git(rel) || strlen(rel) >= PATH_MAX)
		return false;
	return (paths_hit(a, rel) || (a->untracked && t && !is_tracked(t, rel))) && !excluded(a, rel);
}

/* The leading components of pattern without wildcards into buf ("" when
 * the first one has one). */
static void literal_prefix(const char *pattern, char *buf, size_t size)
{
	const char *c = pattern, *end = pattern;

	while (*c) {
		size_t n = strcspn(c, "/");

		if (strcspn(c, "*?[") < n)
			break;
		end = c + n;
		c = end + (end[0] == '/');
	}
	snprintf(buf, size, "%.*s", (int)(end - pattern), pattern);
}

/* Whether one of a and b is the other or a folder above it. */
static bool on_one_line(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b), n = na < nb ? na : nb;

	return !strncmp(a, b, n) && (a[n] == '/' || !a[n]) && (b[n] == '/' || !b[n]);
}

bool artifacts_may_hold(const struct artifacts_spec *a, const char *rel)
{
	char pat[PATH_MAX], prefix[PATH_MAX];
	size_t i;

	if (in_git(rel))
		return false;
	if (a->untracked)
		return true;
	for (i = 0; i < a->n_paths; i++) {
		if (!artifacts_normalize(a->paths[i], a->project_dir, pat, sizeof(pat)))
			continue;
		literal_prefix(pat, prefix, sizeof(prefix));
		if (!prefix[0] || on_one_line(prefix, rel))
			return true;
	}
	return false;
}
