/* virtio-net driven through its registers like a guest driver would, over
 * a 1 MiB fake RAM; the tap is a SOCK_SEQPACKET socketpair whose other end
 * plays the host (virtio_net_open_fd), one frame per read and write. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "lib/clock.h"
#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/ratelimit.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/virtio.h"

#define RAM_SIZE (1u << 20)
#define QSIZE 16
#define RXQ 0
#define TXQ 1
#define QBASE(q) (0x1000u + 0x3000u * (q))  /* desc; avail +4 KiB, used +8 KiB */
#define RXBUF 0x10000u                      /* rx buffers, 4 KiB apart */
#define TXBUF 0x40000u                      /* tx frames, 4 KiB apart */
#define HDR VIRTIO_NET_HDR_SIZE

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static const uint8_t guest_mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };

static uint8_t *ram;
static struct guest_mem mem;
static struct evloop loop;
static struct virtio_dev dev;
static void *net;
static int host_fd = -1;
static uint16_t next_desc[2];

static uint32_t mr(uint64_t off)
{
	uint32_t v;

	virtio_mmio_access(&dev, off, (uint8_t *)&v, 4, false);
	return v;
}

static void mw(uint64_t off, uint32_t v)
{
	virtio_mmio_access(&dev, off, (uint8_t *)&v, 4, true);
}

static uint16_t rd16(uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, ram + gpa, 2);
	return v;
}

static uint32_t rd32(uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, ram + gpa, 4);
	return v;
}

static void wr16(uint64_t gpa, uint16_t v)
{
	memcpy(ram + gpa, &v, 2);
}

/* The device on a fresh socketpair, plugged into the transport, no driver
 * yet; rl (NULL: none) limits tx. */
static void open_net(const struct rate_limiter_cfg *tx_rl)
{
	struct vm_net_cfg cfg = { .id = "net0", .has_mac = true };
	int sv[2];

	memcpy(cfg.mac, guest_mac, sizeof(cfg.mac));
	if (tx_rl) {
		cfg.has_tx_rate_limiter = true;
		cfg.tx_rate_limiter = *tx_rl;
	}
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	host_fd = sv[1];
	ck_assert_int_eq(virtio_net_open_fd(&net, sv[0], &cfg, mono_ns()), 0);
	ck_assert_int_eq(virtio_mmio_init(&dev, &virtio_net_ops, net, &mem, &loop, 0xc0002000, 6), 0);
	dev.irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(dev.irqfd, 0);
}

static void net_setup(void)
{
	ram = calloc(1, RAM_SIZE);
	ck_assert_ptr_nonnull(ram);
	mem = (struct guest_mem){ .host = ram, .low_size = RAM_SIZE };
	next_desc[RXQ] = next_desc[TXQ] = 0;
	ck_assert_int_eq(ev_init(&loop), 0);
	net = NULL;
}

static void net_teardown(void)
{
	if (net) {
		virtio_mmio_detach(&dev);
		virtio_net_close(net);
		net = NULL;
	}
	if (host_fd >= 0)
		close(host_fd);
	host_fd = -1;
	ev_close(&loop);
	free(ram);
	ram = NULL;
}

/* The driver side of initialisation (3.1.1): accept every offered feature,
 * both queues of QSIZE, DRIVER_OK. */
