#include "gitlab/registration.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "runner/config.h"
#include "lib/atomicfile.h"
#include "lib/paths.h"
#include "lib/sha256.h"
#include "lib/vec.h"

#define CONFIG_MAX_BYTES (1 << 20)

/* --- system_id ----------------------------------------------------------- */

bool glc_system_id_valid(const char *s)
{
	size_t i;

	if (!s || (s[0] != 's' && s[0] != 'r') || s[1] != '_')
		return false;
	for (i = 2; i < 14; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return s[14] == '\0';
}

void glc_system_id_from_machine_id(const char *machine_id, char out[GLC_SYSTEM_ID_SIZE])
{
	static const char app[] = "gitlab-runner";
	uint8_t mac[32];
	char hex[65];

	sha256_hmac(machine_id, strlen(machine_id), app, sizeof(app) - 1, mac);
	sha256_hex(mac, hex);
	snprintf(out, GLC_SYSTEM_ID_SIZE, "s_%.12s", hex);
}

static bool read_machine_id(char *buf, size_t size)
{
	static const char *const files[] = { "/etc/machine-id", "/var/lib/dbus/machine-id" };
	size_t i, n;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		FILE *f = fopen(files[i], "re");

		if (!f)
			continue;
		n = fread(buf, 1, size - 1, f);
		fclose(f);
		buf[n] = '\0';
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		if (n > 0)
			return true;
	}
	return false;
}

/* The folder of path (".", when it has none) into dir. */
static void dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, size, ".");
	else if (slash == path)
		snprintf(dir, size, "/");
	else
		snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

enum kiln_rc glc_system_id(const char *config_path, char out[GLC_SYSTEM_ID_SIZE], struct kiln_err *e)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char dir[PATH_MAX], path[PATH_MAX + 32], mid[256], line[64];
	FILE *f;
	size_t i;

	dir_of(config_path, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, GLC_SYSTEM_ID_FILE);
	if ((f = fopen(path, "re"))) {
		size_t n = fread(line, 1, sizeof(line) - 1, f);

		fclose(f);
		line[n] = '\0';
		line[strcspn(line, "\r\n ")] = '\0';
		if (glc_system_id_valid(line)) {
			snprintf(out, GLC_SYSTEM_ID_SIZE, "%s", line);
			return KILN_OK;
		}
	}
	if (read_machine_id(mid, sizeof(mid))) {
		glc_system_id_from_machine_id(mid, out);
	} else {
		uint8_t r[12];

		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
			return kiln_fail_errno(e, "getrandom");
		out[0] = 'r';
		out[1] = '_';
		for (i = 0; i < 12; i++)
			out[2 + i] = alnum[r[i] % (sizeof(alnum) - 1)];
		out[14] = '\0';
	}
	if (kiln_mkdir_p(dir) < 0)
		return kiln_fail_errno(e, "creating %s", dir);
	snprintf(line, sizeof(line), "%s\n", out);
	return kiln_write_atomic(path, line, strlen(line), 0600, e);
}

/* --- the configuration file ---------------------------------------------- */

struct outbuf {
	char *p;
	size_t len, cap;
	bool over;
};

static int out_write(void *data, unsigned char *buf, size_t n)
{
	struct outbuf *o = data;

	if (o->len + n + 1 > CONFIG_MAX_BYTES) {
		o->over = true;
		return 0;
	}
	if (VEC_GROW(o->p, o->cap, o->len, n + 1, CONFIG_MAX_BYTES))
		return 0;
	memcpy(o->p + o->len, buf, n);
	o->len += n;
	o->p[o->len] = '\0';
	return 1;
}

