/* The GitLab runner side of kiln: masking, the trace buffer, the API
 * client (against a small scripted HTTP server in this file), failure
 * reasons, the system_id, the configuration writer, payload scrubbing and
 * the crash journal. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "runner/config.h"
#include "workspace/fstree.h"
#include "gitlab/client.h"
#include "gitlab/artifacts.h"
#include "gitlab/registration.h"
#include "gitlab/gzmembers.h"
#include "gitlab/jobrecord.h"
#include "gitlab/mask.h"
#include "gitlab/metrics.h"
#include "lib/paths.h"
#include "job/payload.h"
#include "gitlab/trace.h"
#include "workspace/zip.h"
#include "tests/unit/suites.h"

/* --- masking ---------------------------------------------------------------- */

struct sink {
	char buf[65536];
	size_t len;
	size_t calls;
};

static void sink_out(void *arg, const void *p, size_t n)
{
	struct sink *s = arg;

	ck_assert_uint_le(s->len + n, sizeof(s->buf) - 1);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
	s->calls++;
}

/* Mask input, written in the pieces that '|' separates, with secrets
 * (NULL-terminated) and extra prefixes (NULL-terminated); compare. */
static void check_mask(const char *input, const char *const *secrets, const char *const *prefixes, const char *want)
{
	struct sink s = { .len = 0 };
	struct mask m;
	const char *p = input;

	mask_init(&m, sink_out, &s);
	for (; secrets && *secrets; secrets++)
		ck_assert_int_eq(mask_add_secret(&m, *secrets, NULL), KILN_OK);
	for (; prefixes && *prefixes; prefixes++)
		ck_assert_int_eq(mask_add_prefix(&m, *prefixes, NULL), KILN_OK);
	for (;;) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);

		ck_assert_int_eq(mask_write(&m, p, n), KILN_OK);
		if (!bar)
			break;
		p = bar + 1;
	}
	mask_flush(&m);
	ck_assert_msg(!strcmp(s.buf, want), "input '%s': got '%s', want '%s'", input, s.buf, want);
	mask_free(&m);
}

START_TEST(mask_values)
{
	static const char *const pw[] = { "hunter22", NULL };
	static const char *const two[] = { "apple", "pie", NULL };
	static const char *const overlap[] = { "the last word", "wo foobar", "wo", NULL };
	static const char *const nested[] = { "key", "long_key", NULL };
	static const char *const blanks[] = { "  spaced-out \n", "", "   ", "spaced-out", NULL };

	check_mask("nothing to hide", pw, NULL, "nothing to hide");
	check_mask("hunter22", pw, NULL, "[MASKED]");
	check_mask("pw=hunter22;", pw, NULL, "pw=[MASKED];");
	check_mask("hunter22hunter22 hhunter22", pw, NULL, "[MASKED][MASKED] h[MASKED]");
	check_mask("xapplex pie apples ppie", two, NULL, "x[MASKED]x [MASKED] [MASKED]s p[MASKED]");
	/* The longest value wins where values overlap. */
	check_mask("see the last wo| foobar", overlap, NULL, "see the last [MASKED]");
	check_mask("long_key key long_|key lo|ng_k|ey", nested, NULL, "[MASKED] [MASKED] [MASKED] [MASKED]");
	/* Values are trimmed, empty ones ignored, duplicates once. */
	check_mask("a spaced-out b", blanks, NULL, "a [MASKED] b");
}
END_TEST

START_TEST(mask_split_writes)
{
	static const char *const s[] = { "s3cr3t-value", NULL };

	/* Across two writes, at every possible cut. */
	check_mask("before s3cr3t|-value after", s, NULL, "before [MASKED] after");
	check_mask("s|3cr3t-value", s, NULL, "[MASKED]");
	check_mask("s3cr3t-valu|e", s, NULL, "[MASKED]");
	/* Across three writes. */
	check_mask("x s3c|r3t-va|lue y", s, NULL, "x [MASKED] y");
	check_mask("s|3cr3t-valu|e", s, NULL, "[MASKED]");
	/* A false start held back is released intact. */
	check_mask("s3cr3t-val|ve s3cr3|", s, NULL, "s3cr3t-valve s3cr3");
}
END_TEST

/* Found by the mask fuzz target: the stream ends (mask_flush) while a
 * secret that is also the start of a longer one is held back. */
START_TEST(mask_flush_masks_held)
{
	static const char *const nested[] = { "hunter2", "hunter2-and-more", NULL };
	static const char *const param[] = { "tok", NULL };

	check_mask("echo -n hunter2", nested, NULL, "echo -n [MASKED]");
	check_mask("hunter2|", nested, NULL, "[MASKED]");
	check_mask("hunter2-and|", nested, NULL, "[MASKED]-and");
	check_mask("x hunter2-and-more", nested, NULL, "x [MASKED]");
	/* Nothing ever written: nothing held, no buffer yet (UBSan). */
	check_mask("", nested, NULL, "");
	/* Prefixes and parameter names cut short by the end stay as they are. */
	check_mask("a glpat-", NULL, NULL, "a glpat-");
	check_mask("u?private_tok", param, NULL, "u?private_[MASKED]");
}
END_TEST

START_TEST(mask_holds_back_little)
{
	struct sink s = { .len = 0 };
	struct mask m;

	mask_init(&m, sink_out, &s);
	ck_assert_int_eq(mask_add_secret(&m, "abcdef", NULL), KILN_OK);
	ck_assert_int_eq(mask_write(&m, "0123456789abcde", 15), KILN_OK);
	/* At most longest - 1 bytes wait for the next write. */
	ck_assert_str_eq(s.buf, "0123456789");
	ck_assert_uint_le(m.hold_len, 5);
	ck_assert_int_eq(mask_write(&m, "X", 1), KILN_OK);
	ck_assert_str_eq(s.buf, "0123456789abcdeX");
	ck_assert_uint_eq(m.hold_len, 0);
	mask_free(&m);
}
END_TEST

START_TEST(mask_large_value)
{
	char *secret = malloc(16001), *input = malloc(16100);
	static const char *list[2];

	memset(secret, '_', 16000);
	secret[16000] = '\0';
	snprintf(input, 16100, "big: %.8000s|%.8000s!", secret, secret);
	list[0] = secret;
	check_mask(input, list, NULL, "big: [MASKED]!");
	free(secret);
	free(input);
}
END_TEST

START_TEST(mask_token_prefixes)
{
	static const char *const custom[] = { "glcbt-", " tok- ", NULL };
	static const char *const many[] = { "p1-", "p2-", "p3-", "p4-", "p5-", "p6-", "p7-", "p8-", "p9-", "p10-", NULL };

	check_mask("a glpat-Ab.c_d=e-f b", NULL, NULL, "a glpat-[MASKED] b");
	check_mask("xglpat-abc", NULL, NULL, "xglpat-[MASKED]");
	check_mask("glpat-one glpat-two", NULL, NULL, "glpat-[MASKED] glpat-[MASKED]");
	check_mask("glpat-abcglpat-def end", NULL, NULL, "glpat-[MASKED] end");
	/* Split anywhere, the prefix or the token. */
	check_mask("gl|pat-abc and glpat|-x|y.z!", NULL, NULL, "glpat-[MASKED] and glpat-[MASKED]!");
	check_mask("glpat-ab|cd|ef end", NULL, NULL, "glpat-[MASKED] end");
	/* A prefix alone is no token. */
	check_mask("glpat- x glpat-", NULL, NULL, "glpat- x glpat-");
	check_mask("glpat| -x", NULL, NULL, "glpat -x");
	/* The job's prefixes (trimmed), fifteen past the defaults (test_gltransfer.c). */
	check_mask("CI_JOB_TOKEN=glcbt-123abc tok-zz", NULL, custom, "CI_JOB_TOKEN=glcbt-[MASKED] tok-[MASKED]");
	check_mask("p9-x p10-x glpat-x", NULL, many, "p9-[MASKED] p10-[MASKED] glpat-[MASKED]");
}
END_TEST

