#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "oci/manifest.h"
#include "oci/ref.h"

/* mt without parameters and spaces, into buf. */
static const char *mt_base(const char *mt, char *buf, size_t size)
{
	size_t n = strcspn(mt, "; \t");

	snprintf(buf, size, "%.*s", (int)n, mt);
	return buf;
}

enum oci_mt_kind oci_mt_kind(const char *mt)
{
	char b[160];

	mt_base(mt, b, sizeof(b));
	if (!strcmp(b, OCI_MT_INDEX) || !strcmp(b, OCI_MT_DOCKER_LIST))
		return OCI_KIND_INDEX;
	if (!strcmp(b, OCI_MT_MANIFEST) || !strcmp(b, OCI_MT_DOCKER_MANIFEST))
		return OCI_KIND_MANIFEST;
	return OCI_KIND_UNKNOWN;
}

static json_t *load(const char *body, size_t len, const char *what, struct kiln_err *e)
{
	json_error_t je;
	json_t *j;

	if (len > OCI_MANIFEST_MAX_BYTES) {
		kiln_fail(e, KILN_E_LIMIT, "%s is %zu bytes, over the %u-byte cap", what, len, OCI_MANIFEST_MAX_BYTES);
		return NULL;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		kiln_fail(e, KILN_E_SYNTAX, "%s is not JSON: line %d: %s", what, je.line, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		kiln_fail(e, KILN_E_SYNTAX, "%s is not a JSON object", what);
		return NULL;
	}
	return j;
}

/* The body's own mediaType must agree with the one the registry sent. */
static enum kiln_rc check_mt(json_t *j, const char *mt, char *out, size_t size, const char *what,
			     struct kiln_err *e)
{
	json_t *m = json_object_get(j, "mediaType");
	char b[160];

	if (m && !json_is_string(m))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: mediaType is not a string", what);
	mt_base(mt ? mt : "", b, sizeof(b));
	if (m && b[0] && strcmp(json_string_value(m), b) != 0)
		return kiln_fail(e, KILN_E_INVALID, "%s: mediaType '%.120s' disagrees with Content-Type '%s'", what,
				 json_string_value(m), b);
	snprintf(out, size, "%s", b[0] ? b : m ? json_string_value(m) : "");
	return KILN_OK;
}

static enum kiln_rc desc_parse(json_t *d, struct oci_desc *o, const char *what, struct kiln_err *e)
{
	json_t *mt = json_object_get(d, "mediaType"), *dg = json_object_get(d, "digest"),
	       *sz = json_object_get(d, "size");

	memset(o, 0, sizeof(*o));
	if (!json_is_object(d))
		return kiln_fail(e, KILN_E_SYNTAX, "%s is not an object", what);
	if (!json_is_string(mt) || json_string_length(mt) >= sizeof(o->media_type))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: mediaType is missing or too long", what);
	if (!json_is_string(dg) || !oci_digest_valid(json_string_value(dg)))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: digest is not sha256: and 64 hex digits", what);
	if (!json_is_integer(sz) || json_integer_value(sz) < 0)
		return kiln_fail(e, KILN_E_SYNTAX, "%s: size is not a non-negative integer", what);
	snprintf(o->media_type, sizeof(o->media_type), "%s", json_string_value(mt));
	snprintf(o->digest, sizeof(o->digest), "%s", json_string_value(dg));
	o->size = (uint64_t)json_integer_value(sz);
	return KILN_OK;
}

static const char *norm_arch(const char *a)
{
	if (!strcmp(a, "x86_64") || !strcmp(a, "x86-64"))
		return "amd64";
	if (!strcmp(a, "aarch64"))
		return "arm64";
	return a;
}

enum kiln_rc oci_index_pick(const char *body, size_t len, const char *mt, const char *os, const char *arch,
			    struct oci_desc *out, struct kiln_err *e)
{
	char seen[256] = "", type[160];
	json_t *j, *ms, *m;
	size_t i, used = 0;
	enum kiln_rc rc;

	j = load(body, len, "image index", e);
	if (!j)
		return e ? e->rc : KILN_E_SYNTAX;
	rc = check_mt(j, mt, type, sizeof(type), "image index", e);
	if (rc != KILN_OK)
		goto out;
	if (type[0] && oci_mt_kind(type) != OCI_KIND_INDEX) {
		rc = kiln_fail(e, KILN_E_INVALID, "image index has media type '%.120s', not an index", type);
		goto out;
	}
	ms = json_object_get(j, "manifests");
	if (!json_is_array(ms)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "image index: manifests is not an array");
		goto out;
	}
	if (json_array_size(ms) > OCI_MAX_INDEX_ENTRIES) {
		rc = kiln_fail(e, KILN_E_LIMIT, "image index has %zu manifests, over the cap of %d",
			       json_array_size(ms), OCI_MAX_INDEX_ENTRIES);
		goto out;
	}
	json_array_foreach(ms, i, m) {
		json_t *p = json_object_get(m, "platform");
		const char *pos, *parch;

		if (!json_is_object(p))
			continue;
		pos = json_string_value(json_object_get(p, "os"));
		parch = json_string_value(json_object_get(p, "architecture"));
		if (!pos || !parch)
			continue;
		if (strcmp(pos, "unknown") != 0 && used + 2 < sizeof(seen)) {
			int k = snprintf(seen + used, sizeof(seen) - used, "%s%.20s/%.20s", used ? ", " : "", pos,
					 parch);

			used = k > 0 && used + (size_t)k < sizeof(seen) ? used + (size_t)k : sizeof(seen) - 1;
		}
		if (strcmp(pos, os) != 0 || strcmp(norm_arch(parch), norm_arch(arch)) != 0)
			continue;
		rc = desc_parse(m, out, "image index entry", e);
		if (rc == KILN_OK && oci_mt_kind(out->media_type) != OCI_KIND_MANIFEST)
			rc = kiln_fail(e, KILN_E_INVALID, "image index entry for %s/%s has media type '%.120s'", os,
				       arch, out->media_type);
		goto out;
	}
	rc = kiln_fail(e, KILN_E_NOTFOUND, "image index has no %s/%s manifest (it has: %s)", os, arch,
		       seen[0] ? seen : "none");
out:
	json_decref(j);
	return rc;
}

