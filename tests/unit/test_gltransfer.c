/* Transfers and the trace as gitlab-runner does them (issue #15, points 9
 * to 14): time limits, uploads streamed from disk with progress, the final
 * flush before the final PUT, a PATCH answered 404, invalid UTF-8 in the
 * log, masking defaults and URL parameters, and a payload too large to
 * take. Against a small scripted HTTP server of its own. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "gitlab/client.h"
#include "gitlab/mask.h"
#include "gitlab/trace.h"
#include "job/job.h"
#include "job/payload.h"
#include "tests/unit/suites.h"

/* --- a scripted HTTP server -------------------------------------------------- */

#define XS_MAX 32
#define XS_KEEP 8192 /* bytes of each request body kept */

struct xsrv {
	int fd, port;
	pthread_t th;
	volatile int stopping;
	/* Replies in order: "STATUS[ header lines]", "HANG" (never answer),
	 * "BIG" (201 with a 17 MiB job payload); past the script, PATCH gets
	 * trace semantics and anything else 200. */
	const char *script[XS_MAX];
	size_t n_script, next;
	char method[XS_MAX][8], path[XS_MAX][128];
	char body[XS_MAX][XS_KEEP + 1];
	unsigned long long body_len[XS_MAX];
	size_t n_req;
	char stored[XS_KEEP + 1]; /* the trace as GitLab keeps it (its start) */
	size_t stored_len;
};

static char xs_buf[1 << 16];

static void xs_send(int c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Headers into xs_buf; the body read in pieces, its start kept. */
static bool xs_read(struct xsrv *s, int c, size_t i)
{
	size_t got = 0, have, keep = 0;
	unsigned long long cl = 0;
	char *end = NULL, *h;

	while (!(end = got ? memmem(xs_buf, got, "\r\n\r\n", 4) : NULL)) {
		ssize_t n = read(c, xs_buf + got, sizeof(xs_buf) - 1 - got);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	xs_buf[got] = '\0';
	if ((h = strcasestr(xs_buf, "\r\nContent-Length:")) && h < end)
		cl = strtoull(h + 17, NULL, 10);
	have = got - (size_t)(end + 4 - xs_buf);
	keep = have < XS_KEEP ? have : XS_KEEP;
	if (keep > cl)
		keep = (size_t)cl;
	memcpy(s->body[i], end + 4, keep);
	s->body_len[i] = have;
	while (s->body_len[i] < cl) {
		static char chunk[1 << 16];
		ssize_t n = read(c, chunk, sizeof(chunk));
		if (n <= 0)
			return false;
		if (keep < XS_KEEP) {
			size_t k = (size_t)n < XS_KEEP - keep ? (size_t)n : XS_KEEP - keep;
			memcpy(s->body[i] + keep, chunk, k);
			keep += k;
		}
		s->body_len[i] += (unsigned long long)n;
	}
	s->body[i][keep] = '\0';
	*end = '\0';
	return true;
}

static void xs_big_payload(int c)
{
	static const char head[] = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close\r\n"
				   "Content-Length: 17825792\r\n\r\n{\"id\":77,\"token\":\"glcbt-77abc\",\"variables\":[";
	static char pad[1 << 16];
	size_t i;

	memset(pad, ' ', sizeof(pad));
	xs_send(c, head, sizeof(head) - 1);
	for (i = 0; i < 17825792 / sizeof(pad); i++)
		xs_send(c, pad, sizeof(pad));
}

static void *xs_main(void *arg)
{
	struct xsrv *s = arg;

	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		char reply[512], extra[256] = "";
		const char *sc = NULL;
		int status = 200;
		size_t i;

		if (c < 0)
			return NULL;
		if (s->n_req >= XS_MAX || !xs_read(s, c, s->n_req)) {
			close(c);
			continue;
		}
		i = s->n_req;
		sscanf(xs_buf, "%7s %127s", s->method[i], s->path[i]);
		s->n_req++;
		if (s->next < s->n_script)
			sc = s->script[s->next++];
		if (sc && !strcmp(sc, "HANG")) {
			while (!s->stopping)
				poll(NULL, 0, 20);
			close(c);
			continue;
		}
		if (sc && !strcmp(sc, "BIG")) {
			xs_big_payload(c);
			close(c);
			continue;
		}
		if (sc) {
			status = atoi(sc);
			if (strchr(sc, ' '))
				snprintf(extra, sizeof(extra), "%s\r\n", strchr(sc, ' ') + 1);
		} else if (!strcmp(s->method[i], "PATCH")) {
			const char *r = strcasestr(xs_buf, "\r\nContent-Range: ");
			size_t start = r ? strtoul(r + 17, NULL, 10) : 0;

			if (start != s->stored_len) {
				status = 416;
			} else {
				size_t n = (size_t)s->body_len[i];

				status = 202;
				if (s->stored_len + n <= XS_KEEP)
					memcpy(s->stored + s->stored_len, s->body[i], n);
				s->stored_len += n;
			}
			snprintf(extra, sizeof(extra), "Range: 0-%zu\r\nJob-Status: running\r\n", s->stored_len);
		}
		snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n%s\r\n{}", status,
			 extra);
		xs_send(c, reply, strlen(reply));
		close(c);
	}
}