/* Copy src's node n into dst; the new node's index, 0 on failure. */
static int copy_node(yaml_document_t *dst, yaml_document_t *src, yaml_node_t *n, int depth)
{
	int idx = 0;

	if (!n || depth > 64)
		return 0;
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return yaml_document_add_scalar(dst, n->tag, n->data.scalar.value, (int)n->data.scalar.length,
						n->data.scalar.style);
	case YAML_SEQUENCE_NODE: {
		yaml_node_item_t *it;

		idx = yaml_document_add_sequence(dst, n->tag, YAML_BLOCK_SEQUENCE_STYLE);
		for (it = n->data.sequence.items.start; idx && it < n->data.sequence.items.top; it++) {
			int c = copy_node(dst, src, yaml_document_get_node(src, *it), depth + 1);
			if (!c || !yaml_document_append_sequence_item(dst, idx, c))
				return 0;
		}
		return idx;
	}
	case YAML_MAPPING_NODE: {
		yaml_node_pair_t *p;

		idx = yaml_document_add_mapping(dst, n->tag, YAML_BLOCK_MAPPING_STYLE);
		for (p = n->data.mapping.pairs.start; idx && p < n->data.mapping.pairs.top; p++) {
			int k = copy_node(dst, src, yaml_document_get_node(src, p->key), depth + 1);
			int v = copy_node(dst, src, yaml_document_get_node(src, p->value), depth + 1);
			if (!k || !v || !yaml_document_append_mapping_pair(dst, idx, k, v))
				return 0;
		}
		return idx;
	}
	default:
		return 0;
	}
}

static int add_str(yaml_document_t *d, const char *s)
{
	return yaml_document_add_scalar(d, NULL, (yaml_char_t *)s, (int)strlen(s), YAML_ANY_SCALAR_STYLE);
}

static bool add_pair(yaml_document_t *d, int map, const char *k, const char *v)
{
	int kn, vn;

	if (!v)
		return true;
	kn = add_str(d, k);
	vn = kn ? add_str(d, v) : 0;
	return vn && yaml_document_append_mapping_pair(d, map, kn, vn);
}

static bool add_time(yaml_document_t *d, int map, const char *k, long long t)
{
	char v[32];

	if (t <= 0)
		return true;
	snprintf(v, sizeof(v), "%lld", t);
	return add_pair(d, map, k, v);
}

/* A mapping node for r in d; 0 on failure. */
static int runner_node(yaml_document_t *d, const struct glc_runner *r)
{
	int m = yaml_document_add_mapping(d, NULL, YAML_BLOCK_MAPPING_STYLE);

	if (!m || !add_pair(d, m, "name", r->name) || !add_pair(d, m, "url", r->url) ||
	    !add_pair(d, m, "token", r->token) || !add_time(d, m, "token_obtained_at", r->token_obtained_at) ||
	    !add_time(d, m, "token_expires_at", r->token_expires_at) ||
	    !add_pair(d, m, "tls_ca_file", r->tls_ca_file) || !add_pair(d, m, "executor", r->executor) ||
	    !add_pair(d, m, "image", r->image))
		return 0;
	return m;
}

/* A new token for the runner with url and old_token (rewrite()). */
struct token_update {
	const char *url, *old_token, *new_token;
	long long obtained_at, expires_at;
	bool done;
};

/* The scalar value of key in the mapping n, or NULL. */
static const char *map_get(yaml_document_t *doc, yaml_node_t *n, const char *key)
{
	yaml_node_pair_t *p;

	if (!n || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);

		if (k && k->type == YAML_SCALAR_NODE && v && v->type == YAML_SCALAR_NODE &&
		    !strcmp((const char *)k->data.scalar.value, key))
			return (const char *)v->data.scalar.value;
	}
	return NULL;
}

/* Copy the runner mapping n, with u's token and times when it is u's
 * runner; the new node's index, 0 on failure. */
