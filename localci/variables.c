#include "localci/variables.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	if (vs->n == vs->cap) {
		size_t cap = vs->cap ? vs->cap * 2 : 32;
		struct civar *bigger = realloc(vs->v, cap * sizeof(*bigger));

		if (!bigger)
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
		vs->v = bigger;
		vs->cap = cap;
	}
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

struct buf {
	char *p;
	size_t n, cap;
	bool over, oom;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->over)
		return;
	if (b->n + n + 1 > CIVARS_MAX_VALUE) {
		b->over = true;
		return;
	}
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *bigger;

		while (cap < b->n + n + 1)
			cap *= 2;
		bigger = realloc(b->p, cap);
		if (!bigger) {
			b->over = b->oom = true;
			return;
		}
		b->p = bigger;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* The reference at s ('$' first): its name (*name, *len) and the bytes it
 * takes, or 0 when s does not start a reference. */
static size_t reference(const char *s, const char **name, size_t *len)
{
	size_t i;

	if (s[0] != '$')
		return 0;
	if (s[1] == '{') {
		if (!(s[2] == '_' || (s[2] >= 'A' && s[2] <= 'Z') || (s[2] >= 'a' && s[2] <= 'z')))
			return 0;
		for (i = 3; s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
			    (s[i] >= '0' && s[i] <= '9');
		     i++)
			;
		if (s[i] != '}')
			return 0;
		*name = s + 2;
		*len = i - 2;
		return i + 1;
	}
	if (!(s[1] == '_' || (s[1] >= 'A' && s[1] <= 'Z') || (s[1] >= 'a' && s[1] <= 'z')))
		return 0;
	for (i = 2; s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9');
	     i++)
		;
	*name = s + 1;
	*len = i - 1;
	return i;
}

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

static enum kiln_rc expand_one(struct expander *x, size_t i)
{
	const struct civar *v = &x->in->v[i];
	struct buf b = { NULL, 0, 0, false, false };
	const char *s = v->value;
	enum kiln_rc rc = KILN_OK;

	if (v->raw || !strchr(s, '$')) {
		x->result[i] = s;
		x->state[i] = 2;
		return KILN_OK;
	}
	if (x->depth >= CIVARS_MAX_DEPTH)
		return kiln_fail(x->e, KILN_E_LIMIT, "%s:%u: variable '%s': references nested deeper than %d levels",
				 v->file ? v->file : "(command line)", v->line, v->key, CIVARS_MAX_DEPTH);
	x->state[i] = 1;
	x->stack[x->depth++] = i;
	put(&b, "", 0);
	while (*s) {
		const char *name;
		size_t len, used;
		ssize_t j;

		if (s[0] == '$' && s[1] == '$') {
			put(&b, "$", 1);
			s += 2;
			continue;
		}
		used = reference(s, &name, &len);
		j = used ? find_n(x->in, name, len) : -1;
		if (j < 0) {
			put(&b, s, used ? used : 1);
			s += used ? used : 1;
			continue;
		}
		if (x->state[j] == 0 && (rc = expand_one(x, (size_t)j)))
			goto out;
		if (x->state[j] == 1) {
			cycle(x, (size_t)j);
			put(&b, s, used);
		} else {
			put(&b, x->result[j], strlen(x->result[j]));
		}
		s += used;
	}
	if (x->cyclic[i]) {
		x->result[i] = v->value;
	} else if (b.over) {
		rc = b.oom ? kiln_fail(x->e, KILN_E_NOMEM, "out of memory")
			   : kiln_fail(x->e, KILN_E_LIMIT, "%s:%u: variable '%s': value longer than %u KiB after "
				       "expansion", v->file ? v->file : "(command line)", v->line, v->key,
				       CIVARS_MAX_VALUE >> 10);
		goto out;
	} else if (!(x->result[i] = cy_strndup(x->a, b.p, b.n))) {
		rc = cy_fail_alloc(x->a, x->e);
		goto out;
	}
	x->state[i] = 2;
out:
	x->depth--;
	free(b.p);
	return rc;
}

enum kiln_rc civars_expand(struct cy_arena *a, const struct civars *in, struct civars *out, ci_warn_fn warn,
			   void *warn_arg, struct kiln_err *e)
{
	struct expander x = { a, in, NULL, NULL, NULL, 0, NULL, warn, warn_arg, e };
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

enum kiln_rc civars_expand_str(struct cy_arena *a, const struct civars *vs, const char *s, const char **out,
			       struct kiln_err *e)
{
	struct buf b = { NULL, 0, 0, false, false };
	enum kiln_rc rc = KILN_OK;

	*out = s;
	if (!strchr(s, '$'))
		return KILN_OK;
	put(&b, "", 0);
	while (*s) {
		const char *name;
		size_t len, used;
		ssize_t j;

		if (s[0] == '$' && s[1] == '$') {
			put(&b, "$", 1);
			s += 2;
			continue;
		}
		used = reference(s, &name, &len);
		j = used ? find_n(vs, name, len) : -1;
		if (j < 0) {
			put(&b, s, used ? used : 1);
			s += used ? used : 1;
			continue;
		}
		put(&b, vs->v[j].value, strlen(vs->v[j].value));
		s += used;
	}
	if (b.oom)
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
	else if (b.over)
		rc = kiln_fail(e, KILN_E_LIMIT, "value longer than %u KiB after expansion", CIVARS_MAX_VALUE >> 10);
	else if (!(*out = cy_strndup(a, b.p, b.n)))
		rc = cy_fail_alloc(a, e);
	free(b.p);
	return rc;
}
