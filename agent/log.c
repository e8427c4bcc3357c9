#include "agent/log.h"

#include <stdarg.h>
#include <stdio.h>

void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	/* Format first and write once, so lines from the agent and a job
	 * sharing the console do not interleave mid-line. */
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kiln-agent: %s\n", line);
}
