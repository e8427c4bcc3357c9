/* virtio-blk (virtio 1.1, 5.2) over a cow_disk, one request queue served
 * synchronously on the event-loop thread.
 *
 * Use:
 *	void *priv;
 *	virtio_blk_open(&priv, &cfg->drives[i], tmp_dir, mono_ns());
 *	virtio_mmio_init(d, &virtio_blk_ops, priv, mem, loop, base, gsi);
 *	virtio_mmio_attach_kvm(d, vm_fd);
 *	...
 *	virtio_mmio_detach(d);
 *	virtio_blk_close(priv);
 *	ev_close(loop);
 *
 * Offered: VERSION_1, FLUSH, SEG_MAX, BLK_SIZE (512), and RO for read-only
 * drives. Requests: IN, OUT, FLUSH, GET_ID; anything else is UNSUPP. A bad
 * request (short header, unaligned or out-of-range data, write to a
 * read-only drive, I/O error) completes with IOERR; a chain with no byte
 * for the status puts the device in NEEDS_RESET, as does a broken ring. */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <stdint.h>

#include "vmm/vmconfig.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_QUEUE_SIZE 256

/* The device ops; priv must come from virtio_blk_open(). */
extern const struct virtio_dev_ops virtio_blk_ops;

/* Open the drive's image (its copy-on-write overlay, if any, in tmp_dir;
 * NULL means $TMPDIR or /var/tmp) and set up its rate limiter at now_ns.
 * *priv gets the device state. 0 or -errno. */
int virtio_blk_open(void **priv, const struct vm_drive_cfg *cfg, const char *tmp_dir, uint64_t now_ns);

/* The image file may have changed size (the host filled it in after
 * start): take its size as the new capacity and, when it changed, tell the
 * driver with a configuration-change interrupt (virtio 1.1, 5.2.4: the
 * capacity may change; Linux re-reads it). Copy-on-write drives keep
 * theirs. d must be a virtio-blk device. 1 when the capacity changed, 0
 * when not, -errno when the size could not be read. Takes d->lock. */
int virtio_blk_rescan(struct virtio_dev *d);

/* Release what virtio_blk_open() made; after virtio_mmio_detach() and
 * before the event loop is closed. NULL is allowed. */
void virtio_blk_close(void *priv);

#endif
