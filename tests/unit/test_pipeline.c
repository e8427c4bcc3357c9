/* .gitlab-ci.yml to jobs: golden files and the plan.
 *
 * Each tests/fixtures/pipeline/NAME/ is a repository: its .gitlab-ci.yml
 * (and whatever it includes) is loaded and the text made of the warnings
 * ("warning: ..."), then the dump or "error: MESSAGE", then the plans asked
 * for must equal NAME/expected.txt. NAME/options, when present, holds lines
 *     variable KEY=VALUE      a pipeline variable (--variable)
 *     predefined KEY=VALUE    a predefined variable (added or replaced)
 *     file PATH               another root file
 *     plan ARG | ARG | ...    plan a run: a job name, --needs, --manual JOB
 * Run with KILN_GOLDEN_UPDATE=1 to rewrite expected.txt from what the code
 * does now (then review the diff). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "localci/pipeline.h"
#include "tests/unit/suites.h"

static const char *const golden[] = {
	"basic", "extends", "anchors", "reference", "include", "variables", "rules", "workflow",
	"workflow-never", "needs", "parallel", "unsupported", "scripts", "needs-project",
	"err-yaml", "err-yaml-indent", "err-no-script", "err-not-mapping", "err-extends-unknown",
	"err-extends-cycle", "err-extends-deep", "err-needs-missing", "err-needs-skipped", "err-needs-later",
	"err-needs-cycle", "err-bad-when", "err-bad-timeout", "err-unknown-stage", "err-bool-variable",
	"err-reference-missing", "err-reference-cycle", "err-include-cycle", "err-include-missing",
	"err-include-outside", "err-include-ext", "err-alias", "err-script-mapping", "err-parallel",
	"err-rules-if", "err-deps-not-in-needs", "err-empty", "err-option", "err-name-collision",
	"err-merge", "err-allow-failure", "err-newline-in-name",
};

static const char *const default_predefined[] = {
	"CI_COMMIT_SHA=0123456789abcdef0123456789abcdef01234567",
	"CI_COMMIT_SHORT_SHA=01234567",
	"CI_COMMIT_BRANCH=main",
	"CI_COMMIT_REF_NAME=main",
	"CI_COMMIT_REF_SLUG=main",
	"CI_DEFAULT_BRANCH=main",
	"CI_PIPELINE_SOURCE=push",
	"CI_PROJECT_NAME=demo",
	"CI_COMMIT_MESSAGE=fix: the $thing",
};

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = calloc(1, 1 << 20);
	ck_assert_ptr_nonnull(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

struct out {
	char *text;
	size_t len;
	FILE *f;
};

static void on_warning(void *arg, const char *msg)
{
	fprintf(((struct out *)arg)->f, "warning: %s\n", msg);
}

/* Split "a | b | c" into args (modifies s). */
static size_t split_args(char *s, char **args, size_t max)
{
	size_t n = 0;
	char *tok;

	for (tok = strtok(s, "|"); tok && n < max; tok = strtok(NULL, "|")) {
		while (*tok == ' ')
			tok++;
		while (*tok && tok[strlen(tok) - 1] == ' ')
			tok[strlen(tok) - 1] = '\0';
		if (*tok)
			args[n++] = tok;
	}
	return n;
}

static void run_plan(const struct pipeline *pl, char *line, FILE *f)
{
	char *args[32], *names[32];
	const char *manual[32];
	size_t n, i, n_names = 0, n_manual = 0;
	bool needs = false;
	struct pipeline_plan plan;
	struct kiln_err e = { 0 };

	fprintf(f, "\nplan%s%s:\n", *line ? " " : "", line);
	n = split_args(line, args, 32);
	for (i = 0; i < n; i++) {
		if (!strcmp(args[i], "--needs"))
			needs = true;
		else if (!strncmp(args[i], "--manual ", 9))
			manual[n_manual++] = args[i] + 9;
		else
			names[n_names++] = args[i];
	}
	if (pipeline_plan(pl, (const char *const *)names, n_names, needs, manual, n_manual, &plan, &e)) {
		fprintf(f, "error: %s\n", e.msg);
		return;
	}
	pipeline_plan_dump(pl, &plan, f);
	pipeline_plan_free(&plan);
}

