/* Masking of job logs (gitlab/mask.c) across writes. The input gives a few
 * secrets, where to cut the stream into writes, and the stream; properties:
 * - the output is the same however the stream was cut;
 * - no secret is left in it. Secrets are drawn from characters that appear
 *   in neither "[MASKED]", nor any default token prefix (gitlab-runner's
 *   list: "glffct-", "GR1348941"...), nor the masked URL parameters' names
 *   in any case, so that any secret in the output was let through (a kept
 *   prefix's own text is not a secret let through). */
#include <string.h>

#include "gitlab/mask.h"
#include "tests/fuzz/fuzz.h"

#define MAX_OUT (1 << 16)
#define CUTS 8

static const char alphabet[] = "02567jqw";

struct sink {
	char buf[MAX_OUT];
	size_t len;
};

static void out(void *arg, const void *p, size_t n)
{
	struct sink *s = arg;

	FUZZ_CHECK(n <= MAX_OUT - s->len);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void run(struct sink *s, char secrets[][17], unsigned n_secrets, const uint8_t *cut,
		const uint8_t *stream, size_t n)
{
	struct kiln_err e;
	struct mask m;
	size_t at = 0;
	unsigned i, k = 0;

	s->len = 0;
	mask_init(&m, out, s);
	for (i = 0; i < n_secrets; i++)
		FUZZ_CHECK(mask_add_secret(&m, secrets[i], &e) == KILN_OK);
	while (at < n) {
		size_t piece = cut ? (size_t)cut[k++ % CUTS] % 16 + 1 : n;

		if (piece > n - at)
			piece = n - at;
		FUZZ_CHECK(mask_write(&m, stream + at, piece) == KILN_OK);
		at += piece;
	}
	mask_flush(&m);
	mask_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sink whole, pieces;
	struct fuzz_in in = { data, size, false };
	char secrets[4][17];
	unsigned n_secrets = fuzz_u8(&in) % 4 + 1, i, k;
	const uint8_t *cut, *stream;
	size_t n;

	for (i = 0; i < n_secrets; i++) {
		unsigned len = fuzz_u8(&in) % 15 + 2;

		for (k = 0; k < len; k++)
			secrets[i][k] = alphabet[fuzz_u8(&in) % (sizeof(alphabet) - 1)];
		secrets[i][len] = '\0';
	}
	cut = fuzz_bytes(&in, CUTS, &n);
	if (n < CUTS)
		return 0;
	stream = fuzz_bytes(&in, MAX_OUT / 16, &n);

	run(&whole, secrets, n_secrets, NULL, stream, n);
	run(&pieces, secrets, n_secrets, cut, stream, n);
	FUZZ_CHECK(whole.len == pieces.len && memcmp(whole.buf, pieces.buf, whole.len) == 0);
	for (i = 0; i < n_secrets; i++)
		FUZZ_CHECK(!memmem(whole.buf, whole.len, secrets[i], strlen(secrets[i])));
	return 0;
}
