/* The job checkout (workspace/checkout, ws_prepare): cold and warm, kept
 * checkouts, exact and shallow history, submodules, the dirty overlay and
 * .gitattributes filters. Runs against the test repository of
 * ws_fixture_up; images are inspected without mounting (debugfs rdump). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/paths.h"
#include "workspace/workspace.h"
#include "workspace/checkout.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

/* ---- prepare ------------------------------------------------------------ */

START_TEST(cold_then_warm_prepare)
{
	char state[PATH_MAX], image[PATH_MAX], out[256], repo[PATH_MAX], url[PATH_MAX + 8], dir[PATH_MAX];
	char new_sha[41];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	struct stat st;

	ws_make_state(state, sizeof(state), "warm");
	/* A repository of its own: this test adds a commit. */
	snprintf(repo, sizeof(repo), "%s/warm-src", state);
	ck_assert_int_eq(test_sh("cp -a '%s/work' '%s'", wsfx_dir, repo), 0);
	snprintf(url, sizeof(url), "file://%s", repo);
	ws_spec_init(&s, state, url, wsfx_sha[5], image, sizeof(image));
	s.ref = "main";
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.mirror_cloned);
	ck_assert(!r.fetched_by_sha);
	ck_assert(!r.tree_reused);
	ck_assert_int_eq(stat(image, &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, r.image_bytes);
	ck_assert_uint_ge(r.image_bytes, 256ULL << 20);
	ck_assert_uint_lt((uint64_t)st.st_blocks * 512, r.image_bytes / 4); /* sparse */
	snprintf(dir, sizeof(dir), "%s/x1", state);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	/* Branches, tags and the executable bit came along. */
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' rev-parse origin/feature", dir), 0);
	ck_assert_str_eq(out, wsfx_feature);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' rev-parse v1^{commit}", dir), 0);
	ck_assert_str_eq(out, wsfx_sha[1]);
	ck_assert_int_eq(test_sh("test -x '%s/group/project/run.sh'", dir), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /' '%s' 2>/dev/null | grep -q 'Mode:  0755'", image), 0);
	ck_assert_int_eq(test_sh("dumpe2fs -h '%s' 2>/dev/null | grep -q 'volume name:.*kiln-ws'", image), 0);
	ck_assert_int_eq(test_sh("dumpe2fs -h '%s' 2>/dev/null | grep features | grep -q has_journal", image), 1);

	/* Warm: one new commit upstream, fetched into the existing mirror. */
	ck_assert_int_eq(test_sh("cd '%s' && echo new >> a.txt && git commit -q -am warm", repo), 0);
	test_sh_out(new_sha, sizeof(new_sha), "git -C '%s' rev-parse HEAD", repo);
	s.sha = new_sha;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.mirror_cloned);
	ck_assert(r.tree_reused);
	snprintf(dir, sizeof(dir), "%s/x2", state);
	ws_check_checkout(image, dir, new_sha);
	/* A temporary build folder is always removed. */
	snprintf(dir, sizeof(dir), "%s/tmp", state);
	ck_assert_int_eq(ws_count_files(dir, "ws-*"), 0);
	/* A local source: the new mirror hard-linked its packs. */
	ck_assert_int_eq(test_sh("test -n \"$(find '%s/mirrors' -path '*/objects/*' -type f -links +1)\"", state), 0);

	/* A deleted branch leaves the mirror (prune); a commit no ref reaches
	 * is copied by its SHA. */
	ck_assert_int_eq(test_sh("cd '%s' && git branch -q -D feature", repo), 0);
	ck_assert_int_eq(test_sh_out(new_sha, sizeof(new_sha), "cd '%s' && git commit-tree -p HEAD -m orphan 'HEAD^{tree}'", repo), 0);
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.fetched_by_sha);
	snprintf(dir, sizeof(dir), "%s/x3", state);
	ws_check_checkout(image, dir, new_sha);
	ck_assert_int_ne(test_sh(WS_GIT " -C '%s/group/project' rev-parse -q --verify origin/feature >/dev/null", dir), 0);
	ck_assert_int_ne(test_sh("git --git-dir=\"$(echo %s/mirrors/*.git)\" rev-parse -q --verify refs/remotes/origin/feature >/dev/null", state), 0);
}
END_TEST

/* The files of the image's project folder (not .git) are exactly the tree
 * of sha: same paths, same link and executable bits, same contents. */
