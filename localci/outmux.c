#include "localci/outmux.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/paths.h"

static const int palette[] = { 36, 33, 35, 34, 96, 93, 95, 94 };

static void write_fd1(void *arg, const char *buf, size_t n)
{
	(void)arg;
	kiln_write_all(1, buf, n);
}

void outmux_init(struct outmux *m, outmux_write_fn write, void *arg, bool colour, int width)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->mu, NULL);
	m->write = write ? write : write_fd1;
	m->write_arg = arg;
	m->colour = colour;
	m->width = width < 0 ? 0 : width > OUTMUX_NAME_MAX ? OUTMUX_NAME_MAX : width;
}

void outmux_destroy(struct outmux *m)
{
	pthread_mutex_destroy(&m->mu);
}

void outmux_stream_init(struct outmux *m, struct outmux_stream *s, const char *name, unsigned index,
			long long now_ms)
{
	memset(s, 0, sizeof(*s));
	s->m = m;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->colour = palette[index % (sizeof(palette) / sizeof(palette[0]))];
	s->last_output = now_ms;
}

static void put(struct outmux *m, const char *buf, size_t n)
{
	if (n)
		m->write(m->write_arg, buf, n);
}

static void puts_(struct outmux *m, const char *s)
{
	put(m, s, strlen(s));
}

/* End the line another stream left open. */
static void close_open_line(struct outmux *m, const struct outmux_stream *s)
{
	if (!m->open || m->open == s)
		return;
	puts_(m, "\n");
	m->open->line_open = false;
	m->open = NULL;
}

static void prefix(struct outmux_stream *s)
{
	char p[OUTMUX_NAME_MAX + 48];
	int n;

	if (s->m->colour)
		n = snprintf(p, sizeof(p), "\033[%dm%-*s\033[0m > ", s->colour, s->m->width, s->name);
	else
		n = snprintf(p, sizeof(p), "%-*s > ", s->m->width, s->name);
	put(s->m, p, (size_t)n < sizeof(p) ? (size_t)n : sizeof(p) - 1);
}

/* ---- escape sequences ---------------------------------------------------- */

/* Length of the escape sequence at p (p[0] == ESC) within n bytes: CSI
 * "ESC [ params final", or ESC and one more byte; 0 when it is incomplete. */
static size_t esc_len(const char *p, size_t n)
{
	size_t i;

	if (n < 2)
		return 0;
	if (p[1] != '[')
		return 2;
	for (i = 2; i < n; i++)
		if ((unsigned char)p[i] >= 0x40 && (unsigned char)p[i] <= 0x7e)
			return i + 1;
	return 0;
}

/* Fold the SGR sequence seq (len bytes, "ESC[...m") into state. */
static void sgr_apply(char *state, const char *seq, size_t len)
{
	size_t i, cur = strlen(state);
	bool reset = true;

	/* A reset: no parameters, or only zeros and separators. */
	for (i = 2; i + 1 < len; i++)
		if (seq[i] != '0' && seq[i] != ';')
			reset = false;
	if (reset) {
		state[0] = '\0';
		return;
	}
	/* One that starts with a reset replaces the state. */
	if (seq[2] == '0' && (seq[3] == ';') && len > 4)
		cur = 0;
	if (cur + len >= OUTMUX_SGR_MAX)
		cur = 0;
	if (len >= OUTMUX_SGR_MAX)
		return;
	memcpy(state + cur, seq, len);
	state[cur + len] = '\0';
}

static void sgr_scan(char *state, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t k;

		if (p[i] != '\033') {
			i++;
			continue;
		}
		k = esc_len(p + i, n - i);
		if (!k)
			return;
		if (p[i + 1] == '[' && p[i + k - 1] == 'm')
			sgr_apply(state, p + i, k);
		i += k;
	}
}

/* Where a partial line may be cut (<= n): not inside an escape sequence
 * or a UTF-8 character. */
static size_t safe_cut(const char *p, size_t n)
{
	size_t i, back = n > 32 ? n - 32 : 0, cut = n;

	for (i = back; i < n; i++)
		if (p[i] == '\033' && !esc_len(p + i, n - i)) {
			cut = i;
			break;
		}
	/* A UTF-8 lead byte whose continuation bytes have not all come. */
	for (i = cut; i > 0 && i + 4 > cut; i--) {
		unsigned char c = (unsigned char)p[i - 1];
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;

		if ((c & 0xc0) == 0x80)
			continue;
		if (need && cut - (i - 1) < need)
			cut = i - 1;
		break;
	}
	return cut;
}

/* ---- the tail ------------------------------------------------------------ */

