/* virtq_pop(), virtq_push() and the chain copies over fuzzed guest memory:
 * the input sets the queue's registers and fills RAM, rings included.
 *
 * Properties, judged apart from queue.c's own code:
 * - a chain's segments are exactly its descriptors' buffers, translated
 *   inside guest RAM, readable ones first, and its byte counts add up;
 * - VIRTQ_BROKEN exactly when the ring is broken (a model below walks the
 *   chain with a visited set rather than a counter);
 * - last_avail moves by one per chain, and never on EMPTY or BROKEN;
 * - copies in and out of a chain return what the chain can hold from the
 *   offset, and stay in it (guard pages around RAM catch strays). */
#include <string.h>
#include <sys/mman.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/guestmem.h"
#include "vmm/virtio/queue.h"

#define LOW 0xc000u
#define HIGH 0x4000u
#define GUARD 4096u
#define MAX_POPS 8

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static uint8_t *ram;
static struct guest_mem mem;

/* Host offset of [gpa, gpa + len) in RAM, or -1. */
static int64_t ram_off(uint64_t gpa, uint64_t len)
{
	if (gpa <= LOW && len <= LOW - gpa)
		return (int64_t)gpa;
	if (gpa >= GM_HIGH_START && gpa - GM_HIGH_START <= HIGH && len <= HIGH - (gpa - GM_HIGH_START))
		return (int64_t)(LOW + (gpa - GM_HIGH_START));
	return -1;
}

static uint64_t gpa_of(uint16_t v, uint8_t raw_bits)
{
	/* Mostly in RAM; now and then unaligned, near the edges or far off. */
	if (raw_bits == 0xff)
		return (uint64_t)v << 20;
	return v < LOW ? v : GM_HIGH_START + (v - LOW);
}

static struct desc desc_at(const struct virtq *q, uint16_t i)
{
	struct desc d;

	memcpy(&d, ram + ram_off(q->desc_gpa, 16ULL * q->size) + 16 * i, sizeof(d));
	return d;
}

/* The model: whether the next pop must be BROKEN (1), EMPTY (0) or a
 * chain (2). */
static int model(const struct virtq *q)
{
	bool seen[VIRTQ_MAX_SIZE] = { false }, writable = false;
	uint64_t total = 0;
	uint16_t idx, head, i;
	int64_t a;

	if (!q->ready || q->size == 0 || q->size > VIRTQ_MAX_SIZE || (q->size & (q->size - 1)))
		return 1;
	if ((q->avail_gpa & 1) || (q->desc_gpa & 15))
		return 1;
	a = ram_off(q->avail_gpa, 6 + 2ULL * q->size);
	if (a < 0 || ram_off(q->desc_gpa, 16ULL * q->size) < 0)
		return 1;
	memcpy(&idx, ram + a + 2, 2);
	if ((uint16_t)(idx - q->last_avail) > q->size)
		return 1;
	if (idx == q->last_avail)
		return 0;
	memcpy(&head, ram + a + 4 + 2 * (q->last_avail % q->size), 2);
	for (i = head;;) {
		struct desc d;

		if (i >= q->size || seen[i])
			return 1;
		seen[i] = true;
		d = desc_at(q, i);
		if ((d.flags & VIRTQ_DESC_F_INDIRECT) || ram_off(d.addr, d.len) < 0)
			return 1;
		if (!(d.flags & VIRTQ_DESC_F_WRITE) && writable)
			return 1;
		writable |= (d.flags & VIRTQ_DESC_F_WRITE) != 0;
		total += d.len;
		if (total > UINT32_MAX)
			return 1;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 2;
		i = d.next;
	}
}

