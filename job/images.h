/* Guest images: building them from recipes (images/recipes/NAME), caching
 * them by the hash of their inputs, and finding their files. See
 * docs/images.md for the recipe contract. */
#ifndef KILN_IMAGES_H
#define KILN_IMAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "job/manifest.h"
#include "lib/result.h"

struct images_ctx {
	const char *images_dir;   /* built images, one folder each */
	const char *cache_dir;    /* recipes' download and build cache */
	const char *recipes_dir;  /* folder of recipe scripts */
	const char *agent_path;   /* static kiln-agent for rootfs recipes */
	const char *runner_tarball; /* github-runner's runner (KILN_RUNNER_TARBALL), or NULL */
};

/* Fill ctx from the config's folders and kiln's data and libexec folders;
 * the strings point into static storage or cfg. */
struct kiln_config;
void images_ctx_init(struct images_ctx *ctx, const struct kiln_config *cfg);

/* The names of all recipes, sorted, in names (caller frees each and the
 * array); *n gets the count. KILN_E_LIMIT past IMAGES_MAX_RECIPES. */
#define IMAGES_MAX_RECIPES 4096
enum kiln_rc images_recipes(const struct images_ctx *ctx, char ***names, size_t *n,
			    struct kiln_err *e);

/* Run the recipe's `inputs` and hash them (recipe script included): lines
 * go to *lines (caller frees), the hex hash to sha. */
enum kiln_rc images_inputs(const struct images_ctx *ctx, const char *name, char **lines,
			   char sha[65], struct kiln_err *e);

/* Build name unless a manifest with the same inputs hash and intact files
 * exists (force rebuilds anyway). *rebuilt tells which happened. */
enum kiln_rc images_build(const struct images_ctx *ctx, const char *name, bool force, bool *rebuilt,
			  struct kiln_err *e);

/* Load name's manifest. */
enum kiln_rc images_manifest(const struct images_ctx *ctx, const char *name, struct manifest *m,
			     struct kiln_err *e);

/* Path of file in built image name, checked to exist and to be listed in
 * its manifest. */
enum kiln_rc images_file(const struct images_ctx *ctx, const char *name, const char *file, char *buf,
			 size_t size, struct kiln_err *e);

/* Versions: images_dir/NAME is a symlink to images_dir/IMAGES_VERSIONS/
 * NAME@XXXXXX, the folder one build wrote. A rebuild writes a new version
 * and swaps the link (rename: atomic); images_file gives paths inside the
 * version, so a job keeps the files it started with. */
#define IMAGES_VERSIONS ".v"

/* Hold the version folder of path (an images_file path) against removal:
 * a shared flock on it in *fd, which the caller closes when the job is
 * done. KILN_E_NOTFOUND when it went away meanwhile (resolve again). */
enum kiln_rc images_hold(const char *path, int *fd, struct kiln_err *e);

/* Remove name's versions other than the current one that nobody holds. */
void images_prune_versions(const struct images_ctx *ctx, const char *name);

/* Whether the built image m is older than the Debian packages it was built
 * from, by the host's apt lists in lists_dir (what the archive publishes,
 * as of the host's last apt-get update; NULL: /var/lib/apt/lists):
 *  - a "package NAME VERSION" input (the kernel, busybox) whose apt
 *    candidate (apt-cache policy) is newer (dpkg --compare-versions);
 *  - an image debootstrapped from a mirror ("param suite S"): an archive
 *    of S (S, S-updates, S-security) whose Release Date is after m->built,
 *    so Debian published packages (security updates) it lacks.
 * 1 stale (why says which), 0 not, -1 unknown (no apt lists; why says). */
int images_debian_stale(const struct manifest *m, const char *lists_dir, char *why, size_t size);

/* Check that name is a safe image name: [a-z0-9][a-z0-9._-]{0,63}. */
bool images_valid_name(const char *name);

#endif
