/* The job workspace: the job's commit checked out into an ext4 image that
 * the microVM mounts.
 *
 * ws_prepare() updates the mirror of the repository (workspace/mirror.h), makes
 * a normal repository with a working .git at <image root>/<project_path>
 * (origin = the URL without credentials, HEAD detached at the commit, its own
 * copy of the objects: no alternates, the guest cannot see the mirror),
 * optionally shallow, with submodules, with a local working tree's changes
 * laid over it, and packs it into an image with mke2fs (workspace/ext4img.h).
 * The temporary folder it builds in is always removed.
 *
 * Credentials embedded in the URL never reach disk (mirror config, the
 * checkout's .git/config, FETCH_HEAD, reflogs) nor the log or error
 * messages.
 *
 * Sources: https/http (credentials through libgit2's callback), ssh (the
 * ssh-agent, then ~/.ssh/id_{ed25519,ecdsa,rsa}; the host must be in
 * ~/.ssh/known_hosts), git://, and local paths or file:// URLs. A local
 * source is read directly, not through libgit2's local transport (which
 * recomputes every delta): a new mirror hard-links its object files, later
 * syncs pack only what the mirror lacks; the refspecs pick the refs, tags
 * are not followed beyond them.
 *
 * Ownership in the image: the image root is 0:0 mode 0755, every file and
 * folder below keeps the owner it was created with (the user running kiln),
 * so the guest runs the job as that uid, or marks the folder safe.directory.
 *
 * Limits: every list, wait and size is bounded (see the constants here and
 * in mirror.h, wscheckout.h, ext4img.h); mirrors unused for 30 days are
 * removed, a mirror is repacked above 32 packs or 1024 loose objects.
 * A fetch is stopped after fetch_timeout_s, also while the server sends
 * nothing: libgit2's sockets are kiln's (gitstream.h).
 *
 * The checkout is kept: each mirror has one at <state>/trees/<name>/root,
 * flocked by the job using it. The next job on the repository updates it in
 * place (libgit2 writes and deletes only the files that differ, against the
 * old index; .git is made again, so refs, objects and shallow state are
 * exactly the new job's) rather than creating every file anew, much as
 * gitlab-runner's fetch strategy reuses its build folder, while every VM
 * still gets an image of its own. A checkout is kept after a job without
 * submodules or a dirty overlay (extra folders are fine: the next update
 * removes what they added and restores what they replaced), for the same
 * project path only; otherwise, when another job holds
 * it, or with fresh_checkout, the checkout goes to a folder of its own under
 * <state>/tmp that is removed afterwards. A failed update is retried fresh.
 *
 * Timing on the benchmark (bench/workspace.sh, 10,000 commits, 348 files,
 * 2-core VM whose ext4 has no journal): a fresh checkout is dominated by
 * creating files, 40-110 ms, because ext4 without a journal skips inodes
 * freed in the last minutes one by one; the kept checkout's update takes
 * 5-12 ms, and a warm prepare 50-60 ms against 155-175 ms. The image (mke2fs
 * reading the tree) is then the largest part, about 35 ms. A shallow
 * checkout writes a new pack without deltas (packwrite.h has the numbers). */
#ifndef KILN_WORKSPACE_H
#define KILN_WORKSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"
#include "workspace/mirror.h"
#include "workspace/strategy.h"


struct ws_spec {
	const char *state_dir;    /* holds mirrors/ and tmp/ (created when missing) */
	const char *url;          /* may embed credentials (https://user:token@host/...) */
	const char *sha;          /* the commit, 40 hex digits; required */
	const char *ref;          /* optional branch or tag name, for messages */
	const char *const *refspecs; /* optional; default: WS_DEFAULT_REFSPEC_HEADS and
				      * WS_DEFAULT_REFSPEC_TAGS. "+<sha>:refs/x" works */
	size_t n_refspecs;
	unsigned depth;           /* 0: full history; N: the last N commits (shallow) */
	bool submodules;          /* check out submodules, recursively */
	const char *project_path; /* "group/project": the checkout's place in the image */
	const char *image_path;   /* the ext4 image to write (replaced) */
	const char *dirty_dir;    /* optional: a working tree whose uncommitted and
				   * untracked (not ignored) files are laid over the
				   * checkout; files deleted there are deleted too */
	const char *const *extra_dirs; /* optional: folders whose contents are copied
				   * into the project folder after the checkout and
				   * the dirty overlay, in order (later ones win):
				   * e.g. artifacts of earlier jobs (workspace/fstree.h) */
	size_t n_extra_dirs;
	unsigned lock_timeout_s;  /* mirror lock wait; 0: 600 */
	unsigned fetch_timeout_s; /* one fetch; 0: 3600 */
	unsigned mirror_max_packs; /* repack a mirror above this; 0: 32 */
	unsigned mirror_max_age_days; /* remove mirrors unused this long; 0: 30 */
	uint64_t max_image_bytes; /* 0: EXT4IMG_DEFAULT_MAX_BYTES */
	bool fresh_checkout;      /* never reuse the kept checkout (see above) */
	/* Optional: GIT_STRATEGY and friends (strategy.h). With it, submodules
	 * follow git->submodules (the bool above is ignored); none and empty
	 * give an empty project folder (and extra_dirs) without touching the
	 * repository; checkout=false leaves .git alone; LFS objects are
	 * fetched when git->lfs (lfs.h). */
	const struct ws_gitopts *git;
};

struct ws_result {
	long lock_wait_ms;        /* waiting for the mirror lock (not in mirror_ms) */
	long mirror_ms;           /* clone or fetch of the mirror */
	long checkout_ms;         /* the checkout, submodules and overlay */
	long image_ms;            /* mke2fs */
	bool mirror_cloned;       /* the mirror was created (else fetched) */
	bool fetched_by_sha;      /* the commit had to be fetched by its SHA */
	bool tree_reused;         /* the kept checkout was updated in place */
	unsigned submodules;      /* submodules checked out (all levels) */
	unsigned overlay_files;   /* files copied or deleted from dirty_dir */
	unsigned extra_files;     /* files and links copied from extra_dirs */
	unsigned lfs_files;       /* LFS pointer files replaced by their objects */
	uint64_t content_bytes;   /* what the checkout takes */
	uint64_t image_bytes;     /* the image's apparent size (it is sparse) */
};

/* Prepare the workspace image described by spec; res gets the timings and
 * sizes. Errors name the step and the (redacted) URL, path or SHA; a commit
 * that the server does not have is KILN_E_NOTFOUND naming the SHA. On
 * failure no image is left at spec->image_path. Safe to call from several
 * threads or processes at once: jobs on the same repository take turns on
 * its mirror. */
enum kiln_rc ws_prepare(const struct ws_spec *spec, struct ws_result *res, struct kiln_err *e);

/* Write url without its credentials into out (size bytes): for http(s) the
 * whole "user:password@" part goes (a user alone is usually a token), for
 * ssh only ":password"; paths, file:// and scp-like URLs stay as they are.
 * Returns out, or NULL when url is malformed or the result does not fit. */
char *ws_redact_url(const char *url, char *out, size_t size);

#endif
