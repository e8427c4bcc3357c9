#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner/config.h"
#include "job/images.h"
#include "job/manifest.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(load_good)
{
	struct manifest m;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(manifest_load(&m, fixture("manifest/good.json"), &e), KILN_OK);
	ck_assert_str_eq(m.name, "tiny");
	ck_assert_str_eq(m.kind, "rootfs");
	ck_assert_uint_eq(m.n_inputs, 2);
	ck_assert_str_eq(m.inputs[1], "package busybox-static 1:1.35.0-4");
	ck_assert_uint_eq(m.n_files, 1);
	ck_assert_uint_eq(manifest_size(&m), 67108864);
	ck_assert_ptr_nonnull(manifest_find(&m, "rootfs.ext4"));
	ck_assert_ptr_null(manifest_find(&m, "bzImage"));
	manifest_free(&m);
}
END_TEST

static const struct {
	const char *file, *expect;
} bad[] = {
	{ "manifest/bad-sha.json", "files[0]: 'sha256' must be 64 hex digits" },
	{ "manifest/path-name.json", "files[0]: 'name' must be a plain file name" },
	{ "manifest/no-files.json", "'files' must list 1 to 16 files" },
	{ "manifest/truncated.json", ":1: " },
};

START_TEST(load_bad)
{
	struct manifest m;
	struct kiln_err e = { 0 };
	const char *path = fixture(bad[_i].file);

	ck_assert_int_ne(manifest_load(&m, path, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, bad[_i].expect) != NULL, "%s: got '%s'", bad[_i].file, e.msg);
	ck_assert_msg(strncmp(e.msg, path, strlen(path)) == 0, "error must start with the path: %s", e.msg);
}
END_TEST

START_TEST(save_roundtrip)
{
	struct manifest m, back;
	struct kiln_err e = { 0 };
	char dir[] = "/tmp/kiln-man-XXXXXX", path[PATH_MAX];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(manifest_load(&m, fixture("manifest/good.json"), &e), KILN_OK);
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	ck_assert_int_eq(manifest_save(&m, path, &e), KILN_OK);
	ck_assert_int_eq(manifest_load(&back, path, &e), KILN_OK);
	ck_assert_str_eq(back.inputs_sha256, m.inputs_sha256);
	ck_assert_str_eq(back.files[0].sha256, m.files[0].sha256);
	ck_assert_uint_eq(back.n_inputs, m.n_inputs);
	ck_assert(back.build_seconds == m.build_seconds);
	manifest_free(&m);
	manifest_free(&back);
	kiln_rm_rf(dir);
}
END_TEST

/* A recipe in a scratch folder: its output depends on $FAKE_INPUT, which it
 * also prints as an input, so changing it must cause a rebuild. */
static void write_recipe(const char *dir, const char *name, const char *body)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\n# kind: rootfs\n%s", body);
	fclose(f);
	chmod(path, 0755);
}

