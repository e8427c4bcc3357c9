/* Mirrors (workspace/mirror): one job at a time per mirror, fetches over
 * smart http with credentials that reach neither disk nor messages, the
 * fetch time limit, the git protocol, and packs that stay bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/paths.h"
#include "lib/spawn.h"
#include "workspace/mirror.h"
#include "workspace/url.h"
#include "workspace/workspace.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define SECRET "s3ntinelT0ken"

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

	ws_make_state(state, sizeof(state), "lock");
	snprintf(mirrors, sizeof(mirrors), "%s/mirrors", state);
	ck_assert_int_eq(kiln_mkdir_p(mirrors), 0);
	mirror_lock_path(lock, sizeof(lock), state, wsfx_url);
	/* Another job holds the mirror. */
	ck_assert_int_eq(mirror_lock(lock, 5, &fd, &waited, &e), KILN_OK);
	memset(&t, 0, sizeof(t));
	ws_spec_init(&t.spec, state, wsfx_url, wsfx_sha[5], image, sizeof(image));
	ck_assert_int_eq(pthread_create(&th, NULL, prep_main, &t), 0);
	usleep(1200 * 1000);
	ck_assert_int_eq(t.done, 0);
	mirror_unlock(fd);
	pthread_join(th, NULL);
	ck_assert_msg(t.rc == KILN_OK, "%s", t.err.msg);
	/* It waited (done stayed 0 above) and says so; how long depends on
	 * when the thread got the CPU, so no lower bound. */
	ck_assert_int_gt(t.res.lock_wait_ms, 0);

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

	ws_make_state(state, sizeof(state), "two");
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ws_spec_init(&a.spec, state, wsfx_url, wsfx_sha[5], img1, sizeof(img1));
	ws_spec_init(&b.spec, state, wsfx_url, wsfx_sha[3], img2, sizeof(img2));
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
	ws_make_state(state, sizeof(state), "bysha");
	snprintf(repo, sizeof(repo), "%s/src", state);
	ck_assert_int_eq(test_sh("cp -a '%s/work' '%s'", wsfx_dir, repo), 0);
	ck_assert_int_eq(test_sh_out(sha, sizeof(sha), "cd '%s' && git commit-tree -p HEAD -m orphan 'HEAD^{tree}'", repo), 0);
	ck_assert_uint_eq(strlen(sha), 40);
	srv = http_start(state, "u:p", &port);
	snprintf(url, sizeof(url), "http://u:p@127.0.0.1:%d/src", port);
	ws_spec_init(&s, state, url, sha, image, sizeof(image));
	s.refspecs = specs;
	s.n_refspecs = 1;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.fetched_by_sha);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, sha);
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
	pid_t srv = http_start(wsfx_dir, "gitlab-ci-token:" SECRET, &port);

	ws_make_state(state, sizeof(state), "cred");
	snprintf(url, sizeof(url), "http://gitlab-ci-token:%s@127.0.0.1:%d/work", SECRET, port);
	ws_spec_init(&s, state, url, wsfx_sha[5], image, sizeof(image));
	s.submodules = true; /* ../sub.git: same host, so it inherits the token */
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(r.submodules, 1);
	snprintf(dir, sizeof(dir), "%s/x", state);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s/group/project' remote get-url origin", dir), 0);
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
	ws_make_state(state, sizeof(state), "stall");
	snprintf(url, sizeof(url), "git://127.0.0.1:%d/work", port);
	ws_spec_init(&s, state, url, wsfx_sha[5], image, sizeof(image));
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

/* git daemon serving wsfx_dir on a free port of 127.0.0.1; 0 when git daemon
 * cannot run here. */
static pid_t daemon_start(int *port)
{
	char exec_path[PATH_MAX], daemon[PATH_MAX + 16], arg_port[32], arg_base[PATH_MAX + 16];
	int ls = listen_loopback(port), i;
	pid_t pid;

	close(ls); /* the port is free again; git daemon binds it */
	if (test_sh_out(exec_path, sizeof(exec_path), "git --exec-path") != 0)
		return 0;
	snprintf(daemon, sizeof(daemon), "%s/git-daemon", exec_path);
	if (access(daemon, X_OK) != 0)
		return 0;
	snprintf(arg_port, sizeof(arg_port), "--port=%d", *port);
	snprintf(arg_base, sizeof(arg_base), "--base-path=%s", wsfx_dir);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl(daemon, daemon, "--listen=127.0.0.1", arg_port, "--export-all", "--reuseaddr",
		      arg_base, wsfx_dir, (char *)NULL);
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
	ws_make_state(state, sizeof(state), "gitproto");
	snprintf(url, sizeof(url), "git://127.0.0.1:%d/work", port);
	ws_spec_init(&s, state, url, wsfx_sha[4], image, sizeof(image));
	s.fetch_timeout_s = 60;
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(r.mirror_cloned);
	snprintf(dir, sizeof(dir), "%s/x1", state);
	ws_check_checkout(image, dir, wsfx_sha[4]);
	s.sha = wsfx_sha[5];
	ck_assert_msg(ws_prepare(&s, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!r.mirror_cloned);
	snprintf(dir, sizeof(dir), "%s/x2", state);
	ws_check_checkout(image, dir, wsfx_sha[5]);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
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

	ws_make_state(state, sizeof(state), "packs");
	snprintf(repo, sizeof(repo), "%s/src", state);
	ck_assert_int_eq(test_sh("cp -a '%s/work' '%s'", wsfx_dir, repo), 0);
	snprintf(url, sizeof(url), "file://%s", repo);
	/* A build folder left by a job that died is cleaned up. */
	snprintf(stale, sizeof(stale), "%s/tmp/ws-stale", state);
	ck_assert_int_eq(kiln_mkdir_p(stale), 0);
	/* So is a mirror no job used for 40 days; one used yesterday stays. */
	ck_assert_int_eq(test_sh("cd '%s' && mkdir -p mirrors/old.git/objects mirrors/new.git/objects && "
			    "touch -d '40 days ago' mirrors/old.git.lock && touch -d '1 day ago' mirrors/new.git.lock && "
			    "mkdir -p trees/old/root trees/new/root",
			    state), 0);
	ws_spec_init(&s, state, url, wsfx_sha[5], image, sizeof(image));
	s.mirror_max_packs = 2;
	for (i = 0; i < 4; i++) {
		if (i > 0) {
			ck_assert_int_eq(test_sh("cd '%s' && echo %d >> a.txt && git commit -q -am more", repo, i), 0);
			test_sh_out(sha, sizeof(sha), "git -C '%s' rev-parse HEAD", repo);
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
	ck_assert_int_le(ws_count_files(mirror, "objects/pack/*.pack"), 2);
	ck_assert_int_eq(test_sh("git --git-dir='%s' fsck --no-dangling --no-progress 2>/dev/null", mirror), 0);
}
END_TEST

Suite *mirror_suite(void)
{
	Suite *s = suite_create("mirror");
	TCase *tc;

	if (!ws_fixture_usable("mirror"))
		return s;
	tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, ws_fixture_up, ws_fixture_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, sha_only_reachable_by_sha_is_fetched);
	tcase_add_test(tc, second_job_waits_for_the_mirror);
	tcase_add_test(tc, two_jobs_at_once_serialize);
	tcase_add_test(tc, credentials_never_reach_disk);
	tcase_add_test(tc, stalled_server_hits_the_fetch_limit);
	tcase_add_test(tc, git_protocol_cold_then_warm);
	tcase_add_test(tc, mirror_packs_stay_bounded);
	suite_add_tcase(s, tc);
	return s;
}
