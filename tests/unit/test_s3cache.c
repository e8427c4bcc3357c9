/* The shared S3 cache (cache/store, cache/s3): configuration, object
 * names as gitlab-runner's, and caches written by one kiln restored by
 * another through a real S3-compatible server (tests/s3server.sh: s3rver;
 * the server tests are skipped, saying why, when it cannot start). */
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
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static char srv_dir[PATH_MAX];
static char srv_addr[64];     /* host:port, "" when the server is not up */

/* Unchecked fixture: in check's parent process, so that every forked test
 * sees the one server. */
static void server_start(void)
{
	const char *top = getenv("top_srcdir");
	int rc;

	snprintf(srv_dir, sizeof(srv_dir), "%s", test_tmpdir());
	rc = test_sh_out(srv_addr, sizeof(srv_addr), "%s/tests/s3server.sh start %s", top ? top : ".", srv_dir);
	if (rc) {
		srv_addr[0] = '\0';
		fprintf(stderr, "s3cache: S3 server tests skipped: tests/s3server.sh start failed (%d)\n", rc);
	}
}

static void server_stop(void)
{
	const char *top = getenv("top_srcdir");

	if (srv_dir[0])
		test_sh("%s/tests/s3server.sh stop %s; rm -rf %s", top ? top : ".", srv_dir, srv_dir);
	srv_dir[0] = srv_addr[0] = '\0';
}

static bool server_up(void)
{
	return srv_addr[0];
}

static char sig_dir[PATH_MAX];
static char sig_addr[64];

static void verifier_start(void)
{
	const char *top = getenv("top_srcdir");
	int rc;

	snprintf(sig_dir, sizeof(sig_dir), "%s", test_tmpdir());
	rc = test_sh_out(sig_addr, sizeof(sig_addr), "%s/tests/s3server.sh verifier %s", top ? top : ".", sig_dir);
	if (rc) {
		sig_addr[0] = '\0';
		fprintf(stderr, "s3cache: SigV4 tests skipped: tests/s3server.sh verifier failed (%d)\n", rc);
	}
}

static void verifier_stop(void)
{
	const char *top = getenv("top_srcdir");

	if (sig_dir[0])
		test_sh("%s/tests/s3server.sh stop %s; rm -rf %s", top ? top : ".", sig_dir, sig_dir);
	sig_dir[0] = sig_addr[0] = '\0';
}

/* A cache: section for the test server. */
static void s3conf(struct kiln_cache_config *c, const char *server, bool shared, const char *access_key)
{
	memset(c, 0, sizeof(*c));
	c->type = "s3";
	c->shared = shared;
	c->path = "ci";
	c->s3.server_address = (char *)server;
	c->s3.bucket_name = "kiln-cache";
	c->s3.access_key = (char *)access_key;
	c->s3.secret_key = "S3RVER";
	c->s3.insecure = true;
}

static void cache_payload(struct job_payload *p)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX], *text;
	struct kiln_err e = { 0 };
	json_t *root;

	snprintf(path, sizeof(path), "%s/examples/tiny.json", top ? top : ".");
	root = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(root);
	json_object_set_new(root, "cache", json_pack("[{s:s,s:[s],s:s}]", "key", "deps", "paths", "vendor/",
						      "policy", "pull-push"));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
	free(text);
}

/* One kiln's side: its state folder holds state/ and cache/. */
struct kiln_side {
	char dir[PATH_MAX];
	const struct kiln_cache_config *cfg;
	const char *token;
	char log[8192];   /* the job log of the last save or restore */
};

static void keep_log(struct kiln_side *k, struct trace *t)
{
	size_t n;
	char *text = trace_copy(t, &n);

	snprintf(k->log, sizeof(k->log), "%.*s", (int)n, text ? text : "");
	free(text);
}

static void side_save(struct kiln_side *k, const char *who)
{
	char state[PATH_MAX + 8], root[PATH_MAX + 8], path[PATH_MAX * 2];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = test_offline_trace(0);
	struct gla g;

	cache_payload(&p);
	snprintf(state, sizeof(state), "%s/state", k->dir);
	snprintf(root, sizeof(root), "%s/cache", k->dir);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	gla_use_cache(&g, k->cfg, k->token);
	snprintf(g.cache[0].dir, sizeof(g.cache[0].dir), "%s/collected", g.tmp);
	ck_assert_int_eq(kiln_mkdir_p(g.cache[0].dir), 0);
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache[0].dir);
	test_write_file(path, who, strlen(who), 0644);
	g.cache[0].wanted = g.collected = g.ok = true;
	g.cache[0].files = 1;
	ck_assert_msg(gla_after(&g, &e) == KILN_OK, "%s", e.msg);
	keep_log(k, t);
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

