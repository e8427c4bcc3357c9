/* SHA-256 (FIPS 180-4) for image manifests and input hashes. */
#ifndef KILN_SHA256_H
#define KILN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

struct sha256 {
	uint32_t h[8];
	uint64_t len;      /* bytes hashed so far */
	uint8_t buf[64];
	size_t fill;       /* bytes waiting in buf */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
/* Finish and write the 32-byte digest; s must be re-initialised to reuse. */
void sha256_final(struct sha256 *s, uint8_t out[32]);
/* Write the 64 lowercase hex digits and a NUL into hex. */
void sha256_hex(const uint8_t digest[32], char hex[65]);
/* Hash a buffer straight to hex. */
void sha256_buf_hex(const void *data, size_t n, char hex[65]);
/* Hash a whole file to hex; its size goes to *size when size is not NULL. */
enum kiln_rc sha256_file_hex(const char *path, char hex[65], uint64_t *size, struct kiln_err *e);

#endif
