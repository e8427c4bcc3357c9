#include "gitlab/trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "gitlab/client.h"
#include "job/job.h"
#include "lib/clock.h"
#include "lib/log.h"

/* Room past the limit for the notice and a final newline. */
#define NOTICE_ROOM 512
#define FLUSH_MAX_PATCHES 200

struct trace {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct mask mask;
	/* The kept bytes: allocated once at limit + NOTICE_ROOM, so the
	 * uploader reads [sent, len) without the lock while writers append. */
	char *buf;
	size_t len, limit;
	uint32_t crc;
	bool truncated;
	bool at_line_start;
	/* The start of a UTF-8 character that a write cut (at most 3 bytes). */
	unsigned char u8[8];
	size_t u8_len;
	/* The uploader. */
	bool gitlab, started, closing, aborted;
	pthread_t thread;
	struct gl_client cl;
	long long id;
	char *token, *executor;
	volatile sig_atomic_t *cancel;
	int interval_s;
	size_t sent;
	uint32_t sent_crc;
	double last_contact;
	void (*sent_cb)(void *arg, size_t offset, uint32_t crc);
	void *sent_arg;
};

static uint32_t crc_more(uint32_t crc, const char *p, size_t n)
{
	while (n > 0) {
		uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
		crc = (uint32_t)crc32(crc, (const Bytef *)p, k);
		p += k;
		n -= k;
	}
	return crc;
}

/* Keep bytes, up to the limit (lock held). */
static void keep(struct trace *t, const char *p, size_t n)
{
	static const char fmt[] = "\n\033[0;33mJob's log exceeded limit of %zu bytes.\n"
				  "Job execution will continue but no more output will be collected.\033[0;m\n";
	size_t room;

	if (t->truncated || n == 0)
		return;
	room = t->limit - t->len;
	if (n > room) {
		int k;

		/* Cut before a UTF-8 continuation byte's character, never inside it. */
		while (room > 0 && ((unsigned char)p[room] & 0xC0) == 0x80)
			room--;
		memcpy(t->buf + t->len, p, room);
		t->crc = crc_more(t->crc, p, room);
		t->len += room;
		k = snprintf(t->buf + t->len, NOTICE_ROOM, fmt, t->limit);
		if (k > 0 && k < NOTICE_ROOM) {
			t->crc = crc_more(t->crc, t->buf + t->len, (size_t)k);
			t->len += (size_t)k;
		}
		t->truncated = true;
		t->at_line_start = true;
		log_warn("job %lld: the log exceeded %zu bytes: the rest is not kept", t->id, t->limit);
		return;
	}
	memcpy(t->buf + t->len, p, n);
	t->crc = crc_more(t->crc, p, n);
	t->len += n;
	t->at_line_start = p[n - 1] == '\n';
}

/* The length of the valid UTF-8 character at s (avail bytes): > 0 when
 * valid, 0 when s holds only its start, -1 when s[0] starts none. */
static int u8_char(const unsigned char *s, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		len = 2;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		len = 3;
		lo = s[0] == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
		hi = s[0] == 0xED ? 0x9F : 0xBF; /* no surrogates */
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		len = 4;
		lo = s[0] == 0xF0 ? 0x90 : 0x80;
		hi = s[0] == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
	} else {
		return -1;
	}
	for (i = 1; i < len; i++) {
		if (i >= avail)
			return 0;
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF))
			return -1;
	}
	return (int)len;
}

/* Keep s[0, len) with each byte that starts no valid character replaced
 * by U+FFFD, as gitlab-runner's trace buffer does (Go's decoder: one
 * replacement per bad byte). Unless final, a character's start at the end
 * is not kept: the return value says how far s was consumed. */
static size_t keep_valid(struct trace *t, const unsigned char *s, size_t len, bool final)
{
	static const char fffd[] = "\xEF\xBF\xBD";
	size_t i = 0, run = 0;
	int r;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		r = u8_char(s + i, len - i);
		if (r > 0) {
			i += (size_t)r;
			continue;
		}
		if (r == 0 && !final)
			break;
		keep(t, (const char *)s + run, i - run);
		keep(t, fffd, sizeof(fffd) - 1);
		run = ++i;
	}
	keep(t, (const char *)s + run, i - run);
	return i;
}

