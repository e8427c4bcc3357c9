/* Runner logging: one line per message on stderr, "kiln: " prefix, as text
 * or JSON lines. Levels below the configured one are dropped. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

enum kiln_log_level { KILN_LOG_ERROR, KILN_LOG_WARN, KILN_LOG_INFO, KILN_LOG_DEBUG };

/* Set the least important level that is still printed (default INFO). */
void kiln_log_set_level(enum kiln_log_level level);
/* Print messages as JSON objects, one per line, instead of text. */
void kiln_log_set_json(int on);

void kiln_log(enum kiln_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) kiln_log(KILN_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) kiln_log(KILN_LOG_WARN, __VA_ARGS__)
#define log_info(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define log_debug(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)

/* Start-up failure: print "kiln: error: MSG" and exit with status. */
void kiln_die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

#endif
