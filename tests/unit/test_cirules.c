/* The rules language on its own: if: expressions, globs, exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "localci/rules.h"
#include "localci/variables.h"
#include "localci/pipeline.h"
#include "tests/unit/suites.h"

/* The variables every expression below sees. */
static const char *lookup(void *arg, const char *name)
{
	static const char *const vars[][2] = {
		{ "BRANCH", "main" },
		{ "SOURCE", "push" },
		{ "EMPTY", "" },
		{ "BLANK", "  " },
		{ "FALSE", "false" },
		{ "TAG", "v1.2.3" },
		{ "PATTERN", "/^v\\d+/" },
		{ "IPATTERN", "/^MAIN$/i" },
		{ "BARE", "ai" },
		{ "MSG", "fix: Crash\nsecond line [skip ci]" },
		{ "OTHER", "main" },
	};
	size_t i;

	(void)arg;
	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (!strcmp(vars[i][0], name))
			return vars[i][1];
	return NULL;
}

static const struct {
	const char *expr;
	bool want;
} cases[] = {
	/* a variable alone: defined and not blank */
	{ "$BRANCH", true },
	{ "$UNDEFINED", false },
	{ "$EMPTY", false },
	{ "$BLANK", false },
	{ "$FALSE", true },
	{ "${BRANCH}", true },
	/* == and != */
	{ "$BRANCH == \"main\"", true },
	{ "$BRANCH == 'main'", true },
	{ "$BRANCH == \"dev\"", false },
	{ "$BRANCH != \"dev\"", true },
	{ "$BRANCH == $OTHER", true },
	{ "\"main\" == $BRANCH", true },
	{ "$UNDEFINED == null", true },
	{ "$EMPTY == null", false },
	{ "$EMPTY == \"\"", true },
	{ "$BRANCH != null", true },
	{ "null == null", true },
	{ "$UNDEFINED != null", false },
	/* =~ and !~ */
	{ "$TAG =~ /^v[0-9]+\\.[0-9]+/", true },
	{ "$TAG =~ /^v\\d+\\.\\d+\\.\\d+$/", true },
	{ "$BRANCH =~ /^MAIN$/", false },
	{ "$BRANCH =~ /^MAIN$/i", true },
	{ "$BRANCH !~ /^feature/", true },
	{ "$BRANCH !~ /ai/", false },
	{ "$UNDEFINED =~ /x/", false },
	{ "$UNDEFINED !~ /x/", true },
	{ "$UNDEFINED =~ /^$/", true },
	{ "$TAG =~ $PATTERN", true },
	{ "$BRANCH =~ $IPATTERN", true },
	{ "$BRANCH =~ $BARE", true },
	{ "$BRANCH =~ $UNDEFINED", false },
	{ "$BRANCH !~ $UNDEFINED", true },
	{ "$MSG =~ /\\[skip ci\\]/", true },
	{ "$MSG =~ /^second/m", true },
	{ "$MSG =~ /^second/", false },
	{ "$TAG =~ /^v(?:\\d+\\.)+\\d+$/", true },
	{ "$TAG =~ /^v.+?3$/", true },
	{ "$TAG =~ /^v[\\d.]+$/", true },
	{ "$BRANCH =~ /a\\/b/", false },
	/* && and || with precedence and parentheses */
	{ "$BRANCH == \"main\" && $SOURCE == \"push\"", true },
	{ "$BRANCH == \"main\" && $SOURCE == \"web\"", false },
	{ "$BRANCH == \"dev\" || $SOURCE == \"push\"", true },
	{ "$BRANCH == \"dev\" || $SOURCE == \"push\" && $TAG == \"x\"", false },
	{ "$BRANCH == \"main\" || $SOURCE == \"web\" && $TAG == \"x\"", true },
	{ "($BRANCH == \"main\" || $SOURCE == \"web\") && $TAG == \"x\"", false },
	{ "(($BRANCH == \"main\"))", true },
	{ "$UNDEFINED || $BRANCH", true },
	{ "$UNDEFINED && $BRANCH", false },
	{ "$EMPTY && \"x\"", true }, /* Ruby: "" is truthy for &&, and "x" is present */
	{ "$EMPTY || $UNDEFINED", false },
	{ "$BRANCH && $EMPTY", false },
	{ "  $BRANCH   ==\"main\"&&$SOURCE=='push'  ", true },
};

