/* The Git LFS batch reply and pointer parsers (workspace/lfsbatch.c): the
 * network's JSON and the checkout's small files. Whatever the bytes, they
 * return an error, or objects within the ceilings whose every href is
 * http(s) and whose headers cannot split a request line. */
#include <string.h>

#include "workspace/lfsbatch.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_batch b;
	struct lfs_pointer p;
	struct kiln_err e = { 0 };
	size_t i, k;

	if (lfs_pointer_parse((const char *)data, size, &p) == 0)
		FUZZ_CHECK(size <= LFS_POINTER_MAX && strlen(p.oid) == 64);
	if (lfs_batch_parse((const char *)data, size, &b, &e) != KILN_OK) {
		FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n') && b.v == NULL && b.n == 0);
		return 0;
	}
	FUZZ_CHECK(b.n <= LFS_MAX_OBJECTS);
	for (i = 0; i < b.n; i++) {
		const struct lfs_obj *o = &b.v[i];

		FUZZ_CHECK(strlen(o->oid) == 64 && o->size <= LFS_MAX_OBJECT_BYTES);
		FUZZ_CHECK(o->err_code ? o->href == NULL : o->href != NULL);
		FUZZ_CHECK(!o->href || !strncmp(o->href, "http://", 7) || !strncmp(o->href, "https://", 8));
		FUZZ_CHECK(o->n_headers <= LFS_MAX_HEADERS);
		for (k = 0; k < o->n_headers; k++)
			FUZZ_CHECK(!strpbrk(o->headers[k], "\r\n") && strlen(o->headers[k]) < LFS_MAX_HEADER_BYTES);
	}
	lfs_batch_free(&b);
	return 0;
}
