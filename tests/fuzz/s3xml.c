/* The bounded XML extractor of S3 replies (cache/s3.c: s3_xml_value),
 * whose input comes from the network. The input's first byte picks the
 * tag, the second the output size, the rest is the reply; properties:
 * - no read outside the reply (the sanitizers see to that);
 * - a value found is NUL-terminated, fits the output and is no longer than
 *   the reply; one not found leaves "". */
#include <string.h>

#include "cache/s3.h"
#include "tests/fuzz/fuzz.h"

static const char *const tags[] = { "UploadId", "ETag", "Code", "Message" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[256];
	size_t cap, n;
	const char *tag;
	bool found;

	if (size < 2)
		return 0;
	tag = tags[data[0] % 4];
	cap = data[1] ? data[1] : 1;
	memset(out, 'x', sizeof(out));
	found = s3_xml_value((const char *)data + 2, size - 2, tag, out, cap);
	n = strnlen(out, cap);
	FUZZ_CHECK(n < cap);
	FUZZ_CHECK(found || n == 0);
	FUZZ_CHECK(n <= size - 2);
	return 0;
}
