#include "localci/variables.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/varexpand.h"
#include "lib/vec.h"

const char *civar_source_name(enum civar_source s)
{
	switch (s) {
	case CIVAR_PREDEFINED: return "predefined";
	case CIVAR_GLOBAL: return "global";
	case CIVAR_WORKFLOW: return "workflow";
	case CIVAR_JOB: return "job";
	case CIVAR_MATRIX: return "matrix";
	case CIVAR_RULES: return "rules";
	case CIVAR_PIPELINE: return "pipeline";
	}
	return "?";
}

static ssize_t find(const struct civars *vs, const char *key)
{
	size_t i;

	for (i = 0; i < vs->n; i++)
		if (!strcmp(vs->v[i].key, key))
			return (ssize_t)i;
	return -1;
}

const struct civar *civars_get(const struct civars *vs, const char *key)
{
	ssize_t i = find(vs, key);

	return i < 0 ? NULL : &vs->v[i];
}

enum kiln_rc civars_set(struct civars *vs, const struct civar *v, struct kiln_err *e)
{
	ssize_t i = find(vs, v->key);

	if (i >= 0) {
		vs->v[i] = *v;
		return KILN_OK;
	}
	if (vs->n >= CIVARS_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "more than %d variables in one job", CIVARS_MAX);
	if (VEC_GROW(vs->v, vs->cap, vs->n, 1, CIVARS_MAX))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	vs->v[vs->n++] = *v;
	return KILN_OK;
}

void civars_clear(struct civars *vs)
{
	vs->n = 0;
}

void civars_free(struct civars *vs)
{
	free(vs->v);
	memset(vs, 0, sizeof(*vs));
}

static enum kiln_rc bad(struct kiln_err *e, const struct cy_node *n, const char *what, const char *key,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum kiln_rc bad(struct kiln_err *e, const struct cy_node *n, const char *what, const char *key,
			const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return kiln_fail(e, KILN_E_INVALID, "%s:%u: %s%svariables:%s: %s", n->file, n->line, what, *what ? ": " : "",
			 key, msg);
}

/* A variable's value node as a string: strings and numbers as written,
 * null as "". NULL for anything else. */
static const char *value_text(const struct cy_node *n)
{
	bool b;

	if (n->kind == CY_NULL)
		return "";
	if (n->kind != CY_SCALAR || cy_bool(n, &b))
		return NULL;
	return n->str;
}

enum kiln_rc civars_parse(struct cy_arena *a, const struct cy_node *map, enum civar_source src, const char *what,
			  struct civars *out, ci_warn_fn warn, void *warn_arg, struct kiln_err *e)
{
	enum kiln_rc rc;
	size_t i, j;

	if (!map || map->kind == CY_NULL)
		return KILN_OK;
	if (map->kind != CY_MAP)
		return kiln_fail(e, KILN_E_INVALID, "%s:%u: %s%svariables: expected a mapping of NAME: value, got %s",
				 map->file, map->line, what, *what ? ": " : "", cy_kind_name(map));
	for (i = 0; i < map->n; i++) {
		const struct cy_pair *p = &map->pairs[i];
		const struct cy_node *v = p->value;
		struct civar var = { p->key, NULL, false, src, v->file, v->line };

		if (!*p->key)
			return bad(e, p->knode, what, "", "%s", "empty variable name");
		if (v->kind == CY_MAP) {
			const struct cy_node *val = cy_get(v, "value"), *opts = cy_get(v, "options");
			const struct cy_node *expand = cy_get(v, "expand");
			bool flag;

			for (j = 0; j < v->n; j++) {
				const char *k = v->pairs[j].key;

				if (strcmp(k, "value") && strcmp(k, "description") && strcmp(k, "options") &&
				    strcmp(k, "expand") && warn) {
					char msg[400];

					snprintf(msg, sizeof(msg), "%s:%u: %s%svariables:%s: unknown key '%s' (ignored)",
						 v->pairs[j].knode->file, v->pairs[j].knode->line, what,
						 *what ? ": " : "", p->key, k);
					warn(warn_arg, msg);
				}
			}
			var.value = val ? value_text(val) : "";
			if (!var.value)
				return bad(e, val, what, p->key, "value: expected a string or a number, got %s",
					   cy_kind_name(val));
			if (expand) {
				if (!cy_bool(expand, &flag))
					return bad(e, expand, what, p->key, "%s", "expand: expected true or false");
				var.raw = !flag;
			}
			if (opts && opts->kind != CY_NULL) {
				bool found = false;

				if (opts->kind != CY_SEQ)
					return bad(e, opts, what, p->key, "options: expected a list, got %s",
						   cy_kind_name(opts));
				for (j = 0; j < opts->n; j++) {
					const char *o = value_text(opts->items[j]);

					if (!o)
						return bad(e, opts->items[j], what, p->key,
							   "options: item %zu is %s, expected a string", j + 1,
							   cy_kind_name(opts->items[j]));
					found = found || !strcmp(o, var.value);
				}
				if (!found)
					return bad(e, val ? val : v, what, p->key, "value '%s' is not one of its options",
						   var.value);
			}
		} else {
			var.value = value_text(v);
			if (!var.value)
				return bad(e, v, what, p->key,
					   "expected a string or a number, got %s (quote it: \"%s\")",
					   v->kind == CY_SCALAR ? "a boolean" : cy_kind_name(v),
					   v->kind == CY_SCALAR ? v->str : "...");
		}
		if ((rc = civars_set(out, &var, e)))
			return rc;
	}
	(void)a;
	return KILN_OK;
}

/* ---- expansion -------------------------------------------------------- */

static ssize_t find_n(const struct civars *vs, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < vs->n; i++)
		if (!strncmp(vs->v[i].key, name, len) && !vs->v[i].key[len])
			return (ssize_t)i;
	return -1;
}

