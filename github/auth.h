/* Credentials for the GitHub API: a personal access token, or a GitHub
 * App (an RS256 JWT signed with its private key, iat 60 s in the past and
 * exp 9 minutes ahead, iss the app id, exchanged for an installation token
 * that is refreshed GH_TOKEN_SLACK_S before it expires, or half way through
 * its life when that is shorter: GitHub Enterprise Server may issue
 * short-lived tokens, and a fixed slack would then renew at every request). gh_auth_attach
 * makes the client call gh_auth_refresh before each request, so callers
 * never see an expired token. Tokens are wiped from memory when replaced. */
#ifndef KILN_GHAUTH_H
#define KILN_GHAUTH_H

#include <stdbool.h>
#include <time.h>

#include "github/client.h"
#include "lib/result.h"

#define GH_TOKEN_SLACK_S 300     /* refresh an installation token this long before its expiry */
#define GH_JWT_LIFETIME_S 540    /* exp - now; GitHub refuses more than 600 */

struct gh_auth {
	bool app;
	long long app_id;
	long long installation_id; /* 0: looked up on first use */
	void *key;                 /* EVP_PKEY * of the App */
	struct gh_scope scope;     /* where the installation is looked up */
	long long expires_at;      /* of the installation token, epoch s; 0: none yet */
	long long issued_at;       /* when it came, epoch s */
};

/* A PAT: set as c's bearer, nothing to refresh. */
enum kiln_rc gh_auth_pat(struct gh_auth *a, struct gh_client *c, const char *token, struct kiln_err *e);

/* An App: app_id and the PEM private key in key_file (RSA); installation
 * 0 to look it up in scope. Nothing is asked of GitHub yet. KILN_E_INVALID
 * naming key_file when it does not hold an RSA private key. */
enum kiln_rc gh_auth_app(struct gh_auth *a, long long app_id, const char *key_file, long long installation,
			 const struct gh_scope *scope, struct kiln_err *e);

/* Make c ask a for a valid token before each request. */
void gh_auth_attach(struct gh_auth *a, struct gh_client *c);

/* The App's JWT for the time now (epoch s) into *jwt (caller frees). */
enum kiln_rc gh_auth_jwt(const struct gh_auth *a, long long now, char **jwt, struct kiln_err *e);

/* How long before expires_at the token is renewed: GH_TOKEN_SLACK_S, or
 * half its lifetime when that is shorter. */
long long gh_auth_slack(const struct gh_auth *a);

/* For an App: find the installation when not known (GET
 * /repos/{o}/{r}/installation or /orgs/{org}/installation; 404: "the App
 * is not installed on ..."), then, when c's token is missing, was refused
 * (a 401) or expires within gh_auth_slack, POST /app/installations/{id}/access_tokens and
 * set it as c's bearer. A PAT: nothing. */
enum kiln_rc gh_auth_refresh(struct gh_auth *a, struct gh_client *c, struct kiln_err *e);

void gh_auth_free(struct gh_auth *a);

/* base64url without padding of n bytes into out (at least 4*(n+2)/3+1). */
void gh_b64url(const unsigned char *in, size_t n, char *out);

#endif
