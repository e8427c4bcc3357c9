#include "runner/artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <git2.h>

#include "runner/paths.h"
#include "runner/spawn.h"

#define DEBUGFS_OUTPUT_MAX (256 * 1024)

/* Split s (modified) at '/' into at most max components; -1 when more. */
static int split(char *s, char **parts, int max)
{
	int n = 0;
	char *save = NULL, *tok;

	for (tok = strtok_r(s, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (n == max)
			return -1;
		parts[n++] = tok;
	}
	return n;
}

static bool match_parts(char **pp, int np, char **sp, int ns)
{
	int k;

	if (np == 0)
		return ns == 0;
	if (!strcmp(pp[0], "**")) {
		/* Consecutive ** are one. */
		while (np > 1 && !strcmp(pp[1], "**")) {
			pp++;
			np--;
		}
		for (k = 0; k <= ns; k++)
			if (match_parts(pp + 1, np - 1, sp + k, ns - k))
				return true;
		return false;
	}
	if (ns == 0 || fnmatch(pp[0], sp[0], 0) != 0)
		return false;
	return match_parts(pp + 1, np - 1, sp + 1, ns - 1);
}

bool artifacts_glob(const char *pattern, const char *path)
{
	char pbuf[PATH_MAX], sbuf[PATH_MAX];
	char *pp[ARTIFACTS_MAX_COMPONENTS], *sp[ARTIFACTS_MAX_COMPONENTS];
	int np, ns;

	if (snprintf(pbuf, sizeof(pbuf), "%s", pattern) >= (int)sizeof(pbuf) ||
	    snprintf(sbuf, sizeof(sbuf), "%s", path) >= (int)sizeof(sbuf))
		return false;
	np = split(pbuf, pp, ARTIFACTS_MAX_COMPONENTS);
	ns = split(sbuf, sp, ARTIFACTS_MAX_COMPONENTS);
	if (np <= 0 || ns < 0)
		return false;
	return match_parts(pp, np, sp, ns);
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

/* The paths git tracks in the checkout (its index), sorted, for
 * artifacts:untracked. */
struct tracked {
	char **paths;
	size_t n;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether rel or a folder above it (a submodule) is tracked. */
static bool is_tracked(const struct tracked *t, const char *rel)
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

/* Read the tracked paths from the git index file at path; none when there
 * is no index (then every file is untracked, as in a folder without git). */
static enum kiln_rc tracked_load(struct tracked *t, const char *path, struct kiln_err *e)
{
	git_index *idx = NULL;
	enum kiln_rc rc = KILN_OK;
	size_t i, n;

	memset(t, 0, sizeof(*t));
	if (access(path, F_OK) < 0)
		return KILN_OK;
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

static void tracked_free(struct tracked *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		free(t->paths[i]);
	free(t->paths);
	memset(t, 0, sizeof(*t));
}

struct selection {
	const struct artifacts_spec *a;
	const struct tracked *tracked;   /* with a->untracked */
};

static bool want_cb(void *arg, const char *rel)
{
	const struct selection *sel = arg;

	if (in_git(rel) || strlen(rel) >= PATH_MAX)
		return false;
	return (paths_hit(sel->a, rel) || (sel->a->untracked && !is_tracked(sel->tracked, rel))) &&
	       !excluded(sel->a, rel);
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

static bool find_debugfs(char *buf, size_t size)
{
	static const char *const dirs[] = { "/usr/sbin", "/sbin" };
	size_t i;

	if (kiln_which(NULL, "debugfs", buf, size))
		return true;
	for (i = 0; i < 2; i++) {
		snprintf(buf, size, "%s/debugfs", dirs[i]);
		if (access(buf, X_OK) == 0)
			return true;
	}
	return false;
}

/* Run argv with stdout and stderr captured into out (NUL-terminated, at
 * most size - 1 bytes kept). 0 when it exited 0. */
static enum kiln_rc run_quiet(char *const argv[], char *out, size_t size, struct kiln_err *e)
{
	int pfd[2] = { -1, -1 }, status;
	size_t len = 0;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return kiln_fail_errno(e, "%s: pipe", argv[0]);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return kiln_fail_errno(e, "%s: fork", argv[0]);
	}
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);

		if (null_fd >= 0)
			dup2(null_fd, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		char sink[4096];
		ssize_t n = len + 1 < size ? read(pfd[0], out + len, size - 1 - len) : read(pfd[0], sink, sizeof(sink));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (len + 1 < size)
			len += (size_t)n;
	}
	out[len] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return kiln_fail_errno(e, "%s: waitpid", argv[0]);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return kiln_fail(e, KILN_E_EXEC, "%s: %s %d", argv[0], WIFEXITED(status) ? "exit status" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return KILN_OK;
}

/* The names in the project folder of the image, from `debugfs -R "ls
 * -p"` (lines "/inode/mode/uid/gid/name/size/"), without ".", ".." and
 * ".git". Names that cannot be quoted for debugfs ('"', '\\') are left
 * out. */
struct toplist {
	char (*names)[256];
	size_t n;
};

static enum kiln_rc list_top(const char *debugfs, const char *image, const char *project, struct toplist *l,
			     struct kiln_err *e)
{
	char req[PATH_MAX + 16], *out = NULL, *line, *save = NULL;
	char *argv[] = { (char *)debugfs, "-R", req, (char *)image, NULL };
	enum kiln_rc rc;

	memset(l, 0, sizeof(*l));
	snprintf(req, sizeof(req), "ls -p \"/%s\"", project);
	if (!(out = malloc(DEBUGFS_OUTPUT_MAX)) || !(l->names = calloc(ARTIFACTS_MAX_TOP, sizeof(*l->names)))) {
		free(out);
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	if ((rc = run_quiet(argv, out, DEBUGFS_OUTPUT_MAX, e)))
		goto out;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[6], *c = line;
		int k;

		if (*c != '/')
			continue; /* the banner, messages */
		for (k = 0; k < 6 && c; k++) {
			f[k] = c + 1;
			c = strchr(c + 1, '/');
			if (c)
				*c = '\0';
		}
		if (k < 6 || !c)
			continue; /* not the six fields and the closing '/' */
		/* f[4] is the name: no '/' can be in it. */
		if (!strcmp(f[4], ".") || !strcmp(f[4], "..") || !strcmp(f[4], ".git") || !f[4][0] ||
		    strpbrk(f[4], "\"\\") || strlen(f[4]) >= sizeof(l->names[0]))
			continue;
		if (l->n == ARTIFACTS_MAX_TOP) {
			rc = kiln_fail(e, KILN_E_LIMIT, "artifacts: more than %u entries in /%s", ARTIFACTS_MAX_TOP, project);
			goto out;
		}
		snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", f[4]);
	}
out:
	free(out);
	return rc;
}

/* Whether a needs the whole project folder: a path starting with a
 * wildcard, or untracked files. */
static bool needs_whole(const struct artifacts_spec *a)
{
	char pat[PATH_MAX], prefix[PATH_MAX];
	size_t i;

	if (a->untracked)
		return true;
	for (i = 0; i < a->n_paths && i < ARTIFACTS_MAX_PATTERNS; i++) {
		if (!artifacts_normalize(a->paths[i], a->project_dir, pat, sizeof(pat)))
			continue;
		literal_prefix(pat, prefix, sizeof(prefix));
		if (!prefix[0])
			return true;
	}
	return false;
}

/* Write the debugfs commands that dump what a's paths may match from
 * /<project> into root (= tmp/<last component of project>): each name of
 * top when it is given (the whole folder but .git), else the literal
 * leading folders of the paths. */
static enum kiln_rc write_commands(FILE *f, const char *project, const char *root, const struct artifacts_spec *a,
				   const struct toplist *top, struct kiln_err *e)
{
	char (*prefixes)[PATH_MAX] = NULL;
	char pat[PATH_MAX], dir[PATH_MAX * 2];
	size_t i, k, n = 0;
	enum kiln_rc rc = KILN_OK;

	if (top) {
		if (top->n && kiln_mkdir_p(root) < 0)
			return kiln_fail_errno(e, "artifacts: %s", root);
		for (i = 0; i < top->n; i++)
			fprintf(f, "rdump \"/%s/%s\" \"%s\"\n", project, top->names[i], root);
		return KILN_OK;
	}
	if (!(prefixes = calloc(ARTIFACTS_MAX_PATTERNS, PATH_MAX)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	for (i = 0; i < a->n_paths && n < ARTIFACTS_MAX_PATTERNS; i++) {
		if (!artifacts_normalize(a->paths[i], a->project_dir, pat, sizeof(pat)))
			continue;
		literal_prefix(pat, prefixes[n], PATH_MAX);
		n++;
	}
	for (i = 0; i < n; i++) {
		bool covered = false;
		char *slash;

		/* Skip a prefix that another one (or an earlier copy) holds. */
		for (k = 0; k < n && !covered; k++) {
			size_t len = strlen(prefixes[k]);

			if (k == i || (!strcmp(prefixes[k], prefixes[i]) && k > i))
				continue;
			covered = !strncmp(prefixes[i], prefixes[k], len) &&
				  (prefixes[i][len] == '/' || prefixes[i][len] == '\0');
		}
		if (covered)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", root, prefixes[i]);
		slash = strrchr(dir, '/');
		*slash = '\0';
		if (kiln_mkdir_p(dir) < 0) {
			rc = kiln_fail_errno(e, "artifacts: %s", dir);
			goto out;
		}
		fprintf(f, "rdump \"/%s/%s\" \"%s\"\n", project, prefixes[i], dir);
	}
out:
	free(prefixes);
	return rc;
}

enum kiln_rc artifacts_collect(const char *image, const char *project, const struct artifacts_spec *a,
			       const char *tmp_dir, const char *dest, struct fstree_stats *st, struct kiln_err *e)
{
	char debugfs[PATH_MAX], tmp[PATH_MAX], cmds[PATH_MAX + 16], root[PATH_MAX * 2], index[PATH_MAX + 16];
	const char *base = strrchr(project, '/');
	struct toplist top = { 0 };
	struct tracked tracked = { 0 };
	struct selection sel = { a, &tracked };
	bool whole = needs_whole(a);
	enum kiln_rc rc = KILN_OK;
	char *out = NULL;
	FILE *f = NULL;

	memset(st, 0, sizeof(*st));
	tmp[0] = '\0';
	if (strpbrk(project, "\"\\\n"))
		return kiln_fail(e, KILN_E_INVALID, "artifacts: project folder '%s' cannot be quoted for debugfs", project);
	if (!find_debugfs(debugfs, sizeof(debugfs)))
		return kiln_fail(e, KILN_E_NOTFOUND,
				 "artifacts: debugfs not found in PATH, /usr/sbin or /sbin: install e2fsprogs");
	if (kiln_rm_rf(dest) < 0)
		return kiln_fail_errno(e, "artifacts: removing %s", dest);
	if (!a->n_paths && !a->untracked)
		return KILN_OK;
	if (kiln_mkdir_p(tmp_dir) < 0)
		return kiln_fail_errno(e, "artifacts: %s", tmp_dir);
	if (snprintf(tmp, sizeof(tmp), "%s/art-XXXXXX", tmp_dir) >= (int)sizeof(tmp) || !mkdtemp(tmp)) {
		tmp[0] = '\0';
		return kiln_fail_errno(e, "artifacts: a temporary folder in %s", tmp_dir);
	}
	snprintf(cmds, sizeof(cmds), "%s/cmds", tmp);
	snprintf(root, sizeof(root), "%s/%s", tmp, base ? base + 1 : project);
	snprintf(index, sizeof(index), "%s/git-index", tmp);
	if (!(out = malloc(DEBUGFS_OUTPUT_MAX))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	if (whole && (rc = list_top(debugfs, image, project, &top, e)))
		goto out;
	if (!(f = fopen(cmds, "we"))) {
		rc = kiln_fail_errno(e, "artifacts: %s", cmds);
		goto out;
	}
	rc = write_commands(f, project, root, a, whole ? &top : NULL, e);
	/* git ls-files -o: what the checkout's index does not list. */
	if (a->untracked)
		fprintf(f, "dump \"/%s/.git/index\" \"%s\"\n", project, index);
	if (fclose(f) != 0 && !rc)
		rc = kiln_fail_errno(e, "artifacts: writing %s", cmds);
	if (rc)
		goto out;
	{
		char *argv[] = { debugfs, "-f", cmds, (char *)image, NULL };

		if ((rc = run_quiet(argv, out, DEBUGFS_OUTPUT_MAX, e)) && e) {
			size_t n = strlen(e->msg);
			char *last = strrchr(out, '\n');

			while (last && last > out && !last[1]) {
				*last = '\0';
				last = strrchr(out, '\n');
			}
			snprintf(e->msg + n, sizeof(e->msg) - n, " (reading %s: %.200s)", image, last ? last + 1 : out);
		}
		if (rc)
			goto out;
	}
	if (a->untracked && (rc = tracked_load(&tracked, index, e)))
		goto out;
	if (access(root, F_OK) < 0)
		goto out; /* nothing of it exists */
	rc = fstree_copy(root, dest, want_cb, &sel, st, e);
	if (!rc && !st->files)
		rmdir(dest);
out:
	tracked_free(&tracked);
	free(top.names);
	free(out);
	if (tmp[0])
		kiln_rm_rf(tmp);
	return rc;
}
