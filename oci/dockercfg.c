#include "oci/dockercfg.h"

#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

bool oci_auth_key_matches(const char *key, const char *host)
{
	char h[256];
	const char *s = key;
	size_t i;

	if (!strncmp(s, "https://", 8))
		s += 8;
	else if (!strncmp(s, "http://", 7))
		s += 7;
	for (i = 0; s[i] && s[i] != '/' && i + 1 < sizeof(h); i++)
		h[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
	h[i] = '\0';
	if (!strcmp(h, "index.docker.io") || !strcmp(h, "registry-1.docker.io"))
		snprintf(h, sizeof(h), "docker.io");
	return !strcmp(h, host);
}

/* key for a one-line message: at most size - 1 bytes, control bytes as '?'. */
static const char *printable(const char *key, char *buf, size_t size)
{
	size_t i;

	for (i = 0; key[i] && i + 1 < size; i++)
		buf[i] = (unsigned char)key[i] < 32 || key[i] == 127 ? '?' : key[i];
	buf[i] = '\0';
	return buf;
}

/* An optional string member: 0 (absent, or *out set), -1 when it is
 * something else. */
static int opt_string(json_t *o, const char *name, const char **out)
{
	json_t *v = json_object_get(o, name);

	*out = json_string_value(v);
	return v && !json_is_string(v) ? -1 : 0;
}

/* auth, base64 of "user:password" as docker writes it (padded), into
 * user and pass. */
static enum kiln_rc decode_auth(const char *auth, const char *what, const char *key, char *user, char *pass,
				struct kiln_err *e)
{
	unsigned char buf[2 * OCI_DOCKERCFG_FIELD_MAX];
	size_t len = strlen(auth);
	char *colon;
	int n;

	if (len % 4 || len / 4 * 3 >= sizeof(buf) ||
	    strspn(auth, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != len ||
	    (n = EVP_DecodeBlock(buf, (const unsigned char *)auth, (int)len)) < 0)
		return kiln_fail(e, KILN_E_INVALID, "%s: auths[\"%s\"].auth: not base64 (of user:password)", what, key);
	/* EVP_DecodeBlock counts the padding as bytes. */
	while (len && auth[len - 1] == '=' && n > 0) {
		len--;
		n--;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', (size_t)n))
		return kiln_fail(e, KILN_E_INVALID, "%s: auths[\"%s\"].auth: holds a NUL byte", what, key);
	colon = strchr((char *)buf, ':');
	if (!colon || colon == (char *)buf)
		return kiln_fail(e, KILN_E_INVALID, "%s: auths[\"%s\"].auth: not user:password (%s)", what, key,
				 colon ? "the user is empty" : "no ':'");
	*colon = '\0';
	if (strlen((char *)buf) >= OCI_DOCKERCFG_FIELD_MAX || strlen(colon + 1) >= OCI_DOCKERCFG_FIELD_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "%s: auths[\"%s\"].auth: too long", what, key);
	strcpy(user, (char *)buf);
	strcpy(pass, colon + 1);
	return KILN_OK;
}

/* One auths entry, already known to name the host. */
static enum kiln_rc read_entry(json_t *entry, const char *what, const char *key, char *user, char *pass,
			       struct kiln_err *e)
{
	const char *auth, *u, *pw, *tok;

	if (!json_is_object(entry))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: auths[\"%s\"]: not an object", what, key);
	if (opt_string(entry, "auth", &auth) || opt_string(entry, "username", &u) ||
	    opt_string(entry, "password", &pw) || opt_string(entry, "identitytoken", &tok))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: auths[\"%s\"]: auth, username, password and identitytoken "
				 "must be strings", what, key);
	if (auth && *auth)
		return decode_auth(auth, what, key, user, pass, e);
	if (u && *u) {
		if (!pw)
			return kiln_fail(e, KILN_E_INVALID, "%s: auths[\"%s\"]: username without password", what, key);
		if (strlen(u) >= OCI_DOCKERCFG_FIELD_MAX || strlen(pw) >= OCI_DOCKERCFG_FIELD_MAX)
			return kiln_fail(e, KILN_E_LIMIT, "%s: auths[\"%s\"]: username or password too long", what, key);
		strcpy(user, u);
		strcpy(pass, pw);
		return KILN_OK;
	}
	if (tok && *tok)
		return kiln_fail(e, KILN_E_INVALID, "%s: auths[\"%s\"].identitytoken: not supported by kiln (use "
				 "auth or username and password)", what, key);
	return kiln_fail(e, KILN_E_INVALID, "%s: auths[\"%s\"]: no auth and no username (a credential helper's "
			 "entry? kiln runs none)", what, key);
}

enum kiln_rc oci_dockercfg_lookup(const char *text, size_t len, const char *what, const char *host, char *user,
				  char *pass, struct kiln_err *e)
{
	json_error_t jerr;
	json_t *doc, *auths, *helpers, *v;
	const char *key, *store;
	char k[128];
	enum kiln_rc rc = KILN_OK;

	if (len > OCI_DOCKERCFG_MAX_BYTES)
		return kiln_fail(e, KILN_E_LIMIT, "%s: larger than %u bytes", what, OCI_DOCKERCFG_MAX_BYTES);
	doc = json_loadb(text, len, 0, &jerr);
	if (!doc)
		return kiln_fail(e, KILN_E_SYNTAX, "%s: line %d: %s", what, jerr.line, jerr.text);
	auths = json_object_get(doc, "auths");
	helpers = json_object_get(doc, "credHelpers");
	if (!json_is_object(doc))
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: not a JSON object", what);
	else if (auths && !json_is_object(auths))
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: auths: not an object", what);
	else if (helpers && !json_is_object(helpers))
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: credHelpers: not an object", what);
	else if (opt_string(doc, "credsStore", &store))
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s: credsStore: not a string", what);
	else if (store && *store)
		/* docker asks the store before auths: what auths holds is stale. */
		rc = kiln_fail(e, KILN_E_INVALID, "%s: credsStore (docker-credential-%s) is not supported: kiln runs "
			       "no credential helper; put the credentials in auths", what, printable(store, k, 64));
	if (rc)
		goto out;
	json_object_foreach(helpers, key, v)
		if (oci_auth_key_matches(key, host)) {
			rc = kiln_fail(e, KILN_E_INVALID, "%s: credHelpers[\"%s\"] is not supported: kiln runs no "
				       "credential helper; put the credentials in auths", what,
				       printable(key, k, sizeof(k)));
			goto out;
		}
	rc = KILN_E_NOTFOUND;
	json_object_foreach(auths, key, v)
		if (oci_auth_key_matches(key, host)) {
			rc = read_entry(v, what, printable(key, k, sizeof(k)), user, pass, e);
			goto out;
		}
	kiln_fail(e, rc, "%s: auths has no entry for %s", what, host);
out:
	json_decref(doc);
	return rc;
}
