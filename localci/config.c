#include "localci/config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/treewalk.h"

#define GLOB_MAX_MATCHES CICONFIG_MAX_INCLUDES
#define GLOB_MAX_ENTRIES 100000
#define GLOB_MAX_DEPTH 32

static enum kiln_rc fail_at(struct kiln_err *e, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static enum kiln_rc fail_at(struct kiln_err *e, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
{
	char what[420];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(e, rc, "%s:%u: %s", n->file, n->line, what);
}

static void warn_at(const struct ciconfig_ctx *c, const struct cy_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn_at(const struct ciconfig_ctx *c, const struct cy_node *n, const char *fmt, ...)
{
	char what[420], msg[600];
	va_list ap;

	if (!c->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%u: %s", n->file, n->line, what);
	c->warn(c->warn_arg, msg);
}

bool ciconfig_is_keyword(const char *key)
{
	static const char *const keywords[] = {
		"stages", "types", "variables", "default", "include", "workflow",
		"image", "services", "cache", "before_script", "after_script", NULL,
	};
	size_t i;

	for (i = 0; keywords[i]; i++)
		if (!strcmp(keywords[i], key))
			return true;
	return false;
}

/* ---- include ---------------------------------------------------------- */

struct inc {
	const struct ciconfig_ctx *c;
	const char *stack[CICONFIG_MAX_INCLUDE_DEPTH + 2];
	size_t depth, total;
	char root_real[PATH_MAX];
	struct kiln_err *e;
};

/* Normalise a repository-relative path into out: no leading '/', no "."
 * components, single slashes. -1 for ".." or an empty path. */
static int normalize(const char *in, char *out, size_t outsz)
{
	size_t o = 0;

	while (*in) {
		const char *end;
		size_t n;

		while (*in == '/')
			in++;
		end = strchr(in, '/');
		n = end ? (size_t)(end - in) : strlen(in);
		if (n == 1 && in[0] == '.') {
			in += n;
			continue;
		}
		if (n == 2 && in[0] == '.' && in[1] == '.')
			return -1;
		if (n) {
			if (o + n + 2 > outsz)
				return -1;
			if (o)
				out[o++] = '/';
			memcpy(out + o, in, n);
			o += n;
		}
		in += n;
	}
	out[o] = '\0';
	return o ? 0 : -1;
}

static bool has_yaml_ext(const char *p)
{
	size_t n = strlen(p);

	return (n > 4 && !strcmp(p + n - 4, ".yml")) || (n > 5 && !strcmp(p + n - 5, ".yaml"));
}

struct glob_walk {
	const char *pattern;
	char **found;
	size_t n_found, seen;
	bool too_many;
};

static enum kiln_walk_step glob_one(void *arg, const char *rel, const struct stat *st)
{
	struct glob_walk *w = arg;
	const char *name = strrchr(rel, '/');

	if (!strcmp(name ? name + 1 : rel, ".git"))
		return KILN_WALK_SKIP;
	if (++w->seen > GLOB_MAX_ENTRIES)
		return KILN_WALK_STOP;
	if (S_ISREG(st->st_mode) && cirules_glob_match(w->pattern, rel)) {
		if (w->n_found >= GLOB_MAX_MATCHES) {
			w->too_many = true;
			return KILN_WALK_STOP;
		}
		if ((w->found[w->n_found] = strdup(rel)))
			w->n_found++;
	}
	return KILN_WALK_NEXT;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum kiln_rc load_file(struct inc *s, const char *rel, const struct cy_node *from, struct cy_node **out);

/* One local path (maybe a glob) named by node n: load and merge into *acc. */
static enum kiln_rc include_local(struct inc *s, const struct cy_node *n, struct cy_node **acc)
{
	const struct ciconfig_ctx *c = s->c;
	char rel[PATH_MAX];
	char *found[GLOB_MAX_MATCHES];
	struct glob_walk w = { rel, found, 0, 0, false };
	enum kiln_rc rc = KILN_OK;
	size_t i;

	if (n->kind != CY_SCALAR)
		return fail_at(s->e, n, KILN_E_INVALID, "include:local: expected a path, got %s", cy_kind_name(n));
	if (normalize(n->str, rel, sizeof(rel)))
		return fail_at(s->e, n, KILN_E_INVALID, "include: '%s' is not a path inside the repository", n->str);
	if (!strpbrk(rel, "*?[{")) {
		struct cy_node *child;

		if (!has_yaml_ext(rel))
			return fail_at(s->e, n, KILN_E_INVALID, "include: local file '%s' must end in .yml or .yaml",
				       n->str);
		if ((rc = load_file(s, rel, n, &child)))
			return rc;
		*acc = *acc ? cy_merge(c->a, *acc, child) : child;
		return *acc ? KILN_OK : cy_fail_alloc(c->a, s->e);
	}
	{
		int fd = open(c->repo_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			return kiln_fail_errno(s->e, "%s", c->repo_dir);
		kiln_treewalk(fd, GLOB_MAX_DEPTH, glob_one, &w);
	}
	if (w.too_many) {
		rc = fail_at(s->e, n, KILN_E_LIMIT, "include: '%s' matches more than %d files", n->str,
			     GLOB_MAX_MATCHES);
		goto out;
	}
	if (!w.n_found) {
		rc = fail_at(s->e, n, KILN_E_NOTFOUND, "include: '%s' matches no file", n->str);
		goto out;
	}
	qsort(found, w.n_found, sizeof(*found), cmp_str);
	for (i = 0; i < w.n_found; i++) {
		struct cy_node *child;

		if (!has_yaml_ext(found[i])) {
			rc = fail_at(s->e, n, KILN_E_INVALID, "include: local file '%s' must end in .yml or .yaml",
				     found[i]);
			goto out;
		}
		if ((rc = load_file(s, found[i], n, &child)))
			goto out;
		if (!(*acc = *acc ? cy_merge(c->a, *acc, child) : child)) {
			rc = cy_fail_alloc(c->a, s->e);
			goto out;
		}
	}
out:
	for (i = 0; i < w.n_found; i++)
		free(found[i]);
	return rc;
}

/* Whether an include entry's rules let it in. */
static enum kiln_rc include_rules(struct inc *s, const struct cy_node *rules, bool *in)
{
	const struct ciconfig_ctx *c = s->c;
	struct cirules_env env = { c->lookup, c->lookup_arg, c->exists, c->exists_arg, c->warn, c->warn_arg,
				   "include" };
	enum kiln_rc rc;
	size_t i, j;

	*in = false;
	if (rules->kind != CY_SEQ)
		return fail_at(s->e, rules, KILN_E_INVALID, "include:rules: expected a list, got %s",
			       cy_kind_name(rules));
	for (i = 0; i < rules->n; i++) {
		const struct cy_node *r = rules->items[i], *when;
		bool match;

		if ((rc = cirules_match(&env, r, &match, s->e)))
			return rc;
		for (j = 0; j < r->n; j++)
			if (strcmp(r->pairs[j].key, "if") && strcmp(r->pairs[j].key, "exists") &&
			    strcmp(r->pairs[j].key, "changes") && strcmp(r->pairs[j].key, "when"))
				warn_at(c, r->pairs[j].knode, "include:rules: unknown key '%s' (ignored)",
					r->pairs[j].key);
		if (!match)
			continue;
		when = cy_get(r, "when");
		if (when && when->kind != CY_NULL) {
			if (when->kind != CY_SCALAR || (strcmp(when->str, "never") && strcmp(when->str, "always")))
				return fail_at(s->e, when, KILN_E_INVALID,
					       "include:rules:when: expected never or always, got '%s'",
					       when->kind == CY_SCALAR ? when->str : cy_kind_name(when));
			*in = strcmp(when->str, "never") != 0;
		} else {
			*in = true;
		}
		return KILN_OK;
	}
	return KILN_OK;
}

static enum kiln_rc include_entry(struct inc *s, const struct cy_node *n, struct cy_node **acc)
{
	static const char *const others[] = { "remote", "template", "project", "component", "artifact", NULL };
	const struct ciconfig_ctx *c = s->c;
	const struct cy_node *local, *rules;
	const char *type = NULL;
	enum kiln_rc rc;
	size_t i, j, n_types = 0;

	if (n->kind == CY_SCALAR) {
		if (!strncmp(n->str, "http://", 7) || !strncmp(n->str, "https://", 8)) {
			warn_at(c, n, "include:remote '%s' is not supported by kiln (skipped)", n->str);
			return KILN_OK;
		}
		return include_local(s, n, acc);
	}
	if (n->kind != CY_MAP)
		return fail_at(s->e, n, KILN_E_INVALID, "include: each entry must be a path or a mapping, got %s",
			       cy_kind_name(n));
	for (i = 0; i < n->n; i++) {
		const char *k = n->pairs[i].key;

		if (!strcmp(k, "local")) {
			type = k;
			n_types++;
			continue;
		}
		for (j = 0; others[j] && strcmp(others[j], k); j++)
			;
		if (others[j]) {
			type = k;
			n_types++;
		} else if (!strcmp(k, "inputs")) {
			warn_at(c, n->pairs[i].knode, "%s", "include:inputs is not supported by kiln (ignored)");
		} else if (strcmp(k, "rules") && strcmp(k, "file") && strcmp(k, "ref") && strcmp(k, "job") &&
			   strcmp(k, "integrity") && strcmp(k, "cache")) {
			warn_at(c, n->pairs[i].knode, "include: unknown key '%s' (ignored)", k);
		}
	}
	if (n_types != 1)
		return fail_at(s->e, n, KILN_E_INVALID, "%s",
			       "include: each entry needs exactly one of local, remote, template, project, "
			       "component or artifact");
	if (strcmp(type, "local")) {
		warn_at(c, n, "include:%s is not supported by kiln (skipped)", type);
		return KILN_OK;
	}
	rules = cy_get(n, "rules");
	if (rules && rules->kind != CY_NULL) {
		bool in;

		if ((rc = include_rules(s, rules, &in)))
			return rc;
		if (!in)
			return KILN_OK;
	}
	local = cy_get(n, "local");
	return include_local(s, local, acc);
}

static enum kiln_rc chain_error(struct inc *s, const struct cy_node *from, const char *rel)
{
	char chain[400];
	size_t i, o = 0;

	chain[0] = '\0';
	for (i = 0; i < s->depth && o < sizeof(chain); i++)
		o += (size_t)snprintf(chain + o, sizeof(chain) - o, "%s -> ", s->stack[i]);
	if (o < sizeof(chain))
		snprintf(chain + o, sizeof(chain) - o, "%s", rel);
	return fail_at(s->e, from, KILN_E_INVALID, "include: cycle: %s", chain);
}

static enum kiln_rc load_file(struct inc *s, const char *rel, const struct cy_node *from, struct cy_node **out)
{
	const struct ciconfig_ctx *c = s->c;
	char path[PATH_MAX], real[PATH_MAX];
	struct cy_node *root, *acc = NULL, *own;
	const struct cy_node *inc;
	enum kiln_rc rc;
	size_t i;

	for (i = 0; i < s->depth; i++)
		if (!strcmp(s->stack[i], rel))
			return chain_error(s, from, rel);
	if (s->depth > CICONFIG_MAX_INCLUDE_DEPTH)
		return fail_at(s->e, from, KILN_E_LIMIT, "include: nested deeper than %d levels",
			       CICONFIG_MAX_INCLUDE_DEPTH);
	if (++s->total > CICONFIG_MAX_INCLUDES + 1)
		return fail_at(s->e, from, KILN_E_LIMIT, "include: more than %d files included",
			       CICONFIG_MAX_INCLUDES);
	if (snprintf(path, sizeof(path), "%s/%s", c->repo_dir, rel) >= (int)sizeof(path))
		return kiln_fail(s->e, KILN_E_LIMIT, "%s: path too long", rel);
	if (from) {
		size_t n = strlen(s->root_real);

		if (!realpath(path, real)) {
			if (errno == ENOENT || errno == ENOTDIR)
				return fail_at(s->e, from, KILN_E_NOTFOUND, "include: local file '%s' does not exist",
					       rel);
			return kiln_fail_errno(s->e, "%s:%u: include: %s", from->file, from->line, rel);
		}
		if (strncmp(real, s->root_real, n) || real[n] != '/')
			return fail_at(s->e, from, KILN_E_INVALID, "include: '%s' leads outside the repository", rel);
	}
	rc = cy_load_file(c->a, path, rel, &root, c->warn, c->warn_arg, s->e);
	if (rc == KILN_E_NOTFOUND && from)
		return fail_at(s->e, from, rc, "include: local file '%s' does not exist", rel);
	if (rc)
		return rc;
	if (root->kind == CY_NULL) {
		if (from)
			return fail_at(s->e, from, KILN_E_INVALID, "include: local file '%s' is empty", rel);
		return kiln_fail(s->e, KILN_E_INVALID, "%s:1: the CI configuration is empty", rel);
	}
	if (root->kind != CY_MAP)
		return fail_at(s->e, root, KILN_E_INVALID, "expected a mapping of jobs and keywords, got %s",
			       cy_kind_name(root));
	inc = cy_get(root, "include");
	if (!inc) {
		*out = root;
		return KILN_OK;
	}
	s->stack[s->depth++] = root->file;
	if (inc->kind == CY_SEQ) {
		for (i = 0; i < inc->n && !rc; i++)
			rc = include_entry(s, inc->items[i], &acc);
	} else if (inc->kind != CY_NULL) {
		rc = include_entry(s, inc, &acc);
	}
	s->depth--;
	if (rc)
		return rc;
	if (!(own = cy_without(c->a, root, "include")))
		return cy_fail_alloc(c->a, s->e);
	*out = acc ? cy_merge(c->a, acc, own) : own;
	return *out ? KILN_OK : cy_fail_alloc(c->a, s->e);
}

enum kiln_rc ciconfig_include(const struct ciconfig_ctx *c, const char *file, struct cy_node **root,
			      struct kiln_err *e)
{
	struct inc *s = calloc(1, sizeof(*s));
	enum kiln_rc rc;

	if (!s)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	s->c = c;
	s->e = e;
	if (!realpath(c->repo_dir, s->root_real)) {
		rc = kiln_fail_errno(e, "%s", c->repo_dir);
		goto out;
	}
	rc = load_file(s, file, NULL, root);
out:
	free(s);
	return rc;
}

/* ---- extends ---------------------------------------------------------- */

struct ext {
	const struct ciconfig_ctx *c;
	const struct cy_node *root;
	unsigned char *state;       /* 0 todo, 1 in progress, 2 done */
	struct cy_node **result;
	int *height;                /* levels of extends below an entry */
	size_t chain[CICONFIG_MAX_EXTENDS + 2];
	size_t depth;
	struct kiln_err *e;
};

static ssize_t top_index(const struct cy_node *root, const char *key)
{
	size_t i;

	for (i = 0; i < root->n; i++)
		if (!strcmp(root->pairs[i].key, key))
			return (ssize_t)i;
	return -1;
}

static const char *entry_kind(const char *name)
{
	return name[0] == '.' ? "hidden job" : "job";
}

static enum kiln_rc extend_one(struct ext *x, size_t idx);

static enum kiln_rc cycle_error(struct ext *x, size_t idx, const struct cy_node *at)
{
	char chain[400];
	size_t i, o = 0;
	const char *name = x->root->pairs[x->chain[0]].key;

	chain[0] = '\0';
	for (i = 0; i < x->depth && o < sizeof(chain); i++)
		o += (size_t)snprintf(chain + o, sizeof(chain) - o, "%s -> ", x->root->pairs[x->chain[i]].key);
	if (o < sizeof(chain))
		snprintf(chain + o, sizeof(chain) - o, "%s", x->root->pairs[idx].key);
	return fail_at(x->e, at, KILN_E_INVALID, "%s '%s': extends: circular dependency: %s",
		       entry_kind(name), name, chain);
}

static enum kiln_rc extend_parent(struct ext *x, size_t idx, const struct cy_node *pn, struct cy_node **merged,
				  int *height)
{
	const char *name = x->root->pairs[idx].key;
	const struct cy_node *pv;
	enum kiln_rc rc;
	ssize_t p;

	if (pn->kind != CY_SCALAR)
		return fail_at(x->e, pn, KILN_E_INVALID, "%s '%s': extends: expected a job name, got %s",
			       entry_kind(name), name, cy_kind_name(pn));
	p = top_index(x->root, pn->str);
	if (p < 0)
		return fail_at(x->e, pn, KILN_E_NOTFOUND, "%s '%s': extends: unknown job '%s'", entry_kind(name),
			       name, pn->str);
	pv = x->root->pairs[p].value;
	if (pv->kind != CY_MAP)
		return fail_at(x->e, pn, KILN_E_INVALID, "%s '%s': extends: '%s' is %s, not a mapping",
			       entry_kind(name), name, pn->str, cy_kind_name(pv));
	if (x->state[p] == 1)
		return cycle_error(x, (size_t)p, pn);
	if ((rc = extend_one(x, (size_t)p)))
		return rc;
	if (x->height[p] + 1 > *height)
		*height = x->height[p] + 1;
	if (!(*merged = cy_merge(x->c->a, *merged, x->result[p])))
		return cy_fail_alloc(x->c->a, x->e);
	return KILN_OK;
}

static enum kiln_rc extend_one(struct ext *x, size_t idx)
{
	const struct cy_node *node = x->root->pairs[idx].value, *ext;
	const char *name = x->root->pairs[idx].key;
	struct cy_node *merged;
	enum kiln_rc rc = KILN_OK;
	int height = 0;
	size_t i;

	if (x->state[idx] == 2)
		return KILN_OK;
	ext = cy_get(node, "extends");
	if (!ext) {
		x->result[idx] = (struct cy_node *)node;
		x->state[idx] = 2;
		return KILN_OK;
	}
	if (x->depth > CICONFIG_MAX_EXTENDS)
		return fail_at(x->e, ext, KILN_E_LIMIT, "%s '%s': extends: nested deeper than %d levels",
			       entry_kind(x->root->pairs[x->chain[0]].key), x->root->pairs[x->chain[0]].key,
			       CICONFIG_MAX_EXTENDS);
	x->state[idx] = 1;
	x->chain[x->depth++] = idx;
	if (!(merged = cy_new(x->c->a, CY_MAP, node->file, node->line))) {
		rc = cy_fail_alloc(x->c->a, x->e);
		goto out;
	}
	if (ext->kind == CY_SEQ) {
		for (i = 0; i < ext->n && !rc; i++)
			rc = extend_parent(x, idx, ext->items[i], &merged, &height);
	} else if (ext->kind != CY_NULL) {
		rc = extend_parent(x, idx, ext, &merged, &height);
	}
	if (rc)
		goto out;
	if (height > CICONFIG_MAX_EXTENDS) {
		rc = fail_at(x->e, ext, KILN_E_LIMIT, "%s '%s': extends: nested deeper than %d levels",
			     entry_kind(name), name, CICONFIG_MAX_EXTENDS);
		goto out;
	}
	if (!(merged = cy_merge(x->c->a, merged, node)) || !(merged = cy_without(x->c->a, merged, "extends"))) {
		rc = cy_fail_alloc(x->c->a, x->e);
		goto out;
	}
	x->result[idx] = merged;
	x->height[idx] = height;
	x->state[idx] = 2;
out:
	x->depth--;
	return rc;
}

enum kiln_rc ciconfig_extends(const struct ciconfig_ctx *c, const struct cy_node *root, struct cy_node **out,
			      struct kiln_err *e)
{
	struct ext x = { c, root, NULL, NULL, NULL, { 0 }, 0, e };
	struct cy_node *res;
	enum kiln_rc rc = KILN_OK;
	size_t i, n = root->n ? root->n : 1;

	x.state = calloc(n, 1);
	x.result = calloc(n, sizeof(*x.result));
	x.height = calloc(n, sizeof(*x.height));
	if (!x.state || !x.result || !x.height) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < root->n && !rc; i++) {
		if (root->pairs[i].value->kind != CY_MAP || ciconfig_is_keyword(root->pairs[i].key))
			continue;
		x.depth = 0;
		rc = extend_one(&x, i);
	}
	if (rc)
		goto out;
	if (!(res = cy_new(c->a, CY_MAP, root->file, root->line))) {
		rc = cy_fail_alloc(c->a, e);
		goto out;
	}
	for (i = 0; i < root->n; i++) {
		struct cy_node *v = x.state[i] == 2 ? x.result[i] : root->pairs[i].value;

		if (cy_map_push(c->a, res, root->pairs[i].key, root->pairs[i].knode, v)) {
			rc = cy_fail_alloc(c->a, e);
			goto out;
		}
	}
	*out = res;
out:
	free(x.state);
	free(x.result);
	free(x.height);
	return rc;
}

/* ---- !reference ------------------------------------------------------- */

struct refs {
	const struct ciconfig_ctx *c;
	const struct cy_node *root;
	const struct cy_node *stack[CICONFIG_MAX_REFERENCE_DEPTH + 1];
	size_t depth;
	struct kiln_err *e;
};

static void ref_text(const struct cy_node *ref, char *buf, size_t size)
{
	size_t i, o;

	o = (size_t)snprintf(buf, size, "!reference [");
	for (i = 0; i < ref->n && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", ref->items[i]->str);
	if (o < size)
		snprintf(buf + o, size - o, "]");
}

static enum kiln_rc resolve(struct refs *r, struct cy_node *n, int depth, struct cy_node **out);

static enum kiln_rc resolve_ref(struct refs *r, struct cy_node *n, struct cy_node **out)
{
	const struct cy_node *target = r->root;
	char text[300];
	enum kiln_rc rc;
	size_t i;

	ref_text(n, text, sizeof(text));
	for (i = 0; i < n->n && target; i++)
		target = cy_get(target, n->items[i]->str);
	if (!target)
		return fail_at(r->e, n, KILN_E_NOTFOUND, "%s: could not be found", text);
	for (i = 0; i < r->depth; i++)
		if (r->stack[i] == target)
			return fail_at(r->e, n, KILN_E_INVALID, "%s: is part of a circular chain", text);
	if (r->depth >= CICONFIG_MAX_REFERENCE_DEPTH)
		return fail_at(r->e, n, KILN_E_LIMIT, "%s: references nested deeper than %d levels", text,
			       CICONFIG_MAX_REFERENCE_DEPTH);
	r->stack[r->depth++] = target;
	rc = resolve(r, (struct cy_node *)target, 0, out);
	r->depth--;
	return rc;
}

/* n with its references resolved: n itself when it holds none. */
static enum kiln_rc resolve(struct refs *r, struct cy_node *n, int depth, struct cy_node **out)
{
	struct cy_node *copy = NULL;
	enum kiln_rc rc;
	size_t i;

	*out = n;
	if (n->ref)
		return resolve_ref(r, n, out);
	if (depth > CY_MAX_DEPTH)
		return fail_at(r->e, n, KILN_E_LIMIT, "nested deeper than %d levels", CY_MAX_DEPTH);
	if (n->kind != CY_SEQ && n->kind != CY_MAP)
		return KILN_OK;
	for (i = 0; i < n->n; i++) {
		struct cy_node *old = n->kind == CY_SEQ ? n->items[i] : n->pairs[i].value, *v;

		if ((rc = resolve(r, old, depth + 1, &v)))
			return rc;
		if (v == old && !copy)
			continue;
		if (!copy) {
			size_t j;

			/* The first change: copy what came before. */
			if (!(copy = cy_new(r->c->a, n->kind, n->file, n->line)))
				return cy_fail_alloc(r->c->a, r->e);
			for (j = 0; j < i; j++)
				if (n->kind == CY_SEQ ? cy_seq_push(r->c->a, copy, n->items[j])
						      : cy_map_push(r->c->a, copy, n->pairs[j].key, n->pairs[j].knode,
								    n->pairs[j].value))
					return cy_fail_alloc(r->c->a, r->e);
		}
		if (n->kind == CY_SEQ ? cy_seq_push(r->c->a, copy, v)
				      : cy_map_push(r->c->a, copy, n->pairs[i].key, n->pairs[i].knode, v))
			return cy_fail_alloc(r->c->a, r->e);
	}
	if (copy)
		*out = copy;
	return KILN_OK;
}

enum kiln_rc ciconfig_references(const struct ciconfig_ctx *c, const struct cy_node *root, struct cy_node **out,
				 struct kiln_err *e)
{
	struct refs r = { c, root, { NULL }, 0, e };

	return resolve(&r, (struct cy_node *)root, 0, out);
}

enum kiln_rc ciconfig_load(const struct ciconfig_ctx *c, const char *file, struct cy_node **root,
			   struct kiln_err *e)
{
	struct cy_node *inc, *ext;
	enum kiln_rc rc;

	if ((rc = ciconfig_include(c, file, &inc, e)))
		return rc;
	if ((rc = ciconfig_extends(c, inc, &ext, e)))
		return rc;
	return ciconfig_references(c, ext, root, e);
}