static void xs_start(struct xsrv *s)
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
	ck_assert_int_eq(pthread_create(&s->th, NULL, xs_main, s), 0);
}

static void xs_stop(struct xsrv *s)
{
	s->stopping = 1;
	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	pthread_join(s->th, NULL);
}

static void xs_url(const struct xsrv *s, char *url, size_t size)
{
	snprintf(url, size, "http://127.0.0.1:%d/", s->port);
}

static void xs_client(struct gl_client *c, const struct xsrv *s)
{
	char url[64];
	struct kiln_err e = { 0 };

	gl_global_init();
	xs_url(s, url, sizeof(url));
	ck_assert_msg(gl_client_init(c, url, NULL, &e) == KILN_OK, "%s", e.msg);
	c->backoff_min_ms = 2;
	c->backoff_max_ms = 20;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- 9: time limits --------------------------------------------------------- */

/* gitlab-runner's limits: an hour for a transfer, ten minutes from the
 * request to the reply's headers; a server that never answers is given up
 * on when the second runs out. */
START_TEST(gltransfer_header_timeout)
{
	static struct xsrv s;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	double t0;

	memset(&s, 0, sizeof(s));
	s.script[s.n_script++] = "HANG";
	xs_start(&s);
	xs_client(&c, &s);
	ck_assert_int_eq(c.timeout_s, 3600);
	ck_assert_int_eq(c.header_timeout_s, 600);
	c.header_timeout_s = 1;
	c.max_attempts = 1;
	t0 = now_s();
	ck_assert_int_eq(gl_call(&c, "GET", "/slow", NULL, "jt", NULL, NULL, 0, NULL, GL_MAX_REPLY, &r, &e), KILN_E_IO);
	ck_assert_msg(strstr(e.msg, "no reply headers 1 s after"), "%s", e.msg);
	ck_assert_double_lt(now_s() - t0, 5.0);
	gl_reply_free(&r);
	gl_client_free(&c);
	xs_stop(&s);
}
END_TEST

static uint64_t progress_calls, progress_done, progress_total;

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	progress_calls++;
	progress_done = done;
	progress_total = total;
}

/* An artifact goes up from disk in pieces: a 384 MiB file is sent by a
 * process whose address space has 160 MiB to spare, with progress reports. */
