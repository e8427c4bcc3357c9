#include "localci/rules.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* ---- globs ------------------------------------------------------------ */

#define GLOB_MAX_STEPS 200000
#define GLOB_MAX_ALTS 64

/* One bracket expression at p (just after '['), against c; *end is set
 * after its ']'. -1 for a malformed bracket (no ']'). */
static int bracket(const char *p, char c, const char **end)
{
	bool neg = false, hit = false;

	if (*p == '!' || *p == '^') {
		neg = true;
		p++;
	}
	if (*p == ']') {
		hit = c == ']';
		p++;
	}
	while (*p && *p != ']') {
		char lo = *p, hi;

		if (lo == '\\' && p[1])
			lo = *++p;
		hi = lo;
		if (p[1] == '-' && p[2] && p[2] != ']') {
			hi = p[2];
			if (hi == '\\' && p[3])
				hi = p[3], p++;
			p += 2;
		}
		if (c >= lo && c <= hi)
			hit = true;
		p++;
	}
	if (*p != ']')
		return -1;
	*end = p + 1;
	return hit != neg;
}

static bool glob_rec(const char *p, const char *s, bool seg_start, long *steps)
{
	while (*p) {
		if (--*steps < 0)
			return false;
		if (p[0] == '*' && p[1] == '*' && p[2] == '/' && seg_start) {
			/* zero or more whole directories */
			const char *q = s;

			for (;;) {
				if (glob_rec(p + 3, q, true, steps))
					return true;
				q = strchr(q, '/');
				if (!q)
					return false;
				q++;
			}
		}
		if (*p == '*') {
			while (*p == '*')
				p++;
			for (;;) {
				if (glob_rec(p, s, false, steps))
					return true;
				if (!*s || *s == '/')
					return false;
				s++;
			}
		}
		if (*p == '?') {
			if (!*s || *s == '/')
				return false;
			p++, s++;
		} else if (*p == '[') {
			const char *end;
			int r;

			if (!*s || *s == '/')
				return false;
			r = bracket(p + 1, *s, &end);
			if (r < 0) { /* no ']': a literal '[' */
				if (*s != '[')
					return false;
				p++, s++;
			} else if (!r) {
				return false;
			} else {
				p = end;
				s++;
			}
		} else {
			if (*p == '\\' && p[1])
				p++;
			if (*p != *s)
				return false;
			p++, s++;
		}
		seg_start = p[-1] == '/';
	}
	return !*s;
}

/* Expand the first {a,b} of pattern into out[]; recursive, bounded. */
static int brace_expand(const char *pat, char **out, int n, int max)
{
	const char *open = NULL, *close = NULL, *p, *start;
	int depth = 0;

	for (p = pat; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
		} else if (*p == '{') {
			if (!depth++)
				open = p;
		} else if (*p == '}' && depth && !--depth) {
			close = p;
			break;
		}
	}
	if (!open || !close) {
		if (n >= max)
			return -1;
		if (!(out[n] = strdup(pat)))
			return -1;
		return n + 1;
	}
	start = open + 1;
	depth = 0;
	for (p = start; p <= close; p++) {
		if (*p == '\\' && p[1] && p < close) {
			p++;
			continue;
		}
		if (*p == '{')
			depth++;
		else if (*p == '}' && depth)
			depth--;
		else if ((*p == ',' && !depth) || p == close) {
			size_t pre = (size_t)(open - pat), alt = (size_t)(p - start), post = strlen(close + 1);
			char *one = malloc(pre + alt + post + 1);

			if (!one)
				return -1;
			memcpy(one, pat, pre);
			memcpy(one + pre, start, alt);
			memcpy(one + pre + alt, close + 1, post + 1);
			n = brace_expand(one, out, n, max);
			free(one);
			if (n < 0)
				return -1;
			start = p + 1;
		}
	}
	return n;
}

static void free_alts(char **alts, int n)
{
	while (n-- > 0)
		free(alts[n]);
}

bool cirules_glob_match(const char *pattern, const char *path)
{
	char *alts[GLOB_MAX_ALTS];
	int n, i;
	bool hit = false;

	if (strlen(pattern) > CIRULES_MAX_PATTERN)
		return false;
	n = brace_expand(pattern, alts, 0, GLOB_MAX_ALTS);
	if (n < 0)
		return false;
	for (i = 0; i < n && !hit; i++) {
		long steps = GLOB_MAX_STEPS;

		hit = glob_rec(alts[i], path, true, &steps);
	}
	free_alts(alts, n);
	return hit;
}

struct walk {
	char **alts;
	int n_alts;
	size_t seen;
	bool found;
};

