/* The byte stream to the host that carries the agent protocol
 * (docs/agent-protocol.md, "Transport"). */
#ifndef KILN_AGENT_CHANNEL_H
#define KILN_AGENT_CHANNEL_H

/* How long to wait for the device or the host's listener: a guest boots
 * faster than some hosts get to listen, and virtio ports can show up late. */
#define CHANNEL_TIMEOUT_MS 10000

/* The virtio-serial port name QEMU gives the agent's port. */
#define CHANNEL_PORT_NAME "org.kiln.agent"

/* Open the stream `kind` names: "vsock" connects to the host (CID 2) on
 * AP_VSOCK_PORT; "virtio-console" opens /dev/<port> for the port named
 * CHANNEL_PORT_NAME under /sys/class/virtio-ports. Retries for up to
 * timeout_ms, 1 ms after the first attempt, backing off to every 100 ms.
 * Returns a blocking, close-on-exec fd; -EINVAL for an unknown kind; or
 * -errno of the last attempt (reported on stderr). */
int channel_open(const char *kind, int timeout_ms);

#endif
