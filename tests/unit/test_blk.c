#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "lib/clock.h"
#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/ratelimit.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/virtio.h"

/* A virtio-blk device driven through its registers like a guest driver
 * would, over a 1 MiB fake RAM and a 1 MiB disk image. */
#define RAM_SIZE (1u << 20)
#define QSIZE 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define HDR 0x8000     /* request headers, 16 bytes apart */
#define STATUS 0x9000  /* status bytes, 1 apart */
#define DATA 0x10000
#define DISK_SECTORS 2048
#define DISK_SIZE (DISK_SECTORS * 512)

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static uint8_t *ram;
static struct guest_mem mem;
static struct evloop loop;
static struct virtio_dev dev;
static void *blk;
static char dir[PATH_MAX], image[PATH_MAX];
static uint8_t *orig;
static uint16_t next_desc;  /* descriptors are handed out in order */

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i ^ (i >> 9) ^ 0x5a);
}

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

static bool base_unchanged(void)
{
	uint8_t *now = malloc(DISK_SIZE);
	int fd = open(image, O_RDONLY);
	bool same;

	ck_assert_ptr_nonnull(now);
	ck_assert_int_ge(fd, 0);
	same = read(fd, now, DISK_SIZE) == DISK_SIZE && memcmp(now, orig, DISK_SIZE) == 0;
	close(fd);
	free(now);
	return same;
}

/* Open the drive and plug it into the transport; no driver yet. */
static void open_drive(bool read_only, bool cow, const struct rate_limiter_cfg *rl)
{
	struct vm_drive_cfg cfg = { .id = "kiln-disk0", .path = image, .read_only = read_only, .cow = cow };

	if (rl) {
		cfg.has_rate_limiter = true;
		cfg.rate_limiter = *rl;
	}
	ck_assert_int_eq(virtio_blk_open(&blk, &cfg, dir, mono_ns()), 0);
	ck_assert_int_eq(virtio_mmio_init(&dev, &virtio_blk_ops, blk, &mem, &loop, 0xc0001000, 5), 0);
	dev.irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(dev.irqfd, 0);
}

static void blk_setup(void)
{
	size_t i;
	int fd;

	ram = calloc(1, RAM_SIZE);
	ck_assert_ptr_nonnull(ram);
	mem = (struct guest_mem){ .host = ram, .low_size = RAM_SIZE };
	next_desc = 0;
	snprintf(dir, sizeof(dir), "/tmp/kiln-blk-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(image, sizeof(image), "%s/disk.img", dir);
	orig = malloc(DISK_SIZE);
	ck_assert_ptr_nonnull(orig);
	for (i = 0; i < DISK_SIZE; i++)
		orig[i] = pattern(i);
	fd = open(image, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, orig, DISK_SIZE), DISK_SIZE);
	close(fd);
	ck_assert_int_eq(ev_init(&loop), 0);
	blk = NULL;
}

static void blk_teardown(void)
{
	if (blk) {
		virtio_mmio_detach(&dev);
		virtio_blk_close(blk);
		blk = NULL;
	}
	ev_close(&loop);
	unlink(image);
	rmdir(dir);
	free(orig);
	free(ram);
	orig = NULL;
	ram = NULL;
}

/* The driver side of initialisation (3.1.1): accept every offered
 * feature, one queue of QSIZE, DRIVER_OK. */