/* The masker's output: valid UTF-8 only, a character split across writes
 * joined (lock held). */
static void mask_out(void *arg, const void *buf, size_t n)
{
	struct trace *t = arg;
	const unsigned char *p = buf;
	size_t used = 0, c;

	if (t->u8_len) {
		unsigned char tmp[8];
		size_t k = n < 3 ? n : 3, had = t->u8_len;

		memcpy(tmp, t->u8, had);
		memcpy(tmp + had, p, k);
		c = keep_valid(t, tmp, had + k, false);
		t->u8_len = 0;
		if (c < had) {
			/* Still one character's start (then n < 3: all of p is in it). */
			memcpy(t->u8, tmp + c, had + k - c);
			t->u8_len = had + k - c;
			return;
		}
		used = c - had;
	}
	c = keep_valid(t, p + used, n - used, false);
	used += c;
	if (used < n) {
		memcpy(t->u8, p + used, n - used);
		t->u8_len = n - used;
	}
}

/* Release what the masker and the UTF-8 check hold back (lock held). */
static void release(struct trace *t)
{
	mask_flush(&t->mask);
	if (t->u8_len) {
		size_t n = t->u8_len;

		t->u8_len = 0;
		keep_valid(t, t->u8, n, true);
	}
}

static void cancel_from_status(struct trace *t, const char *status)
{
	if (!t->cancel || !status[0])
		return;
	if (!strcmp(status, "canceling") && *t->cancel == JOB_RUN) {
		log_info("job %lld: GitLab cancels it (canceling): the script stops, after_script runs", t->id);
		*t->cancel = JOB_CANCEL_GRACEFUL;
	} else if ((!strcmp(status, "canceled") || !strcmp(status, "failed")) && *t->cancel != JOB_CANCEL_NOW) {
		log_info("job %lld: GitLab says it is %s: stopping its VM", t->id, status);
		*t->cancel = JOB_CANCEL_NOW;
	}
}

/* The server holds [0, off) now (lock held). */
static void set_sent(struct trace *t, size_t off)
{
	if (off > t->len)
		off = t->len;
	if (off >= t->sent)
		t->sent_crc = crc_more(t->sent_crc, t->buf + t->sent, off - t->sent);
	else
		t->sent_crc = crc_more(0, t->buf, off);
	t->sent = off;
	if (t->sent_cb)
		t->sent_cb(t->sent_arg, t->sent, t->sent_crc);
}

/* One PATCH of what is new (lock held; released during the request). */
static enum gl_trace patch_once(struct trace *t, struct kiln_err *e)
{
	struct gl_reply r = { 0 };
	size_t off = t->sent, total = t->len;
	enum gl_trace res;

	pthread_mutex_unlock(&t->mu);
	res = gl_patch_trace(&t->cl, t->id, t->token, t->buf, total, &off, &r, e);
	pthread_mutex_lock(&t->mu);
	if (r.update_interval > 0)
		t->interval_s = r.update_interval;
	cancel_from_status(t, r.job_status);
	gl_reply_free(&r);
	switch (res) {
	case GL_TRACE_OK:
	case GL_TRACE_RANGE:
		set_sent(t, off);
		t->last_contact = mono_s();
		if (res == GL_TRACE_RANGE)
			log_info("job %lld: %s: sending again from byte %zu", t->id, e->msg, off);
		break;
	case GL_TRACE_ABORT:
		if (!t->aborted)
			log_warn("job %lld: %s", t->id, e->msg);
		t->aborted = true;
		if (t->cancel)
			*t->cancel = JOB_CANCEL_NOW;
		break;
	case GL_TRACE_FAILED:
		log_warn("job %lld: sending the log: %s (again later)", t->id, e->msg);
		break;
	}
	return res;
}

