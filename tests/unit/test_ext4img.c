/* Workspace images (workspace/ext4img.h): the fast path (a blank copied and
 * filled in-process) against mke2fs -d on the same folder. Images are
 * checked with e2fsck and read back with debugfs, never mounted. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workspace/ext4img.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static bool have_e2fsprogs(void)
{
	if (test_sh("command -v debugfs >/dev/null && command -v e2fsck >/dev/null && command -v mke2fs >/dev/null") == 0)
		return true;
	fprintf(stderr, "ext4img tests skipped: they need e2fsprogs (debugfs, e2fsck, mke2fs)\n");
	return false;
}

/* A test's folder: root (the tree to pack, made), cache (the blanks'),
 * img (the image's path). */
struct fx {
	char *dir;
	char root[PATH_MAX], cache[PATH_MAX], img[PATH_MAX];
};

static void fx_up(struct fx *f)
{
	f->dir = test_tmpdir();
	snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
	snprintf(f->cache, sizeof(f->cache), "%s/blanks", f->dir);
	snprintf(f->img, sizeof(f->img), "%s/ws.img", f->dir);
	ck_assert_int_eq(mkdir(f->root, 0755), 0);
}

/* A folder of what a checkout holds, with the edges the fast path must
 * get right: empty and multi-block files, modes, nanosecond mtimes, fast
 * and slow symlinks, a folder of many entries (grown past one block), a
 * name of 255 bytes, owners other than the caller's. */
static void make_tree(const char *root)
{
	char name[256];

	memset(name, 'n', 255);
	name[255] = '\0';
	ck_assert_int_eq(test_sh("set -e; cd '%s'; mkdir -p a/b/c many; : > empty; echo hello > a/b/c/deep.txt; "
				 "head -c 300000 /dev/urandom > big.bin; printf x > a/%s; "
				 "printf '#!/bin/sh\\necho run\\n' > run.sh; chmod 0751 run.sh; chmod 0700 a/b; "
				 "touch -d '2021-03-04 05:06:07.123456789' run.sh; "
				 "ln -s a/b/c/deep.txt short-link; "
				 "ln -s $(printf 'x%%.0s' $(seq 100))/target long-link; "
				 "for i in $(seq 600); do echo $i > many/file-with-a-longish-name-$i; done; "
				 "chown 1234:5678 empty",
				 root, name),
			 0);
}

/* The image is clean to e2fsck and holds root's tree: content, modes,
 * owners and mtimes of every entry; with ns, run.sh's mtime to the
 * nanosecond. */
static void check_image(const char *image, const char *root, const char *out, bool ns)
{
	char buf[512];

	ck_assert_msg(test_sh("e2fsck -fn '%s' >/dev/null 2>&1", image) == 0, "e2fsck finds %s unclean", image);
	ws_extract(image, out);
	ck_assert_msg(test_sh("diff -r --no-dereference -x lost+found '%s' '%s'", root, out) == 0, "%s differs from %s",
		      out, root);
	/* debugfs rdump keeps modes, owners and mtimes (seconds): compare. */
	ck_assert_int_eq(test_sh("cd '%s' && find . -mindepth 1 ! -type l -printf '%%p %%m %%U %%G %%T@\n' | "
				 "awk '{ print $1, $2, $3, $4, int($5) }' | sort > '%s.want'",
				 root, out),
			 0);
	ck_assert_int_eq(test_sh("cd '%s' && find . -mindepth 1 ! -type l ! -path './lost+found*' "
				 "-printf '%%p %%m %%U %%G %%T@\n' | awk '{ print $1, $2, $3, $4, int($5) }' | "
				 "sort > '%s.got'",
				 out, out),
			 0);
	ck_assert_msg(test_sh("diff '%s.want' '%s.got'", out, out) == 0, "modes, owners or mtimes differ");
	/* The extra field: 123456789 ns << 2. */
	ck_assert_int_eq(test_sh_out(buf, sizeof(buf), "debugfs -R 'stat /run.sh' '%s' 2>/dev/null | grep mtime:", image), 0);
	if (ns)
		ck_assert_msg(strstr(buf, ":1d6f3454"), "no nanoseconds in %s", buf);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /' '%s' 2>/dev/null | grep -q 'Mode:  0755'", image), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /' '%s' 2>/dev/null | grep -q 'User:     0   Group:     0'", image), 0);
}

