#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/rng.h"
#include "vmm/virtio/virtio.h"

/* Fake guest: 1 MiB of RAM with the rings at fixed addresses. */
#define RAM_SIZE (1u << 20)
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static uint8_t *ram;
static struct guest_mem mem;
static struct virtq vq;

static void ram_setup(void)
{
	ram = calloc(1, RAM_SIZE);
	ck_assert_ptr_nonnull(ram);
	mem = (struct guest_mem){ .host = ram, .low_size = RAM_SIZE };
	vq = (struct virtq){ .size = 8, .ready = true, .desc_gpa = DESC, .avail_gpa = AVAIL, .used_gpa = USED };
}

static void ram_teardown(void)
{
	free(ram);
	ram = NULL;
}

static void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vdesc d = { addr, len, flags, next };

	memcpy(ram + DESC + 16 * i, &d, sizeof(d));
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

/* Publish head in the avail ring of a queue of size qsize. */
static void avail_add(uint16_t qsize, uint16_t head)
{
	uint16_t idx = rd16(AVAIL + 2);

	wr16(AVAIL + 4 + 2 * (idx % qsize), head);
	wr16(AVAIL + 2, (uint16_t)(idx + 1));
}

/* --- rings ------------------------------------------------------------- */

START_TEST(valid_checks_layout)
{
	struct virtq q = vq;

	ck_assert(virtq_valid(&q, &mem));
	q.ready = false;
	ck_assert(!virtq_valid(&q, &mem));
	q = vq;
	q.size = 0;
	ck_assert(!virtq_valid(&q, &mem));
	q.size = 6;  /* not a power of two */
	ck_assert(!virtq_valid(&q, &mem));
	q.size = 512;
	ck_assert(!virtq_valid(&q, &mem));
	q = vq;
	q.desc_gpa = DESC + 8;  /* misaligned */
	ck_assert(!virtq_valid(&q, &mem));
	q = vq;
	q.avail_gpa = AVAIL + 1;
	ck_assert(!virtq_valid(&q, &mem));
	q = vq;
	q.used_gpa = USED + 2;
	ck_assert(!virtq_valid(&q, &mem));
	q = vq;
	q.used_gpa = RAM_SIZE - 8;  /* runs off the end of RAM */
	ck_assert(!virtq_valid(&q, &mem));
	q = vq;
	q.desc_gpa = UINT64_MAX - 15;
	ck_assert(!virtq_valid(&q, &mem));
}
END_TEST

START_TEST(normal_chain)
{
	struct virtq_chain c, c2;
	uint8_t buf[32];

	memset(ram + DATA, 'r', 16);
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 5);
	set_desc(5, DATA + 0x100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(2, DATA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	avail_add(8, 0);

	ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_CHAIN);
	ck_assert_uint_eq(c.head, 0);
	ck_assert_uint_eq(c.n, 3);
	ck_assert_uint_eq(c.readable, 16);
	ck_assert_uint_eq(c.writable, 513);
	ck_assert_ptr_eq(c.seg[0].addr, ram + DATA);
	ck_assert(!c.seg[0].device_writes);
	ck_assert_ptr_eq(c.seg[1].addr, ram + DATA + 0x100);
	ck_assert(c.seg[2].device_writes);
	ck_assert_int_eq(virtq_pop(&vq, &mem, &c2), VIRTQ_EMPTY);

	/* Copies stop at the end of their direction and cross segments. */
	ck_assert_uint_eq(virtq_chain_read(&c, 10, buf, sizeof(buf)), 6);
	ck_assert_uint_eq(buf[0], 'r');
	ck_assert_uint_eq(virtq_chain_write(&c, 510, "xyz", 3), 3);
	ck_assert_mem_eq(ram + DATA + 0x100 + 510, "xy", 2);
	ck_assert_uint_eq(ram[DATA + 0x400], 'z');
	ck_assert_uint_eq(virtq_chain_write(&c, 512, "abc", 3), 1);
	ck_assert_uint_eq(virtq_chain_write(&c, 600, "abc", 3), 0);

	ck_assert(virtq_push(&vq, &mem, c.head, 513));
	ck_assert_uint_eq(rd16(USED + 2), 1);
	ck_assert_uint_eq(rd32(USED + 4), 0);
	ck_assert_uint_eq(rd32(USED + 8), 513);
}
END_TEST

