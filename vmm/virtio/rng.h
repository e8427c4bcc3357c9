/* virtio-rng (virtio 1.1, 5.4): one queue whose device-writable buffers
 * are filled from getrandom(), at most 64 KiB per chain. Same shape as the
 * other devices, though it has no state of its own:
 *	virtio_rng_open(&priv);
 *	virtio_mmio_init(d, &virtio_rng_ops, priv, mem, loop, base, gsi);
 *	...
 *	virtio_mmio_detach(d);
 *	virtio_rng_close(priv);
 * Readable segments in a chain are ignored; a broken ring puts the device
 * in NEEDS_RESET. */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include "vmm/virtio/virtio.h"

#define VIRTIO_RNG_QUEUE_SIZE 256
#define VIRTIO_RNG_MAX_CHAIN (64 * 1024)  /* bytes filled per request */

extern const struct virtio_dev_ops virtio_rng_ops;

/* *priv gets the device state (NULL: there is none). 0 or -errno. */
int virtio_rng_open(void **priv);
/* Release what virtio_rng_open() made; NULL is allowed. */
void virtio_rng_close(void *priv);

#endif
