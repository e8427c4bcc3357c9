/* Git LFS, the parts that read what the network sends: pointer files and
 * the reply of the batch API (POST <repo>.git/info/lfs/objects/batch,
 * operation download, basic transfer). Kept apart from the transfer code
 * (lfs.h) so that the fuzzer builds them alone. Every size, count and
 * string is bounded; anything else is an error naming the field. */
#ifndef KILN_LFSBATCH_H
#define KILN_LFSBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define LFS_POINTER_MAX 1024            /* git-lfs writes pointers under this */
#define LFS_MAX_OBJECTS 100000          /* in one checkout */
#define LFS_BATCH_SIZE 100              /* objects per batch request, as git-lfs */
#define LFS_MAX_REPLY_BYTES (4u << 20)  /* one batch reply */
#define LFS_MAX_HREF 8192
#define LFS_MAX_HEADERS 16
#define LFS_MAX_HEADER_BYTES 8192       /* "Name: value" */
#define LFS_MAX_OBJECT_BYTES (64ULL << 30)

struct lfs_pointer {
	char oid[65];                   /* sha256, 64 lower-case hex digits */
	uint64_t size;
};

/* Parse a pointer file (len bytes): "version https://git-lfs.github.com/spec/v1",
 * "oid sha256:<hex>", "size <n>", each on its own line, other keys allowed
 * between them in order. 0, or -1 when buf is not a pointer. */
int lfs_pointer_parse(const char *buf, size_t len, struct lfs_pointer *p);

struct lfs_obj {
	char oid[65];
	uint64_t size;
	char *href;                     /* NULL when the server gave an error */
	char *headers[LFS_MAX_HEADERS]; /* "Name: value", for the download */
	size_t n_headers;
	int err_code;                   /* the object's error.code, or 0 */
	char err[200];                  /* its message, cut */
};

struct lfs_batch {
	struct lfs_obj *v;
	size_t n;
};

/* Parse a batch reply (len bytes, at most LFS_MAX_REPLY_BYTES): every
 * object with a download action (an http(s) href and its headers) or an
 * error. A transfer other than basic, a missing or malformed field, too
 * many objects or a header with a line break is KILN_E_SYNTAX naming it.
 * On failure b is empty. */
enum kiln_rc lfs_batch_parse(const char *body, size_t len, struct lfs_batch *b, struct kiln_err *e);
void lfs_batch_free(struct lfs_batch *b);

#endif