struct expander {
	struct cy_arena *a;
	const struct civars *in;
	unsigned char *state;     /* 0 todo, 1 in progress, 2 done */
	bool *cyclic;             /* part of a cycle: keeps its value */
	size_t *stack;            /* the variables in progress */
	size_t depth;
	const char **result;
	ci_warn_fn warn;
	void *warn_arg;
	struct kiln_err *e;
	enum kiln_rc rc;          /* a nested expansion's failure */
};

/* j, in progress, was referenced again: every variable on the stack from
 * j up is part of the cycle. */
static void cycle(struct expander *x, size_t j)
{
	const struct civar *v = &x->in->v[j];
	char chain[400], msg[600];
	size_t k, start = 0, o = 0;

	for (k = 0; k < x->depth; k++)
		if (x->stack[k] == j)
			start = k;
	chain[0] = '\0';
	for (k = start; k < x->depth; k++) {
		x->cyclic[x->stack[k]] = true;
		if (o < sizeof(chain))
			o += (size_t)snprintf(chain + o, sizeof(chain) - o, "%s -> ", x->in->v[x->stack[k]].key);
	}
	if (o < sizeof(chain))
		snprintf(chain + o, sizeof(chain) - o, "%s", v->key);
	if (!x->warn)
		return;
	if (x->depth - start == 1)
		snprintf(msg, sizeof(msg), "%s:%u: variable '%s' refers to itself (left unexpanded)",
			 v->file ? v->file : "(command line)", v->line, v->key);
	else
		snprintf(msg, sizeof(msg), "%s:%u: variables %s refer to each other (left unexpanded)",
			 v->file ? v->file : "(command line)", v->line, chain);
	x->warn(x->warn_arg, msg);
}

static enum kiln_rc expand_one(struct expander *x, size_t i);

/* A reference met while expanding: the referenced variable's expanded
 * value, or NULL to keep it as written (undefined, in a cycle, or after a
 * failure, which x->rc keeps). */
static const char *expand_ref(void *arg, const char *name, size_t len)
{
	struct expander *x = arg;
	ssize_t j = find_n(x->in, name, len);

	if (j < 0 || x->rc)
		return NULL;
	if (x->state[j] == 0 && (x->rc = expand_one(x, (size_t)j)))
		return NULL;
	if (x->state[j] == 1) {
		cycle(x, (size_t)j);
		return NULL;
	}
	return x->result[j];
}

