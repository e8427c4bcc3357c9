/* The job workspace: mirror, checkout, shallow history, submodules, dirty
 * overlay, image, locking, and that credentials reach neither disk nor
 * messages. A test repository is made once with git in /tmp; images are
 * inspected without mounting (debugfs rdump). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workspace/mirror.h"
#include "lib/paths.h"
#include "lib/spawn.h"
#include "workspace/workspace.h"
#include "workspace/checkout.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define SECRET "s3ntinelT0ken"

static char g_dir[PATH_MAX];   /* the fixture root */
static char g_url[PATH_MAX];   /* file:// URL of the test repository */
static char g_sha[8][41];      /* main's commits, oldest first */
static int g_nsha;
static char g_feature[41];
static char g_sub_sha[41];     /* the submodule commit recorded in main */

/* ---- helpers ------------------------------------------------------------ */

/* Run a shell command and keep its first line of output (trimmed). */
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

static void make_state(char *buf, size_t size, const char *tag)
{
	snprintf(buf, size, "%s/state-%s-XXXXXX", g_dir, tag);
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

static void spec_init(struct ws_spec *s, const char *state, const char *url, const char *sha,
		      char *image, size_t image_size)
{
	memset(s, 0, sizeof(*s));
	s->state_dir = state;
	s->url = url;
	s->sha = sha;
	s->project_path = "group/project";
	snprintf(image, image_size, "%s/ws.img", state);
	s->image_path = image;
}

/* Dump the image's files into dir (made fresh). */
static void extract(const char *image, const char *dir)
{
	ck_assert_int_eq(test_sh("rm -rf '%s' && mkdir -p '%s' && debugfs -R 'rdump / %s' '%s' >/dev/null 2>&1",
			    dir, dir, dir, image), 0);
}

#define GIT "git -c safe.directory='*' -c protocol.file.allow=always"

static int count_files(const char *dir, const char *glob)
{
	char out[64];

	sh_out(out, sizeof(out), "ls %s/%s 2>/dev/null | wc -l", dir, glob);
	return atoi(out);
}

/* ---- fixture ------------------------------------------------------------ */

static void fixture_up(void)
{
	char cmd[8192];
	int i;

	snprintf(g_dir, sizeof(g_dir), "/tmp/kiln-ws-test-XXXXXX");
	if (!mkdtemp(g_dir))
		abort();
	snprintf(cmd, sizeof(cmd), "%s:/usr/sbin:/sbin", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", cmd, 1); /* mke2fs, debugfs, dumpe2fs */
	setenv("HOME", g_dir, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_AUTHOR_NAME", "Kiln Test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_COMMITTER_NAME", "Kiln Test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@kiln.invalid", 1);
	snprintf(cmd, sizeof(cmd),
		 "set -e; cd '%s'; exec >/dev/null 2>&1\n"
		 "git init -q -b main subwork; cd subwork\n"
		 "echo one > sub.txt; git add .; git commit -q -m 'sub 1'\n"
		 "echo two >> sub.txt; git commit -q -am 'sub 2'; cd ..\n"
		 "git clone -q --bare subwork sub.git\n"
		 "git init -q -b main work; cd work\n"
		 "printf '*.log\\nbuild/\\n' > .gitignore; echo hello > README; echo a > a.txt\n"
		 "printf '#!/bin/sh\\necho hi\\n' > run.sh; chmod +x run.sh\n"
		 "git add .; git commit -q -m 'first'\n"
		 "echo b >> a.txt; mkdir dir; echo b > dir/b.txt; git add .; git commit -q -m 'second'\n"
		 "git tag -a v1 -m 'version 1'\n"
		 "git checkout -q -b feature; echo f > f.txt; git add .; git commit -q -m 'feature'\n"
		 "git checkout -q main\n"
		 GIT " submodule -q add ../sub.git libs/sub; git commit -q -m 'add submodule'\n"
		 "for i in 4 5 6; do echo $i >> a.txt; git commit -q -am \"commit $i\"; done\n",
		 g_dir);
	if (test_sh("%s", cmd) != 0)
		abort();
	g_nsha = 6;
	for (i = 0; i < g_nsha; i++)
		sh_out(g_sha[i], sizeof(g_sha[i]), "git -C '%s/work' rev-parse main~%d", g_dir, g_nsha - 1 - i);
	sh_out(g_feature, sizeof(g_feature), "git -C '%s/work' rev-parse feature", g_dir);
	sh_out(g_sub_sha, sizeof(g_sub_sha), "git -C '%s/work' rev-parse main:libs/sub", g_dir);
	snprintf(g_url, sizeof(g_url), "file://%s/work", g_dir);
}

static void fixture_down(void)
{
	if (g_dir[0] && getenv("KILN_TEST_KEEP") == NULL)
		kiln_rm_rf(g_dir);
}

/* ---- URLs --------------------------------------------------------------- */

START_TEST(redact_urls)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "https://gitlab-ci-token:tok123@gitlab.example.com/group/p.git",
		  "https://gitlab.example.com/group/p.git" },
		{ "https://glpat-abcdef@gitlab.com/a/b.git", "https://gitlab.com/a/b.git" },
		{ "https://user:p%40ss@host:8443/x.git", "https://host:8443/x.git" },
		{ "http://u:p@ss@host/x", "http://host/x" },
		{ "https://host/path/with@sign.git", "https://host/path/with@sign.git" },
		{ "https://gitlab.com/a/b.git", "https://gitlab.com/a/b.git" },
		{ "ssh://git:secret@host:2222/a/b.git", "ssh://git@host:2222/a/b.git" },
		{ "ssh://git@host/a/b.git", "ssh://git@host/a/b.git" },
		{ "ssh://:pw@host/a.git", "ssh://host/a.git" },
		{ "git@gitlab.com:group/p.git", "git@gitlab.com:group/p.git" },
		{ "git://host/p.git", "git://host/p.git" },
		{ "/srv/repo.git", "/srv/repo.git" },
		{ "file:///srv/repo.git", "file:///srv/repo.git" },
	};
	char out[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_ptr_eq(ws_redact_url(cases[i].in, out, sizeof(out)), out);
		ck_assert_str_eq(out, cases[i].out);
	}
	ck_assert_ptr_null(ws_redact_url("https://a:b@host/x", out, 8));      /* does not fit */
	ck_assert_ptr_null(ws_redact_url("https://host/a b", out, sizeof(out))); /* space */
	ck_assert_ptr_null(ws_redact_url("", out, sizeof(out)));
}
END_TEST

