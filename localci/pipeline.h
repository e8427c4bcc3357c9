/* A .gitlab-ci.yml expanded into the jobs of one pipeline, the way GitLab
 * creates a pipeline, for `kiln exec [JOB...]` to run locally (each job
 * then goes through the payload path like a job from GitLab).
 *
 * pipeline_load does, in GitLab's order: include (local files), extends,
 * !reference (localci/config.h); stages (.pre first and .post last, always);
 * workflow:rules; then for each job (a top-level key that is not a keyword
 * and does not start with '.'): default: and top-level image /
 * before_script / after_script inherited per `inherit:default`; parallel
 * and parallel:matrix instances; variables (localci/variables.h); rules
 * (localci/rules.h, localci/expr.h); needs and dependencies checked and
 * resolved. The code: pipeline.c (pipeline_load, the dump), jobdef.c (job
 * definitions, stages, workflow), instances.c (instances, needs), plan.c
 * (pipeline_plan); localci/pipeline-int.h is what they share.
 *
 * Decisions where GitLab leaves room (GitLab's behaviour otherwise):
 *  - Variable values in pipeline_job.vars are expanded the way GitLab's
 *    server expands them before a job reaches a runner (see
 *    localci/variables.h: `$$` stays for the runner), so the payload can
 *    carry them as they are. Raw ones
 *    (`expand: false`, and every predefined one) are kept as written and
 *    flagged. Scripts, artifacts:name/paths and the like are not expanded
 *    (that is the job shell's or the runner's business); the image name is,
 *    with the job's final variables, as a runner does. Precedence, lowest
 *    first: predefined (from the caller, plus CI_JOB_NAME, CI_JOB_NAME_SLUG,
 *    CI_JOB_STAGE and, for parallel jobs, CI_NODE_INDEX/CI_NODE_TOTAL) <
 *    global < workflow:rules:variables < job < parallel:matrix <
 *    rules:variables < pipeline variables (--variable). inherit:variables
 *    filters global and workflow ones. Each key appears once, where it was
 *    first defined.
 *  - rules:if sees the job's variables (all sources but rules:variables)
 *    already expanded; workflow:rules and include:rules see predefined,
 *    global (workflow only) and pipeline variables.
 *  - A job without rules has allow_failure true when it is `when: manual`;
 *    with rules, a rule's allow_failure wins, then the job's, else false.
 *    A rule's `when` defaults to the job's `when`.
 *  - `when: delayed` runs like on_success (warned: kiln does not wait).
 *  - rules:changes is taken as true (warned). rules:needs, trigger jobs,
 *    `run:` jobs, only/except and every keyword kiln does not implement
 *    produce one warning each naming it and its FILE:LINE; trigger and
 *    run jobs are kept, skipped.
 *  - A job needed by another but not in the pipeline (undefined, or its
 *    rules exclude it) is an error unless the need is optional; so is a
 *    need on a later stage, or a cycle of needs within a stage. A job whose
 *    `dependencies` names a job excluded by rules just does not get its
 *    artifacts (warned).
 *  - Without `dependencies`, a job downloads the artifacts of its needs
 *    (artifacts: true) when it has needs, else of every job of the earlier
 *    stages.
 *  - Jobs excluded by rules or workflow stay in pl->jobs, `skipped` and
 *    with the reason, so that the runner can list them.
 *  - Numbers are kept as written in the YAML (GitLab reads `1.10` as the
 *    float 1.1; kiln keeps "1.10"). A boolean as a variable value is an
 *    error, as in GitLab.
 *  - Script lines: strings or lists nested up to 10 levels (what !reference
 *    produces), flattened in order; a mapping in a script (a line with
 *    an unquoted ": ") is an error naming it.
 */
#ifndef KILN_PIPELINE_H
#define KILN_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "localci/config.h"
#include "localci/rules.h"
#include "localci/variables.h"
#include "lib/yaml.h"
#include "lib/result.h"

#define PIPELINE_DEFAULT_FILE ".gitlab-ci.yml"
#define PIPELINE_MAX_JOBS 2000        /* after parallel */
#define PIPELINE_MAX_STAGES 100
#define PIPELINE_MAX_PARALLEL 200     /* GitLab's limit, also for a matrix */
#define PIPELINE_MAX_LINES 10000      /* script lines of one job */
#define PIPELINE_MAX_NEEDS 200
#define PIPELINE_MAX_TIMEOUT 2629746  /* seconds: GitLab's 1 month */

struct pipeline_opts {
	const char *repo_dir;               /* the repository's root, required */
	const char *file;                   /* relative to repo_dir; NULL: .gitlab-ci.yml */
	const char *const *predefined;      /* "KEY=VALUE": CI_COMMIT_SHA, CI_PIPELINE_SOURCE, ... */
	size_t n_predefined;
	const char *const *variables;       /* "KEY=VALUE": pipeline variables (--variable) */
	size_t n_variables;
	ci_warn_fn warn;                    /* each warning once; may be NULL */
	void *warn_arg;
	cirules_exists_fn exists;           /* rules:exists; NULL: look under repo_dir */
	void *exists_arg;
};

enum pipeline_when { PL_ON_SUCCESS, PL_ON_FAILURE, PL_ALWAYS, PL_MANUAL, PL_NEVER };

struct pipeline_need {
	size_t job;                 /* index into pipeline.jobs */
	bool optional;
	bool artifacts;
};

