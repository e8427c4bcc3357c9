/* Job artifacts for `kiln exec`: taken from a finished job's workspace
 * image (ext4) without mounting it, kept under <repo>/.kiln/artifacts/<job>/
 * and laid into the workspaces of later jobs (ws_spec.extra_dirs).
 *
 * Paths and exclude patterns are GitLab's (doublestar globs, relative to
 * the project folder): `*` and `?` and `[...]` within one path component,
 * `**` as a whole component for any number of components (none included).
 * A path that matches a folder takes everything below it; an exclude
 * pattern takes out only the entries it matches itself (GitLab: "exclude
 * paths are not recursive"). A leading "./", "$CI_PROJECT_DIR/" already
 * expanded to /builds/<project>/, and trailing slashes are dropped. The
 * checkout's .git folder is never an artifact: it would replace the next
 * job's own.
 *
 * With untracked (GitLab's artifacts:untracked and cache:untracked), every
 * file that the checkout's git index does not list is taken as well (`git
 * ls-files -o`: ignored files included; files inside a submodule belong to
 * it); exclude patterns apply to those too.
 *
 * The image was written by the job, which may have rewritten its blocks:
 * kiln never parses it. workspace/guestdisk/diskread.h runs a jailed reader
 * (kiln-diskread) that walks the image and sends what the spec selects as
 * a tar stream, which kiln checks entry by entry while reading; its
 * artifacts_collect is the call the job code makes. This file is only the
 * selection, which that reader links too. */
#ifndef KILN_ARTIFACTS_H
#define KILN_ARTIFACTS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define ARTIFACTS_MAX_PATTERNS 256
#define ARTIFACTS_MAX_TRACKED 10000000u /* entries of a checkout's git index */
#define ARTIFACTS_MAX_FILES 1000000u /* files and links taken */
#define ARTIFACTS_MAX_BYTES (16ULL << 30) /* their bytes */

struct artifacts_spec {
	const char *const *paths;     /* artifacts:paths, variables expanded */
	size_t n_paths;
	const char *const *exclude;   /* artifacts:exclude, variables expanded */
	size_t n_exclude;
	const char *project_dir;      /* the job's CI_PROJECT_DIR, for absolute paths; may be NULL */
	bool untracked;               /* artifacts:untracked: also every file git does not track */
};

/* Whether path ("a/b/c.txt") matches the doublestar glob pattern. */
bool artifacts_glob(const char *pattern, const char *path);

/* Whether the entry rel (relative to the project folder) is an artifact of
 * a: some path pattern matches it or one of its folders, no exclude
 * pattern matches it, and it is not in .git. */
bool artifacts_selected(const struct artifacts_spec *a, const char *rel);

/* Normalise one pattern into buf (size bytes): "./" and trailing '/'
 * dropped, project_dir/ stripped. false when it cannot match anything in
 * the project (absolute elsewhere, "..", empty, or a '"' or '\\' that the
 * extraction cannot quote). */
bool artifacts_normalize(const char *pattern, const char *project_dir, char *buf, size_t size);

/* The paths a checkout's git index lists, sorted (artifacts:untracked). */
struct artifacts_tracked {
	char **paths;
	size_t n;
};

/* Load t from the git index file at path (libgit2). Only kiln-diskread
 * calls it: the index is guest-written. */
enum kiln_rc artifacts_tracked_load(struct artifacts_tracked *t, const char *path, struct kiln_err *e);
void artifacts_tracked_free(struct artifacts_tracked *t);

/* Whether the file rel is taken: artifacts_selected, or with untracked a
 * file that t (NULL: none) does not list, itself or by a folder above it. */
bool artifacts_wanted(const struct artifacts_spec *a, const struct artifacts_tracked *t, const char *rel);

/* Whether the folder rel may hold something a selects (a walk skips it
 * when not): a path pattern's literal leading folders lead to it or into
 * it, or one starts with a wildcard, or untracked is set. */
bool artifacts_may_hold(const struct artifacts_spec *a, const char *rel);

#endif