START_TEST(url_credentials_parsed_and_scrubbed)
{
	struct ws_url u, c;
	struct kiln_err e = { 0 };
	char msg[128];

	ck_assert_int_eq(ws_url_parse("https://gitlab-ci-token:p%40ss%3Aw@GitLab.Example.com:8443/g/p.git", &u, &e), KILN_OK);
	ck_assert_int_eq(u.kind, WS_URL_HTTP);
	ck_assert_str_eq(u.user, "gitlab-ci-token");
	ck_assert_str_eq(u.pass, "p@ss:w");
	ck_assert_str_eq(u.host, "gitlab.example.com:8443");
	snprintf(msg, sizeof(msg), "failed: p@ss:w and gitlab-ci-token:p%%40ss%%3Aw@x");
	ws_url_scrub(&u, msg, sizeof(msg));
	ck_assert_msg(strstr(msg, "p@ss") == NULL && strstr(msg, "p%40ss") == NULL, "%s", msg);
	/* A token alone in the user part is scrubbed too. */
	ck_assert_int_eq(ws_url_parse("https://" SECRET "@h/x", &c, &e), KILN_OK);
	ck_assert_str_eq(c.user, SECRET);
	snprintf(msg, sizeof(msg), "401 for " SECRET);
	ws_url_scrub(&c, msg, sizeof(msg));
	ck_assert_str_eq(msg, "401 for ***");
	/* Short and star-made secrets are scrubbed without looping. */
	ck_assert_int_eq(ws_url_parse("https://u:*@h/x", &c, &e), KILN_OK);
	snprintf(msg, sizeof(msg), "a*b");
	ws_url_scrub(&c, msg, sizeof(msg));
	ck_assert_str_eq(msg, "a***b");
	/* Submodules on the same host inherit, others do not. */
	ck_assert_int_eq(ws_url_parse("https://gitlab.example.com:8443/g/sub.git", &c, &e), KILN_OK);
	ws_url_inherit(&c, &u);
	ck_assert_str_eq(c.pass, "p@ss:w");
	ck_assert_int_eq(ws_url_parse("https://other.example.com/g/sub.git", &c, &e), KILN_OK);
	ws_url_inherit(&c, &u);
	ck_assert_str_eq(c.pass, "");
	ck_assert_int_eq(ws_url_parse("git@host:g/p.git", &c, &e), KILN_OK);
	ck_assert_int_eq(c.kind, WS_URL_SSH);
	ck_assert_str_eq(c.user, "git");
	ck_assert_str_eq(c.host, "host");
	{
		static const char *const rel[][3] = {
			{ "https://host/group/proj.git", "../sub.git", "https://host/group/sub.git" },
			{ "https://host/group/proj.git/", "../../other/sub.git", "https://host/other/sub.git" },
			{ "https://host/proj.git", "../../../sub.git", "https://host/sub.git" },
			{ "file:///tmp/x/work", "../sub.git", "file:///tmp/x/sub.git" },
			{ "/tmp/x/work", "./sub", "/tmp/x/work/sub" },
			{ "git@host:group/proj.git", "../sub.git", "git@host:group/sub.git" },
			{ "git@host:group/proj.git", "../../sub.git", "git@host:sub.git" },
			{ "https://host/g/p.git", "https://elsewhere/s.git", "https://elsewhere/s.git" },
		};
		char res[256];
		size_t i;

		for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			ck_assert_int_eq(ws_url_resolve(rel[i][0], rel[i][1], res, sizeof(res), &e), KILN_OK);
			ck_assert_str_eq(res, rel[i][2]);
		}
	}
	ck_assert_int_eq(ws_url_parse("./rel/repo", &c, &e), KILN_OK);
	ck_assert_int_eq(c.kind, WS_URL_LOCAL);
	ws_url_wipe(&u);
	ck_assert_str_eq(u.pass, "");
}
END_TEST

/* ---- prepare ------------------------------------------------------------ */

static void check_checkout(const char *image, const char *dir, const char *sha)
{
	char out[256], path[PATH_MAX];

	extract(image, dir);
	snprintf(path, sizeof(path), "%s/group/project", dir);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' rev-parse HEAD", path), 0);
	ck_assert_str_eq(out, sha);
	ck_assert_int_ne(test_sh(GIT " -C '%s' symbolic-ref -q HEAD >/dev/null", path), 0); /* detached */
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' status --porcelain --ignore-submodules=all", path), 0);
	ck_assert_msg(out[0] == '\0', "status not clean: %s", out);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' remote get-url origin", path), 0);
	ck_assert_msg(strstr(out, "@") == NULL, "origin has credentials: %s", out);
	snprintf(path, sizeof(path), "%s/group/project/.git/objects/info/alternates", dir);
	ck_assert_int_ne(access(path, F_OK), 0);
}