static void keepalive(struct trace *t)
{
	struct gl_update u = { .state = "running", .output = true, .crc = t->sent_crc, .bytesize = t->sent,
			       .executor = t->executor };
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	enum gl_put res;

	pthread_mutex_unlock(&t->mu);
	res = gl_update_job(&t->cl, t->id, t->token, &u, &r, &e);
	pthread_mutex_lock(&t->mu);
	t->last_contact = mono_s();
	cancel_from_status(t, r.job_status);
	if (res == GL_PUT_ABORT) {
		t->aborted = true;
		if (t->cancel)
			*t->cancel = JOB_CANCEL_NOW;
	}
	gl_reply_free(&r);
}

static void *uploader(void *arg)
{
	struct trace *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->closing) {
		double until = mono_s() + t->interval_s;
		struct kiln_err e = { 0 };

		while (!t->closing) {
			double left = until - mono_s();
			struct timespec ts;

			if (left <= 0)
				break;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (time_t)left;
			ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&t->cv, &t->mu, &ts);
		}
		if (t->closing || t->aborted)
			continue;
		if (t->len > t->sent)
			patch_once(t, &e);
		else if (mono_s() - t->last_contact >= TRACE_KEEPALIVE_S)
			keepalive(t);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

enum kiln_rc trace_start(struct trace **out, const struct trace_opts *o, struct kiln_err *e)
{
	struct trace *t = calloc(1, sizeof(*t));
	pthread_condattr_t ca;
	enum kiln_rc rc = KILN_OK;

	*out = NULL;
	if (!t)
		return kiln_fail(e, KILN_E_NOMEM, "trace: out of memory");
	t->limit = o->limit ? o->limit : TRACE_DEFAULT_LIMIT;
	if (t->limit > TRACE_MAX_LIMIT)
		t->limit = TRACE_MAX_LIMIT;
	t->id = o->job_id;
	t->cancel = o->cancel;
	t->interval_s = o->first_interval_s > 0 ? o->first_interval_s : TRACE_FIRST_INTERVAL_S;
	t->sent_cb = o->sent;
	t->sent_arg = o->sent_arg;
	t->at_line_start = true;
	t->last_contact = mono_s();
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	mask_init(&t->mask, mask_out, t);
	t->buf = malloc(t->limit + NOTICE_ROOM);
	t->token = strdup(o->token ? o->token : "");
	t->executor = strdup(o->executor ? o->executor : "kiln");
	if (!t->buf || !t->token || !t->executor) {
		rc = kiln_fail(e, KILN_E_NOMEM, "trace: out of memory");
		goto out;
	}
	if (o->url) {
		if ((rc = gl_client_init(&t->cl, o->url, o->ca_file, e)) ||
		    (rc = gl_client_tls(&t->cl, o->cert_file, o->key_file, e)))
			goto out;
		t->cl.debug_trace = o->debug_trace;
		t->gitlab = true;
		if (pthread_create(&t->thread, NULL, uploader, t)) {
			rc = kiln_fail(e, KILN_E_IO, "trace: cannot start the uploader thread");
			goto out;
		}
		t->started = true;
	}
out:
	if (rc) {
		trace_free(t);
		return rc;
	}
	*out = t;
	return KILN_OK;
}

struct mask *trace_masker(struct trace *t)
{
	return &t->mask;
}

void trace_write(struct trace *t, const void *buf, size_t n)
{
	pthread_mutex_lock(&t->mu);
	if (mask_write(&t->mask, buf, n)) {
		static const char lost[] = "\n[kiln: output lost: out of memory]\n";
		release(t);
		keep(t, lost, sizeof(lost) - 1);
	}
	pthread_mutex_unlock(&t->mu);
}

