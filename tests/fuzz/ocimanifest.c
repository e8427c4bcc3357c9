/* The registry's JSON and headers (oci/manifest.c): the first input byte
 * picks index, manifest, WWW-Authenticate or config; the rest is the body. Whatever
 * the bytes, each parser returns a one-line error or a result within its
 * ceilings whose digests are valid. */
#include <string.h>

#include "oci/manifest.h"
#include "oci/ref.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kiln_err e = { 0 };
	struct oci_manifest m;
	struct oci_desc d;
	struct oci_challenge c;
	char ids[4][80], *hdr;
	size_t i;

	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		if (oci_index_pick((const char *)data + 1, size - 1, "", "linux", "amd64", &d, &e) == KILN_OK)
			FUZZ_CHECK(oci_digest_valid(d.digest) && oci_mt_kind(d.media_type) == OCI_KIND_MANIFEST);
		else
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		break;
	case 1:
	case 2:
		if (oci_manifest_parse((const char *)data + 1, size - 1, data[0] % 5 == 1 ? "" : OCI_MT_MANIFEST, &m,
				       &e) == KILN_OK) {
			FUZZ_CHECK(m.n_layers <= OCI_MAX_LAYERS && oci_digest_valid(m.config.digest));
			for (i = 0; i < m.n_layers; i++)
				FUZZ_CHECK(oci_digest_valid(m.layers[i].digest));
			oci_manifest_free(&m);
		} else {
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n') && m.layers == NULL);
		}
		break;
	case 4:
		if (oci_config_diff_ids((const char *)data + 1, size - 1, data[0] / 5 % 4, ids, &e) == KILN_OK) {
			for (i = 0; i < data[0] / 5 % 4u; i++)
				FUZZ_CHECK(oci_digest_valid(ids[i]));
		} else {
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		}
		break;
	default:
		hdr = strndup((const char *)data + 1, size - 1);
		if (!hdr)
			return 0;
		if (oci_challenge_parse(hdr, &c, &e) == KILN_OK)
			FUZZ_CHECK(c.scheme != OCI_AUTH_NONE && (c.scheme != OCI_AUTH_BEARER || c.realm[0]));
		else
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		free(hdr);
		break;
	}
	return 0;
}