START_TEST(gltransfer_upload_streams)
{
	static struct xsrv s;
	char dir[] = "/tmp/kiln-gltransfer-XXXXXX", path[128];
	const off_t size = (off_t)384 << 20;
	int fd, status;
	pid_t pid;

	memset(&s, 0, sizeof(s));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/artifacts.zip", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0); /* sparse: no disk used */
	close(fd);
	s.script[s.n_script++] = "201";
	xs_start(&s);
	gl_global_init();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct gl_client c;
		struct kiln_err e = { 0 };
		struct rlimit rl;
		unsigned long long vm = 0;
		FILE *f = fopen("/proc/self/statm", "r");

		if (!f || fscanf(f, "%llu", &vm) != 1)
			_exit(10);
		fclose(f);
		xs_client(&c, &s);
		c.progress = on_progress;
		c.progress_s = 0;
		rl.rlim_cur = rl.rlim_max = vm * (unsigned long long)sysconf(_SC_PAGESIZE) + (160ull << 20);
		if (setrlimit(RLIMIT_AS, &rl))
			_exit(11);
		if (gl_upload_artifacts(&c, 9, "jt", path, "artifacts.zip", "archive", "zip", NULL, &e)) {
			fprintf(stderr, "upload: %s\n", e.msg);
			_exit(12);
		}
		if (progress_calls < 2 || progress_total < (uint64_t)size || progress_done != progress_total)
			_exit(13);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	xs_stop(&s);
	unlink(path);
	rmdir(dir);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the uploader ended with status %d", status);
	ck_assert_uint_eq(s.n_req, 1);
	ck_assert_uint_ge(s.body_len[0], (unsigned long long)size);
}
END_TEST

/* --- 10: the final flush ---------------------------------------------------- */

/* The last PATCH fails: no final PUT until the log's tail is in. */
START_TEST(gltransfer_final_flush_before_put)
{
	static struct xsrv s;
	struct trace_opts o = { .job_id = 5, .token = "jt", .executor = "kiln" };
	struct kiln_err e = { 0 };
	struct trace *t;
	char url[64];
	size_t i;

	memset(&s, 0, sizeof(s));
	for (i = 0; i < GL_MAX_ATTEMPTS; i++)
		s.script[s.n_script++] = "502";
	xs_start(&s);
	gl_global_init();
	xs_url(&s, url, sizeof(url));
	o.url = url;
	o.first_interval_s = 600;
	ck_assert_int_eq(trace_start(&t, &o, &e), KILN_OK);
	trace_write(t, "the tail of the log\n", 20);
	ck_assert_msg(trace_finish(t, "success", NULL, 0, &e) == KILN_OK, "%s", e.msg);
	trace_free(t);
	xs_stop(&s);
	ck_assert_uint_eq(s.n_req, GL_MAX_ATTEMPTS + 2);
	for (i = 0; i <= GL_MAX_ATTEMPTS; i++)
		ck_assert_str_eq(s.method[i], "PATCH");
	ck_assert_str_eq(s.method[i], "PUT");
	ck_assert_uint_eq(s.stored_len, 20);
	ck_assert_str_eq(s.stored, "the tail of the log\n");
	ck_assert_ptr_nonnull(strstr(s.body[i], "\"bytesize\":20"));
	ck_assert_int_eq(GL_FINAL_RETRIES, 10);
	ck_assert_int_eq(GL_FINAL_BACKOFF_MAX_S, 3600);
}
END_TEST

/* --- 11: a PATCH answered 404 ----------------------------------------------- */

