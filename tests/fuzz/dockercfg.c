/* Docker's config.json (oci/dockercfg.c), as a job's DOCKER_AUTH_CONFIG
 * brings it from GitLab: the first input byte picks the host looked up,
 * the rest is the file. Whatever the bytes, the lookup returns
 * credentials within their fields, "not found", or a one-line error. */
#include <string.h>

#include "oci/dockercfg.h"
#include "tests/fuzz/fuzz.h"

static const char *const hosts[] = { "docker.io", "ghcr.io", "127.0.0.1:5000", "registry.example.com" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kiln_err e = { 0 };
	char user[OCI_DOCKERCFG_FIELD_MAX], pass[OCI_DOCKERCFG_FIELD_MAX];
	enum kiln_rc rc;

	if (size < 1)
		return 0;
	rc = oci_dockercfg_lookup((const char *)data + 1, size - 1, "DOCKER_AUTH_CONFIG",
				  hosts[data[0] % (sizeof(hosts) / sizeof(hosts[0]))], user, pass, &e);
	if (rc == KILN_OK)
		FUZZ_CHECK(memchr(user, '\0', sizeof(user)) && memchr(pass, '\0', sizeof(pass)));
	else if (rc != KILN_E_NOTFOUND)
		FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
	return 0;
}
