/* The output of several jobs on one terminal, for `kiln exec`: every line
 * of a job prefixed by its name, padded ("build   > $ make"), kiln's own
 * lines likewise, the pipeline's lines without a prefix.
 *
 * - A job's bytes are kept until the end of their line; a partial line is
 *   written once it is OUTMUX_PARTIAL_MS old (outmux_tick) or
 *   OUTMUX_LINE_MAX long, and continues on the same terminal line when
 *   nothing else was written in between (else on a new prefixed one). A
 *   partial write never cuts an escape sequence or a UTF-8 character.
 * - Colours: the job's own escape sequences pass through. The colour in
 *   effect (the SGR sequences since the last reset) is reset before each
 *   line break and applied again after the next prefix, so that a prefix
 *   is never painted by a job and a job's colour spans its lines as it
 *   meant. With colour on (a terminal), prefixes get one of a few colours
 *   by job and kiln's lines are dim.
 * - "\r\n" ends a line like "\n"; of a line holding a lone '\r' only what
 *   follows the last one is written (what a terminal would show).
 * - Each stream keeps its last OUTMUX_TAIL_LINES non-empty complete lines
 *   as plain text (escape sequences and '\r' removed), for a summary.
 * Thread-safe: one mutex per outmux; writes are whole chunks. */
#ifndef KILN_OUTMUX_H
#define KILN_OUTMUX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define OUTMUX_LINE_MAX 4096
#define OUTMUX_PARTIAL_MS 100
#define OUTMUX_TAIL_LINES 3
#define OUTMUX_TAIL_LEN 240
#define OUTMUX_SGR_MAX 64
#define OUTMUX_NAME_MAX 64

/* Where the text goes: fd 1, or a test's buffer. */
typedef void (*outmux_write_fn)(void *arg, const char *buf, size_t n);

struct outmux_stream;

struct outmux {
	pthread_mutex_t mu;
	outmux_write_fn write;
	void *write_arg;
	bool colour;
	int width;                      /* names are padded to it */
	struct outmux_stream *open;     /* the stream whose line the cursor is on */
};

struct outmux_stream {
	struct outmux *m;
	char name[OUTMUX_NAME_MAX + 1];
	int colour;                     /* an SGR colour number for the prefix */
	char buf[OUTMUX_LINE_MAX];      /* the line's bytes not written yet */
	size_t len;
	long long pending_since;        /* ms; when buf got its first byte */
	bool line_open;                 /* this stream's line is started on the terminal */
	char sgr[OUTMUX_SGR_MAX];       /* the colour in effect before buf */
	char tail[OUTMUX_TAIL_LINES][OUTMUX_TAIL_LEN];
	unsigned n_tail;                /* lines in tail, the newest at (n_tail - 1) % N */
	char plain[OUTMUX_TAIL_LEN];    /* the current line as plain text */
	size_t plain_len;
	long long last_output;          /* ms; the last byte from the job */
};

/* write NULL: to fd 1. width: the longest name to pad to (capped at
 * OUTMUX_NAME_MAX). */
void outmux_init(struct outmux *m, outmux_write_fn write, void *arg, bool colour, int width);
void outmux_destroy(struct outmux *m);

/* index picks the prefix colour. */
void outmux_stream_init(struct outmux *m, struct outmux_stream *s, const char *name, unsigned index,
			long long now_ms);

/* n bytes of the job's log, arrived at now_ms. */
void outmux_write(struct outmux_stream *s, const void *buf, size_t n, long long now_ms);
/* Write a partial line that has waited OUTMUX_PARTIAL_MS (or, with force,
 * any partial line: the job ended). */
void outmux_tick(struct outmux_stream *s, long long now_ms, bool force);
/* One line of kiln's own about the job, prefixed (and dim). */
void outmux_note(struct outmux_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line of the pipeline's, without prefix. */
void outmux_print(struct outmux *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hand the terminal to something else (an interactive shell): the open
 * line is ended, then every writer waits until outmux_resume. */
void outmux_pause(struct outmux *m);
void outmux_resume(struct outmux *m);

/* When the job last wrote anything (ms, as passed to outmux_write). */
long long outmux_last_output(struct outmux_stream *s);

/* The k-th of the last complete lines, oldest first (k < count), or NULL. */
const char *outmux_tail(const struct outmux_stream *s, unsigned k, unsigned *count);

#endif
