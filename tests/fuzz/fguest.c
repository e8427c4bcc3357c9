#include "tests/fuzz/fguest.h"

#include <dirent.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/virtio/mmio.h"

#define GUARD 4096u
#define MMIO_BASE 0xc0001000ULL

static uint8_t *ram_once(void)
{
	static uint8_t *ram;
	uint8_t *m;

	if (ram)
		return ram;
	m = mmap(NULL, FG_RAM_SIZE + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FUZZ_CHECK(m != MAP_FAILED);
	FUZZ_CHECK(mprotect(m + GUARD, FG_RAM_SIZE, PROT_READ | PROT_WRITE) == 0);
	ram = m + GUARD;
	return ram;
}

/* Open fds: the same after an input as before it, or the device leaked. */
static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	FUZZ_CHECK(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

uint8_t *fg_host(struct fguest *g, uint64_t gpa)
{
	uint8_t *p = gm_ptr(&g->mem, gpa, 1);

	FUZZ_CHECK(p);
	return p;
}

uint64_t fg_gpa(uint16_t v)
{
	return v < FG_LOW_SIZE ? v : GM_HIGH_START + (v - FG_LOW_SIZE);
}

static void mmio_write(struct fguest *g, uint64_t off, uint64_t val, uint32_t width)
{
	uint8_t buf[8];

	memcpy(buf, &val, sizeof(buf));
	virtio_mmio_access(&g->dev, off, buf, width, true);
}

static void wr32(struct fguest *g, uint64_t off, uint32_t val)
{
	mmio_write(g, off, val, 4);
}

/* The register window: mostly the registers and the start of the config
 * space, now and then anywhere (past the window too). */
static uint64_t mmio_off(uint16_t v)
{
	return v < 0xf000 ? v % 0x180 : (uint64_t)(v - 0xf000) << 4;
}

/* A queue size: mostly a valid power of two, now and then anything. */
static uint32_t queue_size(uint8_t v)
{
	return v < 0xf0 ? 1u << (v % 9) : v;
}

/* A driver's start-up (3.1.1) with fuzzed features and queue sizes and
 * the rings at their fixed places. */
static void setup(struct fguest *g, struct fuzz_in *in)
{
	uint32_t features = fuzz_u32(in);
	unsigned q;

	wr32(g, VIRTIO_MMIO_STATUS, 0);
	wr32(g, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr32(g, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr32(g, VIRTIO_MMIO_DRIVER_FEATURES, features);
	wr32(g, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr32(g, VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr32(g, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					    VIRTIO_STATUS_FEATURES_OK);
	for (q = 0; q < g->dev.ops->num_queues; q++) {
		uint64_t base = (uint64_t)q * FG_QUEUE_SPAN;

		wr32(g, VIRTIO_MMIO_QUEUE_SEL, q);
		wr32(g, VIRTIO_MMIO_QUEUE_NUM, queue_size(fuzz_u8(in)));
		wr32(g, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)base);
		wr32(g, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		wr32(g, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)base + 0x1000);
		wr32(g, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
		wr32(g, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)base + 0x1400);
		wr32(g, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
		wr32(g, VIRTIO_MMIO_QUEUE_READY, 1);
		g->avail_idx[q] = 0;
	}
	wr32(g, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* Write one descriptor where the driver put queue q's table; nothing when
 * that is not in RAM. */
static void desc(struct fguest *g, struct fuzz_in *in)
{
	struct virtq *q = &g->dev.vq[fuzz_u8(in) % VIRTIO_MAX_QUEUES];
	uint8_t i = fuzz_u8(in), mode = fuzz_u8(in);
	uint64_t addr = mode & 1 ? fuzz_u64(in) : fg_gpa(fuzz_u16(in));
	uint32_t len = mode & 2 ? fuzz_u32(in) : fuzz_u16(in);
	uint16_t flags = fuzz_u8(in), next = fuzz_u8(in);
	uint8_t raw[16], *p;
	uint64_t at;

	if (__builtin_add_overflow(q->desc_gpa, 16ULL * i, &at) || !(p = gm_ptr(&g->mem, at, sizeof(raw))))
		return;
	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &len, 4);
	memcpy(raw + 12, &flags, 2);
	memcpy(raw + 14, &next, 2);
	memcpy(p, raw, sizeof(raw));
}

/* Publish head in queue q's avail ring and move its index on. */
static void avail(struct fguest *g, struct fuzz_in *in)
{
	unsigned qi = fuzz_u8(in) % VIRTIO_MAX_QUEUES;
	struct virtq *q = &g->dev.vq[qi];
	uint16_t head = fuzz_u8(in), idx;
	uint8_t *ring;

	if (q->size == 0 || !(ring = gm_ptr(&g->mem, q->avail_gpa, 4 + 2ULL * q->size)))
		return;
	memcpy(ring + 4 + 2 * (g->avail_idx[qi] % q->size), &head, 2);
	idx = ++g->avail_idx[qi];
	memcpy(ring + 2, &idx, 2);
}

static void mem_write(struct fguest *g, struct fuzz_in *in)
{
	uint64_t gpa = fg_gpa(fuzz_u16(in));
	size_t want = fuzz_u8(in), len, room;
	const uint8_t *src = fuzz_bytes(in, want, &len);

	room = gpa < FG_LOW_SIZE ? FG_LOW_SIZE - gpa : GM_HIGH_START + FG_HIGH_SIZE - gpa;
	memcpy(fg_host(g, gpa), src, len < room ? len : room);
}

/* Notify queue q; a queue the device drains is then empty, or the device
 * gave up on it. */
static void notify(struct fguest *g, const struct fg_device *dev, uint8_t q)
{
	const struct virtq *vq = &g->dev.vq[q % VIRTIO_MAX_QUEUES];
	uint16_t idx;
	uint8_t *avail;

	wr32(g, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	if (q >= g->dev.ops->num_queues || !((dev->drains >> q) & 1) || !vq->ready ||
	    !virtio_live(&g->dev))
		return;
	avail = gm_ptr(&g->mem, vq->avail_gpa, 4);
	FUZZ_CHECK(avail);
	memcpy(&idx, avail + 2, 2);
	if (idx != vq->last_avail) {
		fprintf(stderr, "fguest: %s queue %u: avail idx %u, the device stopped at %u\n",
			g->dev.ops->name, q, idx, vq->last_avail);
		FUZZ_CHECK(!"a live device drained the queue");
	}
}

static void play(struct fguest *g, const struct fg_device *dev, struct fuzz_in *in)
{
	unsigned n;

	for (n = 0; n < FG_MAX_COMMANDS && in->n; n++) {
		uint8_t buf[8];
		uint64_t off;
		uint32_t width;

		switch (fuzz_u8(in) % FG_NCMDS) {
		case FG_CMD_MMIO_WRITE:
			off = mmio_off(fuzz_u16(in));
			width = fuzz_u8(in) % 8 + 1;
			mmio_write(g, off, fuzz_u64(in), width);
			break;
		case FG_CMD_MMIO_READ:
			off = mmio_off(fuzz_u16(in));
			width = fuzz_u8(in) % 8 + 1;
			virtio_mmio_access(&g->dev, off, buf, width, false);
			break;
		case FG_CMD_MEM_WRITE:
			mem_write(g, in);
			break;
		case FG_CMD_NOTIFY:
			notify(g, dev, fuzz_u8(in));
			break;
		case FG_CMD_SETUP:
			setup(g, in);
			break;
		case FG_CMD_DESC:
			desc(g, in);
			break;
		case FG_CMD_AVAIL:
			avail(g, in);
			break;
		case FG_CMD_LOOP:
			FUZZ_CHECK(ev_run_once(&g->loop, 0) >= 0);
			break;
		case FG_CMD_DEVICE:
			if (dev->command)
				dev->command(g, in);
			break;
		}
	}
}

/* FUZZ_DEBUG=1: where the input left the device, to check that a seed
 * does what it was written for. */
static void debug_state(struct fguest *g)
{
	unsigned q;

	fprintf(stderr, "fguest: %s status %#x isr %#x\n", g->dev.ops->name, g->dev.status, g->dev.isr);
	for (q = 0; q < g->dev.ops->num_queues; q++)
		fprintf(stderr, "fguest: queue %u: size %u ready %d last_avail %u used_idx %u\n", q,
			g->dev.vq[q].size, g->dev.vq[q].ready, g->dev.vq[q].last_avail, g->dev.vq[q].used_idx);
}

int fg_run(const struct fg_device *dev, const uint8_t *data, size_t size)
{
	static bool inited;
	static struct fguest g;
	struct fuzz_in in = { data, size, false };
	void *priv = NULL;
	int fds;

	if (!inited) {
		if (dev->init)
			dev->init();
		inited = true;
	}
	fds = open_fds();
	g.ram = ram_once();
	memset(g.ram, 0, FG_RAM_SIZE);
	g.mem = (struct guest_mem){ .host = g.ram, .low_size = FG_LOW_SIZE, .high_size = FG_HIGH_SIZE };
	memset(g.avail_idx, 0, sizeof(g.avail_idx));
	FUZZ_CHECK(ev_init(&g.loop) == 0);
	if (dev->open(&priv, &in) < 0)
		goto out;
	FUZZ_CHECK(virtio_mmio_init(&g.dev, dev->ops, priv, &g.mem, &g.loop, MMIO_BASE, 5) == 0);
	play(&g, dev, &in);
	if (getenv("FUZZ_DEBUG"))
		debug_state(&g);
	virtio_mmio_detach(&g.dev);
	dev->close(priv);
out:
	ev_close(&g.loop);
	FUZZ_CHECK(open_fds() == fds);
	return 0;
}
