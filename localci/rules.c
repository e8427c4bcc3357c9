#include "localci/rules.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/glob.h"
#include "lib/treewalk.h"
#include "lib/varexpand.h"

/* ---- globs ------------------------------------------------------------ */

bool cirules_glob_match(const char *pattern, const char *path)
{
	if (strlen(pattern) > CIRULES_MAX_PATTERN)
		return false;
	return kiln_glob_match(pattern, path, KILN_GLOB_BRACES);
}

struct walk {
	char **alts;
	int n_alts;
	size_t seen;
	bool found;
};

static enum kiln_walk_step exists_one(void *arg, const char *rel, const struct stat *st)
{
	struct walk *w = arg;
	const char *name = strrchr(rel, '/');
	int i;

	(void)st;
	if (!strcmp(name ? name + 1 : rel, ".git"))
		return KILN_WALK_SKIP;
	if (++w->seen > CIRULES_EXISTS_MAX_FILES) {
		w->found = true; /* GitLab: too many to check, the rule holds */
		return KILN_WALK_STOP;
	}
	for (i = 0; i < w->n_alts && !w->found; i++)
		w->found = kiln_glob_match_one(w->alts[i], rel, 0);
	return w->found ? KILN_WALK_STOP : KILN_WALK_NEXT;
}

enum kiln_rc cirules_exists_in(const char *root, const char *pattern, bool *found, struct kiln_err *e)
{
	char path[PATH_MAX];
	char *alts[KILN_GLOB_MAX_ALTS];
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
	w.n_alts = kiln_glob_braces(pattern, alts, KILN_GLOB_MAX_ALTS);
	if (w.n_alts < 0)
		return kiln_fail(e, KILN_E_LIMIT, "exists: '%s' expands to more than %d patterns", pattern,
				 KILN_GLOB_MAX_ALTS);
	w.alts = alts;
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		kiln_glob_braces_free(alts, w.n_alts);
		return kiln_fail_errno(e, "exists: %s", root);
	}
	rc = kiln_treewalk(fd, CIRULES_EXISTS_MAX_DEPTH, exists_one, &w) ? kiln_fail_errno(e, "exists: %s", root)
									  : KILN_OK;
	kiln_glob_braces_free(alts, w.n_alts);
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
	struct var_names vn = { lookup, arg };
	char *p = NULL;
	size_t len = 0, cap = 0;
	enum kiln_rc rc;

	rc = var_expand_into(s, VAR_KEEP_UNDEFINED | VAR_NO_ESCAPE | VAR_DIGIT_FIRST, var_by_name, &vn, &p, &len,
			     &cap, outsz);
	if (!rc)
		memcpy(out, p, len + 1);
	free(p);
	return rc ? -1 : 0;
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
