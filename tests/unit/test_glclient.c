/* The GitLab API client (gitlab/client) against a small scripted HTTP
 * server (testutil.h): trace chunks, retries, the final update loop,
 * redirects, failure reasons and GitLab times. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gitlab/client.h"
#include "gitlab/trace.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static void client_for(struct gl_client *c, const struct srv *s)
{
	char url[64];
	struct kiln_err e = { 0 };

	gl_global_init();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s->port);
	ck_assert_msg(gl_client_init(c, url, NULL, &e) == KILN_OK, "%s", e.msg);
	c->backoff_min_ms = 2;
	c->backoff_max_ms = 20;
}

START_TEST(client_trace_chunks_and_offsets)
{
	static struct srv s;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	size_t total = (5u << 20) / 2, off = 0, i;
	char *data = malloc(total + 64);

	memset(&s, 0, sizeof(s));
	for (i = 0; i < total + 64; i++)
		data[i] = (char)('a' + i % 26);
	srv_start(&s);
	client_for(&c, &s);
	while (off < total)
		ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", data, total, &off, &r, &e), GL_TRACE_OK);
	/* At most 1 MiB per PATCH, ranges inclusive and contiguous. */
	ck_assert_uint_eq(s.n_req, 3);
	ck_assert_str_eq(s.path[0], "/api/v4/jobs/42/trace");
	ck_assert_str_eq(s.range[0], "0-1048575");
	ck_assert_str_eq(s.range[1], "1048576-2097151");
	ck_assert_str_eq(s.range[2], "2097152-2621439");
	ck_assert_uint_eq(s.stored_len, total);
	ck_assert_int_eq(memcmp(s.stored, data, total), 0);
	ck_assert_str_eq(r.job_status, "running");

	/* An offset the server does not have: 416, and its Range says where to resume. */
	off = total - 100;
	ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", data, total + 50, &off, &r, &e), GL_TRACE_RANGE);
	ck_assert_uint_eq(off, total);
	ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", data, total, &off, &r, &e), GL_TRACE_OK);
	gl_reply_free(&r);
	gl_client_free(&c);
	srv_stop(&s);
	free(data);
}
END_TEST

/* CI_DEBUG_TRACE: gitlab-runner's PATCH carries debug_trace=true. */
START_TEST(client_trace_debug_query)
{
	static struct srv s;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	size_t off = 0;

	memset(&s, 0, sizeof(s));
	srv_start(&s);
	client_for(&c, &s);
	c.debug_trace = true;
	ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", "abc", 3, &off, &r, &e), GL_TRACE_OK);
	ck_assert_uint_eq(s.n_req, 1);
	ck_assert_str_eq(s.path[0], "/api/v4/jobs/42/trace?debug_trace=true");
	ck_assert_str_eq(s.range[0], "0-2");
	gl_reply_free(&r);
	gl_client_free(&c);
	srv_stop(&s);
}
END_TEST

START_TEST(client_retries_and_aborts)
{
	static struct srv s;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	size_t off = 0;

	memset(&s, 0, sizeof(s));
	s.script[0] = "503 Retry-After: 0";
	s.script[1] = "502";
	s.script[2] = "202";
	s.script[3] = "403";
	s.script[4] = "500";
	s.script[5] = "500";
	s.n_script = 6;
	srv_start(&s);
	client_for(&c, &s);
	c.max_attempts = 3;
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abc", 3, &off, &r, &e), GL_TRACE_OK);
	ck_assert_int_eq(r.attempts, 3);
	ck_assert_uint_eq(off, 3);
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abcdef", 6, &off, &r, &e), GL_TRACE_ABORT);
	ck_assert_uint_eq(off, 3);
	/* 5xx past the retries: failed, try later; the offset stays. */
	c.max_attempts = 2;
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abcdef", 6, &off, &r, &e), GL_TRACE_FAILED);
	ck_assert_uint_eq(off, 3);
	ck_assert_uint_eq(s.n_req, 6);
	/* Then it goes through. */
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abcdef", 6, &off, &r, &e), GL_TRACE_OK);
	ck_assert_uint_eq(off, 6);
	gl_reply_free(&r);
	gl_client_free(&c);
	srv_stop(&s);
}
END_TEST

struct flushes {
	int calls, from_zero;
};

static enum kiln_rc count_flush(void *arg, bool from_zero, struct kiln_err *e)
{
	struct flushes *f = arg;

	f->calls++;
	f->from_zero += from_zero;
	return KILN_OK;
}

