/*
 * kiln.test=hostile: a guest that drives kiln-vmm's virtio-mmio devices by
 * hand, as a hostile kernel would, and checks that each device answers a
 * broken ring with NEEDS_RESET (vmm/virtio/queue.c, mmio.c) instead of
 * reading outside guest RAM, looping, or taking the VMM down.
 *
 * Every device but the root disk is unbound from its Linux driver, its
 * registers mapped through /dev/mem (the kernel has no STRICT_DEVMEM), and
 * its rings put in locked pages of this process whose physical addresses
 * come from /proc/self/pagemap. Each attack prints
 *   hostile: <device> <attack>: <what the device did>
 * with " (UNEXPECTED)" when the device did something a correct one should
 * not; the caller then proves the VM still works.
 *
 * The register layout is written out here rather than taken from vmm/: the
 * test is a second reading of the virtio 1.x spec (4.2.2), not a copy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "tests/guest/vmm-test-init.h"

/* kiln-vmm's layout (vmm/layout.h): devices 4 KiB apart from here. */
#define MMIO_FIRST 0xc0001000ULL
#define MMIO_STRIDE 0x1000ULL
#define MAX_DEVS 16
#define HOLE_GPA 0xd0000000ULL     /* neither RAM nor a device */
#define HIGH_GPA (1ULL << 40)      /* far above RAM */

/* virtio-mmio registers (4.2.2). */
#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_DRV_FEAT 0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_STATUS 0x070
#define R_DESC_LO 0x080
#define R_DESC_HI 0x084
#define R_DRIVER_LO 0x090
#define R_DRIVER_HI 0x094
#define R_DEVICE_LO 0x0a0
#define R_DEVICE_HI 0x0a4
#define R_CONFIG 0x100
#define SWEEP_END 0x200            /* registers and the first 256 config bytes */
#define MAGIC 0x74726976

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64
#define S_UP (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4
#define AVAIL_NO_INTERRUPT 1

#define ID_NET 1
#define ID_BLK 2
#define ID_RNG 4
#define ID_VSOCK 19

#define SMALL_Q 8                  /* queue size of most attacks */
#define WAIT_MS 5000               /* for an answer that should come (TCG is slow) */
#define QUIET_MS 500               /* for one that should not */
#define MAX_UNEXPECTED 48

#define PAGE 4096ULL
enum { PG_DESC, PG_AVAIL, PG_USED, PG_HDR, PG_DATA, PG_STATUS, NPAGES };

struct page {
	uint8_t *va;
	uint64_t pa;
};

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct hdev {
	const char *name;          /* rng, net, vsock, blk */
	char pdev[64];             /* the platform device, for unbind */
	uint64_t base;
	volatile uint8_t *regs;
	uint32_t id;
	uint32_t q;                /* the queue attacked: the one a kick makes the device pop */
	uint32_t qmax;
};

enum outcome { O_NOTHING, O_DONE, O_RESET };
#define W(o) (1u << (o))
static const char *const outcome_name[] = { "nothing happened", "request completed", "NEEDS_RESET" };

static struct page pg[NPAGES];
static uint64_t ram_end;           /* first byte past guest RAM */
static uint16_t qsize, avail_idx;  /* the ring as last programmed */
static int unexpected;
static char unexpected_list[MAX_UNEXPECTED][160];

