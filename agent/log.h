/* Diagnostics of kiln-agent: one line each on stderr, which in the guest is
 * the serial console the VMM logs. */
#ifndef KILN_AGENT_LOG_H
#define KILN_AGENT_LOG_H

/* Print "kiln-agent: <message>\n" on stderr. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