static enum kiln_rc layer_comp(struct oci_desc *d, struct kiln_err *e)
{
	static const struct {
		const char *mt;
		enum oci_comp comp;
	} known[] = {
		{ "application/vnd.oci.image.layer.v1.tar", OCI_COMP_NONE },
		{ "application/vnd.oci.image.layer.v1.tar+gzip", OCI_COMP_GZIP },
		{ "application/vnd.oci.image.layer.v1.tar+zstd", OCI_COMP_ZSTD },
		{ "application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_COMP_GZIP },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar", OCI_COMP_NONE },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", OCI_COMP_GZIP },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", OCI_COMP_ZSTD },
		{ "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", OCI_COMP_GZIP },
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(d->media_type, known[i].mt)) {
			d->comp = known[i].comp;
			return KILN_OK;
		}
	return kiln_fail(e, KILN_E_INVALID, "layer %s has media type '%s', which kiln cannot unpack", d->digest,
			 d->media_type);
}

enum kiln_rc oci_manifest_parse(const char *body, size_t len, const char *mt, struct oci_manifest *m,
				struct kiln_err *e)
{
	char type[160];
	json_t *j, *ls, *l;
	enum kiln_rc rc;
	size_t i;

	memset(m, 0, sizeof(*m));
	j = load(body, len, "image manifest", e);
	if (!j)
		return e ? e->rc : KILN_E_SYNTAX;
	rc = check_mt(j, mt, type, sizeof(type), "image manifest", e);
	if (rc != KILN_OK)
		goto out;
	if (type[0] && oci_mt_kind(type) != OCI_KIND_MANIFEST) {
		rc = kiln_fail(e, KILN_E_INVALID, "image manifest has media type '%.120s', which kiln does not know",
			       type);
		goto out;
	}
	if (json_integer_value(json_object_get(j, "schemaVersion")) != 2) {
		rc = kiln_fail(e, KILN_E_INVALID, "image manifest: schemaVersion is not 2");
		goto out;
	}
	rc = desc_parse(json_object_get(j, "config"), &m->config, "image manifest config", e);
	if (rc != KILN_OK)
		goto out;
	if (strcmp(m->config.media_type, OCI_MT_CONFIG) != 0 && strcmp(m->config.media_type, OCI_MT_DOCKER_CONFIG) != 0) {
		rc = kiln_fail(e, KILN_E_INVALID, "image config has media type '%s': an artifact, not a runnable image",
			       m->config.media_type);
		goto out;
	}
	ls = json_object_get(j, "layers");
	if (!json_is_array(ls)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "image manifest: layers is not an array");
		goto out;
	}
	if (json_array_size(ls) > OCI_MAX_LAYERS) {
		rc = kiln_fail(e, KILN_E_LIMIT, "image manifest has %zu layers, over the cap of %d",
			       json_array_size(ls), OCI_MAX_LAYERS);
		goto out;
	}
	m->layers = calloc(json_array_size(ls) + 1, sizeof(*m->layers));
	if (!m->layers) {
		rc = kiln_fail(e, KILN_E_NOMEM, "image manifest: out of memory");
		goto out;
	}
	json_array_foreach(ls, i, l) {
		rc = desc_parse(l, &m->layers[i], "image manifest layer", e);
		if (rc == KILN_OK)
			rc = layer_comp(&m->layers[i], e);
		if (rc != KILN_OK)
			goto out;
		m->n_layers++;
	}