static void driver_init(void)
{
	uint32_t lo, hi;

	mw(VIRTIO_MMIO_STATUS, 0);
	memset(ram + DESC, 0, USED + 0x1000 - DESC);
	next_desc = 0;
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
	mw(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
	mw(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	mw(VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
	mw(VIRTIO_MMIO_QUEUE_DRIVER_LOW, AVAIL);
	mw(VIRTIO_MMIO_QUEUE_DEVICE_LOW, USED);
	mw(VIRTIO_MMIO_QUEUE_READY, 1);
	mw(VIRTIO_MMIO_STATUS, mr(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(virtio_live(&dev));
}

static uint16_t add_desc(uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = next_desc++ % QSIZE;
	struct vdesc d = { addr, len, flags, (uint16_t)((i + 1) % QSIZE) };

	memcpy(ram + DESC + 16 * i, &d, sizeof(d));
	return i;
}

/* The last descriptor added ends its chain. */
static void end_chain(void)
{
	uint16_t i = (uint16_t)((next_desc + QSIZE - 1) % QSIZE), flags;

	memcpy(&flags, ram + DESC + 16 * i + 12, 2);
	flags &= (uint16_t)~VIRTQ_DESC_F_NEXT;
	memcpy(ram + DESC + 16 * i + 12, &flags, 2);
}

static void publish(uint16_t head)
{
	uint16_t idx = rd16(AVAIL + 2);

	wr16(AVAIL + 4 + 2 * (idx % QSIZE), head);
	wr16(AVAIL + 2, (uint16_t)(idx + 1));
}

/* Queue one request: header, data segments of the given lengths at DATA
 * (device-writable when in), then the status byte; slot picks distinct
 * header and status addresses. Returns the head. */
static uint16_t queue_req(unsigned slot, uint32_t type, uint64_t sector, bool in, const uint32_t *lens, int nlens)
{
	struct req_hdr h = { type, 0, sector };
	uint64_t data = DATA;
	uint16_t head;
	int i;

	memcpy(ram + HDR + 16 * slot, &h, sizeof(h));
	ram[STATUS + slot] = 0xff;
	head = add_desc(HDR + 16 * slot, sizeof(h), VIRTQ_DESC_F_NEXT);
	for (i = 0; i < nlens; i++) {
		add_desc(data, lens[i], VIRTQ_DESC_F_NEXT | (in ? VIRTQ_DESC_F_WRITE : 0));
		data += lens[i];
	}
	add_desc(STATUS + slot, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
	end_chain();
	publish(head);
	return head;
}

static void kick(void)
{
	mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static uint16_t used_idx(void)
{
	return rd16(USED + 2);
}

static uint32_t used_len(uint16_t n)
{
	return rd32(USED + 4 + 8 * (n % QSIZE) + 4);
}

static uint32_t used_id(uint16_t n)
{
	return rd32(USED + 4 + 8 * (n % QSIZE));
}

static uint64_t irqs(void)
{
	uint64_t n = 0;

	if (read(dev.irqfd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static bool needs_reset(void)
{
	return mr(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET;
}

START_TEST(blk_config_and_features)
{
	uint64_t cap;
	uint32_t lo, hi;

	open_drive(false, true, NULL);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	ck_assert_uint_eq(lo, 1u << VIRTIO_BLK_F_FLUSH | 1u << VIRTIO_BLK_F_SEG_MAX | 1u << VIRTIO_BLK_F_BLK_SIZE);
	ck_assert_uint_eq(hi, 1u << (VIRTIO_F_VERSION_1 - 32));
	virtio_mmio_access(&dev, VIRTIO_MMIO_CONFIG, (uint8_t *)&cap, 8, false);
	ck_assert_uint_eq(cap, DISK_SECTORS);
	/* The way Linux reads a 64-bit field: two 32-bit halves. */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG), DISK_SECTORS);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG + 4), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG + 12), 254);  /* seg_max */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG + 20), 512);  /* blk_size */
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG + 0x100), 0);
}
END_TEST

START_TEST(blk_read)
{
	const uint32_t lens[] = { 100, 924 };  /* framing need not follow sectors */
	uint16_t head;

	open_drive(false, true, NULL);
	driver_init();
	irqs();
	head = queue_req(0, VIRTIO_BLK_T_IN, 1, true, lens, 2);
	kick();
	ck_assert_uint_eq(used_idx(), 1);
	ck_assert_uint_eq(used_id(0), head);
	ck_assert_uint_eq(used_len(0), 1025);
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig + 512, 1024) == 0);
	ck_assert_uint_eq(irqs(), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED);
	/* Last sector of the disk. */
	head = queue_req(1, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, true, (uint32_t[]){ 512 }, 1);
	kick();
	ck_assert_uint_eq(used_idx(), 2);
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig + DISK_SIZE - 512, 512) == 0);
}
END_TEST

