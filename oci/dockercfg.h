/* Docker's config.json (docker/cli cli/config/configfile), read for one
 * registry's credentials: "auths" entries keyed by host ("ghcr.io",
 * "host:5000", "https://index.docker.io/v1/"), each with "auth" (base64 of
 * user:password, which wins) or "username" and "password". kiln runs no
 * credential helper: "credsStore", or "credHelpers" naming the host, is
 * refused, as is an entry holding only an "identitytoken". Used for a
 * `registries:` entry's docker_config file and a job's DOCKER_AUTH_CONFIG. */
#ifndef KILN_OCI_DOCKERCFG_H
#define KILN_OCI_DOCKERCFG_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define OCI_DOCKERCFG_MAX_BYTES (1u << 20)   /* a config.json is a few KiB */
#define OCI_DOCKERCFG_FIELD_MAX 4096         /* a user name or password, NUL included */

/* Whether a credentials key names host: the key's host part ("https://"
 * and a path dropped), lower-cased, with index.docker.io and
 * registry-1.docker.io read as docker.io (gitlab-runner's auth.go). */
bool oci_auth_key_matches(const char *key, const char *host);

/* host's credentials from text[0..len), a config.json; what names it in
 * messages (a file's path, "DOCKER_AUTH_CONFIG"). KILN_OK with user and
 * pass filled (each OCI_DOCKERCFG_FIELD_MAX bytes); KILN_E_NOTFOUND when
 * no auths entry names host; KILN_E_SYNTAX or KILN_E_INVALID for a
 * malformed file or entry, with one line naming what and the key:
 * "/root/.docker/config.json: auths["ghcr.io"].auth: not base64". */
enum kiln_rc oci_dockercfg_lookup(const char *text, size_t len, const char *what, const char *host, char *user,
				  char *pass, struct kiln_err *e);

#endif