/* vendor.txt as k restores it, "" when nothing. */
static void side_restore(struct kiln_side *k, char *got, size_t size)
{
	char state[PATH_MAX + 8], root[PATH_MAX + 8], path[PATH_MAX * 2];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = test_offline_trace(0);
	struct gla g;
	FILE *f;

	cache_payload(&p);
	snprintf(state, sizeof(state), "%s/state", k->dir);
	snprintf(root, sizeof(root), "%s/cache", k->dir);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	gla_use_cache(&g, k->cfg, k->token);
	ck_assert_msg(gla_before(&g, &e) == KILN_OK, "%s", e.msg);
	got[0] = '\0';
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache_in);
	if (g.n_extra && (f = fopen(path, "r"))) {
		size_t n = fread(got, 1, size - 1, f);

		got[n] = '\0';
		fclose(f);
	}
	keep_log(k, t);
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

static void side_init(struct kiln_side *k, const char *top, const char *name,
		      const struct kiln_cache_config *cfg, const char *token)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->dir, sizeof(k->dir), "%s/%s", top, name);
	k->cfg = cfg;
	k->token = token;
}

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

/* A cache saved by kiln A (its own state folder and runner token) is
 * restored by kiln B through S3 when both are shared, and not at all when
 * they are not; A, with its local cache gone, still restores its own. */
