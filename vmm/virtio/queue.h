/* Split virtqueues (virtio 1.x, 2.7) as seen by the device.
 *
 * The guest owns the rings, so everything read from them is hostile:
 * addresses go through gm_ptr(), chains are bounded by the queue size, and
 * any inconsistency is reported as VIRTQ_BROKEN so that the device can
 * enter NEEDS_RESET. No indirect descriptors or event index are offered. */
#ifndef VMM_VIRTIO_QUEUE_H
#define VMM_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/guestmem.h"

#define VIRTQ_MAX_SIZE 256
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* Queue registers as the driver programmed them; plain data. */
struct virtq {
	uint16_t size;        /* QueueNum: power of two, 1..VIRTQ_MAX_SIZE */
	bool ready;
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;
	uint16_t last_avail;  /* next avail ring entry to take */
	uint16_t used_idx;    /* next used ring entry to fill */
};

/* One buffer of a chain, already translated to host memory. */
struct virtq_seg {
	uint8_t *addr;
	uint32_t len;
	bool device_writes;   /* VIRTQ_DESC_F_WRITE */
};

struct virtq_chain {
	uint16_t head;                        /* descriptor index to hand back */
	uint16_t n;                           /* segments used */
	uint32_t readable;                    /* bytes in driver-written segments */
	uint32_t writable;                    /* bytes in device-writable segments */
	struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

enum virtq_result { VIRTQ_EMPTY = 0, VIRTQ_CHAIN = 1, VIRTQ_BROKEN = -1 };

/* Whether the programmed queue is usable: ready, size a power of two within
 * bounds, and all three rings inside guest RAM with proper alignment. */
bool virtq_valid(const struct virtq *q, const struct guest_mem *m);

/* Take the next available chain into c. Readable segments always precede
 * writable ones; a chain longer than the queue, a loop, an address outside
 * RAM, an indirect descriptor, a total length over 4 GiB or an avail index
 * that ran more than size ahead is VIRTQ_BROKEN. */
enum virtq_result virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c);

/* Give back the chain just popped so that the next pop returns it again
 * (a throttled device retries it later). */
void virtq_undo_pop(struct virtq *q);

/* Return chain head with len bytes written into its writable segments. */
bool virtq_push(struct virtq *q, const struct guest_mem *m, uint16_t head, uint32_t len);

/* Whether the driver wants an interrupt after used buffers were added. */
bool virtq_should_notify(const struct virtq *q, const struct guest_mem *m);

/* Copy up to len bytes from the chain's readable segments starting at
 * offset off into dst; returns the bytes copied. */
uint32_t virtq_chain_read(const struct virtq_chain *c, uint32_t off, void *dst, uint32_t len);

/* Copy up to len bytes into the chain's writable segments starting at
 * offset off (counted within the writable part); returns the bytes copied. */
uint32_t virtq_chain_write(const struct virtq_chain *c, uint32_t off, const void *src, uint32_t len);

#endif