static enum kiln_rc expand_one(struct expander *x, size_t i)
{
	const struct civar *v = &x->in->v[i];
	char *p = NULL;
	size_t len = 0, cap = 0;
	enum kiln_rc rc = KILN_OK, over;

	if (v->raw || !strchr(v->value, '$')) {
		x->result[i] = v->value;
		x->state[i] = 2;
		return KILN_OK;
	}
	if (x->depth >= CIVARS_MAX_DEPTH)
		return kiln_fail(x->e, KILN_E_LIMIT, "%s:%u: variable '%s': references nested deeper than %d levels",
				 v->file ? v->file : "(command line)", v->line, v->key, CIVARS_MAX_DEPTH);
	x->state[i] = 1;
	x->stack[x->depth++] = i;
	over = var_expand_into(v->value, VAR_KEEP_UNDEFINED | VAR_KEEP_ESCAPE, expand_ref, x, &p, &len, &cap, CIVARS_MAX_VALUE);
	if ((rc = x->rc))
		goto out;
	if (x->cyclic[i]) {
		x->result[i] = v->value;
	} else if (over) {
		rc = over == KILN_E_NOMEM ? kiln_fail(x->e, KILN_E_NOMEM, "out of memory")
			   : kiln_fail(x->e, KILN_E_LIMIT, "%s:%u: variable '%s': value longer than %u KiB after "
				       "expansion", v->file ? v->file : "(command line)", v->line, v->key,
				       CIVARS_MAX_VALUE >> 10);
		goto out;
	} else if (!(x->result[i] = cy_strndup(x->a, p, len))) {
		rc = cy_fail_alloc(x->a, x->e);
		goto out;
	}
	x->state[i] = 2;
out:
	x->depth--;
	free(p);
	return rc;
}

enum kiln_rc civars_expand(struct cy_arena *a, const struct civars *in, struct civars *out, ci_warn_fn warn,
			   void *warn_arg, struct kiln_err *e)
{
	struct expander x = { a, in, NULL, NULL, NULL, 0, NULL, warn, warn_arg, e, KILN_OK };
	enum kiln_rc rc = KILN_OK;
	size_t i;

	civars_clear(out);
	x.state = calloc(in->n ? in->n : 1, 1);
	x.cyclic = calloc(in->n ? in->n : 1, sizeof(*x.cyclic));
	x.stack = calloc(CIVARS_MAX_DEPTH + 1, sizeof(*x.stack));
	x.result = calloc(in->n ? in->n : 1, sizeof(*x.result));
	if (!x.state || !x.cyclic || !x.stack || !x.result) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < in->n; i++) {
		struct civar v = in->v[i];

		if (x.state[i] == 0 && (rc = expand_one(&x, i)))
			goto out;
		v.value = x.result[i];
		if ((rc = civars_set(out, &v, e)))
			goto out;
	}
out:
	free(x.state);
	free(x.cyclic);
	free(x.stack);
	free(x.result);
	return rc;
}

static const char *lookup_value(void *arg, const char *name, size_t len)
{
	const struct civars *vs = arg;
	ssize_t j = find_n(vs, name, len);

	return j < 0 ? NULL : vs->v[j].value;
}

enum kiln_rc civars_expand_str(struct cy_arena *a, const struct civars *vs, const char *s, const char **out,
			       struct kiln_err *e)
{
	char *p = NULL;
	size_t len = 0, cap = 0;
	enum kiln_rc rc;

	*out = s;
	if (!strchr(s, '$'))
		return KILN_OK;
	rc = var_expand_into(s, VAR_KEEP_UNDEFINED, lookup_value, (void *)vs, &p, &len, &cap, CIVARS_MAX_VALUE);
	if (rc == KILN_E_NOMEM)
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
	else if (rc)
		rc = kiln_fail(e, KILN_E_LIMIT, "value longer than %u KiB after expansion", CIVARS_MAX_VALUE >> 10);
	else if (!(*out = cy_strndup(a, p, len)))
		rc = cy_fail_alloc(a, e);
	free(p);
	return rc;
}
