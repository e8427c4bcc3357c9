#include "tests/unit/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <check.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gitlab/trace.h"
#include "lib/paths.h"
#include "lib/spawn.h"
#include "workspace/workspace.h"

int test_sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

struct trace *test_offline_trace(size_t limit)
{
	struct trace_opts o = { .limit = limit, .job_id = 1 };
	struct kiln_err e = { 0 };
	struct trace *t;

	ck_assert_msg(trace_start(&t, &o, &e) == KILN_OK, "%s", e.msg);
	return t;
}

char *test_tmpdir(void)
{
	static char d[64];

	snprintf(d, sizeof(d), "/tmp/kiln-test-gl.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

void test_write_file(const char *path, const void *data, size_t n, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, n, f), n);
	fclose(f);
	chmod(path, mode);
}

char *test_read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	char *buf = malloc(1 << 20);

	ck_assert_ptr_nonnull(f);
	*n = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

/* ---- the workspace fixture ---------------------------------------------- */

char wsfx_dir[PATH_MAX];   /* the fixture root */
char wsfx_url[PATH_MAX];   /* file:// URL of the test repository */
char wsfx_sha[8][41];      /* main's commits, oldest first */
int wsfx_nsha;
char wsfx_feature[41];
char wsfx_sub_sha[41];     /* the submodule commit recorded in main */

int test_sh_out(char *out, size_t size, const char *fmt, ...)
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

