/* Artifacts of kiln exec: doublestar globs, paths minus exclude, the
 * extraction from an ext4 image made with mke2fs (no VM, no mount), and
 * the tree copy that never writes through a link in its destination. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workspace/artifacts.h"
#include "workspace/fstree.h"
#include "workspace/guestdisk/diskread.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static bool exists(const char *dir, const char *rel)
{
	char path[PATH_MAX * 2];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return lstat(path, &st) == 0;
}

START_TEST(doublestar_globs)
{
	static const struct {
		const char *pattern, *path;
		bool match;
	} cases[] = {
		{ "dist/*.o", "dist/a.o", true },
		{ "dist/*.o", "dist/sub/a.o", false },
		{ "**/*.o", "a/b/c.o", true },
		{ "**/*.o", "c.o", true },
		{ "dist/**", "dist/a/b", true },
		{ "dist/**/x", "dist/x", true },
		{ "dist/**/x", "dist/a/b/x", true },
		{ "dist/**/x", "dist/a/b/y", false },
		{ "*", ".hidden", true },
		{ "a?c", "abc", true },
		{ "a[0-9]", "a7", true },
		{ "a[0-9]", "ab", false },
		{ "build", "build", true },
		{ "build", "build2", false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(artifacts_glob(cases[i].pattern, cases[i].path) == cases[i].match, "%s ~ %s",
			      cases[i].pattern, cases[i].path);
}
END_TEST

START_TEST(normalised_patterns)
{
	char b[PATH_MAX];

	ck_assert(artifacts_normalize("./dist/", NULL, b, sizeof(b)));
	ck_assert_str_eq(b, "dist");
	ck_assert(artifacts_normalize("/builds/g/p/out//x/", "/builds/g/p", b, sizeof(b)));
	ck_assert_str_eq(b, "out/x");
	ck_assert(artifacts_normalize(".", NULL, b, sizeof(b)));
	ck_assert_str_eq(b, "**");
	ck_assert(!artifacts_normalize("../x", NULL, b, sizeof(b)));
	ck_assert(!artifacts_normalize("a/../../x", NULL, b, sizeof(b)));
	ck_assert(!artifacts_normalize("/etc/passwd", "/builds/g/p", b, sizeof(b)));
	ck_assert(!artifacts_normalize("a\"b", NULL, b, sizeof(b)));
}
END_TEST

START_TEST(paths_minus_exclude)
{
	const char *paths[] = { "dist/", "reports/*.xml", "**/*.log" };
	const char *excl[] = { "dist/*.tmp", "dist/sub" };
	struct artifacts_spec a = { paths, 3, excl, 2, NULL, false };
	const char *all[] = { "**" };
	struct artifacts_spec everything = { all, 1, NULL, 0, NULL, false };

	ck_assert(artifacts_selected(&a, "dist/app.txt"));
	ck_assert(artifacts_selected(&a, "dist/deep/er/x"));
	ck_assert(!artifacts_selected(&a, "dist/scratch.tmp"));
	/* exclude is not recursive: a folder matched keeps its files. */
	ck_assert(artifacts_selected(&a, "dist/sub/x.tmp"));
	ck_assert(artifacts_selected(&a, "reports/unit.xml"));
	ck_assert(!artifacts_selected(&a, "reports/unit.txt"));
	ck_assert(artifacts_selected(&a, "a/b/build.log"));
	ck_assert(!artifacts_selected(&a, "src/main.c"));
	ck_assert(artifacts_selected(&everything, "src/main.c"));
	ck_assert(!artifacts_selected(&everything, ".git/config"));
	ck_assert(!artifacts_selected(&everything, ".git"));
	ck_assert(artifacts_selected(&everything, ".gitignore"));
}
END_TEST

