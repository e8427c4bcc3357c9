/* gitlab-runner's Git strategy variables (workspace/strategy.h): how they
 * are read, and what ws_prepare makes of them with local repositories made
 * by the test: empty and none, GIT_CHECKOUT=false, GIT_DEPTH, and
 * submodules (normal, recursive, paths, depth, --remote) whose URLs are
 * relative to the project's. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "job/payload.h"
#include "lib/paths.h"
#include "workspace/strategy.h"
#include "workspace/workspace.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define GIT "git -c safe.directory='*' -c protocol.file.allow=always"

static char g_dir[PATH_MAX];
static char g_url[PATH_MAX];
static char g_sha[41];       /* main's tip */
static char g_mid_sha[41];   /* mid's commit recorded in main */
static char g_other_new[41]; /* other's tip, newer than the recorded one */

static int sh_out(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh_out(char *out, size_t size, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	FILE *p;
	size_t n;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	out[0] = '\0';
	if (!(p = popen(cmd, "r")))
		return -1;
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	st = pclose(p);
	out[strcspn(out, "\n")] = '\0';
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* main has libs/mid (../mid.git, which has deps/leaf: ../leaf.git) and
 * libs/other (../other.git, which gets a commit after it is recorded). */
static void fixture_up(void)
{
	char path[8192];

	snprintf(g_dir, sizeof(g_dir), "/tmp/kiln-gitstrat-XXXXXX");
	if (!mkdtemp(g_dir))
		abort();
	snprintf(path, sizeof(path), "%s:/usr/sbin:/sbin", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	setenv("HOME", g_dir, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_AUTHOR_NAME", "Kiln Test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_COMMITTER_NAME", "Kiln Test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@kiln.invalid", 1);
	if (test_sh("set -e; cd '%s'; exec >/dev/null 2>&1\n"
		    "mk() { git init -q -b main $1w; (cd $1w; echo $1 > $1.txt; git add .; git commit -q -m $1;"
		    " for i in 2 3 4; do echo $i >> $1.txt; git commit -q -am \"$1 $i\"; done); }\n"
		    "mk leaf; git clone -q --bare leafw leaf.git\n"
		    "mk mid; (cd midw; " GIT " submodule -q add ../leaf.git deps/leaf; git commit -q -m leaf)\n"
		    "git clone -q --bare midw mid.git\n"
		    "mk other; git clone -q --bare otherw other.git\n"
		    "mk main; cd mainw\n"
		    GIT " submodule -q add ../mid.git libs/mid\n"
		    GIT " submodule -q add ../other.git libs/other\n"
		    "git commit -q -m subs; echo x >> main.txt; git commit -q -am after\n"
		    "cd ../otherw; echo new > new.txt; git add .; git commit -q -m new; git push -q ../other.git main\n",
		    g_dir) != 0)
		abort();
	sh_out(g_sha, sizeof(g_sha), "git -C '%s/mainw' rev-parse main", g_dir);
	sh_out(g_mid_sha, sizeof(g_mid_sha), "git -C '%s/mainw' rev-parse main:libs/mid", g_dir);
	sh_out(g_other_new, sizeof(g_other_new), "git -C '%s/otherw' rev-parse main", g_dir);
	/* The project's URL ends in .git as GitLab's do: the submodules'
	 * ../x.git resolve next to it. */
	if (test_sh("git clone -q --bare '%s/mainw' '%s/main.git' >/dev/null 2>&1", g_dir, g_dir) != 0)
		abort();
	snprintf(g_url, sizeof(g_url), "file://%s/main.git", g_dir);
}

static void fixture_down(void)
{
	if (g_dir[0] && !getenv("KILN_TEST_KEEP"))
		kiln_rm_rf(g_dir);
}

/* ---- reading the variables ---------------------------------------------- */

struct vars {
	const char *kv[32];
};

static const char *lookup(void *ctx, const char *key)
{
	struct vars *v = ctx;
	size_t i;

	for (i = 0; v->kv[i]; i += 2)
		if (!strcmp(v->kv[i], key))
			return v->kv[i + 1];
	return NULL;
}

START_TEST(variables_read)
{
	struct vars v = { { "GIT_STRATEGY", "empty", "GIT_CHECKOUT", "false", "GIT_DEPTH", "0",
			    "GIT_SUBMODULE_STRATEGY", "recursive", "GIT_SUBMODULE_DEPTH", "3",
			    "GIT_SUBMODULE_UPDATE_FLAGS", "--remote --jobs 4 --depth 2",
			    "GIT_SUBMODULE_PATHS", "libs :(exclude)libs/b :!vendor",
			    "GIT_CLEAN_FLAGS", "-ffdx", "GIT_FETCH_EXTRA_FLAGS", "--prune",
			    "GIT_LFS_SKIP_SMUDGE", "1", NULL } };
	struct ws_gitopts o;
	struct kiln_err e = { 0 };

	ws_gitopts_init(&o);
	ck_assert_int_eq(o.strategy, WSGIT_CLONE);
	ck_assert(o.checkout && o.lfs && o.depth == -1 && o.submodules == WSGIT_SUB_NONE);
	ck_assert_msg(ws_gitopts_read(&o, lookup, &v, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(o.strategy, WSGIT_EMPTY);
	ck_assert(!o.checkout);
	ck_assert_int_eq(o.depth, 0);
	ck_assert_int_eq(o.submodules, WSGIT_SUB_RECURSIVE);
	ck_assert_uint_eq(o.submodule_depth, 2); /* the flag after the variable */
	ck_assert(o.submodule_remote);
	ck_assert(!o.lfs);
	ck_assert_uint_eq(o.n_paths, 3);
	ck_assert(ws_gitopts_path_selected(&o, "libs/a"));
	ck_assert(ws_gitopts_path_selected(&o, "libs"));
	ck_assert(!ws_gitopts_path_selected(&o, "libs/b"));
	ck_assert(!ws_gitopts_path_selected(&o, "libsx"));
	ck_assert(!ws_gitopts_path_selected(&o, "vendor"));
}
END_TEST

START_TEST(variables_refused)
{
	static const char *const bad[][2] = {
		{ "GIT_STRATEGY", "shallow" }, { "GIT_CHECKOUT", "maybe" }, { "GIT_DEPTH", "-1" },
		{ "GIT_DEPTH", "10x" }, { "GIT_SUBMODULE_STRATEGY", "deep" }, { "GIT_SUBMODULE_DEPTH", "x" },
		{ "GIT_SUBMODULE_UPDATE_FLAGS", "--merge" }, { "GIT_SUBMODULE_UPDATE_FLAGS", "--depth" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vars v = { { bad[i][0], bad[i][1], NULL } };
		struct ws_gitopts o;
		struct kiln_err e = { 0 };

		ws_gitopts_init(&o);
		ck_assert_int_eq(ws_gitopts_read(&o, lookup, &v, &e), KILN_E_INVALID);
		ck_assert_msg(strstr(e.msg, bad[i][0]), "%s: %s", bad[i][0], e.msg);
	}
}
END_TEST

START_TEST(exclude_only_paths)
{
	struct vars v = { { "GIT_SUBMODULE_PATHS", ":(exclude)libs/other", NULL } };
	struct ws_gitopts o;
	struct kiln_err e = { 0 };

	ws_gitopts_init(&o);
	ck_assert(ws_gitopts_read(&o, lookup, &v, &e) == KILN_OK);
	ck_assert(ws_gitopts_path_selected(&o, "libs/mid"));
	ck_assert(!ws_gitopts_path_selected(&o, "libs/other"));
}
END_TEST

/* ---- workspaces --------------------------------------------------------- */

/* Prepare main's tip with git options o into a fresh state folder and dump
 * the image into <state>/x; dir gets <state>/x/group/project. */
static void prepare_in(const char *state, const char *tag, const struct ws_gitopts *o, unsigned depth, char *dir,
		       size_t size)
{
	char image[PATH_MAX];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	snprintf(image, sizeof(image), "%s/%s.img", state, tag);
	memset(&s, 0, sizeof(s));
	s.state_dir = state;
	s.url = g_url;
	s.sha = g_sha;
	s.project_path = "group/project";
	s.image_path = image;
	s.depth = depth;
	s.git = o;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(test_sh("mkdir '%s/x-%s' && debugfs -R 'rdump / %s/x-%s' '%s' >/dev/null 2>&1", state, tag,
				 state, tag, image), 0);
	snprintf(dir, size, "%s/x-%s/group/project", state, tag);
}

static void prepare(const char *tag, const struct ws_gitopts *o, unsigned depth, char *dir, size_t size)
{
	char state[PATH_MAX];

	snprintf(state, sizeof(state), "%s/state-%s-XXXXXX", g_dir, tag);
	ck_assert_ptr_nonnull(mkdtemp(state));
	prepare_in(state, tag, o, depth, dir, size);
}

static void read_opts(struct ws_gitopts *o, const char *const *kv)
{
	struct vars v = { { NULL } };
	struct kiln_err e = { 0 };
	size_t i;

	for (i = 0; kv[i] && i < 30; i++)
		v.kv[i] = kv[i];
	ws_gitopts_init(o);
	ck_assert_msg(ws_gitopts_read(o, lookup, &v, &e) == KILN_OK, "%s", e.msg);
}

START_TEST(strategy_empty_and_none)
{
	static const char *const empty[] = { "GIT_STRATEGY", "empty", NULL };
	static const char *const none[] = { "GIT_STRATEGY", "none", NULL };
	struct ws_gitopts o;
	char dir[PATH_MAX], out[256];

	read_opts(&o, empty);
	prepare("empty", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), "ls -A '%s' | wc -l", dir), 0);
	ck_assert_str_eq(out, "0");
	read_opts(&o, none);
	prepare("none", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), "ls -A '%s' | wc -l", dir), 0);
	ck_assert_str_eq(out, "0");
}
END_TEST

START_TEST(checkout_false_keeps_files_out)
{
	static const char *const kv[] = { "GIT_CHECKOUT", "false", "GIT_SUBMODULE_STRATEGY", "normal", NULL };
	struct ws_gitopts o;
	char dir[PATH_MAX], out[256];

	read_opts(&o, kv);
	prepare("nocheckout", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, g_sha);
	ck_assert_int_eq(sh_out(out, sizeof(out), "ls -A '%s' | tr '\\n' ' '", dir), 0);
	ck_assert_str_eq(out, ".git ");
	/* The objects are there: git checkout works in the job. */
	ck_assert_int_eq(test_sh(GIT " -C '%s' checkout -q -f HEAD -- main.txt", dir), 0);
}
END_TEST

START_TEST(checkout_false_after_a_kept_checkout)
{
	static const char *const kv[] = { "GIT_CHECKOUT", "false", NULL };
	struct ws_gitopts o;
	char state[PATH_MAX], dir[PATH_MAX], out[256];

	snprintf(state, sizeof(state), "%s/state-kept-XXXXXX", g_dir);
	ck_assert_ptr_nonnull(mkdtemp(state));
	ws_gitopts_init(&o);
	prepare_in(state, "first", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(test_sh("test -f '%s/main.txt'", dir), 0);
	read_opts(&o, kv);
	prepare_in(state, "second", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), "ls -A '%s' | tr '\\n' ' '", dir), 0);
	ck_assert_str_eq(out, ".git ");
	/* And the kept checkout is still good for the next job. */
	ws_gitopts_init(&o);
	prepare_in(state, "third", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(test_sh("test -f '%s/main.txt'", dir), 0);
}
END_TEST

START_TEST(submodules_normal_not_nested)
{
	static const char *const kv[] = { "GIT_SUBMODULE_STRATEGY", "normal", NULL };
	struct ws_gitopts o;
	char dir[PATH_MAX], out[256];

	read_opts(&o, kv);
	prepare("normal", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/libs/mid' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, g_mid_sha);
	ck_assert_int_eq(test_sh("test -f '%s/libs/other/other.txt'", dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), "ls -A '%s/libs/mid/deps/leaf' | wc -l", dir), 0);
	ck_assert_str_eq(out, "0");
}
END_TEST

START_TEST(submodules_recursive_and_paths)
{
	static const char *const kv[] = { "GIT_SUBMODULE_STRATEGY", "recursive", "GIT_SUBMODULE_PATHS",
					  ":(exclude)libs/other", NULL };
	struct ws_gitopts o;
	char dir[PATH_MAX], out[256];

	read_opts(&o, kv);
	prepare("recursive", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(test_sh("test -f '%s/libs/mid/deps/leaf/leaf.txt'", dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), "ls -A '%s/libs/other' | wc -l", dir), 0);
	ck_assert_str_eq(out, "0");
	/* Relative URLs resolved against the project's, kept in the config. */
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/libs/mid' remote get-url origin", dir), 0);
	ck_assert_msg(strstr(out, "/mid.git"), "origin %s", out);
}
END_TEST

START_TEST(submodule_depth_is_shallow)
{
	static const char *const kv[] = { "GIT_SUBMODULE_STRATEGY", "recursive", "GIT_SUBMODULE_DEPTH", "1",
					  "GIT_DEPTH", "2", NULL };
	struct ws_gitopts o;
	char dir[PATH_MAX], out[256];

	read_opts(&o, kv);
	prepare("subdepth", &o, (unsigned)o.depth, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' rev-list --count HEAD", dir), 0);
	ck_assert_str_eq(out, "2");
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/libs/mid' rev-list --count HEAD", dir), 0);
	ck_assert_str_eq(out, "1");
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/libs/mid' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, g_mid_sha);
	ck_assert_int_eq(test_sh("test -f '%s/libs/mid/deps/leaf/leaf.txt'", dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/libs/mid/deps/leaf' rev-list --count HEAD", dir), 0);
	ck_assert_str_eq(out, "1");
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' submodule status libs/mid", dir), 0);
	ck_assert_msg(out[0] == ' ' && strstr(out, g_mid_sha), "submodule status: %s", out);
}
END_TEST

START_TEST(submodule_remote_takes_the_tip)
{
	static const char *const kv[] = { "GIT_SUBMODULE_STRATEGY", "normal", "GIT_SUBMODULE_UPDATE_FLAGS",
					  "--remote", NULL };
	struct ws_gitopts o;
	char dir[PATH_MAX], out[256];

	read_opts(&o, kv);
	prepare("remote", &o, 0, dir, sizeof(dir));
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/libs/other' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, g_other_new);
	ck_assert_int_eq(test_sh("test -f '%s/libs/other/new.txt'", dir), 0);
}
END_TEST

/* ---- hooks -------------------------------------------------------------- */

/* good.json with hooks (a JSON array) added, parsed into p. */
static enum kiln_rc parse_with_hooks(const char *hooks, struct job_payload *p, struct kiln_err *e)
{
	json_t *root = json_load_file(fixture("payload/good.json"), 0, NULL);
	enum kiln_rc rc;
	char *text;

	ck_assert_ptr_nonnull(root);
	json_object_set_new(root, "hooks", json_loads(hooks, 0, NULL));
	text = json_dumps(root, JSON_COMPACT);
	rc = payload_parse(text, strlen(text), p, e);
	free(text);
	json_decref(root);
	return rc;
}

START_TEST(hooks_run_first_in_their_sections)
{
	struct job_payload p;
	struct kiln_err e = { 0 };
	size_t n;

	ck_assert_msg(parse_with_hooks("[]", &p, &e) == KILN_OK, "%s", e.msg);
	n = p.n_steps;
	payload_free(&p);
	ck_assert_msg(parse_with_hooks("[{\"name\":\"post_get_sources_script\",\"script\":[\"echo post\"]},"
				       "{\"name\":\"future_hook\",\"script\":[\"echo no\"]},"
				       "{\"name\":\"pre_get_sources_script\",\"script\":[\"echo pre\",\"git config -l\"]}]",
				       &p, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(p.n_steps, n + 2);
	ck_assert_str_eq(p.steps[0].name, "pre_get_sources_script");
	ck_assert_uint_eq(p.steps[0].n_script, 2);
	ck_assert_str_eq(p.steps[0].script[1], "git config -l");
	ck_assert_str_eq(p.steps[0].when, "on_success");
	ck_assert_str_eq(p.steps[1].name, "post_get_sources_script");
	ck_assert_str_eq(p.steps[1].script[0], "echo post");
	ck_assert_str_eq(p.steps[2].name, "script");
	payload_free(&p);
	ck_assert_int_ne(parse_with_hooks("[{\"name\":\"pre_get_sources_script\",\"script\":[\"a\"]},"
					  "{\"name\":\"post_get_sources_script\",\"script\":[1]}]", &p, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "hooks[1].script"), "%s", e.msg);
	ck_assert_int_ne(parse_with_hooks("{}", &p, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "hooks"), "%s", e.msg);
}
END_TEST

Suite *gitstrategy_suite(void)
{
	Suite *s = suite_create("gitstrategy");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, fixture_up, fixture_down);
	tcase_add_test(tc, variables_read);
	tcase_add_test(tc, variables_refused);
	tcase_add_test(tc, exclude_only_paths);
	tcase_add_test(tc, strategy_empty_and_none);
	tcase_add_test(tc, checkout_false_keeps_files_out);
	tcase_add_test(tc, checkout_false_after_a_kept_checkout);
	tcase_add_test(tc, submodules_normal_not_nested);
	tcase_add_test(tc, submodules_recursive_and_paths);
	tcase_add_test(tc, submodule_depth_is_shallow);
	tcase_add_test(tc, submodule_remote_takes_the_tip);
	tcase_add_test(tc, hooks_run_first_in_their_sections);
	suite_add_tcase(s, tc);
	return s;
}
