/* Telling systemd how a Type=notify service is doing: the sd_notify
 * protocol (one datagram of NAME=VALUE lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET), spoken directly rather than through libsystemd. Without
 * $NOTIFY_SOCKET (not under systemd, Type=exec) every call is a no-op. */
#ifndef KILN_SDNOTIFY_H
#define KILN_SDNOTIFY_H

#include <stdbool.h>

/* Send state ("READY=1", "STOPPING=1\nSTATUS=draining", ...) to
 * $NOTIFY_SOCKET. 0 when sent or when there is no socket; -1 with errno
 * when the address is unusable or the send failed (the caller may ignore
 * it: systemd then times the service out, which is what it should see). */
int sd_notify_send(const char *state);

/* Once per turn of a daemon's main loop: WATCHDOG=1 when systemd asked for
 * a watchdog ($WATCHDOG_USEC, for this pid), at most every quarter period;
 * STOPPING=1 the first time stopping is true. Returns wait_ms, lowered to
 * half the watchdog period so that the loop wakes in time to ping. */
long sd_notify_tick(bool stopping, long wait_ms);

#endif
