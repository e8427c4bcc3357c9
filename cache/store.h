/* The job cache: where archives are kept, local or S3.
 *
 * Every archive is kept in the local cache,
 * <local_root>/<project path>/<key>/cache.zip. With an S3 store
 * (gitlab-runner's [runners.cache] Type = "s3") it is also uploaded to
 * <path>/runner/<token prefix>/project/<id>/<key> (no "runner/<token
 * prefix>" when shared), and a restore asks S3 first, keeping what it gets
 * as the local copy. When S3 is down or refuses, the caller gets a warning
 * for the job log and the local cache serves: a cache problem never fails
 * a job. Transfers run on the host; the guest never sees credentials. */
#ifndef KILN_CACHE_STORE_H
#define KILN_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>

/* The `cache:` section of a runner (or of `defaults`) in config.yml. */
struct kiln_cache_config {
	char *type;                /* NULL: local only; "s3" */
	bool shared;               /* one namespace for all runners */
	char *path;                /* prefix of every object name */
	struct kiln_cache_s3 {
		char *server_address;  /* host[:port] */
		char *bucket_name;
		char *bucket_location; /* region; NULL: us-east-1 */
		char *access_key;
		char *secret_key;
		char *secret_key_file; /* read at each job: rotation needs no restart */
		char *authentication_type; /* NULL or access-key; iam: IMDSv2 */
		bool insecure;         /* http */
	} s3;
};

struct cache_store {
	const char *local_root;                /* the local cache folder */
	const struct kiln_cache_config *cfg;   /* NULL or no type: local only */
	const char *runner_token;              /* for the object name's namespace */
	long part_size;                        /* multipart threshold; 0: S3_PART_SIZE */
	const char *imds_endpoint;             /* tests; NULL: the EC2 one */
};

/* gitlab-runner's short token (helpers.ShortenToken): known prefixes
 * (glrt-, glrt-t1_..., t1_..., glrtr-, glcbt-, GR + 7 hex digits) removed,
 * then at most 9 characters. */
void cache_short_token(const char *token, char *out, size_t size);

/* The S3 object name of key for project id, as gitlab-runner's
 * generateObjectName: key joined as a path ("a/./b" is "a/b", "a/../b" is
 * "b"); false when it does not fit or would not name an object below the
 * project's prefix ("", ".", "x/..", "../x"). */
bool cache_object_name(const struct cache_store *s, long long project_id, const char *key, char *out,
		       size_t size);

/* Where the local archive is: <local_root>/<project>/<folder>/cache.zip
 * (folder: the key as one safe folder name, gla_cache_folder). */
bool cache_local_path(const struct cache_store *s, const char *project, const char *folder, char *out,
		      size_t size);

/* Before a job: put the archive of key (its local folder name: folder) in
 * the local cache, from S3 when the store has one, and name it in path.
 * True when there is an archive to extract. warn gets a line for the job
 * log when S3 could not be used (then the local copy, if any, serves),
 * else "". */
bool cache_store_fetch(const struct cache_store *s, const char *project, long long project_id, const char *key,
		       const char *folder, char *path, size_t size, char *warn, size_t wsize);

/* After a job: the archive of key was written to the local cache at path;
 * upload it when the store has S3. False with warn set when the upload
 * failed (the local copy stays). */
bool cache_store_push(const struct cache_store *s, long long project_id, const char *key, const char *path,
		      char *warn, size_t wsize);

/* For kiln doctor: HEAD the S3 bucket with the store's credentials
 * (short timeouts). True when there is no S3 store or the bucket answers;
 * else false with why set. */
bool cache_store_check(const struct cache_store *s, char *why, size_t wsize);

/* Whether the store uploads anywhere besides the local cache. */
bool cache_store_remote(const struct cache_store *s);

#endif