START_TEST(mask_url_params)
{
	static const char *const pw[] = { "hunter22", NULL };

	check_mask("GET /a?private_token=abc123&page=2 HTTP", NULL, NULL, "GET /a?private_token=[MASKED]&page=2 HTTP");
	/* The value runs to '?', '&', a blank or a control character, as in gitlab-runner. */
	check_mask("u?x=1&RSS_TOKEN=Zz9#frag", NULL, NULL, "u?x=1&RSS_TOKEN=[MASKED]");
	check_mask("'https://s3/b?X-Amz-Signature=ab%2Fcd&X-Amz-Credential=AKIA/x' y", NULL, NULL,
		   "'https://s3/b?X-Amz-Signature=[MASKED]&X-Amz-Credential=[MASKED] y");
	check_mask("?authenticity_token=a+b/c= next", NULL, NULL, "?authenticity_token=[MASKED] next");
	check_mask("\"&x-amz-security-token=q\"", NULL, NULL, "\"&x-amz-security-token=[MASKED]");
	/* Split anywhere: the separator, the name, the value. */
	check_mask("a?|private_tok|en=ab|c&b=1", NULL, NULL, "a?private_token=[MASKED]&b=1");
	check_mask("a|&|private_token=|abc d", NULL, NULL, "a&private_token=[MASKED] d");
	/* No value, no separator before it, other names: left alone. */
	check_mask("?private_token=&a=1 ?private_token= x", NULL, NULL, "?private_token=&a=1 ?private_token= x");
	check_mask("private_token=abc ?token=abc ?private_tokens=abc", NULL, NULL,
		   "private_token=abc ?token=abc ?private_tokens=abc");
	check_mask("?private_tok", NULL, NULL, "?private_tok");
	/* Together with masked values. */
	check_mask("?rss_token=hunter22 hunter22", pw, NULL, "?rss_token=[MASKED] [MASKED]");
}
END_TEST

/* --- the trace buffer --------------------------------------------------------- */

static struct trace *offline_trace(size_t limit)
{
	struct trace_opts o = { .limit = limit, .job_id = 1 };
	struct kiln_err e = { 0 };
	struct trace *t;

	ck_assert_msg(trace_start(&t, &o, &e) == KILN_OK, "%s", e.msg);
	return t;
}

START_TEST(trace_crc_and_sections)
{
	struct trace *t = offline_trace(0);
	struct kiln_err e = { 0 };
	uint32_t crc;
	size_t len;
	char *copy;
	bool cut;

	ck_assert_int_eq(mask_add_secret(trace_masker(t), "topsecret", NULL), KILN_OK);
	trace_write(t, "hello top", 9);
	trace_write(t, "secret", 6);
	trace_section(t, "step_script", true, "Executing");
	trace_write(t, "out\n", 4);
	trace_section(t, "step_script", false, NULL);
	ck_assert_int_eq(trace_finish(t, "success", NULL, 0, &e), KILN_OK);
	trace_stat(t, &len, &crc, &cut);
	copy = trace_copy(t, &len);
	ck_assert(!cut);
	/* The masked bytes, and what the checksum covers, are exactly these. */
	ck_assert_ptr_nonnull(strstr(copy, "hello [MASKED]\n\033[0Ksection_start:"));
	ck_assert_ptr_nonnull(strstr(copy, ":step_script\r\033[0K\033[0K\033[36;1mExecuting\033[0;m\nout\n\033[0Ksection_end:"));
	ck_assert_ptr_null(strstr(copy, "topsecret"));
	ck_assert_uint_eq(crc, (uint32_t)crc32(0, (const Bytef *)copy, (uInt)len));
	ck_assert_uint_eq(len, strlen(copy));
	free(copy);
	trace_free(t);
}
END_TEST

START_TEST(trace_limit_cuts_at_utf8)
{
	static const char want[] = "12345678\xc3\xa9\n\033[0;33mJob's log exceeded limit of 11 bytes.";
	struct trace *t = offline_trace(11);
	char *copy;
	size_t len;
	uint32_t crc;
	bool cut;

	/* 8 ASCII bytes, then "é" (2 bytes) and "€" (3 bytes): the cut falls
	 * inside "€", which goes whole. */
	trace_write(t, "12345678\xc3\xa9\xe2\x82\xac tail", 18);
	trace_write(t, "MORE", 4);
	trace_stat(t, &len, &crc, &cut);
	copy = trace_copy(t, &len);
	ck_assert(cut);
	ck_assert_int_eq(strncmp(copy, want, sizeof(want) - 1), 0);
	ck_assert_ptr_null(strstr(copy, "MORE"));
	ck_assert_uint_eq(crc, (uint32_t)crc32(0, (const Bytef *)copy, (uInt)len));
	free(copy);
	trace_free(t);
}
END_TEST

/* --- a scripted HTTP server ---------------------------------------------------- */

#define SRV_MAX 64

struct srv {
	int fd, port;
	pthread_t th;
	/* Replies: "STATUS[ header lines]"; past the script, trace semantics. */
	const char *script[SRV_MAX];
	size_t n_script, next;
	/* What came. */
	char method[SRV_MAX][8], path[SRV_MAX][128], range[SRV_MAX][64];
	char *body[SRV_MAX];
	size_t body_len[SRV_MAX], n_req;
	bool job_token[SRV_MAX];  /* the request had a JOB-TOKEN header */
	char *stored;        /* the trace as a GitLab would keep it */
	size_t stored_len;
};

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

static void srv_start(struct srv *s)
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

static void srv_stop(struct srv *s)
{
	size_t i;

	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	pthread_join(s->th, NULL);
	for (i = 0; i < s->n_req; i++)
		free(s->body[i]);
	free(s->stored);
}

static void client_for(struct gl_client *c, const struct srv *s)
{
	char url[64];
	struct kiln_err e = { 0 };

	gl_global_init();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s->port);
	ck_assert_msg(gl_client_init(c, url, NULL, &e) == KILN_OK, "%s", e.msg);
	c->backoff_min_ms = 2;
	c->backoff_max_ms = 20;
}

