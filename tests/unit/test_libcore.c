/* lib/'s primitives written once: the growable array, the doublestar
 * glob, the tree walk, the $VAR expander and the YAML tree's readings. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/glob.h"
#include "lib/paths.h"
#include "lib/treewalk.h"
#include "lib/varexpand.h"
#include "lib/vec.h"
#include "lib/yaml.h"
#include "tests/unit/suites.h"

START_TEST(vec_grows_to_its_ceiling)
{
	int *v = NULL;
	size_t n = 0, cap = 0, i;

	for (i = 0; i < 100; i++) {
		ck_assert_int_eq(VEC_GROW(v, cap, n, 1, 100), KILN_OK);
		ck_assert_uint_ge(cap, n + 1);
		ck_assert_uint_le(cap, 100);
		v[n++] = (int)i;
	}
	ck_assert_int_eq(VEC_GROW(v, cap, n, 1, 100), KILN_E_LIMIT);
	ck_assert_uint_eq(cap, 100);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(v[i], (int)i);
	free(v);
}
END_TEST

START_TEST(vec_reserves_many_at_once)
{
	char *b = NULL;
	size_t cap = 0;

	ck_assert_int_eq(VEC_GROW(b, cap, 0, 1000, 4096), KILN_OK);
	ck_assert_uint_ge(cap, 1000);
	ck_assert_int_eq(VEC_GROW(b, cap, 1000, 3096, 4096), KILN_OK);
	ck_assert_uint_eq(cap, 4096);
	ck_assert_int_eq(VEC_GROW(b, cap, 4096, 1, 4096), KILN_E_LIMIT);
	ck_assert_int_eq(VEC_GROW(b, cap, 1, (size_t)-1, (size_t)-1), KILN_E_LIMIT); /* len + more overflows */
	free(b);
}
END_TEST

static const struct {
	const char *pattern, *path;
	unsigned flags;
	bool want;
} globs[] = {
	{ "*.c", "a.c", 0, true },
	{ "*.c", "d/a.c", 0, false },
	{ "**/*.c", "a.c", 0, true },
	{ "**/*.c", "d/e/a.c", 0, true },
	{ "d/**/x", "d/x", 0, true },
	{ "d/**/x", "d/a/b/x", 0, true },
	{ "d/**", "d/a", 0, true },
	{ "d/**", "d/a/b", 0, false },                  /* a last ** is a * */
	{ "d/**", "d/a/b", KILN_GLOB_DEEP_TAIL, true },
	{ "d/**", "d", KILN_GLOB_DEEP_TAIL, true },
	{ "d/**", "e", KILN_GLOB_DEEP_TAIL, false },
	{ "**", "a/b/c", KILN_GLOB_DEEP_TAIL, true },
	{ "*", ".hidden", 0, true },
	{ "a?c", "abc", 0, true },
	{ "a?c", "a/c", 0, false },
	{ "a[0-9]", "a7", 0, true },
	{ "a[!0-9]", "a7", 0, false },
	{ "a[", "a[", 0, true },                        /* no ']': a literal '[' */
	{ "a\\*", "a*", 0, true },
	{ "a\\*", "ab", 0, false },
	{ "{src,lib}/*.c", "lib/x.c", KILN_GLOB_BRACES, true },
	{ "{src,lib}/*.c", "doc/x.c", KILN_GLOB_BRACES, false },
	{ "{src,lib}/*.c", "lib/x.c", 0, false },       /* braces only when asked */
	{ "a{b,{c,d}}e", "ade", KILN_GLOB_BRACES, true },
};

START_TEST(glob_cases)
{
	ck_assert_msg(kiln_glob_match(globs[_i].pattern, globs[_i].path, globs[_i].flags) == globs[_i].want,
		      "%s vs %s (flags %u)", globs[_i].pattern, globs[_i].path, globs[_i].flags);
}
END_TEST

START_TEST(glob_is_bounded)
{
	char pat[200], path[200];

	/* Backtracking on many stars gives up rather than spin. */
	memset(pat, 0, sizeof(pat));
	for (size_t i = 0; i < 60; i += 2)
		memcpy(pat + i, "*a", 2);
	strcat(pat, "b");
	memset(path, 'a', 150);
	path[150] = '\0';
	ck_assert(!kiln_glob_match(pat, path, 0));
}
END_TEST

START_TEST(glob_braces_are_bounded)
{
	char *alts[KILN_GLOB_MAX_ALTS];
	int n = kiln_glob_braces("{a,b}{c,d}", alts, KILN_GLOB_MAX_ALTS);

	ck_assert_int_eq(n, 4);
	ck_assert_str_eq(alts[0], "ac");
	ck_assert_str_eq(alts[3], "bd");
	kiln_glob_braces_free(alts, n);
	ck_assert_int_eq(kiln_glob_braces("{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}", alts, KILN_GLOB_MAX_ALTS), -1);
}
END_TEST

struct seen {
	char list[1024];
	const char *stop_at;
};

static enum kiln_walk_step note(void *arg, const char *rel, const struct stat *st)
{
	struct seen *s = arg;

	strcat(s->list, rel);
	strcat(s->list, S_ISDIR(st->st_mode) ? "/ " : " ");
	if (s->stop_at && !strcmp(rel, s->stop_at))
		return KILN_WALK_STOP;
	return strcmp(rel, "skip") ? KILN_WALK_NEXT : KILN_WALK_SKIP;
}