START_TEST(copy_never_follows_links_in_the_destination)
{
	char dir[] = "/tmp/kiln-fstree-test-XXXXXX", src[PATH_MAX], dst[PATH_MAX], outside[PATH_MAX];
	struct fstree_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	ck_assert_int_eq(test_sh("set -e; cd '%s'; mkdir -p src/dist/sub dst outside; echo a > src/dist/a.txt;"
			    "echo b > src/dist/sub/b.txt; chmod 751 src/dist/a.txt; ln -s a.txt src/dist/link;"
			    "touch -d 2001-02-03 src/dist/a.txt; ln -s ../outside dst/dist; echo keep > dst/keep;"
			    "mkdir dst/file-here; echo c > src/file-here",
			    dir),
			 0);
	ck_assert_msg(fstree_copy(src, dst, NULL, NULL, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 4);
	/* The link in dst was replaced by a folder; nothing went outside. */
	ck_assert_int_eq(lstat(outside, &sb), 0);
	ck_assert(!exists(outside, "a.txt"));
	ck_assert_int_eq(test_sh("test -d '%s/dist' && ! test -L '%s/dist'", dst, dst), 0);
	ck_assert_int_eq(test_sh("cmp -s '%s/dist/a.txt' '%s/dist/a.txt'", src, dst), 0);
	ck_assert_int_eq(test_sh("test \"$(stat -c %%a '%s/dist/a.txt')\" = 751", dst), 0);
	ck_assert_int_eq(test_sh("test \"$(stat -c %%Y '%s/dist/a.txt')\" = \"$(stat -c %%Y '%s/dist/a.txt')\"", dst, src), 0);
	ck_assert_int_eq(test_sh("test \"$(readlink '%s/dist/link')\" = a.txt", dst), 0);
	ck_assert(exists(dst, "keep"));
	ck_assert_int_eq(test_sh("test -f '%s/file-here'", dst), 0);
	test_sh("rm -rf '%s'", dir);
}
END_TEST

/* A scratch folder for an image test: dir, with ws.ext4 (img), the
 * store's job folder (dest) and a temporary folder (tmp) named in it. */
struct scratch {
	char dir[32], img[PATH_MAX], dest[PATH_MAX], tmp[PATH_MAX];
};

static void scratch_init(struct scratch *sc)
{
	snprintf(sc->dir, sizeof(sc->dir), "/tmp/kiln-artifacts-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sc->dir));
	snprintf(sc->img, sizeof(sc->img), "%s/ws.ext4", sc->dir);
	snprintf(sc->dest, sizeof(sc->dest), "%s/store/job", sc->dir);
	snprintf(sc->tmp, sizeof(sc->tmp), "%s/tmp", sc->dir);
}

START_TEST(collect_from_an_ext4_image)
{
	struct scratch sc;
	char *dir = sc.dir, *img = sc.img, *dest = sc.dest, *tmp = sc.tmp;
	const char *paths[] = { "dist/", "reports/*.xml", "**/*.log", "nope/", "/builds/g/demo/abs.txt" };
	const char *excl[] = { "dist/*.tmp" };
	struct artifacts_spec a = { paths, 5, excl, 1, "/builds/g/demo", false };
	struct fstree_stats st;
	struct kiln_err e = { 0 };

	scratch_init(&sc);
	ck_assert_int_eq(test_sh("set -e; cd '%s'; p=root/g/demo; mkdir -p $p/dist/sub $p/reports $p/src/x $p/.git;"
			    "echo app > $p/dist/app.txt; echo s > $p/dist/scratch.tmp; echo d > $p/dist/sub/deep.bin;"
			    "echo x > $p/reports/unit.xml; echo t > $p/reports/unit.txt; echo l > $p/src/x/build.log;"
			    "echo c > $p/src/main.c; echo g > $p/.git/config; echo abs > $p/abs.txt;"
			    "mkdir -p store/job/stale && echo old > store/job/stale/old;"
			    "PATH=$PATH:/usr/sbin:/sbin mke2fs -q -F -t ext4 -d root ws.ext4 32M >/dev/null",
			    dir),
			 0);
	ck_assert_msg(artifacts_collect(img, "g/demo", &a, tmp, dest, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 5);
	ck_assert(exists(dest, "dist/app.txt"));
	ck_assert(exists(dest, "dist/sub/deep.bin"));
	ck_assert(!exists(dest, "dist/scratch.tmp"));
	ck_assert(exists(dest, "reports/unit.xml"));
	ck_assert(!exists(dest, "reports/unit.txt"));
	ck_assert(exists(dest, "src/x/build.log"));
	ck_assert(exists(dest, "abs.txt"));
	ck_assert(!exists(dest, "src/main.c"));
	ck_assert(!exists(dest, ".git"));
	ck_assert(!exists(dest, "stale"));
	/* The temporary extraction is gone. */
	ck_assert_int_eq(test_sh("test -z \"$(ls -A '%s')\"", tmp), 0);

	/* Only literal leading folders: each dumped on its own. */
	a.n_paths = 2;
	ck_assert_msg(artifacts_collect(img, "g/demo", &a, tmp, dest, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 3);
	ck_assert(exists(dest, "dist/app.txt"));
	ck_assert(exists(dest, "reports/unit.xml"));
	ck_assert(!exists(dest, "src"));

	/* Nothing matches: no folder at all. */
	paths[0] = "missing/";
	a.n_paths = 1;
	ck_assert_msg(artifacts_collect(img, "g/demo", &a, tmp, dest, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 0);
	ck_assert_int_ne(access(dest, F_OK), 0);
	test_sh("rm -rf '%s'", dir);
}
END_TEST

/* artifacts:untracked: what the checkout's git index does not list,
 * ignored files included, .git and submodule contents never. */
START_TEST(collect_untracked_files)
{
	struct scratch sc;
	char *dir = sc.dir, *img = sc.img, *dest = sc.dest, *tmp = sc.tmp;
	const char *paths[] = { "src/main.c" };
	const char *excl[] = { "**/*.o" };
	struct artifacts_spec a = { NULL, 0, NULL, 0, "/builds/g/demo", true };
	struct fstree_stats st;
	struct kiln_err e = { 0 };

	scratch_init(&sc);
	ck_assert_int_eq(test_sh("set -e; cd '%s'; p=root/g/demo; mkdir -p $p/src $p/sub $p/mod; cd $p;"
			    "git init -q .; echo c > src/main.c; echo '*.log' > .gitignore; echo r > README;"
			    "echo m > mod/tracked; git add src/main.c .gitignore README mod/tracked;"
			    "git update-index --add --cacheinfo 160000,1111111111111111111111111111111111111111,vendor;"
			    "mkdir vendor; echo v > vendor/in-submodule;"
			    "echo b > build.log; echo n > notes.txt; echo o > src/main.o; echo s > sub/new.txt;"
			    "echo x > mod/extra; echo ' ' > 'with space';"
			    "cd '%s'; PATH=$PATH:/usr/sbin:/sbin mke2fs -q -F -t ext4 -d root ws.ext4 32M >/dev/null",
			    dir, dir),
			 0);
	ck_assert_msg(artifacts_collect(img, "g/demo", &a, tmp, dest, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 6);
	ck_assert(exists(dest, "build.log"));   /* ignored, still untracked */
	ck_assert(exists(dest, "notes.txt"));
	ck_assert(exists(dest, "sub/new.txt"));
	ck_assert(exists(dest, "mod/extra"));
	ck_assert(exists(dest, "with space"));
	ck_assert(exists(dest, "src/main.o"));
	ck_assert(!exists(dest, "src/main.c"));
	ck_assert(!exists(dest, "README"));
	ck_assert(!exists(dest, "mod/tracked"));
	ck_assert(!exists(dest, "vendor"));
	ck_assert(!exists(dest, ".git"));
	ck_assert_int_eq(test_sh("test -z \"$(ls -A '%s')\"", tmp), 0);

	/* With paths (a tracked file) and an exclude pattern. */
	a.paths = paths;
	a.n_paths = 1;
	a.exclude = excl;
	a.n_exclude = 1;
	ck_assert_msg(artifacts_collect(img, "g/demo", &a, tmp, dest, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 6);
	ck_assert(exists(dest, "src/main.c"));
	ck_assert(!exists(dest, "src/main.o"));
	test_sh("rm -rf '%s'", dir);
}
END_TEST

/* A guest that rewrites its disk's raw blocks. Each image is built with
 * mke2fs -d (no metadata checksums, so an edit is not caught as a bad
 * checksum but by the reader's own rules) and then edited: by debugfs -w
 * for inode fields and links, by replacing a name's bytes for names mke2fs
 * cannot make. debugfs rdump, the reader before kiln-diskread, wrote
 * outside its destination or ran out of bounds on each. */
static void hostile_image(const struct scratch *sc, const char *setup, const char *edit)
{
	ck_assert_int_eq(test_sh("set -e; cd '%s'; p=root/g/demo; mkdir -p $p/dist; %s;"
				 "PATH=$PATH:/usr/sbin:/sbin; mke2fs -q -F -t ext4 -O ^metadata_csum,^dir_index "
				 "-d root ws.ext4 32M >/dev/null; %s",
				 sc->dir, setup, edit),
			 0);
}

/* Replace the bytes from with to (the same length) once in the image. */
#define PATCH_NAME(from, to)                                                                                    \
	"python3 -c 'import sys; b=open(\"ws.ext4\",\"rb\").read(); assert b.count(b\"" from "\")==1; "           \
	"open(\"ws.ext4\",\"wb\").write(b.replace(b\"" from "\", b\"" to "\"))'"

static enum kiln_rc collect_all(struct scratch *sc, struct fstree_stats *st, struct kiln_err *e)
{
	static const char *paths[] = { "dist/" };
	struct artifacts_spec a = { paths, 1, NULL, 0, "/builds/g/demo", false };

	return artifacts_collect(sc->img, "g/demo", &a, sc->tmp, sc->dest, st, e);
}

START_TEST(hostile_name_climbs_out)
{
	struct scratch sc;
	struct fstree_stats st;
	struct kiln_err e = { 0 };

	scratch_init(&sc);
	hostile_image(&sc, "echo pwned > $p/dist/..%..%..%..%escaped; echo ok > $p/dist/fine",
		      PATCH_NAME("..%..%..%..%escaped", "../../../../escaped"));
	ck_assert_int_ne(collect_all(&sc, &st, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "'/'"), "%s", e.msg);
	ck_assert(!exists(sc.dir, "escaped"));
	ck_assert(!exists(sc.dir, "tmp/escaped"));
	ck_assert_int_ne(access(sc.dest, F_OK), 0); /* all or nothing */
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

START_TEST(hostile_link_then_file_of_the_same_name)
{
	struct scratch sc;
	struct fstree_stats st;
	struct kiln_err e = { 0 };
	char victim[PATH_MAX + 16];

	scratch_init(&sc);
	snprintf(victim, sizeof(victim), "%s/victim", sc.dir);
	ck_assert_int_eq(test_sh("echo untouched > '%s'", victim), 0);
	/* "twin_a" is a link to the host's victim, "twin_b" becomes "twin_a". */
	hostile_image(&sc, "ln -s $PWD/victim $p/dist/twin_a; echo pwned > $p/dist/twin_b",
		      PATCH_NAME("twin_b", "twin_a"));
	ck_assert_int_ne(collect_all(&sc, &st, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "twice"), "%s", e.msg);
	ck_assert_int_eq(test_sh("grep -qx untouched '%s'", victim), 0);
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

START_TEST(hostile_inflated_size)
{
	struct scratch sc;
	struct fstree_stats st;
	struct kiln_err e = { 0 };

	scratch_init(&sc);
	/* 16 TiB claimed by a 3-byte file: refused before a byte is written. */
	hostile_image(&sc, "echo big > $p/dist/big",
		      "debugfs -w -R 'sif /g/demo/dist/big size 0x100000000000' ws.ext4 >/dev/null 2>&1");
	ck_assert_int_eq(collect_all(&sc, &st, &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "dist/big"), "%s", e.msg);
	ck_assert_int_ne(access(sc.dest, F_OK), 0);
	ck_assert_int_eq(test_sh("test -z \"$(ls -A '%s')\"", sc.tmp), 0);
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

START_TEST(hostile_corrupt_fast_link)
{
	struct scratch sc;
	struct fstree_stats st;
	struct kiln_err e = { 0 };

	scratch_init(&sc);
	/* A fast link (target in the inode) that claims 4000 bytes. */
	hostile_image(&sc, "ln -s short $p/dist/link",
		      "debugfs -w -R 'sif /g/demo/dist/link size 4000' ws.ext4 >/dev/null 2>&1");
	ck_assert_int_ne(collect_all(&sc, &st, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "dist/link"), "%s", e.msg);
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

START_TEST(hostile_folder_inside_itself)
{
	struct scratch sc;
	struct fstree_stats st;
	struct kiln_err e = { 0 };

	scratch_init(&sc);
	hostile_image(&sc, "mkdir -p $p/dist/sub; echo x > $p/dist/sub/x",
		      "debugfs -w -R 'ln /g/demo/dist /g/demo/dist/sub/again' ws.ext4 >/dev/null 2>&1");
	ck_assert_int_ne(collect_all(&sc, &st, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "inside itself"), "%s", e.msg);
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

START_TEST(setuid_bits_never_come_out)
{
	struct scratch sc;
	struct fstree_stats st;
	struct kiln_err e = { 0 };
	char path[PATH_MAX + 32];
	struct stat sb;

	scratch_init(&sc);
	hostile_image(&sc, "echo x > $p/dist/tool; chmod 6755 $p/dist/tool", "true");
	ck_assert_msg(collect_all(&sc, &st, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/dist/tool", sc.dest);
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0755);
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

/* What the reader is once it runs, from its /proc while it waits on a
 * full pipe: the jail of workspace/guestdisk/diskread.h. */
struct jail_seen {
	char status[4096];
	bool own_net, own_mnt;
	char root[PATH_MAX];
};

static void look_at_reader(pid_t pid, void *arg)
{
	struct jail_seen *js = arg;
	char path[64], mine[64], theirs[64];
	int i;

	/* Until it has jailed itself (seccomp is its last step): 10 s at most. */
	for (i = 0; i < 1000; i++) {
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		if (!(f = fopen(path, "r")))
			break;
		n = fread(js->status, 1, sizeof(js->status) - 1, f);
		js->status[n] = '\0';
		fclose(f);
		if (strstr(js->status, "\nSeccomp:\t2"))
			break;
		usleep(10000);
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	js->own_net = readlink("/proc/self/ns/net", mine, sizeof(mine)) > 0 &&
		      readlink(path, theirs, sizeof(theirs)) > 0 && strcmp(mine, theirs);
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	memset(mine, 0, sizeof(mine));
	memset(theirs, 0, sizeof(theirs));
	js->own_mnt = readlink("/proc/self/ns/mnt", mine, sizeof(mine)) > 0 &&
		      readlink(path, theirs, sizeof(theirs)) > 0 && strcmp(mine, theirs);
}

START_TEST(the_reader_is_jailed)
{
	static const char *const fields[] = {
		"\nUid:\t65534\t65534\t65534\t65534", "\nGid:\t65534\t65534\t65534\t65534", "\nGroups:\t \n",
		"\nCapEff:\t0000000000000000", "\nCapPrm:\t0000000000000000", "\nNoNewPrivs:\t1", "\nSeccomp:\t2",
	};
	struct scratch sc;
	struct jail_seen js = { 0 };
	const char *paths[] = { "dist/" };
	struct artifacts_spec a = { paths, 1, NULL, 0, "/builds/g/demo", false };
	struct diskread_req r = { .image = sc.img, .project = "g/demo", .a = &a, .tmp_dir = sc.tmp,
				  .started = look_at_reader, .started_arg = &js };
	struct tarin_stats st;
	struct kiln_err e = { 0 };
	size_t i;

	scratch_init(&sc);
	r.image = sc.img;
	r.tmp_dir = sc.tmp;
	/* 4 MiB: more than a pipe holds, so the reader waits for kiln. */
	hostile_image(&sc, "head -c 4194304 /dev/zero > $p/dist/big", "true");
	ck_assert_msg(diskread_extract(&r, sc.dest, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 1);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		ck_assert_msg(strstr(js.status, fields[i]), "no '%s' in the reader's status:\n%s", fields[i] + 1,
			      js.status);
	ck_assert(js.own_net);
	ck_assert(js.own_mnt);
	test_sh("rm -rf '%s'", sc.dir);
}
END_TEST

Suite *artifacts_suite(void)
{
	Suite *s = suite_create("artifacts");
	TCase *tc = tcase_create("artifacts");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, doublestar_globs);
	tcase_add_test(tc, normalised_patterns);
	tcase_add_test(tc, paths_minus_exclude);
	tcase_add_test(tc, copy_never_follows_links_in_the_destination);
	tcase_add_test(tc, collect_from_an_ext4_image);
	tcase_add_test(tc, collect_untracked_files);
	tcase_add_test(tc, hostile_name_climbs_out);
	tcase_add_test(tc, hostile_link_then_file_of_the_same_name);
	tcase_add_test(tc, hostile_inflated_size);
	tcase_add_test(tc, hostile_corrupt_fast_link);
	tcase_add_test(tc, hostile_folder_inside_itself);
	tcase_add_test(tc, setuid_bits_never_come_out);
	tcase_add_test(tc, the_reader_is_jailed);
	suite_add_tcase(s, tc);
	return s;
}