/* What the golden file of fixture name should hold. */
static char *render(const char *name)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], *opts, *line, *save = NULL;
	const char *predefined[64], *variables[64], *plans[16];
	char file[256] = "";
	size_t n_pre = 0, n_var = 0, n_plans = 0, i;
	struct out out = { NULL, 0, NULL };
	struct pipeline_opts o = { 0 };
	struct pipeline pl;
	struct kiln_err e = { 0 };

	snprintf(dir, sizeof(dir), "%s", fixture("pipeline/"));
	strncat(dir, name, sizeof(dir) - strlen(dir) - 1);
	for (i = 0; i < sizeof(default_predefined) / sizeof(default_predefined[0]); i++)
		predefined[n_pre++] = default_predefined[i];
	snprintf(path, sizeof(path), "%s/options", dir);
	opts = slurp(path);
	for (line = opts ? strtok_r(opts, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "variable ", 9)) {
			variables[n_var++] = line + 9;
		} else if (!strncmp(line, "predefined ", 11)) {
			size_t klen = strcspn(line + 11, "=");

			for (i = 0; i < n_pre; i++)
				if (!strncmp(predefined[i], line + 11, klen + 1))
					break;
			predefined[i] = line + 11;
			if (i == n_pre)
				n_pre++;
		} else if (!strncmp(line, "file ", 5)) {
			snprintf(file, sizeof(file), "%s", line + 5);
		} else if (!strncmp(line, "plan", 4)) {
			plans[n_plans++] = line[4] == ' ' ? line + 5 : "";
		} else {
			ck_abort_msg("%s/options: bad line '%s'", name, line);
		}
	}
	out.f = open_memstream(&out.text, &out.len);
	ck_assert_ptr_nonnull(out.f);
	o.repo_dir = dir;
	o.file = *file ? file : NULL;
	o.predefined = predefined;
	o.n_predefined = n_pre;
	o.variables = variables;
	o.n_variables = n_var;
	o.warn = on_warning;
	o.warn_arg = &out;
	if (pipeline_load(&o, &pl, &e)) {
		fprintf(out.f, "error: %s\n", e.msg);
		ck_assert_ptr_null(pl.arena);
		ck_assert_uint_eq(pl.n_jobs, 0);
	} else {
		pipeline_dump(&pl, out.f);
		for (i = 0; i < n_plans; i++) {
			char buf[512];

			snprintf(buf, sizeof(buf), "%s", plans[i]);
			run_plan(&pl, buf, out.f);
		}
		pipeline_free(&pl);
	}
	fclose(out.f);
	free(opts);
	return out.text;
}

/* The first line where a and b differ, for the failure message. */
static void first_difference(const char *a, const char *b, char *buf, size_t size)
{
	int line = 1;
	const char *la = a, *lb = b;

	while (*a && *a == *b) {
		if (*a == '\n') {
			line++;
			la = a + 1;
			lb = b + 1;
		}
		a++, b++;
	}
	snprintf(buf, size, "line %d:\n  got:      %.*s\n  expected: %.*s", line, (int)strcspn(la, "\n"), la,
		 (int)strcspn(lb, "\n"), lb);
}

START_TEST(golden_files)
{
	const char *name = golden[_i];
	char path[PATH_MAX + 32], diff[1200];
	char *got = render(name), *expect;

	snprintf(path, sizeof(path), "%s/expected.txt", fixture("pipeline/"));
	snprintf(path, sizeof(path), "%s", fixture("pipeline/"));
	strncat(path, name, sizeof(path) - strlen(path) - 1);
	strncat(path, "/expected.txt", sizeof(path) - strlen(path) - 1);
	if (getenv("KILN_GOLDEN_UPDATE")) {
		FILE *f = fopen(path, "w");

		ck_assert_ptr_nonnull(f);
		fputs(got, f);
		fclose(f);
	}
	expect = slurp(path);
	ck_assert_msg(expect != NULL, "%s: cannot read %s", name, path);
	if (strcmp(got, expect)) {
		first_difference(got, expect, diff, sizeof(diff));
		ck_abort_msg("%s: output differs from expected.txt at %s", name, diff);
	}
	free(got);
	free(expect);
}
END_TEST

