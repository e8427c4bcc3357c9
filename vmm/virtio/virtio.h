/* Virtio devices apart from their transport.
 *
 * A device is an ops table (struct virtio_dev_ops) plus private state; the
 * virtio-mmio transport (mmio.c) owns the registers and calls the ops.
 * Queue notifications arrive on the event-loop thread through one
 * ioeventfd per queue; interrupts leave through one irqfd per device.
 * All state is in plain structs so that it could be saved and restored. */
#ifndef VMM_VIRTIO_H
#define VMM_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/snapshot.h"
#include "vmm/virtio/queue.h"

#define VIRTIO_MAX_QUEUES 4

/* Device status bits (virtio 1.x, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Feature bits every device offers or understands. */
#define VIRTIO_F_VERSION_1 32

/* Interrupt status bits. */
#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

/* Device IDs. */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_VSOCK 19

struct virtio_dev;

struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	uint16_t num_queues;
	uint16_t queue_max;   /* largest queue size offered (<= VIRTQ_MAX_SIZE) */
	/* Device-specific feature bits offered (VERSION_1 is added by the
	 * transport). */
	uint64_t (*features)(struct virtio_dev *d);
	/* Read/write len bytes at off in the device config space; out of range
	 * reads give zeros, writes are ignored. */
	void (*config_read)(struct virtio_dev *d, uint32_t off, void *data, uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len);
	/* The driver set DRIVER_OK: start serving (register fds with the event
	 * loop). Returns 0 or -errno, which marks the device NEEDS_RESET. */
	int (*activate)(struct virtio_dev *d);
	/* Queue q was notified (called on the event-loop thread, with d->lock
	 * held). */
	void (*queue_notify)(struct virtio_dev *d, uint16_t q);
	/* The driver reset the device: drop in-flight state, unregister fds.
	 * Called with d->lock held. */
	void (*reset)(struct virtio_dev *d);
	/* Snapshots: append the device's own state (after the transport's),
	 * and read it back before the device is activated; restore returns 0
	 * or -EINVAL for state it cannot take. Either may be NULL (none). */
	void (*save)(struct virtio_dev *d, struct snap_writer *w);
	int (*restore)(struct virtio_dev *d, struct snap_reader *r);
	/* After a restore, the device is on a new machine (new entropy, lost
	 * host connections): tell the driver what it must redo. May be NULL. */
	void (*restored)(struct virtio_dev *d);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv;                    /* the device's own state */
	const struct guest_mem *mem;
	struct evloop *loop;
	pthread_mutex_t lock;          /* guards everything below */

	/* Transport state, set through MMIO registers. */
	uint32_t status;
	uint32_t isr;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	uint32_t config_generation;
	bool config_pending;           /* changed before DRIVER_OK: tell at DRIVER_OK */

	/* Host resources, -1 when unset. */
	uint64_t mmio_base;
	uint32_t gsi;
	int irqfd;                     /* write 1 to raise the interrupt */
	int ioeventfd[VIRTIO_MAX_QUEUES];
};

/* Mark used buffers and raise the device's interrupt unless the driver
 * suppressed it for queue q. Call with d->lock held. */
void virtio_notify_used(struct virtio_dev *d, uint16_t q);

/* The guest broke the protocol (bad ring, bad request layout): set
 * NEEDS_RESET, stop serving, tell the driver. Call with d->lock held. */
void virtio_needs_reset(struct virtio_dev *d, const char *why);

/* The device's config changed: a new generation and a configuration-change
 * interrupt, held until DRIVER_OK when the driver has not started yet.
 * Call with d->lock held. */
void virtio_config_changed(struct virtio_dev *d);

/* Whether the driver accepted feature bit. */
static inline bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return (d->driver_features >> bit) & 1;
}

/* Whether the device is live (DRIVER_OK and not NEEDS_RESET). */
static inline bool virtio_live(const struct virtio_dev *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

#endif
