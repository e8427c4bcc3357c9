/* The virtio-mmio transport, version 2 (virtio 1.1, 4.2).
 *
 * Each device owns a 4 KiB window of guest physical address space. vCPU
 * threads forward KVM_EXIT_MMIO accesses inside it to virtio_mmio_access();
 * queue notifications normally bypass that path through one ioeventfd per
 * queue, and interrupts leave through the device's irqfd. Both paths take
 * d->lock, so device ops always run under it.
 *
 * Lifecycle: virtio_mmio_init() (pure state, no KVM), optionally
 * virtio_mmio_attach_kvm(), then virtio_mmio_detach() at teardown, before
 * the device's private state and the event loop are released. */
#ifndef VMM_VIRTIO_MMIO_H
#define VMM_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_MMIO_MAGIC 0x74726976      /* "virt" */
#define VIRTIO_MMIO_VERSION 2
#define VIRTIO_MMIO_VENDOR 0x4b494c4e     /* "KILN" */
#define VIRTIO_MMIO_SIZE 0x1000

/* Register offsets (4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION_REG 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

/* Zero the transport state of d, bind it to ops/priv, guest memory, the
 * event loop and its window at base raising gsi; fds start at -1. Of ops,
 * features, config_read/write, activate and reset may be NULL (nothing to
 * do). Needs no KVM. 0 or -errno (-EINVAL for ops beyond VIRTIO_MAX_QUEUES
 * or VIRTQ_MAX_SIZE); after a failure d must not be detached. */
int virtio_mmio_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		     const struct guest_mem *mem, struct evloop *loop, uint64_t base, uint32_t gsi);

/* Wire d to the VM: an irqfd on d->gsi and one ioeventfd per queue on
 * QueueNotify (datamatch = queue index), each watched by d->loop. On
 * failure everything made here is undone. 0 or -errno. */
int virtio_mmio_attach_kvm(struct virtio_dev *d, int vm_fd);

/* An MMIO access at offset inside the window, from a vCPU thread: len bytes
 * at data (len <= 8), read into or written from data. Registers take 4-byte
 * accesses only (others read 0 and write nothing); the config space takes 1,
 * 2, 4 or 8. Takes d->lock. */
void virtio_mmio_access(struct virtio_dev *d, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* Undo attach and init: reset the device (so it drops its own event-loop
 * watches), stop watching the ioeventfds, close every fd (-1 after) and
 * destroy the lock. KVM drops its irqfd/ioeventfd bindings when the VM
 * goes away, so none are deassigned here. Safe on a device never attached. */
void virtio_mmio_detach(struct virtio_dev *d);

/* Snapshots: the transport state of d (device id, status, features, each
 * queue's registers and indices, config generation) and then the device's
 * own (ops->save), into the open section of w. With every vCPU paused and
 * on the event-loop thread. */
void virtio_mmio_save(struct virtio_dev *d, struct snap_writer *w);

/* Take back what virtio_mmio_save wrote, into a device made the same way
 * (virtio_mmio_init and attach): every field is checked (the device id
 * must match, queue sizes within the device's, a live device's rings
 * inside guest RAM) and a live device is activated again, then told it is
 * on a new machine (ops->restored) and every live queue is served once
 * (a kick the save swallowed). 0, or -EINVAL with what was wrong in err. */
int virtio_mmio_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen);

#endif
