#include "workspace/gitutil.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum kiln_rc kiln_git_fail(struct kiln_err *e, enum kiln_rc rc, const char *fmt, ...)
{
	const git_error *ge = git_error_last();
	char what[384];
	va_list ap;
	char *p;

	if (e == NULL)
		return rc;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	kiln_fail(e, rc, "%s: %s", what, ge && ge->message ? ge->message : "unknown libgit2 error");
	for (p = e->msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	while (p > e->msg && p[-1] == ' ')
		*--p = '\0';
	return rc;
}

int ws_parse_sha(git_oid *oid, const char *hex)
{
	size_t i;

	if (hex == NULL || strlen(hex) != GIT_OID_HEXSZ)
		return -1;
	for (i = 0; i < GIT_OID_HEXSZ; i++)
		if (!isxdigit((unsigned char)hex[i]))
			return -1;
	return git_oid_fromstr(oid, hex) == 0 ? 0 : -1;
}