START_TEST(cold_then_warm_prepare)
{
	char state[PATH_MAX], image[PATH_MAX], out[256], repo[PATH_MAX], url[PATH_MAX + 8], dir[PATH_MAX];
	char new_sha[41];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	struct stat st;

	make_state(state, sizeof(state), "warm");
	/* A repository of its own: this test adds a commit. */
	snprintf(repo, sizeof(repo), "%s/warm-src", state);
	ck_assert_int_eq(test_sh("cp -a '%s/work' '%s'", g_dir, repo), 0);
	snprintf(url, sizeof(url), "file://%s", repo);
	spec_init(&s, state, url, g_sha[5], image, sizeof(image));
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
	check_checkout(image, dir, g_sha[5]);
	/* Branches, tags and the executable bit came along. */
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' rev-parse origin/feature", dir), 0);
	ck_assert_str_eq(out, g_feature);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' rev-parse v1^{commit}", dir), 0);
	ck_assert_str_eq(out, g_sha[1]);
	ck_assert_int_eq(test_sh("test -x '%s/group/project/run.sh'", dir), 0);
	ck_assert_int_eq(test_sh("debugfs -R 'stat /' '%s' 2>/dev/null | grep -q 'Mode:  0755'", image), 0);
	ck_assert_int_eq(test_sh("dumpe2fs -h '%s' 2>/dev/null | grep -q 'volume name:.*kiln-ws'", image), 0);
	ck_assert_int_eq(test_sh("dumpe2fs -h '%s' 2>/dev/null | grep features | grep -q has_journal", image), 1);

	/* Warm: one new commit upstream, fetched into the existing mirror. */
	ck_assert_int_eq(test_sh("cd '%s' && echo new >> a.txt && git commit -q -am warm", repo), 0);
	sh_out(new_sha, sizeof(new_sha), "git -C '%s' rev-parse HEAD", repo);
	s.sha = new_sha;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.mirror_cloned);
	ck_assert(r.tree_reused);
	snprintf(dir, sizeof(dir), "%s/x2", state);
	check_checkout(image, dir, new_sha);
	/* A temporary build folder is always removed. */
	snprintf(dir, sizeof(dir), "%s/tmp", state);
	ck_assert_int_eq(count_files(dir, "ws-*"), 0);
	/* A local source: the new mirror hard-linked its packs. */
	ck_assert_int_eq(test_sh("test -n \"$(find '%s/mirrors' -path '*/objects/*' -type f -links +1)\"", state), 0);

	/* A deleted branch leaves the mirror (prune); a commit no ref reaches
	 * is copied by its SHA. */
	ck_assert_int_eq(test_sh("cd '%s' && git branch -q -D feature", repo), 0);
	ck_assert_int_eq(sh_out(new_sha, sizeof(new_sha), "cd '%s' && git commit-tree -p HEAD -m orphan 'HEAD^{tree}'", repo), 0);
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.fetched_by_sha);
	snprintf(dir, sizeof(dir), "%s/x3", state);
	check_checkout(image, dir, new_sha);
	ck_assert_int_ne(test_sh(GIT " -C '%s/group/project' rev-parse -q --verify origin/feature >/dev/null", dir), 0);
	ck_assert_int_ne(test_sh("git --git-dir=\"$(echo %s/mirrors/*.git)\" rev-parse -q --verify refs/remotes/origin/feature >/dev/null", state), 0);
}
END_TEST

/* The files of the image's project folder (not .git) are exactly the tree
 * of sha: same paths, same link and executable bits, same contents. */