START_TEST(client_trace_chunks_and_offsets)
{
	static struct srv s;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	size_t total = (5u << 20) / 2, off = 0, i;
	char *data = malloc(total + 64);

	memset(&s, 0, sizeof(s));
	for (i = 0; i < total + 64; i++)
		data[i] = (char)('a' + i % 26);
	srv_start(&s);
	client_for(&c, &s);
	while (off < total)
		ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", data, total, &off, &r, &e), GL_TRACE_OK);
	/* At most 1 MiB per PATCH, ranges inclusive and contiguous. */
	ck_assert_uint_eq(s.n_req, 3);
	ck_assert_str_eq(s.path[0], "/api/v4/jobs/42/trace");
	ck_assert_str_eq(s.range[0], "0-1048575");
	ck_assert_str_eq(s.range[1], "1048576-2097151");
	ck_assert_str_eq(s.range[2], "2097152-2621439");
	ck_assert_uint_eq(s.stored_len, total);
	ck_assert_int_eq(memcmp(s.stored, data, total), 0);
	ck_assert_str_eq(r.job_status, "running");

	/* An offset the server does not have: 416, and its Range says where to resume. */
	off = total - 100;
	ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", data, total + 50, &off, &r, &e), GL_TRACE_RANGE);
	ck_assert_uint_eq(off, total);
	ck_assert_int_eq(gl_patch_trace(&c, 42, "jt", data, total, &off, &r, &e), GL_TRACE_OK);
	gl_reply_free(&r);
	gl_client_free(&c);
	srv_stop(&s);
	free(data);
}
END_TEST

START_TEST(client_retries_and_aborts)
{
	static struct srv s;
	struct gl_client c;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	size_t off = 0;

	memset(&s, 0, sizeof(s));
	s.script[0] = "503 Retry-After: 0";
	s.script[1] = "502";
	s.script[2] = "202";
	s.script[3] = "403";
	s.script[4] = "500";
	s.script[5] = "500";
	s.n_script = 6;
	srv_start(&s);
	client_for(&c, &s);
	c.max_attempts = 3;
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abc", 3, &off, &r, &e), GL_TRACE_OK);
	ck_assert_int_eq(r.attempts, 3);
	ck_assert_uint_eq(off, 3);
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abcdef", 6, &off, &r, &e), GL_TRACE_ABORT);
	ck_assert_uint_eq(off, 3);
	/* 5xx past the retries: failed, try later; the offset stays. */
	c.max_attempts = 2;
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abcdef", 6, &off, &r, &e), GL_TRACE_FAILED);
	ck_assert_uint_eq(off, 3);
	ck_assert_uint_eq(s.n_req, 6);
	/* Then it goes through. */
	ck_assert_int_eq(gl_patch_trace(&c, 7, "jt", "abcdef", 6, &off, &r, &e), GL_TRACE_OK);
	ck_assert_uint_eq(off, 6);
	gl_reply_free(&r);
	gl_client_free(&c);
	srv_stop(&s);
}
END_TEST

struct flushes {
	int calls, from_zero;
};

static enum kiln_rc count_flush(void *arg, bool from_zero, struct kiln_err *e)
{
	struct flushes *f = arg;

	f->calls++;
	f->from_zero += from_zero;
	return KILN_OK;
}

START_TEST(client_final_update_loop)
{
	static struct srv s;
	struct gl_client c;
	struct kiln_err e = { 0 };
	struct gl_update u = { .state = "failed", .failure_reason = "script_failure", .exit_code = 3, .output = true,
			       .crc = 0x1234abcd, .bytesize = 99 };
	struct flushes f = { 0, 0 };
	json_t *body;

	memset(&s, 0, sizeof(s));
	s.script[0] = "202 X-GitLab-Trace-Update-Interval: 1";
	s.script[1] = "412 X-GitLab-Trace-Update-Interval: 1";
	s.script[2] = "200";
	s.script[3] = "403";
	s.n_script = 4;
	srv_start(&s);
	client_for(&c, &s);
	ck_assert_int_eq(gl_final_update(&c, 9, "jt", &u, count_flush, &f, &e), KILN_OK);
	/* Flushed before each PUT; the whole trace again after the 412. */
	ck_assert_int_eq(f.calls, 3);
	ck_assert_int_eq(f.from_zero, 1);
	ck_assert_uint_eq(s.n_req, 3);
	ck_assert_str_eq(s.method[2], "PUT");
	ck_assert_str_eq(s.path[2], "/api/v4/jobs/9");
	body = json_loadb(s.body[2], s.body_len[2], 0, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(body, "state")), "failed");
	ck_assert_str_eq(json_string_value(json_object_get(body, "failure_reason")), "script_failure");
	ck_assert_int_eq(json_integer_value(json_object_get(body, "exit_code")), 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(body, "output"), "checksum")), "crc32:1234abcd");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(body, "output"), "bytesize")), 99);
	ck_assert_str_eq(json_string_value(json_object_get(body, "token")), "jt");
	json_decref(body);
	/* 403: the job is gone; the loop stops at once. */
	ck_assert_int_eq(gl_final_update(&c, 9, "jt", &u, NULL, NULL, &e), KILN_E_NOTFOUND);
	ck_assert_uint_eq(s.n_req, 4);
	gl_client_free(&c);
	srv_stop(&s);
}
END_TEST

/* A 307 on artifact upload is followed with the job token only on the
 * GitLab's own origin: not to another port or host, not to another scheme. */
START_TEST(client_upload_redirects)
{
	static struct srv gl, other;
	char file[64] = "/tmp/kiln-upload-XXXXXX", loc[3][160];
	struct gl_client c;
	struct kiln_err e = { 0 };
	int fd = mkstemp(file), i;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "PK", 2), 2);
	close(fd);
	memset(&gl, 0, sizeof(gl));
	memset(&other, 0, sizeof(other));
	srv_start(&gl);
	srv_start(&other);
	client_for(&c, &gl);
	snprintf(loc[0], sizeof(loc[0]), "307 Location: http://127.0.0.1:%d/api/v4/jobs/5/artifacts?moved=1", gl.port);
	snprintf(loc[1], sizeof(loc[1]), "307 Location: http://127.0.0.1:%d/steal", other.port);
	snprintf(loc[2], sizeof(loc[2]), "307 Location: https://127.0.0.1:%d/steal", gl.port);
	gl.script[0] = loc[0];
	gl.script[1] = "201";
	gl.script[2] = loc[1];
	gl.script[3] = loc[2];
	gl.n_script = 4;

	/* Same origin: followed, token and all. */
	ck_assert_msg(gl_upload_artifacts(&c, 5, "glcbt-tok", file, "a.zip", "archive", "zip", NULL, &e) == KILN_OK,
		      "%s", e.msg);
	ck_assert_uint_eq(gl.n_req, 2);
	ck_assert_ptr_nonnull(strstr(gl.path[1], "moved=1"));
	ck_assert(gl.job_token[0] && gl.job_token[1]);
	/* Another port, another scheme: refused, nothing sent there. */
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(gl_upload_artifacts(&c, 5, "glcbt-tok", file, "a.zip", "archive", "zip", NULL, &e),
				 KILN_E_INVALID);
		ck_assert_msg(strstr(e.msg, "not followed with the job token"), "%s", e.msg);
	}
	ck_assert_uint_eq(gl.n_req, 4);
	ck_assert_uint_eq(other.n_req, 0);
	gl_client_free(&c);
	srv_stop(&gl);
	srv_stop(&other);
	unlink(file);

	ck_assert(gl_same_origin("https://GitLab.example.com/api/v4", "https://gitlab.example.com:443/x?y"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "http://gitlab.example.com/api/v4"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "https://gitlab.example.com.evil/"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "https://gitlab.example.com:8443/"));
	ck_assert(!gl_same_origin("https://gitlab.example.com/api/v4", "/relative"));
}
END_TEST

