/* virtio-vsock (virtio 1.2, 5.10) backed by host Unix sockets, speaking
 * Firecracker's hybrid protocol:
 *
 *   host -> guest: a host client connects to uds_path and writes
 *     "CONNECT <port>\n"; once the guest's listener on <port> accepts, the
 *     client reads "OK <host port>\n" and the socket carries the stream.
 *     No listener (guest RST) or no answer within 2 s closes the socket.
 *   guest -> host: a guest connect to (CID 2, port P) becomes a connect to
 *     the Unix socket "<uds_path>_<P>"; none listening means RST.
 *
 * Use:
 *	void *priv;
 *	virtio_vsock_open(&priv, &cfg->vsock);
 *	virtio_mmio_init(d, &virtio_vsock_ops, priv, mem, loop, base, gsi);
 *	...
 *	virtio_mmio_detach(d);
 *	virtio_vsock_close(priv);
 *
 * Queues rx (0), tx (1), event (2), 256 entries each; config space is the
 * guest CID (le64); no feature bits beyond VERSION_1 (stream sockets only).
 * At most VSOCK_MAX_CONNS connections, each buffering at most 64 KiB bound
 * for its host socket. Connection sockets live in a private epoll set, so
 * the event loop watches one fd for all of them. A driver reset closes
 * every connection; the listening socket stays. */
#ifndef VMM_VIRTIO_VSOCK_H
#define VMM_VIRTIO_VSOCK_H

#include "vmm/vmconfig.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_VSOCK_QUEUE_SIZE 256
#define VSOCK_MAX_CONNS 1023

/* The device ops; priv must come from virtio_vsock_open(). */
extern const struct virtio_dev_ops virtio_vsock_ops;

/* Bind and listen on cfg->uds_path and set up the device state in *priv.
 * A stale socket file there (nobody accepting) is removed first; a live
 * one is -EADDRINUSE, any other kind of file -EEXIST. Host clients wait in
 * the backlog until the driver starts the device. 0 or -errno: -EINVAL for
 * a guest CID below 3 or above UINT32_MAX - 1, -ENAMETOOLONG for a path
 * that does not fit a socket address (a "<uds_path>_<P>" that does not
 * fit only makes guest connects to P fail). */
int virtio_vsock_open(void **priv, const struct vm_vsock_cfg *cfg);

/* The buffer holding the socket's path, the only one close() unlinks: the
 * seccomp filter allows unlink of that address alone. */
const char *virtio_vsock_path(const void *priv);

/* Close every socket, remove the socket file and free the state; after
 * virtio_mmio_detach(). NULL is allowed. */
void virtio_vsock_close(void *priv);

#endif
