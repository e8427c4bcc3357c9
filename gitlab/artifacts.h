/* Artifacts, dependencies and cache of a GitLab job run by `kiln run`
 * (protocol reference, section 6).
 *
 * Before the VM: caches are restored from the local cache
 * (<cache_root>/<project path>/<folder>/cache.zip, the folder named by
 * gla_cache_folder for each key as gla_cache_key makes it: the key, then
 * its fallback_keys, then $CACHE_FALLBACK_KEY; a
 * cache problem never fails the job) and the dependencies' artifacts are
 * downloaded (GET /jobs/:id/artifacts with each dependency's token; a
 * failure fails the job). Both are extracted into folders that
 * job_opts.extra_dirs lays over the checkout, caches first.
 *
 * When the VM has stopped (job_opts.finished), the files that
 * artifacts:paths/exclude and cache:paths select are copied out of the
 * workspace image (workspace/artifacts.h); afterwards the caches are zipped
 * into the local cache and the artifacts packed and uploaded (POST
 * /jobs/:id/artifacts with their artifact_type and artifact_format: zip
 * archives, gzip members for reports, raw single files). untracked: true
 * adds what git does not track. A failed upload fails the job. Each phase
 * writes its section into the trace.
 *
 * With a runner's cache: type s3, the store (cache/store.h) also keeps
 * each archive in S3 and restores from there first.
 *
 * Not done: GCS and Azure caches, the zstd formats. */
#ifndef KILN_GLARTIFACTS_H
#define KILN_GLARTIFACTS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "cache/store.h"
#include "gitlab/client.h"
#include "job/payload.h"
#include "lib/result.h"
#include "gitlab/trace.h"

#define GLA_MAX_ENTRIES 32                 /* artifacts: and cache: entries used */
#define GLA_MAX_BYTES (64ULL << 30)        /* one archive, uncompressed (zip64) */

struct gla_entry {
	bool wanted;              /* collected (when: matched the outcome) */
	char dir[PATH_MAX];       /* what was collected */
	unsigned files;
	char error[512];          /* why collecting failed, "" when it did not */
};

struct gla {
	const struct job_payload *p;
	struct gl_client *cl;
	struct trace *t;
	const char *cache_root;
	struct cache_store store; /* local only unless gla_use_cache */
	char project[256];        /* "group/project" */
	char project_dir[320];    /* /builds/group/project */
	char tmp[PATH_MAX];       /* private scratch folder, removed by gla_free */
	char cache_in[PATH_MAX + 16], deps_in[PATH_MAX + 16];
	const char *extra[2];     /* for job_opts.extra_dirs */
	size_t n_extra;
	bool collected, ok;
	struct gla_entry art[GLA_MAX_ENTRIES], cache[GLA_MAX_ENTRIES];
};

/* Set g up for job p: its client (for the API), trace, the local cache
 * root and a scratch folder under state_dir/tmp. */
enum kiln_rc gla_init(struct gla *g, const struct job_payload *p, struct gl_client *cl, struct trace *t,
		      const char *state_dir, const char *cache_root, struct kiln_err *e);

/* Keep caches in the store cfg names too (a runner's cache: section, its
 * token for the object names); both must outlive g. */
void gla_use_cache(struct gla *g, const struct kiln_cache_config *cfg, const char *runner_token);

/* The folder name of cache key for g's job, into out: key with the job's
 * variables expanded, then kept apart by the ref's protection as GitLab
 * does (git_info.protected, else $CI_COMMIT_REF_PROTECTED): "-protected"
 * or "-non_protected" appended unless the key already ends in the suffix
 * the server gives such a job ("-non_protected" for any job, as with
 * cache:unprotect; "-protected" only for a protected one). So no
 * unprotected job reads or writes a cache that protected jobs restore. */
void gla_cache_key(const struct gla *g, const char *key, char *out, size_t size);

/* The one folder name key is kept under: the key itself when it is made of
 * [A-Za-z0-9._-] and does not start with '.', else each other byte as %XX
 * (a '/' from $CI_COMMIT_REF_NAME, "..", ...), else past 200 bytes "%h" and
 * the key's SHA-256. Never '/', "." or "..". False for an empty key; out
 * holds at least 70 bytes. */
bool gla_cache_folder(const char *key, char *out, size_t size);

/* Restore caches and download dependencies; g->extra gets the folders.
 * Fails when a dependency cannot be had. */
enum kiln_rc gla_before(struct gla *g, struct kiln_err *e);

/* job_opts.finished: copy artifacts and cache paths out of the image. */
void gla_collect(struct gla *g, const char *image, const char *project, bool ok);

/* Save caches, upload artifacts. Fails when an upload does. */
enum kiln_rc gla_after(struct gla *g, struct kiln_err *e);

/* Remove the scratch folder. */
void gla_free(struct gla *g);

/* Remove the scratch folders of kilns that died (their pid is gone). */
void gla_sweep(const char *state_dir);

#endif
