/* The shared S3 cache against real servers, which tests/s3cache.sh
 * starts (it exits 77, automake's skip, saying why, when it cannot):
 * s3rver at $KILN_TEST_S3 (host:port, key S3RVER) and tests/s3sigv4.py,
 * botocore's signature check, at $KILN_TEST_SIGV4 (key AK); s3rver's
 * folder (DIR/data) is $KILN_TEST_S3_DIR. */
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
#include <check.h>

#include "tests/unit/s3side.h"
#include "tests/unit/testutil.h"

static const char *srv_addr, *srv_dir, *sig_addr;

/* A cache saved by kiln A (its own state folder and runner token) is
 * restored by kiln B through S3 when both are shared, and not at all when
 * they are not; A, with its local cache gone, still restores its own. */
START_TEST(shared_between_kilns)
{
	struct kiln_cache_config shared, own;
	struct kiln_side a, b, a2;
	char *top, got[64];

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

/* A wrong access key: a clear warning naming the refusal. */
START_TEST(refused_credentials)
{
	struct kiln_cache_config bad;
	struct kiln_side k;
	char *top, got[64];

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

/* kiln doctor's check: HEAD the bucket with the store's credentials. */
START_TEST(doctor_heads_bucket)
{
	struct kiln_cache_config c;
	struct cache_store s = { .cfg = &c };
	char why[256];

	s3conf(&c, srv_addr, true, "S3RVER");
	ck_assert_msg(cache_store_check(&s, why, sizeof(why)), "%s", why);
	c.s3.bucket_name = "no-such-bucket";
	ck_assert(!cache_store_check(&s, why, sizeof(why)));
	ck_assert_msg(strstr(why, "bucket: not found"), "%s", why);
	c.s3.bucket_name = "kiln-cache";
	c.s3.access_key = "NOTAKEY";
	ck_assert(!cache_store_check(&s, why, sizeof(why)));
	ck_assert_msg(strstr(why, "credentials refused"), "%s", why);
	c.s3.server_address = "127.0.0.1:1";
	ck_assert(!cache_store_check(&s, why, sizeof(why)));
	ck_assert_msg(strstr(why, "127.0.0.1:1 bucket"), "%s", why);
	c.type = NULL;
	ck_assert(cache_store_check(&s, why, sizeof(why)));
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

int main(void)
{
	Suite *s = suite_create("s3");
	TCase *tc = tcase_create("server");
	SRunner *sr;
	int failed;

	srv_addr = getenv("KILN_TEST_S3");
	srv_dir = getenv("KILN_TEST_S3_DIR");
	sig_addr = getenv("KILN_TEST_SIGV4");
	if (!srv_addr || !*srv_addr || !srv_dir || !sig_addr || !*sig_addr) {
		fprintf(stderr, "check_s3: KILN_TEST_S3, KILN_TEST_S3_DIR or KILN_TEST_SIGV4 unset: run it through tests/s3cache.sh\n");
		return 77;
	}
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, shared_between_kilns);
	tcase_add_test(tc, refused_credentials);
	tcase_add_test(tc, multipart_upload);
	tcase_add_test(tc, doctor_heads_bucket);
	suite_add_tcase(s, tc);
	tc = tcase_create("sigv4");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sigv4_checked_by_botocore);
	tcase_add_test(tc, iam_credentials);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
