/* GitLab CI `if:` expressions (rules:if, workflow:rules:if, include:rules:if).
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
 */
#ifndef KILN_EXPR_H
#define KILN_EXPR_H

#include <stdbool.h>

#include "lib/result.h"

#define CIRULES_MAX_EXPR 4096        /* bytes of one if: expression */
#define CIRULES_MAX_DEPTH 64         /* nested parentheses */

/* The value of variable name (already expanded), or NULL when undefined. */
typedef const char *(*cirules_lookup_fn)(void *arg, const char *name);

/* Evaluate expr with variables from lookup into *result. A syntax error or
 * an invalid regex literal is KILN_E_SYNTAX with a message naming the
 * column ("unexpected ')' at column 7"), which callers prefix with their
 * FILE:LINE. */
enum kiln_rc cirules_eval(const char *expr, cirules_lookup_fn lookup, void *arg, bool *result, struct kiln_err *e);

#endif
