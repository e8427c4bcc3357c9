/* The job cache's restore and save paths without a job, for
 * bench/cache.sh:
 *   cache-bench save SERVER|local ROOT DIR     zip DIR into the local cache
 *                                              ROOT (and S3 at SERVER)
 *   cache-bench restore SERVER|local ROOT DEST fetch (S3 first when SERVER)
 *                                              and extract into DEST
 * SERVER is host:port of an S3 server with bucket kiln-cache and the key
 * S3RVER/S3RVER (tests/s3server.sh); the archive is project 1, key
 * "bench", shared. Prints the seconds it took. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/store.h"
#include "lib/paths.h"
#include "workspace/zip.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct kiln_cache_config c = { 0 };
	struct cache_store s = { 0 };
	struct kiln_err e = { 0 };
	struct zip_stats st;
	char path[4096], warn[1024], dir[4096];
	double t0;

	if (argc != 5 || (strcmp(argv[1], "save") && strcmp(argv[1], "restore"))) {
		fprintf(stderr, "usage: cache-bench save|restore SERVER|local ROOT DIR\n");
		return 2;
	}
	if (strcmp(argv[2], "local")) {
		c.type = "s3";
		c.shared = true;
		c.s3.server_address = argv[2];
		c.s3.bucket_name = "kiln-cache";
		c.s3.access_key = "S3RVER";
		c.s3.secret_key = "S3RVER";
		c.s3.insecure = true;
		s.cfg = &c;
	}
	s.local_root = argv[3];
	s.runner_token = "glrt-bench";
	t0 = now();
	if (!strcmp(argv[1], "save")) {
		cache_local_path(&s, "g/p", "bench", path, sizeof(path));
		snprintf(dir, sizeof(dir), "%s/g/p/bench", argv[3]);
		if (kiln_mkdir_p(dir) < 0 || zip_write_dir(argv[4], path, 64ULL << 30, &st, &e)) {
			fprintf(stderr, "cache-bench: %s\n", e.msg[0] ? e.msg : "creating the folder");
			return 1;
		}
		if (!cache_store_push(&s, 1, "bench", path, warn, sizeof(warn))) {
			fprintf(stderr, "cache-bench: %s\n", warn);
			return 1;
		}
	} else {
		if (!cache_store_fetch(&s, "g/p", 1, "bench", "bench", path, sizeof(path), warn, sizeof(warn))) {
			fprintf(stderr, "cache-bench: no cache%s%s\n", warn[0] ? ": " : "", warn);
			return 1;
		}
		if (warn[0]) {
			fprintf(stderr, "cache-bench: %s\n", warn);
			return 1;
		}
		if (zip_extract(path, argv[4], 64ULL << 30, &st, &e)) {
			fprintf(stderr, "cache-bench: %s\n", e.msg);
			return 1;
		}
	}
	printf("%.3f %u\n", now() - t0, st.files);
	return 0;
}
