#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/virtio/vsock_proto.h"

/* Every field distinct and with its high byte set, so a swapped, shifted
 * or truncated field shows. */
static const struct vsock_hdr sample = {
	.src_cid = 0x0102030405060708ULL,
	.dst_cid = 0x1112131415161718ULL,
	.src_port = 0x21222324,
	.dst_port = 0x31323334,
	.len = 0x41424344,
	.type = 0x5152,
	.op = 0x6162,
	.flags = 0x71727374,
	.buf_alloc = 0x81828384,
	.fwd_cnt = 0x91929394,
};

static const uint8_t sample_wire[VSOCK_HDR_SIZE] = {
	0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  /* src_cid */
	0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  /* dst_cid */
	0x24, 0x23, 0x22, 0x21,                          /* src_port */
	0x34, 0x33, 0x32, 0x31,                          /* dst_port */
	0x44, 0x43, 0x42, 0x41,                          /* len */
	0x52, 0x51,                                      /* type */
	0x62, 0x61,                                      /* op */
	0x74, 0x73, 0x72, 0x71,                          /* flags */
	0x84, 0x83, 0x82, 0x81,                          /* buf_alloc */
	0x94, 0x93, 0x92, 0x91,                          /* fwd_cnt */
};

static void assert_hdr_eq(const struct vsock_hdr *a, const struct vsock_hdr *b)
{
	ck_assert_uint_eq(a->src_cid, b->src_cid);
	ck_assert_uint_eq(a->dst_cid, b->dst_cid);
	ck_assert_uint_eq(a->src_port, b->src_port);
	ck_assert_uint_eq(a->dst_port, b->dst_port);
	ck_assert_uint_eq(a->len, b->len);
	ck_assert_uint_eq(a->type, b->type);
	ck_assert_uint_eq(a->op, b->op);
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->buf_alloc, b->buf_alloc);
	ck_assert_uint_eq(a->fwd_cnt, b->fwd_cnt);
}

START_TEST(hdr_encode_bytes)
{
	uint8_t wire[VSOCK_HDR_SIZE + 4];

	/* Exactly 44 bytes written, packed little-endian. */
	memset(wire, 0xee, sizeof(wire));
	vsock_hdr_encode(wire, &sample);
	ck_assert_mem_eq(wire, sample_wire, VSOCK_HDR_SIZE);
	ck_assert_uint_eq(wire[VSOCK_HDR_SIZE], 0xee);
	ck_assert_uint_eq(wire[VSOCK_HDR_SIZE + 3], 0xee);
}
END_TEST

START_TEST(hdr_round_trip)
{
	struct vsock_hdr h, back;
	uint8_t wire[VSOCK_HDR_SIZE], again[VSOCK_HDR_SIZE];
	unsigned i;

	vsock_hdr_decode(&h, sample_wire);
	assert_hdr_eq(&h, &sample);

	/* A typical packet: RW from the guest. */
	h = (struct vsock_hdr){ .src_cid = 3, .dst_cid = VSOCK_HOST_CID, .src_port = 1024,
				.dst_port = 52, .len = 4096, .type = VSOCK_TYPE_STREAM,
				.op = VSOCK_OP_RW, .buf_alloc = 262144, .fwd_cnt = 17 };
	vsock_hdr_encode(wire, &h);
	ck_assert_uint_eq(wire[0], 3);
	ck_assert_uint_eq(wire[8], 2);
	ck_assert_uint_eq(wire[16], 0x00);
	ck_assert_uint_eq(wire[17], 0x04);
	ck_assert_uint_eq(wire[28], 1);
	ck_assert_uint_eq(wire[30], 5);
	vsock_hdr_decode(&back, wire);
	assert_hdr_eq(&back, &h);

	/* Any 44 bytes decode, and encode back to the same bytes. */
	for (i = 0; i < sizeof(wire); i++)
		wire[i] = (uint8_t)(i * 37 + 11);
	vsock_hdr_decode(&h, wire);
	vsock_hdr_encode(again, &h);
	ck_assert_mem_eq(again, wire, sizeof(wire));
	memset(wire, 0xff, sizeof(wire));
	vsock_hdr_decode(&h, wire);
	ck_assert_uint_eq(h.src_cid, UINT64_MAX);
	ck_assert_uint_eq(h.type, UINT16_MAX);
	ck_assert_uint_eq(h.fwd_cnt, UINT32_MAX);
}
END_TEST

START_TEST(credit_arithmetic)
{
	/* Nothing sent: the whole buffer. */
	ck_assert_uint_eq(vsock_peer_credit(65536, 0, 0), 65536);
	/* 5000 sent, 1000 consumed: 4000 in flight. */
	ck_assert_uint_eq(vsock_peer_credit(65536, 1000, 5000), 61536);
	ck_assert_uint_eq(vsock_peer_credit(65536, 0, 65536), 0);
	/* Counters wrap: sent 0x10 past the wrap, peer consumed up to 0x20
	 * before it: 0x30 in flight. */
	ck_assert_uint_eq(vsock_peer_credit(65536, 0xffffffe0u, 0x10), 65536 - 0x30);
	ck_assert_uint_eq(vsock_peer_credit(65536, 0xffffffffu, 0xffffffffu), 65536);
	ck_assert_uint_eq(vsock_peer_credit(UINT32_MAX, 1, 0), 0);
	/* More in flight than the buffer (shrunk, or lying): none, not a
	 * wrapped-around 4 GiB. */
	ck_assert_uint_eq(vsock_peer_credit(4096, 0, 8192), 0);
	ck_assert_uint_eq(vsock_peer_credit(0, 0, 0), 0);
	ck_assert_uint_eq(vsock_peer_credit(65536, 100, 50), 0);  /* fwd_cnt ahead of tx_cnt */

	/* Credit updates once 4 KiB were consumed since the last one. */
	ck_assert(!vsock_credit_update_due(0, 0));
	ck_assert(!vsock_credit_update_due(4095, 0));
	ck_assert(vsock_credit_update_due(4096, 0));
	ck_assert(vsock_credit_update_due(0x800, 0xfffff800u));   /* 4096 across the wrap */
	ck_assert(!vsock_credit_update_due(0x7ff, 0xfffff800u));
}
END_TEST

