/* lib/: the primitives every layer shares (clock, atomic write, bounded
 * read, spawn). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/clock.h"
#include "lib/http.h"
#include "lib/paths.h"
#include "lib/readfile.h"
#include "lib/spawn.h"
#include "tests/unit/suites.h"

static char *tmp_dir(void)
{
	static char dir[64];

	snprintf(dir, sizeof(dir), "/tmp/kiln-lib-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	return dir;
}

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

/* --- clock ----------------------------------------------------------------- */

/* A reply body in memory: NUL-terminated, never past its ceiling. */
START_TEST(http_body_keeps_its_ceiling)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	ck_assert_int_eq(http_body_append(&buf, &len, &cap, 8, "abc", 3), 0);
	ck_assert_int_eq(http_body_append(&buf, &len, &cap, 8, "defgh", 5), 0);
	ck_assert_str_eq(buf, "abcdefgh");
	ck_assert_int_eq(http_body_append(&buf, &len, &cap, 8, "i", 1), 1);
	ck_assert_uint_eq(len, 8);
	ck_assert_str_eq(buf, "abcdefgh");
	ck_assert_int_eq(http_body_append(&buf, &len, &cap, 8, "", 0), 0);
	free(buf);
	buf = NULL;
	len = cap = 0;
	ck_assert_int_eq(http_body_append(&buf, &len, &cap, 2, "abc", 3), 1);
	ck_assert_ptr_null(buf);
}
END_TEST

START_TEST(clock_units_agree_and_advance)
{
	const struct timespec pause_ts = { 0, 20 * 1000 * 1000 };
	uint64_t ns0 = mono_ns();
	int64_t ms0 = mono_ms();
	double s0 = mono_s();

	ck_assert_uint_gt(ns0, 0);
	ck_assert(ms0 >= (int64_t)(ns0 / 1000000) && ms0 - (int64_t)(ns0 / 1000000) < 1000);
	ck_assert(s0 >= (double)ns0 / 1e9 && s0 - (double)ns0 / 1e9 < 1.0);
	nanosleep(&pause_ts, NULL);
	ck_assert_uint_ge(mono_ns() - ns0, 20 * 1000 * 1000);
	ck_assert_int_ge(mono_ms() - ms0, 20);
	ck_assert(mono_s() - s0 >= 0.02);
}
END_TEST

/* --- atomic write ---------------------------------------------------------- */

START_TEST(atomic_write_creates_and_replaces)
{
	char *dir = tmp_dir(), path[128], *text = NULL;
	struct kiln_err e = { 0 };
	struct stat st;
	size_t len;
	mode_t old = umask(022);

	snprintf(path, sizeof(path), "%s/f.json", dir);
	ck_assert_int_eq(kiln_write_atomic(path, "first\n", 6, 0600, &e), KILN_OK);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(kiln_write_atomic(path, "second", 6, 0600, &e), KILN_OK);
	ck_assert_int_eq(kiln_read_file(path, 100, &text, &len), 0);
	ck_assert_str_eq(text, "second");
	free(text);
	/* Mode 0 is 0666 less the umask; no temporary is left behind. */
	snprintf(path, sizeof(path), "%s/g", dir);
	ck_assert_int_eq(kiln_write_atomic(path, "", 0, 0, &e), KILN_OK);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);
	ck_assert_uint_eq(st.st_size, 0);
	ck_assert_uint_eq(dir_entries(dir), 2);
	umask(old);
	ck_assert_int_eq(kiln_rm_rf(dir), 0);
}
END_TEST

