/* github/: scopes, labels, links, webhooks, JIT blobs and the App JWT
 * offline (suite "github"); and, when GH_FAKE_DIR names a running
 * tests/fake-github.py (tests/github.sh starts one), the client against
 * it (suite "github-fake"): ETag/304, pagination, App tokens and their
 * refresh, demand, JIT runners and the 409/422/403/404/429/5xx paths, and
 * the reconciler with fake VMs: job results, a job cancelled while its
 * VM boots, a rate limit mid-round. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "github/auth.h"
#include "github/client.h"
#include "github/demand.h"
#include "github/fleet.h"
#include "github/jit.h"
#include "github/round.h"
#include "github/webhook.h"
#include "lib/clock.h"
#include "lib/sha256.h"
#include "lib/slots.h"

/* ---- offline ------------------------------------------------------- */

START_TEST(scope_urls)
{
	struct kiln_err e = { 0 };
	struct gh_scope s;
	char api[1024];

	ck_assert_int_eq(gh_scope_parse("https://github.com/acme", &s, api, &e), KILN_OK);
	ck_assert_str_eq(s.owner, "acme");
	ck_assert_str_eq(s.repo, "");
	ck_assert_str_eq(api, "https://api.github.com");
	ck_assert_int_eq(gh_scope_parse("https://github.com/acme/widgets.git/", &s, api, &e), KILN_OK);
	ck_assert_str_eq(s.repo, "widgets");
	ck_assert_int_eq(gh_scope_parse("https://ghe.example.com:8443/team/app", &s, api, &e), KILN_OK);
	ck_assert_str_eq(api, "https://ghe.example.com:8443/api/v3");
	ck_assert_int_eq(gh_scope_parse("http://github.com/acme", &s, api, &e), KILN_E_INVALID);
	ck_assert_int_eq(gh_scope_parse("https://github.com/", &s, api, &e), KILN_E_INVALID);
	ck_assert_int_eq(gh_scope_parse("https://github.com/a/b/c", &s, api, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "https://github.com/a/b/c"), "%s", e.msg);
	ck_assert_int_eq(gh_scope_parse("https://github.com/a%20b", &s, api, &e), KILN_E_INVALID);
	ck_assert_int_eq(gh_scope_parse("https://github.com/acme/..", &s, api, &e), KILN_E_INVALID);
}
END_TEST

START_TEST(labels_match)
{
	struct kiln_err e = { 0 };
	struct gh_labels served = { 0 }, job = { 0 };
	char name[16];
	int i;

	ck_assert_int_eq(gh_labels_add(&served, "self-hosted", &e), KILN_OK);
	ck_assert_int_eq(gh_labels_add(&served, "Linux", &e), KILN_OK);
	ck_assert_int_eq(gh_labels_add(&served, "kiln", &e), KILN_OK);
	ck_assert_int_eq(gh_labels_add(&served, "KILN", &e), KILN_OK);
	ck_assert_uint_eq(served.n, 3);
	ck_assert(!gh_labels_cover(&served, &job)); /* no labels: nothing */
	gh_labels_add(&job, "linux", &e);
	gh_labels_add(&job, "Kiln", &e);
	ck_assert(gh_labels_cover(&served, &job));
	gh_labels_add(&job, "gpu", &e);
	ck_assert(!gh_labels_cover(&served, &job));
	gh_labels_free(&job);
	for (i = 0; i < GH_MAX_LABELS; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		ck_assert_int_eq(gh_labels_add(&job, name, &e), KILN_OK);
	}
	ck_assert_int_eq(gh_labels_add(&job, "one-too-many", &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "one-too-many") && strstr(e.msg, "100"), "%s", e.msg);
	ck_assert_int_eq(gh_labels_add(&job, "", &e), KILN_E_INVALID);
	ck_assert_int_eq(gh_labels_add(&job, "a\nb", &e), KILN_E_INVALID);
	gh_labels_free(&job);
	gh_labels_free(&served);
}
END_TEST

START_TEST(demand_tally_json)
{
	struct kiln_err e = { 0 };
	struct gh_labels served = { 0 };
	struct gh_demand d = { 0 };
	json_t *jobs = json_loads("[{\"id\":1,\"status\":\"queued\",\"labels\":[\"self-hosted\",\"LINUX\"]},"
				  "{\"id\":2,\"status\":\"queued\",\"labels\":[\"ubuntu-latest\"]},"
				  "{\"id\":3,\"status\":\"in_progress\",\"labels\":[\"linux\"]},"
				  "{\"id\":4,\"status\":\"queued\",\"labels\":[\"linux\"]}]",
				  0, NULL);
	json_t *bad = json_loads("[{\"id\":\"x\",\"status\":\"queued\"}]", 0, NULL);
	json_t *many = json_loads("[{\"id\":9,\"status\":\"queued\",\"labels\":[]}]", 0, NULL);
	int i;

	gh_labels_add(&served, "self-hosted", &e);
	gh_labels_add(&served, "linux", &e);
	ck_assert_int_eq(gh_demand_tally(&d, "acme/w", jobs, &served, &e), KILN_OK);
	ck_assert_uint_eq(d.queued, 3);
	ck_assert_uint_eq(d.matching, 2);
	ck_assert_int_eq(d.job_ids[0], 1);
	ck_assert_int_eq(d.job_ids[1], 4);
	ck_assert_str_eq(d.job_repos[1], "acme/w");
	ck_assert_int_eq(gh_demand_tally(&d, "acme/w", bad, &served, &e), KILN_E_SYNTAX);
	for (i = 0; i < 101; i++)
		json_array_append_new(json_object_get(json_array_get(many, 0), "labels"), json_sprintf("l%d", i));
	ck_assert_int_eq(gh_demand_tally(&d, "acme/w", many, &served, &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "acme/w: job 9") && strstr(e.msg, "101 labels"), "%s", e.msg);
	json_decref(jobs);
	json_decref(bad);
	json_decref(many);
	gh_demand_free(&d);
	gh_labels_free(&served);
}
END_TEST

START_TEST(link_header)
{
	char next[1024];

	gh_link_next("<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"",
		     next, sizeof(next));
	ck_assert_str_eq(next, "https://api.github.com/x?page=2");
	gh_link_next("<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\"",
		     next, sizeof(next));
	ck_assert_str_eq(next, "https://api.github.com/x?page=3");
	gh_link_next("<https://api.github.com/x?page=1>; rel=\"first\"", next, sizeof(next));
	ck_assert_str_eq(next, "");
	gh_link_next("<broken", next, sizeof(next));
	ck_assert_str_eq(next, "");
}
END_TEST

static void sign(const char *secret, const char *body, char sig[80])
{
	uint8_t mac[32];
	char hex[65];

	sha256_hmac(secret, strlen(secret), body, strlen(body), mac);
	sha256_hex(mac, hex);
	snprintf(sig, 80, "sha256=%s", hex);
}

START_TEST(webhook_signature_replay)
{
	static struct gh_deliveries seen;
	const char *body = "{\"action\":\"queued\",\"workflow_job\":{\"id\":77,\"run_id\":5,"
			   "\"labels\":[\"self-hosted\",\"linux\"]},\"repository\":{\"full_name\":\"acme/w\"},"
			   "\"installation\":{\"id\":9}}";
	struct kiln_err e = { 0 };
	struct gh_wh_event ev;
	char sig[80];

	sign("s3cret", body, sig);
	ck_assert(gh_webhook_signed("s3cret", body, strlen(body), sig));
	ck_assert(!gh_webhook_signed("other", body, strlen(body), sig));
	ck_assert(!gh_webhook_signed("s3cret", body, strlen(body) - 1, sig));
	ck_assert(!gh_webhook_signed("s3cret", body, strlen(body), "sha1=abc"));
	ck_assert(!gh_webhook_signed("", body, strlen(body), sig));

	ck_assert_int_eq(gh_webhook_accept("s3cret", &seen, "workflow_job", "d-1", sig, body, strlen(body), &ev, &e),
			 GH_WH_JOB);
	ck_assert_str_eq(ev.action, "queued");
	ck_assert_int_eq(ev.job_id, 77);
	ck_assert_int_eq(ev.run_id, 5);
	ck_assert_str_eq(ev.repo, "acme/w");
	ck_assert_int_eq(ev.installation, 9);
	ck_assert_uint_eq(ev.labels.n, 2);
	gh_wh_event_free(&ev);
	/* The same delivery again: a replay. */
	ck_assert_int_eq(gh_webhook_accept("s3cret", &seen, "workflow_job", "d-1", sig, body, strlen(body), &ev, &e),
			 GH_WH_REFUSED);
	ck_assert_msg(strstr(e.msg, "replay"), "%s", e.msg);
	/* A forged signature is refused before its delivery id is remembered. */
	ck_assert_int_eq(gh_webhook_accept("s3cret", &seen, "workflow_job", "d-2", "sha256=00", body, strlen(body),
					   &ev, &e),
			 GH_WH_REFUSED);
	ck_assert_int_eq(gh_webhook_accept("s3cret", &seen, "workflow_job", "d-2", NULL, body, strlen(body), &ev, &e),
			 GH_WH_REFUSED);
	ck_assert_msg(strstr(e.msg, "X-Hub-Signature-256"), "%s", e.msg);
	ck_assert_int_eq(gh_webhook_accept("s3cret", &seen, "ping", "d-2", sig, body, strlen(body), &ev, &e),
			 GH_WH_IGNORED);
	sign("s3cret", "{\"action\":\"queued\"}", sig);
	ck_assert_int_eq(gh_webhook_accept("s3cret", &seen, "workflow_job", "d-3", sig, "{\"action\":\"queued\"}", 19,
					   &ev, &e),
			 GH_WH_REFUSED);
	ck_assert_msg(strstr(e.msg, "workflow_job.id"), "%s", e.msg);
}
END_TEST