START_TEST(client_final_update_loop)
{
	static struct srv s;
	struct gl_client c;
	struct kiln_err e = { 0 };
	struct gl_update u = { .state = "failed", .failure_reason = "script_failure", .exit_code = 3, .output = true,
			       .crc = 0x1234abcd, .bytesize = 99 };
	struct flushes f = { 0, 0 };
	json_t *body;

	memset(&s, 0, sizeof(s));
	s.script[0] = "202 X-GitLab-Trace-Update-Interval: 1";
	s.script[1] = "412 X-GitLab-Trace-Update-Interval: 1";
	s.script[2] = "200";
	s.script[3] = "403";
	s.n_script = 4;
	srv_start(&s);
	client_for(&c, &s);
	ck_assert_int_eq(gl_final_update(&c, 9, "jt", &u, count_flush, &f, &e), KILN_OK);
	/* Flushed before each PUT; the whole trace again after the 412. */
	ck_assert_int_eq(f.calls, 3);
	ck_assert_int_eq(f.from_zero, 1);
	ck_assert_uint_eq(s.n_req, 3);
	ck_assert_str_eq(s.method[2], "PUT");
	ck_assert_str_eq(s.path[2], "/api/v4/jobs/9");
	body = json_loadb(s.body[2], s.body_len[2], 0, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(body, "state")), "failed");
	ck_assert_str_eq(json_string_value(json_object_get(body, "failure_reason")), "script_failure");
	ck_assert_int_eq(json_integer_value(json_object_get(body, "exit_code")), 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(body, "output"), "checksum")), "crc32:1234abcd");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(body, "output"), "bytesize")), 99);
	ck_assert_str_eq(json_string_value(json_object_get(body, "token")), "jt");
	json_decref(body);
	/* 403: the job is gone; the loop stops at once. */
	ck_assert_int_eq(gl_final_update(&c, 9, "jt", &u, NULL, NULL, &e), KILN_E_NOTFOUND);
	ck_assert_uint_eq(s.n_req, 4);
	gl_client_free(&c);
	srv_stop(&s);
}
END_TEST

/* A 307 on artifact upload is followed with the job token only on the
 * GitLab's own origin: not to another port or host, not to another scheme. */
START_TEST(client_upload_redirects)
{
	static struct srv gl, other;
	char file[64] = "/tmp/kiln-upload-XXXXXX", loc[3][160];
	struct gl_client c;
	struct kiln_err e = { 0 };
	int fd = mkstemp(file), i;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "PK", 2), 2);
	close(fd);
	memset(&gl, 0, sizeof(gl));
	memset(&other, 0, sizeof(other));
	srv_start(&gl);
	srv_start(&other);
	client_for(&c, &gl);
	snprintf(loc[0], sizeof(loc[0]), "307 Location: http://127.0.0.1:%d/api/v4/jobs/5/artifacts?moved=1", gl.port);
	snprintf(loc[1], sizeof(loc[1]), "307 Location: http://127.0.0.1:%d/steal", other.port);
	snprintf(loc[2], sizeof(loc[2]), "307 Location: https://127.0.0.1:%d/steal", gl.port);
	gl.script[0] = loc[0];
	gl.script[1] = "201";
	gl.script[2] = loc[1];
	gl.script[3] = loc[2];
	gl.n_script = 4;

	/* Same origin: followed, token and all. */
	ck_assert_msg(gl_upload_artifacts(&c, 5, "glcbt-tok", file, "a.zip", "archive", "zip", NULL, &e) == KILN_OK,
		      "%s", e.msg);
	ck_assert_uint_eq(gl.n_req, 2);
	ck_assert_ptr_nonnull(strstr(gl.path[1], "moved=1"));
	ck_assert(gl.job_token[0] && gl.job_token[1]);
	/* Another port, another scheme: refused, nothing sent there. */
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(gl_upload_artifacts(&c, 5, "glcbt-tok", file, "a.zip", "archive", "zip", NULL, &e),
				 KILN_E_INVALID);
		ck_assert_msg(strstr(e.msg, "not followed with the job token"), "%s", e.msg);
	}
	ck_assert_uint_eq(gl.n_req, 4);
	ck_assert_uint_eq(other.n_req, 0);
	gl_client_free(&c);
	srv_stop(&gl);
	srv_stop(&other);
	unlink(file);

	ck_assert(gl_same_origin("https://GitLab.example.com/api/v4", "https://gitlab.example.com:443/x?y"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "http://gitlab.example.com/api/v4"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "https://gitlab.example.com.evil/"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "https://gitlab.example.com:8443/"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "/relative"));
}
END_TEST

