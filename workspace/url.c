#include "workspace/url.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode n bytes of s into out (size bytes); -1 when too long. */
static int pct_decode(char *out, size_t size, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			i += 2;
		}
		if (o + 1 >= size)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int set_str(char *out, size_t size, const char *s, size_t n)
{
	if (n >= size)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* Length of "scheme" when s starts with "scheme://", else 0. */
static size_t scheme_len(const char *s)
{
	size_t i = 0;

	if (!isalpha((unsigned char)s[0]))
		return 0;
	while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
		i++;
	return strncmp(s + i, "://", 3) == 0 ? i : 0;
}

static enum ws_url_kind kind_of_scheme(const char *s, size_t n)
{
	static const struct { const char *name; enum ws_url_kind kind; } map[] = {
		{ "http", WS_URL_HTTP }, { "https", WS_URL_HTTP }, { "ssh", WS_URL_SSH },
		{ "git+ssh", WS_URL_SSH }, { "ssh+git", WS_URL_SSH }, { "file", WS_URL_FILE },
		{ "git", WS_URL_GIT },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strlen(map[i].name) == n && strncasecmp(map[i].name, s, n) == 0)
			return map[i].kind;
	return WS_URL_OTHER;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* "host[:port]" of [s, end), lower-cased. */
static int parse_host(char *out, size_t size, const char *s, const char *end)
{
	if (set_str(out, size, s, (size_t)(end - s)) < 0)
		return -1;
	lower(out);
	return 0;
}

enum kiln_rc ws_url_parse(const char *url, struct ws_url *u, struct kiln_err *e)
{
	size_t len, slen, i;
	enum kiln_rc rc = KILN_OK;

	memset(u, 0, sizeof(*u));
	if (url == NULL || *url == '\0')
		return kiln_fail(e, KILN_E_INVALID, "repository URL is empty");
	len = strlen(url);
	if (len >= WS_URL_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "repository URL is longer than %d bytes", WS_URL_MAX - 1);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];
		/* Not echoed: the URL may carry a secret. */
		if (c <= 0x20 || c == 0x7f)
			return kiln_fail(e, KILN_E_INVALID,
					 "repository URL has a space or control character at byte %zu", i);
	}
	slen = scheme_len(url);
	if (slen > 0) {
		const char *auth = url + slen + 3;
		const char *auth_end = auth + strcspn(auth, "/?#");
		const char *at = NULL, *p, *hostpart, *colon;
		int n;

		for (p = auth; p < auth_end; p++)
			if (*p == '@')
				at = p;
		hostpart = at ? at + 1 : auth;
		u->kind = kind_of_scheme(url, slen);
		if (parse_host(u->host, sizeof(u->host), hostpart, auth_end) < 0)
			goto too_long;
		if (at) {
			colon = memchr(auth, ':', (size_t)(at - auth));
			if (pct_decode(u->user, sizeof(u->user), auth, (size_t)((colon ? colon : at) - auth)) < 0 ||
			    (colon && pct_decode(u->pass, sizeof(u->pass), colon + 1, (size_t)(at - colon - 1)) < 0))
				goto too_long;
			if (u->kind != WS_URL_SSH || u->pass[0])
				if (set_str(u->userinfo, sizeof(u->userinfo), auth, (size_t)(at - auth)) < 0)
					goto too_long;
		}
		if (u->kind == WS_URL_SSH && at && u->user[0]) {
			colon = memchr(auth, ':', (size_t)(at - auth));
			n = snprintf(u->redacted, sizeof(u->redacted), "%.*s%.*s@%s", (int)(slen + 3), url,
				     (int)((colon ? colon : at) - auth), auth, hostpart);
		} else {
			n = snprintf(u->redacted, sizeof(u->redacted), "%.*s%s", (int)(slen + 3), url, hostpart);
		}
		if (n < 0 || (size_t)n >= sizeof(u->redacted))
			goto too_long;
		return KILN_OK;
	}
	/* scp-like [user@]host:path: a ':' before any '/'. */
	{
		const char *colon = strchr(url, ':');
		const char *slash = strchr(url, '/');

		if (colon && colon > url && (!slash || colon < slash)) {
			const char *at = memchr(url, '@', (size_t)(colon - url));
			const char *h = at ? at + 1 : url;

			u->kind = WS_URL_SSH;
			if (set_str(u->host, sizeof(u->host), h, (size_t)(colon - h)) < 0 ||
			    (at && set_str(u->user, sizeof(u->user), url, (size_t)(at - url)) < 0))
				goto too_long;
			lower(u->host);
		} else {
			u->kind = WS_URL_LOCAL;
		}
		memcpy(u->redacted, url, len + 1);
	}
	return rc;
too_long:
	ws_url_wipe(u);
	return kiln_fail(e, KILN_E_LIMIT, "repository URL has a part that is too long");
}

