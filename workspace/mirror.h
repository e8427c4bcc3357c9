/* The local mirrors of remote repositories.
 *
 * A mirror is a bare libgit2 repository per repository URL, at
 * <state_dir>/mirrors/<sha256 of the URL with credentials stripped>.git. One
 * job at a time uses a mirror: an exclusive flock on <mirror>.lock is held
 * from before the fetch until the job has copied the objects it needs.
 *
 * Credentials embedded in a URL stay in memory: the mirror's config holds the
 * redacted URL and libgit2 gets the user and password through its credentials
 * callback. Fetches never write FETCH_HEAD and bare mirrors keep no reflogs.
 * The mirror_* functions need libgit2 initialised (ws_prepare does it). */
#ifndef KILN_MIRROR_H
#define KILN_MIRROR_H

#include <stdbool.h>
#include <stddef.h>

#include <git2.h>

#include "lib/result.h"
#include "workspace/gitutil.h"
#include "workspace/url.h"

/* Write <state_dir>/mirrors/<sha256 of redacted>.git into buf; NULL when it
 * does not fit. */
char *mirror_path(char *buf, size_t size, const char *state_dir, const char *redacted);

/* Write <state_dir>/trees/<name>, where the workspace keeps its checkout of
 * the mirror at mirror (a mirror_path result; name is its file name less
 * ".git"), into buf; NULL when it does not fit. mirror_sweep removes it with
 * the mirror. */
char *mirror_tree_path(char *buf, size_t size, const char *state_dir, const char *mirror);

/* Take an exclusive flock on lock_path (created 0644 when missing), waiting
 * at most timeout_s seconds (0: the default of 600). Stores the descriptor in
 * *fd and the time waited in *waited_ms. KILN_E_LIMIT when the wait is too
 * long. */
enum kiln_rc mirror_lock(const char *lock_path, unsigned timeout_s, int *fd, long *waited_ms,
			 struct kiln_err *e);
/* Release and close a lock taken by mirror_lock (fd < 0: nothing). */
void mirror_unlock(int fd);

/* Remove the mirrors under <state_dir>/mirrors that no job has locked for
 * max_age_days (0: MIRROR_DEFAULT_MAX_AGE_DAYS), skipping the one at keep
 * (a mirror path, or NULL) and any that is locked now. mirror_lock() stamps
 * a mirror's lock file with the time of each use. */
void mirror_sweep(const char *state_dir, unsigned max_age_days, const char *keep);

/* What a job's fetch asks for when its payload names no refspecs. */
#define WS_DEFAULT_REFSPEC_HEADS "+refs/heads/*:refs/remotes/origin/*"
#define WS_DEFAULT_REFSPEC_TAGS "+refs/tags/*:refs/tags/*"
#define MIRROR_MAX_REFSPECS 64
#define MIRROR_DEFAULT_LOCK_TIMEOUT_S 600
#define MIRROR_DEFAULT_FETCH_TIMEOUT_S 3600
#define MIRROR_DEFAULT_MAX_PACKS 32
#define MIRROR_DEFAULT_MAX_AGE_DAYS 30
#define MIRROR_MAX_FETCH_BYTES (64ULL << 30)
#define MIRROR_MAX_REFS 1000000

struct mirror_opts {
	const char *state_dir;
	const struct ws_url *url;
	/* The refspecs to fetch into the mirror (at least one). A refspec whose
	 * source is a 40-hex SHA is fetched by SHA into refs/kiln/, only when
	 * the object is missing after the other refspecs. */
	const char *const *refspecs;
	size_t n_refspecs;
	/* Objects that must be in the mirror after the fetch. */
	const git_oid *want;
	size_t n_want;
	unsigned lock_timeout_s;  /* 0: MIRROR_DEFAULT_LOCK_TIMEOUT_S */
	unsigned fetch_timeout_s; /* 0: MIRROR_DEFAULT_FETCH_TIMEOUT_S */
	unsigned max_packs;       /* repack above this many packs; 0: default */
};

struct mirror {
	char path[4096];
	int lock_fd;              /* -1 when not locked */
	git_repository *repo;     /* NULL when not open */
	bool cloned;              /* created by this acquire (else fetched) */
	bool fetched_by_sha;      /* a want had to be fetched by its SHA */
	long lock_wait_ms;
	unsigned max_packs;
};

#define MIRROR_INIT { .lock_fd = -1 }

/* Lock the mirror of o->url, create it when missing (or when it is not a
 * usable repository), fetch o->refspecs into it, then fetch any missing want
 * by its SHA. Fails naming the SHA when a want is still missing. On success
 * m holds the lock and the open repository until mirror_release(); on
 * failure m is released. */
enum kiln_rc mirror_acquire(struct mirror *m, const struct mirror_opts *o, struct kiln_err *e);

/* Housekeeping (drop the refs under refs/kiln/, repack when there are too many packs),
 * close the repository and unlock. Safe to call twice. */
void mirror_release(struct mirror *m);

/* Add remote name (url, fetch specs) to repo's config by appending the
 * section to its config file. libgit2 1.5's config writer leaks pcre2
 * match data (about 20 KiB) on every regexp that does not match, which
 * git_remote_create and git_remote_add_fetch do; a daemon running
 * thousands of jobs cannot afford that. The repository must not have the
 * remote yet. KILN_E_INVALID for a newline or NUL in a value. */
enum kiln_rc ws_config_add_remote(git_repository *repo, const char *name, const char *url,
				  const char *const *fetch, size_t n_fetch, struct kiln_err *e);

#endif