/* Indices are free-running 16-bit counters: they must wrap cleanly. */
START_TEST(index_wraparound)
{
	struct virtq_chain c;
	int i;

	vq.size = 4;
	vq.last_avail = 65534;
	vq.used_idx = 65534;
	wr16(AVAIL + 2, 65534);
	wr16(USED + 2, 65534);
	set_desc(0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	set_desc(1, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	for (i = 0; i < 4; i++)
		avail_add(4, (uint16_t)(i & 1));
	ck_assert_uint_eq(rd16(AVAIL + 2), 2);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_CHAIN);
		ck_assert_uint_eq(c.head, (unsigned)(i & 1));
		ck_assert(virtq_push(&vq, &mem, c.head, 8));
	}
	ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_EMPTY);
	ck_assert_uint_eq(rd16(USED + 2), 2);
	ck_assert_uint_eq(vq.last_avail, 2);
}
END_TEST

START_TEST(undo_pop_returns_same_chain)
{
	struct virtq_chain c;

	set_desc(3, DATA, 64, 0, 0);
	set_desc(4, DATA, 64, 0, 0);
	avail_add(8, 3);
	avail_add(8, 4);
	ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_CHAIN);
	ck_assert_uint_eq(c.head, 3);
	virtq_undo_pop(&vq);
	ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_CHAIN);
	ck_assert_uint_eq(c.head, 3);
	ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_CHAIN);
	ck_assert_uint_eq(c.head, 4);
}
END_TEST

START_TEST(notify_suppression)
{
	ck_assert(virtq_should_notify(&vq, &mem));
	wr16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	ck_assert(!virtq_should_notify(&vq, &mem));
}
END_TEST

