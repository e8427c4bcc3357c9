/* The registry's JSON and headers, parsed without any I/O (fuzzed by
 * tests/fuzz/ocimanifest.c): image indexes and Docker manifest lists,
 * OCI and Docker v2 schema 2 manifests, image configs' diff_ids, and
 * WWW-Authenticate challenges. */
#ifndef KILN_OCI_MANIFEST_H
#define KILN_OCI_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

/* What one Accept header asks for: the four manifest types, never schema 1. */
#define OCI_ACCEPT OCI_MT_INDEX ", " OCI_MT_DOCKER_LIST ", " OCI_MT_MANIFEST ", " OCI_MT_DOCKER_MANIFEST

#define OCI_MANIFEST_MAX_BYTES (4u << 20) /* containerd's cap is about the same */
#define OCI_CONFIG_MAX_BYTES (8u << 20)
#define OCI_MAX_LAYERS 256
#define OCI_MAX_INDEX_ENTRIES 4096

enum oci_mt_kind { OCI_KIND_UNKNOWN, OCI_KIND_INDEX, OCI_KIND_MANIFEST };

/* Layer compression, from the layer's media type. */
enum oci_comp { OCI_COMP_NONE, OCI_COMP_GZIP, OCI_COMP_ZSTD };

struct oci_desc {
	char media_type[128];
	char digest[80];  /* sha256:<hex>, checked */
	uint64_t size;
	enum oci_comp comp; /* layers only */
};

struct oci_manifest {
	struct oci_desc config;
	struct oci_desc *layers;
	size_t n_layers;
};

/* Whether media type mt (parameters after ';' ignored) is an index/list, a
 * manifest, or neither. */
enum oci_mt_kind oci_mt_kind(const char *mt);

/* From an image index or manifest list (body of len bytes, media type mt or,
 * when mt is empty, its own mediaType), the first manifest for os/arch
 * (variant ignored; "x86_64" is "amd64", "aarch64" is "arm64"), in *out.
 * KILN_E_NOTFOUND when none matches, naming the platforms it has. */
enum kiln_rc oci_index_pick(const char *body, size_t len, const char *mt, const char *os, const char *arch,
			    struct oci_desc *out, struct kiln_err *e);

/* Parse an image manifest into m (free with oci_manifest_free). The config's
 * media type must be an image config and every layer's a tar layer kiln can
 * unpack: anything else is KILN_E_INVALID naming it. A body whose mediaType
 * disagrees with mt (when both are given) is refused. */
enum kiln_rc oci_manifest_parse(const char *body, size_t len, const char *mt, struct oci_manifest *m,
				struct kiln_err *e);
void oci_manifest_free(struct oci_manifest *m);

/* The image config's rootfs.diff_ids (sha256 of each layer uncompressed),
 * into out[0..n_layers-1]: there must be exactly one per layer. */
enum kiln_rc oci_config_diff_ids(const char *body, size_t len, size_t n_layers, char (*out)[80],
				 struct kiln_err *e);

enum oci_auth_scheme { OCI_AUTH_NONE, OCI_AUTH_BEARER, OCI_AUTH_BASIC };

struct oci_challenge {
	enum oci_auth_scheme scheme;
	char realm[512];
	char service[256];
	char scope[512];
	char error[64];
};

/* Parse a WWW-Authenticate header value ("Bearer realm=\"...\",service=...").
 * Bearer needs a realm; an unknown scheme is KILN_E_INVALID naming it. */
enum kiln_rc oci_challenge_parse(const char *value, struct oci_challenge *c, struct kiln_err *e);

#endif