START_TEST(blank_and_mke2fs_make_the_same_tree)
{
	struct fx f;
	char *dir, *root, *cache, *img1, img2[PATH_MAX], out[PATH_MAX], buf[64];
	struct ext4img_stats st1, st2;
	struct kiln_err e = { 0 };

	if (!have_e2fsprogs() || geteuid() != 0)
		return;
	fx_up(&f);
	dir = f.dir, root = f.root, cache = f.cache, img1 = f.img;
	snprintf(img2, sizeof(img2), "%s/slow.img", dir);
	make_tree(root);

	ck_assert_msg(ext4img_build(root, img1, "kiln-ws", 0, cache, &st1, &e) == KILN_OK, "%s", e.msg);
	ck_assert(st1.from_blank);
	ck_assert_uint_eq(st1.image_bytes % (4ULL << 20), 0);
	snprintf(out, sizeof(out), "%s/x1", dir);
	check_image(img1, root, out, true);
	ck_assert_int_eq(test_sh("dumpe2fs -h '%s' 2>/dev/null | grep -q 'volume name:.*kiln-ws'", img1), 0);

	ck_assert_msg(ext4img_build(root, img2, "kiln-ws", 0, NULL, &st2, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!st2.from_blank);
	ck_assert_uint_eq(st2.image_bytes, st1.image_bytes);
	ck_assert_uint_eq(st2.inodes, st1.inodes);
	snprintf(out, sizeof(out), "%s/x2", dir);
	check_image(img2, root, out, false);

	/* Again: the same blank, copied, not made anew. */
	ck_assert_msg(ext4img_build(root, img2, "kiln-ws", 0, cache, &st2, &e) == KILN_OK, "%s", e.msg);
	ck_assert(st2.from_blank);
	ck_assert_int_eq(test_sh_out(buf, sizeof(buf), "ls '%s' | wc -l", cache), 0);
	ck_assert_str_eq(buf, "1");
	snprintf(out, sizeof(out), "%s/x3", dir);
	check_image(img2, root, out, true);
	ck_assert_int_eq(test_sh("rm -rf '%s'", dir), 0);
}
END_TEST

/* Hard links within the folder share an inode on the fast path too (one
 * linked from outside is a file of one link); what the fast path does not
 * write (a fifo) goes through mke2fs -d, complete; a folder over the size
 * bound leaves no image. */
START_TEST(the_rest_goes_through_mke2fs)
{
	struct fx f;
	char *dir, *root, *cache, *img;
	struct ext4img_stats st;
	struct kiln_err e = { 0 };

	if (!have_e2fsprogs())
		return;
	fx_up(&f);
	dir = f.dir, root = f.root, cache = f.cache, img = f.img;
	ck_assert_int_eq(test_sh("cd '%s' && echo one > a && ln a b && mkdir d && ln a d/c && echo two > '%s/out' && "
				 "ln '%s/out' in", root, dir, dir), 0);
	ck_assert_msg(ext4img_build(root, img, "kiln-ws", 0, cache, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert(st.from_blank);
	ck_assert_int_eq(test_sh("e2fsck -fn '%s' >/dev/null 2>&1", img), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /b' '%s' 2>/dev/null | grep -q 'Links: 3'", img), 0);
	ck_assert_int_eq(test_sh("test \"$(debugfs -R 'ls -l /d' '%s' 2>/dev/null | awk '$NF == \"c\" { print $1 }')\" = "
				 "\"$(debugfs -R 'ls -l /' '%s' 2>/dev/null | awk '$NF == \"a\" { print $1 }')\"", img, img), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /in' '%s' 2>/dev/null | grep -q 'Links: 1'", img), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'cat /d/c' '%s' 2>/dev/null | grep -qx one", img), 0);

	ck_assert_int_eq(test_sh("mkfifo '%s/f'", root), 0);
	ck_assert_msg(ext4img_build(root, img, "kiln-ws", 0, cache, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!st.from_blank);
	ck_assert_int_eq(test_sh("e2fsck -fn '%s' >/dev/null 2>&1", img), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /b' '%s' 2>/dev/null | grep -q 'Links: 3'", img), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /f' '%s' 2>/dev/null | grep -q 'Type: FIFO'", img), 0);

	/* Over the bound: KILN_E_LIMIT, no image. */
	snprintf(f.img, sizeof(f.img), "%s/big.img", dir);
	ck_assert_int_eq(test_sh("rm -f '%s/f' && head -c 200000 /dev/zero > '%s/c'", root, root), 0);
	ck_assert_int_eq(ext4img_build(root, img, "kiln-ws", 64 << 10, cache, &st, &e), KILN_E_LIMIT);
	ck_assert_int_ne(access(img, F_OK), 0);
	ck_assert_int_eq(test_sh("rm -rf '%s'", dir), 0);
}
END_TEST

/* The cache keeps EXT4IMG_MAX_BLANKS blanks: more sizes, and the least
 * recently used go. */
START_TEST(blank_cache_has_a_ceiling)
{
	struct fx f;
	char *dir, *root, *cache, *img, buf[64];
	struct ext4img_stats st;
	struct kiln_err e = { 0 };
	int i;

	if (!have_e2fsprogs())
		return;
	fx_up(&f);
	dir = f.dir, root = f.root, cache = f.cache, img = f.img;
	ck_assert_int_eq(mkdir(cache, 0755), 0);
	/* Blanks of other sizes, older than any the builds make. */
	for (i = 0; i < EXT4IMG_MAX_BLANKS + 3; i++)
		ck_assert_int_eq(test_sh("truncate -s 1M '%s/kiln-ws-%d-8192.ext4' && touch -d '2020-01-01' "
					 "'%s/kiln-ws-%d-8192.ext4'", cache, i, cache, i), 0);
	ck_assert_int_eq(test_sh("echo x > '%s/f'", root), 0);
	ck_assert_msg(ext4img_build(root, img, "kiln-ws", 0, cache, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert(st.from_blank);
	ck_assert_int_eq(test_sh_out(buf, sizeof(buf), "ls '%s' | wc -l", cache), 0);
	ck_assert_int_le(atoi(buf), EXT4IMG_MAX_BLANKS + 3);
	/* The one just made stays. */
	ck_assert_int_eq(test_sh("ls '%s' | grep -q 'kiln-ws-%llu-%llu.ext4'", cache,
				 (unsigned long long)st.image_bytes, (unsigned long long)st.inodes), 0);
	for (i = 0; i < 4; i++)
		ck_assert_msg(ext4img_build(root, img, "kiln-ws", 0, cache, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(test_sh_out(buf, sizeof(buf), "ls '%s' | wc -l", cache), 0);
	ck_assert_int_le(atoi(buf), EXT4IMG_MAX_BLANKS);
	ck_assert_int_eq(test_sh("ls '%s' | grep -q 'kiln-ws-%llu-%llu.ext4'", cache,
				 (unsigned long long)st.image_bytes, (unsigned long long)st.inodes), 0);
	ck_assert_int_eq(test_sh("rm -rf '%s'", dir), 0);
}
END_TEST

Suite *ext4img_suite(void)
{
	Suite *s = suite_create("ext4img");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, blank_and_mke2fs_make_the_same_tree);
	tcase_add_test(tc, the_rest_goes_through_mke2fs);
	tcase_add_test(tc, blank_cache_has_a_ceiling);
	suite_add_tcase(s, tc);
	return s;
}