struct pipeline_artifacts {
	bool defined;
	const char *name;           /* NULL: not given */
	const char *expire_in;      /* NULL: not given */
	const char **paths;
	size_t n_paths;
	const char **exclude;
	size_t n_exclude;
	enum pipeline_when when;    /* PL_ON_SUCCESS, PL_ON_FAILURE or PL_ALWAYS */
	bool untracked;
};

struct pipeline_job {
	const char *name;           /* "build", "test 2/3", "deploy: [aws, eu]" */
	const char *group;          /* its key in the file (= name unless parallel) */
	const char *file;           /* where the job's key is */
	unsigned line;
	size_t stage;               /* index into pipeline.stages */
	const char *image;          /* expanded; NULL: the runner's default */
	const struct cy_node *image_opts; /* image: entrypoint, pull_policy as written (checked), or NULL */
	const struct cy_node *services; /* services: as written (checked), NULL: none */
	enum pipeline_when when;    /* after rules; PL_NEVER only when skipped */
	bool allow_failure;
	const int *exit_codes;      /* allow_failure:exit_codes (allow_failure false) */
	size_t n_exit_codes;
	bool has_needs;             /* needs: given (even []): start on needs, not stages */
	const struct pipeline_need *needs;
	size_t n_needs;
	const size_t *deps;         /* jobs whose artifacts it downloads */
	size_t n_deps;
	int timeout;                /* seconds; 0: not given (the runner's default) */
	const struct civar *vars;   /* final values (see above) */
	size_t n_vars;
	const char **script;        /* before_script lines, then script lines */
	size_t n_script;
	size_t n_before_script;     /* how many of them came from before_script */
	const char **after_script;
	size_t n_after_script;
	struct pipeline_artifacts artifacts;
	int node_index, node_total; /* parallel: 1..N of N; both 0 otherwise */
	bool skipped;               /* not part of the pipeline: see skip_reason */
	const char *skip_reason;
};

struct pipeline {
	struct cy_arena *arena;     /* owns everything below */
	const char **stages;
	size_t n_stages;
	struct pipeline_job *jobs;  /* stage order, then file order */
	size_t n_jobs;
	bool created;               /* false: workflow:rules stopped the pipeline */
	const char *workflow_reason;/* why not created; NULL when created */
	const char *name;           /* workflow:name, expanded; NULL */
};

/* Load o->file from o->repo_dir into *pl (zeroed first). On failure e
 * holds one line "FILE:LINE: what: problem" (for a missing root file
 * "FILE: no such file") and *pl is left empty. Free with pipeline_free. */
enum kiln_rc pipeline_load(const struct pipeline_opts *o, struct pipeline *pl, struct kiln_err *e);
/* Free what pipeline_load made; pl is zeroed (an empty pl is fine). */
void pipeline_free(struct pipeline *pl);

/* The index of the job called name, or -1. */
ssize_t pipeline_find(const struct pipeline *pl, const char *name);
/* "on_success", ... */
const char *pipeline_when_name(enum pipeline_when w);
/* The value of variable key in job j, or NULL. */
const char *pipeline_job_var(const struct pipeline_job *j, const char *key);

/* A stable text form of the whole pipeline, one block per job (the golden
 * files of the tests): every resolved attribute except the caller's
 * predefined variables. */
void pipeline_dump(const struct pipeline *pl, FILE *f);

/* Which jobs `kiln exec` runs, in an order where each one comes after
 * what it waits for. */
struct pipeline_step {
	size_t job;                 /* index into pipeline.jobs */
	bool needs_based;           /* the job has needs: */
	const size_t *wait;         /* needs_based: the steps it waits for */
	size_t n_wait;
	size_t n_before;            /* otherwise: it waits for steps [0, n_before),
				     * i.e. every planned job of earlier stages */
};

struct pipeline_plan {
	struct pipeline_step *steps;
	size_t n;
	size_t *pool;               /* holds the wait arrays */
};

/* Plan a run. With no selected names: every job in the pipeline except
 * manual ones not listed in manual[]. With names (a job's name, or the
 * name in the file of a parallel job: all its instances): those jobs, even
 * manual ones, and with include_needs also what they wait for,
 * transitively: their needs, or for a job without needs every job of the
 * earlier stages, and the jobs whose artifacts they take (dependencies);
 * manual ones there only when named or in manual[].
 * A needed manual job that is neither selected nor in manual[] is an error
 * (dropped when the need is optional), as is a selected or listed name
 * that matches no job (KILN_E_NOTFOUND) or only skipped ones. Needs of a
 * step that are not planned are not waited for. */
enum kiln_rc pipeline_plan(const struct pipeline *pl, const char *const *selected, size_t n_selected,
			   bool include_needs, const char *const *manual, size_t n_manual,
			   struct pipeline_plan *plan, struct kiln_err *e);
void pipeline_plan_free(struct pipeline_plan *plan);
/* Whether step i may start once the steps marked in done[] have finished
 * (done is indexed by step). */
bool pipeline_step_ready(const struct pipeline_plan *plan, size_t i, const bool *done);
/* One line per step: "N. NAME (after: ...)". */
void pipeline_plan_dump(const struct pipeline *pl, const struct pipeline_plan *plan, FILE *f);

/* A GitLab duration ("3600", "90 minutes", "1h 30m", "1.5 hours",
 * "1:30:00", "2 days") in seconds; false when s is not one. */
bool pipeline_parse_duration(const char *s, long *seconds);

#endif
