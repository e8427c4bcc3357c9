/* Report artifacts (gitlab/gzmembers): one gzip member per regular file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "gitlab/gzmembers.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

/* Report artifacts: one gzip member per regular file, named by its path,
 * in sorted order; links are not members; a size limit holds. */
START_TEST(gzip_members)
{
	char *d = test_tmpdir(), src[128], path[256], gz[128], cmd[160], *data, names[4][64];
	static const char *const want_names[] = { "a.txt", "sub/b.xml", "sub/empty" };
	static const char *const want_data[] = { "hello\n", "<testsuite/>\n", "" };
	struct zip_stats st;
	struct kiln_err e = { 0 };
	unsigned char out[256];
	size_t n, off = 0;
	int k = 0;

	snprintf(src, sizeof(src), "%s/src", d);
	snprintf(path, sizeof(path), "%s/sub", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/sub/b.xml", src);
	test_write_file(path, "<testsuite/>\n", 13, 0644);
	snprintf(path, sizeof(path), "%s/a.txt", src);
	test_write_file(path, "hello\n", 6, 0644);
	snprintf(path, sizeof(path), "%s/sub/empty", src);
	test_write_file(path, "", 0, 0644);
	snprintf(path, sizeof(path), "%s/link", src);
	ck_assert_int_eq(symlink("a.txt", path), 0);
	snprintf(gz, sizeof(gz), "%s/junit.gz", d);
	ck_assert_msg(gzm_write_dir(src, gz, 1 << 20, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 3);
	ck_assert_uint_eq(st.bytes, 19);
	ck_assert_uint_eq(st.skipped, 1);
	data = test_read_file(gz, &n);
	/* Member by member: the header's name, then the content. */
	while (off < n) {
		z_stream z = { 0 };
		gz_header h = { 0 };
		int zr;

		ck_assert_int_lt(k, 3);
		h.name = (Bytef *)names[k];
		h.name_max = sizeof(names[k]);
		ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);
		ck_assert_int_eq(inflateGetHeader(&z, &h), Z_OK);
		z.next_in = (Bytef *)data + off;
		z.avail_in = (uInt)(n - off);
		z.next_out = out;
		z.avail_out = sizeof(out);
		zr = inflate(&z, Z_FINISH);
		ck_assert_int_eq(zr, Z_STREAM_END);
		ck_assert_str_eq(names[k], want_names[k]);
		ck_assert_uint_eq(z.total_out, strlen(want_data[k]));
		ck_assert_int_eq(memcmp(out, want_data[k], z.total_out), 0);
		off += z.total_in;
		inflateEnd(&z);
		k++;
	}
	ck_assert_int_eq(k, 3);
	free(data);
	ck_assert_int_eq(gzm_write_dir(src, gz, 10, &st, &e), KILN_E_LIMIT);
	ck_assert_int_ne(access(gz, F_OK), 0); /* removed on failure */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *gzmembers_suite(void)
{
	Suite *s = suite_create("gzmembers");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, gzip_members);
	suite_add_tcase(s, tc);
	return s;
}
