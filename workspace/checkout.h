/* The steps of a workspace between the mirror and the image: the checkout
 * (full or shallow), submodules and the overlay of a dirty working tree.
 * Callers initialise libgit2 (ws_prepare does). */
#ifndef KILN_WSCHECKOUT_H
#define KILN_WSCHECKOUT_H

#include <stdbool.h>
#include <stddef.h>

#include <git2.h>

#include "workspace/mirror.h"
#include "workspace/strategy.h"
#include "lib/result.h"

#define WSCO_MAX_REFS 1000000
#define WSCO_MAX_SHALLOW_OBJECTS 50000000
#define WSCO_MAX_OVERLAY_FILES 1000000
#define WSCO_MAX_OVERLAY_BYTES (64ULL << 30)

struct wsco_opts {
	git_repository *mirror;      /* locked, holds commit */
	const char *workdir;         /* the new working tree (must not exist yet) */
	const char *origin_url;      /* redacted */
	const git_oid *commit;
	const char *const *refspecs; /* the job's refspecs (origin's fetch specs) */
	size_t n_refspecs;
	unsigned depth;              /* 0: full */
	/* workdir holds what an earlier wsco_checkout left there (nothing else
	 * wrote to it): its .git is made anew around the old index, and the
	 * checkout writes and deletes only the files that differ. */
	bool reuse;
	bool no_checkout;            /* GIT_CHECKOUT=false: .git and HEAD only, no files */
};

/* Make a repository at o->workdir (which must not exist yet, unless
 * o->reuse) with its .git inside: objects copied from
 * the mirror (hard links where possible; with depth > 0 a new pack of the
 * objects of the last depth commits, and .git/shallow naming the boundary),
 * packed-refs holding the mirror refs that the refspecs' destinations match
 * (and the destinations of "<sha>:<ref>" refspecs), remote origin, HEAD
 * detached at o->commit, and the working tree and index checked out. */
enum kiln_rc wsco_checkout(const struct wsco_opts *o, struct kiln_err *e);

/* Check out the submodules recorded in the HEAD of the repository at
 * workdir, recursively (at most WS_MAX_SUBMODULE_NESTING levels and
 * WS_MAX_SUBMODULES in all). Each submodule's URL (relative ones resolved
 * against the parent's) gets its own mirror, made with base's state folder
 * and limits; http(s) URLs on the parent's host get the parent's
 * credentials. The submodule's config and .git/config keep redacted URLs.
 * *count gets the number checked out. */
enum kiln_rc wsco_submodules(const char *workdir, const struct ws_url *parent,
			     const struct mirror_opts *base, unsigned *count, struct kiln_err *e);

/* wsco_submodules as git's options g say (NULL: all, recursively): only
 * the top-level submodules that g's paths select, nested ones only with
 * the recursive strategy, shallow with g->submodule_depth (the submodule's
 * .git is then a folder inside it), at its branch's tip with
 * g->submodule_remote (.gitmodules' branch, else the remote's HEAD). */
enum kiln_rc wsco_submodules_opts(const char *workdir, const struct ws_url *parent,
				  const struct mirror_opts *base, const struct ws_gitopts *g,
				  unsigned *count, struct kiln_err *e);

/* Lay the changes of the working tree dirty_dir (the top of a non-bare
 * repository) over workdir: files that are modified, staged or untracked and
 * not ignored are copied (symbolic links as links, the executable bit kept),
 * files deleted there are deleted. Nothing is written outside workdir, even
 * through symbolic links in it. *count gets the number of paths handled. */
enum kiln_rc wsco_overlay(const char *dirty_dir, const char *workdir, unsigned *count,
			  struct kiln_err *e);

#endif