static char *make_tree(void)
{
	char tmpl[] = "/tmp/kiln-walk-XXXXXX", *root = strdup(mkdtemp(tmpl)), p[300];
	const char *dirs[] = { "a", "a/b", "a/b/c", "skip" }, *files[] = { "a/b/c/f", "skip/g" };
	size_t i;

	for (i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		ck_assert_int_eq(mkdir(p, 0700), 0);
	}
	for (i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, files[i]);
		close(open(p, O_WRONLY | O_CREAT, 0600));
	}
	snprintf(p, sizeof(p), "%s/link", root);
	ck_assert_int_eq(symlink("a", p), 0);
	return root;
}

START_TEST(treewalk_bounded_and_skipping)
{
	char *root = make_tree();
	struct seen s = { "", NULL };

	ck_assert_int_eq(kiln_treewalk(open(root, O_RDONLY | O_DIRECTORY), 64, note, &s), 0);
	ck_assert_ptr_nonnull(strstr(s.list, "a/b/c/f "));
	ck_assert_ptr_nonnull(strstr(s.list, "skip/ "));
	ck_assert_ptr_null(strstr(s.list, "skip/g"));   /* not entered */
	ck_assert_ptr_nonnull(strstr(s.list, "link "));  /* a link, not followed */
	ck_assert_ptr_null(strstr(s.list, "link/"));

	/* Depth 1: a/b is listed, not entered. */
	s.list[0] = '\0';
	ck_assert_int_eq(kiln_treewalk(open(root, O_RDONLY | O_DIRECTORY), 1, note, &s), 0);
	ck_assert_ptr_nonnull(strstr(s.list, "a/b/ "));
	ck_assert_ptr_null(strstr(s.list, "a/b/c"));

	s.list[0] = '\0';
	s.stop_at = "a/b";
	ck_assert_int_eq(kiln_treewalk(open(root, O_RDONLY | O_DIRECTORY), 64, note, &s), 0);
	ck_assert_ptr_null(strstr(s.list, "a/b/c"));
	kiln_rm_rf(root);
	free(root);
}
END_TEST

static const char *vars(void *arg, const char *name)
{
	(void)arg;
	return !strcmp(name, "A") ? "x" : !strcmp(name, "1") ? "one" : NULL;
}

static const char *vars_n(void *arg, const char *name, size_t len)
{
	char key[64];

	snprintf(key, sizeof(key), "%.*s", (int)len, name);
	return vars(arg, key);
}

START_TEST(varexpand_runner_reading)
{
	char out[64];

	var_expand("a$A-${A}-$B-$$-$1-${-$", vars, NULL, out, sizeof(out));
	ck_assert_str_eq(out, "ax-x--$-one-${-$");
	var_expand("$A$A$A$A", vars, NULL, out, 3);
	ck_assert_str_eq(out, "xx");
}
END_TEST

START_TEST(varexpand_flags)
{
	char *p = NULL;
	size_t len = 0, cap = 0;

	ck_assert_int_eq(var_expand_into("$A $B ${B} $$A $1", VAR_KEEP_UNDEFINED, vars_n, NULL, &p, &len, &cap, 100),
			 KILN_OK);
	ck_assert_str_eq(p, "x $B ${B} $A $1");
	len = 0;
	ck_assert_int_eq(var_expand_into("$$A $1", VAR_NO_ESCAPE | VAR_DIGIT_FIRST, vars_n, NULL, &p, &len, &cap, 100),
			 KILN_OK);
	ck_assert_str_eq(p, "$x one");
	len = 0;
	ck_assert_int_eq(var_expand_into("$A$A$A", 0, vars_n, NULL, &p, &len, &cap, 3), KILN_E_LIMIT);
	ck_assert_str_eq(p, "xx");
	free(p);
}
END_TEST

/* The configuration's reading of the YAML tree: pairs as written. */
START_TEST(yaml_as_written)
{
	static const char text[] = "a: 1\nb: ~\na: 2\n<<: {c: 3}\n";
	struct cy_arena *a = cy_arena_new();
	struct kiln_err e = { 0 };
	struct cy_node *root;

	ck_assert_int_eq(cy_parse_flags(a, "t.yml", text, sizeof(text) - 1, CY_AS_WRITTEN, &root, NULL, NULL, &e),
			 KILN_OK);
	ck_assert_int_eq(root->kind, CY_MAP);
	ck_assert_uint_eq(root->n, 4);
	ck_assert_str_eq(root->pairs[2].key, "a");
	ck_assert_uint_eq(root->pairs[2].knode->line, 3);
	ck_assert_int_eq(root->pairs[1].value->kind, CY_NULL);
	ck_assert_str_eq(root->pairs[1].value->str, "~");
	ck_assert_str_eq(root->pairs[3].key, "<<");

	/* The pipeline's reading: the later value wins, the merge applies. */
	ck_assert_int_eq(cy_parse(a, "t.yml", text, sizeof(text) - 1, &root, NULL, NULL, &e), KILN_OK);
	ck_assert_uint_eq(root->n, 3);
	ck_assert_str_eq(cy_get(root, "a")->str, "2");
	ck_assert_str_eq(cy_get(root, "c")->str, "3");
	cy_arena_free(&a);
}
END_TEST

Suite *libcore_suite(void)
{
	Suite *s = suite_create("libcore");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, vec_grows_to_its_ceiling);
	tcase_add_test(tc, vec_reserves_many_at_once);
	tcase_add_loop_test(tc, glob_cases, 0, sizeof(globs) / sizeof(globs[0]));
	tcase_add_test(tc, glob_is_bounded);
	tcase_add_test(tc, glob_braces_are_bounded);
	tcase_add_test(tc, treewalk_bounded_and_skipping);
	tcase_add_test(tc, varexpand_runner_reading);
	tcase_add_test(tc, varexpand_flags);
	tcase_add_test(tc, yaml_as_written);
	suite_add_tcase(s, tc);
	return s;
}
