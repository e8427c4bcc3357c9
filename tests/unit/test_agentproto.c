/* The frame codec of agent/proto.c: what a reader accepts, in which
 * pieces, and what it refuses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job/agentmsg.h"
#include "agent/proto.h"
#include "tests/unit/suites.h"

/* A frame's bytes into buf; returns its size. */
static size_t frame(uint8_t *buf, uint8_t type, const char *payload)
{
	size_t n = strlen(payload);

	ap_header(buf, type, (uint32_t)n);
	memcpy(buf + AP_HEADER_SIZE, payload, n);
	return AP_HEADER_SIZE + n;
}

START_TEST(header_layout)
{
	uint8_t h[AP_HEADER_SIZE];

	ap_header(h, AP_STEP, 0x01020304);
	ck_assert_int_eq(h[0], 0x04);
	ck_assert_int_eq(h[1], 0x03);
	ck_assert_int_eq(h[2], 0x02);
	ck_assert_int_eq(h[3], 0x01);
	ck_assert_int_eq(h[4], AP_STEP);
	ck_assert_int_eq(h[5] | h[6] | h[7], 0);
	ck_assert_str_eq(ap_type_name(AP_CANCEL), "CANCEL");
	ck_assert_str_eq(ap_type_name(99), "?");
}
END_TEST

START_TEST(zero_length_payload)
{
	struct ap_reader r;
	uint8_t buf[16], type = 0;
	const uint8_t *p;
	uint32_t len = 99;

	ap_reader_init(&r);
	ck_assert_int_eq(ap_reader_feed(&r, buf, frame(buf, AP_HELLO, "")), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_HELLO);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 0);
	ap_reader_free(&r);
}
END_TEST

/* Byte by byte: nothing until the last byte, then exactly the frame. */
START_TEST(split_across_feeds)
{
	struct ap_reader r;
	uint8_t buf[64], type;
	const uint8_t *p;
	uint32_t len;
	size_t n = frame(buf, AP_OUTPUT, "hello, world"), i;

	ap_reader_init(&r);
	for (i = 0; i < n - 1; i++) {
		ck_assert_int_eq(ap_reader_feed(&r, buf + i, 1), 0);
		ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 0);
	}
	ck_assert_int_eq(ap_reader_feed(&r, buf + n - 1, 1), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_OUTPUT);
	ck_assert_uint_eq(len, 12);
	ck_assert_int_eq(memcmp(p, "hello, world", 12), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 0);
	ap_reader_free(&r);
}
END_TEST

/* Two whole frames and half a third in one feed; the rest in another. */
START_TEST(several_frames_in_one_feed)
{
	struct ap_reader r;
	uint8_t buf[256], type;
	const uint8_t *p;
	uint32_t len;
	size_t n = 0, third;

	n += frame(buf + n, AP_STEP, "{\"step\":\"script\"}");
	n += frame(buf + n, AP_OUTPUT, "");
	third = n;
	n += frame(buf + n, AP_EXIT, "{\"exit_code\":0}");
	ap_reader_init(&r);
	ck_assert_int_eq(ap_reader_feed(&r, buf, third + 5), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_STEP);
	ck_assert_int_eq(memcmp(p, "{\"step\":\"script\"}", len), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_OUTPUT);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 0);
	ck_assert_int_eq(ap_reader_feed(&r, buf + third + 5, n - third - 5), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_EXIT);
	ck_assert_uint_eq(len, strlen("{\"exit_code\":0}"));
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 0);
	ap_reader_free(&r);
}
END_TEST

/* Unknown types (0, one past the last) and reserved bits are -EPROTO, as
 * soon as the header is in and for good. */
START_TEST(malformed_header)
{
	static const struct {
		uint8_t byte;
		uint8_t value;
	} bad[] = { { 4, 0 }, { 4, AP_TYPE_MAX + 1 }, { 4, 0xff }, { 5, 1 }, { 6, 0x80 }, { 7, 1 } };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ap_reader r;
		uint8_t h[AP_HEADER_SIZE], type;
		const uint8_t *p;
		uint32_t len;

		ap_header(h, AP_OUTPUT, 100);
		h[bad[i].byte] = bad[i].value;
		ap_reader_init(&r);
		ck_assert_int_eq(ap_reader_feed(&r, h, sizeof(h)), 0);
		ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), -EPROTO);
		ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), -EPROTO);
		ap_reader_free(&r);
	}
}
END_TEST

/* Over AP_MAX_PAYLOAD is refused from the header alone, without waiting for
 * (or buffering) the payload; exactly AP_MAX_PAYLOAD is fine. */
START_TEST(oversized_frame)
{
	struct ap_reader r;
	uint8_t h[AP_HEADER_SIZE], type;
	const uint8_t *p;
	uint32_t len;
	uint8_t *big;

	ap_header(h, AP_JOB, AP_MAX_PAYLOAD + 1);
	ap_reader_init(&r);
	ck_assert_int_eq(ap_reader_feed(&r, h, sizeof(h)), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), -EMSGSIZE);
	ap_reader_free(&r);

	ap_header(h, AP_JOB, 0xffffffffu);
	ap_reader_init(&r);
	ck_assert_int_eq(ap_reader_feed(&r, h, sizeof(h)), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), -EMSGSIZE);
	ap_reader_free(&r);

	big = calloc(1, AP_HEADER_SIZE + AP_MAX_PAYLOAD);
	ck_assert_ptr_nonnull(big);
	ap_header(big, AP_JOB, AP_MAX_PAYLOAD);
	ap_reader_init(&r);
	ck_assert_int_eq(ap_reader_feed(&r, big, AP_HEADER_SIZE + AP_MAX_PAYLOAD), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_uint_eq(len, AP_MAX_PAYLOAD);
	ap_reader_free(&r);
	free(big);

	ck_assert_int_eq(ap_send(-1, AP_OUTPUT, NULL, AP_MAX_PAYLOAD + 1), -EMSGSIZE);
}
END_TEST

