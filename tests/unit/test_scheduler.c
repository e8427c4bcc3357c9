/* kiln exec's scheduler with a fake job core: the order of stages and
 * needs, the concurrency limit, a failure skipping what comes after it,
 * allow_failure (also by exit code), when: on_failure and always, manual
 * jobs left out unless --manual names them. The pipelines live in a
 * throw-away git repository; no VM starts. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/paths.h"
#include "localci/scheduler.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define GIT \
	"GIT_CONFIG_NOSYSTEM=1 HOME=/nonexistent GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.invalid " \
	"GIT_COMMITTER_NAME=Ada GIT_COMMITTER_EMAIL=ada@example.invalid git"
#define MAX_RUNS 32

/* What the fake job core saw: each job's start and end, in one sequence. */
struct run {
	char name[64];
	int start, end;  /* sequence numbers */
};

static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static struct run runs[MAX_RUNS];
static int n_runs, seq, running, max_running, sweeps;

/* The job's exit code comes from its name: "fail..." exits 1, "exit3..."
 * exits 3, others 0; "slow..." takes 400 ms, others 50 ms; with "after"
 * in it, its after_script exits 2. */
static enum kiln_rc fake_run(const struct job_payload *p, const struct job_opts *o, struct job_result *r,
			     struct kiln_err *e)
{
	const char *name = p->job_name;
	struct timespec ts = { 0, strncmp(name, "slow", 4) ? 50000000L : 400000000L };
	struct run *me;

	(void)o;
	(void)e;
	pthread_mutex_lock(&fake_mu);
	ck_assert_int_lt(n_runs, MAX_RUNS);
	me = &runs[n_runs++];
	snprintf(me->name, sizeof(me->name), "%s", name);
	me->start = ++seq;
	if (++running > max_running)
		max_running = running;
	pthread_mutex_unlock(&fake_mu);

	nanosleep(&ts, NULL);

	pthread_mutex_lock(&fake_mu);
	running--;
	me->end = ++seq;
	pthread_mutex_unlock(&fake_mu);
	memset(r, 0, sizeof(*r));
	r->exit_code = !strncmp(name, "fail", 4) ? 1 : !strncmp(name, "exit3", 5) ? 3 : 0;
	if (r->exit_code)
		snprintf(r->failure_reason, sizeof(r->failure_reason), "script_failure");
	if (strstr(name, "after"))
		r->after_script_exit = 2;
	return KILN_OK;
}

static void fake_sweep(const char *state_dir)
{
	(void)state_dir;
	sweeps++;
}

static const struct run *ran(const char *name)
{
	int i;

	for (i = 0; i < n_runs; i++)
		if (!strcmp(runs[i].name, name))
			return &runs[i];
	return NULL;
}

/* The output of one kiln exec, and its exit status. */
struct result {
	int status;
	char out[32768];
};

/* Run kiln exec with args (NULL-terminated) on a new repository whose
 * .gitlab-ci.yml is yaml; res gets what it printed. */
static void exec_pipeline(const char *yaml, struct result *res, ...)
{
	char dir[] = "/tmp/kiln-sched-test-XXXXXX", state[PATH_MAX], path[PATH_MAX], outp[PATH_MAX];
	char *argv[16] = { "exec", "--cwd", dir };
	struct kiln_config cfg = { 0 };
	int argc = 3, saved, fd;
	const char *a;
	va_list ap;
	FILE *f;
	size_t n;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/.gitlab-ci.yml", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(yaml, f);
	fclose(f);
	ck_assert_int_eq(test_sh("set -e; cd '%s'; exec >/dev/null 2>&1\n" GIT " init -q -b main\n" GIT
				 " add .gitlab-ci.yml\n" GIT " commit -q -m pipeline\n",
				 dir),
			 0);
	snprintf(state, sizeof(state), "%s/.state", dir);
	cfg.state_dir = state;
	va_start(ap, res);
	while ((a = va_arg(ap, const char *)) && argc < 15)
		argv[argc++] = (char *)a;
	va_end(ap);

	pipeexec_jobcore.run = fake_run;
	pipeexec_jobcore.sweep = fake_sweep;
	snprintf(outp, sizeof(outp), "%s.out", dir);
	fflush(stdout);
	saved = dup(1);
	fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 1);
	close(fd);
	res->status = pipeexec_main(&cfg, argc, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);

	f = fopen(outp, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(res->out, 1, sizeof(res->out) - 1, f);
	res->out[n] = '\0';
	fclose(f);
	unlink(outp);
	kiln_rm_rf(dir);
}

/* Whether the summary has a line with all of the words, in order. */
static bool summary_says(const struct result *res, const char *a, const char *b, const char *c)
{
	const char *line = strstr(res->out, "pipeline #"), *next;

	/* the summary's first line is the last that names the pipeline */
	while (line && (next = strstr(line + 1, "pipeline #")))
		line = next;
	while (line && (line = strchr(line, '\n'))) {
		const char *end = strchr(++line, '\n'), *p;
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char buf[1024];

		snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
		if ((p = strstr(buf, a)) && (p = strstr(p, b)) && (!c || strstr(p, c)))
			return true;
	}
	return false;
}

