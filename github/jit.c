#include "github/jit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include "lib/log.h"
#include "lib/vec.h"

static void runners_base(const struct gh_scope *s, char *buf, size_t size)
{
	if (s->repo[0])
		snprintf(buf, size, "/repos/%s/%s/actions/runners", s->owner, s->repo);
	else
		snprintf(buf, size, "/orgs/%s/actions/runners", s->owner);
}

static void scope_name(const struct gh_scope *s, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s", s->owner, s->repo[0] ? "/" : "", s->repo);
}

enum kiln_rc gh_runner_name(const char *prefix, char *buf, size_t size, struct kiln_err *e)
{
	unsigned char rnd[6];
	size_t n = prefix ? strlen(prefix) : 0, i;

	if (n == 0 || n > GH_PREFIX_MAX)
		return kiln_fail(e, KILN_E_INVALID, "github name_prefix '%.60s': must be 1 to %d characters",
				 prefix ? prefix : "", GH_PREFIX_MAX);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)prefix[i]) && prefix[i] != '-' && prefix[i] != '_' && prefix[i] != '.')
			return kiln_fail(e, KILN_E_INVALID, "github name_prefix '%.60s': only A-Z a-z 0-9 . _ -",
					 prefix);
	if (size < n + 14)
		return kiln_fail(e, KILN_E_INVALID, "github runner name: buffer too small");
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return kiln_fail_errno(e, "github runner name: getrandom");
	snprintf(buf, size, "%s-%02x%02x%02x%02x%02x%02x", prefix, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
	return KILN_OK;
}

static int b64val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Strict padded base64 into out (at least n/4*3 bytes); -1 when it is not. */
static long b64decode(const char *s, size_t n, unsigned char *out)
{
	size_t i, o = 0;

	if (n == 0 || n % 4)
		return -1;
	for (i = 0; i < n; i += 4) {
		int v[4], k, pad = 0;

		for (k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64val((unsigned char)s[i + k])) < 0)
				return -1;
		}
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)(v[2] << 6 | v[3]);
	}
	return (long)o;
}

bool gh_jit_blob_valid(const char *s, size_t n)
{
	unsigned char *buf;
	long len;
	json_t *j;
	bool ok;

	if (n > GH_JIT_MAX || !(buf = malloc(n / 4 * 3 + 1)))
		return false;
	len = b64decode(s, n, buf);
	j = len > 0 ? json_loadb((const char *)buf, (size_t)len, 0, NULL) : NULL;
	ok = json_is_object(j);
	/* The decoded text holds the runner's credentials: wipe both copies.
	 * jansson's strings are not wiped, a known gap (docs/github.md). */
	json_decref(j);
	OPENSSL_cleanse(buf, n / 4 * 3 + 1);
	free(buf);
	return ok;
}

bool gh_runner_from_json(const json_t *j, struct gh_runner *out)
{
	const json_t *id = json_object_get(j, "id");
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *status = json_string_value(json_object_get(j, "status"));

	memset(out, 0, sizeof(*out));
	if (!json_is_integer(id) || json_integer_value(id) <= 0 || !name || !*name || strlen(name) >= sizeof(out->name))
		return false;
	out->id = json_integer_value(id);
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->status, sizeof(out->status), "%s", status ? status : "");
	out->busy = json_is_true(json_object_get(j, "busy"));
	return true;
}

enum kiln_rc gh_jit_parse(const char *body, size_t len, struct gh_jit *out, struct kiln_err *e)
{
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *blob = json_object_get(j, "encoded_jit_config");
	const char *s = json_string_value(blob);
	size_t n = json_string_length(blob);
	enum kiln_rc rc = KILN_OK;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(j)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "generate-jitconfig: the reply is not a JSON object");
	} else if (!gh_runner_from_json(json_object_get(j, "runner"), &out->runner)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "generate-jitconfig: the reply has no runner id and name");
	} else if (!s || !n) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "generate-jitconfig: the reply has no encoded_jit_config");
	} else if (n > GH_JIT_MAX) {
		rc = kiln_fail(e, KILN_E_LIMIT, "generate-jitconfig: encoded_jit_config is over %u bytes", GH_JIT_MAX);
	} else if (strlen(s) != n || !gh_jit_blob_valid(s, n)) {
		rc = kiln_fail(e, KILN_E_SYNTAX,
			       "generate-jitconfig: encoded_jit_config (%zu bytes) is not base64 of a JSON object", n);
	} else if (!(out->encoded = malloc(n + 1))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	} else {
		memcpy(out->encoded, s, n + 1);
		out->len = n;
	}
	if (s)
		OPENSSL_cleanse((char *)s, n);
	json_decref(j);
	return rc;
}