START_TEST(gltransfer_patch_404_goes_on)
{
	static struct xsrv s;
	struct trace_opts o = { .job_id = 6, .token = "jt", .executor = "kiln", .first_interval_s = 1 };
	volatile sig_atomic_t cancel = JOB_RUN;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	struct trace *t;
	size_t off = 0;
	char url[64];
	int i;

	/* The client: 404 is a failure to retry, 403 the abort. */
	memset(&s, 0, sizeof(s));
	s.script[s.n_script++] = "404";
	s.script[s.n_script++] = "403";
	xs_start(&s);
	xs_client(&c, &s);
	ck_assert_int_eq(gl_patch_trace(&c, 6, "jt", "abc", 3, &off, &r, &e), GL_TRACE_FAILED);
	ck_assert_uint_eq(off, 0);
	ck_assert_int_eq(gl_patch_trace(&c, 6, "jt", "abc", 3, &off, &r, &e), GL_TRACE_ABORT);
	gl_reply_free(&r);
	gl_client_free(&c);
	xs_stop(&s);

	/* The trace: a 404 from a proxy leaves the job running, and the log
	 * goes on the next interval. */
	memset(&s, 0, sizeof(s));
	s.script[s.n_script++] = "404";
	xs_start(&s);
	xs_url(&s, url, sizeof(url));
	o.url = url;
	o.cancel = &cancel;
	ck_assert_int_eq(trace_start(&t, &o, &e), KILN_OK);
	trace_write(t, "line\n", 5);
	for (i = 0; i < 60 && s.stored_len < 5; i++)
		poll(NULL, 0, 100);
	ck_assert(!trace_aborted(t));
	ck_assert_int_eq(cancel, JOB_RUN);
	ck_assert_uint_eq(s.stored_len, 5);
	ck_assert_int_eq(trace_finish(t, "success", NULL, 0, &e), KILN_OK);
	trace_free(t);
	xs_stop(&s);
	ck_assert_str_eq(s.method[0], "PATCH");
}
END_TEST

/* --- 12: invalid UTF-8 ---------------------------------------------------------- */

START_TEST(gltransfer_invalid_utf8)
{
	static const char want[] = "a\xEF\xBF\xBD"
				   "b \xE2\x82\xAC \xEF\xBF\xBD\xEF\xBF\xBD( \xEF\xBF\xBD\xEF\xBF\xBD \xF0\x9F\x98\x80 "
				   "\xEF\xBF\xBD";
	struct trace_opts o = { .job_id = 1 };
	struct kiln_err e = { 0 };
	struct trace *t;
	uint32_t crc;
	size_t len;
	char *copy;

	ck_assert_int_eq(trace_start(&t, &o, &e), KILN_OK);
	trace_write(t, "a\xFF", 2);                  /* a byte no character starts with */
	trace_write(t, "b \xE2\x82", 4);             /* a euro sign cut by a write... */
	trace_write(t, "\xAC ", 2);                  /* ...joined */
	trace_write(t, "\xE2\x82(", 3);              /* a cut-short character: one U+FFFD per byte */
	trace_write(t, " \xC0\xAF ", 4);             /* an overlong form */
	trace_write(t, "\xF0", 1);                   /* four bytes, one at a time */
	trace_write(t, "\x9F", 1);
	trace_write(t, "\x98", 1);
	trace_write(t, "\x80 \xE2", 3);              /* a start left at the end */
	ck_assert_int_eq(trace_finish(t, "success", NULL, 0, &e), KILN_OK);
	copy = trace_copy(t, &len);
	trace_stat(t, NULL, &crc, NULL);
	ck_assert_uint_eq(len, sizeof(want) - 1);
	ck_assert_int_eq(memcmp(copy, want, len), 0);
	ck_assert_uint_eq(crc, (uint32_t)crc32(0, (const Bytef *)copy, (uInt)len));
	free(copy);
	trace_free(t);
}
END_TEST

/* --- 13: masking -------------------------------------------------------------- */

struct msink {
	char buf[4096];
	size_t len;
};

static void msink_out(void *arg, const void *buf, size_t n)
{
	struct msink *s = arg;

	memcpy(s->buf + s->len, buf, n);
	s->len += n;
	s->buf[s->len] = '\0';
}

static void masked(struct mask *m, struct msink *s, const char *in, const char *want)
{
	s->len = 0;
	s->buf[0] = '\0';
	ck_assert_int_eq(mask_write(m, in, strlen(in)), KILN_OK);
	mask_flush(m);
	ck_assert_str_eq(s->buf, want);
}

