/* What the parts of the pipeline loader share (not an API: pipeline.h is):
 * the loader's context, its messages and lists (pipeline.c), the job
 * definitions (jobdef.c), their instances and needs (instances.c). */
#ifndef KILN_PIPELINE_INT_H
#define KILN_PIPELINE_INT_H

#include "localci/pipeline.h"

struct vec {
	void **v;
	size_t n, cap;
};

struct needspec {
	const char *name;
	const struct cy_node *node;
	bool optional, artifacts;
	const char **instances;    /* needs:parallel:matrix: these names only */
	size_t n_instances;
};

struct combo {
	const char *name;
	struct civar *vars;
	size_t n_vars;
};

struct inherit {
	bool all;                  /* true: everything (unless list) */
	const struct cy_node *list;/* a list of names: only these */
};

struct jobdef {
	const char *name, *what;   /* what: "job 'name'" for messages */
	const struct cy_node *node, *knode;
	size_t stage;
	enum pipeline_when when;
	bool af, af_set;
	int *exit_codes;
	size_t n_exit_codes;
	bool has_needs;
	struct needspec *needs;
	size_t n_needs;
	bool has_deps;
	const struct cy_node **deps;
	size_t n_deps;
	int timeout;
	const char *image;
	const struct cy_node *image_opts; /* image: as a map (checked by parse_image), or NULL */
	const struct cy_node *services; /* checked by parse_services; NULL: none */
	const char **script;
	size_t n_script, n_before;
	const char **after;
	size_t n_after;
	struct pipeline_artifacts artifacts;
	struct civars vars;
	const struct cy_node **rules;
	size_t n_rules;
	bool has_rules;
	struct inherit inh_vars;
	int parallel;
	struct combo *combos;
	size_t n_combos;
	const char *skip;          /* trigger / run jobs */
};

struct ctx {
	const struct pipeline_opts *o;
	struct pipeline *pl;
	struct cy_arena *a;
	struct kiln_err *e;
	const struct cy_node *root, *deflt;
	struct civars predefined, cli, global, workflow;
	char **warned;
	size_t n_warned, cap_warned;
	struct jobdef *defs;
	size_t n_defs;
	struct pipeline_job *jobs; /* malloc'd while building */
	size_t *job_def;
	size_t n_jobs, cap_jobs, cap_job_def;
};

/* ---- pipeline.c: messages and lists ---- */

/* A ci_warn_fn for the civars/ciconfig/cirules callbacks; arg is the ctx. */
void warn_cb(void *arg, const char *msg);

/* A warning "FILE:LINE: ..." at n, each text once, passed to o->warn. */
void warnf(struct ctx *c, const struct cy_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Fail with rc and "FILE:LINE: ..." at n; returns rc. */
enum kiln_rc failf(struct ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The arena's out-of-memory (or over its ceiling) error. */
enum kiln_rc nomem(struct ctx *c);

/* Append p to v (malloc'd); -1 when out of memory. */
int vec_push(struct vec *v, void *p);

/* Free v's array (not what it points to). */
void vec_free(struct vec *v);

/* Flatten n (a scalar, or lists nested up to 10 levels) into out, as
 * nodes, at most max of them. Mappings are taken when allow_maps,
 * otherwise an error; null items are skipped. */
enum kiln_rc flatten(struct ctx *c, const char *what, const char *key, const struct cy_node *n, int depth,
		     bool allow_maps, size_t max, struct vec *out);

/* n flattened into an array of strings in the arena. */
enum kiln_rc strings(struct ctx *c, const char *what, const char *key, const struct cy_node *n, size_t max,
		     const char ***out, size_t *n_out);

/* A scalar's text, else the name of n's kind, for messages. */
const char *scalar_or_kind(const struct cy_node *n);

/* ---- jobdef.c: job definitions, stages, default, workflow ---- */

/* A job's or a rule's `when` (key names it in errors). */
enum kiln_rc parse_when(struct ctx *c, const char *what, const char *key, const struct cy_node *n,
			enum pipeline_when *w);

/* A boolean (key names it in errors). */
enum kiln_rc parse_bool(struct ctx *c, const char *what, const char *key, const struct cy_node *n, bool *b);

/* stages: (or types:, or GitLab's default ones) into c->pl->stages. */
enum kiln_rc load_stages(struct ctx *c);

/* Warn about default: keys kiln ignores; an error when it is no mapping. */
enum kiln_rc check_default(struct ctx *c);

/* A cirules_lookup_fn over a struct civars (arg). */
const char *lookup_vars(void *arg, const char *name);

/* A cirules_exists_fn looking in the repository (arg is the ctx). */
enum kiln_rc exists_default(void *arg, const char *pattern, bool *found, struct kiln_err *e);

/* env for matching rules with vars, named what in messages. */
void rules_env(struct ctx *c, struct cirules_env *env, const struct civars *vars, const char *what);

/* Set from's variables in to (those filter lets through, when given). */
enum kiln_rc append_vars(struct civars *to, const struct civars *from, const struct inherit *filter,
			 struct kiln_err *e);

/* workflow: whether the pipeline is created (c->pl->created and why not),
 * its name and the variables of the matching rule (c->workflow). */
enum kiln_rc load_workflow(struct ctx *c);

/* Parse and check the job definition d (name and nodes set). */
enum kiln_rc parse_job(struct ctx *c, struct jobdef *d);

/* ---- instances.c: instances, needs and dependencies ---- */

/* The jobs of definition di (one, or one per parallel/matrix instance)
 * appended to c->jobs, each with its variables and rules judged. */
enum kiln_rc add_instances(struct ctx *c, size_t di);

/* Sort the jobs by stage (stable), checking that names are unique. */
enum kiln_rc sort_jobs(struct ctx *c);

/* Resolve every job's needs and dependencies to job indexes; a cycle of
 * needs is an error. */
enum kiln_rc link_jobs(struct ctx *c);

#endif