static int copy_runner(yaml_document_t *dst, yaml_document_t *src, yaml_node_t *n, struct token_update *u)
{
	const char *url = map_get(src, n, "url"), *token = map_get(src, n, "token");
	yaml_node_pair_t *p;
	int m;

	if (!u || u->done || !url || !token || strcmp(url, u->url) || strcmp(token, u->old_token))
		return copy_node(dst, src, n, 1);
	m = yaml_document_add_mapping(dst, n->tag, YAML_BLOCK_MAPPING_STYLE);
	for (p = n->data.mapping.pairs.start; m && p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(src, p->key);
		const char *name = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
		int kn, vn;

		if (!strcmp(name, "token_obtained_at") || !strcmp(name, "token_expires_at"))
			continue;
		if (!strcmp(name, "token")) {
			if (!add_pair(dst, m, "token", u->new_token) ||
			    !add_time(dst, m, "token_obtained_at", u->obtained_at) ||
			    !add_time(dst, m, "token_expires_at", u->expires_at))
				return 0;
			continue;
		}
		kn = copy_node(dst, src, k, 2);
		vn = copy_node(dst, src, yaml_document_get_node(src, p->value), 2);
		if (!kn || !vn || !yaml_document_append_mapping_pair(dst, m, kn, vn))
			return 0;
	}
	u->done = m != 0;
	return m;
}

/* Read path's YAML (an empty document when the file is missing). */
static enum kiln_rc load_doc(const char *path, yaml_document_t *doc, bool *loaded, struct kiln_err *e)
{
	yaml_parser_t parser;
	FILE *f = fopen(path, "re");
	enum kiln_rc rc = KILN_OK;

	*loaded = false;
	if (!f) {
		if (errno == ENOENT)
			return KILN_OK;
		return kiln_fail_errno(e, "config %s", path);
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		return kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, doc))
		rc = kiln_fail(e, KILN_E_SYNTAX, "%s:%lu: %s", path, (unsigned long)parser.problem_mark.line + 1,
			       parser.problem ? parser.problem : "invalid YAML");
	else
		*loaded = true;
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

/* Rewrite path: a copy of its document where the runners list loses the
 * entries marked in drop and gains add (when not NULL). */
static enum kiln_rc rewrite(const char *path, const struct glc_runner *add, const bool *drop, size_t n_drop,
			    struct token_update *upd, struct kiln_err *e)
{
	static const char header[] = "# kiln configuration. `kiln register`, `kiln unregister` and token renewals\n"
				     "# rewrite this file: keys and values are kept, comments are not.\n";
	yaml_document_t src, dst;
	yaml_emitter_t em;
	struct outbuf out = { 0 };
	struct kiln_config check;
	yaml_node_t *root = NULL;
	bool loaded = false, dst_ready = false, em_ready = false, have_runners = false;
	enum kiln_rc rc;
	char dir[PATH_MAX];
	int droot = 0;