START_TEST(atomic_write_failure_leaves_the_old_file)
{
	char *dir = tmp_dir(), path[128];
	struct kiln_err e = { 0 };

	/* A folder where the file goes: the rename fails, nothing is left. */
	snprintf(path, sizeof(path), "%s/d", dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	ck_assert_int_eq(kiln_write_atomic(path, "x", 1, 0, &e), KILN_E_IO);
	ck_assert_ptr_nonnull(strstr(e.msg, "replacing"));
	ck_assert_ptr_nonnull(strstr(e.msg, path));
	ck_assert_uint_eq(dir_entries(dir), 1);
	/* A folder that does not exist: the temporary cannot be made. */
	snprintf(path, sizeof(path), "%s/none/f", dir);
	ck_assert_int_eq(kiln_write_atomic(path, "x", 1, 0, &e), KILN_E_IO);
	ck_assert_ptr_nonnull(strstr(e.msg, "creating"));
	ck_assert_int_eq(kiln_rm_rf(dir), 0);
}
END_TEST

/* --- bounded read ---------------------------------------------------------- */

START_TEST(read_file_up_to_the_ceiling)
{
	char *dir = tmp_dir(), path[128], *text = (char *)"unset";
	struct kiln_err e = { 0 };
	size_t len = 99;

	snprintf(path, sizeof(path), "%s/f", dir);
	ck_assert_int_eq(kiln_write_atomic(path, "0123456789", 10, 0, &e), KILN_OK);
	ck_assert_int_eq(kiln_read_file(path, 10, &text, &len), 0);
	ck_assert_uint_eq(len, 10);
	ck_assert_str_eq(text, "0123456789");
	free(text);
	ck_assert_int_eq(kiln_read_file(path, 9, &text, &len), -EFBIG);
	ck_assert_ptr_null(text);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(kiln_read_file(path, 0, &text, &len), -EFBIG);
	/* Empty files, missing files and folders. */
	ck_assert_int_eq(kiln_write_atomic(path, "", 0, 0, &e), KILN_OK);
	ck_assert_int_eq(kiln_read_file(path, 0, &text, &len), 0);
	ck_assert_str_eq(text, "");
	free(text);
	snprintf(path, sizeof(path), "%s/none", dir);
	ck_assert_int_eq(kiln_read_file(path, 10, &text, &len), -ENOENT);
	ck_assert_int_eq(kiln_read_file(dir, 10, &text, &len), -EISDIR);
	ck_assert_int_eq(kiln_rm_rf(dir), 0);
}
END_TEST

/* Files whose size stat does not tell (/proc) are read to their end, past
 * the first buffer, and still meet the ceiling. */
START_TEST(read_file_without_a_size)
{
	char *text = NULL;
	size_t len = 0;

	ck_assert_int_eq(kiln_read_file("/proc/self/maps", 1 << 20, &text, &len), 0);
	ck_assert_uint_gt(len, 0);
	ck_assert_uint_eq(strlen(text), len);
	free(text);
	ck_assert_int_eq(kiln_read_file("/proc/self/maps", 10, &text, &len), -EFBIG);
}
END_TEST

/* --- spawn ----------------------------------------------------------------- */

START_TEST(spawn_captures_stdout_with_a_ceiling)
{
	char *argv[] = { "sh", "-c", "printf %s \"$KILN_T\"", NULL };
	char *env[] = { "KILN_T=hello", NULL };
	struct kiln_err e = { 0 };
	char *out = NULL;

	ck_assert_int_eq(kiln_spawn(argv, env, &out, 5, &e), KILN_OK);
	ck_assert_str_eq(out, "hello");
	free(out);
	ck_assert_int_eq(kiln_spawn(argv, env, &out, 4, &e), KILN_E_LIMIT);
	ck_assert_ptr_null(out);
	ck_assert_str_eq(e.msg, "sh: output larger than 4 bytes");
}
END_TEST

START_TEST(spawn_feeds_stdin)
{
	char *argv[] = { "cat", NULL };
	size_t n = 1 << 20, i;
	char *big = malloc(n), *out = NULL;
	struct kiln_spawn_io io = { .input = big, .input_len = n, .out = &out, .out_max = n };
	struct kiln_err e = { 0 };

	/* More than a pipe holds both ways: stdin and stdout flow together. */
	for (i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_OK);
	ck_assert_int_eq(memcmp(out, big, n), 0);
	free(out);
	/* A child that does not read its input is no error of ours. */
	argv[0] = "true";
	io.out = NULL;
	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_OK);
	free(big);
}
END_TEST

START_TEST(spawn_names_the_failure)
{
	char *argv[] = { "sh", "-c", "echo out; echo oops >&2; exit 3", NULL };
	char err[64], *out = NULL;
	struct kiln_spawn_io io = { .err = err, .err_size = sizeof(err), .out = &out, .out_max = 16 };
	struct kiln_err e = { 0 };
	int status = -1;

	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_E_EXEC);
	ck_assert_str_eq(e.msg, "`sh -c echo out; echo oops >&2; exit 3`: exit status 3: oops");
	ck_assert_str_eq(err, "oops\n");
	ck_assert_ptr_null(out);
	/* stdout merged into err comes first, as written. */
	io.out = NULL;
	io.merge = true;
	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_E_EXEC);
	ck_assert_str_eq(err, "out\noops\n");
	ck_assert_str_eq(e.msg, "`sh -c echo out; echo oops >&2; exit 3`: exit status 3: out");
	/* With status asked for, the exit is the caller's to judge. */
	io.status = &status;
	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_OK);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3);
	/* The captured stderr is cut to its buffer. */
	argv[2] = "head -c 1000 /dev/zero | tr '\\0' x >&2; exit 1";
	io.status = NULL;
	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_E_EXEC);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	/* A program that cannot be run says so. */
	argv[0] = "/nonexistent/kiln-no-such-program";
	io.merge = false;
	ck_assert_int_eq(kiln_spawn_io(argv, &io, &e), KILN_E_EXEC);
	ck_assert_ptr_nonnull(strstr(e.msg, "exit status 127: cannot run /nonexistent/kiln-no-such-program"));
}
END_TEST

Suite *lib_suite(void)
{
	Suite *s = suite_create("lib");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, http_body_keeps_its_ceiling);
	tcase_add_test(tc, clock_units_agree_and_advance);
	tcase_add_test(tc, atomic_write_creates_and_replaces);
	tcase_add_test(tc, atomic_write_failure_leaves_the_old_file);
	tcase_add_test(tc, read_file_up_to_the_ceiling);
	tcase_add_test(tc, read_file_without_a_size);
	tcase_add_test(tc, spawn_captures_stdout_with_a_ceiling);
	tcase_add_test(tc, spawn_feeds_stdin);
	tcase_add_test(tc, spawn_names_the_failure);
	suite_add_tcase(s, tc);
	return s;
}