START_TEST(client_url_and_info)
{
	struct gl_client c;
	struct kiln_err e = { 0 };
	json_t *fx, *info, *f, *v;
	const char *k;
	size_t n_true = 0;

	ck_assert_int_eq(gl_client_init(&c, "https://gitlab.example.com/ci/", NULL, &e), KILN_OK);
	ck_assert_str_eq(c.api, "https://gitlab.example.com/api/v4");
	ck_assert_int_eq(gl_client_init(&c, "https://gitlab.example.com//", NULL, &e), KILN_OK);
	ck_assert_str_eq(c.api, "https://gitlab.example.com/api/v4");
	ck_assert_int_eq(gl_client_init(&c, "ftp://gitlab.example.com", NULL, &e), KILN_E_INVALID);
	ck_assert_int_eq(gl_client_init(&c, "https://x", "/nonexistent/ca.pem", &e), KILN_E_IO);

	/* The features object has exactly gitlab-runner's keys. */
	fx = json_load_file(fixture("gitlab/runner_info_features_all_enabled.json"), 0, NULL);
	ck_assert_ptr_nonnull(fx);
	info = gl_info("qemu");
	f = json_object_get(info, "features");
	ck_assert_uint_eq(json_object_size(f), json_object_size(fx));
	json_object_foreach(fx, k, v) {
		ck_assert_msg(json_is_boolean(json_object_get(f, k)), "feature %s missing", k);
		n_true += json_is_true(json_object_get(f, k));
	}
	ck_assert_str_eq(json_string_value(json_object_get(info, "name")), "kiln");
	ck_assert_str_eq(json_string_value(json_object_get(info, "executor")), "qemu");
	/* Only what kiln implements. */
	ck_assert(json_is_true(json_object_get(f, "masking")));
	ck_assert(json_is_true(json_object_get(f, "cancel_gracefully")));
	ck_assert(json_is_true(json_object_get(f, "trace_checksum")));
	ck_assert(json_is_true(json_object_get(f, "artifacts")));
	ck_assert(json_is_true(json_object_get(f, "cache")));
	ck_assert(json_is_false(json_object_get(f, "services")));
	ck_assert(json_is_true(json_object_get(f, "upload_multiple_artifacts")));
	ck_assert(json_is_true(json_object_get(f, "upload_raw_artifacts")));
	ck_assert(json_is_false(json_object_get(f, "vault_secrets")));
	ck_assert_uint_eq(n_true, 18);
	json_decref(info);
	json_decref(fx);
}
END_TEST

START_TEST(failure_reason_mapping)
{
	static const char *const listed[] = { "script_failure", "image_pull_failure", "runner_unsupported" };
	static const char *const bare[] = { "script_failure" };

	ck_assert_str_eq(gl_failure_reason("", listed, 3), "script_failure");
	ck_assert_str_eq(gl_failure_reason(NULL, NULL, 0), "script_failure");
	/* Always accepted, listed or not. */
	ck_assert_str_eq(gl_failure_reason("runner_system_failure", bare, 1), "runner_system_failure");
	ck_assert_str_eq(gl_failure_reason("job_execution_timeout", NULL, 0), "job_execution_timeout");
	/* Listed: as is; not listed: the fallback, else unknown_failure. */
	ck_assert_str_eq(gl_failure_reason("image_pull_failure", listed, 3), "image_pull_failure");
	ck_assert_str_eq(gl_failure_reason("image_pull_failure", bare, 1), "runner_system_failure");
	ck_assert_str_eq(gl_failure_reason("runner_configuration_error", bare, 1), "script_failure");
	ck_assert_str_eq(gl_failure_reason("runner_external_dependency_failure", NULL, 0), "runner_system_failure");
	ck_assert_str_eq(gl_failure_reason("runner_interrupted", bare, 1), "unknown_failure");
	ck_assert_str_eq(gl_failure_reason("canceled", listed, 3), "unknown_failure");
	ck_assert_str_eq(gl_failure_reason("runner_unsupported", listed, 3), "runner_unsupported");
	ck_assert(gl_is_auth_token("glrt-abc"));
	ck_assert(!gl_is_auth_token("GR1348941abc"));
}
END_TEST

/* --- system_id and the configuration file -------------------------------------- */

