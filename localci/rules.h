/* GitLab CI `rules`: `exists:` globs and the matching of one rule's
 * clauses; the `if:` expressions are localci/expr.h's.
 *
 * Globs (`exists`) follow Ruby's File.fnmatch with PATHNAME, DOTMATCH and
 * EXTGLOB as GitLab uses it: * and ? stop at '/', [...] and [!...], {a,b},
 * `**` followed by '/' matches any number of directories, and a leading
 * dot is matched like any character.
 */
#ifndef KILN_CIRULES_H
#define KILN_CIRULES_H

#include <stdbool.h>
#include <stddef.h>

#include "localci/expr.h"
#include "lib/yaml.h"
#include "lib/result.h"

#define CIRULES_MAX_PATTERN 1024     /* bytes of one exists: pattern */
#define CIRULES_EXISTS_MAX_FILES 10000 /* GitLab's cap: past it, exists holds */
#define CIRULES_EXISTS_MAX_DEPTH 64    /* folders deeper down are not looked into */

/* Whether path (repository-relative, '/'-separated) matches the glob. */
bool cirules_glob_match(const char *pattern, const char *path);

/* Whether a file or directory under root matches the repository-relative
 * pattern (a leading "/" or "./" is dropped; a ".." component never
 * matches). A pattern without glob
 * characters is looked up directly; otherwise root is walked (not
 * following symbolic links, skipping .git) and, as in GitLab, the answer is
 * yes once more than CIRULES_EXISTS_MAX_FILES entries have been looked at. */
enum kiln_rc cirules_exists_in(const char *root, const char *pattern, bool *found, struct kiln_err *e);

/* Answers whether the repository holds something matching pattern. */
typedef enum kiln_rc (*cirules_exists_fn)(void *arg, const char *pattern, bool *found, struct kiln_err *e);

/* What one rule is matched against. */
struct cirules_env {
	cirules_lookup_fn lookup;
	void *lookup_arg;
	cirules_exists_fn exists;  /* required when a rule uses exists: */
	void *exists_arg;
	ci_warn_fn warn;           /* may be NULL */
	void *warn_arg;
	const char *what;          /* for messages: "job 'x'", "workflow", "include" */
};

/* Whether rule (a mapping) matches: its `if`, `exists` and `changes`
 * clauses all hold (a rule without them matches). `changes` cannot be
 * known without a diff: it is warned about and taken as true. exists
 * patterns may hold $VAR references, expanded with lookup. Other keys are
 * the caller's. Errors name FILE:LINE of the offending clause. */
enum kiln_rc cirules_match(const struct cirules_env *env, const struct cy_node *rule, bool *match,
			   struct kiln_err *e);

#endif