void trace_printf(struct trace *t, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	trace_write(t, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void trace_section(struct trace *t, const char *name, bool begin, const char *header)
{
	char line[512];
	int n;

	pthread_mutex_lock(&t->mu);
	/* A marker ends what was held back: nothing spans it. */
	release(t);
	if (!t->at_line_start)
		keep(t, "\n", 1);
	n = snprintf(line, sizeof(line), "\033[0Ksection_%s:%lld:%s\r\033[0K%s", begin ? "start" : "end",
		     (long long)time(NULL), name, begin ? "" : "\n");
	if (n > 0 && (size_t)n < sizeof(line))
		keep(t, line, (size_t)n);
	if (begin && header) {
		n = snprintf(line, sizeof(line), "\033[0K\033[36;1m%s\033[0;m\n", header);
		if (n > 0 && (size_t)n < sizeof(line))
			mask_write(&t->mask, line, (size_t)n);
		release(t);
	}
	pthread_mutex_unlock(&t->mu);
}

void trace_stat(struct trace *t, size_t *len, uint32_t *crc, bool *truncated)
{
	pthread_mutex_lock(&t->mu);
	if (len)
		*len = t->len;
	if (crc)
		*crc = t->crc;
	if (truncated)
		*truncated = t->truncated;
	pthread_mutex_unlock(&t->mu);
}

char *trace_copy(struct trace *t, size_t *len)
{
	char *p;

	pthread_mutex_lock(&t->mu);
	p = malloc(t->len + 1);
	if (p) {
		memcpy(p, t->buf, t->len);
		p[t->len] = '\0';
		*len = t->len;
	}
	pthread_mutex_unlock(&t->mu);
	return p;
}

bool trace_aborted(struct trace *t)
{
	bool a;

	pthread_mutex_lock(&t->mu);
	a = t->aborted;
	pthread_mutex_unlock(&t->mu);
	return a;
}

static void stop_uploader(struct trace *t)
{
	pthread_mutex_lock(&t->mu);
	release(t);
	t->closing = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	if (t->started)
		pthread_join(t->thread, NULL);
	t->started = false;
}

static void nap_s(int s)
{
	struct timespec ts = { s, 0 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* gl_final_update's flush: send everything, from 0 when asked (412). */
static enum kiln_rc flush_all(void *arg, bool from_zero, struct kiln_err *e)
{
	struct trace *t = arg;
	enum kiln_rc rc = KILN_OK;
	int i;

	pthread_mutex_lock(&t->mu);
	if (from_zero)
		set_sent(t, 0);
	for (i = 0; t->sent < t->len && i < FLUSH_MAX_PATCHES; i++) {
		enum gl_trace res = patch_once(t, e);

		if (res == GL_TRACE_ABORT) {
			rc = KILN_E_NOTFOUND;
			break;
		}
		if (res == GL_TRACE_FAILED) {
			rc = e->rc ? e->rc : KILN_E_IO;
			break;
		}
		if (res == GL_TRACE_RANGE) {
			int wait = t->interval_s < 3 ? t->interval_s : 3;
			pthread_mutex_unlock(&t->mu);
			nap_s(wait);
			pthread_mutex_lock(&t->mu);
		}
	}
	if (!rc && t->sent < t->len)
		rc = kiln_fail(e, KILN_E_LIMIT, "job %lld: the log is still not sent after %d requests", t->id,
			       FLUSH_MAX_PATCHES);
	pthread_mutex_unlock(&t->mu);
	return rc;
}

enum kiln_rc trace_finish(struct trace *t, const char *state, const char *failure_reason, int exit_code,
			  struct kiln_err *e)
{
	struct gl_update u = { .state = state, .failure_reason = failure_reason, .exit_code = exit_code,
			       .output = true, .executor = t->executor };

	stop_uploader(t);
	if (!t->gitlab)
		return KILN_OK;
	pthread_mutex_lock(&t->mu);
	u.crc = t->crc;
	u.bytesize = t->len;
	pthread_mutex_unlock(&t->mu);
	return gl_final_update(&t->cl, t->id, t->token, &u, flush_all, t, e);
}

void trace_free(struct trace *t)
{
	if (!t)
		return;
	stop_uploader(t);
	gl_client_free(&t->cl);
	mask_free(&t->mask);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t->buf);
	free(t->token);
	free(t->executor);
	free(t);
}
