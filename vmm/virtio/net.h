/* virtio-net (virtio 1.1, 5.1) over a host tap device, one rx/tx queue
 * pair served on the event-loop thread.
 *
 * Use:
 *	void *priv;
 *	virtio_net_open(&priv, &cfg->nets[i], mono_ns());
 *	virtio_mmio_init(d, &virtio_net_ops, priv, mem, loop, base, gsi);
 *	virtio_mmio_attach_kvm(d, vm_fd);
 *	...
 *	virtio_mmio_detach(d);
 *	virtio_net_close(priv);
 *
 * Offered: VERSION_1, MAC, STATUS (link always up). No checksum or
 * segmentation offloads and no MRG_RXBUF, so every frame is complete and
 * checksummed and must fit one rx chain with its 12-byte header (Linux then
 * posts 1.5 KiB buffers, enough for MTU 1500); a frame that does not fit
 * the next chain is dropped. The tap gets the same 12-byte vnet header,
 * always zeroed on the way out since nothing was negotiated that could make
 * it non-zero. Frames are rate limited one op + frame bytes (header
 * excluded) each: a throttled rx frame waits in the device, a throttled tx
 * chain in the ring. A broken ring puts the device in NEEDS_RESET. */
#ifndef VMM_VIRTIO_NET_H
#define VMM_VIRTIO_NET_H

#include <stdint.h>

#include "vmm/vmconfig.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1

#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_HDR_SIZE 12          /* virtio_net_hdr_v1, num_buffers included */
#define VIRTIO_NET_MAX_FRAME 65562      /* header + 65550 frame bytes, either way */

/* The device ops; priv must come from virtio_net_open(). */
extern const struct virtio_dev_ops virtio_net_ops;

/* Attach to the tap cfg->tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, 12-byte
 * vnet header, offloads off, non-blocking), take cfg's MAC or make a random
 * locally administered unicast one, and set up the rx/tx rate limiters at
 * now_ns (their timerfds are made here, before any seccomp filter). *priv
 * gets the device state. 0 or -errno (-EINVAL for a missing or over-long
 * tap name, -EOPNOTSUPP for a tun driver without vnet headers). */
int virtio_net_open(void **priv, const struct vm_net_cfg *cfg, uint64_t now_ns);

/* The same device over fd, which already carries one frame per read and
 * write behind a 12-byte vnet header, non-blocking (a set-up tap; tests and
 * fuzzers pass a SOCK_SEQPACKET socketpair); cfg->tap is ignored. The
 * device owns fd from here, closed on failure too. 0 or -errno. */
int virtio_net_open_fd(void **priv, int fd, const struct vm_net_cfg *cfg, uint64_t now_ns);

/* Release what virtio_net_open() made; after virtio_mmio_detach() and
 * before the event loop is closed. NULL is allowed. */
void virtio_net_close(void *priv);

#endif
