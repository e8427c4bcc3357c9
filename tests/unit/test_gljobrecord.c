/* Job records (gitlab/jobrecord): saved payloads are scrubbed of secrets,
 * the crash journal finds orphans, old payloads are pruned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gitlab/jobrecord.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(payload_scrubbing)
{
	static const char text[] =
		"{\"id\": 5, \"token\": \"glcbt-jobtoken-123\","
		" \"git_info\": {\"repo_url\": \"https://gitlab-ci-token:glcbt-jobtoken-123@gitlab.example/g/p.git\"},"
		" \"variables\": ["
		"  {\"key\": \"CI_JOB_TOKEN\", \"value\": \"glcbt-jobtoken-123\"},"
		"  {\"key\": \"CI_REPOSITORY_URL\", \"value\": \"https://gitlab-ci-token:xyz@gitlab.example/g/p.git\"},"
		"  {\"key\": \"DEPLOY_KEY\", \"value\": \"very-secret-key\", \"masked\": true},"
		"  {\"key\": \"KUBECONFIG\", \"value\": \"apiVersion: v1\", \"file\": true},"
		"  {\"key\": \"MSG\", \"value\": \"uses very-secret-key inside\"},"
		"  {\"key\": \"PLAIN\", \"value\": \"hello\"}],"
		" \"credentials\": [{\"type\": \"registry\", \"url\": \"https://u:p@registry.example\","
		"  \"username\": \"gitlab-ci-token\", \"password\": \"glcbt-jobtoken-123\"}],"
		" \"dependencies\": [{\"id\": 4, \"name\": \"build\", \"token\": \"glcbt-other-token\"}]}";
	json_t *doc = json_loads(text, 0, NULL), *vars;
	char *dump;

	ck_assert_ptr_nonnull(doc);
	jobrec_scrub(doc);
	vars = json_object_get(doc, "variables");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "token")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "git_info"), "repo_url")),
			 "https://gitlab.example/g/p.git");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 0), "value")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 1), "value")),
			 "https://gitlab.example/g/p.git");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 2), "value")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 3), "value")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 4), "value")), "uses [MASKED] inside");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 5), "value")), "hello");
	dump = json_dumps(doc, 0);
	ck_assert_ptr_null(strstr(dump, "jobtoken"));
	ck_assert_ptr_null(strstr(dump, "other-token"));
	ck_assert_ptr_null(strstr(dump, "very-secret"));
	ck_assert_ptr_null(strstr(dump, "u:p@"));
	ck_assert_ptr_nonnull(strstr(dump, "gitlab-ci-token"));
	free(dump);
	json_decref(doc);
}
END_TEST

START_TEST(journal_orphans)
{
	struct jobrec_running r = { .id = 77, .sent = 123, .crc = 0xdeadbeef }, *list;
	struct kiln_err e = { 0 };
	char path[160], cmd[160], *d = test_tmpdir();
	size_t n;
	pid_t child;
	json_t *o;

	snprintf(r.token, sizeof(r.token), "glcbt-t");
	snprintf(r.url, sizeof(r.url), "https://gitlab.example");
	snprintf(r.runner, sizeof(r.runner), "r1");
	ck_assert_msg(jobrec_journal_write(d, &r, &e) == KILN_OK, "%s", e.msg);
	/* Ours, and we live: no orphan. */
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 0);
	free(list);
	/* Written by a process that is gone. */
	child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	snprintf(path, sizeof(path), "%s/running/77.json", d);
	o = json_load_file(path, 0, NULL);
	json_object_set_new(o, "pid", json_integer(child));
	json_dump_file(o, path, 0);
	json_decref(o);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(list[0].id, 77);
	ck_assert_uint_eq(list[0].sent, 123);
	ck_assert_uint_eq(list[0].crc, 0xdeadbeef);
	ck_assert_str_eq(list[0].token, "glcbt-t");
	ck_assert_str_eq(list[0].state, "");
	free(list);
	/* The job's outcome, once it ended; a state kiln never writes is none. */
	o = json_load_file(path, 0, NULL);
	json_object_set_new(o, "state", json_string("failed"));
	json_object_set_new(o, "failure_reason", json_string("script_failure"));
	json_object_set_new(o, "exit_code", json_integer(3));
	json_dump_file(o, path, 0);
	json_object_set_new(o, "state", json_string("running"));
	json_dump_file(o, path, 0);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].state, "");
	ck_assert_str_eq(list[0].failure_reason, "");
	free(list);
	json_object_set_new(o, "state", json_string("failed"));
	json_dump_file(o, path, 0);
	json_decref(o);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].state, "failed");
	ck_assert_str_eq(list[0].failure_reason, "script_failure");
	ck_assert_int_eq(list[0].exit_code, 3);
	free(list);
	jobrec_journal_remove(d, 77);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 0);
	free(list);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(payload_pruning)
{
	static const long long ids[] = { 3, 10, 1, 7, 20 };
	struct kiln_err e = { 0 };
	char path[200], cmd[160], *d = test_tmpdir();
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		ck_assert_msg(jobrec_save_payload(d, ids[i], "{}", 2, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/payloads/notes.json", d);
	fclose(fopen(path, "w"));
	ck_assert_uint_eq(jobrec_prune_payloads(d, 10), 0);
	ck_assert_uint_eq(jobrec_prune_payloads(d, 2), 3);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		jobrec_payload_path(d, ids[i], path, sizeof(path));
		ck_assert_int_eq(access(path, F_OK) == 0, ids[i] >= 10);
	}
	snprintf(path, sizeof(path), "%s/payloads/notes.json", d);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *gljobrecord_suite(void)
{
	Suite *s = suite_create("gljobrecord");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, payload_scrubbing);
	tcase_add_test(tc, journal_orphans);
	tcase_add_test(tc, payload_pruning);
	suite_add_tcase(s, tc);
	return s;
}
