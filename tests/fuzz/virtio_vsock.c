/* virtio-vsock behind virtio-mmio, driven by a fuzzed guest (fguest.h),
 * with a fuzzed host side: clients of the device's Unix socket (the
 * "CONNECT <port>\n" handshake, then data), and a host service on port
 * 1024 that the guest may connect to. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/fuzz/fguest.h"
#include "vmm/virtio/vsock.h"

#define MAX_FDS 8
#define SERVICE_PORT 1024

static char dir[64], uds[96], service_path[128];
static int service_fd = -1;
static int clients[MAX_FDS], n_clients;    /* host clients of uds */
static int accepted[MAX_FDS], n_accepted;  /* guest connections to the service */

static int unix_socket(const char *path, bool listening)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	FUZZ_CHECK(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (listening) {
		FUZZ_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 16) == 0);
	} else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		close(fd);  /* backlog full: EAGAIN */
		return -1;
	}
	return fd;
}

static void cleanup(void)
{
	unlink(service_path);
	unlink(uds);
	rmdir(dir);
}

static void vs_init(void)
{
	snprintf(dir, sizeof(dir), "%s/kiln-fuzz-vsock-XXXXXX", fuzz_tmpdir());
	FUZZ_CHECK(mkdtemp(dir));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	snprintf(service_path, sizeof(service_path), "%s_%u", uds, SERVICE_PORT);
	service_fd = unix_socket(service_path, true);
	atexit(cleanup);
}

static int vs_open(void **priv, struct fuzz_in *in)
{
	struct vm_vsock_cfg cfg = { .present = true, .guest_cid = 3, .uds_path = uds };

	(void)in;
	n_clients = n_accepted = 0;
	return virtio_vsock_open(priv, &cfg);
}

static void vs_close(void *priv)
{
	int fd, i;

	virtio_vsock_close(priv);
	for (i = 0; i < n_clients; i++)
		close(clients[i]);
	for (i = 0; i < n_accepted; i++)
		close(accepted[i]);
	/* Guest connections the service never took. */
	while ((fd = accept4(service_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
	n_clients = n_accepted = 0;
}

static void vs_command(struct fguest *g, struct fuzz_in *in)
{
	uint8_t op = fuzz_u8(in), k = fuzz_u8(in);
	int *set = op & 0x80 ? accepted : clients, n = op & 0x80 ? n_accepted : n_clients;
	uint8_t buf[4096];
	size_t len;
	const uint8_t *p;
	int fd;

	(void)g;
	switch (op % 5) {
	case 0:  /* a host client connects, or the service takes a guest's */
		if (op & 0x80) {
			fd = accept4(service_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0 && n_accepted < MAX_FDS)
				accepted[n_accepted++] = fd;
			else if (fd >= 0)
				close(fd);
		} else if (n_clients < MAX_FDS && (fd = unix_socket(uds, false)) >= 0) {
			clients[n_clients++] = fd;
		}
		return;
	case 1:  /* the handshake line, for a guest port */
		if (n == 0)
			return;
		len = (size_t)snprintf((char *)buf, sizeof(buf), "CONNECT %u\n", fuzz_u32(in) % 2048);
		p = buf;
		break;
	case 2:  /* bytes */
		if (n == 0)
			return;
		p = fuzz_bytes(in, fuzz_u8(in), &len);
		break;
	case 3:  /* half or full close */
		if (n == 0)
			return;
		if (op & 0x40) {
			shutdown(set[k % n], SHUT_WR);
		} else {
			close(set[k % n]);
			set[k % n] = set[n - 1];
			if (op & 0x80)
				n_accepted--;
			else
				n_clients--;
		}
		return;
	default:  /* read what came */
		if (n > 0)
			while (read(set[k % n], buf, sizeof(buf)) > 0)
				;
		return;
	}
	if (send(set[k % n], p, len, MSG_NOSIGNAL) < 0)
		FUZZ_CHECK(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
}

static const struct fg_device vsock = {
	.ops = &virtio_vsock_ops,
	.init = vs_init,
	.open = vs_open,
	.close = vs_close,
	.command = vs_command,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fg_run(&vsock, data, size);
}