START_TEST(stages_in_order_within_the_limit)
{
	static const char yaml[] = "stages: [build, test, deploy]\n"
				   "b1: {stage: build, script: [x]}\n"
				   "b2: {stage: build, script: [x]}\n"
				   "t1: {stage: test, script: [x]}\n"
				   "t2: {stage: test, script: [x]}\n"
				   "t3: {stage: test, script: [x]}\n"
				   "d1: {stage: deploy, script: [x]}\n";
	static struct result res;
	const char *build[] = { "b1", "b2" }, *test[] = { "t1", "t2", "t3" };
	size_t i, k;

	exec_pipeline(yaml, &res, "--concurrency", "2", NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 6);
	ck_assert_int_eq(sweeps, 1);
	ck_assert_int_eq(max_running, 2);
	for (i = 0; i < 2; i++)
		for (k = 0; k < 3; k++)
			ck_assert_int_lt(ran(build[i])->end, ran(test[k])->start);
	for (k = 0; k < 3; k++)
		ck_assert_int_lt(ran(test[k])->end, ran("d1")->start);
	ck_assert(summary_says(&res, "b1", "PASS", NULL));
	ck_assert(summary_says(&res, "d1", "PASS", NULL));
}
END_TEST

START_TEST(one_at_a_time_by_default)
{
	static const char yaml[] = "a: {script: [x]}\nb: {script: [x]}\nc: {script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 3);
	ck_assert_int_eq(max_running, 1);
}
END_TEST

/* A job with needs starts once they are done, not with its stage. */
START_TEST(needs_start_before_the_stage)
{
	static const char yaml[] = "stages: [build, test]\n"
				   "slow: {stage: build, script: [x]}\n"
				   "quick: {stage: build, script: [x]}\n"
				   "after_quick: {stage: test, needs: [quick], script: [x]}\n"
				   "after_all: {stage: test, script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, "--concurrency", "4", NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 4);
	ck_assert_int_lt(ran("quick")->end, ran("after_quick")->start);
	ck_assert_int_lt(ran("after_quick")->start, ran("slow")->end);
	ck_assert_int_lt(ran("slow")->end, ran("after_all")->start);
}
END_TEST

START_TEST(failure_skips_what_follows)
{
	static const char yaml[] = "stages: [build, test, cleanup]\n"
				   "fail_build: {stage: build, script: [x]}\n"
				   "ok_build: {stage: build, script: [x]}\n"
				   "by_stage: {stage: test, script: [x]}\n"
				   "by_need: {stage: test, needs: [fail_build], script: [x]}\n"
				   "unrelated: {stage: test, needs: [ok_build], script: [x]}\n"
				   "after_by_need: {stage: cleanup, needs: [by_need], script: [x]}\n"
				   "report: {stage: cleanup, when: on_failure, script: [x]}\n"
				   "tidy: {stage: cleanup, when: always, script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, "--concurrency", "2", NULL);
	ck_assert_int_eq(res.status, 1);
	ck_assert_ptr_nonnull(ran("fail_build"));
	ck_assert_ptr_nonnull(ran("ok_build"));
	ck_assert_ptr_nonnull(ran("unrelated"));
	ck_assert_ptr_null(ran("by_stage"));
	ck_assert_ptr_null(ran("by_need"));
	ck_assert_ptr_null(ran("after_by_need"));
	ck_assert_ptr_nonnull(ran("report"));
	ck_assert_ptr_nonnull(ran("tidy"));
	ck_assert_int_eq(n_runs, 5);
	ck_assert(summary_says(&res, "fail_build", "FAIL", "exit code 1"));
	ck_assert(summary_says(&res, "by_stage", "skip", "earlier job 'fail_build' failed"));
	ck_assert(summary_says(&res, "by_need", "skip", "its need 'fail_build' failed"));
	ck_assert(summary_says(&res, "after_by_need", "skip", "its need 'by_need' did not run"));
}
END_TEST

/* Without a failure, on_failure jobs are skipped and always ones run. */
START_TEST(on_failure_only_after_a_failure)
{
	static const char yaml[] = "stages: [build, cleanup]\n"
				   "ok: {stage: build, script: [x]}\n"
				   "report: {stage: cleanup, when: on_failure, script: [x]}\n"
				   "tidy: {stage: cleanup, when: always, script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_ptr_null(ran("report"));
	ck_assert_ptr_nonnull(ran("tidy"));
	ck_assert(summary_says(&res, "report", "skip", "when: on_failure"));
}
END_TEST

START_TEST(allowed_failures_do_not_stop_the_pipeline)
{
	static const char yaml[] = "stages: [build, test]\n"
				   "fail_allowed: {stage: build, allow_failure: true, script: [x]}\n"
				   "exit3_allowed: {stage: build, allow_failure: {exit_codes: [3]}, script: [x]}\n"
				   "next: {stage: test, script: [x]}\n"
				   "report: {stage: test, when: on_failure, script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_ptr_nonnull(ran("next"));
	ck_assert_ptr_null(ran("report"));
	ck_assert(summary_says(&res, "fail_allowed", "WARN", "allowed to fail"));
	ck_assert(summary_says(&res, "exit3_allowed", "WARN", "an allowed exit code"));
}
END_TEST

