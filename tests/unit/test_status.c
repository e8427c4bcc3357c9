/* kiln status (runner/status.c) on a fixture state folder: a paused
 * runner, a job folder held by this process and one nobody holds, the
 * journal's failed job and a job whose kiln is gone, VMs in a fake /proc. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "gitlab/jobrecord.h"
#include "lib/paths.h"
#include "runner/status.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static void put(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	test_write_file(path, text, strlen(text), 0600);
}

START_TEST(status_of_a_host)
{
	char *top = test_tmpdir(), yml[4096], dir[PATH_MAX + 32], *text;
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	json_t *doc, *a;
	int fd;
	FILE *f;
	size_t n;

	snprintf(yml, sizeof(yml),
		 "state_dir: %s/state\ncache_dir: %s/cache\nimages_dir: %s/images\n"
		 "runners:\n  - name: one\n    url: https://a.example\n    token: glrt-one\n"
		 "  - name: two\n    url: https://b.example\n    token: glrt-two\n",
		 top, top, top);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_parse(&cfg, "c.yml", yml, strlen(yml), &e) == KILN_OK, "%s", e.msg);
	jobrec_pause_write(cfg.state_dir, "glrt-two", "two", "https://b.example", (long)time(NULL) + 600,
			   "job requests refused (403)");
	snprintf(dir, sizeof(dir), "%s/state/jobs/42.%d.1", top, (int)getpid());
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_eq(flock(fd, LOCK_EX), 0);
	snprintf(dir, sizeof(dir), "%s/state/jobs/43.999999.1", top);
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	snprintf(dir, sizeof(dir), "%s/state/running", top);
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	put(dir, "42.json", "{\"id\":42,\"runner\":\"one\",\"pid\":1,\"state\":\"\"}");
	put(dir, "40.json", "{\"id\":40,\"runner\":\"one\",\"pid\":1,\"state\":\"failed\",\"failure_reason\":\"job_execution_timeout\"}");
	put(dir, "41.json", "{\"id\":41,\"runner\":\"two\",\"pid\":999999999,\"state\":\"\"}");
	snprintf(dir, sizeof(dir), "%s/proc/100", top);
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	put(dir, "comm", "kiln-vmm\n");
	snprintf(dir, sizeof(dir), "%s/proc/101", top);
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	put(dir, "comm", "bash\n");
	snprintf(dir, sizeof(dir), "%s/cache/g/p/k", top);
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	put(dir, "cache.zip", "zip");

	snprintf(dir, sizeof(dir), "%s/proc", top);
	doc = status_collect(&cfg, dir);
	ck_assert_ptr_nonnull(doc);
	a = json_object_get(doc, "runners");
	ck_assert_int_eq(json_array_size(a), 2);
	ck_assert(json_is_false(json_object_get(json_array_get(a, 0), "paused")));
	ck_assert(json_is_true(json_object_get(json_array_get(a, 1), "paused")));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "reason")), "job requests refused (403)");
	a = json_object_get(doc, "jobs");
	ck_assert_int_eq(json_array_size(a), 1);    /* 43's folder is held by nobody */
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "id")), 42);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "runner")), "one");
	a = json_object_get(doc, "vms");
	ck_assert_int_eq(json_array_size(a), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "pid")), 100);
	a = json_object_get(doc, "errors");
	ck_assert_int_eq(json_array_size(a), 2);    /* newest first; 42 runs */
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "job")), 41);
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(json_array_get(a, 0), "error")), "died"));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "error")), "job_execution_timeout");
	ck_assert(json_integer_value(json_object_get(json_object_get(doc, "cache"), "bytes")) > 0);
	ck_assert(json_is_false(json_object_get(json_object_get(doc, "cache"), "s3")));

	/* The table names each section and the paused runner. */
	f = open_memstream(&text, &n);
	status_print(doc, false, f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, "RUNNERS (2)"));
	ck_assert_ptr_nonnull(strstr(text, "paused   https://b.example (until"));
	ck_assert_ptr_nonnull(strstr(text, "JOBS RUNNING (1)"));
	ck_assert_ptr_nonnull(strstr(text, "job 40 (one): job_execution_timeout"));
	ck_assert_ptr_nonnull(strstr(text, "s3     not configured"));
	free(text);

	/* The runner runs again: no longer paused. */
	jobrec_pause_clear(cfg.state_dir, "glrt-two");
	json_decref(doc);
	doc = status_collect(&cfg, dir);
	ck_assert(json_is_false(json_object_get(json_array_get(json_object_get(doc, "runners"), 1), "paused")));
	json_decref(doc);
	close(fd);
	kiln_config_free(&cfg);
	test_sh("rm -rf %s", top);
}
END_TEST

Suite *status_suite(void)
{
	Suite *s = suite_create("status");
	TCase *tc = tcase_create("status");

	tcase_add_test(tc, status_of_a_host);
	suite_add_tcase(s, tc);
	return s;
}
