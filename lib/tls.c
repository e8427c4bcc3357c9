#include "lib/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

enum kiln_rc kiln_tls_trust(X509_STORE *store, const char *ca_file, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	FILE *f = NULL;
	X509 *x = NULL;
	int n = 0;

	/* Adds to what the caller (curl) loaded already: duplicates are ignored. */
	X509_STORE_set_default_paths(store);
	ERR_clear_error();
	if (!ca_file || !*ca_file)
		return KILN_OK;
	f = fopen(ca_file, "re");
	if (!f)
		return kiln_fail_errno(e, "tls_ca_file %s", ca_file);
	while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
		if (!X509_STORE_add_cert(store, x)) {
			rc = kiln_fail(e, KILN_E_INVALID, "tls_ca_file %s: certificate %d not accepted", ca_file,
				       n + 1);
			goto out;
		}
		X509_free(x);
		x = NULL;
		n++;
	}
	if (n == 0)
		rc = kiln_fail(e, KILN_E_INVALID, "tls_ca_file %s: no PEM certificate in it", ca_file);
out:
	ERR_clear_error();
	X509_free(x);
	fclose(f);
	return rc;
}

/* host without IPv6 brackets in buf; NULL when it does not fit. */
static const char *bare_host(const char *host, char *buf, size_t size)
{
	size_t n = strlen(host);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= size)
			return NULL;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		return buf;
	}
	return host;
}

static bool is_ip(const char *h)
{
	unsigned char a[16];

	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* Whether cert has a dNSName or iPAddress SAN: then libcurl ignores the CN. */
static bool has_name_san(X509 *cert)
{
	GENERAL_NAMES *alts = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	bool any = false;
	int i;

	for (i = 0; alts && i < sk_GENERAL_NAME_num(alts) && !any; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(alts, i);

		any = g->type == GEN_DNS || g->type == GEN_IPADD;
	}
	GENERAL_NAMES_free(alts);
	return any;
}

bool kiln_tls_name_ok(X509 *cert, const char *host)
{
	char buf[64];
	const char *h = bare_host(host, buf, sizeof(buf));
	bool san;

	if (!cert || !h || !*h)
		return false;
	san = has_name_san(cert);
	if (is_ip(h) && san)
		return X509_check_ip_asc(cert, h, 0) == 1;
	if (is_ip(h)) /* no SANs: the CN, literally */
		return X509_check_host(cert, h, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) == 1;
	return X509_check_host(cert, h, 0,
			       X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | (san ? X509_CHECK_FLAG_NEVER_CHECK_SUBJECT : 0),
			       NULL) == 1;
}

int kiln_tls_sni(SSL *ssl, const char *host)
{
	char buf[64];
	const char *h = bare_host(host, buf, sizeof(buf));

	if (!h || !*h)
		return -1;
	/* Names only, never an address (RFC 6066). */
	if (is_ip(h))
		return 0;
	return SSL_set_tlsext_host_name(ssl, h) == 1 ? 0 : -1;
}
