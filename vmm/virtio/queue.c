#include "vmm/virtio/queue.h"

#include <string.h>

/* Ring layouts (virtio 1.x, 2.7). Everything is little-endian, which on
 * x86 is the host order, so fields are used as they are. */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

_Static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element layout");

/* Byte sizes of the three areas for a queue of n entries; the trailing
 * used_event/avail_event words are counted even though EVENT_IDX is not
 * offered, so that a driver built either way fits. */
static uint64_t desc_bytes(uint16_t n) { return 16ULL * n; }
static uint64_t avail_bytes(uint16_t n) { return 6ULL + 2ULL * n; }
static uint64_t used_bytes(uint16_t n) { return 6ULL + 8ULL * n; }

static bool size_ok(uint16_t n)
{
	return n >= 1 && n <= VIRTQ_MAX_SIZE && (n & (n - 1)) == 0;
}

bool virtq_valid(const struct virtq *q, const struct guest_mem *m)
{
	if (!q->ready || !size_ok(q->size))
		return false;
	/* Alignment from 2.7: descriptors 16, driver area 2, device area 4. */
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return false;
	return gm_ptr(m, q->desc_gpa, desc_bytes(q->size)) &&
	       gm_ptr(m, q->avail_gpa, avail_bytes(q->size)) &&
	       gm_ptr(m, q->used_gpa, used_bytes(q->size));
}

/* The avail ring as 16-bit words: [0] flags, [1] idx, [2 + i] ring[i].
 * Re-translated on every use rather than cached: cheap, and the queue
 * struct stays plain data. NULL when the queue is not usable. */
static uint16_t *avail_ring(const struct virtq *q, const struct guest_mem *m)
{
	if (!size_ok(q->size) || (q->avail_gpa & 1))
		return NULL;
	return gm_ptr(m, q->avail_gpa, avail_bytes(q->size));
}

enum virtq_result virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c)
{
	uint16_t *avail = avail_ring(q, m);
	struct vring_desc *table;
	uint16_t avail_idx, head, i;
	uint64_t readable = 0, writable = 0;
	bool seen_writable = false;
	unsigned count;

	if (!q->ready || !avail || (q->desc_gpa & 15))
		return VIRTQ_BROKEN;
	table = gm_ptr(m, q->desc_gpa, desc_bytes(q->size));
	if (!table)
		return VIRTQ_BROKEN;

	avail_idx = __atomic_load_n(&avail[1], __ATOMIC_RELAXED);
	/* Ring entries and descriptors must be read after the index that
	 * published them. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return VIRTQ_BROKEN;
	if (avail_idx == q->last_avail)
		return VIRTQ_EMPTY;  /* c untouched */
	c->n = 0;

	head = __atomic_load_n(&avail[2 + q->last_avail % q->size], __ATOMIC_RELAXED);
	if (head >= q->size)
		return VIRTQ_BROKEN;

	/* A well-formed chain visits each descriptor at most once, so more
	 * than size links means a loop; no visited set needed. */
	i = head;
	for (count = 0;; count++) {
		struct vring_desc dsc;
		void *p;

		if (count >= q->size)
			return VIRTQ_BROKEN;
		/* One snapshot per descriptor: the guest may rewrite the
		 * table while we walk it, and we must act on what we checked. */
		memcpy(&dsc, &table[i], sizeof(dsc));
		if (dsc.flags & VIRTQ_DESC_F_INDIRECT)
			return VIRTQ_BROKEN;
		p = gm_ptr(m, dsc.addr, dsc.len);
		if (!p)
			return VIRTQ_BROKEN;
		if (dsc.flags & VIRTQ_DESC_F_WRITE) {
			seen_writable = true;
			writable += dsc.len;
		} else {
			/* 2.7.4.2: readable after writable is a driver bug;
			 * devices parse requests relying on the order. */
			if (seen_writable)
				return VIRTQ_BROKEN;
			readable += dsc.len;
		}
		if (readable + writable > UINT32_MAX)
			return VIRTQ_BROKEN;
		c->seg[c->n++] = (struct virtq_seg){
			.addr = p,
			.len = dsc.len,
			.device_writes = (dsc.flags & VIRTQ_DESC_F_WRITE) != 0,
		};
		if (!(dsc.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (dsc.next >= q->size)
			return VIRTQ_BROKEN;
		i = dsc.next;
	}

	c->head = head;
	c->readable = (uint32_t)readable;
	c->writable = (uint32_t)writable;
	q->last_avail++;
	return VIRTQ_CHAIN;
}

void virtq_undo_pop(struct virtq *q)
{
	q->last_avail--;
}

bool virtq_push(struct virtq *q, const struct guest_mem *m, uint16_t head, uint32_t len)
{
	uint8_t *used;
	struct vring_used_elem e = { .id = head, .len = len };

	if (!size_ok(q->size) || (q->used_gpa & 3) || head >= q->size)
		return false;
	used = gm_ptr(m, q->used_gpa, used_bytes(q->size));
	if (!used)
		return false;
	memcpy(used + 4 + 8 * (q->used_idx % q->size), &e, sizeof(e));
	q->used_idx++;
	/* The element (and the data written into the buffers before the
	 * push) must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n((uint16_t *)(used + 2), q->used_idx, __ATOMIC_RELAXED);
	return true;
}

bool virtq_should_notify(const struct virtq *q, const struct guest_mem *m)
{
	uint16_t *avail = avail_ring(q, m);

	if (!avail)
		return true;  /* an interrupt too many is harmless */
	/* The used idx store must be ordered before the flags load, or we
	 * could miss a driver that just re-enabled interrupts (2.7.10). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(__atomic_load_n(&avail[0], __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* Copy [off, off + len) of one direction's bytes: writable picks the
 * device-writable part (copy into the chain), else the readable part (copy
 * out of it). */
static uint32_t chain_copy(const struct virtq_chain *c, bool writable, uint32_t off, void *buf, uint32_t len)
{
	uint32_t done = 0;
	uint16_t i;

	for (i = 0; i < c->n && done < len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint32_t n;

		if (s->device_writes != writable)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		n = s->len - off;
		if (n > len - done)
			n = len - done;
		if (writable)
			memcpy(s->addr + off, (uint8_t *)buf + done, n);
		else
			memcpy((uint8_t *)buf + done, s->addr + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint32_t virtq_chain_read(const struct virtq_chain *c, uint32_t off, void *dst, uint32_t len)
{
	return chain_copy(c, false, off, dst, len);
}

uint32_t virtq_chain_write(const struct virtq_chain *c, uint32_t off, const void *src, uint32_t len)
{
	return chain_copy(c, true, off, (void *)src, len);
}
