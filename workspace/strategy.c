#include "workspace/strategy.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>


void ws_gitopts_init(struct ws_gitopts *o)
{
	memset(o, 0, sizeof(*o));
	o->strategy = WSGIT_CLONE;
	o->checkout = true;
	o->depth = -1;
	o->submodules = WSGIT_SUB_NONE;
	o->lfs = true;
}

/* A decimal number in [0, max]; -1 when s is not one. */
static long parse_num(const char *s, long max)
{
	char *end;
	long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	v = strtol(s, &end, 10);
	if (*end || v < 0 || v > max)
		return -1;
	return v;
}

static bool is_true(const char *v)
{
	return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes");
}

static bool is_false(const char *v)
{
	return !strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no");
}

/* GIT_SUBMODULE_UPDATE_FLAGS, one word at a time (see strategy.h). */
static enum kiln_rc update_flags(struct ws_gitopts *o, const char *v, struct kiln_err *e)
{
	static const char *const no_ops[] = { "--init", "--recursive", "--force", "--checkout", "--quiet",
					      "--no-fetch", "--progress", "--single-branch" };
	char buf[512], *save = NULL, *w;
	bool want_depth = false;
	size_t i;

	if (strlen(v) >= sizeof(buf))
		return kiln_fail(e, KILN_E_INVALID, "GIT_SUBMODULE_UPDATE_FLAGS: longer than %zu bytes",
				 sizeof(buf) - 1);
	strcpy(buf, v);
	for (w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		long n;

		if (want_depth || !strncmp(w, "--depth=", 8)) {
			n = parse_num(want_depth ? w : w + 8, WS_MAX_DEPTH);
			if (n < 0)
				return kiln_fail(e, KILN_E_INVALID,
						 "GIT_SUBMODULE_UPDATE_FLAGS: --depth '%.32s' is not a number", w);
			o->submodule_depth = (unsigned)n;
			want_depth = false;
			continue;
		}
		if (!strcmp(w, "--depth")) {
			want_depth = true;
			continue;
		}
		if (!strcmp(w, "--remote")) {
			o->submodule_remote = true;
			continue;
		}
		if (!strcmp(w, "--jobs") || !strcmp(w, "-j")) {
			w = strtok_r(NULL, " \t", &save);
			if (!w || parse_num(w, 1 << 20) < 0)
				return kiln_fail(e, KILN_E_INVALID, "GIT_SUBMODULE_UPDATE_FLAGS: --jobs wants a number");
			continue;
		}
		if (!strncmp(w, "--jobs=", 7))
			continue;
		for (i = 0; i < sizeof(no_ops) / sizeof(no_ops[0]); i++)
			if (!strcmp(w, no_ops[i]))
				break;
		if (i == sizeof(no_ops) / sizeof(no_ops[0]))
			return kiln_fail(e, KILN_E_INVALID,
					 "GIT_SUBMODULE_UPDATE_FLAGS: '%.64s' is not supported (kiln takes --remote and --depth N)",
					 w);
	}
	if (want_depth)
		return kiln_fail(e, KILN_E_INVALID, "GIT_SUBMODULE_UPDATE_FLAGS: --depth wants a number");
	return KILN_OK;
}

enum kiln_rc ws_gitopts_read(struct ws_gitopts *o, ws_var_lookup get, void *ctx, struct kiln_err *e)
{
	const char *v;
	long n;