START_TEST(expressions)
{
	struct kiln_err e = { 0 };
	bool got = !cases[_i].want;

	ck_assert_msg(cirules_eval(cases[_i].expr, lookup, NULL, &got, &e) == KILN_OK, "%s: %s", cases[_i].expr,
		      e.msg);
	ck_assert_msg(got == cases[_i].want, "%s: got %d", cases[_i].expr, got);
}
END_TEST

static const struct {
	const char *expr, *msg;
} errors[] = {
	{ "", "empty expression at column 1" },
	{ "$BRANCH ==", "expected a value, got end of expression at column 11" },
	{ "$BRANCH == \"main", "unterminated string at column 12" },
	{ "($BRANCH == \"main\"", "expected ')', got end of expression at column 19" },
	{ "$BRANCH == \"main\")", "unexpected ')' at column 18" },
	{ "$BRANCH \"main\"", "unexpected string at column 9" },
	{ "$BRANCH = \"main\"", "unexpected '=' at column 9" },
	{ "$BRANCH =~ /main", "unterminated regex (expected /.../) at column 12" },
	{ "$BRANCH =~ /main/x", "unsupported regex flag 'x' (i, m and s are) at column 18" },
	{ "$BRANCH =~ /(?i)main/", "invalid regex /(?i)main/: unsupported group (?...) at column 12" },
	{ "$BRANCH =~ /ma(in/", "invalid regex /ma(in/: Unmatched ( or \\( at column 12" },
	{ "$ == 1", "'$' without a variable name at column 1" },
	{ "${A", "bad variable reference (expected ${NAME}) at column 1" },
	{ "&& $A", "expected a value, got '&&' at column 1" },
	{ "$A && || $B", "expected a value, got '||' at column 7" },
	{ "nullx", "unexpected 'nullx' at column 1" },
};

START_TEST(expression_errors)
{
	struct kiln_err e = { 0 };
	bool got;

	ck_assert_int_eq(cirules_eval(errors[_i].expr, lookup, NULL, &got, &e), KILN_E_SYNTAX);
	ck_assert_str_eq(e.msg, errors[_i].msg);
}
END_TEST

START_TEST(deep_parentheses_are_bounded)
{
	char expr[400];
	struct kiln_err e = { 0 };
	bool got;
	int i;

	for (i = 0; i < 100; i++)
		expr[i] = '(';
	strcpy(expr + 100, "$A");
	for (i = 0; i < 100; i++)
		strcat(expr, ")");
	ck_assert_int_eq(cirules_eval(expr, lookup, NULL, &got, &e), KILN_E_SYNTAX);
	ck_assert_str_eq(e.msg, "parentheses nested deeper than 64 at column 65");
}
END_TEST

static const struct {
	const char *pattern, *path;
	bool want;
} globs[] = {
	{ "Dockerfile", "Dockerfile", true },
	{ "Dockerfile", "sub/Dockerfile", false },
	{ "*.yml", "a.yml", true },
	{ "*.yml", "ci/a.yml", false },
	{ "*.yml", ".hidden.yml", true }, /* DOTMATCH */
	{ "**/*.yml", "a.yml", true },
	{ "**/*.yml", "ci/deep/a.yml", true },
	{ "ci/**/*.yml", "ci/a.yml", true },
	{ "ci/**/*.yml", "ci/x/y/a.yml", true },
	{ "ci/**/*.yml", "other/a.yml", false },
	{ "ci/**", "ci/a.yml", true },
	{ "ci/**", "ci/x/a.yml", false }, /* ** without / is * */
	{ "src/?.c", "src/a.c", true },
	{ "src/?.c", "src/ab.c", false },
	{ "src/[abc].c", "src/b.c", true },
	{ "src/[!abc].c", "src/b.c", false },
	{ "src/[a-c].c", "src/d.c", false },
	{ "*.{yml,yaml}", "x.yaml", true },
	{ "*.{yml,yaml}", "x.json", false },
	{ "{src,lib}/**/*.{c,h}", "lib/x/y.h", true },
	{ "a\\*b", "a*b", true },
	{ "a\\*b", "axb", false },
	{ "*", "a/b", false },
};

