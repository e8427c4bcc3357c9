/* Writing a chosen set of git objects into a new pack (for shallow
 * checkouts, where only the objects of the last few commits are copied).
 *
 * libgit2's packbuilder searches deltas for every object, which takes about
 * 18 s for a 40,000-file tree; this writer stores every object whole (zlib
 * level 1) and lets libgit2's indexer write the .idx, about 10x faster. */
#ifndef KILN_PACKWRITE_H
#define KILN_PACKWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include <git2.h>

#include "runner/result.h"

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
void oidset_free(struct oidset *s);
/* 1 when id was added, 0 when it was there already, -1 when out of memory
 * or full (errno ENOMEM or E2BIG). */
int oidset_add(struct oidset *s, const git_oid *id);
bool oidset_has(const struct oidset *s, const git_oid *id);

/* Write the objects of set, read from odb, as one pack (with its .idx) into
 * pack_dir, which must exist. */
enum kiln_rc pack_write(git_odb *odb, const struct oidset *set, const char *pack_dir,
			struct kiln_err *e);

#endif
