/* Job semantics as gitlab-runner has them (issue #15): variable expansion
 * and names, CI_DEBUG_TRACE, jobs GitLab assigns although kiln cannot run
 * them, cache keys as folder names. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gitlab/artifacts.h"
#include "gitlab/client.h"
#include "job/jobspec.h"
#include "job/payload.h"
#include "lib/varexpand.h"
#include "tests/unit/suites.h"

static const char *go_env(void *arg, const char *name, size_t len)
{
	static const char *const kv[][2] = { { "HOME", "/usr/gopher" }, { "H", "(Value of H)" }, { "home_1", "/usr/foo" } };
	size_t i;

	(void)arg;
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		if (strlen(kv[i][0]) == len && !memcmp(kv[i][0], name, len))
			return kv[i][1];
	return NULL;
}

/* Go's os.Expand with gitlab-runner's Get ($$ is "$", the rest undefined). */
static const struct {
	const char *in, *out;
} go_cases[] = {
	{ "", "" },
	{ "$HOME", "/usr/gopher" },
	{ "${HOME}", "/usr/gopher" },
	{ "${H}OME", "(Value of H)OME" },
	{ "$home_1", "/usr/foo" },
	{ "A$$$#$1$H$home_1*B", "A$(Value of H)/usr/foo*B" },
	{ "$1FOO", "FOO" },
	{ "x$*y$?z$-", "xyz" },
	{ "a$", "a$" },
	{ "$/x $ y", "$/x $ y" },
	{ "${}x", "x" },
	{ "${HOME", "HOME" },
	{ "${A B}c", "c" },
	{ "${1}", "" },
	{ "$UNDEFINED-x", "-x" },
};

START_TEST(varexpand_go_names)
{
	char *out = NULL;
	size_t len = 0, cap = 0;

	ck_assert_int_eq(var_expand_into(go_cases[_i].in, VAR_GO_NAMES, go_env, NULL, &out, &len, &cap, 4096), KILN_OK);
	ck_assert_msg(!strcmp(out, go_cases[_i].out), "'%s': got '%s', want '%s'", go_cases[_i].in, out,
		      go_cases[_i].out);
	free(out);
}
END_TEST

static const char payload_fmt[] =
	"{\"id\": 7, \"token\": \"jt\", \"job_info\": {\"name\": \"j\", \"project_full_path\": \"g/p\"},"
	" \"git_info\": {\"repo_url\": \"https://x/g/p.git\", \"sha\": \"0123456789abcdef0123456789abcdef01234567\"},"
	" \"steps\": [{\"name\": \"script\", \"script\": [\"true\"]}], %s}";

static void parse(struct job_payload *p, const char *extra)
{
	char text[4096];
	struct kiln_err e = { 0 };

	snprintf(text, sizeof(text), payload_fmt, extra);
	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
}

/* The last value of name in the spec's env, or NULL. */
static const char *env_of(json_t *spec, const char *name)
{
	json_t *pair;
	const char *v = NULL;
	size_t i;

	json_array_foreach(json_object_get(spec, "env"), i, pair)
		if (!strcmp(json_string_value(json_array_get(pair, 0)), name))
			v = json_string_value(json_array_get(pair, 1));
	return v;
}

static json_t *spec_of(const char *extra)
{
	struct job_payload p;
	struct kiln_err e = { 0 };
	char *text;
	json_t *o;

	parse(&p, extra);
	ck_assert_msg(jobspec_build(&p, &text, &e) == KILN_OK, "%s", e.msg);
	o = json_loads(text, 0, NULL);
	ck_assert_ptr_nonnull(o);
	free(text);
	payload_free(&p);
	return o;
}

START_TEST(jobspec_expands_like_gitlab_runner)
{
	json_t *o = spec_of(
		"\"variables\": ["
		" {\"key\": \"BUILD\", \"value\": \"$CI_PROJECT_DIR/build\"},"
		" {\"key\": \"RAWV\", \"value\": \"$CI_PROJECT_DIR\", \"raw\": true},"
		" {\"key\": \"CERT\", \"value\": \"pem for $CI_JOB_ID\", \"file\": true},"
		" {\"key\": \"CERT_AT\", \"value\": \"--cacert ${CERT}\"},"
		" {\"key\": \"DOLLAR\", \"value\": \"a$$b\"},"
		" {\"key\": \"UNDEF\", \"value\": \"x${NOPE}y\"},"
		" {\"key\": \"CHAIN\", \"value\": \"$BUILD\"},"
		" {\"key\": \"DIRS\", \"value\": \"$CI_BUILDS_DIR:$CI_CONCURRENT_ID\"}]");
	json_t *f = json_array_get(json_object_get(o, "files"), 0);

	ck_assert_str_eq(env_of(o, "BUILD"), "/builds/g/p/build");
	ck_assert_str_eq(env_of(o, "RAWV"), "$CI_PROJECT_DIR");
	ck_assert_str_eq(env_of(o, "CERT"), "/builds/g/p.tmp/CERT");
	ck_assert_str_eq(env_of(o, "CERT_AT"), "--cacert /builds/g/p.tmp/CERT");
	ck_assert_str_eq(json_string_value(json_object_get(f, "path")), "/builds/g/p.tmp/CERT");
	ck_assert_str_eq(json_string_value(json_object_get(f, "content")), "pem for 7");
	ck_assert_str_eq(env_of(o, "DOLLAR"), "a$b");
	ck_assert_str_eq(env_of(o, "UNDEF"), "xy");
	/* One pass against the values as defined, as gitlab-runner's Expand. */
	ck_assert_str_eq(env_of(o, "CHAIN"), "$CI_PROJECT_DIR/build");
	ck_assert_str_eq(env_of(o, "DIRS"), "/builds:0");
	ck_assert_str_eq(env_of(o, "CI_CONCURRENT_PROJECT_ID"), "0");
	ck_assert_ptr_nonnull(env_of(o, "CI_RUNNER_REVISION"));
	ck_assert_int_eq(strncmp(env_of(o, "CI_RUNNER_EXECUTABLE_ARCH"), "linux/", 6), 0);
	ck_assert_ptr_null(json_object_get(o, "debug_trace"));
	json_decref(o);
}
END_TEST