static enum kiln_rc walk_dir(struct walk *w, int fd0, char *rel, size_t rel_len, int depth, struct kiln_err *e)
{
	DIR *d;
	struct dirent *de;
	enum kiln_rc rc = KILN_OK;
	int i;

	if (depth > 64)
		return KILN_OK;
	d = fdopendir(fd0);
	if (!d) {
		close(fd0);
		return kiln_fail_errno(e, "exists: %s", rel_len ? rel : ".");
	}
	while (!w->found && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		bool is_dir;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, ".git"))
			continue;
		if (++w->seen > CIRULES_EXISTS_MAX_FILES) {
			w->found = true; /* GitLab: too many to check, the rule holds */
			break;
		}
		if (rel_len + n + 2 > PATH_MAX)
			continue;
		if (rel_len)
			rel[rel_len] = '/';
		memcpy(rel + rel_len + (rel_len ? 1 : 0), de->d_name, n + 1);
		for (i = 0; i < w->n_alts && !w->found; i++) {
			long steps = GLOB_MAX_STEPS;

			w->found = glob_rec(w->alts[i], rel, true, &steps);
		}
		is_dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;

			is_dir = !fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode);
		}
		if (!w->found && is_dir) {
			int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd >= 0)
				rc = walk_dir(w, fd, rel, rel_len + (rel_len ? 1 : 0) + n, depth + 1, e);
			if (rc)
				break;
		}
		rel[rel_len] = '\0';
	}
	closedir(d);
	return rc;
}

enum kiln_rc cirules_exists_in(const char *root, const char *pattern, bool *found, struct kiln_err *e)
{
	char path[PATH_MAX], rel[PATH_MAX];
	char *alts[GLOB_MAX_ALTS];
	struct walk w = { 0 };
	enum kiln_rc rc;
	int fd;

	*found = false;
	while (!strncmp(pattern, "./", 2))
		pattern += 2;
	while (*pattern == '/')
		pattern++;
	if (strlen(pattern) > CIRULES_MAX_PATTERN)
		return kiln_fail(e, KILN_E_LIMIT, "exists: pattern longer than %d bytes", CIRULES_MAX_PATTERN);
	if (!*pattern || !strcmp(pattern, "..") || !strncmp(pattern, "../", 3) || strstr(pattern, "/../") ||
	    (strlen(pattern) >= 3 && !strcmp(pattern + strlen(pattern) - 3, "/..")))
		return KILN_OK; /* nothing outside the repository matches */
	if (!strpbrk(pattern, "*?[{\\")) {
		struct stat st;

		if (snprintf(path, sizeof(path), "%s/%s", root, pattern) >= (int)sizeof(path))
			return KILN_OK;
		*found = lstat(path, &st) == 0;
		return KILN_OK;
	}
	w.n_alts = brace_expand(pattern, alts, 0, GLOB_MAX_ALTS);
	if (w.n_alts < 0)
		return kiln_fail(e, KILN_E_LIMIT, "exists: '%s' expands to more than %d patterns", pattern,
				 GLOB_MAX_ALTS);
	w.alts = alts;
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		free_alts(alts, w.n_alts);
		return kiln_fail_errno(e, "exists: %s", root);
	}
	rel[0] = '\0';
	rc = walk_dir(&w, fd, rel, 0, 0, e);
	free_alts(alts, w.n_alts);
	*found = w.found;
	return rc;
}

/* ---- one rule --------------------------------------------------------- */