void ws_make_state(char *buf, size_t size, const char *tag)
{
	snprintf(buf, size, "%s/state-%s-XXXXXX", wsfx_dir, tag);
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

void ws_spec_init(struct ws_spec *s, const char *state, const char *url, const char *sha,
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

void ws_extract(const char *image, const char *dir)
{
	ck_assert_int_eq(test_sh("rm -rf '%s' && mkdir -p '%s' && debugfs -R 'rdump / %s' '%s' >/dev/null 2>&1",
			    dir, dir, dir, image), 0);
}

int ws_count_files(const char *dir, const char *glob)
{
	char out[64];

	test_sh_out(out, sizeof(out), "ls %s/%s 2>/dev/null | wc -l", dir, glob);
	return atoi(out);
}

void ws_fixture_up(void)
{
	char cmd[8192];
	int i;

	snprintf(wsfx_dir, sizeof(wsfx_dir), "/tmp/kiln-ws-test-XXXXXX");
	if (!mkdtemp(wsfx_dir))
		abort();
	snprintf(cmd, sizeof(cmd), "%s:/usr/sbin:/sbin", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", cmd, 1); /* mke2fs, debugfs, dumpe2fs */
	setenv("HOME", wsfx_dir, 1);
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
		 WS_GIT " submodule -q add ../sub.git libs/sub; git commit -q -m 'add submodule'\n"
		 "for i in 4 5 6; do echo $i >> a.txt; git commit -q -am \"commit $i\"; done\n",
		 wsfx_dir);
	if (test_sh("%s", cmd) != 0)
		abort();
	wsfx_nsha = 6;
	for (i = 0; i < wsfx_nsha; i++)
		test_sh_out(wsfx_sha[i], sizeof(wsfx_sha[i]), "git -C '%s/work' rev-parse main~%d", wsfx_dir, wsfx_nsha - 1 - i);
	test_sh_out(wsfx_feature, sizeof(wsfx_feature), "git -C '%s/work' rev-parse feature", wsfx_dir);
	test_sh_out(wsfx_sub_sha, sizeof(wsfx_sub_sha), "git -C '%s/work' rev-parse main:libs/sub", wsfx_dir);
	snprintf(wsfx_url, sizeof(wsfx_url), "file://%s/work", wsfx_dir);
}

void ws_fixture_down(void)
{
	if (wsfx_dir[0] && getenv("KILN_TEST_KEEP") == NULL)
		kiln_rm_rf(wsfx_dir);
}

void ws_check_checkout(const char *image, const char *dir, const char *sha)
{
	char out[256], path[PATH_MAX];

	ws_extract(image, dir);
	snprintf(path, sizeof(path), "%s/group/project", dir);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s' rev-parse HEAD", path), 0);
	ck_assert_str_eq(out, sha);
	ck_assert_int_ne(test_sh(WS_GIT " -C '%s' symbolic-ref -q HEAD >/dev/null", path), 0); /* detached */
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s' status --porcelain --ignore-submodules=all", path), 0);
	ck_assert_msg(out[0] == '\0', "status not clean: %s", out);
	ck_assert_int_eq(test_sh_out(out, sizeof(out), WS_GIT " -C '%s' remote get-url origin", path), 0);
	ck_assert_msg(strstr(out, "@") == NULL, "origin has credentials: %s", out);
	snprintf(path, sizeof(path), "%s/group/project/.git/objects/info/alternates", dir);
	ck_assert_int_ne(access(path, F_OK), 0);
}

bool ws_fixture_usable(const char *suite)
{
	char path[PATH_MAX];

	if (!kiln_which(NULL, "git", path, sizeof(path)) ||
	    (access("/usr/sbin/debugfs", X_OK) != 0 && access("/sbin/debugfs", X_OK) != 0)) {
		fprintf(stderr, "%s: tests skipped: they need git and e2fsprogs (debugfs)\n", suite);
		return false;
	}
	return true;
}

/* ---- a scripted HTTP server ---------------------------------------------- */

static bool srv_read(int c, char *buf, size_t size, size_t *got, char **body, size_t *blen)
{
	char *end = NULL;
	size_t cl = 0;

	*got = 0;
	while (!(end = *got ? memmem(buf, *got, "\r\n\r\n", 4) : NULL)) {
		ssize_t n = read(c, buf + *got, size - 1 - *got);
		if (n <= 0)
			return false;
		*got += (size_t)n;
	}
	buf[*got] = '\0';
	{
		char *h = strcasestr(buf, "\r\nContent-Length:");
		if (h && h < end)
			cl = strtoul(h + 17, NULL, 10);
	}
	*blen = cl;
	*body = malloc(cl + 1);
	{
		size_t have = *got - (size_t)(end + 4 - buf);
		memcpy(*body, end + 4, have < cl ? have : cl);
		while (have < cl) {
			ssize_t n = read(c, *body + have, cl - have);
			if (n <= 0)
				return false;
			have += (size_t)n;
		}
	}
	*end = '\0';
	return true;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	static char buf[1 << 16];

	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		char *body = NULL, reply[512], extra[256] = "", *h;
		size_t got, blen, i;
		int status;

		if (c < 0)
			return NULL;
		if (!srv_read(c, buf, sizeof(buf), &got, &body, &blen) || s->n_req >= SRV_MAX) {
			free(body);
			close(c);
			continue;
		}
		i = s->n_req++;
		sscanf(buf, "%7s %127s", s->method[i], s->path[i]);
		s->range[i][0] = '\0';
		s->job_token[i] = strcasestr(buf, "\r\nJOB-TOKEN:") != NULL;
		if ((h = strcasestr(buf, "\r\nContent-Range: ")))
			sscanf(h + 17, "%63[^\r]", s->range[i]);
		s->body[i] = body;
		s->body_len[i] = blen;
		if (s->next < s->n_script) {
			const char *sc = s->script[s->next++];
			status = atoi(sc);
			if (strchr(sc, ' '))
				snprintf(extra, sizeof(extra), "%s\r\n", strchr(sc, ' ') + 1);
			if (!strcmp(s->method[i], "PATCH") && status == 202) { /* stored as it came */
				s->stored = realloc(s->stored, s->stored_len + blen + 1);
				memcpy(s->stored + s->stored_len, body, blen);
				s->stored_len += blen;
				snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "Range: 0-%zu\r\n", s->stored_len);
			}
		} else if (!strcmp(s->method[i], "PATCH")) {
			size_t start = strtoul(s->range[i], NULL, 10);
			if (start != s->stored_len) {
				status = 416;
			} else {
				status = 202;
				s->stored = realloc(s->stored, s->stored_len + blen + 1);
				memcpy(s->stored + s->stored_len, body, blen);
				s->stored_len += blen;
			}
			snprintf(extra, sizeof(extra), "Range: 0-%zu\r\nJob-Status: running\r\n", s->stored_len);
		} else {
			status = 200;
		}
		snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n%s\r\n{}", status,
			 extra);
		if (write(c, reply, strlen(reply)) < 0)
			perror("write");
		close(c);
	}
}

void srv_start(struct srv *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(s->fd, 0);
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(s->fd, 16), 0);
	getsockname(s->fd, (struct sockaddr *)&a, &al);
	s->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

void srv_stop(struct srv *s)
{
	size_t i;

	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	pthread_join(s->th, NULL);
	for (i = 0; i < s->n_req; i++)
		free(s->body[i]);
	free(s->stored);
}

void test_vm_lock(void)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX];
	int fd;

	if (getenv("KILN_VM_LOCK_HELD") || getenv("KILN_SANDBOX_NO_LOCK"))
		return;
	snprintf(path, sizeof(path), "%s/kiln-kvm-sandbox.lock", tmp && *tmp ? tmp : "/tmp");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	/* Left open on purpose: the lock goes with the test's process. */
	ck_assert_msg(flock(fd, LOCK_EX) == 0, "%s: %s", path, strerror(errno));
}
