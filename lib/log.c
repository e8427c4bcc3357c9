#include "lib/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static enum kiln_log_level log_level = KILN_LOG_INFO;
static int log_json;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void kiln_log_set_level(enum kiln_log_level level) { log_level = level; }
void kiln_log_set_json(int on) { log_json = on; }

/* "<N>", the line's syslog priority, when stderr is the journal (systemd
 * sets $JOURNAL_STREAM to its device:inode), which then files the line
 * under that priority and drops the prefix; "" anywhere else. */
static const char *journal_prefix(enum kiln_log_level level)
{
	static const char *const prio[] = { "<3>", "<4>", "<6>", "<7>" };
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) < 0 ||
	    (unsigned long long)st.st_dev != dev || (unsigned long long)st.st_ino != ino)
		return "";
	return prio[level];
}

static void log_emit(enum kiln_log_level level, const char *fmt, va_list ap)
{
	const char *pfx = journal_prefix(level);
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
			fprintf(stderr, "%s%s\n", pfx, s);
		free(s);
		json_decref(o);
		return;
	}
	if (level == KILN_LOG_INFO)
		fprintf(stderr, "%skiln: %s\n", pfx, msg);
	else
		fprintf(stderr, "%skiln: %s: %s\n", pfx, level_names[level], msg);
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
