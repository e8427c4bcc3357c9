/* `kiln exec [JOB...]`: the pipeline of a local repository, each job in a
 * fresh VM through job_run, like jobs from GitLab.
 *
 * The repository (--cwd, else the current folder) and its .gitlab-ci.yml
 * (--file) become a pipeline with localci/pipeline.h (pipeline_load with
 * the predefined variables of localci/project.h and --variable ones; a YAML
 * error is one line FILE:LINE, exit 2, before any VM), then a plan
 * (pipeline_plan: every job but manual ones, or the JOBs named, --needs,
 * --manual). Each job's payload is built as JSON and parsed
 * (localci/project.h), and run by job_run in a thread of its own.
 *
 * Scheduling: a step starts when pipeline_step_ready says so (its stage's
 * predecessors, or its needs) and fewer than --concurrency jobs run (1 by
 * default), in plan order. Its `when` is then judged on how the steps it
 * waited for went: on_success (and manual, delayed) runs when none of them
 * failed (an allowed failure is not one) and, for needs, none was skipped;
 * on_failure when one failed; always always. A job that failed with
 * allow_failure, or with an exit code in allow_failure:exit_codes, is WARN.
 *
 * Artifacts: when a job's VM has stopped (job_opts.finished), artifacts:paths
 * minus exclude (per artifacts:when) are copied from its workspace image to
 * <repo>/.kiln/artifacts/<job>/ (workspace/artifacts.h); a later job gets
 * those of its dependencies laid into its workspace (ws_spec.extra_dirs).
 * The artifacts of a job planned in this run are removed when the run
 * starts; those of jobs not in it stay from earlier runs and are used.
 * .kiln/ holds a .gitignore of "*", so --dirty never copies it.
 *
 * Output: localci/outmux.h (prefixed lines, partial lines after 100 ms,
 * kiln's notices, a line every 30 s for a quiet job), then a summary in
 * stage order: PASS, WARN or FAIL with durations, skipped jobs with why,
 * the last lines of failed jobs. Exit status 1 when a job failed without
 * being allowed to, 2 for usage and pipeline errors, 0 otherwise.
 *
 * Signals: SIGINT cancels every running job at once and skips the rest;
 * SIGTERM cancels them gracefully (after_script runs) and skips the rest;
 * a second signal is SIGINT. */
#ifndef KILN_PIPEEXEC_H
#define KILN_PIPEEXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "job/job.h"
#include "runner/config.h"

#define PIPEEXEC_MAX_CONCURRENCY 64
#define PIPEEXEC_HEARTBEAT_MS 30000
#define PIPEEXEC_MAX_ARGS 256          /* JOBs, --variable, --manual: each */
#define PIPEEXEC_JOB_IDS 10000         /* job ids: pipeline id * this + 1..; > PIPELINE_MAX_JOBS */
#define PIPEEXEC_MAX_PIPELINE_ID (1LL << 40)

/* The job core's calls kiln exec makes: job_run and job_sweep, unless a
 * test puts fakes here (tests/unit/test_scheduler.c). */
struct pipeexec_jobcore {
	enum kiln_rc (*run)(const struct job_payload *p, const struct job_opts *o, struct job_result *r,
			    struct kiln_err *e);
	void (*sweep)(const char *state_dir);
};
extern struct pipeexec_jobcore pipeexec_jobcore;

/* kiln exec's options (runner/options.c parses them). */
struct pexec_opts {
	const char *cwd;               /* the repository; NULL: the current folder */
	const char *file;              /* the pipeline file; NULL: .gitlab-ci.yml */
	const char *executor, *image, *kernel; /* NULL: the configuration's */
	int vcpus, memory_mib;         /* 0: the configuration's */
	int network;                   /* -1: the configuration's, 0 off, 1 on */
	int concurrency;               /* jobs at once, 1..PIPEEXEC_MAX_CONCURRENCY */
	bool needs, dirty, list, shell;
	bool no_snapshot;              /* --no-snapshot: every job boots cold */
	const char *selected[PIPEEXEC_MAX_ARGS], *manual[PIPEEXEC_MAX_ARGS], *variables[PIPEEXEC_MAX_ARGS];
	size_t n_selected, n_manual, n_variables;
};

/* Run `kiln exec` on a pipeline. Returns the exit status. */
int pipeexec_run(const struct kiln_config *cfg, const struct pexec_opts *o);

#endif
