/* Exit statuses of the kiln command line. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,   /* the operation failed */
	EXIT_USAGE = 2,  /* bad command line */
};

#include <stdarg.h>

/* Print "kiln: error: [CMD: ]MSG (see kiln [CMD ]--help)" on stderr and
 * return EXIT_USAGE; cmd is NULL for the top level. */
int cli_usage_errorv(const char *cmd, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