static char *tmpdir(void)
{
	static char d[64];

	snprintf(d, sizeof(d), "/tmp/kiln-test-gl.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

START_TEST(system_id)
{
	char id[GLC_SYSTEM_ID_SIZE], again[GLC_SYSTEM_ID_SIZE], path[128], cmd[160];
	struct kiln_err e = { 0 };
	char *d = tmpdir();
	FILE *f;

	/* HMAC-SHA256(key machine-id, "gitlab-runner"), first 12 hex digits. */
	glc_system_id_from_machine_id("0123456789abcdef0123456789abcdef", id);
	ck_assert_str_eq(id, "s_ee3af03959fe");
	ck_assert(glc_system_id_valid(id));
	ck_assert(glc_system_id_valid("r_AbC123xyz789"));
	ck_assert(!glc_system_id_valid("s_ee3af03959f"));
	ck_assert(!glc_system_id_valid("x_ee3af03959fe"));
	ck_assert(!glc_system_id_valid("s_ee3af03959fe0"));
	ck_assert(!glc_system_id_valid("s_ee3af0395-fe"));

	/* Kept beside the configuration, the same on every call. */
	snprintf(path, sizeof(path), "%s/sub/config.yml", d);
	ck_assert_msg(glc_system_id(path, id, &e) == KILN_OK, "%s", e.msg);
	ck_assert(glc_system_id_valid(id));
	ck_assert_int_eq(glc_system_id(path, again, &e), KILN_OK);
	ck_assert_str_eq(id, again);
	snprintf(path, sizeof(path), "%s/sub/.runner_system_id", d);
	f = fopen(path, "w");
	fputs("r_0123456789ab\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/sub/config.yml", d);
	ck_assert_int_eq(glc_system_id(path, id, &e), KILN_OK);
	ck_assert_str_eq(id, "r_0123456789ab");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(config_rewrite)
{
	static const char orig[] = "# a comment\nconcurrent: 3\ncheck_interval: 7\ndefaults:\n  memory_mib: 1024\n"
				   "runners:\n  - name: one\n    url: https://a.example\n    token: glrt-one\n"
				   "    limit: 2\n";
	struct glc_runner two = { .name = "two", .url = "https://b.example", .token = "glrt-two",
				  .tls_ca_file = "/etc/ca.pem", .executor = "qemu" };
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	char path[128], cmd[160], *d = tmpdir();
	bool drop[2] = { true, false };
	struct stat st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.yml", d);
	f = fopen(path, "w");
	fputs(orig, f);
	fclose(f);
	ck_assert_msg(glc_config_add(path, &two, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_load(&cfg, path, true, &e) == KILN_OK, "%s", e.msg);
	/* Everything else kept. */
	ck_assert_int_eq(cfg.concurrent, 3);
	ck_assert_int_eq(cfg.check_interval, 7);
	ck_assert_int_eq(cfg.defaults.memory_mib, 1024);
	ck_assert_uint_eq(cfg.n_runners, 2);
	ck_assert_str_eq(cfg.runners[0].name, "one");
	ck_assert_int_eq(cfg.runners[0].limit, 2);
	ck_assert_str_eq(cfg.runners[1].token, "glrt-two");
	ck_assert_str_eq(cfg.runners[1].tls_ca_file, "/etc/ca.pem");
	ck_assert_str_eq(cfg.runners[1].vm.executor, "qemu");
	ck_assert_int_eq(cfg.runners[1].vm.memory_mib, 1024);
	kiln_config_free(&cfg);

	/* A renewed token: the runner keeps its other keys and gains the times;
	 * a token no runner has is not found. */
	ck_assert_msg(glc_config_set_token(path, "https://a.example", "glrt-one", "glrt-one-b", 1000, 5000, &e) ==
			      KILN_OK,
		      "%s", e.msg);
	ck_assert_int_eq(glc_config_set_token(path, "https://a.example", "glrt-one", "x", 1, 2, &e), KILN_E_NOTFOUND);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_load(&cfg, path, true, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(cfg.runners[0].token, "glrt-one-b");
	ck_assert_int_eq(cfg.runners[0].token_obtained_at, 1000);
	ck_assert_int_eq(cfg.runners[0].token_expires_at, 5000);
	ck_assert_int_eq(cfg.runners[0].limit, 2);
	ck_assert_str_eq(cfg.runners[1].token, "glrt-two");
	ck_assert_int_eq(cfg.runners[1].token_expires_at, 0);
	kiln_config_free(&cfg);
	/* Renewed again to a token that never expires: the times go. */
	ck_assert_int_eq(glc_config_set_token(path, "https://a.example", "glrt-one-b", "glrt-one", 2000, 0, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, path, true, &e), KILN_OK);
	ck_assert_str_eq(cfg.runners[0].token, "glrt-one");
	ck_assert_int_eq(cfg.runners[0].token_obtained_at, 2000);
	ck_assert_int_eq(cfg.runners[0].token_expires_at, 0);
	kiln_config_free(&cfg);

	ck_assert_msg(glc_config_remove(path, drop, 2, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, path, true, &e), KILN_OK);
	ck_assert_uint_eq(cfg.n_runners, 1);
	ck_assert_str_eq(cfg.runners[0].name, "two");
	ck_assert_int_eq(cfg.concurrent, 3);
	kiln_config_free(&cfg);

	/* A new file. */
	snprintf(path, sizeof(path), "%s/new/config.yml", d);
	ck_assert_msg(glc_config_add(path, &two, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, path, true, &e), KILN_OK);
	ck_assert_uint_eq(cfg.n_runners, 1);
	kiln_config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(gitlab_times)
{
	ck_assert_int_eq(gl_parse_time("2026-11-27T00:00:00Z"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("2026-11-27T00:00:00.123Z"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("2026-11-27T02:00:00+02:00"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("2026-11-26T22:30:00-01:30"), 1795737600LL);
	ck_assert_int_eq(gl_parse_time("0001-01-01T00:00:00Z"), 0);
	ck_assert_int_eq(gl_parse_time("2026-11-27"), 0);
	ck_assert_int_eq(gl_parse_time("2026-11-27T00:00:00Zjunk"), 0);
	ck_assert_int_eq(gl_parse_time(NULL), 0);
}
END_TEST

/* --- saved payloads and the journal ---------------------------------------------- */

START_TEST(payload_scrubbing)
{
	static const char text[] =
		"{\"id\": 5, \"token\": \"glcbt-jobtoken-123\","
		" \"git_info\": {\"repo_url\": \"https://gitlab-ci-token:glcbt-jobtoken-123@gitlab.example/g/p.git\"},"
		" \"variables\": ["
		"  {\"key\": \"CI_JOB_TOKEN\", \"value\": \"glcbt-jobtoken-123\"},"
		"  {\"key\": \"CI_REPOSITORY_URL\", \"value\": \"https://gitlab-ci-token:xyz@gitlab.example/g/p.git\"},"
		"  {\"key\": \"DEPLOY_KEY\", \"value\": \"very-secret-key\", \"masked\": true},"
		"  {\"key\": \"KUBECONFIG\", \"value\": \"apiVersion: v1\", \"file\": true},"
		"  {\"key\": \"MSG\", \"value\": \"uses very-secret-key inside\"},"
		"  {\"key\": \"PLAIN\", \"value\": \"hello\"}],"
		" \"credentials\": [{\"type\": \"registry\", \"url\": \"https://u:p@registry.example\","
		"  \"username\": \"gitlab-ci-token\", \"password\": \"glcbt-jobtoken-123\"}],"
		" \"dependencies\": [{\"id\": 4, \"name\": \"build\", \"token\": \"glcbt-other-token\"}]}";
	json_t *doc = json_loads(text, 0, NULL), *vars;
	char *dump;

	ck_assert_ptr_nonnull(doc);
	jobrec_scrub(doc);
	vars = json_object_get(doc, "variables");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "token")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "git_info"), "repo_url")),
			 "https://gitlab.example/g/p.git");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 0), "value")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 1), "value")),
			 "https://gitlab.example/g/p.git");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 2), "value")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 3), "value")), "[MASKED]");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 4), "value")), "uses [MASKED] inside");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(vars, 5), "value")), "hello");
	dump = json_dumps(doc, 0);
	ck_assert_ptr_null(strstr(dump, "jobtoken"));
	ck_assert_ptr_null(strstr(dump, "other-token"));
	ck_assert_ptr_null(strstr(dump, "very-secret"));
	ck_assert_ptr_null(strstr(dump, "u:p@"));
	ck_assert_ptr_nonnull(strstr(dump, "gitlab-ci-token"));
	free(dump);
	json_decref(doc);
}
END_TEST