static void driver_init(void)
{
	uint32_t lo, hi, q;

	mw(VIRTIO_MMIO_STATUS, 0);
	mw(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	mw(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw(VIRTIO_MMIO_DRIVER_FEATURES, lo);
	mw(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mw(VIRTIO_MMIO_DRIVER_FEATURES, hi);
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_FEATURES_OK);
	ck_assert_uint_ne(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0);
	for (q = 0; q < 2; q++) {
		mw(VIRTIO_MMIO_QUEUE_SEL, q);
		ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTIO_NET_QUEUE_SIZE);
		mw(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
		mw(VIRTIO_MMIO_QUEUE_DESC_LOW, QBASE(q));
		mw(VIRTIO_MMIO_QUEUE_DRIVER_LOW, QBASE(q) + 0x1000);
		mw(VIRTIO_MMIO_QUEUE_DEVICE_LOW, QBASE(q) + 0x2000);
		mw(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(virtio_live(&dev));
}

/* Add one descriptor to queue q, chained to the next one. */
static uint16_t add_desc(unsigned q, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = next_desc[q]++ % QSIZE;
	struct vdesc d = { addr, len, flags, (uint16_t)((i + 1) % QSIZE) };

	memcpy(ram + QBASE(q) + 16 * i, &d, sizeof(d));
	return i;
}

static void publish(unsigned q, uint16_t head)
{
	uint64_t avail = QBASE(q) + 0x1000;
	uint16_t idx = rd16(avail + 2);

	wr16(avail + 4 + 2 * (idx % QSIZE), head);
	wr16(avail + 2, (uint16_t)(idx + 1));
}

/* Post a device-writable rx buffer of len bytes (slot picks its address). */
static uint16_t post_rx(unsigned slot, uint32_t len)
{
	uint16_t head = add_desc(RXQ, RXBUF + 0x1000u * slot, len, VIRTQ_DESC_F_WRITE);

	publish(RXQ, head);
	return head;
}

/* Queue a tx frame: a guest header of garbage (the device must not pass
 * it on) in its own descriptor, then frame bytes split in two. */
static uint16_t queue_tx(unsigned slot, const uint8_t *frame, uint32_t len)
{
	uint64_t at = TXBUF + 0x1000u * slot;
	uint32_t first = len / 2;
	uint16_t head;

	memset(ram + at, 0xa5, HDR);
	memcpy(ram + at + HDR, frame, len);
	head = add_desc(TXQ, at, HDR, VIRTQ_DESC_F_NEXT);
	add_desc(TXQ, at + HDR, first, VIRTQ_DESC_F_NEXT);
	add_desc(TXQ, at + HDR + first, len - first, 0);
	publish(TXQ, head);
	return head;
}

static void kick(unsigned q)
{
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static uint16_t used_idx(unsigned q)
{
	return rd16(QBASE(q) + 0x2000 + 2);
}

static uint32_t used_id(unsigned q, uint16_t n)
{
	return rd32(QBASE(q) + 0x2000 + 4 + 8 * (n % QSIZE));
}

static uint32_t used_len(unsigned q, uint16_t n)
{
	return rd32(QBASE(q) + 0x2000 + 4 + 8 * (n % QSIZE) + 4);
}

static uint64_t irqs(void)
{
	uint64_t n = 0;

	if (read(dev.irqfd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* An Ethernet frame of len bytes, its bytes a pattern from seed. */
static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
}

/* The host sends a frame: vnet header (flags set, as a tap may) + frame. */
static void host_send(const uint8_t *frame, size_t len)
{
	uint8_t buf[HDR + 2048];

	ck_assert_uint_le(len, sizeof(buf) - HDR);
	memset(buf, 0, HDR);
	buf[0] = 2;  /* VIRTIO_NET_HDR_F_DATA_VALID */
	memcpy(buf + HDR, frame, len);
	ck_assert_int_eq(write(host_fd, buf, HDR + len), (ssize_t)(HDR + len));
}

START_TEST(net_config_and_features)
{
	uint8_t cfg[8];
	uint32_t lo, hi;

	open_net(NULL);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	/* No offloads and no MRG_RXBUF: every frame whole and checksummed. */
	ck_assert_uint_eq(lo, 1u << VIRTIO_NET_F_MAC | 1u << VIRTIO_NET_F_STATUS);
	ck_assert_uint_eq(hi, 1u << (VIRTIO_F_VERSION_1 - 32));
	virtio_mmio_access(&dev, VIRTIO_MMIO_CONFIG, cfg, sizeof(cfg), false);
	ck_assert_mem_eq(cfg, guest_mac, 6);
	ck_assert_uint_eq(cfg[6], VIRTIO_NET_S_LINK_UP);
	ck_assert_uint_eq(cfg[7], 0);
	/* Byte-wise, as some drivers read the MAC, and past the end. */
	virtio_mmio_access(&dev, VIRTIO_MMIO_CONFIG + 5, cfg, 1, false);
	ck_assert_uint_eq(cfg[0], guest_mac[5]);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG + 0x40), 0);
}
END_TEST

START_TEST(net_random_mac_is_local_unicast)
{
	struct vm_net_cfg cfg = { .id = "net0" };
	uint8_t mac[8];  /* the transport takes 1-, 2-, 4- and 8-byte reads */
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	host_fd = sv[1];
	ck_assert_int_eq(virtio_net_open_fd(&net, sv[0], &cfg, mono_ns()), 0);
	ck_assert_int_eq(virtio_mmio_init(&dev, &virtio_net_ops, net, &mem, &loop, 0xc0002000, 6), 0);
	virtio_mmio_access(&dev, VIRTIO_MMIO_CONFIG, mac, sizeof(mac), false);
	ck_assert_uint_eq(mac[0] & 0x03, 0x02);  /* locally administered, not multicast */
}
END_TEST

START_TEST(net_tx_sends_frame_with_zero_header)
{
	static const uint8_t zero[HDR];
	uint8_t frame[60], got[HDR + 128];
	uint16_t head;

	open_net(NULL);
	driver_init();
	irqs();
	make_frame(frame, sizeof(frame), 1);
	head = queue_tx(0, frame, sizeof(frame));
	kick(TXQ);
	ck_assert_uint_eq(used_idx(TXQ), 1);
	ck_assert_uint_eq(used_id(TXQ, 0), head);
	ck_assert_uint_eq(used_len(TXQ, 0), 0);  /* tx writes nothing back */
	ck_assert_uint_eq(irqs(), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED);
	/* One frame on the tap: our zeroed header, then the guest's bytes. */
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), HDR + sizeof(frame));
	ck_assert_mem_eq(got, zero, HDR);
	ck_assert_mem_eq(got + HDR, frame, sizeof(frame));
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), -1);
	ck_assert_int_eq(errno, EAGAIN);
}
END_TEST

/* A chain shorter than header + Ethernet header goes back to the guest,
 * used, but nothing reaches the tap. */
START_TEST(net_tx_runt_dropped)
{
	uint8_t frame[60], got[HDR + 128];
	uint16_t head;

	open_net(NULL);
	driver_init();
	make_frame(frame, sizeof(frame), 3);
	head = queue_tx(0, frame, 13);
	queue_tx(1, frame, sizeof(frame));
	kick(TXQ);
	ck_assert_uint_eq(used_idx(TXQ), 2);
	ck_assert_uint_eq(used_id(TXQ, 0), head);
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), HDR + sizeof(frame));
	ck_assert_mem_eq(got + HDR, frame, sizeof(frame));
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), -1);
}
END_TEST