static enum kiln_rc fail_node(const struct cirules_env *env, const struct cy_node *n, struct kiln_err *e,
			      enum kiln_rc rc, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum kiln_rc fail_node(const struct cirules_env *env, const struct cy_node *n, struct kiln_err *e,
			      enum kiln_rc rc, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(e, rc, "%s:%u: %s: %s", n->file, n->line, env->what, what);
}

static void warn_node(const struct cirules_env *env, const struct cy_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn_node(const struct cirules_env *env, const struct cy_node *n, const char *fmt, ...)
{
	char what[400], msg[600];
	va_list ap;

	if (!env->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%u: %s: %s", n->file, n->line, env->what, what);
	env->warn(env->warn_arg, msg);
}

/* s with $VAR and ${VAR} of defined variables replaced and the others
 * kept, into out (size outsz); -1 when it does not fit. */
static int expand_pattern(const char *s, cirules_lookup_fn lookup, void *arg, char *out, size_t outsz)
{
	size_t o = 0;

	while (*s) {
		const char *name = NULL, *val, *next = s + 1;
		size_t len = 0;

		if (s[0] == '$' && s[1] == '{') {
			for (len = 0; name_char(s[2 + len]); len++)
				;
			if (len && s[2 + len] == '}')
				name = s + 2, next = s + 3 + len;
		} else if (s[0] == '$') {
			for (len = 0; name_char(s[1 + len]); len++)
				;
			if (len)
				name = s + 1, next = s + 1 + len;
		}
		if (name) {
			char key[256];

			snprintf(key, sizeof(key), "%.*s", (int)len, name);
			val = lookup ? lookup(arg, key) : NULL;
			if (val) {
				size_t vl = strlen(val);

				if (o + vl >= outsz)
					return -1;
				memcpy(out + o, val, vl);
				o += vl;
				s = next;
				continue;
			}
		}
		if (o + 1 >= outsz)
			return -1;
		out[o++] = *s++;
	}
	out[o] = '\0';
	return 0;
}

/* Whether one exists: pattern node (a string, possibly in nested lists)
 * matches; *found accumulates. */
static enum kiln_rc exists_patterns(const struct cirules_env *env, const struct cy_node *n, int depth,
				    bool *found, struct kiln_err *e)
{
	char pat[CIRULES_MAX_PATTERN + 1];
	enum kiln_rc rc;
	size_t i;

	if (*found || n->kind == CY_NULL)
		return KILN_OK;
	if (n->kind == CY_SEQ) {
		if (depth > 10)
			return fail_node(env, n, e, KILN_E_INVALID, "%s", "rules:exists: lists nested too deep");
		for (i = 0; i < n->n && !*found; i++)
			if ((rc = exists_patterns(env, n->items[i], depth + 1, found, e)))
				return rc;
		return KILN_OK;
	}
	if (n->kind != CY_SCALAR)
		return fail_node(env, n, e, KILN_E_INVALID, "rules:exists: expected a path or a list of paths, got %s",
				 cy_kind_name(n));
	if (expand_pattern(n->str, env->lookup, env->lookup_arg, pat, sizeof(pat)))
		return fail_node(env, n, e, KILN_E_LIMIT, "rules:exists: pattern longer than %d bytes",
				 CIRULES_MAX_PATTERN);
	if (!env->exists)
		return fail_node(env, n, e, KILN_E_INVALID, "%s", "rules:exists: no repository to look in");
	rc = env->exists(env->exists_arg, pat, found, e);
	if (rc)
		return fail_node(env, n, e, rc, "rules:exists: %s", e ? e->msg : "failed");
	return KILN_OK;
}

enum kiln_rc cirules_match(const struct cirules_env *env, const struct cy_node *rule, bool *match,
			   struct kiln_err *e)
{
	const struct cy_node *n;
	enum kiln_rc rc;
	size_t i;

	*match = false;
	if (rule->kind != CY_MAP)
		return fail_node(env, rule, e, KILN_E_INVALID, "rules: each rule must be a mapping, got %s",
				 cy_kind_name(rule));
	n = cy_get(rule, "if");
	if (n && n->kind != CY_NULL) {
		char msg[sizeof(e->msg)];
		bool ok;

		if (n->kind != CY_SCALAR)
			return fail_node(env, n, e, KILN_E_INVALID, "rules:if: expected a string, got %s",
					 cy_kind_name(n));
		rc = cirules_eval(n->str, env->lookup, env->lookup_arg, &ok, e);
		if (rc) {
			snprintf(msg, sizeof(msg), "%s", e ? e->msg : "invalid");
			return fail_node(env, n, e, rc, "rules:if: %s: %s", n->str, msg);
		}
		if (!ok)
			return KILN_OK;
	}
	n = cy_get(rule, "changes");
	if (n)
		warn_node(env, n, "%s", "rules:changes needs a diff kiln does not have (taken as true)");
	n = cy_get(rule, "exists");
	if (n) {
		const struct cy_node *paths = n;
		bool found = false;

		if (n->kind == CY_MAP) {
			paths = cy_get(n, "paths");
			for (i = 0; i < n->n; i++)
				if (strcmp(n->pairs[i].key, "paths"))
					warn_node(env, n->pairs[i].knode,
						  "rules:exists:%s is not supported by kiln (ignored; the paths are "
						  "looked up in this repository)", n->pairs[i].key);
			if (!paths)
				return fail_node(env, n, e, KILN_E_INVALID, "%s", "rules:exists: missing key 'paths'");
		}
		if ((rc = exists_patterns(env, paths, 0, &found, e)))
			return rc;
		if (!found)
			return KILN_OK;
	}
	*match = true;
	return KILN_OK;
}
