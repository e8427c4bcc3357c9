/* Repository URLs as a job gives them: parsing, the form without
 * credentials that is stored and logged, scrubbing secrets out of messages,
 * and resolving relative submodule URLs. */
#ifndef KILN_WSURL_H
#define KILN_WSURL_H

#include <stddef.h>

#include "lib/result.h"

#define WS_URL_MAX 2048

enum ws_url_kind {
	WS_URL_LOCAL,  /* a path: /srv/repo.git, ./repo */
	WS_URL_FILE,   /* file:///srv/repo.git */
	WS_URL_HTTP,   /* http:// or https:// */
	WS_URL_SSH,    /* ssh://, git+ssh://, or scp-like user@host:path */
	WS_URL_GIT,    /* git:// */
	WS_URL_OTHER,  /* any other scheme://: passed to libgit2 as is */
};

/* A parsed repository URL. user and pass hold secrets: wipe with
 * ws_url_wipe() when done. */
struct ws_url {
	enum ws_url_kind kind;
	char redacted[WS_URL_MAX]; /* what is stored and logged: no password, and
				    * for http(s) no user either */
	char host[256];            /* lower-case host[:port] ("" for paths) */
	char user[256];            /* percent-decoded; "" when none */
	char pass[1024];           /* percent-decoded; "" when none */
	char userinfo[1280];       /* the raw user[:pass] of an http(s) URL, for
				    * scrubbing messages; "" otherwise */
};

/* Parse url (at most WS_URL_MAX-1 bytes, no control characters or spaces).
 * http(s): the whole user[:password]@ part is a credential (a token alone in
 * the user part is common) and is removed from the redacted form. ssh: the
 * user name is kept (it is part of the address), a password is removed.
 * Other forms are kept as they are. */
enum kiln_rc ws_url_parse(const char *url, struct ws_url *u, struct kiln_err *e);

/* Overwrite the secrets in u with zeros. */
void ws_url_wipe(struct ws_url *u);

/* Replace every occurrence of u's secrets in the NUL-terminated msg (in
 * place, within size bytes) with "***". */
void ws_url_scrub(const struct ws_url *u, char *msg, size_t size);

/* Give child the credentials of parent when child has none of its own and
 * both are http(s) URLs of the same host (relative submodule URLs on the same
 * GitLab instance work with the job token). */
void ws_url_inherit(struct ws_url *child, const struct ws_url *parent);

/* Resolve a submodule URL: one starting with "./" or "../" is relative to
 * base (a repository URL or path; each "../" drops one path component of
 * it, as git does); others are copied. Into out (size bytes). */
enum kiln_rc ws_url_resolve(const char *base, const char *rel, char *out, size_t size,
			    struct kiln_err *e);

#endif