START_TEST(client_url_and_info)
{
	struct gl_client c;
	struct kiln_err e = { 0 };
	json_t *fx, *info, *f, *v;
	const char *k;
	size_t n_true = 0;

	ck_assert_int_eq(gl_client_init(&c, "https://gitlab.example.com/ci/", NULL, &e), KILN_OK);
	ck_assert_str_eq(c.api, "https://gitlab.example.com/api/v4");
	ck_assert_int_eq(gl_client_init(&c, "https://gitlab.example.com//", NULL, &e), KILN_OK);
	ck_assert_str_eq(c.api, "https://gitlab.example.com/api/v4");
	ck_assert_int_eq(gl_client_init(&c, "ftp://gitlab.example.com", NULL, &e), KILN_E_INVALID);
	ck_assert_int_eq(gl_client_init(&c, "https://x", "/nonexistent/ca.pem", &e), KILN_E_IO);

	/* The features object has exactly gitlab-runner's keys. */
	fx = json_load_file(fixture("gitlab/runner_info_features_all_enabled.json"), 0, NULL);
	ck_assert_ptr_nonnull(fx);
	info = gl_info("qemu");
	f = json_object_get(info, "features");
	ck_assert_uint_eq(json_object_size(f), json_object_size(fx));
	json_object_foreach(fx, k, v) {
		ck_assert_msg(json_is_boolean(json_object_get(f, k)), "feature %s missing", k);
		n_true += json_is_true(json_object_get(f, k));
	}
	ck_assert_str_eq(json_string_value(json_object_get(info, "name")), "kiln");
	ck_assert_str_eq(json_string_value(json_object_get(info, "executor")), "qemu");
	/* Only what kiln implements. */
	ck_assert(json_is_true(json_object_get(f, "masking")));
	ck_assert(json_is_true(json_object_get(f, "cancel_gracefully")));
	ck_assert(json_is_true(json_object_get(f, "trace_checksum")));
	ck_assert(json_is_true(json_object_get(f, "artifacts")));
	ck_assert(json_is_true(json_object_get(f, "cache")));
	ck_assert(json_is_true(json_object_get(f, "services")));
	ck_assert(json_is_true(json_object_get(f, "service_multiple_aliases")));
	ck_assert(json_is_true(json_object_get(f, "upload_multiple_artifacts")));
	ck_assert(json_is_true(json_object_get(f, "upload_raw_artifacts")));
	ck_assert(json_is_false(json_object_get(f, "vault_secrets")));
	ck_assert_uint_eq(n_true, 21);
	/* The rest of gitlab-runner's VersionInfo. */
	ck_assert(json_is_string(json_object_get(info, "revision")));
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(info, "config"), "gpus")), "");
	ck_assert(json_is_object(json_object_get(info, "labels")));
	json_decref(info);
	json_decref(fx);
}
END_TEST