static void load_fixture(const char *name, struct pipeline *pl, const char *const *vars, size_t n_vars)
{
	struct pipeline_opts o = { 0 };
	struct kiln_err e = { 0 };
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", fixture("pipeline/"));
	strncat(dir, name, sizeof(dir) - strlen(dir) - 1);
	o.repo_dir = dir;
	o.predefined = default_predefined;
	o.n_predefined = sizeof(default_predefined) / sizeof(default_predefined[0]);
	o.variables = vars;
	o.n_variables = n_vars;
	ck_assert_msg(pipeline_load(&o, pl, &e) == KILN_OK, "%s: %s", name, e.msg);
}

START_TEST(job_api)
{
	struct pipeline pl;
	const struct pipeline_job *j;
	ssize_t i;

	load_fixture("parallel", &pl, NULL, 0);
	i = pipeline_find(&pl, "test: [aws, app1]");
	ck_assert_int_ge(i, 0);
	j = &pl.jobs[i];
	ck_assert_str_eq(j->group, "test");
	ck_assert_str_eq(pipeline_job_var(j, "PROVIDER"), "aws");
	ck_assert_str_eq(pipeline_job_var(j, "STACK"), "app1");
	ck_assert_str_eq(pipeline_job_var(j, "CI_NODE_INDEX"), "2");
	ck_assert_str_eq(pipeline_job_var(j, "CI_NODE_TOTAL"), "5");
	ck_assert_str_eq(pipeline_job_var(j, "CI_JOB_NAME_SLUG"), "test-aws-app1");
	ck_assert_str_eq(pipeline_job_var(j, "CI_COMMIT_SHA"), "0123456789abcdef0123456789abcdef01234567");
	ck_assert_ptr_null(pipeline_job_var(j, "NOPE"));
	ck_assert_int_eq(pipeline_find(&pl, "test"), -1);
	ck_assert_str_eq(pipeline_when_name(PL_ON_FAILURE), "on_failure");
	pipeline_free(&pl);
	ck_assert_ptr_null(pl.arena);
	pipeline_free(&pl); /* twice is fine */
}
END_TEST

START_TEST(plan_readiness)
{
	static const char *const manual[] = { "approve" };
	struct pipeline pl;
	struct pipeline_plan plan;
	struct kiln_err e = { 0 };
	bool done[16] = { false };
	size_t i;

	load_fixture("needs", &pl, NULL, 0);
	ck_assert_int_eq(pipeline_plan(&pl, NULL, 0, false, manual, 1, &plan, &e), KILN_OK);
	ck_assert_uint_eq(plan.n, 9);
	/* build-a, build-b and lint (needs: []) can start at once */
	ck_assert(pipeline_step_ready(&plan, 0, done));
	ck_assert(pipeline_step_ready(&plan, 1, done));
	ck_assert(pipeline_step_ready(&plan, 2, done));
	ck_assert(!pipeline_step_ready(&plan, 3, done));
	done[0] = true;
	ck_assert(!pipeline_step_ready(&plan, 3, done)); /* test-a needs build-b too */
	done[1] = true;
	ck_assert(pipeline_step_ready(&plan, 3, done));
	ck_assert(pipeline_step_ready(&plan, 5, done));  /* test-c: stage build done */
	ck_assert(!pipeline_step_ready(&plan, 8, done)); /* report: every earlier stage */
	for (i = 0; i < 8; i++)
		done[i] = true;
	ck_assert(pipeline_step_ready(&plan, 8, done));
	pipeline_plan_free(&plan);
	ck_assert_ptr_null(plan.steps);
	ck_assert_int_eq(pipeline_plan(&pl, (const char *const[]){ "nope" }, 1, false, NULL, 0, &plan, &e),
			 KILN_E_NOTFOUND);
	ck_assert_str_eq(e.msg, "no job named 'nope'");
	ck_assert_int_eq(pipeline_plan(&pl, NULL, 0, false, (const char *const[]){ "x" }, 1, &plan, &e),
			 KILN_E_NOTFOUND);
	ck_assert_str_eq(e.msg, "--manual 'x': no such job");
	pipeline_free(&pl);
}
END_TEST

