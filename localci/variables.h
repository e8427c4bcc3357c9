/* CI/CD variables of one job: an ordered list with one entry per key, the
 * YAML `variables:` forms, and expansion.
 *
 * Expansion is what GitLab's server does before a job reaches a runner
 * (Ci::BuildRunnerPresenter#runner_variables), so that the payload's
 * values are what a runner gets:
 *  - $NAME and ${NAME} (NAME = [A-Za-z_][A-Za-z0-9_]*) of a variable in the
 *    list become its value, itself expanded first (recursively);
 *  - a reference to an undefined variable is kept as written, for the job's
 *    shell;
 *  - $$ is kept as written and starts no reference: GitLab's server leaves
 *    it (Collection#expand_value) and the runner, expanding the values once
 *    more at job time, turns it into a single $;
 *  - a raw variable (`expand: false`) is never expanded, and a reference
 *    to it inserts its value as written;
 *  - variables whose references lead back to themselves (a cycle) keep
 *    their values as written, with one warning naming the cycle (GitLab
 *    leaves the whole list unexpanded and reports an error instead); a
 *    variable referring to one of them gets that value as written.
 */
#ifndef KILN_CIVARS_H
#define KILN_CIVARS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/yaml.h"
#include "lib/result.h"

#define CIVARS_MAX 4096                 /* variables of one job (the payload's cap) */
#define CIVARS_MAX_VALUE (256u << 10)   /* one value after expansion */
#define CIVARS_MAX_DEPTH 100            /* references through references */

/* Lowest precedence first: a later source overrides an earlier one. */
enum civar_source {
	CIVAR_PREDEFINED, /* from the caller: CI_COMMIT_SHA, ... and CI_JOB_* */
	CIVAR_GLOBAL,     /* top-level variables: */
	CIVAR_WORKFLOW,   /* workflow:rules:variables of the matching rule */
	CIVAR_JOB,        /* the job's variables: (after extends) */
	CIVAR_MATRIX,     /* parallel:matrix values of this instance */
	CIVAR_RULES,      /* rules:variables of the job's matching rule */
	CIVAR_PIPELINE,   /* pipeline variables: kiln exec --variable K=V */
};

struct civar {
	const char *key, *value;
	bool raw;                 /* expand: false: used as written */
	enum civar_source source;
	const char *file;         /* where it is defined; NULL outside YAML */
	unsigned line;
};

/* A growable list (the array is malloc'd; strings are not copied). */
struct civars {
	struct civar *v;
	size_t n, cap;
};

/* "predefined", "global", ... */
const char *civar_source_name(enum civar_source s);

/* Set v->key: an existing entry is replaced in place, a new one appended.
 * KILN_E_LIMIT past CIVARS_MAX entries, KILN_E_NOMEM. */
enum kiln_rc civars_set(struct civars *vs, const struct civar *v, struct kiln_err *e);
/* The entry of key, or NULL. */
const struct civar *civars_get(const struct civars *vs, const char *key);
/* Drop every entry; the list stays usable. */
void civars_clear(struct civars *vs);
void civars_free(struct civars *vs);

/* Append the entries of a YAML `variables:` mapping (map may be NULL or
 * null: nothing) with source src. A value is a string or number (null is
 * ""), or a mapping {value, description, options, expand}: options, when
 * given, must hold value; expand: false makes it raw. A boolean or a list
 * is an error naming FILE:LINE, what ("job 'x'", or "" for the top
 * level) and the key; unknown keys
 * of the mapping form are warned about. */
enum kiln_rc civars_parse(struct cy_arena *a, const struct cy_node *map, enum civar_source src, const char *what,
			  struct civars *out, ci_warn_fn warn, void *warn_arg, struct kiln_err *e);

/* Expand every entry of in (see the header) into out (cleared first), same
 * order, strings in a. */
enum kiln_rc civars_expand(struct cy_arena *a, const struct civars *in, struct civars *out, ci_warn_fn warn,
			   void *warn_arg, struct kiln_err *e);

/* Expand s against vs, whose values are taken as final (one level: what
 * the runner does to image names): *out in a. */
enum kiln_rc civars_expand_str(struct cy_arena *a, const struct civars *vs, const char *s, const char **out,
			       struct kiln_err *e);

#endif