START_TEST(blk_write_then_read)
{
	uint16_t head;
	int i;

	open_drive(false, true, NULL);
	driver_init();
	for (i = 0; i < 1536; i++)
		ram[DATA + i] = (uint8_t)(i * 3 + 1);
	head = queue_req(0, VIRTIO_BLK_T_OUT, 5, false, (uint32_t[]){ 1000, 536 }, 2);
	kick();
	ck_assert_uint_eq(used_idx(), 1);
	ck_assert_uint_eq(used_id(0), head);
	ck_assert_uint_eq(used_len(0), 1);
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_OK);

	memset(ram + DATA, 0, 4096);
	queue_req(1, VIRTIO_BLK_T_IN, 4, true, (uint32_t[]){ 2560 }, 1);
	kick();
	ck_assert_uint_eq(used_idx(), 2);
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig + 4 * 512, 512) == 0);
	for (i = 0; i < 1536; i++)
		ck_assert_uint_eq(ram[DATA + 512 + i], (uint8_t)(i * 3 + 1));
	ck_assert(memcmp(ram + DATA + 2048, orig + 8 * 512, 512) == 0);

	queue_req(2, VIRTIO_BLK_T_FLUSH, 0, false, NULL, 0);
	kick();
	ck_assert_uint_eq(used_idx(), 3);
	ck_assert_uint_eq(ram[STATUS + 2], VIRTIO_BLK_S_OK);
	/* cow: the image itself never changes. */
	ck_assert(base_unchanged());
}
END_TEST

