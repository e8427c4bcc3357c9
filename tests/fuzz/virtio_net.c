/* virtio-net behind virtio-mmio, driven by a fuzzed guest (fguest.h). The
 * tap is a SOCK_SEQPACKET socketpair whose other end is the host: the
 * device command puts a fuzzed frame on it or takes what the guest sent,
 * which must carry the all-zero vnet header the device promises. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/fuzz/fguest.h"
#include "vmm/ratelimit.h"
#include "vmm/virtio/net.h"

static int host_fd = -1;
static uint8_t frame[VIRTIO_NET_MAX_FRAME + 16];

static int net_open(void **priv, struct fuzz_in *in)
{
	struct vm_net_cfg cfg = { .id = "fuzz", .has_mac = true, .mac = { 2, 0, 0, 0, 0, 1 } };
	int sv[2];

	(void)in;
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	host_fd = sv[1];
	if (virtio_net_open_fd(priv, sv[0], &cfg, mono_ns()) < 0) {
		close(host_fd);
		host_fd = -1;
		return -1;
	}
	return 0;
}

static void net_close(void *priv)
{
	virtio_net_close(priv);
	close(host_fd);
	host_fd = -1;
}

/* Everything the guest sent: whole frames with a zeroed header. */
static void host_drain(void)
{
	static const uint8_t zero[VIRTIO_NET_HDR_SIZE];
	ssize_t r;

	while ((r = read(host_fd, frame, sizeof(frame))) >= 0) {
		FUZZ_CHECK(r >= VIRTIO_NET_HDR_SIZE + 14 && r <= VIRTIO_NET_MAX_FRAME);
		FUZZ_CHECK(memcmp(frame, zero, sizeof(zero)) == 0);
	}
	FUZZ_CHECK(errno == EAGAIN);
}

static void net_command(struct fguest *g, struct fuzz_in *in)
{
	uint8_t op = fuzz_u8(in);
	size_t want, len;
	const uint8_t *p;

	(void)g;
	if (op & 1) {
		host_drain();
		return;
	}
	/* A frame from the host, of any length, its head from the input. */
	want = fuzz_u16(in) + (op & 2 ? 0x10000u : 0);
	if (want > sizeof(frame))
		want = sizeof(frame);
	p = fuzz_bytes(in, want < 256 ? want : 256, &len);
	memset(frame, 0, want);
	memcpy(frame, p, len);
	/* A full socket drops it, as a full tap queue would. */
	if (write(host_fd, frame, want) < 0)
		FUZZ_CHECK(errno == EAGAIN || errno == EMSGSIZE);
}

static const struct fg_device net = {
	.ops = &virtio_net_ops,
	.open = net_open,
	.drains = 1u << 1,
	.close = net_close,
	.command = net_command,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fg_run(&net, data, size);
}
