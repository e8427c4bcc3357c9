/* The tar stream from kiln-diskread, read as hostile input: names that
 * climb out, links that files are then written through, duplicates, kinds
 * other than files and links, sizes past the ceiling, a stream cut short,
 * and the modes that come out. Each stream is made with libarchive, which
 * writes whatever it is given. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "workspace/guestdisk/tarstream.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

struct ent {
	const char *name;
	unsigned type;            /* AE_IFREG, AE_IFLNK, AE_IFCHR, AE_IFDIR; 0: a hard link to link */
	const char *data;         /* file content */
	const char *link;         /* link target, or hard link source */
	mode_t perm;
	long long size;           /* declared size; -1: strlen(data) */
};

struct box {
	char dir[PATH_MAX], tar[PATH_MAX + 8], dest[PATH_MAX + 8];
};

static void box_init(struct box *b)
{
	snprintf(b->dir, sizeof(b->dir), "/tmp/kiln-tarstream-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(b->dir));
	snprintf(b->tar, sizeof(b->tar), "%s/s.tar", b->dir);
	snprintf(b->dest, sizeof(b->dest), "%s/out", b->dir);
}

/* Write es into b->tar; with cut, leave the stream truncated after the
 * last header. */
static void make_tar(struct box *b, const struct ent *es, size_t n, bool cut)
{
	struct archive *a = archive_write_new();
	size_t i;

	ck_assert_int_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	ck_assert_int_eq(archive_write_open_filename(a, b->tar), ARCHIVE_OK);
	for (i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		long long size = es[i].size >= 0 ? es[i].size : es[i].data ? (long long)strlen(es[i].data) : 0;

		archive_entry_set_pathname(ae, es[i].name);
		if (es[i].type)
			archive_entry_set_filetype(ae, es[i].type);
		else {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, es[i].link);
			size = 0;
		}
		archive_entry_set_perm(ae, es[i].perm ? es[i].perm : 0644);
		archive_entry_set_size(ae, size);
		if (es[i].type == AE_IFLNK)
			archive_entry_set_symlink(ae, es[i].link);
		ck_assert_int_eq(archive_write_header(a, ae), ARCHIVE_OK);
		if (es[i].data && !(cut && i + 1 == n))
			archive_write_data(a, es[i].data, strlen(es[i].data));
		archive_entry_free(ae);
	}
	if (cut) {
		/* The header and a little: the stream stops mid-entry. */
		archive_write_free(a);
		ck_assert_int_eq(test_sh("truncate -s 1024 '%s'", b->tar), 0);
		return;
	}
	archive_write_close(a);
	archive_write_free(a);
}

static enum kiln_rc extract(struct box *b, uint64_t max_bytes, uint32_t max_files, struct tarin_stats *st,
			    struct kiln_err *e)
{
	struct tarin_limits lim = { max_bytes, max_files, 0 };
	int fd = open(b->tar, O_RDONLY);
	enum kiln_rc rc;

	ck_assert_int_ge(fd, 0);
	rc = tarin_extract(fd, b->dest, &lim, st, e);
	close(fd);
	return rc;
}

static bool has(const char *dir, const char *rel)
{
	char p[PATH_MAX * 2];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return lstat(p, &st) == 0;
}

START_TEST(a_good_stream_and_its_modes)
{
	const struct ent es[] = {
		{ "bin/tool", AE_IFREG, "#!/bin/sh\n", NULL, 06755, -1 },
		{ "bin/deep/er/file.txt", AE_IFREG, "hello", NULL, 0600, -1 },
		{ "bin/latest", AE_IFLNK, NULL, "../../../etc/passwd", 0777, 0 },
		{ "empty", AE_IFREG, "", NULL, 0644, -1 },
	};
	struct tarin_stats st;
	struct kiln_err e = { 0 };
	char path[PATH_MAX * 2], target[64] = { 0 };
	struct stat sb;
	struct box b;

	box_init(&b);
	make_tar(&b, es, 4, false);
	ck_assert_msg(extract(&b, 1 << 20, 100, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 4);
	ck_assert_uint_eq(st.bytes, 15);
	snprintf(path, sizeof(path), "%s/bin/tool", b.dest);
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0755); /* no setuid or setgid */
	snprintf(path, sizeof(path), "%s/bin/latest", b.dest);
	ck_assert_int_gt(readlink(path, target, sizeof(target) - 1), 0);
	ck_assert_str_eq(target, "../../../etc/passwd"); /* made, never followed */
	ck_assert(has(b.dest, "bin/deep/er/file.txt"));
	test_sh("rm -rf '%s'", b.dir);
}
END_TEST

/* Each stream must fail with rc and a message holding what, leaving
 * nothing outside dest. */
static void refused(const struct ent *es, size_t n, bool cut, uint64_t max_bytes, uint32_t max_files,
		    enum kiln_rc want, const char *what)
{
	struct tarin_stats st;
	struct kiln_err e = { 0 };
	struct box b;