static void check_files_are_commit(const char *dir, const char *sha)
{
	ck_assert_int_eq(test_sh("cd '%s/group/project' && "
				 "find . -path ./.git -prune -o \\( -type f -o -type l \\) -print | sed 's,^\\./,,' | sort > ../got && "
				 GIT " -C '%s/work' ls-tree -r %s | grep -v '^160000' | cut -f2 | sort > ../want && "
				 "cmp -s ../got ../want", dir, g_dir, sha), 0);
	ck_assert_int_eq(test_sh("cd '%s/group/project' && " GIT " -C '%s/work' ls-tree -r %s | grep -v '^160000' | "
				 "while read -r mode type id path; do "
				 "case $mode in 120000) [ -L \"$path\" ] || exit 1;; 100755) [ -x \"$path\" ] || exit 1;; "
				 "*) [ ! -x \"$path\" ] && [ ! -L \"$path\" ] || exit 1;; esac; "
				 "[ \"$(" GIT " hash-object --no-filters \"$path\" 2>/dev/null || readlink \"$path\")\" = \"$id\" ] || "
				 "[ -L \"$path\" ] || exit 1; done", dir, g_dir, sha), 0);
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
	make_state(state, sizeof(state), "kept");
	snprintf(dir, sizeof(dir), "%s/x", state);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		spec_init(&s, state, g_url, g_sha[order[i]], image, sizeof(image));
		ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
		ck_assert(r.tree_reused == (i > 0));
		check_checkout(image, dir, g_sha[order[i]]);
		check_files_are_commit(dir, g_sha[order[i]]);
	}
	/* Shallow, then full again: objects and .git/shallow are the job's. */
	spec_init(&s, state, g_url, g_sha[5], image, sizeof(image));
	s.depth = 2;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	check_checkout(image, dir, g_sha[5]);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	ck_assert_str_eq(out, "2");
	s.depth = 0;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	check_checkout(image, dir, g_sha[5]);
	ck_assert_int_ne(test_sh("test -e '%s/group/project/.git/shallow'", dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
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
	spec_init(&s, state, g_url, g_sha[4], image, sizeof(image));
	s.extra_dirs = extras;
	s.n_extra_dirs = 1;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	extract(image, dir);
	ck_assert_int_eq(test_sh("cd '%s/group/project' && grep -q HELLO README && test -f build/out.log && "
				 "test -f dir && test ! -x run.sh", dir), 0);
	spec_init(&s, state, g_url, g_sha[4], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	check_checkout(image, dir, g_sha[4]);
	check_files_are_commit(dir, g_sha[4]);
	ck_assert_int_ne(test_sh("test -e '%s/group/project/build'", dir), 0);

	/* Another project path: not reused. A fresh_checkout job leaves the
	 * kept one alone, and its own folder goes. */
	spec_init(&s, state, g_url, g_sha[4], image, sizeof(image));
	s.project_path = "other/place";
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	s.fresh_checkout = true;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	snprintf(dir, sizeof(dir), "%s/tmp", state);
	ck_assert_int_eq(count_files(dir, "ws-*"), 0);
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

	make_state(state, sizeof(state), "damaged");
	spec_init(&s, state, g_url, g_sha[3], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(test_sh("for f in %s/trees/*/root/group/project/.git/index; do echo garbage > \"$f\"; done", state), 0);
	spec_init(&s, state, g_url, g_sha[5], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, g_sha[5]);
	check_files_are_commit(dir, g_sha[5]);
	/* Files that somehow came into a kept checkout, untracked or
	 * ignored ones, are removed by the update. */
	ck_assert_int_eq(test_sh("for d in %s/trees/*/root/group/project; do echo s > \"$d/stray\" && "
				 "mkdir \"$d/build\" && echo l > \"$d/build/x.log\" && echo l > \"$d/x.log\"; done",
				 state), 0);
	spec_init(&s, state, g_url, g_sha[4], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.tree_reused);
	check_checkout(image, dir, g_sha[4]);
	check_files_are_commit(dir, g_sha[4]);
	ck_assert_int_ne(test_sh("test -e '%s/group/project/build'", dir), 0);
	spec_init(&s, state, g_url, g_sha[5], image, sizeof(image));
	/* A checkout that a killed job left unmarked is not reused either. */
	ck_assert_int_eq(test_sh("rm %s/trees/*/kept && for d in %s/trees/*/root/group/project; do echo stray > \"$d/stray\"; done", state, state), 0);
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.tree_reused);
	check_checkout(image, dir, g_sha[5]);
	check_files_are_commit(dir, g_sha[5]);
}
END_TEST

START_TEST(exact_older_sha_detached)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	make_state(state, sizeof(state), "old");
	spec_init(&s, state, g_url, g_sha[1], image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, g_sha[1]);
	ck_assert_int_eq(test_sh("test -f '%s/group/project/dir/b.txt' && ! test -e '%s/group/project/libs'", dir, dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	ck_assert_str_eq(out, "2");
	ck_assert_int_eq(test_sh(GIT " -C '%s/group/project' fsck --no-dangling --no-progress >/dev/null 2>&1", dir), 0);
}
END_TEST

static void check_depth(unsigned depth)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256], want[16];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	make_state(state, sizeof(state), "shallow");
	spec_init(&s, state, g_url, g_sha[5], image, sizeof(image));
	s.depth = depth;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, g_sha[5]);
	ck_assert_int_eq(test_sh("test -s '%s/group/project/.git/shallow'", dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' rev-parse --is-shallow-repository", dir), 0);
	ck_assert_str_eq(out, "true");
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' log --oneline | wc -l", dir), 0);
	snprintf(want, sizeof(want), "%u", depth);
	ck_assert_str_eq(out, want);
	/* The boundary is the oldest commit kept. */
	ck_assert_int_eq(sh_out(out, sizeof(out), "cat '%s/group/project/.git/shallow'", dir), 0);
	ck_assert_str_eq(out, g_sha[6 - depth]);
	ck_assert_int_eq(test_sh(GIT " -C '%s/group/project' fsck --no-dangling --no-progress >/dev/null 2>&1", dir), 0);
	/* Only the objects of those commits: the first commit's a.txt is gone. */
	ck_assert_int_ne(test_sh(GIT " -C '%s/group/project' cat-file -e %s:a.txt 2>/dev/null", dir, g_sha[0]), 0);
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

	make_state(state, sizeof(state), "missing");
	spec_init(&s, state, g_url, missing, image, sizeof(image));
	s.ref = "main";
	ck_assert_int_eq(ws_prepare(&s, &r, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, missing) != NULL && strstr(e.msg, "ref main") != NULL, "%s", e.msg);
	ck_assert_ptr_null(strchr(e.msg, '\n'));
	ck_assert(r.fetched_by_sha);
	ck_assert_int_ne(access(image, F_OK), 0);
	snprintf(dir, sizeof(dir), "%s/tmp", state);
	ck_assert_int_eq(count_files(dir, "ws-*"), 0);
	/* Bad input is refused before anything happens. */
	s.sha = "abc";
	ck_assert_int_eq(ws_prepare(&s, &r, &e), KILN_E_INVALID);
	s.sha = g_sha[0];
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

	make_state(state, sizeof(state), "pipe");
	snprintf(pipe_spec, sizeof(pipe_spec), "+%s:refs/pipelines/42", g_sha[4]);
	specs[0] = pipe_spec;
	specs[1] = "+refs/heads/main:refs/remotes/origin/main";
	spec_init(&s, state, g_url, g_sha[4], image, sizeof(image));
	s.refspecs = specs;
	s.n_refspecs = 2;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, g_sha[4]);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' rev-parse refs/pipelines/42", dir), 0);
	ck_assert_str_eq(out, g_sha[4]);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' config --get-all remote.origin.fetch", dir), 0);
	ck_assert_str_eq(out, "+refs/heads/main:refs/remotes/origin/main");
}
END_TEST

/* ---- locking ------------------------------------------------------------ */

struct prep_thread {
	struct ws_spec spec;
	struct ws_result res;
	struct kiln_err err;
	enum kiln_rc rc;
	volatile int done;
};

static void *prep_main(void *arg)
{
	struct prep_thread *t = arg;

	t->rc = ws_prepare(&t->spec, &t->res, &t->err);
	t->done = 1;
	return NULL;
}

static void mirror_lock_path(char *buf, size_t size, const char *state, const char *url)
{
	char mp[PATH_MAX], red[PATH_MAX];

	ck_assert_ptr_nonnull(ws_redact_url(url, red, sizeof(red)));
	ck_assert_ptr_nonnull(mirror_path(mp, sizeof(mp), state, red));
	snprintf(buf, size, "%s.lock", mp);
}

START_TEST(second_job_waits_for_the_mirror)
{
	char state[PATH_MAX], image[PATH_MAX], lock[PATH_MAX + 8], mirrors[PATH_MAX];
	struct prep_thread t;
	struct kiln_err e = { 0 };
	pthread_t th;
	long waited;
	int fd;

	make_state(state, sizeof(state), "lock");
	snprintf(mirrors, sizeof(mirrors), "%s/mirrors", state);
	ck_assert_int_eq(kiln_mkdir_p(mirrors), 0);
	mirror_lock_path(lock, sizeof(lock), state, g_url);
	/* Another job holds the mirror. */
	ck_assert_int_eq(mirror_lock(lock, 5, &fd, &waited, &e), KILN_OK);
	memset(&t, 0, sizeof(t));
	spec_init(&t.spec, state, g_url, g_sha[5], image, sizeof(image));
	ck_assert_int_eq(pthread_create(&th, NULL, prep_main, &t), 0);
	usleep(1200 * 1000);
	ck_assert_int_eq(t.done, 0);
	mirror_unlock(fd);
	pthread_join(th, NULL);
	ck_assert_msg(t.rc == KILN_OK, "%s", t.err.msg);
	ck_assert_int_ge(t.res.lock_wait_ms, 1000);

	/* Held for longer than the job's limit: a clear error. */
	ck_assert_int_eq(mirror_lock(lock, 5, &fd, &waited, &e), KILN_OK);
	memset(&t.res, 0, sizeof(t.res));
	t.spec.lock_timeout_s = 1;
	ck_assert_int_eq(ws_prepare(&t.spec, &t.res, &t.err), KILN_E_LIMIT);
	ck_assert_msg(strstr(t.err.msg, "lock") && strstr(t.err.msg, "another job"), "%s", t.err.msg);
	mirror_unlock(fd);
}
END_TEST

START_TEST(two_jobs_at_once_serialize)
{
	char state[PATH_MAX], img1[PATH_MAX], img2[PATH_MAX];
	struct prep_thread a, b;
	pthread_t ta, tb;

	make_state(state, sizeof(state), "two");
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	spec_init(&a.spec, state, g_url, g_sha[5], img1, sizeof(img1));
	spec_init(&b.spec, state, g_url, g_sha[3], img2, sizeof(img2));
	snprintf(img2, sizeof(img2), "%s/ws2.img", state);
	ck_assert_int_eq(pthread_create(&ta, NULL, prep_main, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, prep_main, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert_msg(a.rc == KILN_OK, "%s", a.err.msg);
	ck_assert_msg(b.rc == KILN_OK, "%s", b.err.msg);
	/* Exactly one of them made the mirror. */
	ck_assert_int_eq(a.res.mirror_cloned + b.res.mirror_cloned, 1);
}
END_TEST

/* ---- credentials over http ---------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(const char *in, char *out)
{
	size_t n = strlen(in), i, o = 0;

	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;

		if (i + 1 < n)
			v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		out[o++] = b64chars[(v >> 18) & 63];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
	}
	out[o] = '\0';
}

static int read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

static void write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, buf, n);
		if (k <= 0)
			return;
		buf += k;
		n -= (size_t)k;
	}
}

static const char *header(const char *head, const char *name, char *val, size_t size)
{
	const char *p = head;
	size_t nlen = strlen(name);

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1, *end = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			snprintf(val, size, "%.*s", (int)(end - v), v);
			return val;
		}
	}
	return NULL;
}

/* One request: Basic auth as expected, else 401; then git http-backend. */
static void http_serve_one(int c, const char *root, const char *want_auth)
{
	static char buf[1 << 16];
	char method[16], target[1024], path[1024], query[1024], val[1024], ctype[256], len_s[32];
	char body_path[PATH_MAX];
	size_t have = 0, body_len = 0;
	char *end, *q;
	int body_fd, out[2];
	pid_t pid;
	FILE *cgi;

	while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
		ssize_t k = read(c, buf + have, sizeof(buf) - 1 - have);
		if (k <= 0)
			return;
		have += (size_t)k;
	}
	*end = '\0';
	if (sscanf(buf, "%15s %1023s", method, target) != 2)
		return;
	if (!header(buf, "Authorization", val, sizeof(val)) || strcmp(val, want_auth) != 0) {
		const char *r = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kiln\"\r\n"
				"Content-Length: 0\r\nConnection: close\r\n\r\n";
		write_all(c, r, strlen(r));
		return;
	}
	snprintf(body_path, sizeof(body_path), "%s/http-body-XXXXXX", root);
	body_fd = mkstemp(body_path);
	unlink(body_path);
	{
		char *rest = end + 4;
		size_t rest_n = have - (size_t)(rest - buf);

		if (header(buf, "Content-Length", val, sizeof(val))) {
			size_t want = strtoul(val, NULL, 10);
			char *tmp = malloc(want + 1);

			memcpy(tmp, rest, rest_n < want ? rest_n : want);
			if (rest_n < want && read_full(c, tmp + rest_n, want - rest_n) < 0) {
				free(tmp);
				close(body_fd);
				return;
			}
			write_all(body_fd, tmp, want);
			body_len = want;
			free(tmp);
		} else if (header(buf, "Transfer-Encoding", val, sizeof(val))) {
			/* chunked: collect everything until the 0-size chunk */
			static char raw[1 << 22];
			size_t rn = rest_n, pos = 0;

			memcpy(raw, rest, rn);
			for (;;) {
				char *eol;
				size_t sz;

				while (!(eol = memmem(raw + pos, rn - pos, "\r\n", 2))) {
					ssize_t k = read(c, raw + rn, sizeof(raw) - rn);
					if (k <= 0)
						goto done;
					rn += (size_t)k;
				}
				sz = strtoul(raw + pos, NULL, 16);
				pos = (size_t)(eol - raw) + 2;
				if (sz == 0)
					break;
				while (rn < pos + sz + 2) {
					ssize_t k = read(c, raw + rn, sizeof(raw) - rn);
					if (k <= 0)
						goto done;
					rn += (size_t)k;
				}
				write_all(body_fd, raw + pos, sz);
				body_len += sz;
				pos += sz + 2;
			}
		}
	}
done:
	lseek(body_fd, 0, SEEK_SET);
	snprintf(path, sizeof(path), "%s", target);
	query[0] = '\0';
	if ((q = strchr(path, '?'))) {
		*q = '\0';
		snprintf(query, sizeof(query), "%s", q + 1);
	}
	if (!header(buf, "Content-Type", ctype, sizeof(ctype)))
		ctype[0] = '\0';
	snprintf(len_s, sizeof(len_s), "%zu", body_len);
	if (pipe(out) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		dup2(body_fd, 0);
		dup2(out[1], 1);
		close(out[0]);
		setenv("GIT_PROJECT_ROOT", root, 1);
		setenv("GIT_HTTP_EXPORT_ALL", "1", 1);
		setenv("REQUEST_METHOD", method, 1);
		setenv("PATH_INFO", path, 1);
		setenv("QUERY_STRING", query, 1);
		setenv("CONTENT_TYPE", ctype, 1);
		setenv("CONTENT_LENGTH", len_s, 1);
		setenv("REMOTE_USER", "ci", 1);
		setenv("REMOTE_ADDR", "127.0.0.1", 1);
		execlp("git", "git", "-c", "uploadpack.allowAnySHA1InWant=true", "http-backend", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(body_fd);
	cgi = fdopen(out[0], "r");
	{
		char line[1024], status[128] = "200 OK", hdrs[4096] = "";
		size_t n;

		while (fgets(line, sizeof(line), cgi) && strcmp(line, "\r\n") != 0 && strcmp(line, "\n") != 0) {
			line[strcspn(line, "\r\n")] = '\0';
			if (strncasecmp(line, "Status:", 7) == 0)
				snprintf(status, sizeof(status), "%s", line + 8);
			else
				snprintf(hdrs + strlen(hdrs), sizeof(hdrs) - strlen(hdrs), "%s\r\n", line);
		}
		snprintf(line, sizeof(line), "HTTP/1.1 %s\r\n", status);
		write_all(c, line, strlen(line));
		write_all(c, hdrs, strlen(hdrs));
		write_all(c, "Connection: close\r\n\r\n", 21);
		while ((n = fread(buf, 1, sizeof(buf), cgi)) > 0)
			write_all(c, buf, n);
	}
	fclose(cgi);
	waitpid(pid, NULL, 0);
}

/* A listening socket on a free port of 127.0.0.1. Until something accepts,
 * connects complete (the kernel's backlog) and nothing is ever sent. */
static int listen_loopback(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(s, 16), 0);
	getsockname(s, (struct sockaddr *)&a, &alen);
	*port = ntohs(a.sin_port);
	return s;
}

/* A tiny smart-http git server on 127.0.0.1 that wants user:pass. */
static pid_t http_start(const char *root, const char *userpass, int *port)
{
	char auth[512], enc[512];
	int s = listen_loopback(port);
	pid_t pid;

	base64(userpass, enc);
	snprintf(auth, sizeof(auth), "Basic %s", enc);
	pid = fork();
	if (pid == 0) {
		signal(SIGPIPE, SIG_IGN);
		for (;;) {
			int c = accept(s, NULL, NULL);
			if (c < 0)
				continue;
			http_serve_one(c, root, auth);
			close(c);
		}
	}
	close(s);
	return pid;
}

static void http_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

START_TEST(sha_only_reachable_by_sha_is_fetched)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], repo[PATH_MAX], url[PATH_MAX + 8], sha[41];
	const char *specs[] = { "+refs/heads/main:refs/remotes/origin/main" };
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	int port;
	pid_t srv;

	/* A commit that no ref reaches (like a pipeline for a deleted branch):
	 * the refspec does not bring it, fetching the SHA itself does. Over
	 * smart http: libgit2's file:// transport sends only what refs reach. */
	make_state(state, sizeof(state), "bysha");
	snprintf(repo, sizeof(repo), "%s/src", state);
	ck_assert_int_eq(test_sh("cp -a '%s/work' '%s'", g_dir, repo), 0);
	ck_assert_int_eq(sh_out(sha, sizeof(sha), "cd '%s' && git commit-tree -p HEAD -m orphan 'HEAD^{tree}'", repo), 0);
	ck_assert_uint_eq(strlen(sha), 40);
	srv = http_start(state, "u:p", &port);
	snprintf(url, sizeof(url), "http://u:p@127.0.0.1:%d/src", port);
	spec_init(&s, state, url, sha, image, sizeof(image));
	s.refspecs = specs;
	s.n_refspecs = 1;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.fetched_by_sha);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, sha);
	/* The mirror's refs/kiln/ namespace is emptied after use. */
	ck_assert_int_eq(test_sh("test -z \"$(git --git-dir=\"$(echo %s/mirrors/*.git)\" for-each-ref refs/kiln/)\"", state), 0);
	http_stop(srv);
}
END_TEST