/* Several requests in one kick, completed in order with one interrupt. */
START_TEST(blk_batch)
{
	unsigned i;

	open_drive(false, false, NULL);
	driver_init();
	irqs();
	memset(ram + DATA, 0x77, 512);
	queue_req(0, VIRTIO_BLK_T_OUT, 10, false, (uint32_t[]){ 512 }, 1);
	queue_req(1, VIRTIO_BLK_T_FLUSH, 0, false, NULL, 0);
	queue_req(2, VIRTIO_BLK_T_GET_ID, 0, true, (uint32_t[]){ 20 }, 1);
	queue_req(3, 99, 0, false, NULL, 0);
	kick();
	ck_assert_uint_eq(used_idx(), 4);
	for (i = 0; i < 3; i++)
		ck_assert_uint_eq(ram[STATUS + i], VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(ram[STATUS + 3], VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(irqs(), 1);
	/* Not cow: the write reached the image. */
	memset(orig + 10 * 512, 0x77, 512);
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(blk_get_id)
{
	open_drive(false, true, NULL);
	driver_init();
	memset(ram + DATA, 0xee, 32);
	queue_req(0, VIRTIO_BLK_T_GET_ID, 0, true, (uint32_t[]){ 20 }, 1);
	kick();
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_len(0), 21);
	ck_assert_mem_eq(ram + DATA, "kiln-disk0\0\0\0\0\0\0\0\0\0\0", 20);
	ck_assert_uint_eq(ram[DATA + 20], 0xee);
	/* A smaller buffer gets what fits. */
	memset(ram + DATA, 0xee, 32);
	queue_req(1, VIRTIO_BLK_T_GET_ID, 0, true, (uint32_t[]){ 4 }, 1);
	kick();
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(ram + DATA, "kiln", 4);
	ck_assert_uint_eq(ram[DATA + 4], 0xee);
}
END_TEST

START_TEST(blk_out_of_range)
{
	open_drive(false, true, NULL);
	driver_init();
	/* Starts inside, ends past the capacity. */
	queue_req(0, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, true, (uint32_t[]){ 1024 }, 1);
	/* Starts at the capacity. */
	queue_req(1, VIRTIO_BLK_T_OUT, DISK_SECTORS, false, (uint32_t[]){ 512 }, 1);
	/* sector * 512 overflows 64 bits. */
	queue_req(2, VIRTIO_BLK_T_IN, UINT64_MAX / 256, true, (uint32_t[]){ 512 }, 1);
	queue_req(3, VIRTIO_BLK_T_OUT, UINT64_MAX, false, (uint32_t[]){ 512 }, 1);
	/* Not whole sectors. */
	queue_req(4, VIRTIO_BLK_T_IN, 0, true, (uint32_t[]){ 100 }, 1);
	kick();
	ck_assert_uint_eq(used_idx(), 5);
	ck_assert_uint_eq(ram[STATUS + 0], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(ram[STATUS + 2], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(ram[STATUS + 3], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(ram[STATUS + 4], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(used_len(0), 1);
	ck_assert(!needs_reset());
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(blk_read_only)
{
	uint32_t lo;

	open_drive(true, false, NULL);
	mw(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = mr(VIRTIO_MMIO_DEVICE_FEATURES);
	ck_assert_uint_ne(lo & 1u << VIRTIO_BLK_F_RO, 0);
	driver_init();
	memset(ram + DATA, 0x33, 512);
	queue_req(0, VIRTIO_BLK_T_OUT, 0, false, (uint32_t[]){ 512 }, 1);
	queue_req(1, VIRTIO_BLK_T_IN, 0, true, (uint32_t[]){ 512 }, 1);
	queue_req(2, VIRTIO_BLK_T_FLUSH, 0, false, NULL, 0);
	kick();
	ck_assert_uint_eq(used_idx(), 3);
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(ram[STATUS + 2], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig, 512) == 0);
	ck_assert(base_unchanged());
}
END_TEST

/* The host fills in a drive's image after start (kiln's workspace while
 * the guest boots): a rescan gives the driver the new capacity with a
 * configuration-change interrupt, and the new bytes read back. */
START_TEST(blk_rescan_after_fill)
{
	uint32_t gen;
	int fd, ro = _i;

	fd = open(image, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	open_drive(ro, false, NULL);
	driver_init();
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG), 0);
	queue_req(0, VIRTIO_BLK_T_IN, 0, true, (uint32_t[]){ 512 }, 1);
	kick();
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_IOERR);  /* nothing there yet */
	irqs();
	mw(VIRTIO_MMIO_INTERRUPT_ACK, mr(VIRTIO_MMIO_INTERRUPT_STATUS));
	gen = mr(VIRTIO_MMIO_CONFIG_GENERATION);
	ck_assert_int_eq(virtio_blk_rescan(&dev), 0);  /* unchanged: no interrupt */
	ck_assert_uint_eq(irqs(), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG_GENERATION), gen);

	ck_assert_int_eq(write(fd, orig, DISK_SIZE), DISK_SIZE);
	close(fd);
	ck_assert_int_eq(virtio_blk_rescan(&dev), 1);
	ck_assert_uint_eq(irqs(), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	ck_assert_uint_ne(mr(VIRTIO_MMIO_CONFIG_GENERATION), gen);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG), DISK_SECTORS);
	queue_req(1, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, true, (uint32_t[]){ 512 }, 1);
	kick();
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig + DISK_SIZE - 512, 512) == 0);

	/* Shrunk again: the capacity follows and the old end is out of range. */
	ck_assert_int_eq(truncate(image, DISK_SIZE / 2), 0);
	ck_assert_int_eq(virtio_blk_rescan(&dev), 1);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG), DISK_SECTORS / 2);
	queue_req(2, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, true, (uint32_t[]){ 512 }, 1);
	kick();
	ck_assert_uint_eq(ram[STATUS + 2], VIRTIO_BLK_S_IOERR);
	ck_assert(!needs_reset());
}
END_TEST

/* A copy-on-write drive keeps the size its overlay was made for. */
START_TEST(blk_rescan_cow_keeps_size)
{
	uint8_t more[4096] = { 0 };
	int fd;

	open_drive(false, true, NULL);
	driver_init();
	irqs();
	fd = open(image, O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, more, sizeof(more)), (int)sizeof(more));
	close(fd);
	ck_assert_int_eq(virtio_blk_rescan(&dev), 0);
	ck_assert_uint_eq(irqs(), 0);
	ck_assert_uint_eq(mr(VIRTIO_MMIO_CONFIG), DISK_SECTORS);
	ck_assert_int_eq(truncate(image, DISK_SIZE), 0);
	ck_assert(base_unchanged());
}
END_TEST

