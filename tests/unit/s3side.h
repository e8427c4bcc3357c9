/* Two kilns that share a cache, for test_s3cache.c (check_runner) and
 * check_s3.c (against the S3 server that tests/s3cache.sh starts). */
#ifndef KILN_TEST_S3SIDE_H
#define KILN_TEST_S3SIDE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "runner/config.h"

/* A cache: section for the test server. */
void s3conf(struct kiln_cache_config *c, const char *server, bool shared, const char *access_key);

/* One kiln's side: its state folder holds state/ and cache/. */
struct kiln_side {
	char dir[PATH_MAX];
	const struct kiln_cache_config *cfg;
	const char *token;
	char log[8192];   /* the job log of the last save or restore */
};

void side_init(struct kiln_side *k, const char *top, const char *name,
	       const struct kiln_cache_config *cfg, const char *token);
/* Save vendor.txt holding who as k's cache (job log in k->log). */
void side_save(struct kiln_side *k, const char *who);
/* vendor.txt as k restores it, "" when nothing. */
void side_restore(struct kiln_side *k, char *got, size_t size);

#endif