START_TEST(shared_between_kilns)
{
	struct kiln_cache_config shared, own;
	struct kiln_side a, b, a2;
	char *top, got[64];

	if (!server_up())
		return;
	top = test_tmpdir();
	s3conf(&shared, srv_addr, true, "S3RVER");
	side_init(&a, top, "a", &shared, "glrt-runnerAAAAAAAA");
	side_init(&b, top, "b", &shared, "glrt-runnerBBBBBBBB");
	side_save(&a, "from A");
	ck_assert_msg(strstr(a.log, "Uploaded cache deps-non_protected to S3"), "%s", a.log);
	side_restore(&b, got, sizeof(got));
	ck_assert_msg(!strcmp(got, "from A"), "got '%s'; log: %s", got, b.log);

	s3conf(&own, srv_addr, false, "S3RVER");
	side_init(&a, top, "a-own", &own, "glrt-runnerAAAAAAAA");
	side_init(&b, top, "b-own", &own, "glrt-runnerBBBBBBBB");
	side_save(&a, "A only");
	side_restore(&b, got, sizeof(got));
	ck_assert_msg(!strcmp(got, ""), "B restored '%s' from A's namespace", got);
	ck_assert_msg(strstr(b.log, "no cache found"), "%s", b.log);
	side_init(&a2, top, "a-fresh", &own, "glrt-runnerAAAAAAAA");
	side_restore(&a2, got, sizeof(got));
	ck_assert_str_eq(got, "A only");
	test_sh("rm -rf %s", top);
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

/* A wrong access key: a clear warning naming the refusal. */
START_TEST(refused_credentials)
{
	struct kiln_cache_config bad;
	struct kiln_side k;
	char *top, got[64];

	if (!server_up())
		return;
	top = test_tmpdir();
	s3conf(&bad, srv_addr, true, "NOTAKEY");
	side_init(&k, top, "k", &bad, "glrt-x");
	side_save(&k, "x");
	ck_assert_msg(strstr(k.log, "credentials refused (HTTP 403 InvalidAccessKeyId"), "%s", k.log);
	side_restore(&k, got, sizeof(got));
	ck_assert_str_eq(got, "x");
	ck_assert_msg(strstr(k.log, "credentials refused"), "%s", k.log);
	test_sh("rm -rf %s", top);
}
END_TEST

/* Above the part size an archive goes up in parts and comes back whole;
 * a copy that is S3's is not downloaded again, a changed object is. */
START_TEST(multipart_upload)
{
	struct kiln_cache_config c;
	struct cache_store s = { .cfg = &c, .runner_token = "glrt-m", .part_size = 1 << 20 };
	struct cache_store other = { .cfg = &c, .runner_token = "glrt-o" };
	char *top, src[PATH_MAX], src2[PATH_MAX], path[PATH_MAX], warn[1024];
	struct stat before, after;

	if (!server_up())
		return;
	top = test_tmpdir();
	s3conf(&c, srv_addr, true, "S3RVER");
	s.local_root = top;
	snprintf(src, sizeof(src), "%s/big.zip", top);
	ck_assert_int_eq(test_sh("head -c 3500000 /dev/urandom > %s", src), 0);
	ck_assert_msg(cache_store_push(&s, 7, "big", src, warn, sizeof(warn)), "%s", warn);
	ck_assert_msg(cache_store_fetch(&s, "g/p", 7, "big", "big", path, sizeof(path), warn, sizeof(warn)), "%s", warn);
	ck_assert_str_eq(warn, "");
	ck_assert_int_eq(test_sh("cmp -s %s %s", src, path), 0);
	/* Fetched again: S3 says 304 to the kept ETag, the copy stays. */
	ck_assert_int_eq(stat(path, &before), 0);
	ck_assert(cache_store_fetch(&s, "g/p", 7, "big", "big", path, sizeof(path), warn, sizeof(warn)));
	ck_assert_int_eq(stat(path, &after), 0);
	ck_assert_int_eq(before.st_ino, after.st_ino);
	/* Another host's save changes the object: downloaded again. */
	other.local_root = src2;
	snprintf(src2, sizeof(src2), "%s/other", top);
	ck_assert_int_eq(test_sh("mkdir -p %s && head -c 1000 /dev/urandom > %s/new.zip", src2, src2), 0);
	snprintf(src, sizeof(src), "%s/new.zip", src2);
	ck_assert_msg(cache_store_push(&other, 7, "big", src, warn, sizeof(warn)), "%s", warn);
	ck_assert(cache_store_fetch(&s, "g/p", 7, "big", "big", path, sizeof(path), warn, sizeof(warn)));
	ck_assert_int_eq(test_sh("cmp -s %s %s", src, path), 0);
	/* Nothing half-uploaded is left behind (s3rver keeps parts in a folder). */
	ck_assert_int_ne(test_sh("ls -R %s/data/kiln-cache | grep -qi upload", srv_dir), 0);
	test_sh("rm -rf %s", top);
}
END_TEST

/* libcurl's signatures, checked by botocore's signer (s3rver checks the
 * access key only): a multipart upload (queries), a key to percent-encode,
 * a plain PUT, a GET with If-None-Match in a region; a wrong secret is
 * refused. */
START_TEST(sigv4_checked_by_botocore)
{
	struct s3_client c = { .server = sig_addr, .bucket = "b", .region = "eu-west-1", .access_key = "AK",
			       .secret_key = "SECRET", .insecure = true, .part_size = 1 << 20 };
	char *top, big[PATH_MAX], got[PATH_MAX], etag[S3_ETAG_MAX];
	struct kiln_err e = { 0 };
	enum s3_fail why;

	if (!sig_addr[0])
		return;
	top = test_tmpdir();
	snprintf(big, sizeof(big), "%s/big", top);
	snprintf(got, sizeof(got), "%s/got", top);
	ck_assert_int_eq(test_sh("head -c 2500000 /dev/urandom > %s", big), 0);
	ck_assert_msg(s3_put(&c, "ci/project/1/a key+x", big, etag, &why, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(etag, "\"m2500000\"");
	ck_assert_msg(s3_get(&c, "ci/project/1/a key+x", got, "\"old\"", etag, &why, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(test_sh("cmp -s %s %s", big, got), 0);
	c.part_size = 0;
	ck_assert_msg(s3_put(&c, "ci/project/1/whole", big, etag, &why, &e) == KILN_OK, "%s", e.msg);
	c.secret_key = "WRONG";
	ck_assert_int_ne(s3_get(&c, "ci/project/1/whole", got, NULL, NULL, &why, &e), KILN_OK);
	ck_assert_int_eq(why, S3_REFUSED);
	ck_assert_msg(strstr(e.msg, "credentials refused (HTTP 403 SignatureDoesNotMatch"), "%s", e.msg);
	test_sh("rm -rf %s", top);
}
END_TEST

/* authentication_type: iam: the role's credentials from IMDSv2 (AKTEMP),
 * their session token signed along (the stub refuses them without). */
START_TEST(iam_credentials)
{
	struct kiln_cache_config c;
	char imds[96], *top, src[PATH_MAX], path[PATH_MAX], warn[1024];
	struct cache_store s = { .cfg = &c, .runner_token = "glrt-i", .imds_endpoint = imds };

	if (!sig_addr[0])
		return;
	top = test_tmpdir();
	snprintf(imds, sizeof(imds), "http://%s", sig_addr);
	s3conf(&c, sig_addr, true, NULL);
	c.s3.secret_key = NULL;
	c.s3.authentication_type = "iam";
	s.local_root = top;
	snprintf(src, sizeof(src), "%s/a.zip", top);
	ck_assert_int_eq(test_sh("echo iam > %s", src), 0);
	ck_assert_msg(cache_store_push(&s, 3, "k", src, warn, sizeof(warn)), "%s", warn);
	ck_assert_msg(cache_store_fetch(&s, "g/p", 3, "k", "k", path, sizeof(path), warn, sizeof(warn)), "%s", warn);
	ck_assert_str_eq(warn, "");
	ck_assert_int_eq(test_sh("cmp -s %s %s", src, path), 0);
	test_sh("rm -rf %s", top);
}
END_TEST

Suite *s3cache_suite(void)
{
	Suite *s = suite_create("s3cache");
	TCase *tc = tcase_create("config");
	TCase *srv = tcase_create("server");

	tcase_add_test(tc, config_cache_sections);
	tcase_add_test(tc, config_cache_errors);
	tcase_add_test(tc, object_names);
	tcase_add_test(tc, xml_values);
	tcase_add_test(tc, store_down_falls_back);
	suite_add_tcase(s, tc);
	tcase_add_unchecked_fixture(srv, server_start, server_stop);
	tcase_set_timeout(srv, 60);
	tcase_add_test(srv, shared_between_kilns);
	tcase_add_test(srv, refused_credentials);
	tcase_add_test(srv, multipart_upload);
	suite_add_tcase(s, srv);
	tc = tcase_create("sigv4");
	tcase_add_unchecked_fixture(tc, verifier_start, verifier_stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sigv4_checked_by_botocore);
	tcase_add_test(tc, iam_credentials);
	suite_add_tcase(s, tc);
	return s;
}