START_TEST(credentials_never_reach_disk)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], url[512], out[256];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	int port;
	pid_t srv = http_start(g_dir, "gitlab-ci-token:" SECRET, &port);

	make_state(state, sizeof(state), "cred");
	snprintf(url, sizeof(url), "http://gitlab-ci-token:%s@127.0.0.1:%d/work", SECRET, port);
	spec_init(&s, state, url, g_sha[5], image, sizeof(image));
	s.submodules = true; /* ../sub.git: same host, so it inherits the token */
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(r.submodules, 1);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, g_sha[5]);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' remote get-url origin", dir), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/work", port);
	ck_assert_str_eq(out, url);
	/* The sentinel is nowhere: mirrors, checkout, the image's raw bytes. */
	ck_assert_int_eq(test_sh("grep -r -a -q '%s' '%s/mirrors'", SECRET, state), 1);
	ck_assert_int_eq(test_sh("grep -r -a -q '%s' '%s'", SECRET, dir), 1);
	ck_assert_int_eq(test_sh("grep -a -q '%s' '%s'", SECRET, image), 1);
	ck_assert_int_eq(test_sh("find '%s/mirrors' -name FETCH_HEAD | grep -q .", state), 1);

	/* Wrong token: an authentication error that does not show it. */
	snprintf(url, sizeof(url), "http://gitlab-ci-token:wrong%s@127.0.0.1:%d/work", SECRET, port);
	s.url = url;
	s.submodules = false;
	ck_assert_int_ne(ws_prepare(&s, &r, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, SECRET) == NULL, "%s", e.msg);
	ck_assert_msg(strstr(e.msg, "authentication") != NULL, "%s", e.msg);
	ck_assert_msg(strstr(e.msg, "127.0.0.1") != NULL, "%s", e.msg);
	ck_assert_int_ne(access(image, F_OK), 0);
	http_stop(srv);
}
END_TEST