static void check_files_are_commit(const char *dir, const char *sha)
{
	ck_assert_int_eq(test_sh("cd '%s/group/project' && "
				 "find . -path ./.git -prune -o \\( -type f -o -type l \\) -print | sed 's,^\\./,,' | sort > ../got && "
				 WS_GIT " -C '%s/work' ls-tree -r %s | grep -v '^160000' | cut -f2 | sort > ../want && "
				 "cmp -s ../got ../want", dir, wsfx_dir, sha), 0);
	ck_assert_int_eq(test_sh("cd '%s/group/project' && " WS_GIT " -C '%s/work' ls-tree -r %s | grep -v '^160000' | "
				 "while read -r mode type id path; do "
				 "case $mode in 120000) [ -L \"$path\" ] || exit 1;; 100755) [ -x \"$path\" ] || exit 1;; "
				 "*) [ ! -x \"$path\" ] && [ ! -L \"$path\" ] || exit 1;; esac; "
				 "[ \"$(" WS_GIT " hash-object --no-filters \"$path\" 2>/dev/null || readlink \"$path\")\" = \"$id\" ] || "
				 "[ -L \"$path\" ] || exit 1; done", dir, wsfx_dir, sha), 0);
}

START_TEST(kept_checkout_follows_every_change)
{
	static const int order[] = { 5, 0, 3, 1, 5, 2 };
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], extra[PATH_MAX], out[256];
	const char *extras[1];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	size_t i;

	/* Forward and back through history (files and folders appear and
	 * go, a submodule link comes and goes): each image holds exactly
	 * that commit, from the one kept checkout. */
	ws_make_state(state, sizeof(state), "kept");
	snprintf(dir, sizeof(dir), "%s/x", state);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		ws_spec_init(&s, state, wsfx_url, wsfx_sha[order[i]], image, sizeof(image));
		ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
		ck_assert(r.tree_reused == (i > 0));
		ws_check_checkout(image, dir, wsfx_sha[order[i]]);
		check_files_are_commit(dir, wsfx_sha[order[i]]);
	}
	/* Shallow, then full again: objects and .git/shallow are the job's. */
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	s.depth = 2;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	ck_assert_str_eq(out, "2");
	s.depth = 0;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	ck_assert_int_ne(test_sh("test -e '%s/group/project/.git/shallow'", dir), 0);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	ck_assert_str_eq(out, "6");

	/* A job with extra files gets them: ignored and untracked ones, a
	 * tracked file replaced by one of the same size and mtime, a tracked
	 * folder replaced by a file, a script without its executable bit.
	 * The next job updates the kept checkout back to exactly its commit. */
	snprintf(extra, sizeof(extra), "%s/extra", state);
	ck_assert_int_eq(test_sh("cd '%s/x/group/project' && mkdir -p '%s/build' && echo x > '%s/build/out.log' && "
				 "echo new > '%s/new.txt' && echo HELLO > '%s/README' && touch -r README '%s/README' && "
				 "echo file > '%s/dir' && cp run.sh '%s/run.sh' && chmod 644 '%s/run.sh' && "
				 "touch -r run.sh '%s/run.sh'",
				 state, extra, extra, extra, extra, extra, extra, extra, extra, extra), 0);
	extras[0] = extra;
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[4], image, sizeof(image));
	s.extra_dirs = extras;
	s.n_extra_dirs = 1;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ws_extract(image, dir);
	ck_assert_int_eq(test_sh("cd '%s/group/project' && grep -q HELLO README && test -f build/out.log && "
				 "test -f dir && test ! -x run.sh", dir), 0);
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[4], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	ws_check_checkout(image, dir, wsfx_sha[4]);
	check_files_are_commit(dir, wsfx_sha[4]);
	ck_assert_int_ne(test_sh("test -e '%s/group/project/build'", dir), 0);

	/* Another project path: not reused. A fresh_checkout job leaves the
	 * kept one alone, and its own folder goes. */
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[4], image, sizeof(image));
	s.project_path = "other/place";
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	s.fresh_checkout = true;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	snprintf(dir, sizeof(dir), "%s/tmp", state);
	ck_assert_int_eq(ws_count_files(dir, "ws-*"), 0);
	ck_assert_int_eq(test_sh("test \"$(cat %s/trees/*/kept)\" = other/place", state), 0);
}
END_TEST

