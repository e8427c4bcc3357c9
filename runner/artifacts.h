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
 * Extraction runs `debugfs -f` (e2fsprogs) with one `rdump` per path's
 * literal leading folder (each entry of the project folder but .git when a
 * path starts with a wildcard or untracked is set, plus .git/index) into a
 * temporary folder, then copies what matches with runner/fstree.h. The image was written by the job: debugfs only reads it,
 * and the copy never follows links out of the destination. */
#ifndef KILN_ARTIFACTS_H
#define KILN_ARTIFACTS_H

#include <stdbool.h>
#include <stddef.h>

#include "runner/fstree.h"
#include "runner/result.h"

#define ARTIFACTS_MAX_PATTERNS 256
#define ARTIFACTS_MAX_COMPONENTS 64   /* of a path or pattern */
#define ARTIFACTS_MAX_TRACKED 10000000u /* entries of a checkout's git index */
#define ARTIFACTS_MAX_TOP 100000u     /* entries directly in the project folder */

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

/* Extract the artifacts a selects from the ext4 image (project: the
 * project folder inside it, "group/project") into dest, which is emptied
 * first (and removed again when nothing matched). tmp_dir is a folder for
 * the temporary extraction (removed afterwards). st gets what was copied. */
enum kiln_rc artifacts_collect(const char *image, const char *project, const struct artifacts_spec *a,
			       const char *tmp_dir, const char *dest, struct fstree_stats *st, struct kiln_err *e);

#endif