void gh_jit_free(struct gh_jit *j)
{
	if (j->encoded) {
		OPENSSL_cleanse(j->encoded, j->len);
		free(j->encoded);
	}
	memset(j, 0, sizeof(*j));
}

enum kiln_rc gh_runner_delete(struct gh_client *c, const struct gh_scope *scope, long long id, struct kiln_err *e)
{
	char path[400], what[300], sn[2 * GH_NAME_MAX + 2];
	struct gh_req q = { .method = "DELETE", .path = path };
	struct gh_reply r;
	enum kiln_rc rc;

	runners_base(scope, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%lld", id);
	scope_name(scope, sn, sizeof(sn));
	snprintf(what, sizeof(what), "github %s: delete runner %lld", sn, id);
	if ((rc = gh_request(c, &q, &r, e)))
		return rc;
	if (r.status == 204 || r.status == 404)
		rc = KILN_OK;
	else if (r.status == 422)
		rc = kiln_fail(e, KILN_E_INVALID, "%s: it is busy running a job", what);
	else
		rc = gh_fail_reply(e, &r, what);
	gh_reply_free(&r);
	return rc;
}

static enum kiln_rc list_runners(struct gh_client *c, const struct gh_scope *scope, const char *name,
				 json_t **items, struct kiln_err *e)
{
	char path[600], what[300], sn[2 * GH_NAME_MAX + 2];
	size_t n;

	runners_base(scope, path, sizeof(path));
	n = strlen(path);
	if (name) {
		n += (size_t)snprintf(path + n, sizeof(path) - n, "?name=");
		if (!gh_urlenc(path, sizeof(path) - 20, &n, name))
			return kiln_fail(e, KILN_E_INVALID, "github: runner name too long");
		snprintf(path + n, sizeof(path) - n, "&per_page=100");
	} else {
		snprintf(path + n, sizeof(path) - n, "?per_page=100");
	}
	scope_name(scope, sn, sizeof(sn));
	snprintf(what, sizeof(what), "github %s: list runners", sn);
	return gh_get_all(c, path, "runners", GH_MAX_RUNNERS, what, items, e);
}

enum kiln_rc gh_runner_find(struct gh_client *c, const struct gh_scope *scope, const char *name,
			    struct gh_runner *out, struct kiln_err *e)
{
	json_t *items;
	size_t i;
	enum kiln_rc rc;

	if ((rc = list_runners(c, scope, name, &items, e)))
		return rc;
	rc = kiln_fail(e, KILN_E_NOTFOUND, "github: no runner named %s", name);
	for (i = 0; i < json_array_size(items); i++)
		if (gh_runner_from_json(json_array_get(items, i), out) && !strcmp(out->name, name)) {
			rc = KILN_OK;
			break;
		}
	json_decref(items);
	return rc;
}

enum kiln_rc gh_runners_list(struct gh_client *c, const struct gh_scope *scope, const char *prefix,
			     struct gh_runner **out, size_t *n, struct kiln_err *e)
{
	json_t *items;
	size_t i, cap = 0, pl = strlen(prefix);
	struct gh_runner one;
	enum kiln_rc rc;

	*out = NULL;
	*n = 0;
	if ((rc = list_runners(c, scope, NULL, &items, e)))
		return rc;
	for (i = 0; i < json_array_size(items); i++) {
		if (!gh_runner_from_json(json_array_get(items, i), &one) || strncmp(one.name, prefix, pl) ||
		    one.name[pl] != '-')
			continue;
		if (VEC_GROW(*out, cap, *n, 1, GH_MAX_RUNNERS)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
			break;
		}
		(*out)[(*n)++] = one;
	}
	json_decref(items);
	if (rc) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

enum kiln_rc gh_jit_create(struct gh_client *c, const struct gh_scope *scope, const struct gh_jit_req *req,
			   struct gh_jit *out, struct kiln_err *e)
{
	char path[400], what[400], sn[2 * GH_NAME_MAX + 2], name[GH_RUNNER_NAME_MAX];
	long long group = req->runner_group_id ? req->runner_group_id : 1;
	struct gh_req q = { .method = "POST", .path = path };
	struct gh_reply r = { 0 };
	json_t *body = NULL, *labels = NULL;
	struct gh_runner old;
	size_t i;
	int tries;
	enum kiln_rc rc;

