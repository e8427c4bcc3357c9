#include "runner/cli.h"

#include <stdio.h>

int cli_usage_errorv(const char *cmd, const char *fmt, va_list ap)
{
	fprintf(stderr, "kiln: error: %s%s", cmd ? cmd : "", cmd ? ": " : "");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see kiln %s%s--help)\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = cli_usage_errorv(NULL, fmt, ap);
	va_end(ap);
	return rc;
}
