/* Copying a folder tree into another without ever following a symbolic
 * link on the destination side: every folder of the destination is opened
 * relative to its parent with O_NOFOLLOW, and whatever is in the way of a
 * copied entry (a file where a folder goes, a link, a folder where a file
 * goes) is removed first. So a copy lands inside dst whatever dst already
 * holds (a job's checkout, an artifacts store).
 *
 * Regular files keep their permission bits (not setuid, setgid or sticky:
 * modes are masked to 0777) and modification time, symbolic
 * links are copied as links (their targets untouched), folders are merged;
 * other kinds of entries (devices, sockets, fifos) are skipped. The source
 * is walked without following links either. */
#ifndef KILN_FSTREE_H
#define KILN_FSTREE_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/result.h"

#define FSTREE_MAX_DEPTH 64
#define FSTREE_MAX_FILES 1000000u
#define FSTREE_MAX_BYTES (64ULL << 30)

struct fstree_stats {
	unsigned files;           /* regular files and links copied */
	uint64_t bytes;           /* their sizes */
};

/* Whether the entry at rel (relative to src, "a/b.txt", no leading '/')
 * is copied; folders themselves are not asked about: one is made in dst
 * when something below it is copied. */
typedef bool (*fstree_want_fn)(void *arg, const char *rel);

/* Copy what is below src into dst (created with its parents when missing),
 * every entry when want is NULL, else those want accepts. Stops with
 * KILN_E_LIMIT past FSTREE_MAX_DEPTH levels, FSTREE_MAX_FILES entries or
 * FSTREE_MAX_BYTES; errors name the path. What was copied before an error
 * stays. */
enum kiln_rc fstree_copy(const char *src, const char *dst, fstree_want_fn want, void *arg,
			 struct fstree_stats *st, struct kiln_err *e);

/* The names in the folder dfd (not "." and ".."), sorted bytewise, so a
 * walk over them is the same every time: *names (n of them) for
 * fstree_names_free. rel names the folder in messages. KILN_E_LIMIT past
 * max entries. dfd stays open and unmoved. */
enum kiln_rc fstree_names(int dfd, const char *rel, size_t max, char ***names, size_t *n, struct kiln_err *e);
void fstree_names_free(char **names, size_t n);

#endif
