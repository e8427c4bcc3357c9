/* The shared S3 cache (cache/store, cache/s3) without a server:
 * configuration, object names as gitlab-runner's, the S3 XML, and a store
 * that is down. The tests against a real S3-compatible server are
 * check_s3.c's, run by tests/s3cache.sh. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/s3.h"
#include "cache/store.h"
#include "gitlab/artifacts.h"
#include "gitlab/trace.h"
#include "job/payload.h"
#include "lib/paths.h"
#include "runner/config.h"
#include "tests/unit/s3side.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(config_cache_sections)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	const char *yml = "defaults:\n"
			  "  cache:\n"
			  "    type: s3\n"
			  "    shared: true\n"
			  "    path: ci\n"
			  "    s3:\n"
			  "      server_address: s3.example:9000\n"
			  "      bucket_name: b\n"
			  "      access_key: AK\n"
			  "      secret_key_file: /etc/kiln/s3.secret\n"
			  "      insecure: true\n"
			  "runners:\n"
			  "  - url: https://a.example\n"
			  "    token: glrt-a\n"
			  "  - url: https://b.example\n"
			  "    token: glrt-b\n"
			  "    cache:\n"
			  "      type: s3\n"
			  "      s3: {server_address: s3.amazonaws.com, bucket_name: c, bucket_location: eu-west-1,\n"
			  "           authentication_type: iam}\n"
			  "  - url: https://c.example\n"
			  "    token: glrt-c\n"
			  "    cache: {}\n";

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_parse(&cfg, "c.yml", yml, strlen(yml), &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(cfg.runners[0].cache.type, "s3");
	ck_assert(cfg.runners[0].cache.shared);
	ck_assert(cfg.runners[0].cache.s3.insecure);
	ck_assert_str_eq(cfg.runners[0].cache.s3.secret_key_file, "/etc/kiln/s3.secret");
	ck_assert_str_eq(cfg.runners[1].cache.s3.bucket_name, "c");
	ck_assert_str_eq(cfg.runners[1].cache.s3.authentication_type, "iam");
	ck_assert(!cfg.runners[1].cache.shared);
	ck_assert_ptr_null(cfg.runners[2].cache.type);
	kiln_config_free(&cfg);
}
END_TEST

static void config_fails(const char *yml, const char *want)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_ne(kiln_config_parse(&cfg, "c.yml", yml, strlen(yml), &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, want), "'%s' lacks '%s'", e.msg, want);
	kiln_config_free(&cfg);
}

START_TEST(config_cache_errors)
{
	config_fails("runners:\n  - url: https://a\n    token: t\n    cache:\n      type: s3\n      s3:\n"
		     "        server_adress: x\n",
		     "c.yml:7: runners[0].cache.s3: unknown key 'server_adress'");
	config_fails("defaults:\n  cache:\n    typ: s3\n", "c.yml:3: defaults.cache: unknown key 'typ'");
	config_fails("defaults:\n  cache:\n    type: gcs\n", "c.yml:3: defaults.cache.type: unknown value 'gcs'");
	config_fails("defaults:\n  cache:\n    type: s3\n    s3: {server_address: x}\n", "needs s3.bucket_name");
	config_fails("defaults:\n  cache:\n    type: s3\n    s3: {server_address: x, bucket_name: b, access_key: a}\n",
		     "set one of s3.secret_key and s3.secret_key_file");
	config_fails("defaults:\n  cache:\n    type: s3\n    s3: {server_address: x, bucket_name: b,"
		     " authentication_type: sts}\n",
		     "unknown value 'sts'");
}
END_TEST

/* gitlab-runner's generateObjectName and helpers.ShortenToken. */
START_TEST(object_names)
{
	struct kiln_cache_config c;
	struct cache_store s = { .cfg = &c, .runner_token = "glrt-t1_abcdefghijkl" };
	char out[256];

	s3conf(&c, "x", false, "a");
	ck_assert(cache_object_name(&s, 42, "deps-non_protected", out, sizeof(out)));
	ck_assert_str_eq(out, "ci/runner/abcdefghi/project/42/deps-non_protected");
	c.shared = true;
	ck_assert(cache_object_name(&s, 42, "deps", out, sizeof(out)));
	ck_assert_str_eq(out, "ci/project/42/deps");
	c.path = NULL;
	ck_assert(cache_object_name(&s, 42, "deps", out, sizeof(out)));
	ck_assert_str_eq(out, "project/42/deps");
	ck_assert(!cache_object_name(&s, 42, "..", out, sizeof(out)));
	ck_assert(!cache_object_name(&s, 42, "", out, sizeof(out)));
	ck_assert(!cache_object_name(&s, 42, "a/..", out, sizeof(out)));
	ck_assert(!cache_object_name(&s, 42, "../x", out, sizeof(out)));
	ck_assert(cache_object_name(&s, 42, "feature/x-non_protected", out, sizeof(out)));
	ck_assert_str_eq(out, "project/42/feature/x-non_protected");
	ck_assert(cache_object_name(&s, 42, "./a//b/../c", out, sizeof(out)));
	ck_assert_str_eq(out, "project/42/a/c");
	cache_short_token("glrt-0123456789ab", out, sizeof(out));
	ck_assert_str_eq(out, "012345678");
	cache_short_token("GR1348941abcdefghijk", out, sizeof(out));
	ck_assert_str_eq(out, "abcdefghi");
	cache_short_token("plaintokenvalue", out, sizeof(out));
	ck_assert_str_eq(out, "plaintoke");
	cache_short_token("short", out, sizeof(out));
	ck_assert_str_eq(out, "short");
}
END_TEST

