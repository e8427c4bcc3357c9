/* The OCI image store under a state folder, and the pull that fills it.
 *
 *   STATE/oci/blobs/sha256/HEX    layers and configs by digest, verified,
 *                                 shared between images
 *   STATE/oci/images/HEX/         one per platform manifest digest:
 *       rootfs.ext4                the image's root filesystem, built once
 *       manifest.json config.json  as the registry served them
 *       image.json                 reference, digest, size, last used
 *   STATE/oci/refs/HEX            reference + platform -> image HEX, as last
 *                                 pulled (HEX: sha256 of "REF OS/ARCH")
 *   STATE/oci/locks/HEX.lock      one pull builds an image, others wait
 *   STATE/oci/store.lock          pulls share it, prune takes it alone
 *   STATE/oci/tmp/                scratch trees, removed on every exit
 *
 * Nothing half-built is ever under images/ or blobs/: both are written
 * beside and renamed in. */
#ifndef KILN_OCI_STORE_H
#define KILN_OCI_STORE_H

#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "lib/result.h"
#include "oci/ref.h"
#include "oci/registry.h"

/* A mirror of the registry a reference names (dockerd's registry-mirrors):
 * it serves the same repository paths ("library/alpine"). */
struct oci_mirror {
	const char *host;             /* "mirror.example:5000" */
	struct oci_registry_opts reg; /* its own credentials, CA file, insecure */
};

struct oci_pull_opts {
	struct oci_registry_opts reg; /* credentials, CA file, insecure */
	const struct oci_mirror *mirrors; /* tried first, in order; any failure falls back */
	size_t n_mirrors;
	void (*notice)(void *arg, const char *line); /* a mirror that failed, or NULL */
	/* Asked during downloads (a few times a second), between layers and
	 * while a layer is applied: nonzero ends the pull, KILN_E_LIMIT
	 * "... canceled", and leaves nothing of it in the store. NULL: never. */
	int (*canceled)(void *arg);
	void *arg;
	const char *os;               /* NULL: "linux" */
	const char *arch;             /* NULL: "amd64" */
	uint64_t max_image_bytes;     /* ext4 image ceiling; 0: ext4img's default */
};

struct oci_image {
	char ref[OCI_REF_MAX + 64]; /* canonical reference last pulled as */
	char digest[80];            /* the platform manifest's digest */
	char rootfs[PATH_MAX];      /* the ext4 image */
	uint64_t size;              /* bytes the image's folder takes on disk */
	time_t last_used;
};

/* Pull reference (docker.io defaults apply) into the store under state_dir
 * and describe the image in *out: from o's mirrors, in order, then from
 * the registry itself (a mirror that fails is named through o->notice). A platform manifest already built is
 * only marked used (no layer is fetched; a tag still costs one manifest
 * GET). Concurrent pulls of one image, in this process or others, wait
 * for the first (o's canceled ends the wait too). On failure (a cancel too) nothing is added to the store. */
enum kiln_rc oci_pull(const char *state_dir, const char *reference, const struct oci_pull_opts *o,
		      struct oci_image *out, struct kiln_err *e);

/* The image reference names for os/arch (NULL: linux/amd64) as last
 * pulled into the store, without asking the registry (pull_policy
 * if-not-present and never): KILN_E_NOTFOUND when it was never pulled or
 * has been pruned. Found, it is marked used. */
enum kiln_rc oci_image_find(const char *state_dir, const char *reference, const char *os, const char *arch,
			    struct oci_image *out, struct kiln_err *e);

/* The store's images, least recently used first, in a new array *out of *n
 * entries (free it). An empty or missing store is 0 entries. */
enum kiln_rc oci_images_list(const char *state_dir, struct oci_image **out, size_t *n, struct kiln_err *e);

/* Remove least recently used images, and then blobs no image uses, until
 * images and blobs take at most cap_bytes. Images in use by a pull are
 * kept. Bytes freed in *freed (may be NULL). */
enum kiln_rc oci_images_prune(const char *state_dir, uint64_t cap_bytes, uint64_t *freed, struct kiln_err *e);

#endif