	if ((v = get(ctx, "GIT_STRATEGY")) && *v) {
		if (!strcmp(v, "clone"))
			o->strategy = WSGIT_CLONE;
		else if (!strcmp(v, "fetch"))
			o->strategy = WSGIT_FETCH;
		else if (!strcmp(v, "none"))
			o->strategy = WSGIT_NONE;
		else if (!strcmp(v, "empty"))
			o->strategy = WSGIT_EMPTY;
		else
			return kiln_fail(e, KILN_E_INVALID,
					 "GIT_STRATEGY: '%.64s' is not clone, fetch, none or empty", v);
	}
	if ((v = get(ctx, "GIT_CHECKOUT")) && *v) {
		if (!is_true(v) && !is_false(v))
			return kiln_fail(e, KILN_E_INVALID, "GIT_CHECKOUT: '%.64s' is not true or false", v);
		o->checkout = is_true(v);
	}
	if ((v = get(ctx, "GIT_DEPTH")) && *v) {
		if ((n = parse_num(v, WS_MAX_DEPTH)) < 0)
			return kiln_fail(e, KILN_E_INVALID, "GIT_DEPTH: '%.64s' is not a number up to %u", v,
					 WS_MAX_DEPTH);
		o->depth = (int)n;
	}
	if ((v = get(ctx, "GIT_SUBMODULE_STRATEGY")) && *v) {
		if (!strcmp(v, "none"))
			o->submodules = WSGIT_SUB_NONE;
		else if (!strcmp(v, "normal"))
			o->submodules = WSGIT_SUB_NORMAL;
		else if (!strcmp(v, "recursive"))
			o->submodules = WSGIT_SUB_RECURSIVE;
		else
			return kiln_fail(e, KILN_E_INVALID,
					 "GIT_SUBMODULE_STRATEGY: '%.64s' is not none, normal or recursive", v);
	}
	if ((v = get(ctx, "GIT_SUBMODULE_DEPTH")) && *v) {
		if ((n = parse_num(v, WS_MAX_DEPTH)) < 0)
			return kiln_fail(e, KILN_E_INVALID, "GIT_SUBMODULE_DEPTH: '%.64s' is not a number", v);
		o->submodule_depth = (unsigned)n;
	}
	/* The flags come after GIT_SUBMODULE_DEPTH as gitlab-runner puts
	 * them after its --depth: the last one wins. */
	if ((v = get(ctx, "GIT_SUBMODULE_UPDATE_FLAGS")) && *v) {
		enum kiln_rc rc = update_flags(o, v, e);

		if (rc)
			return rc;
	}
	if ((v = get(ctx, "GIT_SUBMODULE_PATHS")) && *v) {
		char *save = NULL, *w;

		if (strlen(v) >= sizeof(o->paths_buf))
			return kiln_fail(e, KILN_E_INVALID, "GIT_SUBMODULE_PATHS: longer than %zu bytes",
					 sizeof(o->paths_buf) - 1);
		strcpy(o->paths_buf, v);
		o->n_paths = 0;
		for (w = strtok_r(o->paths_buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
			if (o->n_paths == WSGIT_MAX_PATHSPECS)
				return kiln_fail(e, KILN_E_INVALID, "GIT_SUBMODULE_PATHS: more than %d paths",
						 WSGIT_MAX_PATHSPECS);
			o->paths[o->n_paths++] = w;
		}
	}
	if ((v = get(ctx, "GIT_LFS_SKIP_SMUDGE")) && *v)
		o->lfs = !is_true(v);
	/* GIT_CLEAN_FLAGS and GIT_FETCH_EXTRA_FLAGS: accepted, nothing to do
	 * on a fresh image (strategy.h). */
	return KILN_OK;
}

/* The pattern of an exclude spec, or NULL for an include one. */
static const char *excluded_pattern(const char *spec)
{
	if (!strncmp(spec, ":(exclude)", 10))
		return spec + 10;
	if (!strncmp(spec, ":!", 2) || !strncmp(spec, ":^", 2))
		return spec + 2;
	return NULL;
}

static bool spec_matches(const char *pat, const char *path)
{
	size_t n = strlen(pat);

	while (n > 0 && pat[n - 1] == '/')
		n--;
	if (n == 0 || (n == 1 && pat[0] == '.'))
		return true;
	if (!strncmp(pat, path, n) && (path[n] == '\0' || path[n] == '/'))
		return true;
	return fnmatch(pat, path, 0) == 0;
}

bool ws_gitopts_path_selected(const struct ws_gitopts *o, const char *path)
{
	bool any_include = false, included = false;
	size_t i;

	for (i = 0; i < o->n_paths; i++) {
		const char *ex = excluded_pattern(o->paths[i]);

		if (ex) {
			if (spec_matches(ex, path))
				return false;
		} else {
			any_include = true;
			if (spec_matches(o->paths[i], path))
				included = true;
		}
	}
	return !any_include || included;
}
