/* Path globs with `**` (doublestar), written once for rules:exists, the
 * include: wildcards and artifact paths. Within one path component `*`
 * and `?` match any characters but '/', `[...]` (`!` or `^` negates, `a-z`
 * ranges) one of a set, `\` quotes the next character; a `**` component
 * followed by '/' matches zero or more whole folders. A dot is an ordinary
 * character. Matching is bounded: a pattern that needs more than
 * KILN_GLOB_MAX_STEPS steps does not match. */
#ifndef KILN_GLOB_H
#define KILN_GLOB_H

#include <stdbool.h>

#define KILN_GLOB_MAX_STEPS 200000
#define KILN_GLOB_MAX_ALTS 64      /* patterns one {a,b} pattern expands to */

/* {a,b,...} alternatives, nested too (GitLab's rules:exists and include:). */
#define KILN_GLOB_BRACES 1u
/* A last `**` component too matches any number of components, none
 * included: "a/" and `**` take a and everything below it (GitLab's
 * artifact paths, Go's doublestar). Without it a last `**` is a `*`. */
#define KILN_GLOB_DEEP_TAIL 2u

/* Whether path ("a/b/c.txt", no leading '/') matches pattern. */
bool kiln_glob_match(const char *pattern, const char *path, unsigned flags);

/* Expand pattern's {a,b} alternatives into alts (at most max, each
 * malloc'd): their count, or -1 when there are more or memory runs out
 * (then nothing is left to free). */
int kiln_glob_braces(const char *pattern, char **alts, int max);
void kiln_glob_braces_free(char **alts, int n);

/* kiln_glob_match for one pattern whose braces were expanded already. */
bool kiln_glob_match_one(const char *pattern, const char *path, unsigned flags);

#endif
