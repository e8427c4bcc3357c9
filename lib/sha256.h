/* SHA-256 for image manifests and input hashes, through OpenSSL's
 * libcrypto (EVP). The hash itself is libcrypto's; this header keeps the
 * hex forms the callers compare and store. Out of memory inside libcrypto
 * (a context of a few hundred bytes) aborts: no caller could go on with a
 * wrong digest. */
#ifndef KILN_SHA256_H
#define KILN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

/* Load libcrypto's default provider and its SHA-256 now. OpenSSL 3 does
 * both at a process's first digest: 56-84 ms in the KVM sandbox (3 ms on
 * the host), which a daemon pays once at start (its first TLS handshake)
 * and a `kiln exec` would pay inside its job's start. */
void sha256_warm(void);

/* Hash a buffer into the 32-byte digest. */
void sha256_buf(const void *data, size_t n, uint8_t digest[32]);
/* Write the 64 lowercase hex digits and a NUL into hex. */
void sha256_hex(const uint8_t digest[32], char hex[65]);
/* Hash a buffer straight to hex. */
void sha256_buf_hex(const void *data, size_t n, char hex[65]);
/* Hash a whole file to hex; its size goes to *size when size is not NULL. */
enum kiln_rc sha256_file_hex(const char *path, char hex[65], uint64_t *size, struct kiln_err *e);
/* A hash fed piece by piece (a download checked while it streams). init
 * allocates a libcrypto context; final writes the digest and frees it, so
 * every init is followed by exactly one final. */
struct sha256 {
	void *ctx; /* EVP_MD_CTX * */
};
void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, uint8_t digest[32]);
/* HMAC-SHA-256 of msg under key into out. */
void sha256_hmac(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32]);

#endif
