/* The OCI distribution API (Docker Registry HTTP API v2), pull side, over
 * libcurl: manifests by tag or digest, blobs verified while they stream.
 *
 * Auth as registries do it: a 401 with "WWW-Authenticate: Bearer
 * realm,service,scope" gets a token from the realm (anonymous, or with the
 * basic credentials given), a Basic challenge gets the credentials; a second
 * 401 is an error. 429 and 503 are retried after Retry-After (at most
 * OCI_MAX_TRIES tries, 60 s a wait). Redirects to another host (blob CDNs)
 * never carry the Authorization header.
 *
 * A request ends early, as KILN_E_LIMIT "... canceled", once the opts'
 * canceled callback answers nonzero: it is asked before each try, during
 * a retry's wait and by libcurl's progress callback (several times a
 * second, stalled or not). */
#ifndef KILN_OCI_REGISTRY_H
#define KILN_OCI_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"
#include "oci/manifest.h"
#include "oci/ref.h"

#define OCI_MAX_TRIES 5
#define OCI_MAX_BLOB_BYTES (64ULL << 30)

struct oci_registry_opts {
	const char *username; /* NULL: anonymous */
	const char *password;
	const char *ca_file;  /* extra CA bundle for TLS, or NULL */
	int insecure;         /* plain http */
	long timeout_s;       /* per request without progress; 0: 60 */
	int (*canceled)(void *arg); /* nonzero: stop now; NULL: never */
	void *cancel_arg;
};

struct oci_client;

/* A client for ref's registry and repository; opts' strings are copied.
 * The first call initialises libcurl. One client serves one thread. */
enum kiln_rc oci_client_new(const struct oci_ref *ref, const struct oci_registry_opts *opts,
			    struct oci_client **out, struct kiln_err *e);
void oci_client_free(struct oci_client *c);

/* GET the manifest named by reference (a tag or a digest) into a new
 * buffer *body (*len bytes, at most OCI_MANIFEST_MAX_BYTES; free it), its
 * media type (Content-Type) in mt and the digest of its bytes in digest.
 * When reference is a digest the bytes must hash to it. An unknown media
 * type is KILN_E_INVALID naming it. */
enum kiln_rc oci_get_manifest(struct oci_client *c, const char *reference, char **body, size_t *len,
			      char mt[160], char digest[80], struct kiln_err *e);

/* HEAD the manifest tag names: its digest (Docker-Content-Digest) in
 * digest, without a body. Registries that do not say are KILN_E_NOTFOUND
 * (then GET it); Docker Hub does not count HEADs against pull limits. */
enum kiln_rc oci_head_manifest(struct oci_client *c, const char *tag, char digest[80], struct kiln_err *e);

/* GET blob d into a new buffer (configs: at most max bytes). Verified. */
enum kiln_rc oci_get_blob_mem(struct oci_client *c, const struct oci_desc *d, size_t max, char **body,
			      struct kiln_err *e);

/* GET blob d into the file path: written to a temporary file beside it,
 * hashed and counted while it streams, renamed to path only when its size
 * and sha256 are d's. On any failure (mismatch, truncation, network)
 * nothing is left at path or beside it. */
enum kiln_rc oci_get_blob_file(struct oci_client *c, const struct oci_desc *d, const char *path,
			       struct kiln_err *e);

#endif
