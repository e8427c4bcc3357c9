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

Suite *manifest_suite(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, load_good);
	tcase_add_loop_test(tc, load_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, save_roundtrip);
	tcase_add_test(tc, build_caches_by_inputs);
	suite_add_tcase(s, tc);
	return s;
}