START_TEST(glob_matching)
{
	ck_assert_msg(cirules_glob_match(globs[_i].pattern, globs[_i].path) == globs[_i].want, "%s vs %s",
		      globs[_i].pattern, globs[_i].path);
}
END_TEST

START_TEST(exists_in_a_tree)
{
	const char *root = fixture("pipeline/rules");
	struct kiln_err e = { 0 };
	bool found;

	ck_assert_int_eq(cirules_exists_in(root, "Dockerfile", &found, &e), KILN_OK);
	ck_assert(found);
	ck_assert_int_eq(cirules_exists_in(root, "/Dockerfile", &found, &e), KILN_OK);
	ck_assert(found);
	ck_assert_int_eq(cirules_exists_in(root, "Makefile", &found, &e), KILN_OK);
	ck_assert(!found);
	ck_assert_int_eq(cirules_exists_in(root, "docs/**/*.md", &found, &e), KILN_OK);
	ck_assert(found);
	ck_assert_int_eq(cirules_exists_in(root, "**/*.rs", &found, &e), KILN_OK);
	ck_assert(!found);
	ck_assert_int_eq(cirules_exists_in(root, "docs", &found, &e), KILN_OK);
	ck_assert(found);
	/* nothing outside the repository */
	ck_assert_int_eq(cirules_exists_in(root, "../rules/Dockerfile", &found, &e), KILN_OK);
	ck_assert(!found);
	ck_assert_int_eq(cirules_exists_in(root, "docs/../Dockerfile", &found, &e), KILN_OK);
	ck_assert(!found);
}
END_TEST

static const struct {
	const char *in;
	long secs;
} durations[] = {
	{ "3600", 3600 },
	{ "90 minutes", 5400 },
	{ "1h 30m", 5400 },
	{ "1h30m", 5400 },
	{ "1 hour and 30 minutes", 5400 },
	{ "1.5 hours", 5400 },
	{ "2 days", 172800 },
	{ "1 week", 604800 },
	{ "1:30:00", 5400 },
	{ "10:00", 600 },
	{ "45s", 45 },
	{ "3 mins, 10 secs", 190 },
	{ "1 HOUR", 3600 },
};

static const char *const bad_durations[] = { "", "forever", "1 fortnight", "1h 30x", "h", "-5m", "1::2", "1e400" };

START_TEST(duration_parsing)
{
	long secs = -1;

	ck_assert_msg(pipeline_parse_duration(durations[_i].in, &secs), "%s", durations[_i].in);
	ck_assert_int_eq(secs, durations[_i].secs);
}
END_TEST

START_TEST(bad_duration_parsing)
{
	long secs;

	ck_assert_msg(!pipeline_parse_duration(bad_durations[_i], &secs), "%s", bad_durations[_i]);
}
END_TEST

static void collect(void *arg, const char *msg)
{
	char *buf = arg;

	snprintf(buf + strlen(buf), 2048 - strlen(buf), "%s\n", msg);
}