/* A kept checkout whose index was damaged: the update fails, the retry
 * checks out afresh. */
START_TEST(damaged_kept_checkout_is_replaced)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "damaged");
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[3], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(test_sh("for f in %s/trees/*/root/group/project/.git/index; do echo garbage > \"$f\"; done", state), 0);
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	check_files_are_commit(dir, wsfx_sha[5]);
	/* Files that somehow came into a kept checkout, untracked or
	 * ignored ones, are removed by the update. */
	ck_assert_int_eq(test_sh("for d in %s/trees/*/root/group/project; do echo s > \"$d/stray\" && "
				 "mkdir \"$d/build\" && echo l > \"$d/build/x.log\" && echo l > \"$d/x.log\"; done",
				 state), 0);
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[4], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	ws_check_checkout(image, dir, wsfx_sha[4]);
	check_files_are_commit(dir, wsfx_sha[4]);
	ck_assert_int_ne(test_sh("test -e '%s/group/project/build'", dir), 0);
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	/* A checkout that a killed job left unmarked is not reused either. */
	ck_assert_int_eq(test_sh("rm %s/trees/*/kept && for d in %s/trees/*/root/group/project; do echo stray > \"$d/stray\"; done", state, state), 0);
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	check_files_are_commit(dir, wsfx_sha[5]);
}
END_TEST

START_TEST(exact_older_sha_detached)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "old");
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[1], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, wsfx_sha[1]);
	ck_assert_int_eq(test_sh("test -f '%s/group/project/dir/b.txt' && ! test -e '%s/group/project/libs'", dir, dir), 0);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	ck_assert_str_eq(out, "2");
	ck_assert_int_eq(test_sh(WS_GIT " -C '%s/group/project' fsck --no-dangling --no-progress >/dev/null 2>&1", dir), 0);
}
END_TEST

static void check_depth(unsigned depth)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256], want[16];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "shallow");
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	s.depth = depth;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	ck_assert_int_eq(test_sh("test -s '%s/group/project/.git/shallow'", dir), 0);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' rev-parse --is-shallow-repository", dir), 0);
	ck_assert_str_eq(out, "true");
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	snprintf(want, sizeof(want), "%u", depth);
	ck_assert_str_eq(out, want);
	/* The boundary is the oldest commit kept. */
	ck_assert_int_eq(test_sh_out(out, sizeof(out), "cat '%s/group/project/.git/shallow'", dir), 0);
	ck_assert_str_eq(out, wsfx_sha[6 - depth]);
	ck_assert_int_eq(test_sh(WS_GIT " -C '%s/group/project' fsck --no-dangling --no-progress >/dev/null 2>&1", dir), 0);
	/* Only the objects of those commits: the first commit's a.txt is gone. */
	ck_assert_int_ne(test_sh(WS_GIT " -C '%s/group/project' cat-file -e %s:a.txt 2>/dev/null", dir, wsfx_sha[0]), 0);
}

START_TEST(shallow_depth_1) { check_depth(1); }
END_TEST

START_TEST(shallow_depth_3) { check_depth(3); }
END_TEST

START_TEST(missing_sha_names_it)
{
	static const char missing[] = "0123456789abcdef0123456789abcdef01234567";
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "missing");
	ws_spec_init(&s, state, wsfx_url, missing, image, sizeof(image));
	s.ref = "main";
	ck_assert_int_eq(ws_prepare(&s, &r, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, missing) != NULL && strstr(e.msg, "ref main") != NULL, "%s", e.msg);
	ck_assert_ptr_null(strchr(e.msg, '\n'));
	ck_assert(r.fetched_by_sha);
	ck_assert_int_ne(access(image, F_OK), 0);
	snprintf(dir, sizeof(dir), "%s/tmp", state);
	ck_assert_int_eq(ws_count_files(dir, "ws-*"), 0);
	/* Bad input is refused before anything happens. */
	s.sha = "abc";
	ck_assert_int_eq(ws_prepare(&s, &r, &e), KILN_E_INVALID);
	s.sha = wsfx_sha[0];
	s.project_path = "../escape";
	ck_assert_int_eq(ws_prepare(&s, &r, &e), KILN_E_INVALID);
	s.project_path = "group/.git";
	ck_assert_int_eq(ws_prepare(&s, &r, &e), KILN_E_INVALID);
}
END_TEST

