/* One walk over a folder tree, written once for rules:exists and the
 * include: wildcards: without following links, bounded in depth, each
 * entry seen with its path relative to the root. */
#ifndef KILN_TREEWALK_H
#define KILN_TREEWALK_H

#include <sys/stat.h>

enum kiln_walk_step {
	KILN_WALK_NEXT = 0,  /* go on; into the entry when it is a folder */
	KILN_WALK_SKIP,      /* go on, but not into this folder */
	KILN_WALK_STOP,      /* end the walk (successfully) */
};

/* Called for each entry below the root ("." and ".." aside) with its path
 * relative to the root ("a/b.txt") and its lstat. */
typedef enum kiln_walk_step (*kiln_walk_fn)(void *arg, const char *rel, const struct stat *st);

/* Walk the folder open on fd (taken: closed when done), depth first in
 * readdir order. A folder max_depth levels below the root is listed but
 * not entered; entries that vanish while walking, folders that cannot be
 * opened below the root and paths longer than PATH_MAX are passed over.
 * -1 (errno set) only when the root cannot be read, else 0. */
int kiln_treewalk(int fd, int max_depth, kiln_walk_fn fn, void *arg);

#endif