	box_init(&b);
	ck_assert_int_eq(test_sh("mkdir -p '%s/outside'", b.dir), 0);
	make_tar(&b, es, n, cut);
	ck_assert_int_eq(extract(&b, max_bytes, max_files, &st, &e), want);
	ck_assert_msg(strstr(e.msg, what), "'%s' not in: %s", what, e.msg);
	ck_assert_int_eq(test_sh("test -z \"$(ls -A '%s/outside')\" && ! test -e '%s/x'", b.dir, b.dir), 0);
	test_sh("rm -rf '%s'", b.dir);
}

START_TEST(names_that_leave_dest)
{
	const struct ent up[] = { { "../x", AE_IFREG, "p", NULL, 0, -1 } };
	const struct ent mid[] = { { "a/../../x", AE_IFREG, "p", NULL, 0, -1 } };
	const struct ent abs[] = { { "/tmp/x", AE_IFREG, "p", NULL, 0, -1 } };
	const struct ent git[] = { { ".git/hooks/post-checkout", AE_IFREG, "p", NULL, 0, -1 } };
	const struct ent empty[] = { { "a//b", AE_IFREG, "p", NULL, 0, -1 } };

	refused(up, 1, false, 1 << 20, 10, KILN_E_SYNTAX, "'..'");
	refused(mid, 1, false, 1 << 20, 10, KILN_E_SYNTAX, "'..'");
	refused(abs, 1, false, 1 << 20, 10, KILN_E_SYNTAX, "absolute");
	refused(git, 1, false, 1 << 20, 10, KILN_E_SYNTAX, ".git");
	refused(empty, 1, false, 1 << 20, 10, KILN_E_SYNTAX, "empty");
}
END_TEST

START_TEST(writing_through_a_link)
{
	char target[PATH_MAX];
	struct ent es[] = {
		{ "a", AE_IFLNK, NULL, target, 0777, 0 },
		{ "a/x", AE_IFREG, "pwned", NULL, 0644, -1 },
	};
	struct ent twice[] = {
		{ "f", AE_IFLNK, NULL, target, 0777, 0 },
		{ "f", AE_IFREG, "pwned", NULL, 0644, -1 },
	};

	/* The link points at the test's "outside" folder, by absolute path:
	 * refused() makes it in the box of the call. */
	snprintf(target, sizeof(target), "../outside");
	refused(es, 2, false, 1 << 20, 10, KILN_E_IO, "a/x");
	refused(twice, 2, false, 1 << 20, 10, KILN_E_SYNTAX, "twice");
}
END_TEST

START_TEST(kinds_other_than_files_and_links)
{
	const struct ent dev[] = { { "null", AE_IFCHR, NULL, NULL, 0666, 0 } };
	const struct ent dir[] = { { "d", AE_IFDIR, NULL, NULL, 0755, 0 } };
	const struct ent hard[] = {
		{ "f", AE_IFREG, "x", NULL, 0644, -1 },
		{ "g", 0, NULL, "/etc/shadow", 0644, 0 },
	};

	refused(dev, 1, false, 1 << 20, 10, KILN_E_SYNTAX, "neither a file nor a link");
	refused(dir, 1, false, 1 << 20, 10, KILN_E_SYNTAX, "neither a file nor a link");
	refused(hard, 2, false, 1 << 20, 10, KILN_E_SYNTAX, "neither a file nor a link");
}
END_TEST

START_TEST(ceilings_and_a_stream_cut_short)
{
	const struct ent big[] = { { "big", AE_IFREG, "0123456789", NULL, 0644, -1 } };
	const struct ent many[] = {
		{ "1", AE_IFREG, "a", NULL, 0644, -1 },
		{ "2", AE_IFREG, "b", NULL, 0644, -1 },
		{ "3", AE_IFREG, "c", NULL, 0644, -1 },
	};
	const struct ent cut[] = { { "f", AE_IFREG, "abc", NULL, 0644, 100000 } };

	refused(big, 1, false, 9, 10, KILN_E_LIMIT, "ceiling");
	refused(many, 3, false, 1 << 20, 2, KILN_E_LIMIT, "more than 2 files");
	refused(cut, 1, true, 1 << 20, 10, KILN_E_SYNTAX, "f");
}
END_TEST

Suite *tarstream_suite(void)
{
	Suite *s = suite_create("tarstream");
	TCase *tc = tcase_create("tarstream");

	tcase_add_test(tc, a_good_stream_and_its_modes);
	tcase_add_test(tc, names_that_leave_dest);
	tcase_add_test(tc, writing_through_a_link);
	tcase_add_test(tc, kinds_other_than_files_and_links);
	tcase_add_test(tc, ceilings_and_a_stream_cut_short);
	suite_add_tcase(s, tc);
	return s;
}
