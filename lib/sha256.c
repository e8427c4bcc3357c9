#include "lib/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

void sha256_buf(const void *data, size_t n, uint8_t digest[32])
{
	if (!EVP_Digest(data, n, digest, NULL, EVP_sha256(), NULL))
		abort(); /* only when out of memory */
}

void sha256_init(struct sha256 *s)
{
	if (!(s->ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL))
		abort(); /* only when out of memory */
}

void sha256_update(struct sha256 *s, const void *data, size_t n)
{
	if (n && !EVP_DigestUpdate(s->ctx, data, n))
		abort();
}

void sha256_final(struct sha256 *s, uint8_t digest[32])
{
	if (!EVP_DigestFinal_ex(s->ctx, digest, NULL))
		abort();
	EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
}

void sha256_warm(void)
{
	uint8_t d[32];

	sha256_buf("", 0, d);
}

void sha256_hex(const uint8_t digest[32], char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 15];
	}
	hex[64] = '\0';
}

void sha256_buf_hex(const void *data, size_t n, char hex[65])
{
	uint8_t d[32];

	sha256_buf(data, n, d);
	sha256_hex(d, hex);
}

void sha256_hmac(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
	if (klen > INT_MAX || !HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, NULL))
		abort(); /* only when out of memory: keys are machine ids */
}

enum kiln_rc sha256_file_hex(const char *path, char hex[65], uint64_t *size, struct kiln_err *e)
{
	/* The buffer is the call's own: jobs in threads of one kiln hash at
	 * once (a shared one mixed their files into each other's digests). */
	enum { BUF_BYTES = 1 << 16 };
	uint8_t *buf = NULL;
	EVP_MD_CTX *ctx = NULL;
	uint64_t len = 0;
	uint8_t d[32];
	ssize_t n;
	enum kiln_rc rc = KILN_OK;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_fail_errno(e, "%s", path);
	if (!(buf = malloc(BUF_BYTES)) || !(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: sha256: out of memory", path);
		goto out;
	}
	while ((n = read(fd, buf, BUF_BYTES)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = kiln_fail_errno(e, "%s: read", path);
			goto out;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		len += (uint64_t)n;
	}
	if (!EVP_DigestFinal_ex(ctx, d, NULL)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: sha256: out of memory", path);
		goto out;
	}
	if (size)
		*size = len;
	sha256_hex(d, hex);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	return rc;
}
