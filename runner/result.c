#include "runner/result.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum kiln_rc kiln_fail(struct kiln_err *e, enum kiln_rc rc, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return rc;
	e->rc = rc;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
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