START_TEST(gltransfer_mask_prefixes_and_params)
{
	struct mask m;
	struct msink s;
	struct kiln_err e = { 0 };
	char p[16], in[64], want[64];
	int i;

	mask_init(&m, msink_out, &s);
	/* gitlab-runner's defaults: every token GitLab issues. */
	masked(&m, &s, "glpat-a1 glrt-b2 glcbt-c3 gldt-d4 GR1348941e5 glffct-f6 _gitlab_session=g7",
	       "glpat-[MASKED] glrt-[MASKED] glcbt-[MASKED] gldt-[MASKED] GR1348941[MASKED] glffct-[MASKED] "
	       "_gitlab_session=[MASKED]");
	/* Fifteen of the payload's prefixes, past the defaults. */
	for (i = 1; i <= 16; i++) {
		snprintf(p, sizeof(p), "pre%02d_", i);
		ck_assert_int_eq(mask_add_prefix(&m, p, &e), KILN_OK);
	}
	masked(&m, &s, "pre01_x pre15_y pre16_z", "pre01_[MASKED] pre15_[MASKED] pre16_z");
	/* URL parameter values end where gitlab-runner ends them: '?', '&',
	 * blanks and control characters, not '#' or quotes. */
	masked(&m, &s, "u?x=1&RSS_TOKEN=Zz9#frag", "u?x=1&RSS_TOKEN=[MASKED]");
	masked(&m, &s, "'s3/b?X-Amz-Signature=ab\"c'?x=1", "'s3/b?X-Amz-Signature=[MASKED]?x=1");
	masked(&m, &s, "?private_token=abc\tnext", "?private_token=[MASKED]\tnext");
	snprintf(in, sizeof(in), "?private_token=abc%cnext", 1);
	snprintf(want, sizeof(want), "?private_token=[MASKED]%cnext", 1);
	masked(&m, &s, in, want);
	mask_free(&m);
}
END_TEST

/* --- 14: a payload too large ------------------------------------------------------ */

START_TEST(gltransfer_oversized_payload_fails_job)
{
	static struct xsrv s;
	struct gl_client c;
	struct kiln_err e = { 0 };
	char last[128] = "", *payload = NULL;
	size_t len = 0, i;

	memset(&s, 0, sizeof(s));
	s.script[s.n_script++] = "BIG";
	xs_start(&s);
	xs_client(&c, &s);
	ck_assert_int_eq(gl_request_job(&c, "glrt-x", "s_1", "kiln", last, &payload, &len, &e), GL_NO_JOB);
	ck_assert_ptr_null(payload);
	ck_assert_int_eq(e.rc, KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "job 77"), "%s", e.msg);
	gl_client_free(&c);
	xs_stop(&s);
	ck_assert_uint_eq(s.n_req, 3);
	ck_assert_str_eq(s.path[0], "/api/v4/jobs/request");
	ck_assert_str_eq(s.method[1], "PATCH");
	ck_assert_str_eq(s.path[1], "/api/v4/jobs/77/trace");
	ck_assert_ptr_nonnull(strstr(s.stored, "larger than 16 MiB"));
	ck_assert_str_eq(s.method[2], "PUT");
	ck_assert_str_eq(s.path[2], "/api/v4/jobs/77");
	ck_assert_ptr_nonnull(strstr(s.body[2], "\"state\":\"failed\""));
	ck_assert_ptr_nonnull(strstr(s.body[2], "\"failure_reason\":\"runner_system_failure\""));
	ck_assert_ptr_nonnull(strstr(s.body[2], "\"token\":\"glcbt-77abc\""));
	for (i = 0; i < s.n_req; i++)
		ck_assert_str_ne(s.method[i], "");
}
END_TEST

Suite *gltransfer_suite(void)
{
	Suite *s = suite_create("gltransfer");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, gltransfer_header_timeout);
	tcase_add_test(tc, gltransfer_upload_streams);
	tcase_add_test(tc, gltransfer_final_flush_before_put);
	tcase_add_test(tc, gltransfer_patch_404_goes_on);
	tcase_add_test(tc, gltransfer_invalid_utf8);
	tcase_add_test(tc, gltransfer_mask_prefixes_and_params);
	tcase_add_test(tc, gltransfer_oversized_payload_fails_job);
	suite_add_tcase(s, tc);
	return s;
}