static int exists_calls;

static enum kiln_rc fake_exists(void *arg, const char *pattern, bool *found, struct kiln_err *e)
{
	(void)e;
	exists_calls++;
	*found = !strcmp(pattern, (const char *)arg);
	return KILN_OK;
}

START_TEST(exists_callback)
{
	struct pipeline_opts o = { 0 };
	struct pipeline pl;
	struct kiln_err e = { 0 };
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", fixture("pipeline/rules"));
	o.repo_dir = dir;
	o.exists = fake_exists;
	o.exists_arg = (void *)"**/*.rs";
	exists_calls = 0;
	ck_assert_int_eq(pipeline_load(&o, &pl, &e), KILN_OK);
	ck_assert_int_gt(exists_calls, 0);
	/* The callback says no Dockerfile but some Rust. */
	ck_assert(pl.jobs[pipeline_find(&pl, "exists-yes")].skipped == false);
	ck_assert(pl.jobs[pipeline_find(&pl, "exists-no")].skipped == false);
	ck_assert(pl.jobs[pipeline_find(&pl, "exists-var")].skipped == true);
	pipeline_free(&pl);
}
END_TEST

/* A scratch repository under the build tree holding one .gitlab-ci.yml. */
static const char *scratch(const char *text, size_t len)
{
	static char dir[PATH_MAX];
	char path[PATH_MAX + 32];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/kiln-pipeline-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/.gitlab-ci.yml", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	fclose(f);
	return dir;
}

static void scratch_done(const char *dir)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/.gitlab-ci.yml", dir);
	unlink(path);
	rmdir(dir);
}

START_TEST(alias_bomb_is_bounded)
{
	static const char bomb[] =
		"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
		"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
		"f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
	const char *dir = scratch(bomb, sizeof(bomb) - 1);
	struct pipeline_opts o = { .repo_dir = dir };
	struct pipeline pl;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(pipeline_load(&o, &pl, &e), KILN_E_LIMIT);
	ck_assert_str_eq(e.msg, "CI configuration too large: more than 400000 YAML nodes (after expanding "
				"aliases, extends and references)");
	scratch_done(dir);
}
END_TEST

START_TEST(big_file_is_refused)
{
	size_t len = (1u << 20) + 10;
	char *text = malloc(len);
	const char *dir;
	struct pipeline_opts o = { 0 };
	struct pipeline pl;
	struct kiln_err e = { 0 };

	memset(text, '#', len);
	dir = scratch(text, len);
	o.repo_dir = dir;
	ck_assert_int_eq(pipeline_load(&o, &pl, &e), KILN_E_LIMIT);
	ck_assert_str_eq(e.msg, ".gitlab-ci.yml: larger than 1 MiB");
	scratch_done(dir);
	free(text);
}
END_TEST

