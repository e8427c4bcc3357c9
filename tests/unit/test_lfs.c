/* Git LFS (workspace/lfsbatch.h, lfs.h): pointer files and batch replies
 * parsed with their bounds, and objects fetched from a small GitLab-like
 * server (tests/fixtures/lfs-server.py: git over smart HTTP and the LFS
 * batch API, both behind the job token) into checkouts made by git and by
 * ws_prepare, whose submodule has a URL relative to the project's. */
#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/paths.h"
#include "workspace/lfs.h"
#include "workspace/lfsbatch.h"
#include "workspace/strategy.h"
#include "workspace/workspace.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define TOKEN "glcbt-lfsT0kenXYZ"
#define GIT "git -c safe.directory='*' -c protocol.file.allow=always"

static char g_dir[PATH_MAX];
static char g_srv[PATH_MAX];  /* the server's root */
static char g_url[512];       /* http://gitlab-ci-token:TOKEN@127.0.0.1:port/group/main.git */
static char g_sha[41];        /* main: pointers whose objects the server has */
static char g_broken[41];     /* broken: a pointer to an object it lacks */
static char g_big_oid[65];
static pid_t g_pid = -1;

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

/* big.bin's object is 20,000 bytes; copy.bin (executable) points at it
 * too; fake.bin has the lfs filter but is no pointer; libs/sub is
 * ../sub.git. */
