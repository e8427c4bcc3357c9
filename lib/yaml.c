#include "lib/yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "lib/readfile.h"
#include "lib/vec.h"

#define CHUNK_BYTES (64u << 10)

struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct cy_arena {
	struct chunk *head;
	size_t bytes, nodes;
	bool hit_bytes, hit_nodes, oom;
};

struct cy_arena *cy_arena_new(void)
{
	return calloc(1, sizeof(struct cy_arena));
}

void cy_arena_free(struct cy_arena **a)
{
	struct chunk *c, *next;

	if (!a || !*a)
		return;
	for (c = (*a)->head; c; c = next) {
		next = c->next;
		free(c);
	}
	free(*a);
	*a = NULL;
}

void *cy_alloc(struct cy_arena *a, size_t n)
{
	struct chunk *c = a->head;
	const size_t align = sizeof(max_align_t);
	void *p;

	n = (n + align - 1) / align * align;
	if (!n)
		n = align;
	if (!c || c->size - c->used < n) {
		size_t size = n > CHUNK_BYTES / 4 ? n : CHUNK_BYTES;

		if (a->bytes + size > CY_MAX_ARENA_BYTES) {
			a->hit_bytes = true;
			return NULL;
		}
		c = malloc(sizeof(*c) + size);
		if (!c) {
			a->oom = true;
			return NULL;
		}
		c->size = size;
		c->used = 0;
		a->bytes += size;
		if (a->head && size != CHUNK_BYTES) {
			/* A big block goes behind the current chunk, which
			 * keeps serving small allocations. */
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

char *cy_strndup(struct cy_arena *a, const char *s, size_t n)
{
	char *d = cy_alloc(a, n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *cy_strdup(struct cy_arena *a, const char *s)
{
	return cy_strndup(a, s, strlen(s));
}

char *cy_printf(struct cy_arena *a, const char *fmt, ...)
{
	va_list ap;
	char *d;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	d = cy_alloc(a, (size_t)n + 1);
	if (!d)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

enum kiln_rc cy_fail_alloc(struct cy_arena *a, struct kiln_err *e)
{
	if (a->hit_nodes)
		return kiln_fail(e, KILN_E_LIMIT, "CI configuration too large: more than %u YAML nodes "
			"(after expanding aliases, extends and references)", CY_MAX_NODES);
	if (a->hit_bytes)
		return kiln_fail(e, KILN_E_LIMIT, "CI configuration too large: more than %u MiB in memory",
				 CY_MAX_ARENA_BYTES >> 20);
	return kiln_fail(e, KILN_E_NOMEM, "out of memory");
}

struct cy_node *cy_new(struct cy_arena *a, enum cy_kind k, const char *file, unsigned line)
{
	struct cy_node *n;

	if (a->nodes >= CY_MAX_NODES) {
		a->hit_nodes = true;
		return NULL;
	}
	n = cy_alloc(a, sizeof(*n));
	if (!n)
		return NULL;
	a->nodes++;
	n->kind = k;
	n->file = file;
	n->line = line;
	n->str = "";
	n->plain = true;
	return n;
}

struct cy_node *cy_new_str(struct cy_arena *a, const char *s, const char *file, unsigned line)
{
	struct cy_node *n = cy_new(a, CY_SCALAR, file, line);

	if (n && !(n->str = cy_strdup(a, s)))
		return NULL;
	return n;
}

/* Room for one more element in an array holding n elements: capacities
 * are 4, 8, 16, ... (arrays here only grow by one), so a new block is
 * needed exactly when n is 0 or a power of two from 4 on; -1 when out of
 * memory. */
static int grow(struct cy_arena *a, void **arr, size_t n, size_t sz)
{
	void *bigger;

	if (n != 0 && (n < 4 || (n & (n - 1))))
		return 0;
	bigger = cy_alloc(a, (n ? n * 2 : 4) * sz);
	if (!bigger)
		return -1;
	if (n)
		memcpy(bigger, *arr, n * sz);
	*arr = bigger;
	return 0;
}

int cy_seq_push(struct cy_arena *a, struct cy_node *seq, struct cy_node *item)
{
	if (grow(a, (void **)&seq->items, seq->n, sizeof(*seq->items)))
		return -1;
	seq->items[seq->n++] = item;
	return 0;
}

int cy_map_push(struct cy_arena *a, struct cy_node *map, const char *key, const struct cy_node *knode,
		struct cy_node *value)
{
	if (grow(a, (void **)&map->pairs, map->n, sizeof(*map->pairs)))
		return -1;
	map->pairs[map->n].key = key;
	map->pairs[map->n].knode = knode;
	map->pairs[map->n].value = value;
	map->n++;
	return 0;
}

/* ---- accessors ---------------------------------------------------- */

const struct cy_pair *cy_find(const struct cy_node *map, const char *key)
{
	size_t i;

	if (!map || map->kind != CY_MAP)
		return NULL;
	for (i = 0; i < map->n; i++)
		if (!strcmp(map->pairs[i].key, key))
			return &map->pairs[i];
	return NULL;
}

struct cy_node *cy_get(const struct cy_node *map, const char *key)
{
	const struct cy_pair *p = cy_find(map, key);

	return p ? p->value : NULL;
}

bool cy_is_str(const struct cy_node *n)
{
	return n && n->kind == CY_SCALAR;
}

bool cy_bool(const struct cy_node *n, bool *out)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL };
	size_t i;

	if (!n || n->kind != CY_SCALAR || !n->plain)
		return false;
	for (i = 0; yes[i]; i++)
		if (!strcmp(n->str, yes[i]))
			return *out = true, true;
	for (i = 0; no[i]; i++)
		if (!strcmp(n->str, no[i]))
			return *out = false, true;
	return false;
}

bool cy_int(const struct cy_node *n, long *out)
{
	const char *s;
	char *end;
	long v;

	if (!n || n->kind != CY_SCALAR || !n->plain)
		return false;
	s = n->str;
	if (!((*s >= '0' && *s <= '9') || ((*s == '-' || *s == '+') && s[1] >= '0' && s[1] <= '9')))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

const char *cy_kind_name(const struct cy_node *n)
{
	if (!n)
		return "missing";
	switch (n->kind) {
	case CY_NULL: return "null";
	case CY_SCALAR: return "a string";
	case CY_SEQ: return "a list";
	case CY_MAP: return "a mapping";
	}
	return "?";
}

/* ---- copies and merges ------------------------------------------------ */

static struct cy_node *copy_depth(struct cy_arena *a, const struct cy_node *n, int depth)
{
	struct cy_node *c;
	size_t i;

	if (depth > CY_MAX_DEPTH)
		return NULL;
	c = cy_new(a, n->kind, n->file, n->line);
	if (!c)
		return NULL;
	c->plain = n->plain;
	c->ref = n->ref;
	c->str = n->str; /* strings are never modified: share them */
	for (i = 0; n->kind == CY_SEQ && i < n->n; i++) {
		struct cy_node *item = copy_depth(a, n->items[i], depth + 1);

		if (!item || cy_seq_push(a, c, item))
			return NULL;
	}
	for (i = 0; n->kind == CY_MAP && i < n->n; i++) {
		struct cy_node *v = copy_depth(a, n->pairs[i].value, depth + 1);

		if (!v || cy_map_push(a, c, n->pairs[i].key, n->pairs[i].knode, v))
			return NULL;
	}
	return c;
}

struct cy_node *cy_copy(struct cy_arena *a, const struct cy_node *n)
{
	return copy_depth(a, n, 0);
}

static struct cy_node *merge_depth(struct cy_arena *a, const struct cy_node *base, const struct cy_node *over,
				   int depth)
{
	struct cy_node *m;
	size_t i;

	if (!base || base->kind != CY_MAP || over->kind != CY_MAP)
		return (struct cy_node *)over;
	if (depth > CY_MAX_DEPTH)
		return NULL;
	m = cy_new(a, CY_MAP, over->file, over->line);
	if (!m)
		return NULL;
	for (i = 0; i < base->n; i++) {
		const struct cy_pair *p = &base->pairs[i];
		const struct cy_pair *o = cy_find(over, p->key);
		struct cy_node *v = p->value;

		if (o && !(v = merge_depth(a, p->value, o->value, depth + 1)))
			return NULL;
		if (cy_map_push(a, m, p->key, o ? o->knode : p->knode, v))
			return NULL;
	}
	for (i = 0; i < over->n; i++) {
		const struct cy_pair *o = &over->pairs[i];

		if (!cy_find(base, o->key) && cy_map_push(a, m, o->key, o->knode, o->value))
			return NULL;
	}
	return m;
}

struct cy_node *cy_merge(struct cy_arena *a, const struct cy_node *base, const struct cy_node *over)
{
	return merge_depth(a, base, over, 0);
}

struct cy_node *cy_without(struct cy_arena *a, const struct cy_node *map, const char *key)
{
	struct cy_node *m = cy_new(a, CY_MAP, map->file, map->line);
	size_t i;

	if (!m)
		return NULL;
	for (i = 0; i < map->n; i++)
		if (strcmp(map->pairs[i].key, key) &&
		    cy_map_push(a, m, map->pairs[i].key, map->pairs[i].knode, map->pairs[i].value))
			return NULL;
	return m;
}

/* ---- parsing ---------------------------------------------------------- */

struct anchor {
	const char *name;
	const struct cy_node *node;
};

struct parser {
	struct cy_arena *a;
	yaml_parser_t yp;
	const char *name;       /* file name, in the arena */
	struct anchor *anchors; /* in the arena, grown like arrays */
	size_t n_anchors;
	ci_warn_fn warn;
	void *warn_arg;
	struct kiln_err *e;
	unsigned flags;         /* CY_AS_WRITTEN */
};

static enum kiln_rc fail_at(struct parser *p, size_t line0, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static enum kiln_rc fail_at(struct parser *p, size_t line0, enum kiln_rc rc, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(p->e, rc, "%s:%zu: %s", p->name, line0 + 1, what);
}

static void warn_at(struct parser *p, size_t line0, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn_at(struct parser *p, size_t line0, const char *fmt, ...)
{
	char what[400], msg[600];
	va_list ap;

	if (!p->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%zu: %s", p->name, line0 + 1, what);
	p->warn(p->warn_arg, msg);
}

static enum kiln_rc next_event(struct parser *p, yaml_event_t *ev)
{
	if (yaml_parser_parse(&p->yp, ev))
		return KILN_OK;
	if (p->yp.error == YAML_MEMORY_ERROR)
		return kiln_fail(p->e, KILN_E_NOMEM, "out of memory");
	if (p->yp.context && p->yp.context_mark.line != p->yp.problem_mark.line)
		return fail_at(p, p->yp.problem_mark.line, KILN_E_SYNTAX, "YAML syntax error: %s (%s started on line %zu)",
			       p->yp.problem ? p->yp.problem : "invalid YAML", p->yp.context,
			       p->yp.context_mark.line + 1);
	return fail_at(p, p->yp.problem_mark.line, KILN_E_SYNTAX, "YAML syntax error: %s%s%s",
		       p->yp.problem ? p->yp.problem : "invalid YAML", p->yp.context ? " " : "",
		       p->yp.context ? p->yp.context : "");
}

static bool is_null_text(const char *s)
{
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static enum kiln_rc alloc_fail(struct parser *p)
{
	return cy_fail_alloc(p->a, p->e);
}

static enum kiln_rc add_anchor(struct parser *p, const yaml_char_t *name, const struct cy_node *n)
{
	if (!name)
		return KILN_OK;
	if (grow(p->a, (void **)&p->anchors, p->n_anchors, sizeof(*p->anchors)))
		return alloc_fail(p);
	p->anchors[p->n_anchors].name = cy_strdup(p->a, (const char *)name);
	if (!p->anchors[p->n_anchors].name)
		return alloc_fail(p);
	p->anchors[p->n_anchors++].node = n;
	return KILN_OK;
}

/* Check a tag: !reference is allowed on sequences only, standard tags are
 * accepted, anything else is ignored with a warning. *as_str is set for
 * !!str. */
static enum kiln_rc check_tag(struct parser *p, const yaml_char_t *tag, size_t line0, bool seq, bool *is_ref,
			      bool *as_str)
{
	const char *t = (const char *)tag;

	*is_ref = false;
	*as_str = false;
	if (!t)
		return KILN_OK;
	if (!strcmp(t, "!reference")) {
		if (!seq)
			return fail_at(p, line0, KILN_E_INVALID, "%s",
				       "!reference must be a list like !reference [job, key]");
		*is_ref = true;
		return KILN_OK;
	}
	if (!strncmp(t, "tag:yaml.org,2002:", 18)) {
		*as_str = !strcmp(t + 18, "str");
		return KILN_OK;
	}
	warn_at(p, line0, "unknown YAML tag '%s' (ignored)", t);
	return KILN_OK;
}

static enum kiln_rc parse_node(struct parser *p, yaml_event_t *ev, int depth, struct cy_node **out);

/* Per pair of a mapping being parsed: whether its value came from `<<`. */
struct merged_flags {
	bool *v;
	size_t cap;
};

static int set_merged(struct merged_flags *m, size_t i, bool val)
{
	if (i >= m->cap) {
		size_t old = m->cap;

		if (VEC_GROW(m->v, m->cap, i, 1, CY_MAX_MAP_KEYS))
			return -1;
		memset(m->v + old, 0, (m->cap - old) * sizeof(*m->v));
	}
	m->v[i] = val;
	return 0;
}

static bool was_merged(const struct merged_flags *m, size_t i)
{
	return i < m->cap && m->v[i];
}

/* Apply `<<: v` to map at line line0, Psych's way (see the header). */
static enum kiln_rc apply_merge(struct parser *p, struct cy_node *map, struct merged_flags *merged,
				const struct cy_node *v,
				size_t line0)
{
	const struct cy_node *srcs[64];
	size_t n_src = 0, s, i, j;

	if (v->kind == CY_MAP) {
		srcs[n_src++] = v;
	} else if (v->kind == CY_SEQ && !v->ref) {
		if (v->n > 64)
			return fail_at(p, line0, KILN_E_LIMIT, "%s", "<<: more than 64 mappings to merge");
		for (i = 0; i < v->n; i++)
			if (v->items[i]->kind != CY_MAP)
				return fail_at(p, line0, KILN_E_INVALID, "<<: item %zu is %s, expected a mapping",
					       i + 1, cy_kind_name(v->items[i]));
		/* The earlier mapping wins: apply them last to first. */
		for (i = v->n; i-- > 0;)
			srcs[n_src++] = v->items[i];
	} else {
		return fail_at(p, line0, KILN_E_INVALID, "<<: expected a mapping or a list of mappings, got %s",
			       cy_kind_name(v));
	}
	for (s = 0; s < n_src; s++) {
		for (i = 0; i < srcs[s]->n; i++) {
			const struct cy_pair *sp = &srcs[s]->pairs[i];

			for (j = 0; j < map->n && strcmp(map->pairs[j].key, sp->key); j++)
				;
			if (j < map->n) {
				map->pairs[j].value = sp->value;
				if (set_merged(merged, j, true))
					return kiln_fail(p->e, KILN_E_NOMEM, "out of memory");
				continue;
			}
			if (map->n >= CY_MAX_MAP_KEYS)
				return fail_at(p, line0, KILN_E_LIMIT, "more than %u keys in one mapping",
					       CY_MAX_MAP_KEYS);
			if (cy_map_push(p->a, map, sp->key, sp->knode, sp->value))
				return alloc_fail(p);
			if (set_merged(merged, map->n - 1, true))
				return kiln_fail(p->e, KILN_E_NOMEM, "out of memory");
		}
	}
	return KILN_OK;
}

static enum kiln_rc parse_mapping(struct parser *p, yaml_event_t *start, int depth, struct cy_node **out)
{
	struct cy_node *map;
	struct merged_flags merged = { NULL, 0 };
	bool is_ref, as_str;
	enum kiln_rc rc;

	rc = check_tag(p, start->data.mapping_start.tag, start->start_mark.line, false, &is_ref, &as_str);
	if (rc)
		return rc;
	map = cy_new(p->a, CY_MAP, p->name, (unsigned)start->start_mark.line + 1);
	if (!map)
		return alloc_fail(p);
	for (;;) {
		yaml_event_t kev, vev;
		struct cy_node *k = NULL, *v = NULL;
		size_t j, kline;

		if ((rc = next_event(p, &kev)))
			goto out;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			break;
		}
		kline = kev.start_mark.line;
		rc = parse_node(p, &kev, depth + 1, &k);
		yaml_event_delete(&kev);
		if (rc)
			goto out;
		if (k->kind == CY_SEQ || k->kind == CY_MAP) {
			rc = fail_at(p, kline, KILN_E_INVALID, "a key must be a string, not %s", cy_kind_name(k));
			goto out;
		}
		if ((rc = next_event(p, &vev)))
			goto out;
		rc = parse_node(p, &vev, depth + 1, &v);
		yaml_event_delete(&vev);
		if (rc)
			goto out;
		if (k->kind == CY_SCALAR && k->plain && !strcmp(k->str, "<<") && !(p->flags & CY_AS_WRITTEN)) {
			if ((rc = apply_merge(p, map, &merged, v, kline)))
				goto out;
			continue;
		}
		for (j = 0; j < map->n && strcmp(map->pairs[j].key, k->str); j++)
			;
		if (j < map->n && !(p->flags & CY_AS_WRITTEN)) {
			if (!was_merged(&merged, j))
				warn_at(p, kline, "duplicate key '%s' (also on line %u; the later value wins)",
					k->str, map->pairs[j].knode->line);
			map->pairs[j].value = v;
			map->pairs[j].knode = k;
			if (set_merged(&merged, j, false)) {
				rc = kiln_fail(p->e, KILN_E_NOMEM, "out of memory");
				goto out;
			}
			continue;
		}
		if (map->n >= CY_MAX_MAP_KEYS) {
			rc = fail_at(p, kline, KILN_E_LIMIT, "more than %u keys in one mapping", CY_MAX_MAP_KEYS);
			goto out;
		}
		if (cy_map_push(p->a, map, k->str, k, v)) {
			rc = alloc_fail(p);
			goto out;
		}
	}
	if ((rc = add_anchor(p, start->data.mapping_start.anchor, map)))
		goto out;
	*out = map;
out:
	free(merged.v);
	return rc;
}

static enum kiln_rc parse_sequence(struct parser *p, yaml_event_t *start, int depth, struct cy_node **out)
{
	struct cy_node *seq;
	bool is_ref, as_str;
	enum kiln_rc rc;
	size_t i;

	rc = check_tag(p, start->data.sequence_start.tag, start->start_mark.line, true, &is_ref, &as_str);
	if (rc)
		return rc;
	seq = cy_new(p->a, CY_SEQ, p->name, (unsigned)start->start_mark.line + 1);
	if (!seq)
		return alloc_fail(p);
	seq->ref = is_ref;
	for (;;) {
		yaml_event_t iev;
		struct cy_node *item = NULL;

		if ((rc = next_event(p, &iev)))
			return rc;
		if (iev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&iev);
			break;
		}
		rc = parse_node(p, &iev, depth + 1, &item);
		yaml_event_delete(&iev);
		if (rc)
			return rc;
		if (cy_seq_push(p->a, seq, item))
			return alloc_fail(p);
	}
	if (is_ref) {
		if (!seq->n)
			return fail_at(p, start->start_mark.line, KILN_E_INVALID, "%s",
				       "!reference needs at least a job name: !reference [job, key]");
		for (i = 0; i < seq->n; i++)
			if (seq->items[i]->kind != CY_SCALAR)
				return fail_at(p, seq->items[i]->line - 1, KILN_E_INVALID,
					       "!reference: item %zu is %s, expected a string", i + 1,
					       cy_kind_name(seq->items[i]));
	}
	if ((rc = add_anchor(p, start->data.sequence_start.anchor, seq)))
		return rc;
	*out = seq;
	return KILN_OK;
}

static enum kiln_rc parse_node(struct parser *p, yaml_event_t *ev, int depth, struct cy_node **out)
{
	size_t line0 = ev->start_mark.line;

	if (depth > CY_MAX_DEPTH)
		return fail_at(p, line0, KILN_E_LIMIT, "nested deeper than %d levels", CY_MAX_DEPTH);
	switch (ev->type) {
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)ev->data.alias.anchor;
		size_t i;

		for (i = p->n_anchors; i-- > 0;)
			if (!strcmp(p->anchors[i].name, name))
				break;
		if (i == (size_t)-1)
			return fail_at(p, line0, KILN_E_INVALID,
				       "alias *%s: no anchor &%s before it (an anchor cannot refer to itself)",
				       name, name);
		*out = cy_copy(p->a, p->anchors[i].node);
		return *out ? KILN_OK : alloc_fail(p);
	}
	case YAML_SCALAR_EVENT: {
		struct cy_node *n;
		bool is_ref, as_str;
		enum kiln_rc rc;
		const char *v = (const char *)ev->data.scalar.value;

		rc = check_tag(p, ev->data.scalar.tag, line0, false, &is_ref, &as_str);
		if (rc)
			return rc;
		n = cy_new(p->a, CY_SCALAR, p->name, (unsigned)line0 + 1);
		if (!n || !(n->str = cy_strndup(p->a, v, ev->data.scalar.length)))
			return alloc_fail(p);
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !as_str;
		if (n->plain && is_null_text(n->str)) {
			n->kind = CY_NULL;
			if (!(p->flags & CY_AS_WRITTEN))
				n->str = "";
		}
		if ((rc = add_anchor(p, ev->data.scalar.anchor, n)))
			return rc;
		*out = n;
		return KILN_OK;
	}
	case YAML_SEQUENCE_START_EVENT:
		return parse_sequence(p, ev, depth, out);
	case YAML_MAPPING_START_EVENT:
		return parse_mapping(p, ev, depth, out);
	default:
		return fail_at(p, line0, KILN_E_SYNTAX, "YAML syntax error: unexpected event %d", (int)ev->type);
	}
}

/* One document's root into *root; *end set when the stream ended instead. */
static enum kiln_rc parse_document(struct parser *p, struct cy_node **root, bool *end)
{
	yaml_event_t ev;
	enum kiln_rc rc;

	*root = NULL;
	*end = false;
	if ((rc = next_event(p, &ev)))
		return rc;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		*end = true;
		return KILN_OK;
	}
	yaml_event_delete(&ev); /* DOCUMENT_START */
	if ((rc = next_event(p, &ev)))
		return rc;
	rc = parse_node(p, &ev, 0, root);
	yaml_event_delete(&ev);
	if (rc)
		return rc;
	if ((rc = next_event(p, &ev))) /* DOCUMENT_END */
		return rc;
	yaml_event_delete(&ev);
	return KILN_OK;
}

enum kiln_rc cy_parse(struct cy_arena *a, const char *name, const char *text, size_t len, struct cy_node **root,
		      ci_warn_fn warn, void *warn_arg, struct kiln_err *e)
{
	return cy_parse_flags(a, name, text, len, 0, root, warn, warn_arg, e);
}

enum kiln_rc cy_parse_flags(struct cy_arena *a, const char *name, const char *text, size_t len, unsigned flags,
			    struct cy_node **root, ci_warn_fn warn, void *warn_arg, struct kiln_err *e)
{
	struct parser p = { .a = a, .warn = warn, .warn_arg = warn_arg, .e = e, .flags = flags };
	struct cy_node *first = NULL, *second = NULL, *third = NULL;
	yaml_event_t ev;
	enum kiln_rc rc;
	bool end = false;

	*root = NULL;
	if (!(p.name = cy_strdup(a, name)))
		return cy_fail_alloc(a, e);
	if (!yaml_parser_initialize(&p.yp))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	yaml_parser_set_input_string(&p.yp, (const unsigned char *)text, len);
	if ((rc = next_event(&p, &ev))) /* STREAM_START */
		goto out;
	yaml_event_delete(&ev);
	if ((rc = parse_document(&p, &first, &end)) || end)
		goto out;
	if ((rc = parse_document(&p, &second, &end)) || end)
		goto out;
	if ((rc = parse_document(&p, &third, &end)))
		goto out;
	if (!end) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s:%u: more than two YAML documents", p.name, third->line);
		goto out;
	}
out:
	if (!rc && second) {
		if (first->kind != CY_MAP || !cy_get(first, "spec")) {
			rc = kiln_fail(e, KILN_E_INVALID,
				       "%s:%u: a second YAML document is only allowed after a `spec:` header",
				       p.name, second->line);
		} else {
			warn_at(&p, first->line - 1, "%s", "spec: header (inputs) is not supported by kiln (ignored)");
			first = second;
		}
	}
	if (!rc) {
		if (!first && !(first = cy_new(a, CY_NULL, p.name, 1)))
			rc = cy_fail_alloc(a, e);
		*root = first;
	}
	yaml_parser_delete(&p.yp);
	return rc;
}

enum kiln_rc cy_load_file(struct cy_arena *a, const char *path, const char *name, struct cy_node **root,
			  ci_warn_fn warn, void *warn_arg, struct kiln_err *e)
{
	char *text = NULL;
	size_t len;
	enum kiln_rc rc;
	int r = kiln_read_file(path, CY_MAX_FILE_BYTES, &text, &len);

	if (r == -ENOENT || r == -ENOTDIR)
		return kiln_fail(e, KILN_E_NOTFOUND, "%s: no such file", name);
	if (r == -EFBIG)
		return kiln_fail(e, KILN_E_LIMIT, "%s: larger than %u MiB", name, CY_MAX_FILE_BYTES >> 20);
	if (r == -ENOMEM)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	if (r < 0) {
		errno = -r;
		return kiln_fail_errno(e, "%s", name);
	}
	rc = cy_parse(a, name, text, len, root, warn, warn_arg, e);
	free(text);
	return rc;
}