START_TEST(deliveries_bounded)
{
	static struct gh_deliveries seen;
	char id[32];
	int i;

	for (i = 0; i < GH_DELIVERIES + 10; i++) {
		snprintf(id, sizeof(id), "%08x-aaaa", i);
		ck_assert(gh_delivery_once(&seen, id));
	}
	ck_assert_uint_eq(seen.n, GH_DELIVERIES);
	ck_assert(!gh_delivery_once(&seen, id));
	ck_assert(gh_delivery_once(&seen, "00000000-aaaa")); /* forgotten: the oldest went */
	ck_assert(!gh_delivery_once(&seen, "bad id"));
	ck_assert(!gh_delivery_once(&seen, ""));
}
END_TEST

static char *b64(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(n / 3 * 4 + 8);

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	return out;
}

START_TEST(jit_reply_checked)
{
	struct kiln_err e = { 0 };
	struct gh_jit j;
	char *blob = b64("{\".runner\":\"e30=\"}"), *notjson = b64("not json at all"), body[512];

	snprintf(body, sizeof(body), "{\"runner\":{\"id\":5,\"name\":\"kiln-1\"},\"encoded_jit_config\":\"%s\"}", blob);
	ck_assert_int_eq(gh_jit_parse(body, strlen(body), &j, &e), KILN_OK);
	ck_assert_int_eq(j.runner.id, 5);
	ck_assert_str_eq(j.encoded, blob);
	gh_jit_free(&j);
	snprintf(body, sizeof(body), "{\"runner\":{\"id\":5,\"name\":\"kiln-1\"},\"encoded_jit_config\":\"%s\"}",
		 notjson);
	ck_assert_int_eq(gh_jit_parse(body, strlen(body), &j, &e), KILN_E_SYNTAX);
	ck_assert_msg(strstr(e.msg, "not base64 of a JSON object") && !strstr(e.msg, notjson), "%s", e.msg);
	snprintf(body, sizeof(body), "{\"runner\":{\"id\":5,\"name\":\"kiln-1\"},\"encoded_jit_config\":\"@@@@\"}");
	ck_assert_int_eq(gh_jit_parse(body, strlen(body), &j, &e), KILN_E_SYNTAX);
	ck_assert_int_eq(gh_jit_parse("{\"encoded_jit_config\":\"e30=\"}", 29, &j, &e), KILN_E_SYNTAX);
	ck_assert_msg(strstr(e.msg, "runner id"), "%s", e.msg);
	ck_assert(gh_jit_blob_valid("e30=", 4));
	ck_assert(!gh_jit_blob_valid("e30", 3));
	ck_assert(!gh_jit_blob_valid("e3=0", 4));
	free(blob);
	free(notjson);
}
END_TEST

START_TEST(runner_names)
{
	struct kiln_err e = { 0 };
	char a[GH_RUNNER_NAME_MAX], b[GH_RUNNER_NAME_MAX];

	ck_assert_int_eq(gh_runner_name("kiln-ci", a, sizeof(a), &e), KILN_OK);
	ck_assert_int_eq(gh_runner_name("kiln-ci", b, sizeof(b), &e), KILN_OK);
	ck_assert_uint_eq(strlen(a), 7 + 1 + 12);
	ck_assert(!strncmp(a, "kiln-ci-", 8) && strcmp(a, b));
	ck_assert_int_eq(gh_runner_name("bad prefix", a, sizeof(a), &e), KILN_E_INVALID);
	ck_assert_int_eq(gh_runner_name("", a, sizeof(a), &e), KILN_E_INVALID);
}
END_TEST

static char *unb64url(const char *s, size_t n, size_t *outlen)
{
	char *t = calloc(1, n + 4), *out = calloc(1, n + 4);
	size_t i;
	int len;

	for (i = 0; i < n; i++)
		t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (i % 4)
		t[i++] = '=';
	len = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)t, (int)i);
	ck_assert_int_ge(len, 0);
	*outlen = (size_t)len - (n % 4 == 2 ? 2 : n % 4 == 3 ? 1 : 0);
	free(t);
	return out;
}