/* One line per attack; ok false counts it and keeps it for the summary. */
static void note(const struct hdev *d, const char *attack, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void note(const struct hdev *d, const char *attack, bool ok, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	say("hostile: %s %s: %s%s", d->name, attack, what, ok ? "" : " (UNEXPECTED)");
	if (ok)
		return;
	if (unexpected < MAX_UNEXPECTED)
		snprintf(unexpected_list[unexpected], sizeof(unexpected_list[0]), "%s %s: %s", d->name, attack, what);
	unexpected++;
}

/* --- register access: one instruction of exactly the width asked --------- */

static uint64_t rd(const struct hdev *d, uint32_t off, unsigned w)
{
	volatile void *p = d->regs + off;
	uint64_t v;

	switch (w) {
	case 1: {
		uint8_t x;

		__asm__ volatile("movb %1, %0" : "=q"(x) : "m"(*(volatile uint8_t *)p) : "memory");
		v = x;
		break;
	}
	case 2: {
		uint16_t x;

		__asm__ volatile("movw %1, %0" : "=r"(x) : "m"(*(volatile uint16_t *)p) : "memory");
		v = x;
		break;
	}
	case 4: {
		uint32_t x;

		__asm__ volatile("movl %1, %0" : "=r"(x) : "m"(*(volatile uint32_t *)p) : "memory");
		v = x;
		break;
	}
	default:
		__asm__ volatile("movq %1, %0" : "=r"(v) : "m"(*(volatile uint64_t *)p) : "memory");
		break;
	}
	return v;
}

static void wr(const struct hdev *d, uint32_t off, unsigned w, uint64_t v)
{
	volatile void *p = d->regs + off;

	switch (w) {
	case 1:
		__asm__ volatile("movb %1, %0" : "=m"(*(volatile uint8_t *)p) : "q"((uint8_t)v) : "memory");
		break;
	case 2:
		__asm__ volatile("movw %1, %0" : "=m"(*(volatile uint16_t *)p) : "r"((uint16_t)v) : "memory");
		break;
	case 4:
		__asm__ volatile("movl %1, %0" : "=m"(*(volatile uint32_t *)p) : "r"((uint32_t)v) : "memory");
		break;
	default:
		__asm__ volatile("movq %1, %0" : "=m"(*(volatile uint64_t *)p) : "r"(v) : "memory");
		break;
	}
}

static uint32_t r32(const struct hdev *d, uint32_t off) { return (uint32_t)rd(d, off, 4); }
static void w32(const struct hdev *d, uint32_t off, uint32_t v) { wr(d, off, 4, v); }

static void w_addr(const struct hdev *d, uint32_t lo, uint64_t gpa)
{
	w32(d, lo, (uint32_t)gpa);
	w32(d, lo + 4, (uint32_t)(gpa >> 32));
}

/* --- the rings ------------------------------------------------------------- */

static struct vdesc *desc_tbl(void) { return (struct vdesc *)pg[PG_DESC].va; }
static volatile uint16_t *avail(void) { return (volatile uint16_t *)pg[PG_AVAIL].va; }

static uint16_t used_idx(void)
{
	return __atomic_load_n((uint16_t *)(pg[PG_USED].va + 2), __ATOMIC_ACQUIRE);
}

/* The length of used element i. */
static uint32_t used_len(uint16_t i)
{
	uint32_t len;

	memcpy(&len, pg[PG_USED].va + 4 + 8 * (i % qsize) + 4, 4);
	return len;
}

/* Reset, accept only VERSION_1 (no FEATURES_OK unless features_ok),
 * program queue d->q with n entries at the three addresses, then
 * DRIVER_OK. The status read back. */
static uint32_t start_dev(const struct hdev *d, uint32_t n, uint64_t desc, uint64_t drv, uint64_t dev,
			  bool features_ok)
{
	uint32_t feat = features_ok ? S_FEATURES_OK : 0;

	w32(d, R_STATUS, 0);
	/* Reset first: from here the device must not touch the pages. */
	memset(pg[PG_DESC].va, 0, 3 * PAGE);
	avail()[0] = AVAIL_NO_INTERRUPT;  /* the IRQ has no handler now */
	qsize = (uint16_t)(n ? n : 1);
	avail_idx = 0;
	w32(d, R_STATUS, S_ACK);
	w32(d, R_STATUS, S_ACK | S_DRIVER);
	w32(d, R_DRV_FEAT_SEL, 1);
	w32(d, R_DRV_FEAT, 1);  /* VIRTIO_F_VERSION_1 is bit 32 */
	w32(d, R_DRV_FEAT_SEL, 0);
	w32(d, R_DRV_FEAT, 0);
	if (features_ok)
		w32(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	w32(d, R_QUEUE_SEL, d->q);
	w32(d, R_QUEUE_NUM, n);
	w_addr(d, R_DESC_LO, desc);
	w_addr(d, R_DRIVER_LO, drv);
	w_addr(d, R_DEVICE_LO, dev);
	w32(d, R_QUEUE_READY, 1);
	w32(d, R_STATUS, S_ACK | S_DRIVER | feat | S_DRIVER_OK);
	return r32(d, R_STATUS);
}

static uint32_t start_ok(const struct hdev *d, uint32_t n)
{
	return start_dev(d, n, pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa, true);
}

static void publish(uint16_t head)
{
	volatile uint16_t *a = avail();

	a[2 + avail_idx % qsize] = head;
	avail_idx++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	a[1] = avail_idx;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void kick(const struct hdev *d) { w32(d, R_QUEUE_NOTIFY, d->q); }

/* Wait up to ms for NEEDS_RESET or the used index to reach want. */
static enum outcome wait_for(const struct hdev *d, uint16_t want, unsigned ms)
{
	int64_t end = mono_ms() + ms;

	for (;;) {
		if (r32(d, R_STATUS) & S_NEEDS_RESET)
			return O_RESET;
		if (used_idx() == want)
			return O_DONE;
		if (mono_ms() >= end)
			return O_NOTHING;
		usleep(1000);
	}
}

/* The device's smallest well-formed request, written from descriptor 0
 * on; the number of descriptors used. blk reads sector 0 of the scratch
 * drive, net sends a broadcast frame of an experimental EtherType, vsock
 * sends an RST to a host port nobody listens on, rng asks for 64 bytes. */
static uint16_t valid_request(const struct hdev *d)
{
	struct vdesc *t = desc_tbl();
	uint8_t *h = pg[PG_HDR].va;
	uint64_t cid;
	uint32_t u32;
	uint16_t u16;

	switch (d->id) {
	case ID_BLK:
		memset(h, 0, 16);  /* type IN, sector 0 */
		memset(pg[PG_DATA].va, 0, 512);
		pg[PG_STATUS].va[0] = 0xff;
		t[0] = (struct vdesc){ pg[PG_HDR].pa, 16, D_NEXT, 1 };
		t[1] = (struct vdesc){ pg[PG_DATA].pa, 512, D_WRITE | D_NEXT, 2 };
		t[2] = (struct vdesc){ pg[PG_STATUS].pa, 1, D_WRITE, 0 };
		return 3;
	case ID_NET:
		memset(h, 0, 12 + 60);
		memset(h + 12, 0xff, 6);
		memcpy(h + 18, "\x06\x00\xac\x1f\x00\x02", 6);
		h[24] = 0x88;
		h[25] = 0xb5;
		t[0] = (struct vdesc){ pg[PG_HDR].pa, 12 + 60, 0, 0 };
		return 1;
	case ID_VSOCK:
		memset(h, 0, 44);
		cid = rd(d, R_CONFIG, 8);
		memcpy(h + 0, &cid, 8);
		cid = 2;
		memcpy(h + 8, &cid, 8);
		u32 = 1234;
		memcpy(h + 16, &u32, 4);
		u32 = 9999;
		memcpy(h + 20, &u32, 4);
		u16 = 1;  /* STREAM */
		memcpy(h + 28, &u16, 2);
		u16 = 3;  /* RST: no answer owed */
		memcpy(h + 30, &u16, 2);
		t[0] = (struct vdesc){ pg[PG_HDR].pa, 44, 0, 0 };
		return 1;
	default:
		memset(pg[PG_DATA].va, 0, 64);
		t[0] = (struct vdesc){ pg[PG_DATA].pa, 64, D_WRITE, 0 };
		return 1;
	}
}

/* A chain of exactly qmax descriptors, the longest allowed: one byte
 * each (blk: header, qmax - 2 sectors into one buffer, status). */
static void full_request(const struct hdev *d, uint16_t n)
{
	struct vdesc *t = desc_tbl();
	uint16_t i;

	valid_request(d);
	if (d->id == ID_BLK) {
		for (i = 1; i + 1 < n; i++)
			t[i] = (struct vdesc){ pg[PG_DATA].pa, 512, D_WRITE | D_NEXT, (uint16_t)(i + 1) };
		t[n - 1] = (struct vdesc){ pg[PG_STATUS].pa, 1, D_WRITE, 0 };
		return;
	}
	for (i = 0; i < n; i++) {
		uint64_t pa = d->id == ID_RNG ? pg[PG_DATA].pa + i : pg[PG_HDR].pa + i;

		t[i] = (struct vdesc){ pa, 1, (uint16_t)((d->id == ID_RNG ? D_WRITE : 0) | D_NEXT),
				       (uint16_t)(i + 1) };
	}
	t[n - 1].flags &= (uint16_t)~D_NEXT;
	t[n - 1].next = 0;
	if (d->id == ID_NET)  /* header, then a broadcast frame */
		memset(pg[PG_HDR].va + 12, 0xff, 6);
}

/* Whether the answer to valid_request() is right; why not in why. */
static bool check_valid(const struct hdev *d, char *why, size_t len)
{
	uint32_t ulen = used_len((uint16_t)(used_idx() - 1));
	uint32_t i;

	switch (d->id) {
	case ID_BLK:
		if (pg[PG_STATUS].va[0] != 0 || ulen != 513) {
			snprintf(why, len, "status byte %u, used length %u (want 0, 513)", pg[PG_STATUS].va[0], ulen);
			return false;
		}
		for (i = 0; i < 512; i++) {
			if (pg[PG_DATA].va[i] != pat(0, i)) {
				snprintf(why, len, "sector 0 differs at byte %u", i);
				return false;
			}
		}
		return true;
	case ID_RNG:
		if (ulen == 0 || ulen > 64) {
			snprintf(why, len, "used length %u (want 1..64)", ulen);
			return false;
		}
		return true;
	default:
		if (ulen != 0) {
			snprintf(why, len, "used length %u for a device-read-only chain", ulen);
			return false;
		}
		return true;
	}
}

/* Start, send a valid request, expect it served correctly. */
static void expect_works(const struct hdev *d, const char *attack)
{
	uint32_t st = start_ok(d, SMALL_Q);
	enum outcome got;
	char why[120] = "";

	valid_request(d);
	publish(0);
	kick(d);
	got = wait_for(d, 1, WAIT_MS);
	if (got == O_DONE && !check_valid(d, why, sizeof(why))) {
		note(d, attack, false, "served wrongly: %s", why);
		return;
	}
	note(d, attack, got == O_DONE, "%s (status %#x after start)", outcome_name[got], st);
}

/* --- attacks ------------------------------------------------------------- */

/* Rings placed where the device must refuse them at DRIVER_OK. */
static void a_ring_placement(const struct hdev *d)
{
	const struct {
		const char *name;
		uint64_t desc, drv, dev;
		uint32_t n;
	} cases[] = {
		{ "rings-in-mmio-hole", HOLE_GPA, HOLE_GPA + PAGE, HOLE_GPA + 2 * PAGE, SMALL_Q },
		{ "rings-above-ram", HIGH_GPA, HIGH_GPA + PAGE, HIGH_GPA + 2 * PAGE, SMALL_Q },
		{ "rings-on-own-registers", d->base, d->base, d->base, SMALL_Q },
		{ "desc-table-straddles-ram-end", ram_end - 64, pg[PG_AVAIL].pa, pg[PG_USED].pa, SMALL_Q },
		{ "used-ring-straddles-ram-end", pg[PG_DESC].pa, pg[PG_AVAIL].pa, ram_end - 8, SMALL_Q },
		{ "desc-table-misaligned", pg[PG_DESC].pa + 8, pg[PG_AVAIL].pa, pg[PG_USED].pa, SMALL_Q },
		{ "used-ring-misaligned", pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa + 2, SMALL_Q },
		{ "queue-size-0", pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa, 0 },
		{ "queue-size-3", pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa, 3 },
		{ "queue-size-over-max", pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa, 2 * d->qmax },
		{ "queue-size-65535", pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa, 65535 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t st = start_dev(d, cases[i].n, cases[i].desc, cases[i].drv, cases[i].dev, true);
		enum outcome got = st & S_NEEDS_RESET ? O_RESET : O_NOTHING;

		if (got == O_NOTHING) {
			/* Not refused at DRIVER_OK: a kick must not make it
			 * touch anything either. */
			valid_request(d);
			kick(d);
			got = wait_for(d, 1, QUIET_MS);
		}
		note(d, cases[i].name, got == O_RESET, "%s at DRIVER_OK (status %#x)", outcome_name[got], st);
	}
	w32(d, R_STATUS, 0);
}

/* Feature negotiation the device must refuse. */
static void a_features(const struct hdev *d)
{
	uint32_t st;

	st = start_dev(d, SMALL_Q, pg[PG_DESC].pa, pg[PG_AVAIL].pa, pg[PG_USED].pa, false);
	note(d, "driver-ok-without-features-ok", st & S_NEEDS_RESET, "%s (status %#x)",
	     st & S_NEEDS_RESET ? "NEEDS_RESET" : "accepted", st);

	w32(d, R_STATUS, 0);
	w32(d, R_STATUS, S_ACK | S_DRIVER);
	w32(d, R_DRV_FEAT_SEL, 0);
	w32(d, R_DRV_FEAT, 0xffffffff);
	w32(d, R_DRV_FEAT_SEL, 1);
	w32(d, R_DRV_FEAT, 0xffffffff);
	w32(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	st = r32(d, R_STATUS);
	note(d, "unoffered-features", !(st & S_FEATURES_OK), "FEATURES_OK %s (status %#x)",
	     st & S_FEATURES_OK ? "accepted" : "refused", st);

	w32(d, R_STATUS, 0);
	w32(d, R_STATUS, S_ACK | S_DRIVER);
	w32(d, R_DRV_FEAT_SEL, 1);
	w32(d, R_DRV_FEAT, 0);
	w32(d, R_DRV_FEAT_SEL, 0);
	w32(d, R_DRV_FEAT, 0);
	w32(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	st = r32(d, R_STATUS);
	note(d, "features-without-version-1", !(st & S_FEATURES_OK), "FEATURES_OK %s (status %#x)",
	     st & S_FEATURES_OK ? "accepted" : "refused", st);
	w32(d, R_STATUS, 0);
}

enum ring_attack {
	RA_SELF_LOOP, RA_LOOP, RA_OVERLONG, RA_NEXT_PAST, RA_NEXT_FFFF, RA_HEAD_PAST, RA_AVAIL_RUNAWAY,
	RA_BUF_HOLE, RA_BUF_RAM_END, RA_BUF_STRADDLE, RA_BUF_WRAP, RA_BUF_MMIO, RA_BUF_HUGE, RA_INDIRECT,
	RA_READ_AFTER_WRITE, RA_COUNT
};

static const char *const ra_name[RA_COUNT] = {
	"desc-self-loop", "desc-loop", "chain-longer-than-queue", "next-past-queue-size", "next-0xffff",
	"head-past-queue-size", "avail-idx-runaway", "buffer-in-mmio-hole", "buffer-at-ram-end",
	"buffer-straddles-ram-end", "buffer-address-wraps", "buffer-on-own-registers", "buffer-length-4g",
	"indirect-descriptor", "readable-after-writable",
};

/* A live queue of SMALL_Q entries, then one malformed chain and a kick:
 * every one is a driver bug the device must answer with NEEDS_RESET. */
static void a_ring(const struct hdev *d, enum ring_attack a)
{
	struct vdesc *t = desc_tbl();
	uint32_t st = start_ok(d, SMALL_Q);
	uint16_t n, head = 0, i, b = d->id == ID_BLK ? 1 : 0;  /* b: the data buffer */
	enum outcome got;

	if ((st & S_UP) != S_UP || (st & S_NEEDS_RESET)) {
		note(d, ra_name[a], false, "could not start the device (status %#x)", st);
		return;
	}
	n = valid_request(d);
	switch (a) {
	case RA_SELF_LOOP:
		t[0].flags |= D_NEXT;
		t[0].next = 0;
		break;
	case RA_LOOP:  /* the last link points back to the head */
		if (n == 1) {
			t[1] = t[0];
			n = 2;
		}
		for (i = 0; i + 1 < n; i++) {
			t[i].flags |= D_NEXT;
			t[i].next = (uint16_t)(i + 1);
		}
		t[n - 1].flags |= D_NEXT;
		t[n - 1].next = 0;
		break;
	case RA_OVERLONG:  /* every descriptor, then round again */
		for (i = n; i < SMALL_Q; i++)
			t[i] = t[n - 1];
		for (i = (uint16_t)(n - 1); i < SMALL_Q; i++) {
			t[i].flags |= D_NEXT;
			t[i].next = (uint16_t)(i + 1 < SMALL_Q ? i + 1 : n - 1);
		}
		break;
	case RA_NEXT_PAST:
		t[n - 1].flags |= D_NEXT;
		t[n - 1].next = SMALL_Q;
		break;
	case RA_NEXT_FFFF:
		t[n - 1].flags |= D_NEXT;
		t[n - 1].next = 0xffff;
		break;
	case RA_HEAD_PAST:
		t[SMALL_Q] = t[0];  /* in the page, but not in the queue */
		head = SMALL_Q;
		break;
	case RA_AVAIL_RUNAWAY:
		break;
	case RA_BUF_HOLE:
		t[b].addr = HOLE_GPA;
		break;
	case RA_BUF_RAM_END:
		t[b].addr = ram_end;
		break;
	case RA_BUF_STRADDLE:
		t[b].addr = ram_end - 8;
		t[b].len = 16;
		break;
	case RA_BUF_WRAP:
		t[b].addr = ~0ULL - 7;
		t[b].len = 64;
		break;
	case RA_BUF_MMIO:
		t[b].addr = d->base;
		t[b].len = 64;
		break;
	case RA_BUF_HUGE:
		t[b].len = 0xffffffffu;
		break;
	case RA_INDIRECT:
		t[0].flags |= D_INDIRECT;
		break;
	case RA_READ_AFTER_WRITE:
		t[n - 1].flags |= D_WRITE | D_NEXT;
		t[n - 1].next = n;
		t[n] = (struct vdesc){ pg[PG_STATUS].pa + 64, 16, 0, 0 };
		break;
	case RA_COUNT:
		return;
	}
	publish(head);
	if (a == RA_AVAIL_RUNAWAY)  /* 200 requests published in a ring of 8 */
		avail()[1] = 200;
	kick(d);
	got = wait_for(d, 1, WAIT_MS);
	note(d, ra_name[a], got == O_RESET, "%s (status %#x, used idx %u)", outcome_name[got], r32(d, R_STATUS),
	     used_idx());
}

/* The longest chain allowed (queue size descriptors) must still work. */
static void a_full_chain(const struct hdev *d)
{
	uint32_t st = start_ok(d, d->qmax);
	enum outcome got;

	full_request(d, (uint16_t)d->qmax);
	publish(0);
	kick(d);
	got = wait_for(d, 1, WAIT_MS);
	if (d->id == ID_BLK && got == O_DONE && (pg[PG_STATUS].va[0] != 0 || used_len(0) != (d->qmax - 2) * 512 + 1)) {
		note(d, "chain-of-queue-size", false, "served wrongly: status byte %u, used length %u",
		     pg[PG_STATUS].va[0], used_len(0));
		return;
	}
	/* vsock: an RST header spread over 44 descriptors and 212 bytes
	 * more than its len says; dropping it or NEEDS_RESET are both fine. */
	note(d, "chain-of-queue-size", got == O_DONE || (d->id == ID_VSOCK && got == O_RESET),
	     "%u descriptors: %s (status %#x after start)", d->qmax, outcome_name[got], st);
}

/* Reset (status 0) right after a kick: the device must stop touching the
 * rings, and start again cleanly. */
static void a_reset_in_flight(const struct hdev *d)
{
	uint16_t at_reset, later;
	uint32_t st;

	start_ok(d, d->qmax);
	full_request(d, (uint16_t)d->qmax);
	publish(0);
	kick(d);
	w32(d, R_STATUS, 0);
	st = r32(d, R_STATUS);
	at_reset = used_idx();
	usleep(QUIET_MS * 1000);
	later = used_idx();
	note(d, "reset-with-request-in-flight", st == 0 && later == at_reset,
	     "status %#x after reset; used idx %u at the reset, %u %d ms later", st, at_reset, later, QUIET_MS);
	expect_works(d, "restart-after-reset-in-flight");
}

/* Queue registers rewritten while the queue is live: ignored (4.2.2.2:
 * only while QueueReady is 0) or NEEDS_RESET, never used. */
static void a_requeue(const struct hdev *d)
{
	uint32_t st = start_ok(d, SMALL_Q);
	enum outcome got;
	char why[120] = "";

	w32(d, R_QUEUE_SEL, d->q);
	w32(d, R_QUEUE_NUM, 3);
	w_addr(d, R_DESC_LO, HOLE_GPA);
	w_addr(d, R_DRIVER_LO, HOLE_GPA);
	w_addr(d, R_DEVICE_LO, ram_end - 8);
	valid_request(d);
	publish(0);
	kick(d);
	got = wait_for(d, 1, WAIT_MS);
	if (got == O_DONE && !check_valid(d, why, sizeof(why))) {
		note(d, "queue-reprogrammed-after-driver-ok", false, "served wrongly: %s", why);
		return;
	}
	note(d, "queue-reprogrammed-after-driver-ok", got != O_NOTHING, "%s%s (status %#x after start)",
	     outcome_name[got], got == O_DONE ? " on the old ring: the rewrite was ignored" : "", st);

	/* Disabled, moved out of RAM, enabled again: checked like DRIVER_OK. */
	start_ok(d, SMALL_Q);
	w32(d, R_QUEUE_SEL, d->q);
	w32(d, R_QUEUE_READY, 0);
	w_addr(d, R_DESC_LO, HOLE_GPA);
	w32(d, R_QUEUE_READY, 1);
	st = r32(d, R_STATUS);
	got = st & S_NEEDS_RESET ? O_RESET : O_NOTHING;
	if (got == O_NOTHING) {
		valid_request(d);
		publish(0);
		kick(d);
		got = wait_for(d, 1, QUIET_MS);
	}
	note(d, "queue-reenabled-outside-ram", got == O_RESET, "%s (status %#x)", outcome_name[got], st);
	w32(d, R_STATUS, 0);
}

/* Notifications that are not a 32-bit write of the queue's index (4.2.2.2):
 * serving the queue on one is harmless, breaking is not. */
static void a_bad_notify(const struct hdev *d)
{
	const struct {
		const char *name;
		unsigned width;
		uint64_t value;
	} cases[] = {
		{ "notify-queue-0xffff", 4, 0xffff },
		{ "notify-queue-0xffffffff", 4, 0xffffffff },
		{ "notify-queue-plus-0x10000", 4, d->q + 0x10000 },
		{ "notify-width-1", 1, d->q },
		{ "notify-width-2", 2, d->q },
		{ "notify-width-8", 8, d->q },
	};
	enum outcome got;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		start_ok(d, SMALL_Q);
		valid_request(d);
		publish(0);
		wr(d, R_QUEUE_NOTIFY, cases[i].width, cases[i].value);
		got = wait_for(d, 1, QUIET_MS);
		note(d, cases[i].name, got != O_RESET, "%s (status %#x)", outcome_name[got], r32(d, R_STATUS));
		if (got == O_NOTHING) {
			kick(d);
			got = wait_for(d, 1, WAIT_MS);
			if (got != O_DONE)
				note(d, "notify-after-bogus-one", false, "%s", outcome_name[got]);
		}
	}

	/* A queue that does not exist. */
	w32(d, R_STATUS, 0);
	w32(d, R_QUEUE_SEL, 0x10000);
	w32(d, R_QUEUE_NUM, 8);
	w_addr(d, R_DESC_LO, pg[PG_DESC].pa);
	w32(d, R_QUEUE_READY, 1);
	note(d, "queue-sel-out-of-range", r32(d, R_QUEUE_NUM_MAX) == 0 && r32(d, R_QUEUE_READY) == 0,
	     "QueueNumMax %u, QueueReady %u", r32(d, R_QUEUE_NUM_MAX), r32(d, R_QUEUE_READY));
	w32(d, R_STATUS, 0);
}

/* Config space bytes [0, 256) one at a time. */
static void read_config(const struct hdev *d, uint8_t *cfg)
{
	uint32_t i;

	for (i = 0; i < SWEEP_END - R_CONFIG; i++)
		cfg[i] = (uint8_t)rd(d, R_CONFIG + i, 1);
}

/* Reads of every offset 0..0x1ff at widths 1, 2, 4 and 8: the identity
 * registers hold, a wide config read is its bytes, nothing breaks. */
static void a_read_sweep(const struct hdev *d)
{
	static const unsigned widths[] = { 1, 2, 4, 8 };
	uint8_t cfg[SWEEP_END - R_CONFIG];
	unsigned wi, mismatches = 0, subword_nonzero = 0, reads = 0;
	uint32_t off, first_bad = 0;
	uint64_t t0 = mono_ms();
	bool ids_ok;

	start_ok(d, SMALL_Q);
	read_config(d, cfg);
	for (wi = 0; wi < 4; wi++) {
		unsigned w = widths[wi];

		for (off = 0; off < SWEEP_END; off++) {
			uint64_t v = rd(d, off, w), want = 0;
			unsigned k;

			reads++;
			if (off >= R_CONFIG && off + w <= SWEEP_END) {
				for (k = 0; k < w; k++)
					want |= (uint64_t)cfg[off - R_CONFIG + k] << (8 * k);
				if (v != want && !mismatches++)
					first_bad = off | w << 16;
			} else if (off < R_CONFIG && (w != 4 || off % 4) && v) {
				subword_nonzero++;
			}
		}
	}
	ids_ok = r32(d, R_MAGIC) == MAGIC && r32(d, R_VERSION) == 2 && r32(d, R_DEVICE_ID) == d->id;
	note(d, "read-every-offset-width-1-2-4-8", ids_ok && !mismatches && !(r32(d, R_STATUS) & S_NEEDS_RESET),
	     "%u reads in %llu ms; identity registers %s; config reads at every width %s (first at %#x width %u); "
	     "%u sub-word or unaligned register reads gave non-zero",
	     reads, (unsigned long long)(mono_ms() - t0), ids_ok ? "ok" : "WRONG",
	     mismatches ? "DISAGREE" : "agree", first_bad & 0xffff, first_bad >> 16, subword_nonzero);
	w32(d, R_STATUS, 0);
}

/* Writes of all-ones then zeros at every offset 0..0x1ff (aligned or not),
 * widths 1, 2, 4 and 8, on a live device: config stays read-only, the device
 * still identifies itself, resets and serves afterwards. */
static void a_write_sweep(const struct hdev *d)
{
	static const unsigned widths[] = { 1, 2, 4, 8 };
	static const uint64_t values[] = { ~0ULL, 0 };
	uint8_t before[SWEEP_END - R_CONFIG], after[SWEEP_END - R_CONFIG];
	unsigned vi, wi, writes = 0;
	uint32_t off, st;
	uint64_t t0 = mono_ms();
	bool ok;

	start_ok(d, SMALL_Q);
	read_config(d, before);
	for (vi = 0; vi < 2; vi++)
		for (wi = 0; wi < 4; wi++)
			for (off = 0; off < SWEEP_END; off++, writes++)
				wr(d, off, widths[wi], values[vi]);
	read_config(d, after);
	w32(d, R_STATUS, 0);
	st = r32(d, R_STATUS);
	ok = r32(d, R_MAGIC) == MAGIC && r32(d, R_DEVICE_ID) == d->id && !memcmp(before, after, sizeof(before)) &&
	     st == 0;
	note(d, "write-every-offset-width-1-2-4-8", ok,
	     "%u writes in %llu ms; identity %s; config %s; status %#x after reset", writes,
	     (unsigned long long)(mono_ms() - t0), r32(d, R_MAGIC) == MAGIC ? "ok" : "WRONG",
	     memcmp(before, after, sizeof(before)) ? "CHANGED" : "unchanged", st);
	expect_works(d, "serves-after-write-sweep");
}

/* One blk request on a fresh queue: header, data (device-written unless
 * out), status byte; the status the device wrote (0xff: none). */
static uint8_t blk_request(const struct hdev *d, uint32_t type, uint64_t sector, uint32_t data_len, bool out,
			   enum outcome *got)
{
	struct vdesc *t = desc_tbl();
	uint16_t n = 0;

	start_ok(d, SMALL_Q);
	memcpy(pg[PG_HDR].va, &type, 4);
	memset(pg[PG_HDR].va + 4, 0, 4);
	memcpy(pg[PG_HDR].va + 8, &sector, 8);
	pg[PG_STATUS].va[0] = 0xff;
	t[n] = (struct vdesc){ pg[PG_HDR].pa, 16, D_NEXT, (uint16_t)(n + 1) };
	n++;
	if (data_len) {
		t[n] = (struct vdesc){ pg[PG_DATA].pa, data_len, (uint16_t)((out ? 0 : D_WRITE) | D_NEXT),
				       (uint16_t)(n + 1) };
		n++;
	}
	t[n] = (struct vdesc){ pg[PG_STATUS].pa, 1, D_WRITE, 0 };
	publish(0);
	kick(d);
	*got = wait_for(d, 1, WAIT_MS);
	return pg[PG_STATUS].va[0];
}

/* Well-formed rings, hostile requests: blk must answer each with a status
 * (5.2.6: 0 OK, 1 IOERR, 2 UNSUPP) and touch nothing past its disk. */
static void a_blk_requests(const struct hdev *d)
{
	uint64_t cap = rd(d, R_CONFIG, 8);  /* 512-byte sectors */
	const struct {
		const char *name;
		uint32_t type;
		uint64_t sector;
		uint32_t len;
		bool out;
		uint8_t want;
	} cases[] = {
		{ "read-at-capacity", 0, cap, 512, false, 1 },
		{ "read-across-the-end", 0, cap - 1, 1024, false, 1 },
		{ "read-sector-2^64-1", 0, ~0ULL, 512, false, 1 },
		{ "read-sector-overflowing-bytes", 0, 1ULL << 55, 512, false, 1 },
		{ "read-not-whole-sectors", 0, 0, 100, false, 1 },
		{ "write-at-capacity", 1, cap, 512, true, 1 },
		{ "write-last-sector", 1, cap - 1, 512, true, 0 },
		{ "unknown-type", 0x7fffffff, 0, 512, false, 2 },
		{ "get-id", 8, 0, 20, false, 0 },
		{ "flush", 4, 0, 0, false, 0 },
	};
	enum outcome got;
	size_t i;

	memset(pg[PG_DATA].va, 0x5a, PAGE);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t st = blk_request(d, cases[i].type, cases[i].sector, cases[i].len, cases[i].out, &got);

		note(d, cases[i].name, got == O_DONE && st == cases[i].want, "%s, status byte %u (want %u)",
		     outcome_name[got], st, cases[i].want);
	}
	/* The id is the drive's "id" from the VM config, NUL-padded. */
	note(d, "get-id-value", !memcmp(pg[PG_DATA].va, "scratch", 8),
	     "\"%.20s\"", (const char *)pg[PG_DATA].va);
	/* The status byte alone, no header: a request the device cannot read. */
	start_ok(d, SMALL_Q);
	pg[PG_STATUS].va[0] = 0xff;
	desc_tbl()[0] = (struct vdesc){ pg[PG_STATUS].pa, 1, D_WRITE, 0 };
	publish(0);
	kick(d);
	got = wait_for(d, 1, WAIT_MS);
	note(d, "request-without-header", got != O_NOTHING, "%s, status byte %u", outcome_name[got],
	     pg[PG_STATUS].va[0]);
	/* No writable byte for the status: NEEDS_RESET (blk.c). */
	start_ok(d, SMALL_Q);
	valid_request(d);
	desc_tbl()[1].flags = D_NEXT;
	desc_tbl()[2].flags = 0;
	publish(0);
	kick(d);
	got = wait_for(d, 1, WAIT_MS);
	note(d, "request-without-status-byte", got == O_RESET, "%s", outcome_name[got]);
	w32(d, R_STATUS, 0);
}

static void attack_device(const struct hdev *d)
{
	int a;

	expect_works(d, "baseline-request");
	a_ring_placement(d);
	a_features(d);
	for (a = 0; a < RA_COUNT; a++)
		a_ring(d, (enum ring_attack)a);
	a_full_chain(d);
	a_reset_in_flight(d);
	a_requeue(d);
	a_bad_notify(d);
	a_read_sweep(d);
	a_write_sweep(d);
	if (d->id == ID_BLK)
		a_blk_requests(d);
	expect_works(d, "serves-after-all-attacks");
	w32(d, R_STATUS, 0);
}

/* --- finding and taking the devices ------------------------------------------- */

/* Ring memory: locked pages of ours, their physical addresses from
 * /proc/self/pagemap (no compaction in the guest kernel to move them). */
static bool lock_pages(void)
{
	uint8_t *mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
	int fd, i;

	if (sysconf(_SC_PAGESIZE) != (long)PAGE || mem == MAP_FAILED) {
		say("hostile: cannot map ring pages: %s", strerror(errno));
		return false;
	}
	memset(mem, 0, NPAGES * PAGE);
	if (mlock(mem, NPAGES * PAGE) < 0)
		say("hostile: mlock: %s (going on)", strerror(errno));
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		say("hostile: /proc/self/pagemap: %s", strerror(errno));
		return false;
	}
	for (i = 0; i < NPAGES; i++) {
		uint64_t e = 0;

		pg[i].va = mem + i * PAGE;
		if (pread(fd, &e, 8, (off_t)((uintptr_t)pg[i].va / PAGE * 8)) != 8 || !(e >> 63) ||
		    !(e & ((1ULL << 55) - 1))) {
			say("hostile: no physical address for ring page %d (pagemap entry %#llx)", i,
			    (unsigned long long)e);
			close(fd);
			return false;
		}
		pg[i].pa = (e & ((1ULL << 55) - 1)) * PAGE;
	}
	close(fd);
	return true;
}

static bool bound(const char *pdev)
{
	char path[160];

	snprintf(path, sizeof(path), "/sys/bus/platform/drivers/virtio-mmio/%s", pdev);
	return access(path, F_OK) == 0;
}

/* The end of the highest "System RAM" range in /proc/iomem; when pdev is
 * given, also the name of a resource that starts at base, the one bound to
 * virtio-mmio if any: kiln-vmm announces each device both in ACPI
 * (LNRO0005:NN, which the driver takes) and on the command line
 * (virtio-mmio.N, whose probe then finds the region busy). */
static uint64_t scan_iomem(uint64_t base, char *pdev, size_t len)
{
	FILE *f = fopen("/proc/iomem", "re");
	char line[256], name[128];
	uint64_t end = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		const char *p = line + strspn(line, " ");

		if (sscanf(p, "%llx-%llx : %127[^\n]", &a, &b, name) != 3)
			continue;
		if (p == line && !strcmp(name, "System RAM") && b + 1 > end)
			end = b + 1;
		if (pdev && a == base && (!pdev[0] || (!bound(pdev) && bound(name))))
			snprintf(pdev, len, "%s", name);
	}
	fclose(f);
	return end;
}

/* The platform device of the root file system's disk (the path component
 * before virtioN), or "" (said why):
 * from the device number of /, else from root=/dev/NAME. */
static void root_pdev(char *out, size_t len)
{
	char link[300] = "(stat /)", target[512], cmd[2048], *p;
	struct stat st;
	ssize_t n = -1;
	int fd;

	out[0] = '\0';
	if (stat("/", &st) == 0) {
		snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
		n = readlink(link, target, sizeof(target) - 1);
	}
	if (n <= 0 && (fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC)) >= 0) {
		ssize_t c = read(fd, cmd, sizeof(cmd) - 1);

		close(fd);
		cmd[c > 0 ? c : 0] = '\0';
		say("hostile: readlink %s: %s; trying root=", link, strerror(errno));
		if ((p = strstr(cmd, "root=/dev/"))) {
			p += strlen("root=/dev/");
			snprintf(link, sizeof(link), "/sys/block/%.*s", (int)strcspn(p, " \n"), p);
			n = readlink(link, target, sizeof(target) - 1);
		}
	}
	if (n <= 0) {
		say("hostile: readlink %s: %s", link, strerror(errno));
		return;
	}
	target[n] = '\0';
	for (p = strstr(target, "/virtio"); p && !(p[7] >= '0' && p[7] <= '9'); p = strstr(p + 1, "/virtio"))
		;
	if (!p || p == target) {
		say("hostile: %s -> %s: no virtio device in the path", link, target);
		return;
	}
	*p = '\0';
	p = strrchr(target, '/');
	snprintf(out, len, "%s", p ? p + 1 : target);
}

static bool unbind(const char *pdev)
{
	int fd;
	bool ok;

	if (!bound(pdev))
		return true;
	fd = open("/sys/bus/platform/drivers/virtio-mmio/unbind", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, pdev, strlen(pdev)) == (ssize_t)strlen(pdev);
	close(fd);
	return ok;
}

static const char *kind(uint32_t id)
{
	switch (id) {
	case ID_NET: return "net";
	case ID_BLK: return "blk";
	case ID_RNG: return "rng";
	case ID_VSOCK: return "vsock";
	default: return NULL;
	}
}

int hostile_run(void)
{
	struct hdev devs[MAX_DEVS];
	char root[64];
	int fd, n = 0, i;
	uint64_t t0 = mono_ms();

	ram_end = scan_iomem(0, NULL, 0);
	if (!ram_end || !lock_pages())
		return -1;
	root_pdev(root, sizeof(root));
	say("hostile: guest RAM ends at %#llx; rings at %#llx/%#llx/%#llx; root disk on %s",
	    (unsigned long long)ram_end, (unsigned long long)pg[PG_DESC].pa, (unsigned long long)pg[PG_AVAIL].pa,
	    (unsigned long long)pg[PG_USED].pa, root[0] ? root : "(unknown: every blk is spared)");
	/* Every device write must reach the VMM: uncached. */
	fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0) {
		say("hostile: /dev/mem: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < MAX_DEVS; i++) {
		struct hdev *d = &devs[n];
		uint64_t base = MMIO_FIRST + (uint64_t)i * MMIO_STRIDE;
		void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);

		if (p == MAP_FAILED) {
			say("hostile: mmap of %#llx: %s", (unsigned long long)base, strerror(errno));
			break;
		}
		memset(d, 0, sizeof(*d));
		d->regs = p;
		d->base = base;
		if (r32(d, R_MAGIC) != MAGIC) {
			munmap(p, PAGE);
			break;  /* past the last device */
		}
		d->id = r32(d, R_DEVICE_ID);
		d->name = kind(d->id);
		scan_iomem(base, d->pdev, sizeof(d->pdev));
		if (!d->pdev[0])
			snprintf(d->pdev, sizeof(d->pdev), "virtio-mmio.%d", i);
		if (!d->name || (d->id == ID_BLK && (!root[0] || !strcmp(d->pdev, root)))) {
			say("hostile: sparing device id %u at %#llx (%s)", d->id, (unsigned long long)base, d->pdev);
			munmap(p, PAGE);
			continue;
		}
		/* Linux acknowledges a device again after its driver left
		 * (status 1); DRIVER_OK means it still drives it, and its kicks
		 * would mix with ours. */
		if (!unbind(d->pdev) || bound(d->pdev) || (r32(d, R_STATUS) & S_DRIVER_OK)) {
			say("hostile: cannot take %s at %#llx (%s) from its driver: %s, status %#x", d->name,
			    (unsigned long long)base, d->pdev, strerror(errno), r32(d, R_STATUS));
			munmap(p, PAGE);
			continue;
		}
		d->q = d->id == ID_NET || d->id == ID_VSOCK ? 1 : 0;  /* tx: popped on a kick */
		w32(d, R_QUEUE_SEL, d->q);
		d->qmax = r32(d, R_QUEUE_NUM_MAX);
		say("hostile: %s at %#llx (%s): unbound, status %#x; attacking queue %u of at most %u entries",
		    d->name, (unsigned long long)base, d->pdev, r32(d, R_STATUS), d->q, d->qmax);
		if (d->qmax < SMALL_Q || d->qmax > PAGE / 16) {
			say("hostile: %s: QueueNumMax %u does not fit the test's one-page rings", d->name, d->qmax);
			munmap(p, PAGE);
			continue;
		}
		n++;
	}
	close(fd);
	for (i = 0; i < n; i++) {
		attack_device(&devs[i]);
		munmap((void *)devs[i].regs, PAGE);
	}
	say("hostile: %d devices attacked in %llu ms; %d unexpected answers", n,
	    (unsigned long long)(mono_ms() - t0), unexpected);
	for (i = 0; i < unexpected && i < MAX_UNEXPECTED; i++)
		say("hostile: unexpected: %s", unexpected_list[i]);
	return n ? unexpected : -1;
}
