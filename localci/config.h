/* The GitLab CI configuration as one mapping, in GitLab's order of
 * processing (Gitlab::Ci::Config#build_config): include, then extends,
 * then !reference.
 *
 * include (only `local` files can be read here):
 *  - forms: `include: path`, `include: [path, {local: path}, ...]`,
 *    `include: {local: path}`; paths are relative to the repository root
 *    (a leading '/' is allowed), must end in .yml or .yaml, must stay inside
 *    the repository, and may be globs (with * ? [...] {a,b} and **; the
 *    matching files are included in sorted order);
 *  - a string starting with http:// or https:// is include:remote;
 *    remote, template, project, component and artifact includes are skipped
 *    with one warning each; `inputs` is warned about;
 *  - `rules` of an include entry are honoured (if, exists; when: never);
 *  - included files are merged in order with GitLab's deep merge, then the
 *    including file's own keys are merged over them; included files may
 *    include files themselves, up to CICONFIG_MAX_INCLUDE_DEPTH levels and
 *    CICONFIG_MAX_INCLUDES files in all; a file that includes one of its
 *    own includers is an error (GitLab only limits depth); the same file
 *    included twice elsewhere is merged twice (to the same effect).
 * extends (every top-level mapping that has it but keywords, hidden jobs
 *    included):
 *    a string or a list of names of top-level mappings; parents are deep
 *    merged in order, then the entry's own keys over them (mappings merged,
 *    lists and scalars replaced); up to 11 levels of extends below an entry;
 *    cycles and unknown names are errors naming the entry.
 * !reference [name, key, ...]: replaced by the value at that path of the
 *    extended configuration; references inside it are resolved too (up to
 *    CICONFIG_MAX_REFERENCE_DEPTH levels); a cycle is an error.
 */
#ifndef KILN_CICONFIG_H
#define KILN_CICONFIG_H

#include "localci/rules.h"
#include "lib/yaml.h"
#include "lib/result.h"

#define CICONFIG_MAX_INCLUDE_DEPTH 100
#define CICONFIG_MAX_INCLUDES 150
#define CICONFIG_MAX_EXTENDS 11
#define CICONFIG_MAX_REFERENCE_DEPTH 10

struct ciconfig_ctx {
	struct cy_arena *a;
	const char *repo_dir;
	ci_warn_fn warn;           /* may be NULL */
	void *warn_arg;
	/* For include:rules: variables (predefined and pipeline ones) and
	 * the repository's files. */
	cirules_lookup_fn lookup;
	void *lookup_arg;
	cirules_exists_fn exists;
	void *exists_arg;
};

/* Whether key is a top-level keyword (stages, variables, default, ...)
 * rather than a job or hidden job. */
bool ciconfig_is_keyword(const char *key);

/* Load file (relative to c->repo_dir) and everything it includes into
 * *root, a mapping without `include`. Errors name FILE:LINE. */
enum kiln_rc ciconfig_include(const struct ciconfig_ctx *c, const char *file, struct cy_node **root,
			      struct kiln_err *e);
/* A new root where every top-level entry with `extends` is extended (the
 * key itself removed). */
enum kiln_rc ciconfig_extends(const struct ciconfig_ctx *c, const struct cy_node *root, struct cy_node **out,
			      struct kiln_err *e);
/* A new root without !reference nodes. */
enum kiln_rc ciconfig_references(const struct ciconfig_ctx *c, const struct cy_node *root, struct cy_node **out,
				 struct kiln_err *e);
/* The three above in order. */
enum kiln_rc ciconfig_load(const struct ciconfig_ctx *c, const char *file, struct cy_node **root,
			   struct kiln_err *e);

#endif
