/* Cache transfer (gitlab/artifacts): protected and unprotected refs keep
 * their caches apart, and key suffixes. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitlab/artifacts.h"
#include "gitlab/trace.h"
#include "job/payload.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

/* examples/tiny.json with cache key "deps" (and a fallback), its ref
 * protected or not: by git_info.protected when by_var is false, else by
 * $CI_COMMIT_REF_PROTECTED. */
static void cache_payload(struct job_payload *p, bool prot, bool by_var)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX], *text;
	struct kiln_err e = { 0 };
	json_t *root;

	snprintf(path, sizeof(path), "%s/examples/tiny.json", top ? top : ".");
	root = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(root);
	json_object_set_new(root, "cache", json_pack("[{s:s,s:[s],s:s,s:[s]}]", "key", "deps", "paths", "vendor/",
						      "policy", "pull-push", "fallback_keys", "main-deps"));
	if (by_var)
		json_array_append_new(json_object_get(root, "variables"),
				      json_pack("{s:s,s:s}", "key", "CI_COMMIT_REF_PROTECTED", "value",
						prot ? "true" : "false"));
	else
		json_object_set_new(json_object_get(root, "git_info"), "protected", json_boolean(prot));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
	free(text);
}

/* Save cache "deps" holding vendor.txt = who, as a job whose ref is
 * protected or not. */
static void cache_save(const char *d, bool prot, bool by_var, const char *who)
{
	char state[128], root[128], path[PATH_MAX];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = test_offline_trace(0);
	struct gla g;

	cache_payload(&p, prot, by_var);
	snprintf(state, sizeof(state), "%s/state", d);
	snprintf(root, sizeof(root), "%s/cache", d);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	snprintf(g.cache[0].dir, sizeof(g.cache[0].dir), "%s/collected", g.tmp);
	ck_assert_int_eq(kiln_mkdir_p(g.cache[0].dir), 0);
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache[0].dir);
	test_write_file(path, who, strlen(who), 0644);
	g.cache[0].wanted = g.collected = g.ok = true;
	g.cache[0].files = 1;
	ck_assert_msg(gla_after(&g, &e) == KILN_OK, "%s", e.msg);
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

/* What a job whose ref is protected or not restores of cache "deps":
 * vendor.txt's text, "" when nothing. */
static void cache_restore(const char *d, bool prot, bool by_var, char *got, size_t size)
{
	char state[128], root[128], path[PATH_MAX];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = test_offline_trace(0);
	struct gla g;
	FILE *f;

	cache_payload(&p, prot, by_var);
	snprintf(state, sizeof(state), "%s/state", d);
	snprintf(root, sizeof(root), "%s/cache", d);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(gla_before(&g, &e) == KILN_OK, "%s", e.msg);
	got[0] = '\0';
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache_in);
	if (g.n_extra && (f = fopen(path, "r"))) {
		size_t n = fread(got, 1, size - 1, f);

		got[n] = '\0';
		fclose(f);
	}
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

/* Caches of protected and unprotected refs are kept apart, as GitLab's
 * key suffixes do: neither restores what the other saved under the same
 * key, whether protection comes from git_info or the variable. */
START_TEST(cache_kept_apart_by_protection)
{
	char *d = test_tmpdir(), got[64], cmd[160];
	int by_var;

	for (by_var = 0; by_var < 2; by_var++) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s/cache", d);
		ck_assert_int_eq(system(cmd), 0);
		cache_save(d, false, by_var, "unprotected");
		cache_restore(d, true, by_var, got, sizeof(got));
		ck_assert_str_eq(got, "");
		cache_save(d, true, by_var, "protected");
		cache_restore(d, false, by_var, got, sizeof(got));
		ck_assert_str_eq(got, "unprotected");
		cache_restore(d, true, by_var, got, sizeof(got));
		ck_assert_str_eq(got, "protected");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A key that already carries the server's suffix keeps it when it fits the
 * job; one that claims "-protected" for an unprotected job does not. */
START_TEST(cache_key_suffixes)
{
	struct job_payload p;
	struct gla g = { 0 };
	char k[256];

	cache_payload(&p, false, false);
	g.p = &p;
	gla_cache_key(&g, "deps-0-non_protected", k, sizeof(k));
	ck_assert_str_eq(k, "deps-0-non_protected");
	gla_cache_key(&g, "deps-0-protected", k, sizeof(k));
	ck_assert_str_eq(k, "deps-0-protected-non_protected");
	gla_cache_key(&g, "$CI_PIPELINE_ID-x", k, sizeof(k));
	ck_assert_str_eq(k, "1-x-non_protected");
	payload_free(&p);
	cache_payload(&p, true, false);
	g.p = &p;
	gla_cache_key(&g, "deps-0-protected", k, sizeof(k));
	ck_assert_str_eq(k, "deps-0-protected");
	gla_cache_key(&g, "deps-0-non_protected", k, sizeof(k)); /* cache:unprotect */
	ck_assert_str_eq(k, "deps-0-non_protected");
	gla_cache_key(&g, "deps", k, sizeof(k));
	ck_assert_str_eq(k, "deps-protected");
	payload_free(&p);
}
END_TEST

Suite *glartifacts_suite(void)
{
	Suite *s = suite_create("glartifacts");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, cache_kept_apart_by_protection);
	tcase_add_test(tc, cache_key_suffixes);
	suite_add_tcase(s, tc);
	return s;
}