START_TEST(build_caches_by_inputs)
{
	char dir[] = "/tmp/kiln-img-XXXXXX", recipes[PATH_MAX], images[PATH_MAX], cache[PATH_MAX];
	char path[PATH_MAX];
	struct images_ctx ctx;
	struct kiln_err e = { 0 };
	struct manifest m;
	bool rebuilt;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(recipes, sizeof(recipes), "%s/recipes", dir);
	snprintf(images, sizeof(images), "%s/images", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	ck_assert_int_eq(kiln_mkdir_p(recipes), 0);
	write_recipe(recipes, "fake",
		     "case $1 in\n"
		     "inputs) echo \"param value $FAKE_INPUT\";;\n"
		     "build) printf '%s' \"$FAKE_INPUT\" > \"$2/disk.img\"; echo built >> \"$KILN_CACHE_DIR/log\";;\n"
		     "*) exit 2;;\nesac\n");
	write_recipe(recipes, "broken", "case $1 in inputs) echo x;; build) exit 3;; esac\n");
	ctx.images_dir = images;
	ctx.cache_dir = cache;
	ctx.recipes_dir = recipes;
	ctx.agent_path = "/nonexistent";

	setenv("FAKE_INPUT", "one", 1);
	ck_assert_int_eq(images_build(&ctx, "fake", false, &rebuilt, &e), KILN_OK);
	ck_assert(rebuilt);
	ck_assert_int_eq(images_build(&ctx, "fake", false, &rebuilt, &e), KILN_OK);
	ck_assert_msg(!rebuilt, "same inputs must not rebuild");
	ck_assert_int_eq(images_build(&ctx, "fake", true, &rebuilt, &e), KILN_OK);
	ck_assert_msg(rebuilt, "--force must rebuild");
	setenv("FAKE_INPUT", "three", 1);
	ck_assert_int_eq(images_build(&ctx, "fake", false, &rebuilt, &e), KILN_OK);
	ck_assert_msg(rebuilt, "changed inputs must rebuild");

	ck_assert_int_eq(images_manifest(&ctx, "fake", &m, &e), KILN_OK);
	ck_assert_str_eq(m.kind, "rootfs");
	ck_assert_uint_eq(m.files[0].size, 5);
	/* sha256("three") */
	ck_assert_str_eq(m.files[0].sha256, "8b5b9db0c13db24256c829aa364aa90c6d2eba318b9232a4ab9313b954d3555f");
	ck_assert_str_eq(m.inputs[1], "param value three");
	manifest_free(&m);
	ck_assert_int_eq(images_file(&ctx, "fake", "disk.img", path, sizeof(path), &e), KILN_OK);
	ck_assert_int_eq(images_file(&ctx, "fake", "other", path, sizeof(path), &e), KILN_E_NOTFOUND);

	/* A failing recipe leaves no folder behind and names the image. */
	ck_assert_int_eq(images_build(&ctx, "broken", false, &rebuilt, &e), KILN_E_EXEC);
	ck_assert_ptr_nonnull(strstr(e.msg, "image broken: recipe failed"));
	snprintf(path, sizeof(path), "%s/broken", images);
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_int_eq(images_build(&ctx, "../etc", false, &rebuilt, &e), KILN_E_INVALID);
	ck_assert_int_eq(images_build(&ctx, "absent", false, &rebuilt, &e), KILN_E_NOTFOUND);
	kiln_rm_rf(dir);
}
END_TEST

/* A rebuild swaps images_dir/NAME (a link) to a new version; a job that
 * holds the old version's folder keeps its files until it lets go; an
 * image folder from before versions is taken over. */
START_TEST(rebuild_keeps_held_versions)
{
	char dir[] = "/tmp/kiln-img-XXXXXX", recipes[PATH_MAX], images[PATH_MAX], cache[PATH_MAX];
	char old[PATH_MAX], cur[PATH_MAX], path[PATH_MAX * 2];
	struct images_ctx ctx;
	struct kiln_err e = { 0 };
	bool rebuilt;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(recipes, sizeof(recipes), "%s/recipes", dir);
	snprintf(images, sizeof(images), "%s/images", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	ck_assert_int_eq(kiln_mkdir_p(recipes), 0);
	write_recipe(recipes, "fake",
		     "case $1 in\n"
		     "inputs) echo \"param value $FAKE_INPUT\";;\n"
		     "build) printf '%s' \"$FAKE_INPUT\" > \"$2/disk.img\";;\n"
		     "*) exit 2;;\nesac\n");
	ctx.images_dir = images;
	ctx.cache_dir = cache;
	ctx.recipes_dir = recipes;
	ctx.agent_path = "/nonexistent";
	/* An image folder as kiln built them before versions. */
	setenv("FAKE_INPUT", "legacy", 1);
	ck_assert_int_eq(images_build(&ctx, "fake", false, &rebuilt, &e), KILN_OK);
	ck_assert_int_eq(images_file(&ctx, "fake", "disk.img", old, sizeof(old), &e), KILN_OK);
	ck_assert_ptr_nonnull(strstr(old, "/images/.v/fake@"));
	snprintf(path, sizeof(path), "%s/fake", images);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(test_sh("cp -r %.*s %s", (int)(strrchr(old, '/') - old), old, path), 0);
	test_sh("rm -rf %.*s", (int)(strrchr(old, '/') - old), old);

	setenv("FAKE_INPUT", "one", 1);
	ck_assert_int_eq(images_build(&ctx, "fake", false, &rebuilt, &e), KILN_OK);
	ck_assert(rebuilt);
	ck_assert_int_eq(images_file(&ctx, "fake", "disk.img", old, sizeof(old), &e), KILN_OK);
	ck_assert_int_eq(images_hold(old, &fd, &e), KILN_OK);   /* a job started on "one" */
	setenv("FAKE_INPUT", "two", 1);
	ck_assert_int_eq(images_build(&ctx, "fake", false, &rebuilt, &e), KILN_OK);
	ck_assert_int_eq(images_file(&ctx, "fake", "disk.img", cur, sizeof(cur), &e), KILN_OK);
	ck_assert_str_ne(old, cur);
	ck_assert_int_eq(test_sh("test \"$(cat %s)\" = one && test \"$(cat %s)\" = two", old, cur), 0);
	/* The legacy folder, held by nobody, is gone; "one" stays while held. */
	ck_assert_int_ne(test_sh("ls %s/.v | grep -q legacy", images), 0);
	close(fd);
	images_prune_versions(&ctx, "fake");
	ck_assert_int_ne(access(old, F_OK), 0);
	ck_assert_int_eq(access(cur, F_OK), 0);
	ck_assert_int_eq(images_hold(old, &fd, &e), KILN_E_NOTFOUND);
	kiln_rm_rf(dir);
}
END_TEST

/* Older than Debian: an image debootstrapped from suite S built before
 * the newest Release Date of S's archives in the apt lists. */
START_TEST(debian_stale_by_release_date)
{
	char dir[] = "/tmp/kiln-apt-XXXXXX", path[PATH_MAX], why[256];
	char *inputs[] = { "recipe x 00", "param suite bookworm", "param mirror http://deb.debian.org/debian" };
	struct manifest m = { .built = "2026-12-01T00:00:00Z", .inputs = inputs, .n_inputs = 3 };
	const char *rel = "Origin: Debian\nDate: Sat, 05 Dec 2026 03:33:28 UTC\nValid-Until: x\n";
	const char *old = "Origin: Debian\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(images_debian_stale(&m, dir, why, sizeof(why)), -1);
	snprintf(path, sizeof(path), "%s/deb.debian.org_debian_dists_bookworm_InRelease", dir);
	test_write_file(path, old, strlen(old), 0644);
	ck_assert_int_eq(images_debian_stale(&m, dir, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "");
	snprintf(path, sizeof(path), "%s/deb.debian.org_debian-security_dists_bookworm-security_InRelease", dir);
	test_write_file(path, rel, strlen(rel), 0644);
	ck_assert_int_eq(images_debian_stale(&m, dir, why, sizeof(why)), 1);
	ck_assert_str_eq(why, "Debian published deb.debian.org_debian-security_dists_bookworm-security on "
			      "2026-12-05 03:33 UTC");
	m.built = "2026-12-06T00:00:00Z";
	ck_assert_int_eq(images_debian_stale(&m, dir, why, sizeof(why)), 0);
	/* Another suite's lists say nothing of this one. */
	inputs[1] = "param suite trixie";
	ck_assert_int_eq(images_debian_stale(&m, dir, why, sizeof(why)), -1);
	kiln_rm_rf(dir);
}
END_TEST

Suite *manifest_suite(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, load_good);
	tcase_add_loop_test(tc, load_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, save_roundtrip);
	tcase_add_test(tc, build_caches_by_inputs);
	tcase_add_test(tc, rebuild_keeps_held_versions);
	tcase_add_test(tc, debian_stale_by_release_date);
	suite_add_tcase(s, tc);
	return s;
}
