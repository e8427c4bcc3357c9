/* GitLab CI `rules`: the `if:` expression language, `exists:` globs and
 * the matching of one rule's clauses.
 *
 * Expressions follow GitLab's Gitlab::Ci::Pipeline::Expression:
 *  - operands: $VAR or ${VAR} (undefined = null), "string" or 'string' (no
 *    escapes), null, /regex/flags, and parenthesised expressions;
 *  - operators, tightest first: == != =~ !~ (left to right), then &&, then ||;
 *  - values behave like GitLab's Ruby: `a && b` is a when a is null or
 *    false, else b; `a || b` is a unless a is null or false; the result
 *    holds when it is true, a non-blank string or a regex (so `$VAR` alone
 *    holds when VAR is defined and not blank);
 *  - `==`/`!=` compare strings exactly; null equals only null;
 *  - `=~`/`!~` search the left side (null reads as "") with the regex on the
 *    right; a variable or string on the right is used as a regex, written
 *    /.../flags or bare; a right side that is null never matches.
 * Regexes are RE2 in GitLab; here they run on POSIX extended regexes after
 * a translation of the common RE2 forms: \d \D \w \W \s \S \A \z, (?:...),
 * lazy quantifiers (the same match/no-match answer), escapes inside [...].
 * Flags: i (ignore case), m (^ and $ at line ends), s (accepted; POSIX's
 * dot already matches a newline). Other RE2-only syntax fails to compile
 * and is reported as an invalid regex.
 *
 * Globs (`exists`) follow Ruby's File.fnmatch with PATHNAME, DOTMATCH and
 * EXTGLOB as GitLab uses it: * and ? stop at '/', [...] and [!...], {a,b},
 * `**` followed by '/' matches any number of directories, and a leading
 * dot is matched like any character.
 */
#ifndef KILN_CIRULES_H
#define KILN_CIRULES_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/yaml.h"
#include "lib/result.h"

#define CIRULES_MAX_EXPR 4096        /* bytes of one if: expression */
#define CIRULES_MAX_DEPTH 64         /* nested parentheses */
#define CIRULES_MAX_PATTERN 1024     /* bytes of one exists: pattern */
#define CIRULES_EXISTS_MAX_FILES 10000 /* GitLab's cap: past it, exists holds */
#define CIRULES_EXISTS_MAX_DEPTH 64    /* folders deeper down are not looked into */

/* The value of variable name (already expanded), or NULL when undefined. */
typedef const char *(*cirules_lookup_fn)(void *arg, const char *name);

/* Evaluate expr with variables from lookup into *result. A syntax error or
 * an invalid regex literal is KILN_E_SYNTAX with a message naming the
 * column ("unexpected ')' at column 7"), which callers prefix with their
 * FILE:LINE. */
enum kiln_rc cirules_eval(const char *expr, cirules_lookup_fn lookup, void *arg, bool *result, struct kiln_err *e);

/* Whether path (repository-relative, '/'-separated) matches the glob. */
bool cirules_glob_match(const char *pattern, const char *path);

/* Whether a file or directory under root matches the repository-relative
 * pattern (a leading "/" or "./" is dropped; a ".." component never
 * matches). A pattern without glob
 * characters is looked up directly; otherwise root is walked (not
 * following symbolic links, skipping .git) and, as in GitLab, the answer is
 * yes once more than CIRULES_EXISTS_MAX_FILES entries have been looked at. */
enum kiln_rc cirules_exists_in(const char *root, const char *pattern, bool *found, struct kiln_err *e);

/* Answers whether the repository holds something matching pattern. */
typedef enum kiln_rc (*cirules_exists_fn)(void *arg, const char *pattern, bool *found, struct kiln_err *e);

/* What one rule is matched against. */
struct cirules_env {
	cirules_lookup_fn lookup;
	void *lookup_arg;
	cirules_exists_fn exists;  /* required when a rule uses exists: */
	void *exists_arg;
	ci_warn_fn warn;           /* may be NULL */
	void *warn_arg;
	const char *what;          /* for messages: "job 'x'", "workflow", "include" */
};

/* Whether rule (a mapping) matches: its `if`, `exists` and `changes`
 * clauses all hold (a rule without them matches). `changes` cannot be
 * known without a diff: it is warned about and taken as true. exists
 * patterns may hold $VAR references, expanded with lookup. Other keys are
 * the caller's. Errors name FILE:LINE of the offending clause. */
enum kiln_rc cirules_match(const struct cirules_env *env, const struct cy_node *rule, bool *match,
			   struct kiln_err *e);

#endif
