#include "github/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "lib/log.h"

void gh_b64url(const unsigned char *in, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
		out[o++] = t[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
	}
	out[o] = '\0';
}

enum kiln_rc gh_auth_pat(struct gh_auth *a, struct gh_client *c, const char *token, struct kiln_err *e)
{
	memset(a, 0, sizeof(*a));
	if (!token || !*token)
		return kiln_fail(e, KILN_E_INVALID, "github token: empty");
	if (strpbrk(token, " \t\r\n"))
		return kiln_fail(e, KILN_E_INVALID, "github token: contains white space");
	return gh_client_set_bearer(c, token, e);
}

enum kiln_rc gh_auth_app(struct gh_auth *a, long long app_id, const char *key_file, long long installation,
			 const struct gh_scope *scope, struct kiln_err *e)
{
	FILE *f;
	EVP_PKEY *k;

	memset(a, 0, sizeof(*a));
	if (app_id <= 0)
		return kiln_fail(e, KILN_E_INVALID, "github app_id: %lld is not an App id", app_id);
	if (!(f = fopen(key_file, "re")))
		return kiln_fail_errno(e, "github private_key_file %s", key_file);
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!k || EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		return kiln_fail(e, KILN_E_INVALID, "github private_key_file %s: not a PEM RSA private key", key_file);
	}
	a->app = true;
	a->app_id = app_id;
	a->installation_id = installation;
	a->key = k;
	a->scope = *scope;
	return KILN_OK;
}

void gh_auth_free(struct gh_auth *a)
{
	EVP_PKEY_free(a->key);
	memset(a, 0, sizeof(*a));
}

static enum kiln_rc attach_cb(void *arg, struct gh_client *c, struct kiln_err *e)
{
	return gh_auth_refresh(arg, c, e);
}

void gh_auth_attach(struct gh_auth *a, struct gh_client *c)
{
	c->authorize = attach_cb;
	c->authorize_arg = a;
}

enum kiln_rc gh_auth_jwt(const struct gh_auth *a, long long now, char **jwt, struct kiln_err *e)
{
	static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
	char claims[128], *out = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0, hl, cl, n;
	EVP_MD_CTX *md = NULL;
	enum kiln_rc rc = KILN_OK;

	*jwt = NULL;
	if (!a->app || !a->key)
		return kiln_fail(e, KILN_E_INVALID, "github: a JWT needs an App key");
	/* iat in the past against clock drift; exp within GitHub's 10 minutes. */
	snprintf(claims, sizeof(claims), "{\"iat\":%lld,\"exp\":%lld,\"iss\":\"%lld\"}", now - 60,
		 now + GH_JWT_LIFETIME_S, a->app_id);
	hl = (sizeof(header) - 1 + 2) / 3 * 4;
	cl = (strlen(claims) + 2) / 3 * 4;
	if (!(md = EVP_MD_CTX_new()) || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->key) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)"", 0) != 1) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github: JWT: signing failed");
		goto out;
	}
	n = hl + 1 + cl + 1 + (siglen + 2) / 3 * 4 + 1;
	if (!(out = malloc(n)) || !(sig = malloc(siglen))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
		goto out;
	}
	gh_b64url((const unsigned char *)header, sizeof(header) - 1, out);
	strcat(out, ".");
	gh_b64url((const unsigned char *)claims, strlen(claims), out + strlen(out));
	/* A fresh context: the size query above may have used the first one. */
	EVP_MD_CTX_free(md);
	if (!(md = EVP_MD_CTX_new()) || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->key) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)out, strlen(out)) != 1) {
		rc = kiln_fail(e, KILN_E_IO, "github: JWT: RS256 signing failed");
		goto out;
	}
	strcat(out, ".");
	gh_b64url(sig, siglen, out + strlen(out));
	*jwt = out;
	out = NULL;
out:
	EVP_MD_CTX_free(md);
	free(sig);
	free(out);
	return rc;
}