	memset(out, 0, sizeof(*out));
	scope_name(scope, sn, sizeof(sn));
	if (!req->labels || req->labels->n == 0)
		return kiln_fail(e, KILN_E_INVALID, "github %s: a runner needs at least one label", sn);
	if (req->labels->n > GH_MAX_LABELS)
		return kiln_fail(e, KILN_E_LIMIT, "github %s: %zu labels, more than GitHub's %d", sn, req->labels->n,
				 GH_MAX_LABELS);
	if (req->name && strlen(req->name) < sizeof(name))
		snprintf(name, sizeof(name), "%s", req->name);
	else if ((rc = gh_runner_name(req->prefix, name, sizeof(name), e)))
		return rc;
	runners_base(scope, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/generate-jitconfig");
	if (!(labels = json_array())) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
		goto out;
	}
	for (i = 0; i < req->labels->n; i++)
		if (json_array_append_new(labels, json_string(req->labels->v[i]))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
			goto out;
		}
	body = json_pack("{s:s, s:I, s:O, s:s}", "name", name, "runner_group_id", (json_int_t)group, "labels", labels,
			 "work_folder", req->work_folder ? req->work_folder : "_work");
	if (!body) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
		goto out;
	}
	q.body = body;
	snprintf(what, sizeof(what), "github %s: generate-jitconfig for %s (runner group %lld)", sn, name, group);
	for (tries = 0; tries < 2; tries++) {
		if ((rc = gh_request(c, &q, &r, e)))
			goto out;
		if (r.status != 409 || tries)
			break;
		/* The name is taken (a runner left behind): remove it, once. */
		log_warn("github %s: runner name %s is taken, deleting the old runner", sn, name);
		gh_reply_free(&r);
		if ((rc = gh_runner_find(c, scope, name, &old, e)) == KILN_OK)
			rc = gh_runner_delete(c, scope, old.id, e);
		if (rc && rc != KILN_E_NOTFOUND)
			goto out;
	}
	if (r.status == 201) {
		struct kiln_err pe;

		if ((rc = gh_jit_parse(r.body, r.len, out, &pe)))
			rc = kiln_fail(e, rc, "%s: %s", what, pe.msg);
		else if (req->mask)
			req->mask(req->mask_arg, out->encoded, out->len);
	} else if (r.status == 404) {
		char buf[300];

		rc = kiln_fail(e, KILN_E_NOTFOUND, "%s: %s (no such runner group or repository, or no access)", what,
			       gh_reply_error(&r, buf, sizeof(buf)));
	} else {
		rc = gh_fail_reply(e, &r, what);
	}
out:
	json_decref(labels);
	json_decref(body);
	gh_reply_free(&r);
	return rc;
}

enum kiln_rc gh_job_from_json(const json_t *j, struct gh_job *out, struct kiln_err *e)
{
	const json_t *id = json_object_get(j, "id"), *rid = json_object_get(j, "runner_id");
	const char *status = json_string_value(json_object_get(j, "status"));
	const char *concl = json_string_value(json_object_get(j, "conclusion"));
	const char *rname = json_string_value(json_object_get(j, "runner_name"));

	memset(out, 0, sizeof(*out));
	if (!json_is_object(j) || !json_is_integer(id) || json_integer_value(id) <= 0)
		return kiln_fail(e, KILN_E_SYNTAX, "workflow job: no id");
	if (!status || !*status || strlen(status) >= sizeof(out->status))
		return kiln_fail(e, KILN_E_SYNTAX, "workflow job %lld: no usable status",
				 (long long)json_integer_value(id));
	if (concl && strlen(concl) >= sizeof(out->conclusion))
		return kiln_fail(e, KILN_E_SYNTAX, "workflow job %lld: conclusion too long",
				 (long long)json_integer_value(id));
	out->id = json_integer_value(id);
	out->run_id = json_integer_value(json_object_get(j, "run_id"));
	snprintf(out->status, sizeof(out->status), "%s", status);
	snprintf(out->conclusion, sizeof(out->conclusion), "%s", concl ? concl : "");
	out->runner_id = json_is_integer(rid) ? json_integer_value(rid) : 0;
	snprintf(out->runner_name, sizeof(out->runner_name), "%s", rname ? rname : "");
	return KILN_OK;
}

enum kiln_rc gh_job_get(struct gh_client *c, const char *repo, long long id, struct gh_job *out,
			struct kiln_err *e)
{
	char path[400], what[400];
	struct kiln_err pe;
	json_t *j;
	enum kiln_rc rc;

	snprintf(path, sizeof(path), "/repos/%s/actions/jobs/%lld", repo, id);
	snprintf(what, sizeof(what), "github %s: job %lld", repo, id);
	if ((rc = gh_get_json(c, path, what, &j, e)))
		return rc;
	if ((rc = gh_job_from_json(j, out, &pe)))
		rc = kiln_fail(e, rc, "%s: %s", what, pe.msg);
	json_decref(j);
	return rc;
}
