/* Moving git objects between repositories: a chosen set written into a new
 * pack (shallow checkouts copy only the objects of the last few commits), or
 * all object files linked.
 *
 * libgit2's packbuilder searches deltas for every object: 18.5 s for the
 * 40,403 objects (200 MB) of a 40,000-file tree. This writer stores every
 * object whole (zlib level 1; level 0 saves only 20% of the time for a 4x
 * bigger pack) and lets libgit2's indexer write the .idx: 4.0 s for the same
 * tree, 40 ms for 371 objects. Most of it is zlib (reading deltified objects
 * from the mirror, deflating, the indexer's inflate) and the indexer's SHA-1. */
#ifndef KILN_PACKWRITE_H
#define KILN_PACKWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <git2.h>

#include "lib/result.h"

/* A set of object ids that remembers insertion order. */
struct oidset {
	git_oid *slots;  /* open addressing; the zero id marks a free slot */
	size_t cap;      /* a power of two */
	git_oid *list;   /* in insertion order */
	size_t n, list_cap;
	size_t max;      /* the most ids it accepts */
};

/* An empty set that accepts at most max ids. */
void oidset_init(struct oidset *s, size_t max);
/* Free what s holds; it is empty afterwards. */
void oidset_free(struct oidset *s);
/* 1 when id was added, 0 when it was there already, -1 when out of memory
 * or full (errno ENOMEM or E2BIG). */
int oidset_add(struct oidset *s, const git_oid *id);
/* Whether id is in s. */
bool oidset_has(const struct oidset *s, const git_oid *id);
/* oidset_add(), with a failure also set as libgit2's last error. */
int oidset_add_git(struct oidset *s, const git_oid *id);

/* Add the tree id and everything below it (not gitlinks) to set, leaving
 * out objects that skip (when not NULL) has, and not descending into trees
 * that skip has. 0, or -1 with a libgit2 error (also when set is full). */
int pack_add_tree(git_repository *repo, struct oidset *set, const git_oid *tree, git_odb *skip);

/* Copy the object files of a repository (packs and loose objects; not
 * objects/info, so no alternates) into another repository's objects
 * folder: hard links where possible, else copies. Files that vanish while
 * it runs (a gc) are skipped. */
enum kiln_rc objects_link(const char *src_objects, const char *dst_objects, struct kiln_err *e);

/* Copy the open regular file src_fd into a new file dst_name in the folder
 * dst_dir (not following a link there), with mode; what names it in
 * errors; the bytes copied are added to *bytes. */
enum kiln_rc file_copy_at(int src_fd, int dst_dir, const char *dst_name, mode_t mode,
			  const char *what, uint64_t *bytes, struct kiln_err *e);

/* Write the objects of set, read from odb, as one pack (with its .idx) into
 * pack_dir, which must exist. */
enum kiln_rc pack_write(git_odb *odb, const struct oidset *set, const char *pack_dir,
			struct kiln_err *e);

#endif
