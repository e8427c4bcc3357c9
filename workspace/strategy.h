/* How the workspace gets the sources: gitlab-runner's GIT_* job variables
 * read into one struct that ws_prepare follows (workspace.h: ws_spec.git).
 *
 * kiln builds every job a fresh workspace image on the host, so
 * `clone` and `fetch` give the same result (the mirror is the fetch cache);
 * `empty` is an empty project folder; `none` does no git operation either,
 * and since there is no earlier build folder to leave as it is, the folder
 * is empty too (and has no .git).
 *
 * Accepted and ignored, because they act on state a fresh image has not:
 * GIT_CLEAN_FLAGS (nothing untracked to clean: the image holds exactly the
 * commit), GIT_FETCH_EXTRA_FLAGS (the mirror fetch is kiln's own; its
 * refspecs, depth and pruning come from the payload). Of
 * GIT_SUBMODULE_UPDATE_FLAGS, --remote and --depth N (also --depth=N) are
 * honoured; --init, --recursive, --force, --checkout, --jobs N and --quiet
 * do nothing (they are what kiln does anyway) and any other flag is refused
 * with a clear error. */
#ifndef KILN_WSSTRATEGY_H
#define KILN_WSSTRATEGY_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define WS_MAX_DEPTH 1000000u          /* GIT_DEPTH and the payload's depth */
#define WS_MAX_SUBMODULES 256
#define WS_MAX_SUBMODULE_NESTING 8
#define WSGIT_MAX_PATHSPECS 64
#define WSGIT_MAX_SPEC_LEN 4096

enum ws_git_strategy { WSGIT_CLONE, WSGIT_FETCH, WSGIT_NONE, WSGIT_EMPTY };
enum ws_sub_strategy { WSGIT_SUB_NONE, WSGIT_SUB_NORMAL, WSGIT_SUB_RECURSIVE };

struct ws_gitopts {
	enum ws_git_strategy strategy;  /* default clone */
	bool checkout;                  /* GIT_CHECKOUT; default true */
	int depth;                      /* GIT_DEPTH; -1 when not set, 0: full */
	enum ws_sub_strategy submodules; /* GIT_SUBMODULE_STRATEGY; default none */
	unsigned submodule_depth;       /* GIT_SUBMODULE_DEPTH or --depth; 0: full */
	bool submodule_remote;          /* --remote: the branch's tip, not the recorded commit */
	bool lfs;                       /* fetch LFS objects; false with GIT_LFS_SKIP_SMUDGE=1 */
	/* GIT_SUBMODULE_PATHS, split at spaces: "path" includes (with what
	 * is below it), ":(exclude)path" and ":!path" exclude. */
	char paths_buf[WSGIT_MAX_SPEC_LEN];
	const char *paths[WSGIT_MAX_PATHSPECS];
	size_t n_paths;
};

/* The value of job variable key, or NULL. */
typedef const char *(*ws_var_lookup)(void *ctx, const char *key);

/* Defaults: clone, checkout, depth unset, no submodules, LFS on. */
void ws_gitopts_init(struct ws_gitopts *o);

/* Read the GIT_* variables through get. An unknown strategy or flag, a bad
 * number or too many paths is KILN_E_INVALID naming the variable. */
enum kiln_rc ws_gitopts_read(struct ws_gitopts *o, ws_var_lookup get, void *ctx, struct kiln_err *e);

/* Whether the submodule at path (relative to the project) is selected by
 * o's GIT_SUBMODULE_PATHS: included by a spec (or there is no include spec)
 * and excluded by none. A spec matches the path itself, a folder above it,
 * or as a glob (fnmatch). */
bool ws_gitopts_path_selected(const struct ws_gitopts *o, const char *path);

#endif