/* A chain of exactly size descriptors is fine; one more is not. */
START_TEST(chain_as_long_as_queue)
{
	struct virtq_chain c;
	uint16_t i;

	for (i = 0; i < 8; i++)
		set_desc(i, DATA + 16 * i, 16, i < 7 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	avail_add(8, 0);
	ck_assert_int_eq(virtq_pop(&vq, &mem, &c), VIRTQ_CHAIN);
	ck_assert_uint_eq(c.n, 8);
	ck_assert_uint_eq(c.readable, 128);
}
END_TEST

/* --- malicious rings ---------------------------------------------------- */

static enum virtq_result pop_one(void)
{
	struct virtq_chain c;

	return virtq_pop(&vq, &mem, &c);
}

START_TEST(descriptor_loop)
{
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(descriptor_self_loop)
{
	set_desc(2, DATA, 0, VIRTQ_DESC_F_NEXT, 2);
	avail_add(8, 2);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

/* All size descriptors, then back to the first: longer than the queue. */
START_TEST(chain_longer_than_queue)
{
	uint16_t i;

	for (i = 0; i < 8; i++)
		set_desc(i, DATA, 16, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % 8));
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(next_out_of_range)
{
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 8);
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	vq.last_avail = 0;
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(address_outside_ram)
{
	set_desc(0, RAM_SIZE, 1, 0, 0);
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	set_desc(0, RAM_SIZE - 4, 8, VIRTQ_DESC_F_WRITE, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	set_desc(0, GM_GAP_START, 4, 0, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	/* Rings themselves outside RAM. */
	set_desc(0, DATA, 4, 0, 0);
	vq.desc_gpa = RAM_SIZE - 16;
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	vq.desc_gpa = DESC;
	vq.avail_gpa = RAM_SIZE - 4;
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(address_length_overflow)
{
	set_desc(0, UINT64_MAX - 7, 16, 0, 0);
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	set_desc(0, UINT64_MAX, 1, 0, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(avail_idx_runs_ahead)
{
	set_desc(0, DATA, 16, 0, 0);
	wr16(AVAIL + 2, 9);  /* 9 > size 8 entries outstanding */
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	wr16(AVAIL + 2, 0xffff);  /* "behind" is ahead by 65535 */
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	wr16(AVAIL + 2, 8);  /* exactly a full ring is fine */
	ck_assert_int_eq(pop_one(), VIRTQ_CHAIN);
}
END_TEST

START_TEST(head_out_of_range)
{
	set_desc(0, DATA, 16, 0, 0);
	avail_add(8, 8);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	vq.last_avail = 0;
	wr16(AVAIL + 4, 0xffff);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(indirect_refused)
{
	set_desc(0, DATA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	/* Also in the middle of a chain. */
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, DATA, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

START_TEST(writable_then_readable)
{
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc(1, DATA + 16, 16, 0, 0);
	avail_add(8, 0);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	/* A zero-length writable segment still counts. */
	set_desc(0, DATA, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

/* Three 2 GiB buffers: each inside (reserved, never touched) RAM, 6 GiB in
 * total, which no 32-bit length can describe. */
START_TEST(total_over_4g)
{
	uint64_t size = 3ULL << 30;
	struct guest_mem big;
	struct virtq_chain c;
	uint8_t *h;

	h = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert_ptr_ne(h, MAP_FAILED);
	ck_assert_int_eq(mprotect(h, RAM_SIZE, PROT_READ | PROT_WRITE), 0);
	big = (struct guest_mem){ .host = h, .low_size = size };
	memcpy(h + DESC, &(struct vdesc){ 0x40000000, 0x80000000u, VIRTQ_DESC_F_NEXT, 1 }, 16);
	memcpy(h + DESC + 16, &(struct vdesc){ 0x40000000, 0x80000000u, VIRTQ_DESC_F_NEXT, 2 }, 16);
	memcpy(h + DESC + 32, &(struct vdesc){ 0x40000000, 0x80000000u, 0, 0 }, 16);
	memcpy(h + AVAIL + 2, &(uint16_t){ 1 }, 2);
	ck_assert_int_eq(virtq_pop(&vq, &big, &c), VIRTQ_BROKEN);
	/* Two of them (exactly 4 GiB) overflow 32 bits as well. */
	memcpy(h + DESC + 16, &(struct vdesc){ 0x40000000, 0x80000000u, 0, 0 }, 16);
	ck_assert_int_eq(virtq_pop(&vq, &big, &c), VIRTQ_BROKEN);
	/* One is fine. */
	memcpy(h + DESC, &(struct vdesc){ 0x40000000, 0x80000000u, 0, 0 }, 16);
	ck_assert_int_eq(virtq_pop(&vq, &big, &c), VIRTQ_CHAIN);
	ck_assert_uint_eq(c.readable, 0x80000000u);
	munmap(h, size);
}
END_TEST

START_TEST(push_checks)
{
	ck_assert(!virtq_push(&vq, &mem, 8, 0));
	vq.used_gpa = RAM_SIZE - 16;
	ck_assert(!virtq_push(&vq, &mem, 0, 0));
	vq.used_gpa = USED + 2;
	ck_assert(!virtq_push(&vq, &mem, 0, 0));
}
END_TEST

START_TEST(not_ready_is_broken)
{
	vq.ready = false;
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
	vq.ready = true;
	vq.size = 3;
	ck_assert_int_eq(pop_one(), VIRTQ_BROKEN);
}
END_TEST

/* --- mmio transport, with a test device --------------------------------- */

#define TDEV_BASE 0xc0001000ULL

static struct virtio_dev tdev;
static struct evloop tloop;
static int activate_calls, activate_result, reset_calls, notify_calls;
static bool stop_on_notify;

static uint64_t tdev_features(struct virtio_dev *d)
{
	(void)d;
	return 1ULL << 3 | 1ULL << 40;
}

static void tdev_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	static const uint8_t cfg[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
	uint32_t i;

	(void)d;
	for (i = 0; i < len; i++)
		((uint8_t *)data)[i] = off + i < sizeof(cfg) ? cfg[off + i] : 0;
}

static int tdev_activate(struct virtio_dev *d)
{
	(void)d;
	activate_calls++;
	return activate_result;
}

/* Complete every chain with length 0, like a trivial device would. */
static void tdev_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtq_chain c;
	enum virtq_result r;

	notify_calls++;
	if (stop_on_notify)
		ev_stop(d->loop);
	while ((r = virtq_pop(&d->vq[q], d->mem, &c)) == VIRTQ_CHAIN)
		virtq_push(&d->vq[q], d->mem, c.head, 0);
	if (r == VIRTQ_BROKEN)
		virtio_needs_reset(d, "test ring broken");
	virtio_notify_used(d, q);
}

static void tdev_reset(struct virtio_dev *d)
{
	(void)d;
	reset_calls++;
}

static const struct virtio_dev_ops tdev_ops = {
	.name = "test",
	.device_id = 42,
	.num_queues = 2,
	.queue_max = 16,
	.features = tdev_features,
	.config_read = tdev_config_read,
	.activate = tdev_activate,
	.queue_notify = tdev_queue_notify,
	.reset = tdev_reset,
};

static uint32_t mr(uint64_t off)
{
	uint32_t v;

	virtio_mmio_access(&tdev, off, (uint8_t *)&v, 4, false);
	return v;
}

static void mw(uint64_t off, uint32_t v)
{
	virtio_mmio_access(&tdev, off, (uint8_t *)&v, 4, true);
}

static uint64_t irq_count(void)
{
	uint64_t n = 0;

	if (read(tdev.irqfd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static void mmio_setup(void)
{
	ram_setup();
	activate_calls = reset_calls = notify_calls = 0;
	activate_result = 0;
	stop_on_notify = false;
	ck_assert_int_eq(ev_init(&tloop), 0);
	ck_assert_int_eq(virtio_mmio_init(&tdev, &tdev_ops, NULL, &mem, &tloop, TDEV_BASE, 5), 0);
	/* No KVM: the test reads the interrupt eventfd itself. */
	tdev.irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(tdev.irqfd, 0);
}

static void mmio_teardown(void)
{
	virtio_mmio_detach(&tdev);
	ev_close(&tloop);
	ram_teardown();
}

/* ACKNOWLEDGE, DRIVER, features, FEATURES_OK as a driver would. */
static void negotiate(uint64_t features)
{
	mw(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	mw(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mw(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_FEATURES_OK);
}

static void setup_queue(uint32_t sel, uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
	mw(VIRTIO_MMIO_QUEUE_SEL, sel);
	mw(VIRTIO_MMIO_QUEUE_NUM, num);
	mw(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	mw(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	mw(VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	mw(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	mw(VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	mw(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	mw(VIRTIO_MMIO_QUEUE_READY, 1);
}

static void bring_up(void)
{
	negotiate(1ULL << VIRTIO_F_VERSION_1 | 1ULL << 3);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_FEATURES_OK);
	setup_queue(0, 8, DESC, AVAIL, USED);
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
}

START_TEST(mmio_register_reads)
{
	uint8_t b[8];
	uint16_t h;

	ck_assert_uint_eq(mr(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_VERSION_REG), 2);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_ID), 42);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
	mw(VIRTIO_MMIO_QUEUE_SEL, 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
	mw(VIRTIO_MMIO_QUEUE_SEL, 2);  /* no such queue */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_READY), 0);
	mw(VIRTIO_MMIO_QUEUE_READY, 1);  /* ignored, and no crash */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_READY), 0);
	/* Write-only and reserved registers read as 0. */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_DESC_LOW), 0);
	ck_assert_uint_eq(mr(0x0f8), 0);
	/* Registers take 32-bit accesses only. */
	memset(b, 0xee, sizeof(b));
	virtio_mmio_access(&tdev, VIRTIO_MMIO_MAGIC_VALUE, b, 2, false);
	memcpy(&h, b, 2);
	ck_assert_uint_eq(h, 0);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_MAGIC_VALUE, b, 8, false);
	ck_assert_uint_eq(b[0] | b[7], 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_MAGIC_VALUE + 1), 0);  /* unaligned */
	h = VIRTIO_STATUS_ACKNOWLEDGE;
	virtio_mmio_access(&tdev, VIRTIO_MMIO_STATUS, (uint8_t *)&h, 2, true);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), 0);
	/* Outside the window, or absurd lengths: nothing happens. */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_SIZE), 0);
	ck_assert_uint_eq(mr(UINT64_MAX - 1), 0);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_STATUS, b, 0, true);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_STATUS, b, 1000, true);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), 0);
}
END_TEST

START_TEST(mmio_device_features)
{
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_FEATURES), 1u << 3);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	/* VERSION_1 (bit 32) is the transport's, bit 40 the device's. */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_FEATURES), 1u << 0 | 1u << 8);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_FEATURES), 0);
}
END_TEST