START_TEST(gitlab_pipeline_refspec)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256], pipe_spec[128];
	const char *specs[2];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "pipe");
	snprintf(pipe_spec, sizeof(pipe_spec), "+%s:refs/pipelines/42", wsfx_sha[4]);
	specs[0] = pipe_spec;
	specs[1] = "+refs/heads/main:refs/remotes/origin/main";
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[4], image, sizeof(image));
	s.refspecs = specs;
	s.n_refspecs = 2;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, wsfx_sha[4]);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' rev-parse refs/pipelines/42", dir), 0);
	ck_assert_str_eq(out, wsfx_sha[4]);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' config --get-all remote.origin.fetch", dir), 0);
	ck_assert_str_eq(out, "+refs/heads/main:refs/remotes/origin/main");
}
END_TEST

/* ---- submodules and dirty overlay --------------------------------------- */

START_TEST(submodules_checked_out)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "sub");
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	s.submodules = true;
	s.depth = 2;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(r.submodules, 1);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), "cat '%s/group/project/libs/sub/sub.txt' | wc -l", dir), 0);
	ck_assert_str_eq(out, "2");
	/* Extracted elsewhere, git still finds the submodule's repository. */
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project/libs/sub' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, wsfx_sub_sha);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' status --porcelain", dir), 0);
	ck_assert_msg(out[0] == '\0', "status not clean: %s", out);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' submodule status", dir), 0);
	ck_assert_msg(out[0] == ' ' && strstr(out, wsfx_sub_sha), "submodule status: %s", out);
	/* No trace of the host's mirror paths in the guest's git config. */
	ck_assert_int_eq(test_sh("grep -r -q '%s' '%s/group/project/.git/config' '%s/group/project/.git/modules'",
			    state, dir, dir), 1);
	ck_assert_int_eq(test_sh("test -z \"$(find '%s' -name alternates)\"", dir), 0);
}
END_TEST

START_TEST(dirty_overlay)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], dirty[PATH_MAX], out[256];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	ws_make_state(state, sizeof(state), "dirty");
	snprintf(dirty, sizeof(dirty), "%s/dirty", state);
	ck_assert_int_eq(test_sh("git clone -q '%s/work' '%s' && cd '%s' && echo changed > a.txt && "
			    "echo new > untracked.txt && mkdir -p newdir/deep && echo deep > newdir/deep/x.txt && "
			    "echo noise > debug.log && mkdir build && echo out > build/out.o && "
			    "git rm -q README && echo staged > dir/b.txt && git add dir/b.txt && "
			    "ln -s a.txt link && mkdir -p group && ln -s /etc escape",
			    wsfx_dir, dirty, dirty), 0);
	ws_spec_init(&s, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	s.dirty_dir = dirty;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_ge(r.overlay_files, 6);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_extract(image, dir);
	snprintf(dir, sizeof(dir), "%s/x/group/project", state);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), "cat '%s/a.txt'", dir), 0);
	ck_assert_str_eq(out, "changed");
	ck_assert_int_eq(test_sh_out(out, sizeof(out), "cat '%s/dir/b.txt'", dir), 0);
	ck_assert_str_eq(out, "staged");
	ck_assert_int_eq(test_sh("test -f '%s/untracked.txt' && test -f '%s/newdir/deep/x.txt'", dir, dir), 0);
	ck_assert_int_eq(test_sh("test -L '%s/link' && test \"$(readlink '%s/link')\" = a.txt", dir, dir), 0);
	ck_assert_int_eq(test_sh("test -L '%s/escape'", dir), 0);
	ck_assert_int_ne(test_sh("test -e '%s/debug.log' || test -e '%s/build'", dir, dir), 0);
	ck_assert_int_ne(test_sh("test -e '%s/README'", dir), 0);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, wsfx_sha[5]);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s' status --porcelain --ignore-submodules=all | wc -l", dir), 0);
	ck_assert_int_ge(atoi(out), 6);
}
END_TEST

/* A symbolic link in the checkout where the dirty tree has a folder: the
 * overlay replaces the link and writes nothing through it. */
