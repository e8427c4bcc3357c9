#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "oci/ref.h"

int oci_digest_valid(const char *s)
{
	size_t i;

	if (strncmp(s, "sha256:", 7) != 0)
		return 0;
	for (i = 0; i < 64; i++)
		if (!isdigit((unsigned char)s[7 + i]) && !(s[7 + i] >= 'a' && s[7 + i] <= 'f'))
			return 0;
	return s[7 + 64] == '\0';
}

/* A path component: [a-z0-9]+ joined by '.', '_', '__' or runs of '-'. */
static int component_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (isdigit(c) || (c >= 'a' && c <= 'z'))
			continue;
		if (c == '-')
			continue;
		if (c == '.' || c == '_') {
			if (c == '_' && i + 1 < n && s[i + 1] == '_' && (i + 2 >= n || isalnum((unsigned char)s[i + 2]))) {
				i++;
				continue;
			}
			if (i + 1 < n && isalnum((unsigned char)s[i + 1]))
				continue;
		}
		return 0;
	}
	return 1;
}

static int host_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n >= 256)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '-' && c != ':' && c != '[' && c != ']')
			return 0;
	}
	return 1;
}

static int tag_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 128 || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return 0;
	return 1;
}

enum kiln_rc oci_ref_parse(const char *s, struct oci_ref *r, struct kiln_err *e)
{
	char buf[OCI_REF_MAX + 1];
	char *at, *name, *slash, *colon, *p, *c;
	size_t n;

	memset(r, 0, sizeof(*r));
	n = strlen(s);
	if (n == 0)
		return kiln_fail(e, KILN_E_SYNTAX, "image reference is empty");
	if (n > OCI_REF_MAX)
		return kiln_fail(e, KILN_E_SYNTAX, "image reference '%.64s...' is longer than %d characters",
				 s, OCI_REF_MAX);
	memcpy(buf, s, n + 1);
	at = strchr(buf, '@');
	if (at) {
		*at = '\0';
		if (!oci_digest_valid(at + 1))
			return kiln_fail(e, KILN_E_SYNTAX,
					 "image reference '%s': digest '%s' is not sha256: and 64 lower-case hex digits",
					 s, at + 1);
		snprintf(r->digest, sizeof(r->digest), "%s", at + 1);
	}
	name = buf;
	/* A tag is a ':' after the last '/'. */
	slash = strrchr(name, '/');
	colon = strrchr(slash ? slash : name, ':');
	if (colon) {
		*colon = '\0';
		if (!tag_valid(colon + 1))
			return kiln_fail(e, KILN_E_SYNTAX, "image reference '%s': tag '%s' is not valid", s,
					 colon + 1);
		snprintf(r->tag, sizeof(r->tag), "%s", colon + 1);
	}
	slash = strchr(name, '/');
	if (slash && (memchr(name, '.', (size_t)(slash - name)) || memchr(name, ':', (size_t)(slash - name)) ||
		      (slash - name == 9 && memcmp(name, "localhost", 9) == 0))) {
		goto host;
	}
	if (slash) {
		for (p = name; p < slash; p++)
			if (isupper((unsigned char)*p))
				goto host;
	}
	snprintf(r->domain, sizeof(r->domain), "docker.io");
	snprintf(r->host, sizeof(r->host), "registry-1.docker.io");
	goto path;
host:
	if (!host_valid(name, (size_t)(slash - name)))
		return kiln_fail(e, KILN_E_SYNTAX, "image reference '%s': registry host '%.*s' is not valid", s,
				 (int)(slash - name), name);
	snprintf(r->domain, sizeof(r->domain), "%.*s", (int)(slash - name), name);
	name = slash + 1;
	if (strcmp(r->domain, "index.docker.io") == 0 || strcmp(r->domain, "docker.io") == 0) {
		snprintf(r->domain, sizeof(r->domain), "docker.io");
		snprintf(r->host, sizeof(r->host), "registry-1.docker.io");
	} else {
		snprintf(r->host, sizeof(r->host), "%s", r->domain);
	}
path:
	if (strcmp(r->domain, "docker.io") == 0 && !strchr(name, '/')) {
		if (snprintf(r->path, sizeof(r->path), "library/%s", name) >= (int)sizeof(r->path))
			return kiln_fail(e, KILN_E_SYNTAX, "image reference '%s': repository name is too long", s);
	} else if (snprintf(r->path, sizeof(r->path), "%s", name) >= (int)sizeof(r->path)) {
		return kiln_fail(e, KILN_E_SYNTAX, "image reference '%s': repository name is too long", s);
	}
	for (p = r->path; *p; p = c + 1) {
		c = strchr(p, '/');
		if (!c)
			c = p + strlen(p);
		if (!component_valid(p, (size_t)(c - p)))
			return kiln_fail(e, KILN_E_SYNTAX,
					 "image reference '%s': repository component '%.*s' is not valid (lower-case letters, digits and separators)",
					 s, (int)(c - p), p);
		if (!*c)
			break;
	}
	if (!r->tag[0] && !r->digest[0])
		snprintf(r->tag, sizeof(r->tag), "latest");
	return KILN_OK;
}

char *oci_ref_str(const struct oci_ref *r, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s%s%s%s%s", r->domain, r->path, r->tag[0] ? ":" : "", r->tag,
		 r->digest[0] ? "@" : "", r->digest);
	return buf;
}
