/* One result type for the runner layer: every fallible runner function
 * returns enum kiln_rc and, when it fails, fills a struct kiln_err with a
 * one-line message that names what is wrong and where. */
#ifndef KILN_RESULT_H
#define KILN_RESULT_H

#include <stddef.h>

enum kiln_rc {
	KILN_OK = 0,
	KILN_E_NOMEM,    /* allocation failed */
	KILN_E_IO,       /* a system call failed */
	KILN_E_SYNTAX,   /* input could not be parsed */
	KILN_E_INVALID,  /* input parsed but is not acceptable */
	KILN_E_NOTFOUND, /* a named thing does not exist */
	KILN_E_EXEC,     /* a child process failed */
	KILN_E_LIMIT,    /* a ceiling was reached */
};

struct kiln_err {
	enum kiln_rc rc;
	char msg[512];
};

/* Record rc and a printf-style message in e (which may be NULL); returns rc
 * so callers can write `return kiln_fail(e, KILN_E_IO, "...")`. The message
 * stays one line: control characters in it (from quoted input) are written
 * as C escapes. */
enum kiln_rc kiln_fail(struct kiln_err *e, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like kiln_fail, appending ": strerror(errno)". */
enum kiln_rc kiln_fail_errno(struct kiln_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A short constant name for rc ("io error", ...). */
const char *kiln_rc_str(enum kiln_rc rc);

#endif