static int parse(const char *s, uint32_t *port)
{
	return vsock_parse_connect(s, strlen(s), port);
}

START_TEST(connect_good)
{
	uint32_t port = 0;

	ck_assert_int_eq(parse("CONNECT 1234\n", &port), 13);
	ck_assert_uint_eq(port, 1234);
	ck_assert_int_eq(parse("connect 0\n", &port), 10);
	ck_assert_uint_eq(port, 0);
	ck_assert_int_eq(parse("Connect 4294967295\n", &port), 19);
	ck_assert_uint_eq(port, UINT32_MAX);
	/* Blanks as Firecracker's whitespace split allows, CRLF too. */
	ck_assert_int_eq(parse("  CONNECT \t 52 \r\n", &port), 17);
	ck_assert_uint_eq(port, 52);
	/* Bytes after the newline are stream data, not part of the line. */
	ck_assert_int_eq(vsock_parse_connect("CONNECT 7\nhello", 15, &port), 10);
	ck_assert_uint_eq(port, 7);
	/* Exactly 32 bytes with the newline: the longest accepted. */
	ck_assert_int_eq(parse("CONNECT 00000000000000000000005\n", &port), 32);
	ck_assert_uint_eq(port, 5);
}
END_TEST

START_TEST(connect_incomplete)
{
	char buf[VSOCK_CONNECT_MAX + 1];
	uint32_t port = 99;

	ck_assert_int_eq(vsock_parse_connect("", 0, &port), 0);
	ck_assert_int_eq(parse("CONNECT 12", &port), 0);
	ck_assert_int_eq(parse("garbage, still no newline", &port), 0);
	ck_assert_uint_eq(port, 99);
	/* No newline within 32 bytes: refused, not waited on forever. */
	memset(buf, '1', sizeof(buf));
	memcpy(buf, "CONNECT ", 8);
	ck_assert_int_eq(vsock_parse_connect(buf, VSOCK_CONNECT_MAX - 1, &port), 0);
	ck_assert_int_eq(vsock_parse_connect(buf, VSOCK_CONNECT_MAX, &port), -EINVAL);
	ck_assert_int_eq(vsock_parse_connect(buf, sizeof(buf), &port), -EINVAL);
}
END_TEST

START_TEST(connect_bad)
{
	static const char *const bad[] = {
		"CONNECT 000000000000000000000005\n",  /* 33 bytes */
		"CONNECT abc\n",
		"CONNECT 12a\n",
		"CONNECT -1\n",
		"CONNECT +1\n",
		"CONNECT 0x10\n",
		"CONNECT \n",
		"CONNECT\n",
		"CONNECT1\n",
		"CONNEC 1\n",
		"CONNECTX 1\n",
		"LISTEN 1\n",
		"CONNECT 1 2\n",
		"\n",
		"CONNECT 4294967296\n",              /* UINT32_MAX + 1 */
		"CONNECT 99999999999999999999\n",    /* overflows 64 bits too */
	};
	uint32_t port = 99;
	unsigned i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(parse(bad[i], &port) == -EINVAL, "accepted %s", bad[i]);
	/* An embedded NUL is not a blank. */
	ck_assert_int_eq(vsock_parse_connect("CONNECT \0 5\n", 12, &port), -EINVAL);
	ck_assert_int_eq(vsock_parse_connect("CONNECT 5\0\n", 11, &port), -EINVAL);
	ck_assert_uint_eq(port, 99);
}
END_TEST

START_TEST(host_ports)
{
	uint32_t p = VSOCK_HOST_PORT_FIRST - 1;
	unsigned i;

	ck_assert_uint_eq(vsock_next_host_port(p), 1073741824u);
	ck_assert_uint_eq(vsock_next_host_port(1073741824u), 1073741825u);
	/* The top of the range wraps to its bottom, never to bit 31. */
	ck_assert_uint_eq(vsock_next_host_port(0x7fffffffu), 0x40000000u);
	ck_assert_uint_eq(vsock_next_host_port(0xffffffffu), 0x40000000u);
	for (i = 0, p = 0x7ffffff0u; i < 64; i++) {
		p = vsock_next_host_port(p);
		ck_assert_uint_eq(p >> 30, 1);
	}
}
END_TEST

Suite *vsock_suite(void)
{
	Suite *s = suite_create("vsock");
	TCase *tc = tcase_create("proto");

	tcase_add_test(tc, hdr_encode_bytes);
	tcase_add_test(tc, hdr_round_trip);
	tcase_add_test(tc, credit_arithmetic);
	tcase_add_test(tc, connect_good);
	tcase_add_test(tc, connect_incomplete);
	tcase_add_test(tc, connect_bad);
	tcase_add_test(tc, host_ports);
	suite_add_tcase(s, tc);
	return s;
}