START_TEST(mmio_features_ok_refused)
{
	/* Without VERSION_1 (a legacy driver). */
	negotiate(1ULL << 3);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* With a bit that was never offered. */
	mw(VIRTIO_MMIO_STATUS, 0);
	negotiate(1ULL << VIRTIO_F_VERSION_1 | 1ULL << 5);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0);
	negotiate(1ULL << VIRTIO_F_VERSION_1 | 1ULL << 63);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0);
	/* A subset of what is offered is accepted, then frozen. */
	mw(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(tdev.driver_features, 0);
	negotiate(1ULL << VIRTIO_F_VERSION_1 | 1ULL << 40);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_FEATURES_OK);
	mw(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw(VIRTIO_MMIO_DRIVER_FEATURES, 1u << 3);
	ck_assert_uint_eq(tdev.driver_features, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 40);
	ck_assert(virtio_has_feature(&tdev, 40));
	ck_assert(!virtio_has_feature(&tdev, 3));
}
END_TEST

START_TEST(mmio_queue_setup)
{
	bring_up();
	ck_assert_int_eq(activate_calls, 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
							   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(virtio_live(&tdev));
	ck_assert_uint_eq(tdev.vq[0].size, 8);
	ck_assert_uint_eq(tdev.vq[0].desc_gpa, DESC);
	ck_assert_uint_eq(tdev.vq[0].avail_gpa, AVAIL);
	ck_assert_uint_eq(tdev.vq[0].used_gpa, USED);
	mw(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_READY), 1);
	/* Queue registers are frozen while the queue is ready. */
	mw(VIRTIO_MMIO_QUEUE_NUM, 4);
	mw(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
	ck_assert_uint_eq(tdev.vq[0].size, 8);
	ck_assert_uint_eq(tdev.vq[0].desc_gpa, DESC);
	/* Setting DRIVER_OK again does not re-activate. */
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS));
	ck_assert_int_eq(activate_calls, 1);

	/* A request goes through the MMIO notify path and comes back used. */
	set_desc(0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(notify_calls, 1);
	ck_assert_uint_eq(rd16(USED + 2), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED);
	ck_assert_uint_eq(irq_count(), 1);
	mw(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_USED);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* Queue 1 is not ready, queue 7 does not exist: ignored. */
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 7);
	ck_assert_int_eq(notify_calls, 1);

	/* Reset clears the queues and the features. */
	mw(VIRTIO_MMIO_STATUS, 0);
	ck_assert_int_eq(reset_calls, 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(tdev.driver_features, 0);
	ck_assert_uint_eq(tdev.vq[0].size, 0);
	ck_assert(!tdev.vq[0].ready);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(notify_calls, 1);
}
END_TEST

