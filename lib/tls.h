/* TLS checks shared by the GitLab API client (libcurl) and the git fetch
 * (workspace/gittls.c), both on OpenSSL, so that both trust the same CAs
 * and accept the same names.
 *
 * Trust is the system's CAs (OpenSSL's default paths; SSL_CERT_FILE and
 * SSL_CERT_DIR honoured) plus a runner's tls_ca_file, never the file alone:
 * gitlab-runner adds tls-ca-file to the system pool as well. */
#ifndef KILN_TLS_H
#define KILN_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "lib/result.h"

/* Add OpenSSL's default CA paths and, when ca_file is not NULL or "", every
 * certificate in the PEM file ca_file to store. Fails naming ca_file when it
 * cannot be read or holds no certificate. */
enum kiln_rc kiln_tls_trust(X509_STORE *store, const char *ca_file, struct kiln_err *e);

/* Whether cert names host as libcurl checks it: an IPv4 or IPv6 literal
 * against the iPAddress SANs, a name against the dNSName SANs (a wildcard
 * only as the whole leftmost label), the subject CN only when there is no
 * dNSName or iPAddress SAN at all. host may carry IPv6 brackets. */
bool kiln_tls_name_ok(X509 *cert, const char *host);

/* Send host as the server name (SNI) unless it is an address. -1 when host
 * is empty or cannot be set. */
int kiln_tls_sni(SSL *ssl, const char *host);

#endif