out:
	if (rc != KILN_OK)
		oci_manifest_free(m);
	json_decref(j);
	return rc;
}

void oci_manifest_free(struct oci_manifest *m)
{
	free(m->layers);
	m->layers = NULL;
	m->n_layers = 0;
}

enum kiln_rc oci_config_diff_ids(const char *body, size_t len, size_t n_layers, char (*out)[80],
				 struct kiln_err *e)
{
	json_t *j, *ids, *id;
	enum kiln_rc rc = KILN_OK;
	size_t i;

	j = load(body, len, "image config", e);
	if (!j)
		return e ? e->rc : KILN_E_SYNTAX;
	ids = json_object_get(json_object_get(j, "rootfs"), "diff_ids");
	if (!json_is_array(ids) || json_array_size(ids) != n_layers) {
		rc = kiln_fail(e, KILN_E_INVALID, "image config: rootfs.diff_ids has %zu entries for %zu layers",
			       json_is_array(ids) ? json_array_size(ids) : 0, n_layers);
		goto out;
	}
	json_array_foreach(ids, i, id) {
		if (!json_is_string(id) || !oci_digest_valid(json_string_value(id))) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "image config: diff_ids[%zu] is not sha256: and 64 hex digits", i);
			goto out;
		}
		snprintf(out[i], 80, "%s", json_string_value(id));
	}
out:
	json_decref(j);
	return rc;
}

/* One auth-param value, quoted (with \-escapes) or a token, into out. */
static const char *param_value(const char *p, char *out, size_t size, int *overflow)
{
	size_t n = 0;

	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 < size)
				out[n++] = *p;
			else
				*overflow = 1;
		}
		if (*p == '"')
			p++;
	} else {
		for (; *p && *p != ',' && *p != ' ' && *p != '\t'; p++) {
			if (n + 1 < size)
				out[n++] = *p;
			else
				*overflow = 1;
		}
	}
	out[n] = '\0';
	return p;
}

enum kiln_rc oci_challenge_parse(const char *value, struct oci_challenge *c, struct kiln_err *e)
{
	const char *p = value;
	size_t n;

	memset(c, 0, sizeof(*c));
	while (*p == ' ' || *p == '\t')
		p++;
	n = strcspn(p, " \t");
	if (n == 6 && !strncasecmp(p, "bearer", 6))
		c->scheme = OCI_AUTH_BEARER;
	else if (n == 5 && !strncasecmp(p, "basic", 5))
		c->scheme = OCI_AUTH_BASIC;
	else
		return kiln_fail(e, KILN_E_INVALID, "WWW-Authenticate: scheme '%.*s' is not Bearer or Basic",
				 (int)(n > 32 ? 32 : n), p);
	p += n;
	while (*p) {
		char key[32], val[512];
		int overflow = 0;
		size_t k;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		k = strcspn(p, "= \t,");
		if (p[k] != '=')
			return kiln_fail(e, KILN_E_SYNTAX, "WWW-Authenticate: parameter '%.*s' has no value",
					 (int)(k > 32 ? 32 : k), p);
		snprintf(key, sizeof(key), "%.*s", (int)(k >= sizeof(key) ? sizeof(key) - 1 : k), p);
		p = param_value(p + k + 1, val, sizeof(val), &overflow);
		if (overflow)
			return kiln_fail(e, KILN_E_LIMIT, "WWW-Authenticate: value of '%s' is too long", key);
		if (!strcasecmp(key, "realm"))
			snprintf(c->realm, sizeof(c->realm), "%s", val);
		else if (!strcasecmp(key, "service") && strlen(val) < sizeof(c->service))
			snprintf(c->service, sizeof(c->service), "%s", val);
		else if (!strcasecmp(key, "scope"))
			snprintf(c->scope, sizeof(c->scope), "%s", val);
		else if (!strcasecmp(key, "error") && strlen(val) < sizeof(c->error))
			snprintf(c->error, sizeof(c->error), "%s", val);
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != ',')
			return kiln_fail(e, KILN_E_SYNTAX, "WWW-Authenticate: expected ',' after '%s'", key);
	}
	if (c->scheme == OCI_AUTH_BEARER && !c->realm[0])
		return kiln_fail(e, KILN_E_INVALID, "WWW-Authenticate: Bearer challenge without a realm");
	return KILN_OK;
}
