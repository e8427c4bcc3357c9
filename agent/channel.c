#include "agent/channel.h"
#include "agent/log.h"
#include "agent/proto.h"
#include "lib/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

/* Between attempts: 1 ms, doubling up to 100 ms. A restored VM's agent
 * reconnects the moment the transport reset ends its stream, and the
 * host's listener is usually there: a refusal then is a short race, not
 * a host that is late. */
#define RETRY_FIRST_MS 1
#define RETRY_MAX_MS 100
#define PORTS_DIR "/sys/class/virtio-ports"

static int vsock_connect(void)
{
	struct sockaddr_vm sa = {
		.svm_family = AF_VSOCK,
		.svm_cid = VMADDR_CID_HOST,
		.svm_port = AP_VSOCK_PORT,
	};
	int fd = -1, rc;

	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		close(fd);
		fd = -1;
		return rc;
	}
	return fd;
}

/* Whether the sysfs file `path` holds exactly CHANNEL_PORT_NAME. */
static int is_agent_port(const char *path)
{
	char name[64];
	int fd = -1;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, name, sizeof(name) - 1);
	close(fd);
	fd = -1;
	if (n <= 0)
		return 0;
	name[n] = '\0';
	name[strcspn(name, "\n")] = '\0';
	return !strcmp(name, CHANNEL_PORT_NAME);
}

static int console_open(void)
{
	DIR *d = opendir(PORTS_DIR);
	struct dirent *e;
	char path[512];
	int rc = -ENOENT;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), PORTS_DIR "/%s/name", e->d_name);
		if (!is_agent_port(path))
			continue;
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		rc = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (rc < 0)
			rc = -errno;
		break;
	}
	closedir(d);
	return rc;
}

int channel_open(const char *kind, int timeout_ms)
{
	int (*attempt)(void);
	long long deadline = mono_ms() + timeout_ms;
	long pause_ms;
	int fd;

	if (!strcmp(kind, "vsock"))
		attempt = vsock_connect;
	else if (!strcmp(kind, "virtio-console"))
		attempt = console_open;
	else {
		say("kiln.channel=%s: want vsock or virtio-console", kind);
		return -EINVAL;
	}
	for (pause_ms = RETRY_FIRST_MS;; pause_ms = pause_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : pause_ms * 2) {
		struct timespec pause_ts = { 0, pause_ms * 1000000L };

		fd = attempt();
		if (fd >= 0 || mono_ms() >= deadline)
			break;
		nanosleep(&pause_ts, NULL);
	}
	if (fd < 0)
		say("%s: no host stream after %d ms: %s", kind, timeout_ms, strerror(-fd));
	return fd;
}
