/* kiln's TLS stream for libgit2 (https://), on OpenSSL over kiln's TCP
 * stream (gitstream.h), registered in place of libgit2's own.
 *
 * Why: Debian's libgit2 1.5 does TLS with mbedTLS and checks the server's
 * name itself, matching dNSName SANs only, so a GitLab reached by IP address
 * with an iPAddress SAN (as libcurl and git accept) fails the fetch while
 * the API calls succeed. This stream checks the chain and the name as the
 * API client does (lib/tls.h) and trusts the same CAs. */
#ifndef KILN_GITTLS_H
#define KILN_GITTLS_H

#include "lib/result.h"

/* Register the stream with libgit2 (after git_libgit2_init and
 * gitstream_register). 0 or a libgit2 error code. */
int gittls_register(void);

/* Trust the system's CAs plus the PEM file ca_file (NULL: the system's
 * alone) for the connections made from now on. Thread-safe. */
enum kiln_rc gittls_trust(const char *ca_file, struct kiln_err *e);

/* Present cert_file (PEM, the chain) with key_file to host (a name or an
 * address, no port) from now on; replaces host's earlier one. Fails naming a
 * file that cannot be read, or past GITTLS_MAX_CLIENTS hosts. Thread-safe. */
enum kiln_rc gittls_client_cert(const char *host, const char *cert_file, const char *key_file,
				struct kiln_err *e);

/* Forget every client certificate (before a reload sets them again). */
void gittls_client_certs_clear(void);

#define GITTLS_MAX_CLIENTS 64

#endif
