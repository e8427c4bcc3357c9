#include "vmm/virtio/vsock_proto.h"

#include <errno.h>

/* Byte-wise little-endian access: the header is packed, so its u64s sit
 * at unaligned offsets, and this stays right on any host. */
static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	unsigned i;

	for (i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

void vsock_hdr_encode(uint8_t out[VSOCK_HDR_SIZE], const struct vsock_hdr *h)
{
	put_le(out + 0, h->src_cid, 8);
	put_le(out + 8, h->dst_cid, 8);
	put_le(out + 16, h->src_port, 4);
	put_le(out + 20, h->dst_port, 4);
	put_le(out + 24, h->len, 4);
	put_le(out + 28, h->type, 2);
	put_le(out + 30, h->op, 2);
	put_le(out + 32, h->flags, 4);
	put_le(out + 36, h->buf_alloc, 4);
	put_le(out + 40, h->fwd_cnt, 4);
}

void vsock_hdr_decode(struct vsock_hdr *h, const uint8_t in[VSOCK_HDR_SIZE])
{
	h->src_cid = get_le(in + 0, 8);
	h->dst_cid = get_le(in + 8, 8);
	h->src_port = (uint32_t)get_le(in + 16, 4);
	h->dst_port = (uint32_t)get_le(in + 20, 4);
	h->len = (uint32_t)get_le(in + 24, 4);
	h->type = (uint16_t)get_le(in + 28, 2);
	h->op = (uint16_t)get_le(in + 30, 2);
	h->flags = (uint32_t)get_le(in + 32, 4);
	h->buf_alloc = (uint32_t)get_le(in + 36, 4);
	h->fwd_cnt = (uint32_t)get_le(in + 40, 4);
}

uint32_t vsock_peer_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt)
{
	uint32_t in_flight = tx_cnt - peer_fwd_cnt;  /* wraps by design */

	return in_flight > peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
}

bool vsock_credit_update_due(uint32_t fwd_cnt, uint32_t last_sent_fwd_cnt)
{
	return (uint32_t)(fwd_cnt - last_sent_fwd_cnt) >= VSOCK_CREDIT_THRESHOLD;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int vsock_parse_connect(const char *buf, size_t len, uint32_t *port)
{
	static const char verb[] = "connect";
	size_t nl, i, k;
	uint64_t v = 0;

	for (nl = 0; nl < len && buf[nl] != '\n'; nl++)
		;
	if (nl == len)
		return len < VSOCK_CONNECT_MAX ? 0 : -EINVAL;
	if (nl + 1 > VSOCK_CONNECT_MAX)
		return -EINVAL;

	for (i = 0; i < nl && is_blank(buf[i]); i++)
		;
	for (k = 0; verb[k]; k++, i++)
		if (i >= nl || lower(buf[i]) != verb[k])
			return -EINVAL;
	/* At least one blank must separate the verb from the port. */
	if (i >= nl || !is_blank(buf[i]))
		return -EINVAL;
	while (i < nl && is_blank(buf[i]))
		i++;
	if (i >= nl || buf[i] < '0' || buf[i] > '9')
		return -EINVAL;
	for (; i < nl && buf[i] >= '0' && buf[i] <= '9'; i++) {
		v = v * 10 + (uint64_t)(buf[i] - '0');
		/* The line is capped at 32 bytes, so v cannot overflow 64
		 * bits before this check trips. */
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	while (i < nl && is_blank(buf[i]))
		i++;
	if (i != nl)
		return -EINVAL;
	*port = (uint32_t)v;
	return (int)(nl + 1);
}

uint32_t vsock_next_host_port(uint32_t last)
{
	return ((last + 1) & ~(1u << 31)) | VSOCK_HOST_PORT_FIRST;
}
