/* The agent protocol's frame reader (agent/proto.c), which both the
 * host and kiln-agent run over bytes from the other side. The input is a
 * byte stream fed in fuzzed pieces; properties:
 * - the frames and the error that come out do not depend on how the stream
 *   was cut, and match a whole-stream reading of the format;
 * - a reader drained after every piece never holds more than one header,
 *   one maximal payload and one piece;
 * - the host's parsers of HELLO, STEP and EXIT payloads (job/agentmsg.h)
 *   take each frame without a sanitizer report, and a failure reason that
 *   comes out is one word. */
#include <errno.h>
#include <string.h>

#include "job/agentmsg.h"
#include "agent/proto.h"
#include "tests/fuzz/fuzz.h"

#define PIECES 8

/* The format read in one go: the frames at their offsets, then 0 (more
 * bytes needed) or the error. Calls frame() for each. */
static int model(const uint8_t *s, size_t n, size_t *offsets, uint32_t *lens, size_t max, size_t *count)
{
	size_t at = 0;

	*count = 0;
	for (;;) {
		uint32_t len;

		if (n - at < AP_HEADER_SIZE)
			return 0;
		len = (uint32_t)s[at] | (uint32_t)s[at + 1] << 8 | (uint32_t)s[at + 2] << 16 |
		      (uint32_t)s[at + 3] << 24;
		if (len > AP_MAX_PAYLOAD)
			return -EMSGSIZE;
		if (s[at + 4] < AP_HELLO || s[at + 4] > AP_TYPE_MAX || s[at + 5] || s[at + 6] || s[at + 7])
			return -EPROTO;
		if (n - at - AP_HEADER_SIZE < len)
			return 0;
		FUZZ_CHECK(*count < max);
		offsets[*count] = at;
		lens[(*count)++] = len;
		at += AP_HEADER_SIZE + len;
	}
}

/* The host's reading of a frame's payload (job/agentmsg.h): whatever
 * the guest wrote, a failure reason is empty or one word of a-z and '_'. */
static void judge(uint8_t type, const uint8_t *payload, uint32_t len)
{
	char why[AGENTMSG_REASON_MAX];
	struct agent_hello h;
	int code;

	if (type == AP_HELLO)
		agentmsg_hello(payload, len, &h);
	else if (type == AP_STEP)
		agentmsg_step(payload, len, &code);
	else if (type == AP_EXIT && agentmsg_exit(payload, len, &code, why))
		FUZZ_CHECK(strspn(why, "abcdefghijklmnopqrstuvwxyz_") == strlen(why) && strlen(why) < sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static size_t offsets[1 << 16];
	static uint32_t lens[1 << 16];
	struct ap_reader r;
	const uint8_t *stream;
	uint8_t cut[PIECES];
	size_t n, at = 0, frames, seen = 0, piece;
	int want, got = 0;
	unsigned k = 0;

	if (size < PIECES)
		return 0;
	memcpy(cut, data, PIECES);
	stream = data + PIECES;
	n = size - PIECES;
	want = model(stream, n, offsets, lens, sizeof(lens) / sizeof(lens[0]), &frames);

	ap_reader_init(&r);
	while (at < n && got >= 0) {
		piece = (size_t)cut[k++ % PIECES] * 7 + 1;
		if (piece > n - at)
			piece = n - at;
		FUZZ_CHECK(ap_reader_feed(&r, stream + at, piece) == 0);
		at += piece;
		for (;;) {
			const uint8_t *payload;
			uint32_t len;
			uint8_t type;

			got = ap_reader_next(&r, &type, &payload, &len);
			if (got <= 0)
				break;
			FUZZ_CHECK(seen < frames);
			FUZZ_CHECK(len == lens[seen] && type == stream[offsets[seen] + 4]);
			FUZZ_CHECK(memcmp(payload, stream + offsets[seen] + AP_HEADER_SIZE, len) == 0);
			judge(type, payload, len);
			seen++;
		}
		FUZZ_CHECK(r.len - r.skip <= AP_HEADER_SIZE + AP_MAX_PAYLOAD + piece);
	}
	FUZZ_CHECK(seen == frames && got == want);
	ap_reader_free(&r);
	return 0;
}