START_TEST(mmio_bad_queue_at_driver_ok)
{
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	setup_queue(0, 32, DESC, AVAIL, USED);  /* over QueueNumMax */
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(activate_calls, 0);

	mw(VIRTIO_MMIO_STATUS, 0);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	setup_queue(1, 8, DESC, AVAIL, RAM_SIZE - 4);  /* used ring off the end */
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);
	ck_assert(!virtio_live(&tdev));

	/* DRIVER_OK before FEATURES_OK is a protocol error too. */
	mw(VIRTIO_MMIO_STATUS, 0);
	mw(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);

	/* The device's own failure to start. */
	mw(VIRTIO_MMIO_STATUS, 0);
	activate_result = -ENOMEM;
	bring_up();
	ck_assert_int_eq(activate_calls, 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);
}
END_TEST

START_TEST(mmio_needs_reset_after_broken_ring)
{
	bring_up();
	irq_count();
	set_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG, VIRTIO_INT_CONFIG);
	ck_assert_uint_ge(irq_count(), 1);
	ck_assert(!virtio_live(&tdev));
	/* Not served any more until reset. */
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(notify_calls, 1);
	/* The driver cannot clear it by writing status. */
	mw(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);

	/* After a reset a fixed ring works again, from index 0. */
	mw(VIRTIO_MMIO_STATUS, 0);
	memset(ram + AVAIL, 0, 0x100);
	memset(ram + USED, 0, 0x100);
	set_desc(1, DATA, 16, 0, 0);
	bring_up();
	ck_assert(virtio_live(&tdev));
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(rd16(USED + 2), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

START_TEST(mmio_config_space)
{
	uint8_t b[8];
	uint64_t v64;
	uint32_t v32;

	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG + 1, b, 1, false);
	ck_assert_uint_eq(b[0], 0x22);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG + 2, b, 2, false);
	ck_assert_uint_eq(b[0] | b[1] << 8, 0x4433);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG + 4, (uint8_t *)&v32, 4, false);
	ck_assert_uint_eq(v32, 0x88776655);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG, (uint8_t *)&v64, 8, false);
	ck_assert_uint_eq(v64, 0x8877665544332211ULL);
	memset(b, 0xee, sizeof(b));
	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG, b, 3, false);  /* odd size */
	ck_assert_uint_eq(b[0] | b[1] | b[2], 0);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&v32, 4, false);  /* past the end */
	ck_assert_uint_eq(v32, 0x8877);
	virtio_mmio_access(&tdev, VIRTIO_MMIO_SIZE - 2, (uint8_t *)&v64, 8, false);
	ck_assert_uint_eq(v64, 0);
	/* No config_write: writes are dropped. */
	virtio_mmio_access(&tdev, VIRTIO_MMIO_CONFIG, b, 4, true);
}
END_TEST