START_TEST(app_jwt)
{
	char path[] = "/tmp/check-github-key.XXXXXX";
	struct kiln_err e = { 0 };
	struct gh_scope scope = { .owner = "acme" };
	struct gh_auth a;
	EVP_PKEY *k = EVP_RSA_gen(2048);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char *jwt, *claims, *sig, *dot1, *dot2;
	size_t cl, sl;
	json_t *c;
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	ck_assert_ptr_nonnull(k);
	ck_assert(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	ck_assert_int_eq(gh_auth_app(&a, 4242, path, 0, &scope, &e), KILN_OK);
	ck_assert_int_eq(gh_auth_jwt(&a, 1000000, &jwt, &e), KILN_OK);
	dot1 = strchr(jwt, '.');
	dot2 = strchr(dot1 + 1, '.');
	ck_assert_ptr_nonnull(dot2);
	claims = unb64url(dot1 + 1, (size_t)(dot2 - dot1 - 1), &cl);
	ck_assert_ptr_nonnull(c = json_loadb(claims, cl, 0, NULL));
	ck_assert_int_eq(json_integer_value(json_object_get(c, "iat")), 1000000 - 60);
	ck_assert_int_le(json_integer_value(json_object_get(c, "exp")) - json_integer_value(json_object_get(c, "iat")),
			 600);
	ck_assert_str_eq(json_string_value(json_object_get(c, "iss")), "4242");
	sig = unb64url(dot2 + 1, strlen(dot2 + 1), &sl);
	ck_assert_int_eq(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_int_eq(EVP_DigestVerify(md, (unsigned char *)sig, sl, (unsigned char *)jwt, (size_t)(dot2 - jwt)), 1);
	/* Not an RSA key: a clear error naming the file. */
	f = fopen(path, "w");
	fputs("not a key\n", f);
	fclose(f);
	gh_auth_free(&a);
	ck_assert_int_eq(gh_auth_app(&a, 4242, path, 0, &scope, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, path), "%s", e.msg);
	unlink(path);
	json_decref(c);
	free(claims);
	free(sig);
	free(jwt);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
}
END_TEST

/* ---- against tests/fake-github.py ----------------------------------- */

static char fake_dir[PATH_MAX], fake_url[256], fake_ca[PATH_MAX + 8], app_key[PATH_MAX + 8];

static void fake_client(struct gh_client *c)
{
	struct kiln_err e = { 0 };

	ck_assert_msg(gh_client_init(c, fake_url, fake_ca, &e) == KILN_OK, "%s", e.msg);
	c->backoff_min_ms = 20;
	c->backoff_max_ms = 200;
	c->secondary_min_ms = 200;
	c->mutation_gap_ms = 0;
	c->max_wait_ms = 5000;
}

/* POST a control request to the fake; returns its reply's body (GET: __state). */
static json_t *ctl(const char *method, const char *path, const char *json)
{
	struct gh_client c;
	struct gh_reply r;
	struct kiln_err e = { 0 };
	json_t *body = json ? json_loads(json, 0, NULL) : NULL, *out;
	struct gh_req q = { .method = method, .path = path, .body = body, .no_auth = true, .no_cache = true };

	ck_assert_msg(!json || body, "bad control JSON: %s", json);
	fake_client(&c);
	ck_assert_msg(gh_request(&c, &q, &r, &e) == KILN_OK && r.status == 200, "%s %s: %ld %s", method, path,
		      r.status, e.msg);
	out = json_loadb(r.body, r.len, 0, NULL);
	gh_reply_free(&r);
	gh_client_free(&c);
	json_decref(body);
	return out;
}

static void seed(const char *json)
{
	json_decref(ctl("POST", "/__seed", json));
}

static void faults(const char *json)
{
	json_decref(ctl("POST", "/__faults", json));
}

/* How many requests the fake got whose "METHOD path" starts with what,
 * and with status (0: any). */
static int arrived(const char *what, long status)
{
	json_t *s = ctl("GET", "/__state", NULL), *r;
	size_t i;
	int n = 0;
	char buf[1200];

	json_array_foreach(json_object_get(s, "requests"), i, r) {
		snprintf(buf, sizeof(buf), "%s %s", json_string_value(json_object_get(r, "method")),
			 json_string_value(json_object_get(r, "path")));
		if (!strncmp(buf, what, strlen(what)) &&
		    (!status || json_integer_value(json_object_get(r, "status")) == status))
			n++;
	}
	json_decref(s);
	return n;
}

static void pat(struct gh_client *c, struct gh_auth *a)
{
	struct kiln_err e = { 0 };

	fake_client(c);
	ck_assert_int_eq(gh_auth_pat(a, c, "ghp_fake", &e), KILN_OK);
}

#define RUNS_ONE                                                                                        \
	"{\"runs\":{\"acme/widgets\":[{\"id\":10,\"status\":\"queued\",\"jobs\":["                      \
	"{\"id\":100,\"status\":\"queued\",\"labels\":[\"self-hosted\",\"kiln\"]},"                     \
	"{\"id\":101,\"status\":\"queued\",\"labels\":[\"ubuntu-latest\"]}]},"                          \
	"{\"id\":11,\"status\":\"in_progress\",\"jobs\":["                                              \
	"{\"id\":110,\"status\":\"completed\",\"labels\":[\"kiln\"]},"                                  \
	"{\"id\":111,\"status\":\"queued\",\"labels\":[\"KILN\"]}]}]},"                                 \
	"\"repos\":[\"acme/widgets\",\"acme/gadgets\",\"other/x\"]}"

static void served_set(struct gh_labels *l)
{
	struct kiln_err e = { 0 };

	gh_labels_add(l, "self-hosted", &e);
	gh_labels_add(l, "kiln", &e);
}

START_TEST(fake_demand_etag)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served = { 0 };
	struct gh_demand d = { 0 };
	struct gh_scope s = { .owner = "acme", .repo = "widgets" };
	struct kiln_err e = { 0 };
	uint64_t before;

	seed(RUNS_ONE);
	pat(&c, &a);
	served_set(&served);
	ck_assert_msg(gh_demand_poll(&c, &s, false, &served, &d, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(d.runs, 2);
	ck_assert_uint_eq(d.queued, 3);
	ck_assert_uint_eq(d.matching, 2);
	ck_assert_int_eq(d.job_ids[0], 100);
	ck_assert_int_eq(d.job_ids[1], 111);
	/* Nothing changed: every request of the second poll is a free 304. */
	before = c.requests;
	ck_assert_int_eq(gh_demand_poll(&c, &s, false, &served, &d, &e), KILN_OK);
	ck_assert_uint_eq(d.matching, 2);
	ck_assert_uint_eq(c.not_modified, c.requests - before);
	ck_assert_int_eq(arrived("GET /repos/acme/widgets/actions/runs", 304), 4);
	/* An organization by PAT: its repositories through /orgs/acme/repos. */
	s.repo[0] = '\0';
	ck_assert_msg(gh_demand_poll(&c, &s, false, &served, &d, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(d.repos, 2);
	ck_assert_uint_eq(d.matching, 2);
	gh_demand_free(&d);
	gh_labels_free(&served);
	gh_client_free(&c);
}
END_TEST

START_TEST(fake_pagination)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served = { 0 };
	struct gh_demand d = { 0 };
	struct kiln_err e = { 0 };
	json_t *jobs = json_array(), *s = json_object(), *run;
	char *text;
	int i;

	for (i = 0; i < 250; i++)
		json_array_append_new(jobs, json_pack("{s:i, s:s, s:[s]}", "id", 1000 + i, "status", "queued", "labels",
						      i % 5 ? "kiln" : "gpu"));
	run = json_pack("{s:i, s:s, s:o}", "id", 20, "status", "queued", "jobs", jobs);
	json_object_set_new(s, "runs", json_pack("{s:[o]}", "acme/widgets", run));
	text = json_dumps(s, 0);
	seed(text);
	pat(&c, &a);
	served_set(&served);
	ck_assert_msg(gh_demand_repo(&c, "acme/widgets", &served, &d, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(d.queued, 250);
	ck_assert_uint_eq(d.matching, 200);
	ck_assert_int_eq(arrived("GET /repos/acme/widgets/actions/runs/20/jobs", 200), 3);
	free(text);
	json_decref(s);
	gh_demand_free(&d);
	gh_labels_free(&served);
	gh_client_free(&c);
}
END_TEST

START_TEST(fake_app_tokens)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served = { 0 };
	struct gh_demand d = { 0 };
	struct gh_scope s = { .owner = "acme" }, elsewhere = { .owner = "nobody", .repo = "x" };
	struct kiln_err e = { 0 };
	json_t *st;
	char *first;

	seed(RUNS_ONE);
	/* Tokens that live 8 s: renewed in their last 4 s. */
	json_decref(ctl("POST", "/__config", "{\"token_lifetime\":8}"));
	fake_client(&c);
	served_set(&served);
	ck_assert_msg(gh_auth_app(&a, 4242, app_key, 0, &s, &e) == KILN_OK, "%s", e.msg);
	gh_auth_attach(&a, &c);
	ck_assert_msg(gh_demand_poll(&c, &s, true, &served, &d, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(a.installation_id, 77);
	ck_assert_uint_eq(d.repos, 2); /* other/x belongs to another account */
	ck_assert_uint_eq(d.matching, 2);
	ck_assert_int_eq(arrived("GET /orgs/acme/installation", 200), 1);
	ck_assert_int_eq(arrived("POST /app/installations/77/access_tokens", 201), 1);
	first = strdup(c.bearer);
	/* Still valid: no new token. */
	ck_assert_int_eq(gh_demand_poll(&c, &s, true, &served, &d, &e), KILN_OK);
	ck_assert_int_eq(arrived("POST /app/installations/77/access_tokens", 201), 1);
	/* Within the slack of its expiry the token is replaced, once. */
	sleep(5);
	ck_assert_msg(gh_demand_poll(&c, &s, true, &served, &d, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(arrived("POST /app/installations/77/access_tokens", 201), 2);
	ck_assert_str_ne(first, c.bearer);
	st = ctl("GET", "/__state", NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "tokens_issued")), 2);
	json_decref(st);
	/* A token refused early (401): that poll fails, the next one renews it. */
	faults("{\"GET /repos/acme/widgets/actions/runs\":[{\"status\":401,\"body\":{\"message\":\"Bad credentials\"}}]}");
	ck_assert_int_eq(gh_demand_poll(&c, &s, true, &served, &d, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "401 Bad credentials"), "%s", e.msg);
	ck_assert_msg(gh_demand_poll(&c, &s, true, &served, &d, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(arrived("POST /app/installations/77/access_tokens", 201), 3);
	free(first);
	gh_auth_free(&a);
	gh_client_free(&c);
	/* An App not installed where asked: an error naming where. */
	fake_client(&c);
	ck_assert_int_eq(gh_auth_app(&a, 4242, app_key, 0, &elsewhere, &e), KILN_OK);
	gh_auth_attach(&a, &c);
	ck_assert_int_eq(gh_demand_poll(&c, &elsewhere, true, &served, &d, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, "not installed on repository nobody/x"), "%s", e.msg);
	gh_auth_free(&a);
	gh_client_free(&c);
	gh_demand_free(&d);
	gh_labels_free(&served);
}
END_TEST

static char masked[GH_JIT_MAX + 1];

static void mask_cb(void *arg, const char *secret, size_t len)
{
	ck_assert_ptr_eq(arg, masked);
	ck_assert_uint_lt(len, sizeof(masked));
	memcpy(masked, secret, len);
	masked[len] = '\0';
}

START_TEST(fake_jit)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels labels = { 0 };
	struct gh_scope s = { .owner = "acme", .repo = "widgets" }, org = { .owner = "acme" };
	struct gh_jit_req req = { .prefix = "kiln", .labels = &labels, .mask = mask_cb, .mask_arg = masked };
	struct gh_jit j;
	struct gh_runner *list;
	struct gh_runner found;
	struct kiln_err e = { 0 };
	size_t n;
	char name[16];
	int i;

	seed("{\"runners\":{\"acme/widgets\":[{\"id\":5,\"name\":\"kiln-old\",\"busy\":true},"
	     "{\"id\":6,\"name\":\"someone-else\"}]}}");
	pat(&c, &a);
	served_set(&labels);
	ck_assert_msg(gh_jit_create(&c, &s, &req, &j, &e) == KILN_OK, "%s", e.msg);
	ck_assert(!strncmp(j.runner.name, "kiln-", 5));
	ck_assert(gh_jit_blob_valid(j.encoded, j.len));
	ck_assert_str_eq(masked, j.encoded); /* the masking hook saw it */
	ck_assert_int_eq(gh_runner_find(&c, &s, j.runner.name, &found, &e), KILN_OK);
	ck_assert_int_eq(found.id, j.runner.id);
	ck_assert_int_eq(gh_runners_list(&c, &s, "kiln", &list, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 2);
	free(list);
	ck_assert_int_eq(gh_runner_delete(&c, &s, j.runner.id, &e), KILN_OK);
	ck_assert_int_eq(gh_runner_delete(&c, &s, j.runner.id, &e), KILN_OK); /* 404: gone already */
	ck_assert_int_eq(gh_runner_delete(&c, &s, 5, &e), KILN_E_INVALID);    /* busy */
	ck_assert_msg(strstr(e.msg, "busy"), "%s", e.msg);
	gh_jit_free(&j);

	/* 409: the name is taken; the old runner goes and the call is made again. */
	faults("{\"POST /repos/acme/widgets/actions/runners/generate-jitconfig\":[{\"conflict\":true}]}");
	ck_assert_msg(gh_jit_create(&c, &s, &req, &j, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(arrived("POST /repos/acme/widgets/actions/runners/generate-jitconfig", 409), 1);
	ck_assert_int_eq(arrived("DELETE /repos/acme/widgets/actions/runners/", 204), 2);
	gh_jit_free(&j);

	/* The organization form. */
	ck_assert_msg(gh_jit_create(&c, &org, &req, &j, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(arrived("POST /orgs/acme/actions/runners/generate-jitconfig", 201), 1);
	gh_jit_free(&j);

	/* A runner group that does not exist. */
	req.runner_group_id = 99;
	ck_assert_int_eq(gh_jit_create(&c, &s, &req, &j, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, "runner group 99"), "%s", e.msg);
	req.runner_group_id = 0;

	/* Missing permission: GitHub's message, naming the scope. */
	faults("{\"POST /repos/acme/widgets/actions/runners/generate-jitconfig\":[{\"status\":403,"
	       "\"body\":{\"message\":\"Resource not accessible by integration\"}}]}");
	ck_assert_int_eq(gh_jit_create(&c, &s, &req, &j, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "acme/widgets") && strstr(e.msg, "403 Resource not accessible by integration"),
		      "%s", e.msg);

	/* A blob that is not base64 JSON. */
	faults("{\"POST /repos/acme/widgets/actions/runners/generate-jitconfig\":[{\"jit_blob\":\"bm90IGpzb24=\"}]}");
	ck_assert_int_eq(gh_jit_create(&c, &s, &req, &j, &e), KILN_E_SYNTAX);
	ck_assert_msg(strstr(e.msg, "not base64 of a JSON object"), "%s", e.msg);

	/* Over 100 labels: refused before asking GitHub. */
	for (i = 0; labels.n < GH_MAX_LABELS; i++) {
		snprintf(name, sizeof(name), "x%d", i);
		gh_labels_add(&labels, name, &e);
	}
	labels.n++; /* one past what gh_labels_add allows */
	labels.v = realloc(labels.v, labels.n * sizeof(*labels.v));
	labels.v[labels.n - 1] = strdup("extra");
	ck_assert_int_eq(gh_jit_create(&c, &s, &req, &j, &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "101 labels"), "%s", e.msg);
	gh_labels_free(&labels);
	gh_client_free(&c);
}
END_TEST

START_TEST(fake_job_result)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_job j;
	struct kiln_err e = { 0 };

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":30,\"status\":\"completed\",\"jobs\":["
	     "{\"id\":300,\"status\":\"completed\",\"conclusion\":\"failure\",\"runner_id\":8,"
	     "\"runner_name\":\"kiln-abc\",\"labels\":[\"kiln\"]}]}]}}");
	pat(&c, &a);
	ck_assert_msg(gh_job_get(&c, "acme/widgets", 300, &j, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(j.status, "completed");
	ck_assert_str_eq(j.conclusion, "failure");
	ck_assert_int_eq(j.runner_id, 8);
	ck_assert_str_eq(j.runner_name, "kiln-abc");
	ck_assert_int_eq(gh_job_get(&c, "acme/widgets", 301, &j, &e), KILN_E_NOTFOUND);
	/* A renamed repository: GitHub redirects, the GET follows. */
	faults("{\"GET /repos/acme/old-name/actions/jobs/300\":[{\"status\":301,"
	       "\"headers\":{\"Location\":\"/repos/acme/widgets/actions/jobs/300\"}}]}");
	ck_assert_msg(gh_job_get(&c, "acme/old-name", 300, &j, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(j.conclusion, "failure");
	gh_client_free(&c);
}
END_TEST

START_TEST(fake_rate_limits)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_scope s = { .owner = "acme", .repo = "widgets" };
	struct kiln_err e = { 0 };
	struct gh_job j;
	json_t *out;
	int64_t t0;

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":30,\"status\":\"queued\",\"jobs\":["
	     "{\"id\":300,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
	pat(&c, &a);
	/* 429 with retry-after: 1 s, then the answer. */
	faults("{\"GET /repos/acme/widgets/actions/jobs/300\":[{\"status\":429,\"headers\":{\"retry-after\":\"1\"}}]}");
	t0 = mono_ms();
	ck_assert_msg(gh_job_get(&c, "acme/widgets", 300, &j, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_ge(mono_ms() - t0, 1000);
	/* A secondary limit without headers: at least secondary_min_ms, then doubling. */
	faults("{\"GET /repos/acme/widgets/actions/jobs/300\":[{\"status\":403,\"body\":{\"message\":"
	       "\"You have exceeded a secondary rate limit.\"}},{\"status\":403,\"body\":{\"message\":"
	       "\"You have exceeded a secondary rate limit.\"}}]}");
	t0 = mono_ms();
	ck_assert_msg(gh_get_json(&c, "/repos/acme/widgets/actions/jobs/300", "job", &out, &e) == KILN_OK, "%s",
		      e.msg);
	json_decref(out);
	ck_assert_int_ge(mono_ms() - t0, 200 + 400);
	/* 5xx: backoff, then the answer; five of them: the status is the error. */
	faults("{\"GET /repos/acme/widgets/actions/jobs/300\":[502,503]}");
	ck_assert_msg(gh_job_get(&c, "acme/widgets", 300, &j, &e) == KILN_OK, "%s", e.msg);
	faults("{\"GET /repos/acme/widgets/actions/jobs/300\":[500,500,500,500,500]}");
	ck_assert_int_eq(gh_job_get(&c, "acme/widgets", 300, &j, &e), KILN_E_IO);
	ck_assert_msg(strstr(e.msg, "500"), "%s", e.msg);
	/* The budget spent: blocked until the reset, and at once for the next call too. */
	json_decref(ctl("POST", "/__config", "{\"budget\":0,\"reset_in\":3600}"));
	ck_assert_int_eq(gh_job_get(&c, "acme/widgets", 300, &j, &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "rate limited until"), "%s", e.msg);
	t0 = mono_ms();
	ck_assert_int_eq(gh_runner_delete(&c, &s, 1, &e), KILN_E_LIMIT);
	ck_assert_int_lt(mono_ms() - t0, 500);
	gh_client_free(&c);
}
END_TEST

START_TEST(fake_mutation_gap_and_tls)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_scope s = { .owner = "acme", .repo = "widgets" };
	struct kiln_err e = { 0 };
	struct gh_job j;
	int64_t t0;

	seed("{}");
	pat(&c, &a);
	c.mutation_gap_ms = 400;
	t0 = mono_ms();
	ck_assert_int_eq(gh_runner_delete(&c, &s, 1, &e), KILN_OK);
	ck_assert_int_eq(gh_runner_delete(&c, &s, 2, &e), KILN_OK);
	ck_assert_int_eq(gh_runner_delete(&c, &s, 3, &e), KILN_OK);
	ck_assert_int_ge(mono_ms() - t0, 800);
	gh_client_free(&c);
	/* Without the test CA the fake's certificate is not trusted. */
	ck_assert_int_eq(gh_client_init(&c, fake_url, "/etc/ssl/certs/nonexistent.pem", &e), KILN_OK);
	c.max_attempts = 1;
	ck_assert_int_eq(gh_auth_pat(&a, &c, "ghp_fake", &e), KILN_OK);
	ck_assert_int_eq(gh_job_get(&c, "acme/widgets", 1, &j, &e), KILN_E_IO);
	gh_client_free(&c);
	/* A bad token: 401 with GitHub's message. */
	fake_client(&c);
	ck_assert_int_eq(gh_auth_pat(&a, &c, "ghp_wrong", &e), KILN_OK);
	ck_assert_int_eq(gh_job_get(&c, "acme/widgets", 1, &j, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "401 Bad credentials"), "%s", e.msg);
	gh_client_free(&c);
}
END_TEST

/* The reconciler's decisions (github/fleet.h), one rule at a time. */
static size_t plan(const struct gh_plan_in *in, struct gh_act *a)
{
	size_t n;

	gh_plan(in, a, 32, &n);
	return n;
}

static int spawned(const struct gh_act *a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (a[i].kind == GH_ACT_SPAWN)
			return a[i].n;
	return 0;
}

START_TEST(fleet_plan)
{
	struct gh_rec recs[4] = { { .id = 1, .name = "kiln-a", .created = 1000 },
				  { .id = 2, .name = "kiln-b", .created = 1000, .job_id = 77 },
				  { .id = 3, .name = "kiln-c", .created = 1000 },
				  { .id = 4, .name = "kiln-d", .created = 100 } };
	struct gh_seen seen[4] = { { GH_VM_RUNNING, false }, { GH_VM_EXITED, true }, { GH_VM_BOOTING, false },
				   { GH_VM_RUNNING, true } };
	struct gh_runner listed[3] = { { .id = 3, .name = "kiln-c", .status = "offline" },
				       { .id = 9, .name = "kiln-z", .status = "offline" },
				       { .id = 10, .name = "kiln-y", .status = "online" } };
	struct gh_plan_in in = { .recs = recs, .seen = seen, .n_recs = 4, .listed = listed, .n_listed = 3,
				 .queued = 3, .warm_pool = 1, .free_slots = 10, .now = 1100, .idle_timeout = 300,
				 .job_timeout = 900 };
	struct gh_act a[32];
	size_t n = plan(&in, a);

	/* b exited; d is past the job time limit; z is an orphan; a and c
	 * are idle and take two of the three queued jobs: 3 + 1 - 2 = 2. */
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(a[0].kind, GH_ACT_DELETE_RUNNER);
	ck_assert_uint_eq(a[0].rec, 1);
	ck_assert_int_eq(a[1].kind, GH_ACT_DESTROY_VM);
	ck_assert_uint_eq(a[1].rec, 3);
	ck_assert_int_eq(a[2].kind, GH_ACT_DELETE_RUNNER);
	ck_assert_uint_eq(a[2].rec, 3);
	ck_assert_int_eq(a[3].kind, GH_ACT_DELETE_ORPHAN);
	ck_assert_int_eq(a[3].runner_id, 9);
	ck_assert_int_eq(spawned(a, n), 2);

	/* The same demand seen again after the spawn: no double spawn. */
	{
		struct gh_rec r2[3] = { { .id = 1, .name = "kiln-a", .created = 1000 },
					{ .id = 3, .name = "kiln-c", .created = 1000 },
					{ .id = 5, .name = "kiln-e", .created = 1100 } };
		struct gh_rec r3 = { .id = 6, .name = "kiln-f", .created = 1100 };
		struct gh_rec all[4];
		struct gh_seen s2[4] = { { GH_VM_RUNNING, false }, { GH_VM_RUNNING, false }, { GH_VM_BOOTING, false },
					 { GH_VM_BOOTING, false } };
		struct gh_plan_in in2 = { .recs = all, .seen = s2, .n_recs = 4, .queued = 3, .warm_pool = 1,
					  .free_slots = 10, .now = 1101, .idle_timeout = 300 };

		memcpy(all, r2, sizeof(r2));
		all[3] = r3;
		n = plan(&in2, a);
		ck_assert_uint_eq(n, 0);
		/* Idle past idle_timeout: deleted first, then the VM. */
		in2.now = 1000 + 301;
		in2.n_recs = 1;
		n = plan(&in2, a);
		ck_assert_uint_eq(n, 3);
		ck_assert_int_eq(a[0].kind, GH_ACT_DELETE_RUNNER);
		ck_assert_int_eq(a[1].kind, GH_ACT_DESTROY_VM);
		ck_assert_int_eq(spawned(a, n), 4); /* 3 queued + 1 warm, none idle left */
	}

	/* Bounded by max_runners (live ones count) and by the shared slots. */
	in.n_listed = 0;
	in.queued = 20;
	in.max_runners = 5;
	n = plan(&in, a);
	ck_assert_int_eq(spawned(a, n), 3); /* a and c live */
	in.free_slots = 1;
	n = plan(&in, a);
	ck_assert_int_eq(spawned(a, n), 1);
	in.free_slots = 0;
	n = plan(&in, a);
	ck_assert_int_eq(spawned(a, n), 0);

	/* Warm pool alone, with nothing queued and nobody idle. */
	in.n_recs = 0;
	in.queued = 0;
	in.warm_pool = 2;
	in.free_slots = 10;
	n = plan(&in, a);
	ck_assert_int_eq(spawned(a, n), 2);
}
END_TEST

/* Records survive a restart; junk and other files are skipped. */
START_TEST(fleet_records)
{
	char tmp[] = "/tmp/kiln-ghrec-XXXXXX", dir[PATH_MAX], path[PATH_MAX + 16];
	struct gh_rec r = { .id = 42, .name = "kiln-0123456789ab", .vm = "gh-42", .created = 1700000000 }, *v;
	struct kiln_err e = { 0 };
	struct stat st;
	size_t n;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(tmp));
	ck_assert_int_eq(gh_rec_dir(tmp, "acme/../x y", dir, sizeof(dir), &e), KILN_OK);
	ck_assert_str_eq(dir + strlen(tmp), "/github/acme_.._x_y"); /* one component */
	ck_assert_ptr_null(strchr(dir + strlen(tmp), ' '));
	ck_assert_int_eq(gh_rec_load_all(dir, &v, &n, &e), KILN_OK); /* none yet */
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(gh_rec_save(dir, &r, &e), KILN_OK);
	snprintf(path, sizeof(path), "%s/%s.json", dir, r.name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/junk.json", dir);
	f = fopen(path, "w");
	fputs("{\"id\": \"x\"}", f);
	fclose(f);
	ck_assert_int_eq(gh_rec_load_all(dir, &v, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0].id, 42);
	ck_assert_str_eq(v[0].name, r.name);
	ck_assert_str_eq(v[0].vm, "gh-42");
	ck_assert_int_eq(v[0].created, 1700000000);
	free(v);
	strcpy(r.name, "../evil");
	ck_assert_int_eq(gh_rec_save(dir, &r, &e), KILN_E_INVALID);
	ck_assert_int_eq(gh_rec_remove(dir, "kiln-0123456789ab", &e), KILN_OK);
	ck_assert_int_eq(gh_rec_remove(dir, "kiln-0123456789ab", &e), KILN_OK);
	unlink(path);
	ck_assert_int_eq(gh_rec_load_all(dir, &v, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 0);
	free(v);
	rmdir(dir);
	snprintf(path, sizeof(path), "%s/github", tmp);
	rmdir(path);
	rmdir(tmp);
}
END_TEST

/* A fake VM side for the fleet: VMs are slots in a table, the blob's
 * sha256 is kept (never the blob), and each boot checks that the runner's
 * record was on disk first. */
struct fake_vms {
	const char *dir;
	int booted, destroyed;
	enum gh_vm_state st[16];
	char sha[16][65];
	bool rec_first[16];
	bool fail_boot;
	/* ops.start: the VMs are named after their runners, booted before
	 * their JIT configs were asked for (that count then kept) */
	char names[16][64];
	int jits_at_start[16], handed;
};

static int jits_made(void);

/* The slot of r's VM: "vm-K", or a name fvm_start was given; -1: none. */
static int fvm_slot(const struct fake_vms *v, const struct gh_rec *r)
{
	int k;

	if (sscanf(r->vm, "vm-%d", &k) == 1)
		return k >= 0 && k < 16 ? k : -1;
	for (k = 0; r->vm[0] && k < v->booted; k++)
		if (!strcmp(v->names[k], r->vm))
			return k;
	return -1;
}

static enum kiln_rc fvm_start(void *arg, const char *name, struct kiln_err *e)
{
	struct fake_vms *v = arg;
	int k = v->booted;

	(void)e;
	ck_assert_int_lt(k, 16);
	snprintf(v->names[k], sizeof(v->names[k]), "%s", name);
	v->jits_at_start[k] = jits_made();
	v->st[k] = GH_VM_BOOTING;
	v->booted++;
	return KILN_OK;
}

static enum kiln_rc fvm_boot(void *arg, struct gh_rec *r, const char *blob, size_t len, struct kiln_err *e)
{
	struct fake_vms *v = arg;
	struct gh_rec *recs;
	size_t n, i;
	int k = v->booted;

	if (v->fail_boot)
		return kiln_fail(e, KILN_E_IO, "fake: no VM today");
	if (r->vm[0]) { /* booting since fvm_start: it gets the blob */
		k = fvm_slot(v, r);
		ck_assert_int_ge(k, 0);
		ck_assert(gh_jit_blob_valid(blob, len));
		sha256_buf_hex(blob, len, v->sha[k]);
		ck_assert_int_eq(gh_rec_load_all(v->dir, &recs, &n, e), KILN_OK);
		for (i = 0; i < n; i++)
			if (!strcmp(recs[i].name, r->name) && recs[i].id == r->id && !strcmp(recs[i].vm, r->vm))
				v->rec_first[k] = true;
		free(recs);
		v->st[k] = GH_VM_RUNNING;
		v->handed++;
		return KILN_OK;
	}
	ck_assert_int_lt(k, 16);
	ck_assert(gh_jit_blob_valid(blob, len));
	sha256_buf_hex(blob, len, v->sha[k]);
	ck_assert_int_eq(gh_rec_load_all(v->dir, &recs, &n, e), KILN_OK);
	for (i = 0; i < n; i++)
		if (!strcmp(recs[i].name, r->name) && recs[i].id == r->id && !recs[i].vm[0])
			v->rec_first[k] = true;
	free(recs);
	snprintf(r->vm, sizeof(r->vm), "vm-%d", k);
	v->st[k] = GH_VM_RUNNING;
	v->booted++;
	return KILN_OK;
}

static enum gh_vm_state fvm_state(void *arg, const struct gh_rec *r)
{
	struct fake_vms *v = arg;
	int k = fvm_slot(v, r);

	return k < 0 ? GH_VM_NONE : v->st[k];
}

static void fvm_destroy(void *arg, const struct gh_rec *r)
{
	struct fake_vms *v = arg;
	int k = fvm_slot(v, r);

	if (k >= 0 && v->st[k] != GH_VM_NONE) {
		v->st[k] = GH_VM_NONE;
		v->destroyed++;
	}
}

/* The reconciler against the fake: two matching queued jobs give two
 * runners, each recorded before its VM boots; the same demand seen again
 * spawns nothing; an exited VM's runner is deleted; the shared slots
 * bound the fleet; and after a kill -9 (records on disk, VMs gone) the
 * next kiln deletes every runner the records name. */
START_TEST(fake_fleet)
{
	char tmp[] = "/tmp/kiln-ghfleet-XXXXXX";
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served = { 0 };
	struct fake_vms vms = { 0 };
	struct gh_fleet f = { .entry = "acme", .scope = { .owner = "acme", .repo = "widgets" }, .prefix = "kiln",
			      .idle_timeout = 300, .job_timeout = 3600 };
	struct kiln_err e = { 0 };
	int jits, dels;

	seed(RUNS_ONE);
	/* An offline kiln runner nobody recorded (deleted), a busy one (kept). */
	seed("{\"runners\":{\"acme/widgets\":[{\"id\":900,\"name\":\"kiln-orphan\"},"
	     "{\"id\":901,\"name\":\"kiln-busy\",\"busy\":true}]}}");
	pat(&c, &a);
	served_set(&served);
	jits = arrived("POST /repos/acme/widgets/actions/runners/generate-jitconfig", 201);
	dels = arrived("DELETE /repos/acme/widgets/actions/runners/", 204);
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	ck_assert_int_eq(gh_rec_dir(tmp, "acme", f.dir, sizeof(f.dir), &e), KILN_OK);
	vms.dir = f.dir;
	f.c = &c;
	f.labels = &served;
	f.ops = (struct gh_vm_ops){ fvm_boot, fvm_state, fvm_destroy, NULL, &vms, NULL };
	kiln_slots_set_max(3);
	ck_assert_int_eq(gh_fleet_open(&f, &e), KILN_OK);

	ck_assert_msg(gh_fleet_round(&f, 1000, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(f.queued, 2);
	ck_assert_int_eq(vms.booted, 2);
	ck_assert_uint_eq(f.n_recs, 2);
	ck_assert(vms.rec_first[0] && vms.rec_first[1]);
	ck_assert_str_ne(vms.sha[0], vms.sha[1]);
	ck_assert_int_eq(arrived("POST /repos/acme/widgets/actions/runners/generate-jitconfig", 201), jits + 2);
	ck_assert_int_eq(arrived("DELETE /repos/acme/widgets/actions/runners/900", 204), 1);
	ck_assert_int_eq(arrived("DELETE /repos/acme/widgets/actions/runners/901", 0), 0);
	ck_assert_int_eq(kiln_slots_used(), 2);

	/* Same demand: both runners are idle and cover it. */
	ck_assert_msg(gh_fleet_round(&f, 1010, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(vms.booted, 2);

	/* VM 0's runner exited: deleted on GitHub, its record gone; the job
	 * it ran is still queued in the fake, so one more is started. */
	vms.st[0] = GH_VM_EXITED;
	ck_assert_msg(gh_fleet_round(&f, 1020, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(arrived("DELETE /repos/acme/widgets/actions/runners/", 204), dels + 2);
	ck_assert_int_eq(vms.destroyed, 1);
	ck_assert_int_eq(vms.booted, 3);
	ck_assert_uint_eq(f.n_recs, 2);
	ck_assert_int_eq(kiln_slots_used(), 2);

	/* A warm pool of 5 is bounded by `concurrent` (3). */
	f.warm_pool = 5;
	ck_assert_msg(gh_fleet_round(&f, 1030, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(vms.booted, 4);
	ck_assert_int_eq(kiln_slots_used(), 3);
	f.warm_pool = 0;

	/* kill -9: the records stay, the VMs are gone after the host
	 * restarts; and the new runner's VM cannot boot, so that runner is
	 * deleted again at once. */
	gh_fleet_close(&f);
	ck_assert_int_eq(kiln_slots_used(), 0);
	{
		int k;

		for (k = 0; k < 16; k++)
			vms.st[k] = GH_VM_NONE;
	}
	vms.fail_boot = true;
	ck_assert_int_eq(gh_fleet_open(&f, &e), KILN_OK);
	ck_assert_uint_eq(f.n_recs, 3);
	ck_assert_msg(gh_fleet_round(&f, 2000, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(arrived("DELETE /repos/acme/widgets/actions/runners/", 204), dels + 2 + 3 + 1);
	ck_assert_uint_eq(f.n_recs, 0);
	ck_assert_uint_eq(f.spawn_failures, 1);
	ck_assert_int_eq(kiln_slots_used(), 0);
	gh_fleet_close(&f);
	rmdir(f.dir);
	{
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/github", tmp);
		rmdir(p);
	}
	ck_assert_int_eq(rmdir(tmp), 0);
	gh_labels_free(&served);
	gh_auth_free(&a);
	gh_client_free(&c);
}
END_TEST

/* bench/github.sh's API budget: 10 idle repositories, a reconciler round
 * each per poll (runs queued + in progress, runner list). Every request
 * after the first round is a 304, which GitHub does not count; the line
 * printed is what an hour at a 10 s interval costs. */
START_TEST(fake_idle_budget)
{
	enum { REPOS = 10, ROUNDS = 36 };
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served = { 0 };
	struct fake_vms vms = { 0 };
	struct gh_fleet f[REPOS];
	struct kiln_err e = { 0 };
	char tmp[] = "/tmp/kiln-ghbudget-XXXXXX";
	json_t *st;
	long long used;
	uint64_t before;
	int i, k;

	seed("{\"runs\":{},\"runners\":{}}");
	pat(&c, &a);
	served_set(&served);
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	vms.dir = tmp;
	kiln_slots_set_max(4);
	for (i = 0; i < REPOS; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].entry = "bench";
		snprintf(f[i].scope.owner, sizeof(f[i].scope.owner), "acme");
		snprintf(f[i].scope.repo, sizeof(f[i].scope.repo), "repo%d", i);
		snprintf(f[i].dir, sizeof(f[i].dir), "%s/none", tmp);
		f[i].c = &c;
		f[i].labels = &served;
		f[i].prefix = "kiln";
		f[i].idle_timeout = 300;
		f[i].ops = (struct gh_vm_ops){ fvm_boot, fvm_state, fvm_destroy, NULL, &vms, NULL };
	}
	before = c.requests;
	for (k = 0; k < ROUNDS; k++)
		for (i = 0; i < REPOS; i++)
			ck_assert_msg(gh_fleet_round(&f[i], 1000 + k * 10, &e) == KILN_OK, "%s", e.msg);
	st = ctl("GET", "/__state", NULL);
	used = json_integer_value(json_object_get(st, "budget")) - json_integer_value(json_object_get(st, "remaining"));
	json_decref(st);
	ck_assert_int_eq(vms.booted, 0);
	/* Only the first round's requests count. */
	ck_assert_int_le(used, REPOS * 3);
	fprintf(stderr, "bench: %d idle repositories, %d rounds: %llu requests, %lld counted (%.2f%%); "
		"an hour at 10 s: %llu requests, %lld counted\n",
		REPOS, ROUNDS, (unsigned long long)(c.requests - before), used,
		100.0 * (double)used / (double)(c.requests - before),
		(unsigned long long)(c.requests - before) * 360 / ROUNDS, used);
	gh_labels_free(&served);
	gh_auth_free(&a);
	gh_client_free(&c);
	rmdir(tmp);
}
END_TEST

/* A fleet on the fake with fake VMs, its records in a fresh folder. */
struct fleet_fixture {
	char tmp[32];
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served;
	struct fake_vms vms;
	struct gh_fleet f;
};

static void fleet_up(struct fleet_fixture *x, int slots)
{
	struct kiln_err e = { 0 };

	memset(x, 0, sizeof(*x));
	snprintf(x->tmp, sizeof(x->tmp), "/tmp/kiln-ghfx-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(x->tmp));
	pat(&x->c, &x->a);
	served_set(&x->served);
	x->f = (struct gh_fleet){ .entry = "acme", .scope = { .owner = "acme", .repo = "widgets" }, .prefix = "kiln",
				  .idle_timeout = 300, .job_timeout = 3600 };
	ck_assert_int_eq(gh_rec_dir(x->tmp, "acme", x->f.dir, sizeof(x->f.dir), &e), KILN_OK);
	x->vms.dir = x->f.dir;
	x->f.c = &x->c;
	x->f.labels = &x->served;
	x->f.ops = (struct gh_vm_ops){ fvm_boot, fvm_state, fvm_destroy, NULL, &x->vms, NULL };
	kiln_slots_set_max(slots);
	ck_assert_int_eq(gh_fleet_open(&x->f, &e), KILN_OK);
}

static void fleet_down(struct fleet_fixture *x)
{
	char p[PATH_MAX];
	struct kiln_err e = { 0 };
	size_t i;

	for (i = 0; i < x->f.n_recs; i++) /* the VMs left running */
		ck_assert_int_eq(gh_rec_remove(x->f.dir, x->f.recs[i].name, &e), KILN_OK);
	gh_fleet_close(&x->f);
	rmdir(x->f.dir);
	snprintf(p, sizeof(p), "%s/github", x->tmp);
	rmdir(p);
	ck_assert_int_eq(rmdir(x->tmp), 0);
	gh_labels_free(&x->served);
	gh_auth_free(&x->a);
	gh_client_free(&x->c);
}

/* A stub runner's calls to the fake (tests/github-stub-runner/run.sh). */
static void stub(const char *what, const char *runner)
{
	char body[200];

	snprintf(body, sizeof(body), "{\"runner_name\":\"%s\"}", runner);
	json_decref(ctl("POST", what, body));
}

/* Job results come from the API after the runner exits: a job seen in
 * progress is in the record (on disk: a restarted kiln knows it too); a
 * job that ran between two rounds is found among the queued jobs seen. */
START_TEST(fake_job_results)
{
	struct fleet_fixture x;
	struct kiln_err e = { 0 };
	struct gh_rec *recs;
	size_t n;
	char name[GH_RUNNER_NAME_MAX];

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":40,\"status\":\"queued\",\"jobs\":["
	     "{\"id\":400,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
	fleet_up(&x, 3);
	ck_assert_msg(gh_fleet_round(&x.f, 1000, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(x.f.n_recs, 1);
	snprintf(name, sizeof(name), "%s", x.f.recs[0].name);
	stub("/__claim", name);
	ck_assert_msg(gh_fleet_round(&x.f, 1005, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(x.vms.booted, 1); /* busy on the job: nothing more */
	ck_assert_int_eq(gh_rec_load_all(x.f.dir, &recs, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(recs[0].job_id, 400);
	ck_assert_str_eq(recs[0].repo, "acme/widgets");
	free(recs);
	stub("/__complete", name);
	x.vms.st[0] = GH_VM_EXITED;
	ck_assert_msg(gh_fleet_round(&x.f, 1010, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(x.f.n_recs, 0);
	ck_assert_uint_eq(x.f.jobs_succeeded, 1);
	ck_assert_uint_eq(x.f.jobs_failed, 0);
	ck_assert_int_eq(arrived("GET /repos/acme/widgets/actions/jobs/400", 200), 1);

	/* Claimed and done between two rounds, failed. */
	json_decref(ctl("POST", "/__config", "{\"stub_result\":\"failure\"}"));
	json_decref(ctl("POST", "/__queue", "{\"repo\":\"acme/widgets\",\"run\":41,\"job\":{\"id\":410,"
				      "\"labels\":[\"self-hosted\"]}}"));
	ck_assert_msg(gh_fleet_round(&x.f, 1020, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(x.f.n_recs, 1);
	snprintf(name, sizeof(name), "%s", x.f.recs[0].name);
	stub("/__claim", name);
	stub("/__complete", name);
	x.vms.st[1] = GH_VM_EXITED;
	ck_assert_msg(gh_fleet_round(&x.f, 1030, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(x.f.jobs_failed, 1);
	ck_assert_uint_eq(x.f.n_cands, 0); /* both known to be done */
	fleet_down(&x);
}
END_TEST

/* GitHub moves on while a round reads it: a runner takes a queued job
 * just before the round lists the runners, just before it lists the
 * jobs, or between the queued and the in-progress runs (the run then
 * shows in both). Each time the other idle runner covers the job left
 * and nothing is spawned: no job counts as queued while the runner that
 * took it counts as busy, and no run's jobs count twice. */
START_TEST(fake_job_taken_mid_round)
{
	static const char *const before[] = { "GET /repos/acme/widgets/actions/runners",
					      "GET /repos/acme/widgets/actions/runs/60/jobs",
					      "GET /repos/acme/widgets/actions/runs" };
	size_t k;

	for (k = 0; k < 3; k++) {
		struct fleet_fixture x;
		struct kiln_err e = { 0 };
		char faults[400];

		seed("{\"runners\":{},\"runs\":{\"acme/widgets\":[{\"id\":60,\"status\":\"queued\",\"jobs\":["
		     "{\"id\":600,\"status\":\"queued\",\"labels\":[\"kiln\"]},"
		     "{\"id\":601,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
		fleet_up(&x, 4);
		ck_assert_msg(gh_fleet_round(&x.f, 1000, &e) == KILN_OK, "%s", e.msg);
		ck_assert_int_eq(x.vms.booted, 2);
		/* For the runs: the queued list answered as usual, the claim before the in-progress one. */
		snprintf(faults, sizeof(faults), "{\"%s\":[%s{\"claim\":\"%s\"}]}", before[k], k == 2 ? "{}," : "",
			 x.f.recs[0].name);
		json_decref(ctl("POST", "/__faults", faults));
		ck_assert_msg(gh_fleet_round(&x.f, 1005, &e) == KILN_OK, "%s", e.msg);
		ck_assert_msg(x.vms.booted == 2, "job taken before '%s': %d runners for 2 jobs", before[k], x.vms.booted);
		ck_assert_uint_eq(x.f.queued, 1);
		ck_assert_int_eq(x.f.recs[0].job_id, 600);
		fleet_down(&x);
	}
	seed("{\"runners\":{}}"); /* the two runners each round left: not the next test's orphans */
}
END_TEST

/* A job cancelled while its runner's VM boots: nobody gives the runner a
 * job, so after idle_timeout it is deleted on GitHub first, then its VM
 * destroyed; nothing new is spawned for the cancelled job. */
START_TEST(fake_cancelled_while_booting)
{
	struct fleet_fixture x;
	struct kiln_err e = { 0 };
	int jits;

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":50,\"status\":\"queued\",\"jobs\":["
	     "{\"id\":500,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
	fleet_up(&x, 2);
	x.f.idle_timeout = 20;
	ck_assert_msg(gh_fleet_round(&x.f, 1000, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(x.vms.booted, 1);
	x.vms.st[0] = GH_VM_BOOTING;
	json_decref(ctl("POST", "/__cancel", "{\"job\":500}"));
	jits = arrived("POST /repos/acme/widgets/actions/runners/generate-jitconfig", 201);
	ck_assert_msg(gh_fleet_round(&x.f, 1010, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(x.f.queued, 0);
	ck_assert_uint_eq(x.f.n_recs, 1); /* within idle_timeout: kept, GitHub may still hand it a job */
	x.vms.st[0] = GH_VM_RUNNING;
	ck_assert_msg(gh_fleet_round(&x.f, 1021, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(x.f.n_recs, 0);
	ck_assert_int_eq(x.vms.destroyed, 1);
	ck_assert_int_eq(arrived("DELETE /repos/acme/widgets/actions/runners/", 204), 1);
	ck_assert_int_eq(arrived("POST /repos/acme/widgets/actions/runners/generate-jitconfig", 201), jits);
	ck_assert_int_eq(kiln_slots_used(), 0);
	fleet_down(&x);
}
END_TEST

static int jits_made(void)
{
	return arrived("POST /repos/acme/widgets/actions/runners/generate-jitconfig", 201);
}

/* With ops.start, a runner's VM boots before its JIT config is asked for
 * (the two overlap), named after the runner; it gets the blob once the
 * record, which names it, is on disk; a JIT request that fails ends the
 * VM it would have gone to. */
START_TEST(fake_vm_boots_with_jit)
{
	struct fleet_fixture x;
	struct kiln_err e = { 0 };
	int jits;

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":70,\"status\":\"queued\",\"jobs\":["
	     "{\"id\":700,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
	fleet_up(&x, 2);
	x.f.ops.start = fvm_start;
	jits = jits_made();
	ck_assert_msg(gh_fleet_round(&x.f, 1000, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(x.vms.booted, 1);
	ck_assert_int_eq(x.vms.handed, 1);
	ck_assert_int_eq(x.vms.jits_at_start[0], jits);
	ck_assert_int_eq(jits_made(), jits + 1);
	ck_assert_uint_eq(x.f.n_recs, 1);
	ck_assert_str_eq(x.f.recs[0].name, x.vms.names[0]);
	ck_assert_str_eq(x.f.recs[0].vm, x.vms.names[0]);
	ck_assert(x.vms.rec_first[0]);

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":70,\"status\":\"queued\",\"jobs\":["
	     "{\"id\":700,\"status\":\"queued\",\"labels\":[\"kiln\"]},"
	     "{\"id\":701,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
	faults("{\"POST /repos/acme/widgets/actions/runners/generate-jitconfig\":"
	       "[{\"status\":403,\"body\":{\"message\":\"Resource not accessible by integration\"}}]}");
	ck_assert_msg(gh_fleet_round(&x.f, 1010, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(x.vms.booted, 2);
	ck_assert_int_eq(x.vms.handed, 1);
	ck_assert_int_eq(x.vms.destroyed, 1);
	ck_assert_int_eq(x.vms.st[1], GH_VM_NONE);
	ck_assert_uint_eq(x.f.n_recs, 1);
	ck_assert_int_eq(kiln_slots_used(), 1);
	fleet_down(&x);
}
END_TEST

/* A rate limit in the middle of a round: 403 with x-ratelimit-remaining
 * 0 waits for x-ratelimit-reset and goes on, one request sent while
 * blocked; a reset past max_wait_ms fails the round after one request,
 * and the next round sends none. */
START_TEST(fake_rate_limit_round)
{
	struct fleet_fixture x;
	struct kiln_err e = { 0 };
	int before;
	int64_t t0;

	seed("{\"runs\":{\"acme/widgets\":[{\"id\":60,\"status\":\"queued\",\"jobs\":["
	     "{\"id\":600,\"status\":\"queued\",\"labels\":[\"kiln\"]}]}]}}");
	fleet_up(&x, 2);
	json_decref(ctl("POST", "/__config", "{\"budget\":0,\"reset_in\":2}"));
	t0 = mono_ms();
	ck_assert_msg(gh_fleet_round(&x.f, 1000, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_ge(mono_ms() - t0, 1000);
	ck_assert_int_eq(arrived("", 403), 1);
	ck_assert_int_eq(x.vms.booted, 1);

	json_decref(ctl("POST", "/__config", "{\"budget\":0,\"reset_in\":3600}"));
	before = arrived("", 0);
	t0 = mono_ms();
	ck_assert_int_eq(gh_fleet_round(&x.f, 1010, &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "rate limited until"), "%s", e.msg);
	ck_assert_int_eq(gh_fleet_round(&x.f, 1020, &e), KILN_E_LIMIT);
	ck_assert_int_lt(mono_ms() - t0, 1000);
	ck_assert_int_eq(arrived("", 0), before + 1);
	ck_assert_int_eq(x.vms.booted, 1);
	x.c.blocked_until_ms = 0; /* the reset came: the fleet goes on where it was */
	json_decref(ctl("POST", "/__config", "{\"budget\":5000}"));
	ck_assert_msg(gh_fleet_round(&x.f, 1030, &e) == KILN_OK, "%s", e.msg);
	fleet_down(&x);
}
END_TEST

/* Installation tokens that live 6 s: each is renewed half way through its
 * life, not at every request, and no request ever carries an expired one. */
START_TEST(fake_app_token_refresh)
{
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels served = { 0 };
	struct gh_demand d = { 0 };
	struct gh_scope s = { .owner = "acme", .repo = "widgets" };
	struct kiln_err e = { 0 };
	json_t *st;
	long long issued;
	int64_t t0 = mono_ms();
	int polls;

	seed(RUNS_ONE);
	json_decref(ctl("POST", "/__config", "{\"token_lifetime\":6}"));
	fake_client(&c);
	served_set(&served);
	ck_assert_int_eq(gh_auth_app(&a, 4242, app_key, 0, &s, &e), KILN_OK);
	gh_auth_attach(&a, &c);
	for (polls = 0; polls < 30; polls++) {
		ck_assert_msg(gh_demand_poll(&c, &s, false, &served, &d, &e) == KILN_OK, "%s", e.msg);
		usleep(250 * 1000);
	}
	st = ctl("GET", "/__state", NULL);
	issued = json_integer_value(json_object_get(st, "tokens_issued"));
	ck_assert_int_eq(json_integer_value(json_object_get(st, "expired_used")), 0);
	json_decref(st);
	ck_assert_int_ge(mono_ms() - t0, 7500);
	/* About one per 2-3 s (whole seconds on both sides), not one per poll. */
	ck_assert_msg(issued >= 2 && issued <= polls / 3, "%lld tokens for %d polls", issued, polls);
	ck_assert_int_eq(arrived("", 401), 0);
	gh_demand_free(&d);
	gh_labels_free(&served);
	gh_auth_free(&a);
	gh_client_free(&c);
}
END_TEST

static Suite *offline_suite(void)
{
	Suite *s = suite_create("github");
	TCase *t = tcase_create("offline");

	tcase_add_test(t, scope_urls);
	tcase_add_test(t, labels_match);
	tcase_add_test(t, demand_tally_json);
	tcase_add_test(t, link_header);
	tcase_add_test(t, webhook_signature_replay);
	tcase_add_test(t, deliveries_bounded);
	tcase_add_test(t, jit_reply_checked);
	tcase_add_test(t, runner_names);
	tcase_add_test(t, app_jwt);
	tcase_add_test(t, fleet_plan);
	tcase_add_test(t, fleet_records);
	suite_add_tcase(s, t);
	return s;
}

static Suite *fake_suite(void)
{
	Suite *s = suite_create("github-fake");
	TCase *t = tcase_create("fake");

	tcase_set_timeout(t, 60);
	tcase_add_test(t, fake_demand_etag);
	tcase_add_test(t, fake_pagination);
	tcase_add_test(t, fake_app_tokens);
	tcase_add_test(t, fake_jit);
	tcase_add_test(t, fake_job_result);
	tcase_add_test(t, fake_fleet);
	tcase_add_test(t, fake_idle_budget);
	tcase_add_test(t, fake_rate_limits);
	tcase_add_test(t, fake_mutation_gap_and_tls);
	tcase_add_test(t, fake_job_results);
	tcase_add_test(t, fake_job_taken_mid_round);
	tcase_add_test(t, fake_cancelled_while_booting);
	tcase_add_test(t, fake_vm_boots_with_jit);
	tcase_add_test(t, fake_rate_limit_round);
	tcase_add_test(t, fake_app_token_refresh);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	const char *dir = getenv("GH_FAKE_DIR");
	SRunner *sr;
	int failed;

	gh_global_init();
	sr = srunner_create(offline_suite());
	if (dir && *dir) {
		FILE *f;
		char path[PATH_MAX + 8];

		snprintf(fake_dir, sizeof(fake_dir), "%s", dir);
		snprintf(path, sizeof(path), "%s/url", fake_dir);
		f = fopen(path, "r");
		if (!f || !fgets(fake_url, sizeof(fake_url), f)) {
			fprintf(stderr, "check_github: no %s\n", path);
			return 1;
		}
		fclose(f);
		fake_url[strcspn(fake_url, "\n")] = '\0';
		snprintf(fake_ca, sizeof(fake_ca), "%s/ca.pem", fake_dir);
		snprintf(app_key, sizeof(app_key), "%s/app.pem", fake_dir);
		srunner_add_suite(sr, fake_suite());
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