/* The chain must be the descriptors from its head, in RAM, in order. */
static void check_chain(const struct virtq *q, const struct virtq_chain *c)
{
	uint32_t readable = 0, writable = 0;
	uint16_t i = c->head, k;

	FUZZ_CHECK(c->n >= 1 && c->n <= q->size);
	for (k = 0; k < c->n; k++) {
		struct desc d = desc_at(q, i);
		const struct virtq_seg *s = &c->seg[k];

		FUZZ_CHECK(s->addr == ram + ram_off(d.addr, d.len) && s->len == d.len);
		FUZZ_CHECK(s->device_writes == ((d.flags & VIRTQ_DESC_F_WRITE) != 0));
		FUZZ_CHECK(k == 0 || !c->seg[k - 1].device_writes || s->device_writes);
		if (s->device_writes)
			writable += s->len;
		else
			readable += s->len;
		FUZZ_CHECK(k + 1 < c->n ? (d.flags & VIRTQ_DESC_F_NEXT) != 0 : !(d.flags & VIRTQ_DESC_F_NEXT));
		i = d.next;
	}
	FUZZ_CHECK(readable == c->readable && writable == c->writable);
}

static void check_copies(const struct virtq_chain *c, struct fuzz_in *in)
{
	static uint8_t buf[1 << 17];
	uint32_t off = fuzz_u32(in) % (c->readable + c->writable + 2);
	uint32_t len = fuzz_u32(in) % sizeof(buf);
	uint32_t r = virtq_chain_read(c, off, buf, len);
	uint32_t w = virtq_chain_write(c, off, buf, len);

	FUZZ_CHECK(r == (off >= c->readable ? 0 : c->readable - off < len ? c->readable - off : len));
	FUZZ_CHECK(w == (off >= c->writable ? 0 : c->writable - off < len ? c->writable - off : len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size, false };
	static struct virtq_chain c;
	struct virtq q = { 0 };
	uint8_t raw_bits, pops;
	size_t n;
	const uint8_t *fill;
	unsigned k;

	if (!ram) {
		uint8_t *m = mmap(NULL, LOW + HIGH + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		FUZZ_CHECK(m != MAP_FAILED && mprotect(m + GUARD, LOW + HIGH, PROT_READ | PROT_WRITE) == 0);
		ram = m + GUARD;
		mem = (struct guest_mem){ .host = ram, .low_size = LOW, .high_size = HIGH };
	}
	q.size = fuzz_u8(&in);
	q.size = q.size < 0xf0 ? 1u << (q.size % 9) : q.size;
	q.ready = true;
	raw_bits = fuzz_u8(&in);
	q.desc_gpa = gpa_of(fuzz_u16(&in), raw_bits & 0x03 ? 0 : 0xff);
	q.avail_gpa = gpa_of(fuzz_u16(&in), raw_bits & 0x0c ? 0 : 0xff);
	q.used_gpa = gpa_of(fuzz_u16(&in), raw_bits & 0x30 ? 0 : 0xff);
	q.last_avail = q.used_idx = fuzz_u16(&in);
	pops = fuzz_u8(&in) % MAX_POPS + 1;
	/* The copy checks' numbers come first, then RAM's contents. */
	{
		struct fuzz_in copies = { 0 };

		copies.p = fuzz_bytes(&in, 8 * MAX_POPS, &n);
		copies.n = n;
		memset(ram, 0, LOW + HIGH);
		fill = fuzz_bytes(&in, LOW + HIGH, &n);
		memcpy(ram, fill, n);

		for (k = 0; k < pops; k++) {
			int want = model(&q);
			uint16_t before = q.last_avail;
			enum virtq_result r = virtq_pop(&q, &mem, &c);

			FUZZ_CHECK(want == (r == VIRTQ_BROKEN ? 1 : r == VIRTQ_EMPTY ? 0 : 2));
			if (r != VIRTQ_CHAIN) {
				FUZZ_CHECK(q.last_avail == before);
				break;
			}
			FUZZ_CHECK(q.last_avail == (uint16_t)(before + 1));
			check_chain(&q, &c);
			check_copies(&c, &copies);
			if (!virtq_push(&q, &mem, c.head, c.writable))
				FUZZ_CHECK((q.used_gpa & 3) || ram_off(q.used_gpa, 6 + 8ULL * q.size) < 0);
		}
	}
	return 0;
}
