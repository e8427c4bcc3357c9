#include "lib/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static enum kiln_log_level log_level = KILN_LOG_INFO;
static int log_json;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void kiln_log_set_level(enum kiln_log_level level) { log_level = level; }
void kiln_log_set_json(int on) { log_json = on; }

static void log_emit(enum kiln_log_level level, const char *fmt, va_list ap)
{
	char msg[2048];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_json) {
		char ts[32];
		time_t now = time(NULL);
		struct tm tm;
		json_t *o;
		char *s;

		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
		o = json_pack("{s:s, s:s, s:s}", "time", ts, "level", level_names[level], "msg", msg);
		s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (s)
			fprintf(stderr, "%s\n", s);
		free(s);
		json_decref(o);
		return;
	}
	if (level == KILN_LOG_INFO)
		fprintf(stderr, "kiln: %s\n", msg);
	else
		fprintf(stderr, "kiln: %s: %s\n", level_names[level], msg);
}

void kiln_log(enum kiln_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	log_emit(level, fmt, ap);
	va_end(ap);
}

void kiln_die(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(KILN_LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(status);
}