void ws_url_wipe(struct ws_url *u)
{
	explicit_bzero(u->user, sizeof(u->user));
	explicit_bzero(u->pass, sizeof(u->pass));
	explicit_bzero(u->userinfo, sizeof(u->userinfo));
}

static void scrub_one(char *msg, size_t size, const char *needle)
{
	size_t nlen = strlen(needle);
	char *from = msg, *p;

	if (nlen == 0 || size == 0)
		return;
	while ((p = strstr(from, needle)) != NULL) {
		size_t tail = strlen(p + nlen);

		if (nlen >= 3) {
			memcpy(p, "***", 3);
			memmove(p + 3, p + nlen, tail + 1);
		} else {
			/* Grow the message by 3 - nlen, dropping what no longer fits. */
			size_t used = (size_t)(p - msg) + 3;

			if (used >= size) {
				memset(p, '*', size - 1 - (size_t)(p - msg));
				msg[size - 1] = '\0';
				return;
			}
			if (used + tail >= size)
				tail = size - 1 - used;
			memmove(p + 3, p + nlen, tail);
			memcpy(p, "***", 3);
			p[3 + tail] = '\0';
		}
		from = p + 3; /* the needle may be made of '*' */
	}
}

void ws_url_scrub(const struct ws_url *u, char *msg, size_t size)
{
	scrub_one(msg, size, u->userinfo);
	scrub_one(msg, size, u->pass);
	/* A user name alone in an http(s) URL is usually a token. */
	if (u->kind == WS_URL_HTTP && u->pass[0] == '\0')
		scrub_one(msg, size, u->user);
}

void ws_url_inherit(struct ws_url *child, const struct ws_url *parent)
{
	if (child->kind != WS_URL_HTTP || parent->kind != WS_URL_HTTP)
		return;
	if (child->user[0] || child->pass[0] || strcmp(child->host, parent->host) != 0)
		return;
	memcpy(child->user, parent->user, sizeof(child->user));
	memcpy(child->pass, parent->pass, sizeof(child->pass));
	memcpy(child->userinfo, parent->userinfo, sizeof(child->userinfo));
}

enum kiln_rc ws_url_resolve(const char *base, const char *rel, char *out, size_t size,
			    struct kiln_err *e)
{
	char b[WS_URL_MAX];
	size_t len, floor = 0, slen;
	bool scp = false;
	int n;

	if (strncmp(rel, "./", 2) != 0 && strncmp(rel, "../", 3) != 0) {
		n = snprintf(out, size, "%s", rel);
		goto done;
	}
	if (strlen(base) >= sizeof(b))
		return kiln_fail(e, KILN_E_LIMIT, "submodule base URL too long");
	strcpy(b, base);
	len = strlen(b);
	while (len > 1 && b[len - 1] == '/')
		b[--len] = '\0';
	slen = scheme_len(b);
	if (slen > 0) {
		/* Not above the authority: scheme://host */
		const char *path = strchr(b + slen + 3, '/');
		floor = path ? (size_t)(path - b) : len;
	} else {
		const char *colon = strchr(b, ':'), *slash = strchr(b, '/');
		if (colon && colon > b && (!slash || colon < slash)) {
			scp = true;
			floor = (size_t)(colon - b) + 1;
		}
	}
	for (;;) {
		if (strncmp(rel, "./", 2) == 0) {
			rel += 2;
		} else if (strncmp(rel, "../", 3) == 0) {
			char *cut = strrchr(b + floor, '/');

			if (cut && (size_t)(cut - b) >= floor)
				*cut = '\0';
			else if (scp || floor > 0)
				b[floor] = '\0';
			else
				return kiln_fail(e, KILN_E_INVALID, "submodule URL %s goes above %s", rel, base);
			len = strlen(b);
			rel += 3;
		} else {
			break;
		}
	}
	n = snprintf(out, size, "%s%s%s", b, (scp && len == floor) || len == 0 ? "" : "/", rel);
done:
	if (n < 0 || (size_t)n >= size)
		return kiln_fail(e, KILN_E_LIMIT, "submodule URL too long");
	return KILN_OK;
}