START_TEST(overlay_does_not_follow_links)
{
	char base[PATH_MAX], work[PATH_MAX], dirty[PATH_MAX], outside[PATH_MAX];
	struct kiln_err e = { 0 };
	unsigned n = 0;

	git_libgit2_init();
	ws_make_state(base, sizeof(base), "links");
	snprintf(work, sizeof(work), "%s/work", base);
	snprintf(dirty, sizeof(dirty), "%s/dirty", base);
	snprintf(outside, sizeof(outside), "%s/outside", base);
	ck_assert_int_eq(test_sh("mkdir -p '%s' '%s' && ln -s '%s' '%s/lnk' && ln -s '%s/victim' '%s/file' && "
			    "git init -q '%s' && mkdir '%s/lnk' && echo x > '%s/lnk/x.txt' && echo y > '%s/file'",
			    work, outside, outside, work, outside, work, dirty, dirty, dirty, dirty), 0);
	ck_assert_msg(wsco_overlay(dirty, work, &n, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(test_sh("test -z \"$(ls -A '%s')\"", outside), 0);
	ck_assert_int_eq(test_sh("test -d '%s/lnk' && ! test -L '%s/lnk' && test -f '%s/lnk/x.txt'", work, work, work), 0);
	ck_assert_int_eq(test_sh("test -f '%s/file' && ! test -L '%s/file'", work, work), 0);
	/* Not a working tree: a clear error. */
	ck_assert_int_eq(wsco_overlay(outside, work, &n, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, outside) != NULL, "%s", e.msg);
}
END_TEST

/* Filters are skipped only when none can apply: a nested .gitattributes
 * still converts line ends, a top-level one still expands $Id$. */
START_TEST(gitattributes_filters_apply)
{
	char state[PATH_MAX], image[PATH_MAX], repo[PATH_MAX], url[PATH_MAX + 8], sha[41], dir[PATH_MAX];
	char blob[64], want[128], got[128];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	FILE *f;
	size_t n;

	ws_make_state(state, sizeof(state), "attr");
	snprintf(repo, sizeof(repo), "%s/src", state);
	ck_assert_int_eq(test_sh("set -e; git init -q -b main '%s'; cd '%s'; mkdir docs; "
			    "printf '*.txt text eol=crlf\\n' > docs/.gitattributes; printf 'x\\ny\\n' > docs/a.txt; "
			    "printf '*.c ident\\n' > .gitattributes; printf '$Id$\\n' > id.c; printf 'x\\ny\\n' > plain.txt; "
			    "git add .; git commit -q -m attrs",
			    repo, repo), 0);
	test_sh_out(sha, sizeof(sha), "git -C '%s' rev-parse HEAD", repo);
	test_sh_out(blob, sizeof(blob), "git -C '%s' rev-parse HEAD:id.c", repo);
	snprintf(url, sizeof(url), "file://%s", repo);
	ws_spec_init(&s, state, url, sha, image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_extract(image, dir);
	ck_assert_int_eq(test_sh("printf 'x\\r\\ny\\r\\n' | cmp -s - '%s/group/project/docs/a.txt'", dir), 0);
	ck_assert_int_eq(test_sh("printf 'x\\ny\\n' | cmp -s - '%s/group/project/plain.txt'", dir), 0);
	snprintf(want, sizeof(want), "$Id: %s $\n", blob);
	snprintf(got, sizeof(got), "%s/group/project/id.c", dir);
	ck_assert_ptr_nonnull(f = fopen(got, "r"));
	n = fread(got, 1, sizeof(got) - 1, f);
	fclose(f);
	got[n] = '\0';
	ck_assert_str_eq(got, want);
}
END_TEST

Suite *checkout_suite(void)
{
	Suite *s = suite_create("checkout");
	TCase *tc;

	if (!ws_fixture_usable("checkout"))
		return s;
	tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, ws_fixture_up, ws_fixture_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, cold_then_warm_prepare);
	tcase_add_test(tc, kept_checkout_follows_every_change);
	tcase_add_test(tc, damaged_kept_checkout_is_replaced);
	tcase_add_test(tc, exact_older_sha_detached);
	tcase_add_test(tc, shallow_depth_1);
	tcase_add_test(tc, shallow_depth_3);
	tcase_add_test(tc, missing_sha_names_it);
	tcase_add_test(tc, gitlab_pipeline_refspec);
	tcase_add_test(tc, submodules_checked_out);
	tcase_add_test(tc, dirty_overlay);
	tcase_add_test(tc, overlay_does_not_follow_links);
	tcase_add_test(tc, gitattributes_filters_apply);
	suite_add_tcase(s, tc);
	return s;
}