START_TEST(net_rx_delivers_frame)
{
	uint8_t frame[98], want_hdr[HDR] = { 0 };
	uint16_t head;

	open_net(NULL);
	driver_init();
	irqs();
	make_frame(frame, sizeof(frame), 9);
	host_send(frame, sizeof(frame));
	head = post_rx(0, 1526);
	kick(RXQ);  /* new buffers: the device reads the tap */
	ck_assert_uint_eq(used_idx(RXQ), 1);
	ck_assert_uint_eq(used_id(RXQ, 0), head);
	ck_assert_uint_eq(used_len(RXQ, 0), HDR + sizeof(frame));
	/* The tap's flags do not reach the guest; num_buffers is 1. */
	want_hdr[10] = 1;
	ck_assert_mem_eq(ram + RXBUF, want_hdr, HDR);
	ck_assert_mem_eq(ram + RXBUF + HDR, frame, sizeof(frame));
	ck_assert_uint_eq(irqs(), 1);
}
END_TEST

/* With buffers posted, a frame arriving later is delivered by the event
 * loop (the tap is watched), not by a guest kick. */
START_TEST(net_rx_through_the_event_loop)
{
	uint8_t frame[64];

	open_net(NULL);
	driver_init();
	post_rx(0, 1526);
	post_rx(1, 1526);
	kick(RXQ);
	ck_assert_uint_eq(used_idx(RXQ), 0);
	make_frame(frame, sizeof(frame), 5);
	host_send(frame, sizeof(frame));
	ck_assert_int_ge(ev_run_once(&loop, 1000), 0);
	ck_assert_uint_eq(used_idx(RXQ), 1);
	ck_assert_mem_eq(ram + RXBUF + HDR, frame, sizeof(frame));
	make_frame(frame, sizeof(frame), 6);
	host_send(frame, sizeof(frame));
	ck_assert_int_ge(ev_run_once(&loop, 1000), 0);
	ck_assert_uint_eq(used_idx(RXQ), 2);
	ck_assert_mem_eq(ram + RXBUF + 0x1000 + HDR, frame, sizeof(frame));
}
END_TEST

/* Without MRG_RXBUF a frame must fit one chain: one that does not is
 * dropped and the buffer kept for the next frame; runts from the tap are
 * skipped. */
START_TEST(net_rx_too_big_and_runts_dropped)
{
	uint8_t big[1500], small[60], runt[HDR + 4] = { 0 };
	uint16_t head;

	open_net(NULL);
	driver_init();
	make_frame(big, sizeof(big), 2);
	make_frame(small, sizeof(small), 4);
	host_send(big, sizeof(big));
	ck_assert_int_eq(write(host_fd, runt, sizeof(runt)), (ssize_t)sizeof(runt));
	host_send(small, sizeof(small));
	head = post_rx(0, 512);
	kick(RXQ);
	ck_assert_uint_eq(used_idx(RXQ), 1);
	ck_assert_uint_eq(used_id(RXQ, 0), head);
	ck_assert_uint_eq(used_len(RXQ, 0), HDR + sizeof(small));
	ck_assert_mem_eq(ram + RXBUF + HDR, small, sizeof(small));
}
END_TEST

