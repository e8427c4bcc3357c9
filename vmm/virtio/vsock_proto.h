/* virtio-vsock wire format and the arithmetic of its stream protocol
 * (virtio 1.2, 5.10), kept free of I/O so that it can be unit-tested.
 *
 * Every packet starts with a 44-byte little-endian header; a connection is
 * identified by (host port, guest port). Flow control is by credit: each
 * side advertises buf_alloc (its receive buffer) and fwd_cnt (bytes it has
 * consumed), and the sender may have at most buf_alloc bytes in flight.
 * Counters are free-running u32s and wrap. */
#ifndef VMM_VIRTIO_VSOCK_PROTO_H
#define VMM_VIRTIO_VSOCK_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSOCK_HOST_CID 2
#define VSOCK_HDR_SIZE 44
#define VSOCK_TYPE_STREAM 1

#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7

#define VSOCK_SHUTDOWN_RCV 1   /* the sender will receive no more data */
#define VSOCK_SHUTDOWN_SEND 2  /* the sender will send no more data */

#define VSOCK_MAX_PKT (64 * 1024)        /* payload bytes per packet, either way */
#define VSOCK_CONN_BUF (64 * 1024)       /* buf_alloc we advertise = host-bound buffer cap */
#define VSOCK_CREDIT_THRESHOLD (4 * 1024)
#define VSOCK_CONNECT_MAX 32             /* "CONNECT <port>\n", newline included */
#define VSOCK_HOST_PORT_FIRST (1u << 30)

/* The header, in host order. */
struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;        /* payload bytes after the header */
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
};

/* Write h as its 44 wire bytes. */
void vsock_hdr_encode(uint8_t out[VSOCK_HDR_SIZE], const struct vsock_hdr *h);

/* Read 44 wire bytes into h; every bit pattern decodes (validation is the
 * caller's). */
void vsock_hdr_decode(struct vsock_hdr *h, const uint8_t in[VSOCK_HDR_SIZE]);

/* Bytes we may still send: peer_buf_alloc - (tx_cnt - peer_fwd_cnt), in
 * wrapping u32 arithmetic. A peer claiming more in flight than its buffer
 * (it shrank buf_alloc, or lies) gets 0, never a wrapped-around huge credit. */
uint32_t vsock_peer_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt);

/* Whether the peer should hear about our consumption: at least
 * VSOCK_CREDIT_THRESHOLD bytes consumed (fwd_cnt) since the fwd_cnt it was
 * last sent, wrapping. */
bool vsock_credit_update_due(uint32_t fwd_cnt, uint32_t last_sent_fwd_cnt);

/* Parse a host client's request line from the len bytes read so far:
 * "CONNECT <port>\n" (the verb in any case, blanks between, trailing blanks
 * and '\r' tolerated, as Firecracker's split-on-whitespace allows; a third
 * word is refused). Returns the line's length with its '\n' and sets *port
 * when complete and valid; 0 when no '\n' yet and fewer than
 * VSOCK_CONNECT_MAX bytes; -EINVAL for a malformed, over-long or
 * out-of-range line (port above UINT32_MAX). */
int vsock_parse_connect(const char *buf, size_t len, uint32_t *port);

/* The host port after last for a host-initiated connection: bit 30 set,
 * bit 31 clear, wrapping within [2^30, 2^31). */
uint32_t vsock_next_host_port(uint32_t last);

#endif