START_TEST(missing_file)
{
	struct pipeline_opts o = { 0 };
	struct pipeline pl;
	struct kiln_err e = { 0 };

	o.repo_dir = fixture("pipeline/basic");
	o.file = "./nope.yml";
	ck_assert_int_eq(pipeline_load(&o, &pl, &e), KILN_E_NOTFOUND);
	ck_assert_str_eq(e.msg, "nope.yml: no such file");
	o.file = NULL;
	o.variables = (const char *const[]){ "NOEQUALS" };
	o.n_variables = 1;
	ck_assert_int_eq(pipeline_load(&o, &pl, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "pipeline variable 'NOEQUALS': expected KEY=VALUE");
}
END_TEST

START_TEST(yaml_tree)
{
	static const char text[] =
		"m: &m {a: 1, b: 2}\n"
		"x:\n"
		"  <<: *m\n"
		"  b: 3\n"
		"  c: ~\n"
		"  d: \"~\"\n"
		"  e: !!str true\n"
		"  f: yes\n"
		"  g: !reference [m, a]\n";
	struct cy_arena *a = cy_arena_new();
	struct cy_node *root, *x;
	struct kiln_err e = { 0 };
	bool b;
	long n;

	ck_assert_int_eq(cy_parse(a, "t.yml", text, sizeof(text) - 1, &root, NULL, NULL, &e), KILN_OK);
	x = cy_get(root, "x");
	ck_assert_uint_eq(x->n, 7);
	ck_assert_str_eq(x->pairs[0].key, "a");
	ck_assert_str_eq(x->pairs[1].key, "b");
	ck_assert_str_eq(cy_get(x, "b")->str, "3");
	ck_assert_uint_eq(cy_get(x, "b")->line, 4);
	ck_assert_uint_eq(cy_get(x, "a")->line, 1);
	ck_assert(cy_int(cy_get(x, "a"), &n) && n == 1);
	ck_assert_int_eq(cy_get(x, "c")->kind, CY_NULL);
	ck_assert_int_eq(cy_get(x, "d")->kind, CY_SCALAR);
	ck_assert(!cy_bool(cy_get(x, "e"), &b));
	ck_assert(cy_bool(cy_get(x, "f"), &b) && b);
	ck_assert(cy_get(x, "g")->ref);
	ck_assert_str_eq(cy_get(x, "g")->file, "t.yml");
	cy_arena_free(&a);
}
END_TEST

static void keep_warning(void *arg, const char *msg)
{
	snprintf(arg, 256, "%s", msg);
}

START_TEST(yaml_spec_header)
{
	static const char text[] = "spec:\n  inputs:\n    env: {}\n---\nbuild:\n  script: make\n";
	static const char three[] = "a: 1\n---\nb: 2\n---\nc: 3\n";
	struct cy_arena *a = cy_arena_new();
	struct cy_node *root;
	struct kiln_err e = { 0 };
	char warning[256] = "";

	ck_assert_int_eq(cy_parse(a, "t.yml", text, sizeof(text) - 1, &root, keep_warning, warning, &e), KILN_OK);
	ck_assert_ptr_nonnull(cy_get(root, "build"));
	ck_assert_uint_eq(cy_get(root, "build")->line, 6);
	ck_assert_str_eq(warning, "t.yml:1: spec: header (inputs) is not supported by kiln (ignored)");
	ck_assert_int_eq(cy_parse(a, "t.yml", three, sizeof(three) - 1, &root, NULL, NULL, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "t.yml:5: more than two YAML documents");
	ck_assert_int_eq(cy_parse(a, "t.yml", "x: !!binary aGk=\n", 17, &root, keep_warning, warning, &e), KILN_OK);
	ck_assert_int_eq(cy_parse(a, "t.yml", "x: !custom 1\n", 13, &root, keep_warning, warning, &e), KILN_OK);
	ck_assert_str_eq(warning, "t.yml:1: unknown YAML tag '!custom' (ignored)");
	ck_assert_int_eq(cy_parse(a, "t.yml", "x: !reference y\n", 16, &root, NULL, NULL, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "t.yml:1: !reference must be a list like !reference [job, key]");
	cy_arena_free(&a);
}
END_TEST

Suite *pipeline_suite(void)
{
	Suite *s = suite_create("pipeline");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, golden_files, 0, (int)(sizeof(golden) / sizeof(golden[0])));
	tcase_add_test(tc, job_api);
	tcase_add_test(tc, plan_readiness);
	tcase_add_test(tc, exists_callback);
	tcase_add_test(tc, alias_bomb_is_bounded);
	tcase_add_test(tc, big_file_is_refused);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, yaml_tree);
	tcase_add_test(tc, yaml_spec_header);
	suite_add_tcase(s, tc);
	return s;
}