/* An exit code that allow_failure:exit_codes does not list fails. */
START_TEST(other_exit_codes_still_fail)
{
	static const char yaml[] = "fail_other: {allow_failure: {exit_codes: [3]}, script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 1);
	ck_assert(summary_says(&res, "fail_other", "FAIL", "exit code 1"));
}
END_TEST

START_TEST(manual_jobs_wait_for_manual)
{
	static const char yaml[] = "build: {script: [x]}\n"
				   "deploy: {when: manual, script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 1);
	ck_assert_ptr_null(ran("deploy"));
	ck_assert(summary_says(&res, "deploy", "skip", "manual job"));

	n_runs = seq = 0;
	exec_pipeline(yaml, &res, "--manual", "deploy", NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_ptr_nonnull(ran("deploy"));
}
END_TEST

START_TEST(failed_after_script_shows)
{
	static const char yaml[] = "after: {script: [x], after_script: [y]}\n"
				   "fail-after: {script: [x], after_script: [y], allow_failure: true}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert(summary_says(&res, " after ", "PASS", "after_script failed (exit 2)"));
	ck_assert(summary_says(&res, "fail-after", "WARN", "exit code 1, allowed to fail; after_script failed (exit 2)"));
}
END_TEST

START_TEST(needs_on_other_projects_are_left_out)
{
	static const char yaml[] = "stages: [build, test]\n"
				   "build: {stage: build, script: [x]}\n"
				   "test:\n"
				   "  stage: test\n"
				   "  needs:\n"
				   "    - {project: group/other, job: build, ref: main, artifacts: true}\n"
				   "    - {pipeline: '$PARENT_PIPELINE_ID', job: generate}\n"
				   "    - build\n"
				   "  script: [x]\n"
				   "other: {stage: test, needs: [{project: group/other, job: lib, ref: main}], script: [x]}\n";
	static struct result res;

	exec_pipeline(yaml, &res, NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 3);
	ck_assert_int_lt(ran("build")->end, ran("test")->start);
	ck_assert(summary_says(&res, "test", "PASS", NULL));
	ck_assert(summary_says(&res, "other", "PASS", NULL));
}
END_TEST

START_TEST(needs_option_follows_stages_and_dependencies)
{
	static const char yaml[] = "stages: [build, test, deploy]\n"
				   "b1: {stage: build, script: [x], artifacts: {paths: [out/]}}\n"
				   "b2: {stage: build, script: [x]}\n"
				   "manual: {stage: build, when: manual, script: [x]}\n"
				   "t1: {stage: test, script: [x]}\n"
				   "lint: {stage: test, needs: [], script: [x]}\n"
				   "d1: {stage: deploy, needs: [lint], script: [x]}\n"
				   "d2: {stage: deploy, dependencies: [b1], script: [x]}\n";
	static struct result res;

	/* Without needs: every job of the earlier stages, and those first. */
	exec_pipeline(yaml, &res, "--needs", "t1", NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 3);
	ck_assert_int_lt(ran("b1")->end, ran("t1")->start);
	ck_assert_int_lt(ran("b2")->end, ran("t1")->start);
	ck_assert_ptr_null(ran("manual"));

	/* With needs: only those. */
	n_runs = seq = 0;
	exec_pipeline(yaml, &res, "--needs", "d1", NULL);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(n_runs, 2);
	ck_assert_ptr_nonnull(ran("lint"));

	/* Transitively, through the stages. */
	n_runs = seq = 0;
	exec_pipeline(yaml, &res, "--needs", "--manual", "manual", "d2", NULL);
	ck_assert_msg(res.status == 0, "%s", res.out);
	ck_assert_int_eq(n_runs, 6);
	ck_assert_int_lt(ran("manual")->end, ran("t1")->start);
	ck_assert_int_lt(ran("t1")->end, ran("d2")->start);
}
END_TEST

Suite *scheduler_suite(void)
{
	Suite *s = suite_create("scheduler");
	TCase *tc = tcase_create("fake job core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stages_in_order_within_the_limit);
	tcase_add_test(tc, one_at_a_time_by_default);
	tcase_add_test(tc, needs_start_before_the_stage);
	tcase_add_test(tc, failure_skips_what_follows);
	tcase_add_test(tc, on_failure_only_after_a_failure);
	tcase_add_test(tc, allowed_failures_do_not_stop_the_pipeline);
	tcase_add_test(tc, other_exit_codes_still_fail);
	tcase_add_test(tc, manual_jobs_wait_for_manual);
	tcase_add_test(tc, failed_after_script_shows);
	tcase_add_test(tc, needs_on_other_projects_are_left_out);
	tcase_add_test(tc, needs_option_follows_stages_and_dependencies);
	suite_add_tcase(s, tc);
	return s;
}