static void plain_add(struct outmux_stream *s, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (p[i] == '\033') {
			size_t k = esc_len(p + i, n - i);

			i += k ? k : n - i;
			continue;
		}
		if (p[i] == '\r') {
			s->plain_len = 0;
		} else if (s->plain_len + 1 < sizeof(s->plain)) {
			s->plain[s->plain_len++] = p[i];
		}
		i++;
	}
}

static void plain_end_line(struct outmux_stream *s)
{
	size_t n = s->plain_len;

	while (n && (s->plain[n - 1] == ' ' || s->plain[n - 1] == '\t'))
		n--;
	if (n) {
		char *slot = s->tail[s->n_tail % OUTMUX_TAIL_LINES];

		memcpy(slot, s->plain, n);
		slot[n] = '\0';
		s->n_tail++;
	}
	s->plain_len = 0;
}

const char *outmux_tail(const struct outmux_stream *s, unsigned k, unsigned *count)
{
	unsigned n = s->n_tail < OUTMUX_TAIL_LINES ? s->n_tail : OUTMUX_TAIL_LINES;

	if (count)
		*count = n;
	if (k >= n)
		return NULL;
	return s->tail[(s->n_tail - n + k) % OUTMUX_TAIL_LINES];
}

/* ---- writing ------------------------------------------------------------- */

/* Write buf[0, n) of s's line; complete: the line ends there. */
static void emit(struct outmux_stream *s, size_t n, bool complete)
{
	struct outmux *m = s->m;
	const char *p = s->buf;
	size_t i, len = n, start = 0;

	if (complete && len && p[len - 1] == '\r')
		len--;
	/* What a terminal would show of a line with a lone '\r'. */
	for (i = 0; i < len; i++)
		if (p[i] == '\r')
			start = i + 1;
	close_open_line(m, s);
	if (!s->line_open) {
		prefix(s);
		s->line_open = true;
	}
	if (start) {
		/* The colour of the dropped part still holds. */
		sgr_scan(s->sgr, p, start);
	}
	puts_(m, s->sgr);
	put(m, p + start, len - start);
	plain_add(s, p, len);
	sgr_scan(s->sgr, p + start, len - start);
	if (s->sgr[0])
		puts_(m, "\033[0m");
	if (complete) {
		puts_(m, "\n");
		s->line_open = false;
		m->open = NULL;
		plain_end_line(s);
	} else {
		m->open = s;
	}
	memmove(s->buf, s->buf + n, s->len - n);
	s->len -= n;
	s->pending_since = 0;
}

void outmux_write(struct outmux_stream *s, const void *data, size_t n, long long now_ms)
{
	const char *p = data;
	size_t i;

	pthread_mutex_lock(&s->m->mu);
	s->last_output = now_ms;
	for (i = 0; i < n; i++) {
		if (p[i] == '\n') {
			emit(s, s->len, true);
			continue;
		}
		if (s->len == sizeof(s->buf)) {
			size_t cut = safe_cut(s->buf, s->len);

			emit(s, cut ? cut : s->len, false);
		}
		if (!s->len)
			s->pending_since = now_ms;
		s->buf[s->len++] = p[i];
	}
	pthread_mutex_unlock(&s->m->mu);
}

void outmux_tick(struct outmux_stream *s, long long now_ms, bool force)
{
	pthread_mutex_lock(&s->m->mu);
	if (s->len && (force || now_ms - s->pending_since >= OUTMUX_PARTIAL_MS)) {
		size_t cut = force ? s->len : safe_cut(s->buf, s->len);

		if (cut)
			emit(s, cut, false);
	}
	/* The job is done: its open line ends. */
	if (force && s->line_open) {
		close_open_line(s->m, NULL);
		s->line_open = false;
		plain_end_line(s);
	}
	pthread_mutex_unlock(&s->m->mu);
}

void outmux_note(struct outmux_stream *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->m->mu);
	/* A note never joins an open line, not even its own job's. */
	close_open_line(s->m, NULL);
	prefix(s);
	if (s->m->colour)
		puts_(s->m, "\033[2m");
	puts_(s->m, line);
	puts_(s->m, s->m->colour ? "\033[0m\n" : "\n");
	pthread_mutex_unlock(&s->m->mu);
}

void outmux_print(struct outmux *m, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&m->mu);
	close_open_line(m, NULL);
	puts_(m, line);
	puts_(m, "\n");
	pthread_mutex_unlock(&m->mu);
}

long long outmux_last_output(struct outmux_stream *s)
{
	long long t;

	pthread_mutex_lock(&s->m->mu);
	t = s->last_output;
	pthread_mutex_unlock(&s->m->mu);
	return t;
}

void outmux_pause(struct outmux *m)
{
	pthread_mutex_lock(&m->mu);
	close_open_line(m, NULL);
}

void outmux_resume(struct outmux *m)
{
	pthread_mutex_unlock(&m->mu);
}
