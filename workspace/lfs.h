/* Git LFS objects for a checkout, as gitlab-runner's git-lfs gets them:
 * the pointer files that the checkout wrote (index entries whose filter
 * attribute is lfs) are replaced by their objects, fetched with the batch
 * API (lfsbatch.h) over http(s) with the repository URL's credentials (the
 * job token) and the basic transfer. Each object's size and sha256 are
 * verified before it replaces anything; objects are kept in the checkout's
 * .git/lfs/objects as git-lfs keeps them, so git lfs in the job finds them.
 *
 * Not done: .lfsconfig's lfs.url, ssh-based LFS authentication, transfer
 * adapters other than basic, and LFS objects inside submodules. The files
 * replaced differ from the index's stat data: git status in the job runs
 * them through the clean filter (git-lfs, when the image has it). */
#ifndef KILN_LFS_H
#define KILN_LFS_H

#include <stdint.h>

#include "lib/result.h"
#include "workspace/lfsbatch.h"
#include "workspace/url.h"

struct lfs_opts {
	const char *workdir;        /* the top of a checkout (libgit2 initialised) */
	const struct ws_url *url;   /* the repository's http(s) URL, with credentials */
	const char *ca_file;        /* optional: trust these CAs too; NULL: the system's */
	unsigned timeout_s;         /* one request; 0: 3600 */
};

struct lfs_stats {
	unsigned pointers;          /* pointer files replaced */
	unsigned objects;           /* objects downloaded */
	uint64_t bytes;             /* their size */
};

/* <url without credentials, ".git" added when missing>/info/lfs/objects/batch
 * into out (size bytes); NULL when it does not fit or url is not http(s). */
char *lfs_batch_url(const struct ws_url *url, char *out, size_t size);

/* Replace the LFS pointer files in o->workdir by their objects (nothing to
 * do is not an error). A server error for an object, a short or corrupt
 * download, or a reply naming an object that was not asked for fails,
 * naming the object and its path; credentials are never in the message. */
enum kiln_rc lfs_fetch(const struct lfs_opts *o, struct lfs_stats *st, struct kiln_err *e);

#endif