/* A frame that waits for a buffer is not lost: it goes to the first one
 * posted. */
START_TEST(net_rx_waits_for_a_buffer)
{
	uint8_t frame[80];

	open_net(NULL);
	driver_init();
	make_frame(frame, sizeof(frame), 7);
	host_send(frame, sizeof(frame));
	kick(RXQ);  /* no buffer yet */
	ck_assert_uint_eq(used_idx(RXQ), 0);
	ck_assert_int_ge(ev_run_once(&loop, 0), 0);
	ck_assert_uint_eq(used_idx(RXQ), 0);
	post_rx(0, 1526);
	kick(RXQ);
	ck_assert_uint_eq(used_idx(RXQ), 1);
	ck_assert_mem_eq(ram + RXBUF + HDR, frame, sizeof(frame));
}
END_TEST

/* A tx limiter of one frame: the second chain stays in the ring until the
 * limiter's timer (on the event loop) lets it through. */
START_TEST(net_tx_rate_limited)
{
	struct rate_limiter_cfg rl = { .ops = { .size = 1, .refill_time_ms = 30 } };
	uint8_t frame[60], got[HDR + 128];
	int i;

	open_net(&rl);
	driver_init();
	make_frame(frame, sizeof(frame), 8);
	queue_tx(0, frame, sizeof(frame));
	queue_tx(1, frame, sizeof(frame));
	kick(TXQ);
	ck_assert_uint_eq(used_idx(TXQ), 1);
	kick(TXQ);  /* a kick does not get past the limiter */
	ck_assert_uint_eq(used_idx(TXQ), 1);
	for (i = 0; i < 50 && used_idx(TXQ) < 2; i++)
		ck_assert_int_ge(ev_run_once(&loop, 100), 0);
	ck_assert_uint_eq(used_idx(TXQ), 2);
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), HDR + sizeof(frame));
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), HDR + sizeof(frame));
}
END_TEST

/* A head past the ring's size: the device gives up with NEEDS_RESET and
 * sends nothing; a reset and a fresh driver bring it back. */
START_TEST(net_broken_ring_needs_reset)
{
	uint8_t frame[60], got[HDR + 128];

	open_net(NULL);
	driver_init();
	publish(TXQ, QSIZE + 3);
	kick(TXQ);
	ck_assert_uint_ne(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), -1);
	next_desc[RXQ] = next_desc[TXQ] = 0;
	memset(ram, 0, TXBUF);
	driver_init();
	make_frame(frame, sizeof(frame), 1);
	queue_tx(0, frame, sizeof(frame));
	kick(TXQ);
	ck_assert_uint_eq(used_idx(TXQ), 1);
	ck_assert_int_eq(read(host_fd, got, sizeof(got)), HDR + sizeof(frame));
}
END_TEST

START_TEST(net_open_errors)
{
	struct vm_net_cfg cfg = { .id = "net0", .tap = "kiln-a-tap-name-far-too-long-for-ifnamsiz" };
	void *p = NULL;

	ck_assert_int_eq(virtio_net_open(&p, &cfg, mono_ns()), -EINVAL);
	cfg.tap = NULL;
	ck_assert_int_eq(virtio_net_open(&p, &cfg, mono_ns()), -EINVAL);
	virtio_net_close(NULL);
}
END_TEST

Suite *net_suite(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("frames");

	tcase_add_checked_fixture(tc, net_setup, net_teardown);
	tcase_add_test(tc, net_config_and_features);
	tcase_add_test(tc, net_random_mac_is_local_unicast);
	tcase_add_test(tc, net_tx_sends_frame_with_zero_header);
	tcase_add_test(tc, net_tx_runt_dropped);
	tcase_add_test(tc, net_rx_delivers_frame);
	tcase_add_test(tc, net_rx_through_the_event_loop);
	tcase_add_test(tc, net_rx_too_big_and_runts_dropped);
	tcase_add_test(tc, net_rx_waits_for_a_buffer);
	tcase_add_test(tc, net_tx_rate_limited);
	tcase_add_test(tc, net_broken_ring_needs_reset);
	tcase_add_test(tc, net_open_errors);
	suite_add_tcase(s, tc);
	return s;
}