START_TEST(journal_orphans)
{
	struct jobrec_running r = { .id = 77, .sent = 123, .crc = 0xdeadbeef }, *list;
	struct kiln_err e = { 0 };
	char path[160], cmd[160], *d = tmpdir();
	size_t n;
	pid_t child;
	json_t *o;

	snprintf(r.token, sizeof(r.token), "glcbt-t");
	snprintf(r.url, sizeof(r.url), "https://gitlab.example");
	snprintf(r.runner, sizeof(r.runner), "r1");
	ck_assert_msg(jobrec_journal_write(d, &r, &e) == KILN_OK, "%s", e.msg);
	/* Ours, and we live: no orphan. */
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 0);
	free(list);
	/* Written by a process that is gone. */
	child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	snprintf(path, sizeof(path), "%s/running/77.json", d);
	o = json_load_file(path, 0, NULL);
	json_object_set_new(o, "pid", json_integer(child));
	json_dump_file(o, path, 0);
	json_decref(o);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(list[0].id, 77);
	ck_assert_uint_eq(list[0].sent, 123);
	ck_assert_uint_eq(list[0].crc, 0xdeadbeef);
	ck_assert_str_eq(list[0].token, "glcbt-t");
	ck_assert_str_eq(list[0].state, "");
	free(list);
	/* The job's outcome, once it ended; a state kiln never writes is none. */
	o = json_load_file(path, 0, NULL);
	json_object_set_new(o, "state", json_string("failed"));
	json_object_set_new(o, "failure_reason", json_string("script_failure"));
	json_object_set_new(o, "exit_code", json_integer(3));
	json_dump_file(o, path, 0);
	json_object_set_new(o, "state", json_string("running"));
	json_dump_file(o, path, 0);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].state, "");
	ck_assert_str_eq(list[0].failure_reason, "");
	free(list);
	json_object_set_new(o, "state", json_string("failed"));
	json_dump_file(o, path, 0);
	json_decref(o);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].state, "failed");
	ck_assert_str_eq(list[0].failure_reason, "script_failure");
	ck_assert_int_eq(list[0].exit_code, 3);
	free(list);
	jobrec_journal_remove(d, 77);
	ck_assert_int_eq(jobrec_journal_orphans(d, &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 0);
	free(list);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(payload_pruning)
{
	static const long long ids[] = { 3, 10, 1, 7, 20 };
	struct kiln_err e = { 0 };
	char path[200], cmd[160], *d = tmpdir();
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		ck_assert_msg(jobrec_save_payload(d, ids[i], "{}", 2, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/payloads/notes.json", d);
	fclose(fopen(path, "w"));
	ck_assert_uint_eq(jobrec_prune_payloads(d, 10), 0);
	ck_assert_uint_eq(jobrec_prune_payloads(d, 2), 3);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		jobrec_payload_path(d, ids[i], path, sizeof(path));
		ck_assert_int_eq(access(path, F_OK) == 0, ids[i] >= 10);
	}
	snprintf(path, sizeof(path), "%s/payloads/notes.json", d);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* --- caches ----------------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t n, mode_t mode);

/* examples/tiny.json with cache key "deps" (and a fallback), its ref
 * protected or not: by git_info.protected when by_var is false, else by
 * $CI_COMMIT_REF_PROTECTED. */
static void cache_payload(struct job_payload *p, bool prot, bool by_var)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX], *text;
	struct kiln_err e = { 0 };
	json_t *root;

	snprintf(path, sizeof(path), "%s/examples/tiny.json", top ? top : ".");
	root = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(root);
	json_object_set_new(root, "cache", json_pack("[{s:s,s:[s],s:s,s:[s]}]", "key", "deps", "paths", "vendor/",
						      "policy", "pull-push", "fallback_keys", "main-deps"));
	if (by_var)
		json_array_append_new(json_object_get(root, "variables"),
				      json_pack("{s:s,s:s}", "key", "CI_COMMIT_REF_PROTECTED", "value",
						prot ? "true" : "false"));
	else
		json_object_set_new(json_object_get(root, "git_info"), "protected", json_boolean(prot));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
	free(text);
}

/* Save cache "deps" holding vendor.txt = who, as a job whose ref is
 * protected or not. */
static void cache_save(const char *d, bool prot, bool by_var, const char *who)
{
	char state[128], root[128], path[PATH_MAX];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = offline_trace(0);
	struct gla g;

	cache_payload(&p, prot, by_var);
	snprintf(state, sizeof(state), "%s/state", d);
	snprintf(root, sizeof(root), "%s/cache", d);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	snprintf(g.cache[0].dir, sizeof(g.cache[0].dir), "%s/collected", g.tmp);
	ck_assert_int_eq(kiln_mkdir_p(g.cache[0].dir), 0);
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache[0].dir);
	write_file(path, who, strlen(who), 0644);
	g.cache[0].wanted = g.collected = g.ok = true;
	g.cache[0].files = 1;
	ck_assert_msg(gla_after(&g, &e) == KILN_OK, "%s", e.msg);
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

/* What a job whose ref is protected or not restores of cache "deps":
 * vendor.txt's text, "" when nothing. */
static void cache_restore(const char *d, bool prot, bool by_var, char *got, size_t size)
{
	char state[128], root[128], path[PATH_MAX];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = offline_trace(0);
	struct gla g;
	FILE *f;

	cache_payload(&p, prot, by_var);
	snprintf(state, sizeof(state), "%s/state", d);
	snprintf(root, sizeof(root), "%s/cache", d);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(gla_before(&g, &e) == KILN_OK, "%s", e.msg);
	got[0] = '\0';
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache_in);
	if (g.n_extra && (f = fopen(path, "r"))) {
		size_t n = fread(got, 1, size - 1, f);

		got[n] = '\0';
		fclose(f);
	}
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

/* Caches of protected and unprotected refs are kept apart, as GitLab's
 * key suffixes do: neither restores what the other saved under the same
 * key, whether protection comes from git_info or the variable. */
START_TEST(cache_kept_apart_by_protection)
{
	char *d = tmpdir(), got[64], cmd[160];
	int by_var;

	for (by_var = 0; by_var < 2; by_var++) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s/cache", d);
		ck_assert_int_eq(system(cmd), 0);
		cache_save(d, false, by_var, "unprotected");
		cache_restore(d, true, by_var, got, sizeof(got));
		ck_assert_str_eq(got, "");
		cache_save(d, true, by_var, "protected");
		cache_restore(d, false, by_var, got, sizeof(got));
		ck_assert_str_eq(got, "unprotected");
		cache_restore(d, true, by_var, got, sizeof(got));
		ck_assert_str_eq(got, "protected");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A key that already carries the server's suffix keeps it when it fits the
 * job; one that claims "-protected" for an unprotected job does not. */
START_TEST(cache_key_suffixes)
{
	struct job_payload p;
	struct gla g = { 0 };
	char k[256];

	cache_payload(&p, false, false);
	g.p = &p;
	gla_cache_key(&g, "deps-0-non_protected", k, sizeof(k));
	ck_assert_str_eq(k, "deps-0-non_protected");
	gla_cache_key(&g, "deps-0-protected", k, sizeof(k));
	ck_assert_str_eq(k, "deps-0-protected-non_protected");
	gla_cache_key(&g, "$CI_PIPELINE_ID-x", k, sizeof(k));
	ck_assert_str_eq(k, "1-x-non_protected");
	payload_free(&p);
	cache_payload(&p, true, false);
	g.p = &p;
	gla_cache_key(&g, "deps-0-protected", k, sizeof(k));
	ck_assert_str_eq(k, "deps-0-protected");
	gla_cache_key(&g, "deps-0-non_protected", k, sizeof(k)); /* cache:unprotect */
	ck_assert_str_eq(k, "deps-0-non_protected");
	gla_cache_key(&g, "deps", k, sizeof(k));
	ck_assert_str_eq(k, "deps-protected");
	payload_free(&p);
}
END_TEST

/* --- zip ------------------------------------------------------------------------ */

static void write_file(const char *path, const void *data, size_t n, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, n, f), n);
	fclose(f);
	chmod(path, mode);
}

static char *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	char *buf = malloc(1 << 20);

	ck_assert_ptr_nonnull(f);
	*n = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