START_TEST(variable_key_may_start_with_a_digit)
{
	json_t *o = spec_of("\"variables\": [{\"key\": \"1PASSWORD_URL\", \"value\": \"x\"}, {\"key\": \"2\", \"value\": \"y\"}]");
	struct job_payload p;
	struct kiln_err e = { 0 };
	char text[1024];

	ck_assert_str_eq(env_of(o, "1PASSWORD_URL"), "x");
	ck_assert_str_eq(env_of(o, "2"), "y");
	json_decref(o);
	snprintf(text, sizeof(text), payload_fmt, "\"variables\": [{\"key\": \"A-B\", \"value\": \"x\"}]");
	ck_assert_int_ne(payload_parse(text, strlen(text), &p, &e), KILN_OK);
	ck_assert_str_eq(e.msg, "payload: variables[0].key: must be letters, digits and '_'");
}
END_TEST

START_TEST(debug_trace_reaches_the_guest)
{
	static const char *const on[] = { "true", "1", "TRUE", "t" }, *const off[] = { "false", "yes", "2", "" };
	char extra[256];
	size_t i;

	for (i = 0; i < 4; i++) {
		json_t *o;

		snprintf(extra, sizeof(extra), "\"variables\": [{\"key\": \"CI_DEBUG_TRACE\", \"value\": \"%s\"}]", on[i]);
		o = spec_of(extra);
		ck_assert_msg(json_is_true(json_object_get(o, "debug_trace")), "%s", on[i]);
		json_decref(o);
		snprintf(extra, sizeof(extra), "\"variables\": [{\"key\": \"CI_DEBUG_TRACE\", \"value\": \"%s\"}]", off[i]);
		o = spec_of(extra);
		ck_assert_msg(!json_object_get(o, "debug_trace"), "%s", off[i]);
		json_decref(o);
	}
}
END_TEST

/* A variable added once the guest is ready (job_opts.ready): raw, in the
 * environment beside the rest; a spec without one is refused. */
