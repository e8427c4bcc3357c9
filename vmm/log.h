/* kiln-vmm logging: "kiln-vmm: " prefix, one line per message on stderr.
 * die() is for start-up only, before the guest runs. */
#ifndef VMM_LOG_H
#define VMM_LOG_H

void vmm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Debug messages, printed only when $KILN_VMM_DEBUG is set. */
void vmm_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmm_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
