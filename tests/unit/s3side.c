/* The S3 cache tests' kilns: see s3side.h. */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/s3.h"
#include "cache/store.h"
#include "gitlab/artifacts.h"
#include "gitlab/trace.h"
#include "job/payload.h"
#include "lib/paths.h"
#include "runner/config.h"
#include "tests/unit/s3side.h"
#include "tests/unit/testutil.h"

/* A cache: section for the test server. */
void s3conf(struct kiln_cache_config *c, const char *server, bool shared, const char *access_key)
{
	memset(c, 0, sizeof(*c));
	c->type = "s3";
	c->shared = shared;
	c->path = "ci";
	c->s3.server_address = (char *)server;
	c->s3.bucket_name = "kiln-cache";
	c->s3.access_key = (char *)access_key;
	c->s3.secret_key = "S3RVER";
	c->s3.insecure = true;
}

static void cache_payload(struct job_payload *p)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX], *text;
	struct kiln_err e = { 0 };
	json_t *root;

	snprintf(path, sizeof(path), "%s/examples/tiny.json", top ? top : ".");
	root = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(root);
	json_object_set_new(root, "cache", json_pack("[{s:s,s:[s],s:s}]", "key", "deps", "paths", "vendor/",
						      "policy", "pull-push"));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
	free(text);
}

static void keep_log(struct kiln_side *k, struct trace *t)
{
	size_t n;
	char *text = trace_copy(t, &n);

	snprintf(k->log, sizeof(k->log), "%.*s", (int)n, text ? text : "");
	free(text);
}

void side_save(struct kiln_side *k, const char *who)
{
	char state[PATH_MAX + 8], root[PATH_MAX + 8], path[PATH_MAX * 2];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = test_offline_trace(0);
	struct gla g;

	cache_payload(&p);
	snprintf(state, sizeof(state), "%s/state", k->dir);
	snprintf(root, sizeof(root), "%s/cache", k->dir);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	gla_use_cache(&g, k->cfg, k->token);
	snprintf(g.cache[0].dir, sizeof(g.cache[0].dir), "%s/collected", g.tmp);
	ck_assert_int_eq(kiln_mkdir_p(g.cache[0].dir), 0);
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache[0].dir);
	test_write_file(path, who, strlen(who), 0644);
	g.cache[0].wanted = g.collected = g.ok = true;
	g.cache[0].files = 1;
	ck_assert_msg(gla_after(&g, &e) == KILN_OK, "%s", e.msg);
	keep_log(k, t);
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

/* vendor.txt as k restores it, "" when nothing. */
void side_restore(struct kiln_side *k, char *got, size_t size)
{
	char state[PATH_MAX + 8], root[PATH_MAX + 8], path[PATH_MAX * 2];
	struct kiln_err e = { 0 };
	struct job_payload p;
	struct trace *t = test_offline_trace(0);
	struct gla g;
	FILE *f;

	cache_payload(&p);
	snprintf(state, sizeof(state), "%s/state", k->dir);
	snprintf(root, sizeof(root), "%s/cache", k->dir);
	ck_assert_msg(gla_init(&g, &p, NULL, t, state, root, &e) == KILN_OK, "%s", e.msg);
	gla_use_cache(&g, k->cfg, k->token);
	ck_assert_msg(gla_before(&g, &e) == KILN_OK, "%s", e.msg);
	got[0] = '\0';
	snprintf(path, sizeof(path), "%s/vendor.txt", g.cache_in);
	if (g.n_extra && (f = fopen(path, "r"))) {
		size_t n = fread(got, 1, size - 1, f);

		got[n] = '\0';
		fclose(f);
	}
	keep_log(k, t);
	gla_free(&g);
	trace_free(t);
	payload_free(&p);
}

void side_init(struct kiln_side *k, const char *top, const char *name,
		      const struct kiln_cache_config *cfg, const char *token)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->dir, sizeof(k->dir), "%s/%s", top, name);
	k->cfg = cfg;
	k->token = token;
}