START_TEST(stalled_server_hits_the_fetch_limit)
{
	char state[PATH_MAX], image[PATH_MAX], url[128];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	struct timespec t0, t1;
	int port, ls = listen_loopback(&port);
	double took;

	/* libgit2's own socket would wait here until TCP gave up. */
	make_state(state, sizeof(state), "stall");
	snprintf(url, sizeof(url), "git://127.0.0.1:%d/work", port);
	spec_init(&s, state, url, g_sha[5], image, sizeof(image));
	s.fetch_timeout_s = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_ne(ws_prepare(&s, &r, &e), KILN_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(took >= 0.9 && took < 10, "the stalled fetch took %.1f s", took);
	ck_assert_msg(strstr(e.msg, "time limit of 1 s") && strstr(e.msg, "127.0.0.1"), "%s", e.msg);
	ck_assert_int_ne(access(image, F_OK), 0);
	close(ls);
}
END_TEST

/* git daemon serving g_dir on a free port of 127.0.0.1; 0 when git daemon
 * cannot run here. */
static pid_t daemon_start(int *port)
{
	char exec_path[PATH_MAX], daemon[PATH_MAX + 16], arg_port[32], arg_base[PATH_MAX + 16];
	int ls = listen_loopback(port), i;
	pid_t pid;

	close(ls); /* the port is free again; git daemon binds it */
	if (sh_out(exec_path, sizeof(exec_path), "git --exec-path") != 0)
		return 0;
	snprintf(daemon, sizeof(daemon), "%s/git-daemon", exec_path);
	if (access(daemon, X_OK) != 0)
		return 0;
	snprintf(arg_port, sizeof(arg_port), "--port=%d", *port);
	snprintf(arg_base, sizeof(arg_base), "--base-path=%s", g_dir);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl(daemon, daemon, "--listen=127.0.0.1", arg_port, "--export-all", "--reuseaddr",
		      arg_base, g_dir, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		if (test_sh("git ls-remote git://127.0.0.1:%d/work >/dev/null 2>&1", *port) == 0)
			return pid;
		usleep(50000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_abort_msg("git daemon did not answer on port %d", *port);
	return 0;
}

START_TEST(git_protocol_cold_then_warm)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], url[128];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	int port;
	pid_t srv = daemon_start(&port);

	if (!srv) {
		fprintf(stderr, "workspace: git:// case skipped: git daemon is not installed\n");
		return;
	}
	make_state(state, sizeof(state), "gitproto");
	snprintf(url, sizeof(url), "git://127.0.0.1:%d/work", port);
	spec_init(&s, state, url, g_sha[4], image, sizeof(image));
	s.fetch_timeout_s = 60;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.mirror_cloned);
	snprintf(dir, sizeof(dir), "%s/x1", state);
	check_checkout(image, dir, g_sha[4]);
	s.sha = g_sha[5];
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.mirror_cloned);
	snprintf(dir, sizeof(dir), "%s/x2", state);
	check_checkout(image, dir, g_sha[5]);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
}
END_TEST