/* What ap_send writes, a reader reads back. */
START_TEST(send_then_read)
{
	struct ap_reader r;
	uint8_t buf[256], type;
	const uint8_t *p;
	uint32_t len;
	ssize_t n;
	int fd[2];

	ck_assert_int_eq(pipe(fd), 0);
	ck_assert_int_eq(ap_send(fd[1], AP_CANCEL, "{\"graceful\":true}", 17), 0);
	ck_assert_int_eq(ap_send(fd[1], AP_HELLO, NULL, 0), 0);
	close(fd[1]);
	n = read(fd[0], buf, sizeof(buf));
	close(fd[0]);
	ck_assert_int_eq(n, 2 * AP_HEADER_SIZE + 17);
	ap_reader_init(&r);
	ck_assert_int_eq(ap_reader_feed(&r, buf, (size_t)n), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_CANCEL);
	ck_assert_int_eq(memcmp(p, "{\"graceful\":true}", 17), 0);
	ck_assert_int_eq(ap_reader_next(&r, &type, &p, &len), 1);
	ck_assert_int_eq(type, AP_HELLO);
	ck_assert_uint_eq(len, 0);
	ap_reader_free(&r);
}
END_TEST

#define MSG(s) (const uint8_t *)(s), (uint32_t)strlen(s)

/* The host's reading of HELLO, STEP and EXIT payloads: what a guest may
 * write there (not JSON, arrays, strings for numbers, numbers past int,
 * escape sequences, duplicate keys) is refused or made harmless. */
START_TEST(payloads_read_without_trust)
{
	char why[AGENTMSG_REASON_MAX];
	struct agent_hello h;
	int code = 5;

	ck_assert(agentmsg_hello(MSG("{\"version\":1,\"features\":[\"shell\",7,\"late-workspace\"]}"), &h));
	ck_assert(h.shell && h.late_workspace && !h.oci_image);
	ck_assert(agentmsg_hello(MSG("{\"features\":[\"oci-image\"]}"), &h) && h.oci_image && !h.shell && !h.entrypoint);
	ck_assert(agentmsg_hello(MSG("{\"features\":[\"oci-image\",\"entrypoint\"]}"), &h) && h.entrypoint);
	ck_assert(agentmsg_hello(MSG("{}"), &h) && !h.shell && !h.late_workspace);
	ck_assert(!agentmsg_hello(MSG("[\"shell\"]"), &h));
	ck_assert(!agentmsg_hello(MSG("{\"features\":[\"shell\"]"), &h));
	ck_assert(!agentmsg_hello(MSG("{\"a\":1,\"a\":2}"), &h));

	ck_assert(agentmsg_step(MSG("{\"step\":\"script\",\"exit_code\":0}"), &code) && code == 0);
	ck_assert(agentmsg_step(MSG("{\"exit_code\":-2147483648}"), &code) && code == INT32_MIN);
	ck_assert(!agentmsg_step(MSG("{\"exit_code\":2147483648}"), &code));
	ck_assert(!agentmsg_step(MSG("{\"exit_code\":\"0\"}"), &code));
	ck_assert(!agentmsg_step(MSG("not json"), &code));

	ck_assert(agentmsg_exit(MSG("{\"exit_code\":3}"), &code, why) && code == 3 && !why[0]);
	ck_assert(agentmsg_exit(MSG("{\"exit_code\":1,\"failure_reason\":\"job_execution_timeout\"}"), &code, why));
	ck_assert_str_eq(why, "job_execution_timeout");
	ck_assert(agentmsg_exit(MSG("{\"exit_code\":1,\"failure_reason\":\"\\u001b]0;pwned\\u0007\"}"), &code, why));
	ck_assert_str_eq(why, "script_failure");
	ck_assert(agentmsg_exit(MSG("{\"exit_code\":1,\"failure_reason\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"),
			       &code, why));
	ck_assert_str_eq(why, "script_failure");
	ck_assert(!agentmsg_exit(MSG("{\"exit_code\":99999999999}"), &code, why));
	ck_assert(!agentmsg_exit(MSG("{\"failure_reason\":\"x\"}"), &code, why));
}
END_TEST

Suite *agentproto_suite(void)
{
	Suite *s = suite_create("agentproto");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, header_layout);
	tcase_add_test(tc, zero_length_payload);
	tcase_add_test(tc, split_across_feeds);
	tcase_add_test(tc, several_frames_in_one_feed);
	tcase_add_test(tc, malformed_header);
	tcase_add_test(tc, oversized_frame);
	tcase_add_test(tc, send_then_read);
	tcase_add_test(tc, payloads_read_without_trust);
	suite_add_tcase(s, tc);
	return s;
}
