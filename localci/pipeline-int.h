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
	size_t n_jobs, cap_jobs;
};

/* pipeline.c: messages, lists */
void warn_cb(void *arg, const char *msg);
void warnf(struct ctx *c, const struct cy_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
enum kiln_rc failf(struct ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
enum kiln_rc nomem(struct ctx *c);
int vec_push(struct vec *v, void *p);
void vec_free(struct vec *v);
enum kiln_rc flatten(struct ctx *c, const char *what, const char *key, const struct cy_node *n, int depth,
			    bool allow_maps, size_t max, struct vec *out);
enum kiln_rc strings(struct ctx *c, const char *what, const char *key, const struct cy_node *n, size_t max,
			    const char ***out, size_t *n_out);
const char *scalar_or_kind(const struct cy_node *n);

/* jobdef.c: job definitions, stages, default, workflow */
enum kiln_rc parse_when(struct ctx *c, const char *what, const char *key, const struct cy_node *n,
			       enum pipeline_when *w);
enum kiln_rc parse_bool(struct ctx *c, const char *what, const char *key, const struct cy_node *n, bool *b);
enum kiln_rc load_stages(struct ctx *c);
enum kiln_rc check_default(struct ctx *c);
const char *lookup_vars(void *arg, const char *name);
enum kiln_rc exists_default(void *arg, const char *pattern, bool *found, struct kiln_err *e);
void rules_env(struct ctx *c, struct cirules_env *env, const struct civars *vars, const char *what);
enum kiln_rc append_vars(struct civars *to, const struct civars *from, const struct inherit *filter,
				struct kiln_err *e);
enum kiln_rc load_workflow(struct ctx *c);
enum kiln_rc parse_job(struct ctx *c, struct jobdef *d);

/* instances.c: instances, needs and dependencies */
enum kiln_rc add_instances(struct ctx *c, size_t di);
enum kiln_rc sort_jobs(struct ctx *c);
enum kiln_rc link_jobs(struct ctx *c);

#endif