START_TEST(xml_values)
{
	const char *x = "<R><UploadId>a&amp;b</UploadId><ETag>&quot;e1&quot;</ETag><Code>";
	char out[16];

	ck_assert(s3_xml_value(x, strlen(x), "UploadId", out, sizeof(out)));
	ck_assert_str_eq(out, "a&b");
	ck_assert(s3_xml_value(x, strlen(x), "ETag", out, sizeof(out)));
	ck_assert_str_eq(out, "\"e1\"");
	ck_assert(!s3_xml_value(x, strlen(x), "Code", out, sizeof(out)));     /* not closed */
	ck_assert(!s3_xml_value(x, 20, "UploadId", out, sizeof(out)));        /* cut before the end */
	ck_assert(!s3_xml_value(x, strlen(x), "UploadId", out, 3));           /* does not fit */
	ck_assert_str_eq(out, "");
}
END_TEST

/* A store that is down: the save warns and keeps the local copy, the
 * restore warns and uses it; the jobs go on. */
START_TEST(store_down_falls_back)
{
	struct kiln_cache_config down;
	struct kiln_side k;
	char *top = test_tmpdir(), got[64];

	s3conf(&down, "127.0.0.1:1", true, "S3RVER");
	side_init(&k, top, "k", &down, "glrt-x");
	side_save(&k, "local");
	ck_assert_msg(strstr(k.log, "WARNING: S3 127.0.0.1:1") && strstr(k.log, "kept locally only"), "%s", k.log);
	side_restore(&k, got, sizeof(got));
	ck_assert_str_eq(got, "local");
	ck_assert_msg(strstr(k.log, "using the local cache"), "%s", k.log);
	test_sh("rm -rf %s", top);
}
END_TEST

Suite *s3cache_suite(void)
{
	Suite *s = suite_create("s3cache");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, config_cache_sections);
	tcase_add_test(tc, config_cache_errors);
	tcase_add_test(tc, object_names);
	tcase_add_test(tc, xml_values);
	tcase_add_test(tc, store_down_falls_back);
	suite_add_tcase(s, tc);
	return s;
}