static void fixture_up(void)
{
	char path[PATH_MAX + 64], port[32] = "";
	int i;

	snprintf(g_dir, sizeof(g_dir), "/tmp/kiln-lfs-XXXXXX");
	if (!mkdtemp(g_dir))
		abort();
	snprintf(g_srv, sizeof(g_srv), "%s/srv", g_dir);
	snprintf(path, sizeof(path), "%s:/usr/sbin:/sbin", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	setenv("HOME", g_dir, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_AUTHOR_NAME", "Kiln Test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_COMMITTER_NAME", "Kiln Test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@kiln.invalid", 1);
	if (test_sh("set -e; cd '%s'; exec >/dev/null 2>&1; mkdir -p srv/group srv/lfs\n"
		    "git init -q -b main subw; (cd subw; echo sub > sub.txt; git add .; git commit -q -m sub)\n"
		    "git clone -q --bare subw srv/group/sub.git\n"
		    "python3 -c 'import sys; sys.stdout.write(\"lfs object\\n\" * 1818 + \"12\")' > big\n"
		    "oid=$(sha256sum big | cut -c1-64); cp big srv/lfs/$oid; echo $oid > big.oid\n"
		    "git init -q -b main w; cd w; git remote add origin \"$PWD/../srv/group/main.git\"\n"
		    "echo '*.bin filter=lfs diff=lfs merge=lfs -text' > .gitattributes\n"
		    "printf 'version https://git-lfs.github.com/spec/v1\\noid sha256:%%s\\nsize 20000\\n' $oid > big.bin\n"
		    "cp big.bin copy.bin; chmod +x copy.bin; echo 'not a pointer' > fake.bin; echo plain > plain.txt\n"
		    "git add .; git commit -q -m lfs\n"
		    GIT " submodule -q add ../sub.git libs/sub; git commit -q -m sub\n"
		    "git checkout -q -b broken\n"
		    "printf 'version https://git-lfs.github.com/spec/v1\\noid sha256:%%064d\\nsize 3\\n' 7 > gone.bin\n"
		    "git add .; git commit -q -m broken; git checkout -q main; cd ..\n"
		    "git clone -q --bare w srv/group/main.git\n",
		    g_dir) != 0)
		abort();
	sh_out(g_sha, sizeof(g_sha), "git -C '%s/w' rev-parse main", g_dir);
	sh_out(g_broken, sizeof(g_broken), "git -C '%s/w' rev-parse broken", g_dir);
	sh_out(g_big_oid, sizeof(g_big_oid), "cat '%s/big.oid'", g_dir);
	snprintf(path, sizeof(path), "%s/port", g_dir);
	g_pid = fork();
	if (g_pid == 0) {
		char script[PATH_MAX];
		const char *top = getenv("top_srcdir");

		snprintf(script, sizeof(script), "%s/tests/fixtures/lfs-server.py", top ? top : ".");
		execlp("python3", "python3", script, g_srv, TOKEN, path, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200 && !port[0]; i++) {
		struct timespec ts = { 0, 50000000 };

		sh_out(port, sizeof(port), "cat '%s' 2>/dev/null", path);
		if (!port[0])
			nanosleep(&ts, NULL);
	}
	if (!port[0])
		abort();
	snprintf(g_url, sizeof(g_url), "http://gitlab-ci-token:" TOKEN "@127.0.0.1:%s/group/main.git", port);
	git_libgit2_init();
}

static void fixture_down(void)
{
	if (g_pid > 0) {
		kill(g_pid, SIGTERM);
		waitpid(g_pid, NULL, 0);
	}
	git_libgit2_shutdown();
	if (g_dir[0] && !getenv("KILN_TEST_KEEP"))
		kiln_rm_rf(g_dir);
}

/* ---- parsing ------------------------------------------------------------ */

START_TEST(pointer_parsed)
{
	static const char good[] = "version https://git-lfs.github.com/spec/v1\n"
				   "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
				   "size 12345\n";
	static const char ext[] = "version https://git-lfs.github.com/spec/v1\n"
				  "ext-0-foo sha256:00\n"
				  "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
				  "size 0\n";
	static const char *const bad[] = {
		"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1\n",
		"version https://git-lfs.github.com/spec/v1\n"
		"oid sha256:4D7A214614AB2935C943F9E0FF69D22EADBB8F32B1258DAAA5E2CA24D17E2393\nsize 1\n",
		"version https://git-lfs.github.com/spec/v1\n"
		"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1x\n",
		"version https://git-lfs.github.com/spec/v1\n"
		"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 99999999999999999999\n",
		"version https://git-lfs.github.com/spec/v1\n"
		"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1",
		"version https://git-lfs.github.com/spec/v2\n"
		"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1\n",
		"version https://git-lfs.github.com/spec/v1\nsize 1\n"
		"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n",
		"hello\n",
		"",
	};
	struct lfs_pointer p;
	size_t i;

	ck_assert_int_eq(lfs_pointer_parse(good, strlen(good), &p), 0);
	ck_assert_str_eq(p.oid, "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393");
	ck_assert_uint_eq(p.size, 12345);
	ck_assert_int_eq(lfs_pointer_parse(ext, strlen(ext), &p), 0);
	ck_assert_uint_eq(p.size, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(lfs_pointer_parse(bad[i], strlen(bad[i]), &p) < 0, "accepted #%zu", i);
}
END_TEST

#define OID "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"

START_TEST(batch_reply_parsed)
{
	static const char good[] =
		"{\"transfer\":\"basic\",\"objects\":["
		"{\"oid\":\"" OID "\",\"size\":5,\"actions\":{\"download\":{\"href\":\"https://h/o\","
		"\"header\":{\"Authorization\":\"Basic x\",\"X-A\":\"b\"},\"expires_in\":3600}}},"
		"{\"oid\":\"" OID "\",\"size\":6,\"error\":{\"code\":404,\"message\":\"Object does not exist\"}}]}";
	struct lfs_batch b;
	struct kiln_err e = { 0 };

	ck_assert_msg(lfs_batch_parse(good, strlen(good), &b, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_str_eq(b.v[0].href, "https://h/o");
	ck_assert_uint_eq(b.v[0].n_headers, 2);
	ck_assert_str_eq(b.v[0].headers[0], "Authorization: Basic x");
	ck_assert_uint_eq(b.v[0].size, 5);
	ck_assert_ptr_null(b.v[1].href);
	ck_assert_int_eq(b.v[1].err_code, 404);
	ck_assert_str_eq(b.v[1].err, "Object does not exist");
	lfs_batch_free(&b);
}
END_TEST

START_TEST(batch_reply_refused)
{
	static const char *const bad[] = {
		"", "[]", "{\"objects\":{}}", "{\"transfer\":\"ssh\",\"objects\":[]}",
		"{\"objects\":[{\"oid\":\"abc\",\"size\":1,\"actions\":{\"download\":{\"href\":\"https://h/o\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID "\",\"size\":-1,\"actions\":{\"download\":{\"href\":\"https://h/o\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID "\",\"size\":1,\"actions\":{\"download\":{\"href\":\"file:///etc/passwd\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID "\",\"size\":1,\"actions\":{\"download\":{\"href\":\"https://h/o\","
		"\"header\":{\"A\":\"b\\r\\nX-Evil: 1\"}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID "\",\"size\":1,\"actions\":{\"download\":{\"href\":\"https://h/o\","
		"\"header\":{\"A B\":\"c\"}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID "\",\"size\":1,\"actions\":{\"upload\":{\"href\":\"https://h/o\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID "\",\"oid\":\"" OID "\",\"size\":1}]}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lfs_batch b;
		struct kiln_err e = { 0 };

		ck_assert_msg(lfs_batch_parse(bad[i], strlen(bad[i]), &b, &e) != KILN_OK, "accepted #%zu", i);
		ck_assert_msg(strstr(e.msg, "LFS batch reply"), "#%zu: %s", i, e.msg);
		ck_assert_ptr_null(b.v);
	}
	/* Over the ceiling, without reading it. */
	{
		struct lfs_batch b;
		struct kiln_err e = { 0 };

		ck_assert_int_eq(lfs_batch_parse("{}", LFS_MAX_REPLY_BYTES + 1, &b, &e), KILN_E_LIMIT);
	}
}
END_TEST

START_TEST(batch_url_gets_dot_git)
{
	struct ws_url u;
	char out[WS_URL_MAX + 64];

	ck_assert(ws_url_parse("https://gitlab-ci-token:x@gl.example/g/p", &u, NULL) == KILN_OK);
	ck_assert_str_eq(lfs_batch_url(&u, out, sizeof(out)), "https://gl.example/g/p.git/info/lfs/objects/batch");
	ck_assert(ws_url_parse("https://gl.example/g/p.git/", &u, NULL) == KILN_OK);
	ck_assert_str_eq(lfs_batch_url(&u, out, sizeof(out)), "https://gl.example/g/p.git/info/lfs/objects/batch");
	ck_assert(ws_url_parse("file:///srv/p.git", &u, NULL) == KILN_OK);
	ck_assert_ptr_null(lfs_batch_url(&u, out, sizeof(out)));
}
END_TEST

/* ---- fetching ----------------------------------------------------------- */

/* A git clone (no git-lfs: the pointers stay) of sha into a new folder. */
static void clone_at(const char *tag, const char *sha, char *dir, size_t size)
{
	snprintf(dir, size, "%s/clone-%s", g_dir, tag);
	ck_assert_int_eq(test_sh("git clone -q '%s/group/main.git' '%s' && git -C '%s' checkout -q %s", g_srv, dir,
				 dir, sha), 0);
}

static enum kiln_rc fetch(const char *dir, const char *url, struct lfs_stats *st, struct kiln_err *e)
{
	struct ws_url *u = calloc(1, sizeof(*u));
	struct lfs_opts o = { .workdir = dir, .timeout_s = 30 };
	enum kiln_rc rc;

	ck_assert(ws_url_parse(url, u, e) == KILN_OK);
	o.url = u;
	rc = lfs_fetch(&o, st, e);
	ws_url_wipe(u);
	free(u);
	return rc;
}

START_TEST(pointers_replaced)
{
	char dir[PATH_MAX], url[600], out[256];
	struct lfs_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;

	clone_at("good", g_sha, dir, sizeof(dir));
	/* The repository URL without .git, as a job may give it. */
	snprintf(url, sizeof(url), "%.*s", (int)(strlen(g_url) - 4), g_url);
	ck_assert_msg(fetch(dir, url, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.pointers, 2);
	ck_assert_uint_eq(st.objects, 1);
	ck_assert_uint_eq(st.bytes, 20000);
	ck_assert_int_eq(test_sh("cmp -s '%s/big.bin' '%s/big' && cmp -s '%s/copy.bin' '%s/big'", dir, g_dir, dir,
				 g_dir), 0);
	ck_assert_int_eq(stat(strcat(strcpy(out, dir), "/copy.bin"), &sb), 0);
	ck_assert(sb.st_mode & S_IXUSR);
	ck_assert_int_eq(test_sh("grep -qx 'not a pointer' '%s/fake.bin'", dir), 0);
	ck_assert_int_eq(test_sh("test -f '%s/.git/lfs/objects/%.2s/%.2s/%s'", dir, g_big_oid, g_big_oid + 2,
				 g_big_oid), 0);
	/* Once more: the object is in .git/lfs, nothing is asked for. */
	ck_assert_int_eq(test_sh("git -C '%s' checkout -q -f -- big.bin", dir), 0);
	ck_assert_msg(fetch(dir, url, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.pointers, 1);
	ck_assert_uint_eq(st.objects, 0);
}
END_TEST

START_TEST(corrupt_object_refused)
{
	char dir[PATH_MAX];
	struct lfs_stats st;
	struct kiln_err e = { 0 };

	clone_at("corrupt", g_sha, dir, sizeof(dir));
	ck_assert_int_eq(test_sh("echo %s > '%s/corrupt'", g_big_oid, g_srv), 0);
	ck_assert_int_eq(fetch(dir, g_url, &st, &e), KILN_E_INVALID);
	ck_assert_int_eq(test_sh("rm '%s/corrupt'", g_srv), 0);
	ck_assert_msg(strstr(e.msg, "is not the object") && strstr(e.msg, ".bin"), "%s", e.msg);
	ck_assert_int_eq(test_sh("head -1 '%s/big.bin' | grep -q git-lfs", dir), 0);
	ck_assert_int_eq(test_sh("test -z \"$(find '%s/.git/lfs' -type f)\"", dir), 0);
}
END_TEST

START_TEST(missing_object_named)
{
	char dir[PATH_MAX];
	struct lfs_stats st;
	struct kiln_err e = { 0 };

	clone_at("broken", g_broken, dir, sizeof(dir));
	ck_assert_int_eq(fetch(dir, g_url, &st, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, "gone.bin") && strstr(e.msg, "404"), "%s", e.msg);
}
END_TEST

START_TEST(wrong_token_refused_quietly)
{
	char dir[PATH_MAX], url[600];
	struct lfs_stats st;
	struct kiln_err e = { 0 };
	char *p;

	clone_at("token", g_sha, dir, sizeof(dir));
	snprintf(url, sizeof(url), "%s", g_url);
	p = strstr(url, TOKEN);
	memcpy(p, "glcbt-wrongXXXXXX", strlen(TOKEN));
	ck_assert_int_eq(fetch(dir, url, &st, &e), KILN_E_IO);
	ck_assert_msg(strstr(e.msg, "401") && !strstr(e.msg, "wrongXX"), "%s", e.msg);
}
END_TEST

/* ws_prepare over http: the submodule's ../sub.git with the job token,
 * and the LFS objects, unless GIT_LFS_SKIP_SMUDGE. */
static void prepare(const char *tag, bool skip_smudge, char *dir, size_t size)
{
	char state[PATH_MAX], image[PATH_MAX + 16];
	struct ws_gitopts g;
	struct ws_spec s;
	struct ws_result r;
	struct kiln_err e = { 0 };

	snprintf(state, sizeof(state), "%s/state-%s-XXXXXX", g_dir, tag);
	ck_assert_ptr_nonnull(mkdtemp(state));
	snprintf(image, sizeof(image), "%s/ws.img", state);
	ws_gitopts_init(&g);
	g.submodules = WSGIT_SUB_RECURSIVE;
	g.lfs = !skip_smudge;
	memset(&s, 0, sizeof(s));
	s.state_dir = state;
	s.url = g_url;
	s.sha = g_sha;
	s.project_path = "group/main";
	s.image_path = image;
	s.fetch_timeout_s = 60;
	s.git = &g;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(r.submodules, 1);
	ck_assert_uint_eq(r.lfs_files, skip_smudge ? 0 : 2);
	ck_assert_msg(!strstr(e.msg, TOKEN), "%s", e.msg);
	ck_assert_int_eq(test_sh("mkdir '%s/x' && debugfs -R 'rdump / %s/x' '%s' >/dev/null 2>&1", state, state,
				 image), 0);
	snprintf(dir, size, "%s/x/group/main", state);
	ck_assert_int_eq(test_sh("grep -qx sub '%s/libs/sub/sub.txt'", dir), 0);
	ck_assert_int_eq(test_sh("! grep -rq '" TOKEN "' '%s/.git/config' '%s/.git/modules'", dir, dir), 0);
}

START_TEST(prepare_fetches_lfs_and_relative_submodule)
{
	char dir[PATH_MAX];

	prepare("lfs", false, dir, sizeof(dir));
	ck_assert_int_eq(test_sh("cmp -s '%s/big.bin' '%s/big'", dir, g_dir), 0);
}
END_TEST

START_TEST(skip_smudge_keeps_pointers)
{
	char dir[PATH_MAX];

	prepare("skip", true, dir, sizeof(dir));
	ck_assert_int_eq(test_sh("head -1 '%s/big.bin' | grep -q git-lfs", dir), 0);
}
END_TEST

Suite *lfs_suite(void)
{
	Suite *s = suite_create("lfs");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, fixture_up, fixture_down);
	tcase_add_test(tc, pointer_parsed);
	tcase_add_test(tc, batch_reply_parsed);
	tcase_add_test(tc, batch_reply_refused);
	tcase_add_test(tc, batch_url_gets_dot_git);
	tcase_add_test(tc, pointers_replaced);
	tcase_add_test(tc, corrupt_object_refused);
	tcase_add_test(tc, missing_object_named);
	tcase_add_test(tc, wrong_token_refused_quietly);
	tcase_add_test(tc, prepare_fetches_lfs_and_relative_submodule);
	tcase_add_test(tc, skip_smudge_keeps_pointers);
	suite_add_tcase(s, tc);
	return s;
}