static long long parse_time(const char *s)
{
	struct tm tm = { 0 };
	const char *end;

	if (!s || !(end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return 0;
	return (long long)timegm(&tm);
}

static enum kiln_rc find_installation(struct gh_auth *a, struct gh_client *c, const char *jwt, struct kiln_err *e)
{
	char path[300], where[300];
	struct gh_req q = { .path = path, .bearer = jwt, .no_cache = true };
	struct gh_reply r;
	json_t *j = NULL, *id;
	enum kiln_rc rc;

	if (a->scope.repo[0]) {
		snprintf(path, sizeof(path), "/repos/%s/%s/installation", a->scope.owner, a->scope.repo);
		snprintf(where, sizeof(where), "repository %s/%s", a->scope.owner, a->scope.repo);
	} else {
		snprintf(path, sizeof(path), "/orgs/%s/installation", a->scope.owner);
		snprintf(where, sizeof(where), "organization %s", a->scope.owner);
	}
	if ((rc = gh_request(c, &q, &r, e)))
		return rc;
	if (r.status == 404) {
		rc = kiln_fail(e, KILN_E_NOTFOUND, "github App %lld is not installed on %s", a->app_id, where);
	} else if (r.status != 200) {
		char buf[64];

		snprintf(buf, sizeof(buf), "github App %lld: installation lookup", a->app_id);
		rc = gh_fail_reply(e, &r, buf);
	} else if (!(j = json_loadb(r.body ? r.body : "", r.len, 0, NULL)) ||
		   !json_is_integer(id = json_object_get(j, "id")) || json_integer_value(id) <= 0) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "github App %lld: the installation of %s has no id", a->app_id, where);
	} else {
		a->installation_id = json_integer_value(id);
		log_info("github: App %lld is installation %lld on %s", a->app_id, a->installation_id, where);
	}
	json_decref(j);
	gh_reply_free(&r);
	return rc;
}

long long gh_auth_slack(const struct gh_auth *a)
{
	long long half = (a->expires_at - a->issued_at) / 2;

	return half < GH_TOKEN_SLACK_S ? (half > 0 ? half : 0) : GH_TOKEN_SLACK_S;
}

enum kiln_rc gh_auth_refresh(struct gh_auth *a, struct gh_client *c, struct kiln_err *e)
{
	long long now = (long long)time(NULL);
	char path[100], what[100];
	struct gh_req q = { .method = "POST", .path = path };
	struct gh_reply r = { 0 };
	json_t *j = NULL;
	const char *tok;
	char *jwt = NULL;
	long long exp;
	enum kiln_rc rc;

	if (!a->app || (c->bearer && !c->bearer_refused && a->expires_at - gh_auth_slack(a) > now))
		return KILN_OK;
	if ((rc = gh_auth_jwt(a, now, &jwt, e)))
		return rc;
	q.bearer = jwt;
	if (!a->installation_id && (rc = find_installation(a, c, jwt, e)))
		goto out;
	snprintf(path, sizeof(path), "/app/installations/%lld/access_tokens", a->installation_id);
	snprintf(what, sizeof(what), "github App %lld: installation token", a->app_id);
	if ((rc = gh_request(c, &q, &r, e)))
		goto out;
	if (r.status != 201) {
		rc = gh_fail_reply(e, &r, what);
		goto out;
	}
	if (!(j = json_loadb(r.body ? r.body : "", r.len, 0, NULL)) ||
	    !(tok = json_string_value(json_object_get(j, "token"))) || !*tok) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: the reply has no token", what);
		goto out;
	}
	exp = parse_time(json_string_value(json_object_get(j, "expires_at")));
	if (exp <= now) /* unreadable or already past: GitHub's documented hour */
		exp = now + 3600;
	if ((rc = gh_client_set_bearer(c, tok, e)))
		goto out;
	a->expires_at = exp;
	a->issued_at = now;
	c->bearer_refused = false;
	OPENSSL_cleanse((char *)tok, strlen(tok)); /* jansson's copy */
	log_debug("github: App %lld: installation token valid for %lld s", a->app_id, exp - now);
out:
	json_decref(j); /* the token in it is in r's body too, wiped below */
	gh_reply_free(&r);
	if (jwt) {
		OPENSSL_cleanse(jwt, strlen(jwt));
		free(jwt);
	}
	return rc;
}
