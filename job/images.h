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

/* Check that name is a safe image name: [a-z0-9][a-z0-9._-]{0,63}. */
bool images_valid_name(const char *name);

#endif
