#include "lib/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/clock.h"

int sd_notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	socklen_t salen;
	ssize_t n;
	int fd, ret = -1;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	/* "/path" or "@abstract"; nothing else is in the protocol. */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	do
		n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)strlen(state))
		ret = 0;
	close(fd);
	return ret;
}

/* The watchdog period in ms, 0 when none is asked of this process. */
static long watchdog_ms(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;
	unsigned long long v;

	if (!usec || !*usec)
		return 0;
	if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno || *end || v < 1000 || v / 1000 > INT32_MAX)
		return 0;
	return (long)(v / 1000);
}

long sd_notify_tick(bool stopping, long wait_ms)
{
	static bool stopping_sent;
	static int64_t last_ping;
	long period = watchdog_ms();
	int64_t now = mono_ms();

	if (stopping && !stopping_sent) {
		stopping_sent = true;
		sd_notify_send("STOPPING=1\nSTATUS=no new jobs; waiting for the running ones");
	}
	if (period <= 0)
		return wait_ms;
	if (last_ping == 0 || now - last_ping >= period / 4) {
		sd_notify_send("WATCHDOG=1");
		last_ping = now;
	}
	return wait_ms > period / 2 ? period / 2 : wait_ms;
}