	if ((rc = load_doc(path, &src, &loaded, e)))
		return rc;
	if (loaded)
		root = yaml_document_get_root_node(&src);
	if (root && root->type == YAML_SCALAR_NODE && !root->data.scalar.length)
		root = NULL;
	if (root && root->type != YAML_MAPPING_NODE) {
		rc = kiln_fail(e, KILN_E_INVALID, "config %s: the top level is not a mapping", path);
		goto out;
	}
	if (!yaml_document_initialize(&dst, NULL, NULL, NULL, 1, 1)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
		goto out;
	}
	dst_ready = true;
	droot = yaml_document_add_mapping(&dst, NULL, YAML_BLOCK_MAPPING_STYLE);
	if (root) {
		yaml_node_pair_t *p;

		for (p = root->data.mapping.pairs.start; droot && p < root->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(&src, p->key);
			yaml_node_t *v = yaml_document_get_node(&src, p->value);
			int kn = copy_node(&dst, &src, k, 0), vn;

			if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, "runners") &&
			    v && v->type == YAML_SEQUENCE_NODE) {
				yaml_node_item_t *it;
				size_t i = 0;

				have_runners = true;
				vn = yaml_document_add_sequence(&dst, NULL, YAML_BLOCK_SEQUENCE_STYLE);
				for (it = v->data.sequence.items.start; vn && it < v->data.sequence.items.top; it++, i++) {
					int c;

					if (drop && i < n_drop && drop[i])
						continue;
					c = copy_runner(&dst, &src, yaml_document_get_node(&src, *it), upd);
					if (!c || !yaml_document_append_sequence_item(&dst, vn, c))
						vn = 0;
				}
				if (vn && add) {
					int c = runner_node(&dst, add);
					if (!c || !yaml_document_append_sequence_item(&dst, vn, c))
						vn = 0;
				}
			} else {
				vn = copy_node(&dst, &src, v, 0);
			}
			if (!kn || !vn || !yaml_document_append_mapping_pair(&dst, droot, kn, vn))
				droot = 0;
		}
	}
	if (droot && add && !have_runners) {
		int kn = add_str(&dst, "runners"), vn = yaml_document_add_sequence(&dst, NULL, YAML_BLOCK_SEQUENCE_STYLE);
		int c = vn ? runner_node(&dst, add) : 0;

		if (!kn || !c || !yaml_document_append_sequence_item(&dst, vn, c) ||
		    !yaml_document_append_mapping_pair(&dst, droot, kn, vn))
			droot = 0;
	}
	if (!droot) {
		rc = kiln_fail(e, KILN_E_NOMEM, "config %s: cannot build the new document", path);
		goto out;
	}
	if (upd && !upd->done) {
		rc = kiln_fail(e, KILN_E_NOTFOUND, "config %s: no runner for %s with that token any more", path, upd->url);
		goto out;
	}
	out_write(&out, (unsigned char *)header, sizeof(header) - 1);
	if (!yaml_emitter_initialize(&em)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
		goto out;
	}
	em_ready = true;
	yaml_emitter_set_output(&em, out_write, &out);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, 1 << 20);
	/* yaml_emitter_dump takes the document, whatever happens. */
	dst_ready = false;
	if (!yaml_emitter_open(&em) || !yaml_emitter_dump(&em, &dst) || !yaml_emitter_close(&em) || out.over ||
	    !out.p) {
		rc = kiln_fail(e, out.over ? KILN_E_LIMIT : KILN_E_NOMEM, "config %s: cannot write YAML%s%s", path,
			       em.problem ? ": " : "", em.problem ? em.problem : "");
		goto out;
	}
	/* Never write a file kiln cannot read back. */
	if ((rc = kiln_config_defaults(&check, e)))
		goto out;
	rc = kiln_config_parse(&check, path, out.p, out.len, e);
	kiln_config_free(&check);
	if (rc)
		goto out;
	dir_of(path, dir, sizeof(dir));
	if (kiln_mkdir_p(dir) < 0) {
		rc = kiln_fail_errno(e, "creating %s", dir);
		goto out;
	}
	rc = kiln_write_atomic(path, out.p, out.len, 0600, e);
out:
	if (em_ready)
		yaml_emitter_delete(&em);
	if (dst_ready)
		yaml_document_delete(&dst);
	if (loaded)
		yaml_document_delete(&src);
	free(out.p);
	return rc;
}

enum kiln_rc glc_config_add(const char *path, const struct glc_runner *r, struct kiln_err *e)
{
	return rewrite(path, r, NULL, 0, NULL, e);
}

enum kiln_rc glc_config_remove(const char *path, const bool *drop, size_t n, struct kiln_err *e)
{
	return rewrite(path, NULL, drop, n, NULL, e);
}

enum kiln_rc glc_config_set_token(const char *path, const char *url, const char *old_token, const char *new_token,
				  long long obtained_at, long long expires_at, struct kiln_err *e)
{
	struct token_update u = { url, old_token, new_token, obtained_at, expires_at, false };

	return rewrite(path, NULL, NULL, 0, &u, e);
}