/* Well-formed rings, badly formed requests: answered, not fatal. */
START_TEST(blk_bad_requests_ioerr)
{
	struct req_hdr h = { VIRTIO_BLK_T_IN, 0, 0 };
	uint16_t head;

	open_drive(false, true, NULL);
	driver_init();
	/* Header shorter than 16 bytes. */
	memcpy(ram + HDR, &h, sizeof(h));
	head = add_desc(HDR, 8, VIRTQ_DESC_F_NEXT);
	add_desc(STATUS, 1, VIRTQ_DESC_F_WRITE);
	publish(head);
	/* Header split over two descriptors is fine (no framing assumed). */
	memcpy(ram + HDR + 16, &h, sizeof(h));
	head = add_desc(HDR + 16, 4, VIRTQ_DESC_F_NEXT);
	add_desc(HDR + 20, 12, VIRTQ_DESC_F_NEXT);
	add_desc(DATA, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
	add_desc(STATUS + 1, 1, VIRTQ_DESC_F_WRITE);
	publish(head);
	kick();
	ck_assert_uint_eq(used_idx(), 2);
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig, 512) == 0);
	ck_assert(!needs_reset());
}
END_TEST

/* No writable byte for the status: nothing sane to answer. */
START_TEST(blk_no_status_needs_reset)
{
	uint16_t head;

	open_drive(false, true, NULL);
	driver_init();
	irqs();
	memcpy(ram + HDR, &(struct req_hdr){ VIRTIO_BLK_T_OUT, 0, 0 }, 16);
	head = add_desc(HDR, 16, VIRTQ_DESC_F_NEXT);
	add_desc(DATA, 512, 0);
	publish(head);
	kick();
	ck_assert(needs_reset());
	ck_assert_uint_eq(used_idx(), 0);
	ck_assert_uint_ne(mr(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG, 0);
	ck_assert_uint_ge(irqs(), 1);
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(blk_broken_ring_needs_reset)
{
	/* Descriptors 2 and 3 point at each other. */
	struct vdesc a = { HDR, 16, VIRTQ_DESC_F_NEXT, 3 }, b = { HDR, 16, VIRTQ_DESC_F_NEXT, 2 };

	open_drive(false, true, NULL);
	driver_init();
	/* A good request first: it completes before the broken one. */
	queue_req(0, VIRTIO_BLK_T_FLUSH, 0, false, NULL, 0);
	memcpy(ram + DESC + 16 * 2, &a, 16);
	memcpy(ram + DESC + 16 * 3, &b, 16);
	publish(2);
	kick();
	ck_assert_uint_eq(used_idx(), 1);
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_OK);
	ck_assert(needs_reset());
	/* Dead until reset: more kicks do nothing. */
	queue_req(1, VIRTIO_BLK_T_FLUSH, 0, false, NULL, 0);
	kick();
	ck_assert_uint_eq(used_idx(), 1);
	/* The driver resets and starts over; the device works again. */
	driver_init();
	ck_assert(!needs_reset());
	queue_req(2, VIRTIO_BLK_T_IN, 0, true, (uint32_t[]){ 512 }, 1);
	kick();
	ck_assert_uint_eq(used_idx(), 1);
	ck_assert_uint_eq(ram[STATUS + 2], VIRTIO_BLK_S_OK);

	/* Avail index running far ahead. */
	wr16(AVAIL + 2, (uint16_t)(rd16(AVAIL + 2) + QSIZE + 1));
	kick();
	ck_assert(needs_reset());
}
END_TEST

/* Buffers outside RAM in an otherwise proper request. */
START_TEST(blk_buffer_outside_ram)
{
	uint16_t head;

	open_drive(false, true, NULL);
	driver_init();
	memcpy(ram + HDR, &(struct req_hdr){ VIRTIO_BLK_T_IN, 0, 0 }, 16);
	head = add_desc(HDR, 16, VIRTQ_DESC_F_NEXT);
	add_desc(RAM_SIZE - 256, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
	add_desc(STATUS, 1, VIRTQ_DESC_F_WRITE);
	publish(head);
	kick();
	ck_assert(needs_reset());
	ck_assert_uint_eq(used_idx(), 0);
}
END_TEST

/* Fires on the loop thread every 10 ms; ends the loop once the queue has
 * caught up or after 3 s. */
struct watchdog {
	int fd;
	int ticks;
	uint16_t want;
};

static void watchdog_tick(void *arg, uint32_t events)
{
	struct watchdog *w = arg;
	uint64_t n;

	(void)events;
	if (read(w->fd, &n, sizeof(n)) < 0)
		return;
	if (used_idx() == w->want || ++w->ticks > 300)
		ev_stop(&loop);
}

/* One op per 50 ms: the second request waits for the limiter's timer,
 * which the event loop delivers. */
START_TEST(blk_rate_limited)
{
	struct rate_limiter_cfg rl = { .ops = { .size = 1, .refill_time_ms = 50 } };
	struct itimerspec its = { .it_interval = { 0, 10000000 }, .it_value = { 0, 10000000 } };
	struct watchdog w = { .want = 2 };

	open_drive(false, true, &rl);
	driver_init();
	queue_req(0, VIRTIO_BLK_T_IN, 0, true, (uint32_t[]){ 512 }, 1);
	queue_req(1, VIRTIO_BLK_T_IN, 1, true, (uint32_t[]){ 512 }, 1);
	kick();
	ck_assert_uint_eq(used_idx(), 1);
	ck_assert_uint_eq(ram[STATUS], VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(ram[STATUS + 1], 0xff);  /* untouched, still queued */
	kick();  /* blocked: a kick does not get past the limiter */
	ck_assert_uint_eq(used_idx(), 1);

	w.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	ck_assert_int_ge(w.fd, 0);
	ck_assert_int_eq(timerfd_settime(w.fd, 0, &its, NULL), 0);
	ck_assert_int_eq(ev_add(&loop, w.fd, EPOLLIN, watchdog_tick, &w), 0);
	ck_assert_int_eq(ev_run(&loop), 0);
	ev_del(&loop, w.fd);
	close(w.fd);
	ck_assert_uint_eq(used_idx(), 2);
	ck_assert_uint_eq(ram[STATUS + 1], VIRTIO_BLK_S_OK);
	ck_assert(memcmp(ram + DATA, orig + 512, 512) == 0);
}
END_TEST

START_TEST(blk_open_errors)
{
	struct vm_drive_cfg cfg = { .id = "x", .path = NULL };
	void *p = (void *)1;

	ck_assert_int_eq(virtio_blk_open(&p, &cfg, dir, mono_ns()), -EINVAL);
	ck_assert_ptr_null(p);
	cfg.path = "/nonexistent/disk.img";
	ck_assert_int_eq(virtio_blk_open(&p, &cfg, dir, mono_ns()), -ENOENT);
	ck_assert_ptr_null(p);
	virtio_blk_close(NULL);
}
END_TEST

Suite *blk_suite(void)
{
	Suite *s = suite_create("blk");
	TCase *tc = tcase_create("requests");
	TCase *bad = tcase_create("hostile");

	tcase_add_checked_fixture(tc, blk_setup, blk_teardown);
	tcase_add_test(tc, blk_config_and_features);
	tcase_add_test(tc, blk_read);
	tcase_add_test(tc, blk_write_then_read);
	tcase_add_test(tc, blk_batch);
	tcase_add_test(tc, blk_get_id);
	tcase_add_test(tc, blk_read_only);
	tcase_add_test(tc, blk_rate_limited);
	tcase_add_test(tc, blk_open_errors);
	tcase_add_loop_test(tc, blk_rescan_after_fill, 0, 2);  /* read-write, read-only */
	tcase_add_test(tc, blk_rescan_cow_keeps_size);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(bad, blk_setup, blk_teardown);
	tcase_add_test(bad, blk_out_of_range);
	tcase_add_test(bad, blk_bad_requests_ioerr);
	tcase_add_test(bad, blk_no_status_needs_reset);
	tcase_add_test(bad, blk_broken_ring_needs_reset);
	tcase_add_test(bad, blk_buffer_outside_ram);
	suite_add_tcase(s, bad);
	return s;
}