START_TEST(mmio_config_generation)
{
	uint32_t g = mr(VIRTIO_MMIO_CONFIG_GENERATION);

	bring_up();
	irq_count();
	pthread_mutex_lock(&tdev.lock);
	virtio_config_changed(&tdev);
	pthread_mutex_unlock(&tdev.lock);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG_GENERATION), g + 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	ck_assert_uint_eq(irq_count(), 1);
	mw(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_CONFIG);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* A reset does not send the generation back to a value seen before. */
	mw(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG_GENERATION), g + 1);
}
END_TEST

/* Before DRIVER_OK a config change raises nothing (the guest may not have
 * set up its interrupt controllers); the driver hears of it at DRIVER_OK. */
START_TEST(mmio_config_change_held_until_driver_ok)
{
	uint32_t g = mr(VIRTIO_MMIO_CONFIG_GENERATION);

	irq_count();
	pthread_mutex_lock(&tdev.lock);
	virtio_config_changed(&tdev);
	pthread_mutex_unlock(&tdev.lock);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG_GENERATION), g + 1);
	ck_assert_uint_eq(irq_count(), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	bring_up();
	ck_assert_uint_eq(irq_count(), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	mw(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_CONFIG);
	/* Told once: a reset and a new start raise nothing more. */
	mw(VIRTIO_MMIO_STATUS, 0);
	bring_up();
	ck_assert_uint_eq(irq_count(), 0);
}
END_TEST

START_TEST(mmio_used_notification_suppressed)
{
	bring_up();
	irq_count();
	wr16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	set_desc(0, DATA, 16, 0, 0);
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(rd16(USED + 2), 1);
	ck_assert_uint_eq(irq_count(), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}
END_TEST

/* With /dev/kvm: attach wires an irqfd and an ioeventfd per queue, and a
 * kick on the ioeventfd reaches queue_notify through the event loop. */
START_TEST(mmio_attach_kvm)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;
	uint64_t one = 1;
	int q;

	if (kvm < 0)
		return;  /* no KVM here: covered where it exists */
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	ck_assert_int_ge(vm, 0);
	ck_assert_int_eq(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	close(tdev.irqfd);
	tdev.irqfd = -1;
	ck_assert_int_eq(virtio_mmio_attach_kvm(&tdev, vm), 0);
	ck_assert_int_ge(tdev.irqfd, 0);
	for (q = 0; q < tdev_ops.num_queues; q++)
		ck_assert_int_ge(tdev.ioeventfd[q], 0);
	ck_assert_int_eq(tdev.ioeventfd[2], -1);

	bring_up();
	set_desc(0, DATA, 16, 0, 0);
	avail_add(8, 0);
	stop_on_notify = true;
	ck_assert_int_eq(write(tdev.ioeventfd[0], &one, sizeof(one)), sizeof(one));
	alarm(10);
	ck_assert_int_eq(ev_run(&tloop), 0);
	alarm(0);
	ck_assert_int_eq(notify_calls, 1);
	ck_assert_uint_eq(rd16(USED + 2), 1);

	virtio_mmio_detach(&tdev);
	ck_assert_int_eq(tdev.irqfd, -1);
	ck_assert_int_eq(tdev.ioeventfd[0], -1);
	/* Teardown detaches again: make that a no-op on a fresh device. */
	ck_assert_int_eq(virtio_mmio_init(&tdev, &tdev_ops, NULL, &mem, &tloop, TDEV_BASE, 5), 0);
	close(vm);
	close(kvm);
}
END_TEST

/* --- virtio-rng, the simplest device on the transport ------------------ */

static void rng_setup(void)
{
	void *priv;

	mmio_setup();
	virtio_mmio_detach(&tdev);
	ck_assert_int_eq(virtio_rng_open(&priv), 0);
	ck_assert_int_eq(virtio_mmio_init(&tdev, &virtio_rng_ops, priv, &mem, &tloop, TDEV_BASE, 5), 0);
	tdev.irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(tdev.irqfd, 0);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	setup_queue(0, 8, DESC, AVAIL, USED);
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(virtio_live(&tdev));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

START_TEST(rng_fills_buffers)
{
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	set_desc(0, DATA, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, DATA + 0x100, 64, VIRTQ_DESC_F_WRITE, 0);
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(rd16(USED + 2), 1);
	ck_assert_uint_eq(rd32(USED + 8), 128);
	ck_assert(!all_zero(ram + DATA, 64));
	ck_assert(!all_zero(ram + DATA + 0x100, 64));
	ck_assert(all_zero(ram + DATA + 64, 0x100 - 64));
	ck_assert_uint_eq(irq_count(), 1);
}
END_TEST

/* 192 KiB offered, 64 KiB filled: one guest request cannot make the loop
 * thread generate unbounded amounts. */
START_TEST(rng_bounded_per_chain)
{
	set_desc(0, DATA, 0x30000, VIRTQ_DESC_F_WRITE, 0);
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(rd16(USED + 2), 1);
	ck_assert_uint_eq(rd32(USED + 8), VIRTIO_RNG_MAX_CHAIN);
	ck_assert(all_zero(ram + DATA + VIRTIO_RNG_MAX_CHAIN, 0x30000 - VIRTIO_RNG_MAX_CHAIN));
	/* A readable-only chain gets nothing, and is still returned. */
	set_desc(1, DATA, 16, 0, 0);
	avail_add(8, 1);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(rd16(USED + 2), 2);
	ck_assert_uint_eq(rd32(USED + 16), 0);
}
END_TEST

START_TEST(rng_broken_ring)
{
	set_desc(0, DATA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	avail_add(8, 0);
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_ne(mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	ck_assert_uint_eq(rd16(USED + 2), 0);
}
END_TEST

Suite *virtq_suite(void)
{
	Suite *s = suite_create("virtq");
	TCase *tc = tcase_create("rings");
	TCase *bad = tcase_create("malicious");
	TCase *mm = tcase_create("mmio");
	TCase *rng = tcase_create("rng");

	tcase_add_checked_fixture(tc, ram_setup, ram_teardown);
	tcase_add_test(tc, valid_checks_layout);
	tcase_add_test(tc, normal_chain);
	tcase_add_test(tc, index_wraparound);
	tcase_add_test(tc, undo_pop_returns_same_chain);
	tcase_add_test(tc, notify_suppression);
	tcase_add_test(tc, chain_as_long_as_queue);
	tcase_add_test(tc, push_checks);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(bad, ram_setup, ram_teardown);
	tcase_add_test(bad, descriptor_loop);
	tcase_add_test(bad, descriptor_self_loop);
	tcase_add_test(bad, chain_longer_than_queue);
	tcase_add_test(bad, next_out_of_range);
	tcase_add_test(bad, address_outside_ram);
	tcase_add_test(bad, address_length_overflow);
	tcase_add_test(bad, avail_idx_runs_ahead);
	tcase_add_test(bad, head_out_of_range);
	tcase_add_test(bad, indirect_refused);
	tcase_add_test(bad, writable_then_readable);
	tcase_add_test(bad, total_over_4g);
	tcase_add_test(bad, not_ready_is_broken);
	suite_add_tcase(s, bad);

	tcase_add_checked_fixture(mm, mmio_setup, mmio_teardown);
	tcase_add_test(mm, mmio_register_reads);
	tcase_add_test(mm, mmio_device_features);
	tcase_add_test(mm, mmio_features_ok_refused);
	tcase_add_test(mm, mmio_queue_setup);
	tcase_add_test(mm, mmio_bad_queue_at_driver_ok);
	tcase_add_test(mm, mmio_needs_reset_after_broken_ring);
	tcase_add_test(mm, mmio_config_space);
	tcase_add_test(mm, mmio_config_generation);
	tcase_add_test(mm, mmio_config_change_held_until_driver_ok);
	tcase_add_test(mm, mmio_used_notification_suppressed);
	tcase_add_test(mm, mmio_attach_kvm);
	suite_add_tcase(s, mm);

	tcase_add_checked_fixture(rng, rng_setup, mmio_teardown);
	tcase_add_test(rng, rng_fills_buffers);
	tcase_add_test(rng, rng_bounded_per_chain);
	tcase_add_test(rng, rng_broken_ring);
	suite_add_tcase(s, rng);
	return s;
}