START_TEST(variable_expansion)
{
	struct cy_arena *a = cy_arena_new();
	struct civars in = { 0 }, out = { 0 };
	struct kiln_err e = { 0 };
	char warnings[2048] = "";
	static const struct civar defs[] = {
		{ "HOST", "example.org", false, CIVAR_GLOBAL, "f", 1 },
		{ "URL", "https://${HOST}/$PATH_PART", false, CIVAR_JOB, "f", 2 },
		{ "PATH_PART", "api/$$VERSION", false, CIVAR_JOB, "f", 3 },
		{ "RAW", "keep $HOST", true, CIVAR_JOB, "f", 4 },
		{ "USES_RAW", "[$RAW]", false, CIVAR_JOB, "f", 5 },
		{ "LOOP_A", "a$LOOP_B", false, CIVAR_JOB, "f", 6 },
		{ "LOOP_B", "b$LOOP_A", false, CIVAR_JOB, "f", 7 },
		{ "SELF", "x$SELF", false, CIVAR_JOB, "f", 8 },
		{ "UNDEF", "$NOPE ${NOPE} $1 $", false, CIVAR_JOB, "f", 9 },
	};
	size_t i;

	ck_assert_ptr_nonnull(a);
	for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
		ck_assert_int_eq(civars_set(&in, &defs[i], &e), KILN_OK);
	ck_assert_int_eq(civars_expand(a, &in, &out, collect, warnings, &e), KILN_OK);
	ck_assert_str_eq(civars_get(&out, "URL")->value, "https://example.org/api/$$VERSION");
	ck_assert_str_eq(civars_get(&out, "PATH_PART")->value, "api/$$VERSION");
	ck_assert_str_eq(civars_get(&out, "RAW")->value, "keep $HOST");
	ck_assert_str_eq(civars_get(&out, "USES_RAW")->value, "[keep $HOST]");
	ck_assert_str_eq(civars_get(&out, "LOOP_A")->value, "a$LOOP_B");
	ck_assert_str_eq(civars_get(&out, "LOOP_B")->value, "b$LOOP_A");
	ck_assert_str_eq(civars_get(&out, "SELF")->value, "x$SELF");
	ck_assert_str_eq(civars_get(&out, "UNDEF")->value, "$NOPE ${NOPE} $1 $");
	ck_assert_str_eq(warnings, "f:6: variables LOOP_A -> LOOP_B -> LOOP_A refer to each other (left "
				   "unexpanded)\nf:8: variable 'SELF' refers to itself (left unexpanded)\n");
	civars_free(&in);
	civars_free(&out);
	cy_arena_free(&a);
	ck_assert_ptr_null(a);
}
END_TEST

START_TEST(expansion_is_bounded)
{
	struct cy_arena *a = cy_arena_new();
	struct civars in = { 0 }, out = { 0 };
	struct kiln_err e = { 0 };
	char *big = malloc(100001);
	struct civar v = { "A", NULL, false, CIVAR_JOB, "f", 1 };
	char names[8][3] = { "A", "B", "C", "D", "E", "F", "G", "H" };
	char vals[8][16];
	int i;

	/* Each variable doubles the previous one: 2^7 * 100000 bytes. */
	memset(big, 'x', 100000);
	big[100000] = '\0';
	v.value = big;
	ck_assert_int_eq(civars_set(&in, &v, &e), KILN_OK);
	for (i = 1; i < 8; i++) {
		snprintf(vals[i], sizeof(vals[i]), "$%s$%s", names[i - 1], names[i - 1]);
		v.key = names[i];
		v.value = vals[i];
		v.line = (unsigned)i + 1;
		ck_assert_int_eq(civars_set(&in, &v, &e), KILN_OK);
	}
	ck_assert_int_eq(civars_expand(a, &in, &out, NULL, NULL, &e), KILN_E_LIMIT);
	ck_assert_str_eq(e.msg, "f:3: variable 'C': value longer than 256 KiB after expansion");
	civars_free(&in);
	civars_free(&out);
	free(big);
	cy_arena_free(&a);
}
END_TEST

Suite *cirules_suite(void)
{
	Suite *s = suite_create("cirules");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, expressions, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_loop_test(tc, expression_errors, 0, (int)(sizeof(errors) / sizeof(errors[0])));
	tcase_add_test(tc, deep_parentheses_are_bounded);
	tcase_add_loop_test(tc, glob_matching, 0, (int)(sizeof(globs) / sizeof(globs[0])));
	tcase_add_test(tc, exists_in_a_tree);
	tcase_add_loop_test(tc, duration_parsing, 0, (int)(sizeof(durations) / sizeof(durations[0])));
	tcase_add_loop_test(tc, bad_duration_parsing, 0, (int)(sizeof(bad_durations) / sizeof(bad_durations[0])));
	tcase_add_test(tc, variable_expansion);
	tcase_add_test(tc, expansion_is_bounded);
	suite_add_tcase(s, tc);
	return s;
}