START_TEST(zip_roundtrip)
{
	char *d = tmpdir(), src[128], out[128], path[256], zipf[128], cmd[160], *big = malloc(300000), *got;
	struct zip_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;
	size_t i, n;

	for (i = 0; i < 300000; i++)
		big[i] = (char)((i * 7 + i / 1000) & 0xff);
	snprintf(src, sizeof(src), "%s/src", d);
	snprintf(path, sizeof(path), "%s/sub/deeper", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/a.txt", src);
	write_file(path, "hello\n", 6, 0644);
	snprintf(path, sizeof(path), "%s/sub/big.bin", src);
	write_file(path, big, 300000, 0600);
	snprintf(path, sizeof(path), "%s/sub/empty", src);
	write_file(path, "", 0, 0644);
	snprintf(path, sizeof(path), "%s/sub/deeper/run.sh", src);
	write_file(path, "#!/bin/sh\n", 10, 0755);
	snprintf(path, sizeof(path), "%s/link", src);
	ck_assert_int_eq(symlink("/etc/passwd", path), 0);

	snprintf(zipf, sizeof(zipf), "%s/a.zip", d);
	ck_assert_msg(zip_write_dir(src, zipf, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 4);
	ck_assert_uint_eq(st.bytes, 300016);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 4);
	ck_assert_uint_eq(st.skipped, 1); /* the link: never created */
	snprintf(path, sizeof(path), "%s/sub/big.bin", out);
	got = read_file(path, &n);
	ck_assert_uint_eq(n, 300000);
	ck_assert_int_eq(memcmp(got, big, n), 0);
	free(got);
	snprintf(path, sizeof(path), "%s/sub/deeper/run.sh", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0755);
	snprintf(path, sizeof(path), "%s/sub/empty", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, 0);
	snprintf(path, sizeof(path), "%s/link", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	/* A limit on the extracted size. */
	snprintf(out, sizeof(out), "%s/out2", d);
	ck_assert_int_eq(zip_extract(zipf, out, 1000, &st, &e), KILN_E_LIMIT);
	free(big);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* No setuid, setgid or sticky bit survives a zip (written or read) or a
 * tree copy: modes are masked to 0777. The written archive is checked with
 * Python's zipfile, and a zip made by Python with 06755 is extracted. */
START_TEST(modes_lose_setuid)
{
	char *d = tmpdir(), path[256], zipf[128], out[128], cmd[600];
	struct fstree_stats fst;
	struct zip_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;

	snprintf(path, sizeof(path), "%s/src/sub", d);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	ck_assert_int_eq(chmod(path, 01777), 0);
	snprintf(path, sizeof(path), "%s/src/sub/suid", d);
	write_file(path, "#!/bin/sh\n", 10, 0755);
	ck_assert_int_eq(chmod(path, 06755), 0);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 06755);

	snprintf(zipf, sizeof(zipf), "%s/w.zip", d);
	snprintf(path, sizeof(path), "%s/src", d);
	ck_assert_msg(zip_write_dir(path, zipf, 0, &st, &e) == KILN_OK, "%s", e.msg);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import sys, zipfile; sys.exit(any(i.external_attr >> 16 & 0o7000 "
		 "for i in zipfile.ZipFile(\"%s\").infolist()))'", zipf);
	ck_assert_int_eq(system(cmd), 0);

	snprintf(zipf, sizeof(zipf), "%s/py.zip", d);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import zipfile; z = zipfile.ZipFile(\"%s\", \"w\"); i = zipfile.ZipInfo(\"x/suid\"); "
		 "i.external_attr = 0o106755 << 16; z.writestr(i, \"hi\"); z.close()'", zipf);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/x/suid", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0755);

	snprintf(path, sizeof(path), "%s/src", d);
	snprintf(out, sizeof(out), "%s/copy", d);
	ck_assert_msg(fstree_copy(path, out, NULL, NULL, &fst, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/sub/suid", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0755);
	snprintf(path, sizeof(path), "%s/sub", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07000, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Report artifacts: one gzip member per regular file, named by its path,
 * in sorted order; links are not members; a size limit holds. */
START_TEST(gzip_members)
{
	char *d = tmpdir(), src[128], path[256], gz[128], cmd[160], *data, names[4][64];
	static const char *const want_names[] = { "a.txt", "sub/b.xml", "sub/empty" };
	static const char *const want_data[] = { "hello\n", "<testsuite/>\n", "" };
	struct zip_stats st;
	struct kiln_err e = { 0 };
	unsigned char out[256];
	size_t n, off = 0;
	int k = 0;

	snprintf(src, sizeof(src), "%s/src", d);
	snprintf(path, sizeof(path), "%s/sub", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/sub/b.xml", src);
	write_file(path, "<testsuite/>\n", 13, 0644);
	snprintf(path, sizeof(path), "%s/a.txt", src);
	write_file(path, "hello\n", 6, 0644);
	snprintf(path, sizeof(path), "%s/sub/empty", src);
	write_file(path, "", 0, 0644);
	snprintf(path, sizeof(path), "%s/link", src);
	ck_assert_int_eq(symlink("a.txt", path), 0);
	snprintf(gz, sizeof(gz), "%s/junit.gz", d);
	ck_assert_msg(gzm_write_dir(src, gz, 1 << 20, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 3);
	ck_assert_uint_eq(st.bytes, 19);
	ck_assert_uint_eq(st.skipped, 1);
	data = read_file(gz, &n);
	/* Member by member: the header's name, then the content. */
	while (off < n) {
		z_stream z = { 0 };
		gz_header h = { 0 };
		int zr;

		ck_assert_int_lt(k, 3);
		h.name = (Bytef *)names[k];
		h.name_max = sizeof(names[k]);
		ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);
		ck_assert_int_eq(inflateGetHeader(&z, &h), Z_OK);
		z.next_in = (Bytef *)data + off;
		z.avail_in = (uInt)(n - off);
		z.next_out = out;
		z.avail_out = sizeof(out);
		zr = inflate(&z, Z_FINISH);
		ck_assert_int_eq(zr, Z_STREAM_END);
		ck_assert_str_eq(names[k], want_names[k]);
		ck_assert_uint_eq(z.total_out, strlen(want_data[k]));
		ck_assert_int_eq(memcmp(out, want_data[k], z.total_out), 0);
		off += z.total_in;
		inflateEnd(&z);
		k++;
	}
	ck_assert_int_eq(k, 3);
	free(data);
	ck_assert_int_eq(gzm_write_dir(src, gz, 10, &st, &e), KILN_E_LIMIT);
	ck_assert_int_ne(access(gz, F_OK), 0); /* removed on failure */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static uint8_t *p16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	return p + 2;
}

static uint8_t *p32(uint8_t *p, uint32_t v)
{
	return p16(p16(p, v & 0xffff), v >> 16);
}

static uint8_t *pstr(uint8_t *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* A zip of stored entries, by hand: names the writer would never make. */
static size_t craft_zip(uint8_t *buf, const char *const *names, const char *data, bool bad_crc)
{
	uint8_t *p = buf, *cd;
	uint32_t offs[8], crc = (uint32_t)crc32(0, (const Bytef *)data, (uInt)strlen(data)) ^ (bad_crc ? 1u : 0u);
	uint32_t dl = (uint32_t)strlen(data), cd_size;
	size_t i, n = 0;

	for (i = 0; names[i]; i++, n++) {
		unsigned nl = (unsigned)strlen(names[i]);

		offs[i] = (uint32_t)(p - buf);
		p = p32(p, 0x04034b50u);
		p = p16(p16(p16(p16(p16(p, 20), 0), 0), 0), 0);
		p = p32(p32(p32(p, crc), dl), dl);
		p = p16(p16(p, nl), 0);
		p = pstr(pstr(p, names[i], nl), data, dl);
	}
	cd = p;
	for (i = 0; i < n; i++) {
		unsigned nl = (unsigned)strlen(names[i]);

		p = p32(p, 0x02014b50u);
		p = p16(p16(p16(p16(p16(p16(p, 0x031e), 20), 0), 0), 0), 0);
		p = p32(p32(p32(p, crc), dl), dl);
		p = p16(p16(p16(p16(p16(p, nl), 0), 0), 0), 0);
		p = p32(p32(p, (uint32_t)0100644 << 16), offs[i]);
		p = pstr(p, names[i], nl);
	}
	cd_size = (uint32_t)(p - cd);
	p = p32(p, 0x06054b50u);
	p = p16(p16(p16(p16(p, 0), 0), (unsigned)n), (unsigned)n);
	p = p32(p32(p, cd_size), (uint32_t)(cd - buf));
	p = p16(p, 0);
	return (size_t)(p - buf);
}

START_TEST(zip_refuses_unsafe)
{
	static const char *const names[] = { "../evil", "/abs", "a/../../evil2", "ok/fine.txt", "back\\slash", NULL };
	static const char *const one[] = { "x.txt", NULL };
	char *d = tmpdir(), zipf[128], out[128], path[256], cmd[160];
	uint8_t buf[4096];
	struct zip_stats st;
	struct kiln_err e = { 0 };
	size_t n;

	snprintf(zipf, sizeof(zipf), "%s/bad.zip", d);
	n = craft_zip(buf, names, "payload", false);
	write_file(zipf, buf, n, 0644);
	snprintf(out, sizeof(out), "%s/out/inner", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 1);
	ck_assert_uint_eq(st.skipped, 4);
	snprintf(path, sizeof(path), "%s/out/inner/ok/fine.txt", d);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/out/evil", d);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/evil2", d);
	ck_assert_int_ne(access(path, F_OK), 0);
	/* A wrong CRC is an error. */
	n = craft_zip(buf, one, "payload", true);
	write_file(zipf, buf, n, 0644);
	ck_assert_int_eq(zip_extract(zipf, out, 0, &st, &e), KILN_E_SYNTAX);
	ck_assert_ptr_nonnull(strstr(e.msg, "CRC"));
	/* Not a zip. */
	write_file(zipf, "not a zip at all, really not", 28, 0644);
	ck_assert_int_eq(zip_extract(zipf, out, 0, &st, &e), KILN_E_SYNTAX);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* --- metrics ----------------------------------------------------------------------- */

static char *http_get(int port, const char *path)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[128], *buf = calloc(1, 65536);
	size_t n = 0;
	ssize_t r;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((r = read(fd, buf + n, 65535 - n)) > 0)
		n += (size_t)r;
	close(fd);
	return buf;
}

static bool unless_stopping(void *arg)
{
	return !*(bool *)arg;
}

START_TEST(metrics_text_and_http)
{
	char l[METRICS_MAX_LABELS] = "", addr[32], *text;
	struct kiln_err e = { 0 };
	bool stopping = false;
	int port = 0, i;

	metrics_reset();
	metrics_label(metrics_label(l, sizeof(l), "runner", "a \"quoted\" name\\x"), sizeof(l), "state", "success");
	ck_assert_str_eq(l, "runner=\"a \\\"quoted\\\" name\\\\x\",state=\"success\"");
	metrics_add("kiln_jobs_total", l, 1);
	metrics_add("kiln_jobs_total", l, 2);
	metrics_set("kiln_concurrent", "", 4);
	metrics_set("kiln_concurrent", "", 2);
	text = metrics_render();
	ck_assert_ptr_nonnull(strstr(text, "# TYPE kiln_jobs_total counter\nkiln_jobs_total{" ));
	ck_assert_ptr_nonnull(strstr(text, ",state=\"success\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE kiln_concurrent gauge\nkiln_concurrent 2\n"));
	free(text);

	/* A histogram: cumulative buckets, +Inf, sum and count under one TYPE. */
	{
		static const double b[] = { 1, 5 };
		char want[400];

		metrics_observe("kiln_vm_boot_seconds", "", b, 2, 0.5);
		metrics_observe("kiln_vm_boot_seconds", "", b, 2, 3);
		metrics_observe("kiln_vm_boot_seconds", "", b, 2, 9);
		text = metrics_render();
		snprintf(want, sizeof(want),
			 "# TYPE kiln_vm_boot_seconds histogram\n"
			 "kiln_vm_boot_seconds_bucket{le=\"1\"} 1\n"
			 "kiln_vm_boot_seconds_bucket{le=\"5\"} 2\n"
			 "kiln_vm_boot_seconds_bucket{le=\"+Inf\"} 3\n"
			 "kiln_vm_boot_seconds_sum 12.5\n"
			 "kiln_vm_boot_seconds_count 3\n");
		ck_assert_msg(strstr(text, want), "no histogram in:\n%s", text);
		free(text);
	}

	/* Over HTTP; a port that may be taken is tried again. */
	for (i = 0; i < 20; i++) {
		port = 20000 + (int)(getpid() * 7 + i * 131) % 30000;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		if (metrics_serve(addr, unless_stopping, &stopping, &e) == KILN_OK)
			break;
	}
	ck_assert_msg(i < 20, "%s", e.msg);
	text = http_get(port, "/metrics");
	ck_assert_int_eq(strncmp(text, "HTTP/1.", 7), 0);
	ck_assert_ptr_nonnull(strstr(text, " 200 "));
	ck_assert_ptr_nonnull(strstr(text, "text/plain; version=0.0.4"));
	ck_assert_ptr_nonnull(strstr(text, "kiln_concurrent 2\n"));
	free(text);
	text = http_get(port, "/healthz");
	ck_assert_ptr_nonnull(strstr(text, "200"));
	free(text);
	stopping = true;
	text = http_get(port, "/healthz");
	ck_assert_ptr_nonnull(strstr(text, "503"));
	free(text);
	text = http_get(port, "/nope");
	ck_assert_ptr_nonnull(strstr(text, "404"));
	free(text);
	metrics_stop();
	ck_assert_int_eq(metrics_serve("nonsense", NULL, NULL, &e), KILN_E_INVALID);
	metrics_reset();
}
END_TEST

Suite *gitlab_suite(void)
{
	Suite *s = suite_create("gitlab");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, mask_values);
	tcase_add_test(tc, mask_split_writes);
	tcase_add_test(tc, mask_flush_masks_held);
	tcase_add_test(tc, mask_holds_back_little);
	tcase_add_test(tc, mask_large_value);
	tcase_add_test(tc, mask_token_prefixes);
	tcase_add_test(tc, mask_url_params);
	tcase_add_test(tc, trace_crc_and_sections);
	tcase_add_test(tc, trace_limit_cuts_at_utf8);
	tcase_add_test(tc, client_trace_chunks_and_offsets);
	tcase_add_test(tc, client_retries_and_aborts);
	tcase_add_test(tc, client_final_update_loop);
	tcase_add_test(tc, client_url_and_info);
	tcase_add_test(tc, client_upload_redirects);
	tcase_add_test(tc, failure_reason_mapping);
	tcase_add_test(tc, system_id);
	tcase_add_test(tc, config_rewrite);
	tcase_add_test(tc, payload_scrubbing);
	tcase_add_test(tc, journal_orphans);
	tcase_add_test(tc, payload_pruning);
	tcase_add_test(tc, gitlab_times);
	tcase_add_test(tc, cache_kept_apart_by_protection);
	tcase_add_test(tc, cache_key_suffixes);
	tcase_add_test(tc, zip_roundtrip);
	tcase_add_test(tc, gzip_members);
	tcase_add_test(tc, modes_lose_setuid);
	tcase_add_test(tc, zip_refuses_unsafe);
	tcase_add_test(tc, metrics_text_and_http);
	suite_add_tcase(s, tc);
	return s;
}