START_TEST(jobspec_takes_a_late_variable)
{
	struct job_payload p;
	struct kiln_err e = { 0 };
	char *text, *late;
	json_t *o;

	parse(&p, "\"variables\": [{\"key\": \"A\", \"value\": \"1\"}]");
	ck_assert_msg(jobspec_build(&p, &text, &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(jobspec_add_env(text, "LATE", "$A \"x\"", &late, &e) == KILN_OK, "%s", e.msg);
	o = json_loads(late, 0, NULL);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(env_of(o, "LATE"), "$A \"x\"");
	ck_assert_str_eq(env_of(o, "A"), "1");
	json_decref(o);
	free(late);
	free(text);
	payload_free(&p);
	ck_assert_int_eq(jobspec_add_env("{\"workdir\": \"/b\"}", "K", "v", &late, &e), KILN_E_SYNTAX);
	ck_assert_ptr_null(late);
	ck_assert_int_eq(jobspec_add_env("[", "K", "v", &late, &e), KILN_E_SYNTAX);
}
END_TEST

/* An exec spec (GitHub's run.sh): the env and workdir stay, the steps go,
 * argv, user and stdin arrive as the agent reads them. */
START_TEST(jobspec_becomes_an_exec_spec)
{
	static const char *const argv[] = { "./run.sh", "--jitconfig", NULL };
	struct jobspec_exec x = { .argv = argv, .user = "runner", .add_user = true, .stdin_data = "YmxvYg==" };
	struct job_payload p;
	struct kiln_err e = { 0 };
	char *text, *ex;
	json_t *o, *a;

	parse(&p, "\"variables\": [{\"key\": \"A\", \"value\": \"1\"}]");
	ck_assert_msg(jobspec_build(&p, &text, &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(jobspec_exec(text, &x, &ex, &e) == KILN_OK, "%s", e.msg);
	o = json_loads(ex, 0, NULL);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(json_string_value(json_object_get(o, "mode")), "exec");
	a = json_object_get(o, "argv");
	ck_assert_int_eq(json_array_size(a), 2);
	ck_assert_str_eq(json_string_value(json_array_get(a, 0)), "./run.sh");
	ck_assert_str_eq(json_string_value(json_array_get(a, 1)), "--jitconfig");
	ck_assert_str_eq(json_string_value(json_object_get(o, "user")), "runner");
	ck_assert(json_is_true(json_object_get(o, "add_user")));
	ck_assert_str_eq(json_string_value(json_object_get(o, "stdin")), "YmxvYg==");
	ck_assert_ptr_null(json_object_get(o, "steps"));
	ck_assert_str_eq(env_of(o, "A"), "1");
	ck_assert_ptr_null(env_of(o, "YmxvYg=="));
	ck_assert(json_string_value(json_object_get(o, "workdir"))[0] == '/');
	json_decref(o);
	free(ex);
	x.workdir = "/home/runner/actions-runner";
	x.add_user = false;
	ck_assert_msg(jobspec_exec(text, &x, &ex, &e) == KILN_OK, "%s", e.msg);
	o = json_loads(ex, 0, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(o, "workdir")), "/home/runner/actions-runner");
	ck_assert_ptr_null(json_object_get(o, "add_user"));
	json_decref(o);
	free(ex);
	free(text);
	payload_free(&p);
	ck_assert_int_eq(jobspec_exec("[", &x, &ex, &e), KILN_E_SYNTAX);
	ck_assert_ptr_null(ex);
}
END_TEST

START_TEST(unsupported_features_are_named)
{
	static const struct {
		const char *extra, *says;
	} cases[] = {
		{ "\"services\": [{\"name\": \"postgres:16\", \"executor_opts\": {\"docker\": {\"user\": \"1\"}}}]",
		  "services:docker:" },
		{ "\"services\": [{\"name\": \"postgres:16\"}]", NULL },
		{ "\"secrets\": {\"DB\": {\"vault\": {\"path\": \"x\"}}}", "secrets:" },
		{ "\"image\": {\"name\": \"alpine\", \"executor_opts\": {\"docker\": {\"user\": \"1\"}}}", "executor options" },
		{ "\"services\": [], \"secrets\": null, \"image\": {\"name\": \"alpine\"}", NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct job_payload p;
		const char *why;

		parse(&p, cases[i].extra);
		why = payload_unsupported(&p);
		if (cases[i].says)
			ck_assert_msg(why && strstr(why, cases[i].says), "%s: %s", cases[i].extra, why ? why : "(none)");
		else
			ck_assert_msg(!why, "%s: %s", cases[i].extra, why);
		payload_free(&p);
	}
	/* Sent as such when the job lists it, else as a system failure. */
	{
		const char *listed[] = { "runner_unsupported" };

		ck_assert_str_eq(gl_failure_reason("runner_unsupported", listed, 1), "runner_unsupported");
		ck_assert_str_eq(gl_failure_reason("runner_unsupported", NULL, 0), "runner_system_failure");
	}
}
END_TEST

START_TEST(cache_keys_become_safe_folders)
{
	static const struct {
		const char *key, *folder;
	} cases[] = {
		{ "deps-0-protected", "deps-0-protected" },
		{ "v1.2_x", "v1.2_x" },
		{ "deps-feature/login-non_protected", "deps-feature%2Flogin-non_protected" },
		{ "../../etc-non_protected", "%2E.%2F..%2Fetc-non_protected" },
		{ ".", "%2E" },
		{ "..", "%2E." },
		{ "a%2Fb", "a%252Fb" },
		{ "a b\\c", "a%20b%5Cc" },
	};
	char folder[256], key[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert(gla_cache_folder(cases[i].key, folder, sizeof(folder)));
		ck_assert_msg(!strcmp(folder, cases[i].folder), "%s: got %s", cases[i].key, folder);
	}
	ck_assert(!gla_cache_folder("", folder, sizeof(folder)));
	/* Too long once escaped: the hash, still one safe name. */
	memset(key, '/', 100);
	key[100] = '\0';
	ck_assert(gla_cache_folder(key, folder, sizeof(folder)));
	ck_assert_uint_eq(strlen(folder), 66);
	ck_assert_int_eq(strncmp(folder, "%h", 2), 0);
	ck_assert_ptr_null(strchr(folder, '/'));
}
END_TEST

Suite *jobvars_suite(void)
{
	Suite *s = suite_create("jobvars");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, varexpand_go_names, 0, sizeof(go_cases) / sizeof(go_cases[0]));
	tcase_add_test(tc, jobspec_expands_like_gitlab_runner);
	tcase_add_test(tc, variable_key_may_start_with_a_digit);
	tcase_add_test(tc, debug_trace_reaches_the_guest);
	tcase_add_test(tc, jobspec_takes_a_late_variable);
	tcase_add_test(tc, jobspec_becomes_an_exec_spec);
	tcase_add_test(tc, unsupported_features_are_named);
	tcase_add_test(tc, cache_keys_become_safe_folders);
	suite_add_tcase(s, tc);
	return s;
}