/* Legacy registration sends gitlab-runner's RegisterRunnerParameters. */
START_TEST(client_register_params)
{
	static struct srv s;
	struct gl_client c;
	struct kiln_err e = { 0 };
	struct gl_register_params p = { .description = "r1", .executor = "qemu", .tag_list = "a,b",
					.access_level = "ref_protected", .maintenance_note = "note",
					.run_untagged = false, .locked = true, .paused = true, .maximum_timeout = 3600 };
	json_t *body;
	char *token;
	long long id;

	memset(&s, 0, sizeof(s));
	s.script[0] = "201";
	s.script[1] = "201";
	s.n_script = 2;
	srv_start(&s);
	client_for(&c, &s);
	/* The scripted server answers {}: no token, but the request is kept. */
	ck_assert_int_eq(gl_register(&c, "reg", &p, &token, &id, NULL, &e), KILN_E_SYNTAX);
	ck_assert_str_eq(s.method[0], "POST");
	ck_assert_str_eq(s.path[0], "/api/v4/runners");
	body = json_loadb(s.body[0], s.body_len[0], 0, NULL);
	ck_assert_ptr_nonnull(body);
	ck_assert_str_eq(json_string_value(json_object_get(body, "token")), "reg");
	ck_assert_str_eq(json_string_value(json_object_get(body, "description")), "r1");
	ck_assert_str_eq(json_string_value(json_object_get(body, "tag_list")), "a,b");
	ck_assert_str_eq(json_string_value(json_object_get(body, "access_level")), "ref_protected");
	ck_assert_str_eq(json_string_value(json_object_get(body, "maintenance_note")), "note");
	ck_assert(json_is_false(json_object_get(body, "run_untagged")));
	ck_assert(json_is_true(json_object_get(body, "locked")));
	ck_assert(json_is_true(json_object_get(body, "paused")));
	ck_assert_int_eq(json_integer_value(json_object_get(body, "maximum_timeout")), 3600);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(body, "info"), "executor")), "qemu");
	json_decref(body);
	/* Unset: left out, as gitlab-runner's omitempty. */
	memset(&p, 0, sizeof(p));
	p.description = "r2";
	p.run_untagged = true;
	ck_assert_int_eq(gl_register(&c, "reg", &p, &token, &id, NULL, &e), KILN_E_SYNTAX);
	body = json_loadb(s.body[1], s.body_len[1], 0, NULL);
	ck_assert_ptr_nonnull(body);
	ck_assert_ptr_null(json_object_get(body, "tag_list"));
	ck_assert_ptr_null(json_object_get(body, "access_level"));
	ck_assert_ptr_null(json_object_get(body, "maintenance_note"));
	ck_assert_ptr_null(json_object_get(body, "maximum_timeout"));
	ck_assert(json_is_true(json_object_get(body, "run_untagged")));
	ck_assert(json_is_false(json_object_get(body, "paused")));
	json_decref(body);
	gl_client_free(&c);
	srv_stop(&s);
}
END_TEST

START_TEST(failure_reason_mapping)
{
	static const char *const listed[] = { "script_failure", "image_pull_failure", "runner_unsupported" };
	static const char *const bare[] = { "script_failure" };

	ck_assert_str_eq(gl_failure_reason("", listed, 3), "script_failure");
	ck_assert_str_eq(gl_failure_reason(NULL, NULL, 0), "script_failure");
	/* Always accepted, listed or not. */
	ck_assert_str_eq(gl_failure_reason("runner_system_failure", bare, 1), "runner_system_failure");
	ck_assert_str_eq(gl_failure_reason("job_execution_timeout", NULL, 0), "job_execution_timeout");
	/* Listed: as is; not listed: the fallback, else unknown_failure. */
	ck_assert_str_eq(gl_failure_reason("image_pull_failure", listed, 3), "image_pull_failure");
	ck_assert_str_eq(gl_failure_reason("image_pull_failure", bare, 1), "runner_system_failure");
	ck_assert_str_eq(gl_failure_reason("runner_configuration_error", bare, 1), "script_failure");
	ck_assert_str_eq(gl_failure_reason("runner_external_dependency_failure", NULL, 0), "runner_system_failure");
	ck_assert_str_eq(gl_failure_reason("runner_interrupted", bare, 1), "unknown_failure");
	ck_assert_str_eq(gl_failure_reason("canceled", listed, 3), "unknown_failure");
	ck_assert_str_eq(gl_failure_reason("runner_unsupported", listed, 3), "runner_unsupported");
	ck_assert(gl_is_auth_token("glrt-abc"));
	ck_assert(!gl_is_auth_token("GR1348941abc"));
}
END_TEST

START_TEST(gitlab_times)
{
	ck_assert_int_eq(gl_parse_time("2026-11-27T00:00:00Z"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("2026-11-27T00:00:00.123Z"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("2026-11-27T02:00:00+02:00"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("2026-11-26T22:30:00-01:30"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("0001-01-01T00:00:00Z"), 0);
	ck_assert_int_eq(gl_parse_time("2026-11-27"), 0);
	ck_assert_int_eq(gl_parse_time("2026-11-27T00:00:00Zjunk"), 0);
	ck_assert_int_eq(gl_parse_time(NULL), 0);
}
END_TEST

Suite *glclient_suite(void)
{
	Suite *s = suite_create("glclient");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, client_trace_chunks_and_offsets);
	tcase_add_test(tc, client_trace_debug_query);
	tcase_add_test(tc, client_retries_and_aborts);
	tcase_add_test(tc, client_final_update_loop);
	tcase_add_test(tc, client_url_and_info);
	tcase_add_test(tc, client_register_params);
	tcase_add_test(tc, client_upload_redirects);
	tcase_add_test(tc, failure_reason_mapping);
	tcase_add_test(tc, gitlab_times);
	suite_add_tcase(s, tc);
	return s;
}
