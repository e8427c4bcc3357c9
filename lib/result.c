#include "lib/result.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Messages are one line, whatever the input they quote holds (a job name
 * with a newline, an escape sequence): control characters become C
 * escapes (\n, \r, \t, \xHH), and the message is cut where they no
 * longer fit. */
static void one_line(struct kiln_err *e)
{
	char out[sizeof(e->msg)];
	size_t i, o = 0;

	for (i = 0; e->msg[i] && !is_control((unsigned char)e->msg[i]); i++)
		;
	if (!e->msg[i])
		return;
	for (i = 0; e->msg[i]; i++) {
		unsigned char c = (unsigned char)e->msg[i];
		int k;

		if (!is_control(c)) {
			if (o + 1 >= sizeof(out))
				break;
			out[o++] = (char)c;
			continue;
		}
		if (c == '\n')
			k = snprintf(out + o, sizeof(out) - o, "\\n");
		else if (c == '\r')
			k = snprintf(out + o, sizeof(out) - o, "\\r");
		else if (c == '\t')
			k = snprintf(out + o, sizeof(out) - o, "\\t");
		else
			k = snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
		if (k < 0 || (size_t)k >= sizeof(out) - o)
			break;
		o += (size_t)k;
	}
	out[o] = '\0';
	memcpy(e->msg, out, o + 1);
}

enum kiln_rc kiln_fail(struct kiln_err *e, enum kiln_rc rc, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return rc;
	e->rc = rc;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	one_line(e);
	return rc;
}

enum kiln_rc kiln_fail_errno(struct kiln_err *e, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t n;

	if (e == NULL)
		return KILN_E_IO;
	e->rc = KILN_E_IO;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	n = strlen(e->msg);
	snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(saved));
	one_line(e);
	return KILN_E_IO;
}

const char *kiln_rc_str(enum kiln_rc rc)
{
	switch (rc) {
	case KILN_OK: return "ok";
	case KILN_E_NOMEM: return "out of memory";
	case KILN_E_IO: return "i/o error";
	case KILN_E_SYNTAX: return "syntax error";
	case KILN_E_INVALID: return "invalid";
	case KILN_E_NOTFOUND: return "not found";
	case KILN_E_EXEC: return "command failed";
	case KILN_E_LIMIT: return "limit reached";
	}
	return "unknown";
}