/* ---- submodules and dirty overlay --------------------------------------- */

START_TEST(submodules_checked_out)
{
	char state[PATH_MAX], image[PATH_MAX], dir[PATH_MAX], out[256];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	make_state(state, sizeof(state), "sub");
	spec_init(&s, state, g_url, g_sha[5], image, sizeof(image));
	s.submodules = true;
	s.depth = 2;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(r.submodules, 1);
	snprintf(dir, sizeof(dir), "%s/x", state);
	check_checkout(image, dir, g_sha[5]);
	ck_assert_int_eq(sh_out(out, sizeof(out), "cat '%s/group/project/libs/sub/sub.txt' | wc -l", dir), 0);
	ck_assert_str_eq(out, "2");
	/* Extracted elsewhere, git still finds the submodule's repository. */
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project/libs/sub' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, g_sub_sha);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' status --porcelain", dir), 0);
	ck_assert_msg(out[0] == '\0', "status not clean: %s", out);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s/group/project' submodule status", dir), 0);
	ck_assert_msg(out[0] == ' ' && strstr(out, g_sub_sha), "submodule status: %s", out);
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

	make_state(state, sizeof(state), "dirty");
	snprintf(dirty, sizeof(dirty), "%s/dirty", state);
	ck_assert_int_eq(test_sh("git clone -q '%s/work' '%s' && cd '%s' && echo changed > a.txt && "
			    "echo new > untracked.txt && mkdir -p newdir/deep && echo deep > newdir/deep/x.txt && "
			    "echo noise > debug.log && mkdir build && echo out > build/out.o && "
			    "git rm -q README && echo staged > dir/b.txt && git add dir/b.txt && "
			    "ln -s a.txt link && mkdir -p group && ln -s /etc escape",
			    g_dir, dirty, dirty), 0);
	spec_init(&s, state, g_url, g_sha[5], image, sizeof(image));
	s.dirty_dir = dirty;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_ge(r.overlay_files, 6);
	snprintf(dir, sizeof(dir), "%s/x", state);
	extract(image, dir);
	snprintf(dir, sizeof(dir), "%s/x/group/project", state);
	ck_assert_int_eq(sh_out(out, sizeof(out), "cat '%s/a.txt'", dir), 0);
	ck_assert_str_eq(out, "changed");
	ck_assert_int_eq(sh_out(out, sizeof(out), "cat '%s/dir/b.txt'", dir), 0);
	ck_assert_str_eq(out, "staged");
	ck_assert_int_eq(test_sh("test -f '%s/untracked.txt' && test -f '%s/newdir/deep/x.txt'", dir, dir), 0);
	ck_assert_int_eq(test_sh("test -L '%s/link' && test \"$(readlink '%s/link')\" = a.txt", dir, dir), 0);
	ck_assert_int_eq(test_sh("test -L '%s/escape'", dir), 0);
	ck_assert_int_ne(test_sh("test -e '%s/debug.log' || test -e '%s/build'", dir, dir), 0);
	ck_assert_int_ne(test_sh("test -e '%s/README'", dir), 0);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' rev-parse HEAD", dir), 0);
	ck_assert_str_eq(out, g_sha[5]);
	ck_assert_int_eq(sh_out(out, sizeof(out), GIT " -C '%s' status --porcelain --ignore-submodules=all | wc -l", dir), 0);
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
	make_state(base, sizeof(base), "links");
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

START_TEST(mirror_packs_stay_bounded)
{
	char state[PATH_MAX], image[PATH_MAX], repo[PATH_MAX], url[PATH_MAX + 8], sha[41], mirror[PATH_MAX];
	char red[PATH_MAX], stale[PATH_MAX];
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };
	int i;

	make_state(state, sizeof(state), "packs");
	snprintf(repo, sizeof(repo), "%s/src", state);
	ck_assert_int_eq(test_sh("cp -a '%s/work' '%s'", g_dir, repo), 0);
	snprintf(url, sizeof(url), "file://%s", repo);
	/* A build folder left by a job that died is cleaned up. */
	snprintf(stale, sizeof(stale), "%s/tmp/ws-stale", state);
	ck_assert_int_eq(kiln_mkdir_p(stale), 0);
	/* So is a mirror no job used for 40 days; one used yesterday stays. */
	ck_assert_int_eq(test_sh("cd '%s' && mkdir -p mirrors/old.git/objects mirrors/new.git/objects && "
			    "touch -d '40 days ago' mirrors/old.git.lock && touch -d '1 day ago' mirrors/new.git.lock && "
			    "mkdir -p trees/old/root trees/new/root",
			    state), 0);
	spec_init(&s, state, url, g_sha[5], image, sizeof(image));
	s.mirror_max_packs = 2;
	for (i = 0; i < 4; i++) {
		if (i > 0) {
			ck_assert_int_eq(test_sh("cd '%s' && echo %d >> a.txt && git commit -q -am more", repo, i), 0);
			sh_out(sha, sizeof(sha), "git -C '%s' rev-parse HEAD", repo);
			s.sha = sha;
		}
		ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	}
	ck_assert_int_ne(access(stale, F_OK), 0);
	ck_assert_int_eq(test_sh("cd '%s/mirrors' && ! test -e old.git && ! test -e old.git.lock && test -d new.git", state), 0);
	/* The kept checkout goes with its mirror. */
	ck_assert_int_eq(test_sh("cd '%s/trees' && ! test -e old && test -d new/root", state), 0);
	ck_assert_ptr_nonnull(ws_redact_url(url, red, sizeof(red)));
	ck_assert_ptr_nonnull(mirror_path(mirror, sizeof(mirror), state, red));
	ck_assert_int_le(count_files(mirror, "objects/pack/*.pack"), 2);
	ck_assert_int_eq(test_sh("git --git-dir='%s' fsck --no-dangling --no-progress 2>/dev/null", mirror), 0);
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

	make_state(state, sizeof(state), "attr");
	snprintf(repo, sizeof(repo), "%s/src", state);
	ck_assert_int_eq(test_sh("set -e; git init -q -b main '%s'; cd '%s'; mkdir docs; "
			    "printf '*.txt text eol=crlf\\n' > docs/.gitattributes; printf 'x\\ny\\n' > docs/a.txt; "
			    "printf '*.c ident\\n' > .gitattributes; printf '$Id$\\n' > id.c; printf 'x\\ny\\n' > plain.txt; "
			    "git add .; git commit -q -m attrs",
			    repo, repo), 0);
	sh_out(sha, sizeof(sha), "git -C '%s' rev-parse HEAD", repo);
	sh_out(blob, sizeof(blob), "git -C '%s' rev-parse HEAD:id.c", repo);
	snprintf(url, sizeof(url), "file://%s", repo);
	spec_init(&s, state, url, sha, image, sizeof(image));
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	snprintf(dir, sizeof(dir), "%s/x", state);
	extract(image, dir);
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

Suite *workspace_suite(void)
{
	Suite *s = suite_create("workspace");
	TCase *tc;
	char path[PATH_MAX];

	if (!kiln_which(NULL, "git", path, sizeof(path)) ||
	    (access("/usr/sbin/debugfs", X_OK) != 0 && access("/sbin/debugfs", X_OK) != 0)) {
		fprintf(stderr, "workspace: tests skipped: they need git and e2fsprogs (debugfs)\n");
		return s;
	}
	tc = tcase_create("core");

	tcase_add_unchecked_fixture(tc, fixture_up, fixture_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, redact_urls);
	tcase_add_test(tc, url_credentials_parsed_and_scrubbed);
	tcase_add_test(tc, cold_then_warm_prepare);
	tcase_add_test(tc, kept_checkout_follows_every_change);
	tcase_add_test(tc, damaged_kept_checkout_is_replaced);
	tcase_add_test(tc, exact_older_sha_detached);
	tcase_add_test(tc, shallow_depth_1);
	tcase_add_test(tc, shallow_depth_3);
	tcase_add_test(tc, missing_sha_names_it);
	tcase_add_test(tc, sha_only_reachable_by_sha_is_fetched);
	tcase_add_test(tc, gitlab_pipeline_refspec);
	tcase_add_test(tc, second_job_waits_for_the_mirror);
	tcase_add_test(tc, two_jobs_at_once_serialize);
	tcase_add_test(tc, credentials_never_reach_disk);
	tcase_add_test(tc, stalled_server_hits_the_fetch_limit);
	tcase_add_test(tc, git_protocol_cold_then_warm);
	tcase_add_test(tc, submodules_checked_out);
	tcase_add_test(tc, dirty_overlay);
	tcase_add_test(tc, overlay_does_not_follow_links);
	tcase_add_test(tc, mirror_packs_stay_bounded);
	tcase_add_test(tc, gitattributes_filters_apply);
	suite_add_tcase(s, tc);
	return s;
}
