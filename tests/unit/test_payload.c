#include <jansson.h>
#include <string.h>

#include "job/jobspec.h"
#include "job/payload.h"
#include "tests/unit/suites.h"

START_TEST(parses_gitlab_shape)
{
	struct job_payload p;
	struct kiln_err e = { 0 };

	ck_assert_msg(payload_load(fixture("payload/good.json"), &p, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(p.id, 10);
	ck_assert_str_eq(p.token, "job-token");
	ck_assert_str_eq(p.job_name, "test-job");
	ck_assert_str_eq(p.stage, "test");
	ck_assert_str_eq(p.sha, "0123456789abcdef0123456789abcdef01234567");
	ck_assert_str_eq(p.repo_url, "https://gitlab-ci-token:testTokenHere1234@gitlab.example.com/test/test-project.git");
	ck_assert_int_eq(p.depth, 20);
	ck_assert_uint_eq(p.n_refspecs, 2);
	ck_assert_int_eq(p.timeout, 3600);
	ck_assert_str_eq(p.image, "ruby:3.3");
	ck_assert_uint_eq(p.n_steps, 2);
	ck_assert_str_eq(p.steps[0].name, "script");
	ck_assert_uint_eq(p.steps[0].n_script, 2);
	ck_assert_str_eq(p.steps[0].script[1], "ls -ls");
	ck_assert_str_eq(p.steps[1].when, "always");
	ck_assert(p.steps[1].allow_failure);
	ck_assert_uint_eq(p.n_vars, 3);
	ck_assert(p.vars[0].file && p.vars[0].raw);
	ck_assert(p.vars[1].masked);
	ck_assert_str_eq(payload_var(&p, "SECRET"), "s3cr3t-value");
	ck_assert_ptr_null(payload_var(&p, "NOPE"));
	payload_free(&p);
}
END_TEST

static const struct {
	const char *file, *error;
} bad[] = {
	{ "payload/gitlab-test.json", "payload: git_info.sha: must be a full commit id (40 or 64 hex digits)" },
	{ "payload/no-sha.json", "payload: git_info.sha: missing" },
	{ "payload/short-sha.json", "payload: git_info.sha: must be a full commit id (40 or 64 hex digits)" },
	{ "payload/no-steps.json", "payload: steps: missing" },
	{ "payload/bad-when.json", "payload: steps[0].when: must be on_success, on_failure or always" },
	{ "payload/script-not-list.json", "payload: steps[0].script: must be a list of command lines" },
	/* (the step's script list was leaked: LSan in the sanitizer run) */
	{ "payload/script-line-not-string.json", "payload: steps[0].script[1]: must be a string" },
	{ "payload/bad-var-key.json", "payload: variables[3].key: must be letters, digits and '_'" },
	{ "payload/var-not-object.json", "payload: variables[3]: must be an object" },
	{ "payload/no-job-info.json", "payload: job_info: missing" },
	{ "payload/bad-timeout.json", "payload: runner_info.timeout: must be an integer in 1..2592000" },
	{ "payload/id-string.json", "payload: id: must be an integer in 1..4611686018427387904" },
	{ "payload/truncated.json", "payload:1:" },
};

START_TEST(rejects_naming_the_field)
{
	struct job_payload p;
	struct kiln_err e = { 0 };
	const char *path = fixture(bad[_i].file);
	const char *msg;

	ck_assert_int_ne(payload_load(path, &p, &e), KILN_OK);
	/* "<path>: payload: <field>: <problem>" */
	ck_assert_msg(strncmp(e.msg, path, strlen(path)) == 0, "%s", e.msg);
	msg = e.msg + strlen(path) + 2;
	ck_assert_msg(strncmp(msg, bad[_i].error, strlen(bad[_i].error)) == 0, "%s: got '%s'", bad[_i].file, msg);
	ck_assert_ptr_null(strchr(e.msg, '\n'));
}
END_TEST

START_TEST(jobspec_env_files_steps)
{
	struct job_payload p;
	struct kiln_err e = { 0 };
	char *spec, project[64];
	json_t *o, *env, *pair, *files;
	const char *last_job_name = NULL, *project_dir = NULL, *ref_name = NULL;
	size_t i;

	ck_assert_int_eq(payload_load(fixture("payload/good.json"), &p, &e), KILN_OK);
	jobspec_project_path(&p, project, sizeof(project));
	ck_assert_str_eq(project, "group/test-project");
	ck_assert_int_eq(jobspec_build(&p, &spec, &e), KILN_OK);
	o = json_loads(spec, 0, NULL);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(json_string_value(json_object_get(o, "workdir")), "/builds/group/test-project");
	env = json_object_get(o, "env");
	json_array_foreach(env, i, pair) {
		const char *k = json_string_value(json_array_get(pair, 0)), *v = json_string_value(json_array_get(pair, 1));
		if (!strcmp(k, "CI_JOB_NAME"))
			last_job_name = v;
		if (!strcmp(k, "CI_PROJECT_DIR"))
			project_dir = v;
		if (!strcmp(k, "CI_REF_NAME"))
			ref_name = v;
	}
	/* The payload's value comes after kiln's default, so it wins. */
	ck_assert_str_eq(last_job_name, "from-payload");
	ck_assert_str_eq(project_dir, "/builds/group/test-project");
	/* A file variable holds the path of a file with its value. */
	ck_assert_str_eq(ref_name, "/builds/group/test-project.tmp/CI_REF_NAME");
	files = json_object_get(o, "files");
	ck_assert_uint_eq(json_array_size(files), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(files, 0), "content")), "main");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(files, 0), "mode")), 0600);
	ck_assert_uint_eq(json_array_size(json_object_get(o, "steps")), 2);
	json_decref(o);
	free(spec);
	payload_free(&p);
}
END_TEST

START_TEST(project_path_is_contained)
{
	struct job_payload p = { 0 };
	char out[64];

	p.project_path = "../../etc";
	jobspec_project_path(&p, out, sizeof(out));
	ck_assert_ptr_null(strstr(out, ".."));
	p.project_path = "/abs/path/";
	jobspec_project_path(&p, out, sizeof(out));
	ck_assert_str_eq(out, "abs/path");
	p.project_path = "a b$c";
	jobspec_project_path(&p, out, sizeof(out));
	ck_assert_str_eq(out, "a_b_c");
	p.project_path = NULL;
	jobspec_project_path(&p, out, sizeof(out));
	ck_assert_str_eq(out, "project");
}
END_TEST

Suite *payload_suite(void)
{
	Suite *s = suite_create("payload");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, parses_gitlab_shape);
	tcase_add_loop_test(tc, rejects_naming_the_field, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, jobspec_env_files_steps);
	tcase_add_test(tc, project_path_is_contained);
	suite_add_tcase(s, tc);
	return s;
}
