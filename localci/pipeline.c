#include "localci/pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/vec.h"

#define MAX_NESTED_LISTS 10
#define MAX_WARNINGS 2000
#define MAX_LIST_ITEMS 1000000 /* nodes one list collects: past every item limit of its callers */

static const char *const default_supported[] = {
	"image", "before_script", "after_script", "timeout", "artifacts", NULL,
};

static const char *const default_unsupported[] = {
	"interruptible", "retry", "tags", "cache", "services", "hooks", "id_tokens", "identity", NULL,
};

static const char *const job_supported[] = {
	"stage", "script", "before_script", "after_script", "image", "variables", "rules", "when",
	"allow_failure", "needs", "dependencies", "artifacts", "timeout", "parallel", "inherit", NULL,
};

/* GitLab job keywords kiln does not implement (a warning each). */
static const char *const job_unsupported[] = {
	"services", "cache", "tags", "retry", "interruptible", "environment", "coverage", "resource_group",
	"release", "secrets", "id_tokens", "pages", "publish", "hooks", "identity", "dast_configuration",
	"manual_confirmation", "inputs", "start_in", NULL,
};

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (!strcmp(*list, s))
			return true;
	return false;
}

/* ---- context, messages ------------------------------------------------ */

struct vec {
	void **v;
	size_t n, cap;
};

struct needspec {
	const char *name;
	const struct cy_node *node;
	bool optional, artifacts;
	const char **instances;    /* needs:parallel:matrix: these names only */
	size_t n_instances;
};

struct combo {
	const char *name;
	struct civar *vars;
	size_t n_vars;
};

struct inherit {
	bool all;                  /* true: everything (unless list) */
	const struct cy_node *list;/* a list of names: only these */
};

struct jobdef {
	const char *name, *what;   /* what: "job 'name'" for messages */
	const struct cy_node *node, *knode;
	size_t stage;
	enum pipeline_when when;
	bool af, af_set;
	int *exit_codes;
	size_t n_exit_codes;
	bool has_needs;
	struct needspec *needs;
	size_t n_needs;
	bool has_deps;
	const struct cy_node **deps;
	size_t n_deps;
	int timeout;
	const char *image;
	const char **script;
	size_t n_script, n_before;
	const char **after;
	size_t n_after;
	struct pipeline_artifacts artifacts;
	struct civars vars;
	const struct cy_node **rules;
	size_t n_rules;
	bool has_rules;
	struct inherit inh_vars;
	int parallel;
	struct combo *combos;
	size_t n_combos;
	const char *skip;          /* trigger / run jobs */
};

struct ctx {
	const struct pipeline_opts *o;
	struct pipeline *pl;
	struct cy_arena *a;
	struct kiln_err *e;
	const struct cy_node *root, *deflt;
	struct civars predefined, cli, global, workflow;
	char **warned;
	size_t n_warned, cap_warned;
	struct jobdef *defs;
	size_t n_defs;
	struct pipeline_job *jobs; /* malloc'd while building */
	size_t *job_def;
	size_t n_jobs, cap_jobs, cap_job_def;
};

static void warn_msg(struct ctx *c, const char *msg)
{
	size_t i;

	for (i = 0; i < c->n_warned; i++)
		if (!strcmp(c->warned[i], msg))
			return;
	if (c->n_warned < MAX_WARNINGS) {
		if (!VEC_GROW(c->warned, c->cap_warned, c->n_warned, 1, MAX_WARNINGS) &&
		    (c->warned[c->n_warned] = strdup(msg)))
			c->n_warned++;
	}
	if (c->o->warn)
		c->o->warn(c->o->warn_arg, msg);
}

static void warn_cb(void *arg, const char *msg)
{
	warn_msg(arg, msg);
}

static void warnf(struct ctx *c, const struct cy_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warnf(struct ctx *c, const struct cy_node *n, const char *fmt, ...)
{
	char what[420], msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%u: %s", n->file, n->line, what);
	warn_msg(c, msg);
}

static enum kiln_rc failf(struct ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static enum kiln_rc failf(struct ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
{
	char what[460];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(c->e, rc, "%s:%u: %s", n->file, n->line, what);
}

static enum kiln_rc nomem(struct ctx *c)
{
	return cy_fail_alloc(c->a, c->e);
}

static int vec_push(struct vec *v, void *p)
{
	if (VEC_GROW(v->v, v->cap, v->n, 1, MAX_LIST_ITEMS))
		return -1;
	v->v[v->n++] = p;
	return 0;
}

static void vec_free(struct vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

/* Flatten n (a scalar, or lists nested up to MAX_NESTED_LISTS levels) into
 * out, as nodes. Mappings are taken when allow_maps, otherwise an error;
 * null items are skipped. */
static enum kiln_rc flatten(struct ctx *c, const char *what, const char *key, const struct cy_node *n, int depth,
			    bool allow_maps, size_t max, struct vec *out)
{
	enum kiln_rc rc;
	size_t i;

	switch (n->kind) {
	case CY_NULL:
		return KILN_OK;
	case CY_MAP:
		if (!allow_maps)
			return failf(c, n, KILN_E_INVALID, "%s: %s: an item is a mapping, expected a string "
				     "(quote a line that holds \": \")", what, key);
		/* fall through */
	case CY_SCALAR:
		if (out->n >= max)
			return failf(c, n, KILN_E_LIMIT, "%s: %s: more than %zu items", what, key, max);
		return vec_push(out, (void *)n) ? kiln_fail(c->e, KILN_E_NOMEM, "out of memory") : KILN_OK;
	case CY_SEQ:
		if (depth >= MAX_NESTED_LISTS)
			return failf(c, n, KILN_E_INVALID, "%s: %s: lists nested deeper than %d levels", what, key,
				     MAX_NESTED_LISTS);
		for (i = 0; i < n->n; i++)
			if ((rc = flatten(c, what, key, n->items[i], depth + 1, allow_maps, max, out)))
				return rc;
		return KILN_OK;
	}
	return KILN_OK;
}

/* n flattened into an array of strings in the arena. */
static enum kiln_rc strings(struct ctx *c, const char *what, const char *key, const struct cy_node *n, size_t max,
			    const char ***out, size_t *n_out)
{
	struct vec v = { 0 };
	enum kiln_rc rc;
	size_t i;

	*out = NULL;
	*n_out = 0;
	if (!n)
		return KILN_OK;
	if ((rc = flatten(c, what, key, n, 0, false, max, &v)))
		goto out;
	if (v.n && !(*out = cy_alloc(c->a, v.n * sizeof(**out)))) {
		rc = nomem(c);
		goto out;
	}
	for (i = 0; i < v.n; i++)
		(*out)[i] = ((const struct cy_node *)v.v[i])->str;
	*n_out = v.n;
out:
	vec_free(&v);
	return rc;
}

static const char *scalar_or_kind(const struct cy_node *n)
{
	return n->kind == CY_SCALAR ? n->str : cy_kind_name(n);
}

/* ---- small parsers ---------------------------------------------------- */

const char *pipeline_when_name(enum pipeline_when w)
{
	switch (w) {
	case PL_ON_SUCCESS: return "on_success";
	case PL_ON_FAILURE: return "on_failure";
	case PL_ALWAYS: return "always";
	case PL_MANUAL: return "manual";
	case PL_NEVER: return "never";
	}
	return "?";
}

/* A job's or a rule's `when`. */
static enum kiln_rc parse_when(struct ctx *c, const char *what, const char *key, const struct cy_node *n,
			       enum pipeline_when *w)
{
	static const struct { const char *s; enum pipeline_when w; } names[] = {
		{ "on_success", PL_ON_SUCCESS }, { "on_failure", PL_ON_FAILURE }, { "always", PL_ALWAYS },
		{ "manual", PL_MANUAL }, { "never", PL_NEVER }, { "delayed", PL_ON_SUCCESS },
	};
	size_t i;

	if (n->kind == CY_SCALAR)
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (!strcmp(n->str, names[i].s)) {
				*w = names[i].w;
				if (!strcmp(n->str, "delayed"))
					warnf(c, n, "%s: %s: delayed: kiln does not wait (runs like on_success)", what,
					      key);
				return KILN_OK;
			}
	return failf(c, n, KILN_E_INVALID,
		     "%s: %s: unknown value '%s' (on_success, on_failure, always, manual, delayed or never)", what,
		     key, scalar_or_kind(n));
}

static enum kiln_rc parse_bool(struct ctx *c, const char *what, const char *key, const struct cy_node *n, bool *b)
{
	if (cy_bool(n, b))
		return KILN_OK;
	return failf(c, n, KILN_E_INVALID, "%s: %s: expected true or false, got '%s'", what, key, scalar_or_kind(n));
}

static const struct { const char *name; double secs; } duration_units[] = {
	{ "s", 1 }, { "sec", 1 }, { "secs", 1 }, { "second", 1 }, { "seconds", 1 },
	{ "m", 60 }, { "min", 60 }, { "mins", 60 }, { "minute", 60 }, { "minutes", 60 },
	{ "h", 3600 }, { "hr", 3600 }, { "hrs", 3600 }, { "hour", 3600 }, { "hours", 3600 },
	{ "d", 86400 }, { "day", 86400 }, { "days", 86400 },
	{ "w", 604800 }, { "wk", 604800 }, { "wks", 604800 }, { "week", 604800 }, { "weeks", 604800 },
	{ "mo", 2629746 }, { "mos", 2629746 }, { "month", 2629746 }, { "months", 2629746 },
	{ "y", 31556952 }, { "yr", 31556952 }, { "yrs", 31556952 }, { "year", 31556952 }, { "years", 31556952 },
};

bool pipeline_parse_duration(const char *s, long *seconds)
{
	double total = 0;
	bool any = false;
	int colon_parts = 0;
	long parts[3];
	const char *p;

	while (isspace((unsigned char)*s))
		s++;
	/* hh:mm:ss or mm:ss */
	if (strchr(s, ':')) {
		p = s;
		while (colon_parts < 3) {
			char *end;

			if (!isdigit((unsigned char)*p))
				return false;
			errno = 0;
			parts[colon_parts++] = strtol(p, &end, 10);
			if (errno)
				return false;
			p = end;
			if (*p != ':')
				break;
			p++;
		}
		while (isspace((unsigned char)*p))
			p++;
		if (*p || colon_parts < 2)
			return false;
		total = colon_parts == 3 ? parts[0] * 3600.0 + parts[1] * 60.0 + parts[2] : parts[0] * 60.0 + parts[1];
		if (total > LONG_MAX / 2)
			return false;
		*seconds = (long)total;
		return true;
	}
	p = s;
	while (*p) {
		char *end;
		double num;
		size_t len, u;

		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (!strncmp(p, "and", 3) && (isspace((unsigned char)p[3]) || !p[3]) && any) {
			p += 3;
			continue;
		}
		if (!*p)
			break;
		if (!isdigit((unsigned char)*p) && *p != '.')
			return false;
		errno = 0;
		num = strtod(p, &end);
		if (errno || end == p || num < 0 || !isfinite(num))
			return false;
		p = end;
		while (isspace((unsigned char)*p))
			p++;
		for (len = 0; isalpha((unsigned char)p[len]); len++)
			;
		if (!len) {
			total += num; /* a bare number: seconds */
		} else {
			for (u = 0; u < sizeof(duration_units) / sizeof(duration_units[0]); u++)
				if (strlen(duration_units[u].name) == len &&
				    !strncasecmp(duration_units[u].name, p, len))
					break;
			if (u == sizeof(duration_units) / sizeof(duration_units[0]))
				return false;
			total += num * duration_units[u].secs;
			p += len;
		}
		any = true;
		if (total > 1e12)
			return false;
	}
	if (!any)
		return false;
	*seconds = (long)(total + 0.5);
	return true;
}

static enum kiln_rc parse_timeout(struct ctx *c, const char *what, const struct cy_node *n, int *out)
{
	long secs;

	if (n->kind == CY_NULL) {
		*out = 0;
		return KILN_OK;
	}
	if (n->kind != CY_SCALAR || !pipeline_parse_duration(n->str, &secs))
		return failf(c, n, KILN_E_INVALID,
			     "%s: timeout: invalid duration '%s' (for example 3600, 90 minutes or 1h 30m)", what,
			     scalar_or_kind(n));
	if (secs < 1 || secs > PIPELINE_MAX_TIMEOUT)
		return failf(c, n, KILN_E_INVALID, "%s: timeout: '%s' is out of range (1 second to 1 month)", what,
			     n->str);
	*out = (int)secs;
	return KILN_OK;
}

static enum kiln_rc parse_image(struct ctx *c, const char *what, const struct cy_node *n, const char **out)
{
	const struct cy_node *name = n;
	size_t i;

	*out = NULL;
	if (n->kind == CY_NULL)
		return KILN_OK;
	if (n->kind == CY_MAP) {
		name = cy_get(n, "name");
		for (i = 0; i < n->n; i++)
			if (strcmp(n->pairs[i].key, "name"))
				warnf(c, n->pairs[i].knode, "%s: image:%s is not supported by kiln (ignored)", what,
				      n->pairs[i].key);
		if (!name)
			return failf(c, n, KILN_E_INVALID, "%s: image: missing key 'name'", what);
	}
	if (name->kind != CY_SCALAR)
		return failf(c, name, KILN_E_INVALID, "%s: image: expected an image name, got %s", what,
			     cy_kind_name(name));
	*out = name->str;
	return KILN_OK;
}

static enum kiln_rc parse_artifacts(struct ctx *c, const char *what, const struct cy_node *n,
				    struct pipeline_artifacts *art)
{
	enum kiln_rc rc;
	size_t i;

	memset(art, 0, sizeof(*art));
	if (n->kind == CY_NULL)
		return KILN_OK;
	if (n->kind != CY_MAP)
		return failf(c, n, KILN_E_INVALID, "%s: artifacts: expected a mapping, got %s", what, cy_kind_name(n));
	art->defined = true;
	for (i = 0; i < n->n; i++) {
		const char *k = n->pairs[i].key;
		const struct cy_node *v = n->pairs[i].value;

		if (!strcmp(k, "paths")) {
			rc = strings(c, what, "artifacts:paths", v, 10000, &art->paths, &art->n_paths);
		} else if (!strcmp(k, "exclude")) {
			rc = strings(c, what, "artifacts:exclude", v, 10000, &art->exclude, &art->n_exclude);
		} else if (!strcmp(k, "when")) {
			rc = KILN_OK;
			if (v->kind != CY_SCALAR || (strcmp(v->str, "on_success") && strcmp(v->str, "on_failure") &&
						     strcmp(v->str, "always")))
				rc = failf(c, v, KILN_E_INVALID,
					   "%s: artifacts:when: unknown value '%s' (on_success, on_failure or always)",
					   what, scalar_or_kind(v));
			else
				art->when = !strcmp(v->str, "on_success") ? PL_ON_SUCCESS
					    : !strcmp(v->str, "on_failure") ? PL_ON_FAILURE : PL_ALWAYS;
		} else if (!strcmp(k, "untracked")) {
			rc = parse_bool(c, what, "artifacts:untracked", v, &art->untracked);
		} else if (!strcmp(k, "name") || !strcmp(k, "expire_in")) {
			rc = KILN_OK;
			if (v->kind != CY_SCALAR)
				rc = failf(c, v, KILN_E_INVALID, "%s: artifacts:%s: expected a string, got %s", what, k,
					   cy_kind_name(v));
			else if (!strcmp(k, "name"))
				art->name = v->str;
			else
				art->expire_in = v->str;
		} else {
			rc = KILN_OK;
			warnf(c, n->pairs[i].knode, "%s: artifacts:%s is not supported by kiln (ignored)", what, k);
		}
		if (rc)
			return rc;
	}
	return KILN_OK;
}

static enum kiln_rc parse_allow_failure(struct ctx *c, struct jobdef *d, const struct cy_node *n)
{
	const struct cy_node *codes;
	struct vec v = { 0 };
	enum kiln_rc rc = KILN_OK;
	size_t i;

	if (n->kind != CY_MAP) {
		d->af_set = true;
		return parse_bool(c, d->what, "allow_failure", n, &d->af);
	}
	for (i = 0; i < n->n; i++)
		if (strcmp(n->pairs[i].key, "exit_codes"))
			warnf(c, n->pairs[i].knode, "%s: allow_failure: unknown key '%s' (ignored)", d->what,
			      n->pairs[i].key);
	codes = cy_get(n, "exit_codes");
	if (!codes)
		return failf(c, n, KILN_E_INVALID, "%s: allow_failure: expected true, false or {exit_codes: ...}",
			     d->what);
	if ((rc = flatten(c, d->what, "allow_failure:exit_codes", codes, 0, false, 256, &v)))
		goto out;
	if (v.n && !(d->exit_codes = cy_alloc(c->a, v.n * sizeof(*d->exit_codes)))) {
		rc = nomem(c);
		goto out;
	}
	for (i = 0; i < v.n; i++) {
		const struct cy_node *item = v.v[i];
		long code;

		if (!cy_int(item, &code) || code < 0 || code > 255) {
			rc = failf(c, item, KILN_E_INVALID, "%s: allow_failure:exit_codes: '%s' is not an exit code "
				   "(0 to 255)", d->what, item->str);
			goto out;
		}
		d->exit_codes[d->n_exit_codes++] = (int)code;
	}
	d->af = false;
	d->af_set = true;
out:
	vec_free(&v);
	return rc;
}

static enum kiln_rc parse_inherit_one(struct ctx *c, const char *what, const char *key, const struct cy_node *n,
				      const char *const *known1, const char *const *known2, struct inherit *in)
{
	size_t i;

	in->all = true;
	in->list = NULL;
	if (n->kind == CY_SEQ) {
		in->all = false;
		in->list = n;
		for (i = 0; i < n->n; i++) {
			const struct cy_node *it = n->items[i];

			if (it->kind != CY_SCALAR)
				return failf(c, it, KILN_E_INVALID, "%s: inherit:%s: expected names, got %s", what, key,
					     cy_kind_name(it));
			if (known1 && !in_list(known1, it->str) && !in_list(known2, it->str))
				warnf(c, it, "%s: inherit:%s: '%s' is not a default keyword (ignored)", what, key,
				      it->str);
		}
		return KILN_OK;
	}
	return parse_bool(c, what, key[0] == 'd' ? "inherit:default" : "inherit:variables", n, &in->all);
}

static bool inherits(const struct inherit *in, const char *key)
{
	size_t i;

	if (!in->list)
		return in->all;
	for (i = 0; i < in->list->n; i++)
		if (!strcmp(in->list->items[i]->str, key))
			return true;
	return false;
}

/* ---- parallel:matrix -------------------------------------------------- */

/* The values of one matrix variable into v (nodes). */
static enum kiln_rc matrix_values(struct ctx *c, const char *what, const struct cy_pair *p, struct vec *v)
{
	const struct cy_node *n = p->value;
	size_t i;

	if (n->kind == CY_SCALAR)
		return vec_push(v, (void *)n) ? kiln_fail(c->e, KILN_E_NOMEM, "out of memory") : KILN_OK;
	if (n->kind != CY_SEQ || !n->n)
		return failf(c, n, KILN_E_INVALID, "%s: parallel:matrix:%s: expected a value or a non-empty list, "
			     "got %s", what, p->key, cy_kind_name(n));
	for (i = 0; i < n->n; i++) {
		if (n->items[i]->kind != CY_SCALAR)
			return failf(c, n->items[i], KILN_E_INVALID, "%s: parallel:matrix:%s: item %zu is %s, expected "
				     "a string", what, p->key, i + 1, cy_kind_name(n->items[i]));
		if (vec_push(v, n->items[i]))
			return kiln_fail(c->e, KILN_E_NOMEM, "out of memory");
	}
	return KILN_OK;
}

/* Every combination of a parallel:matrix list, named the way GitLab names
 * them ("group: [v1, v2]"), each variable with its value. */
static enum kiln_rc matrix_combos(struct ctx *c, const char *what, const char *group, const struct cy_node *m,
				  struct combo **out, size_t *n_out)
{
	struct vec values[64];
	struct combo *combos = NULL;
	size_t n = 0, e, i, k;
	enum kiln_rc rc = KILN_OK;

	memset(values, 0, sizeof(values));
	*out = NULL;
	*n_out = 0;
	if (m->kind != CY_SEQ || !m->n)
		return failf(c, m, KILN_E_INVALID, "%s: parallel:matrix: expected a non-empty list of mappings, got %s",
			     what, cy_kind_name(m));
	combos = cy_alloc(c->a, PIPELINE_MAX_PARALLEL * sizeof(*combos));
	if (!combos)
		return nomem(c);
	for (e = 0; e < m->n; e++) {
		const struct cy_node *ent = m->items[e];
		size_t idx[64] = { 0 }, nk, total = 1;

		if (ent->kind != CY_MAP || !ent->n) {
			rc = failf(c, ent, KILN_E_INVALID, "%s: parallel:matrix: item %zu is %s, expected a mapping of "
				   "VARIABLE: values", what, e + 1, cy_kind_name(ent));
			goto out;
		}
		nk = ent->n;
		if (nk > 64) {
			rc = failf(c, ent, KILN_E_LIMIT, "%s: parallel:matrix: more than 64 variables", what);
			goto out;
		}
		for (k = 0; k < nk; k++) {
			values[k].n = 0;
			if ((rc = matrix_values(c, what, &ent->pairs[k], &values[k])))
				goto out;
			total *= values[k].n;
			if (total > PIPELINE_MAX_PARALLEL)
				break;
		}
		if (n + total > PIPELINE_MAX_PARALLEL) {
			rc = failf(c, m, KILN_E_LIMIT, "%s: parallel:matrix: more than %d jobs", what,
				   PIPELINE_MAX_PARALLEL);
			goto out;
		}
		for (i = 0; i < total; i++) {
			struct combo *cb = &combos[n++];
			size_t len = strlen(group) + 4, o;
			char *name;

			cb->vars = cy_alloc(c->a, nk * sizeof(*cb->vars));
			if (!cb->vars) {
				rc = nomem(c);
				goto out;
			}
			for (k = 0; k < nk; k++)
				len += strlen(((const struct cy_node *)values[k].v[idx[k]])->str) + 2;
			if (!(name = cy_alloc(c->a, len + 1))) {
				rc = nomem(c);
				goto out;
			}
			o = (size_t)sprintf(name, "%s: [", group);
			for (k = 0; k < nk; k++) {
				const struct cy_node *val = values[k].v[idx[k]];

				o += (size_t)sprintf(name + o, "%s%s", k ? ", " : "", val->str);
				cb->vars[k] = (struct civar){ ent->pairs[k].key, val->str, false, CIVAR_MATRIX,
							      val->file, val->line };
			}
			sprintf(name + o, "]");
			cb->name = name;
			cb->n_vars = nk;
			/* next combination: the last variable varies fastest */
			for (k = nk; k-- > 0;) {
				if (++idx[k] < values[k].n)
					break;
				idx[k] = 0;
			}
		}
	}
	*out = combos;
	*n_out = n;
out:
	for (k = 0; k < 64; k++)
		vec_free(&values[k]);
	return rc;
}

/* ---- stages, default, workflow ---------------------------------------- */

static enum kiln_rc load_stages(struct ctx *c)
{
	static const char *const fallback[] = { "build", "test", "deploy" };
	const struct cy_node *n = cy_get(c->root, "stages"), *types = cy_get(c->root, "types");
	const char **list = NULL;
	size_t n_list = 0, i, j, k = 0;
	enum kiln_rc rc;

	if (types) {
		const struct cy_pair *tp = cy_find(c->root, "types");

		if (n)
			warnf(c, tp->knode, "%s", "types: is a deprecated name of stages: (ignored, stages: is given)");
		else
			warnf(c, tp->knode, "%s", "types: is deprecated, use stages:");
		if (!n)
			n = types;
	}
	if (n && n->kind != CY_NULL) {
		if ((rc = strings(c, "stages", "stages", n, PIPELINE_MAX_STAGES, &list, &n_list)))
			return rc;
	} else {
		list = (const char **)fallback;
		n_list = 3;
	}
	c->pl->stages = cy_alloc(c->a, (n_list + 2) * sizeof(*c->pl->stages));
	if (!c->pl->stages)
		return nomem(c);
	c->pl->stages[k++] = ".pre";
	for (i = 0; i < n_list; i++) {
		if (!strcmp(list[i], ".pre") || !strcmp(list[i], ".post"))
			continue;
		for (j = 0; j < k && strcmp(c->pl->stages[j], list[i]); j++)
			;
		if (j == k)
			c->pl->stages[k++] = list[i];
	}
	c->pl->stages[k++] = ".post";
	c->pl->n_stages = k;
	return KILN_OK;
}

static enum kiln_rc check_default(struct ctx *c)
{
	const struct cy_node *d = c->deflt;
	size_t i;

	if (!d || d->kind == CY_NULL)
		return KILN_OK;
	if (d->kind != CY_MAP)
		return failf(c, d, KILN_E_INVALID, "default: expected a mapping, got %s", cy_kind_name(d));
	for (i = 0; i < d->n; i++) {
		const char *k = d->pairs[i].key;

		if (in_list(default_supported, k))
			continue;
		if (in_list(default_unsupported, k))
			warnf(c, d->pairs[i].knode, "default:%s is not supported by kiln (ignored)", k);
		else if (!strcmp(k, "variables"))
			warnf(c, d->pairs[i].knode, "%s",
			      "default:variables is not a GitLab keyword (ignored; use top-level variables:)");
		else
			warnf(c, d->pairs[i].knode, "default: unknown key '%s' (ignored)", k);
	}
	return KILN_OK;
}

static const char *lookup_vars(void *arg, const char *name)
{
	const struct civar *v = civars_get(arg, name);

	return v ? v->value : NULL;
}

static enum kiln_rc exists_default(void *arg, const char *pattern, bool *found, struct kiln_err *e)
{
	const struct ctx *c = arg;

	return cirules_exists_in(c->o->repo_dir, pattern, found, e);
}

static void rules_env(struct ctx *c, struct cirules_env *env, const struct civars *vars, const char *what)
{
	env->lookup = lookup_vars;
	env->lookup_arg = (void *)vars;
	env->exists = c->o->exists ? c->o->exists : exists_default;
	env->exists_arg = c->o->exists ? c->o->exists_arg : c;
	env->warn = warn_cb;
	env->warn_arg = c;
	env->what = what;
}

static enum kiln_rc append_vars(struct civars *to, const struct civars *from, const struct inherit *filter,
				struct kiln_err *e)
{
	enum kiln_rc rc;
	size_t i;

	for (i = 0; i < from->n; i++)
		if ((!filter || inherits(filter, from->v[i].key)) && (rc = civars_set(to, &from->v[i], e)))
			return rc;
	return KILN_OK;
}

static enum kiln_rc load_workflow(struct ctx *c)
{
	const struct cy_node *wf = cy_get(c->root, "workflow"), *rules, *name;
	struct civars env = { 0 }, exp = { 0 };
	struct vec list = { 0 };
	struct cirules_env renv;
	enum kiln_rc rc = KILN_OK;
	size_t i, j;

	c->pl->created = true;
	if (!wf || wf->kind == CY_NULL)
		return KILN_OK;
	if (wf->kind != CY_MAP)
		return failf(c, wf, KILN_E_INVALID, "workflow: expected a mapping, got %s", cy_kind_name(wf));
	for (i = 0; i < wf->n; i++)
		if (strcmp(wf->pairs[i].key, "rules") && strcmp(wf->pairs[i].key, "name"))
			warnf(c, wf->pairs[i].knode, "workflow:%s is not supported by kiln (ignored)", wf->pairs[i].key);
	if ((rc = append_vars(&env, &c->predefined, NULL, c->e)) || (rc = append_vars(&env, &c->global, NULL, c->e)) ||
	    (rc = append_vars(&env, &c->cli, NULL, c->e)))
		goto out;
	rules = cy_get(wf, "rules");
	if (rules && rules->kind != CY_NULL) {
		if ((rc = flatten(c, "workflow", "rules", rules, 0, true, 1000, &list)))
			goto out;
		if ((rc = civars_expand(c->a, &env, &exp, warn_cb, c, c->e)))
			goto out;
		rules_env(c, &renv, &exp, "workflow");
		c->pl->created = false;
		c->pl->workflow_reason = "workflow:rules: no rule matched";
		for (i = 0; i < list.n; i++) {
			const struct cy_node *r = list.v[i], *when, *vars;
			bool match;

			if ((rc = cirules_match(&renv, r, &match, c->e)))
				goto out;
			for (j = 0; j < r->n; j++) {
				const char *k = r->pairs[j].key;

				if (strcmp(k, "if") && strcmp(k, "changes") && strcmp(k, "exists") && strcmp(k, "when") &&
				    strcmp(k, "variables"))
					warnf(c, r->pairs[j].knode, "workflow:rules:%s is not supported by kiln (ignored)",
					      k);
			}
			when = cy_get(r, "when");
			if (when && when->kind != CY_NULL &&
			    (when->kind != CY_SCALAR || (strcmp(when->str, "always") && strcmp(when->str, "never")))) {
				rc = failf(c, when, KILN_E_INVALID,
					   "workflow: rules:when: unknown value '%s' (always or never)",
					   scalar_or_kind(when));
				goto out;
			}
			if (!match)
				continue;
			if (when && when->kind == CY_SCALAR && !strcmp(when->str, "never")) {
				c->pl->workflow_reason = cy_printf(c->a, "workflow:rules: when: never (%s:%u)", when->file,
								   when->line);
				if (!c->pl->workflow_reason)
					rc = nomem(c);
				goto out;
			}
			vars = cy_get(r, "variables");
			if (vars && (rc = civars_parse(c->a, vars, CIVAR_WORKFLOW, "workflow:rules", &c->workflow,
						       warn_cb, c, c->e)))
				goto out;
			c->pl->created = true;
			c->pl->workflow_reason = NULL;
			break;
		}
	}
	name = cy_get(wf, "name");
	if (name && name->kind != CY_NULL) {
		if (name->kind != CY_SCALAR) {
			rc = failf(c, name, KILN_E_INVALID, "workflow:name: expected a string, got %s", cy_kind_name(name));
			goto out;
		}
		civars_clear(&env);
		if ((rc = append_vars(&env, &c->predefined, NULL, c->e)) ||
		    (rc = append_vars(&env, &c->global, NULL, c->e)) ||
		    (rc = append_vars(&env, &c->workflow, NULL, c->e)) || (rc = append_vars(&env, &c->cli, NULL, c->e)) ||
		    (rc = civars_expand(c->a, &env, &exp, warn_cb, c, c->e)) ||
		    (rc = civars_expand_str(c->a, &exp, name->str, &c->pl->name, c->e)))
			goto out;
	}
out:
	vec_free(&list);
	civars_free(&env);
	civars_free(&exp);
	return rc;
}

/* ---- one job definition ------------------------------------------------- */

static const struct cy_node *default_for(struct ctx *c, const struct inherit *in, const char *key)
{
	const struct cy_node *v;

	if (!inherits(in, key))
		return NULL;
	if ((v = cy_get(c->deflt, key)))
		return v;
	if (!strcmp(key, "image") || !strcmp(key, "before_script") || !strcmp(key, "after_script"))
		return cy_get(c->root, key);
	return NULL;
}

/* The job's own key, or the inherited default. */
static const struct cy_node *job_or_default(struct ctx *c, const struct jobdef *d, const struct inherit *in,
					    const char *key)
{
	const struct cy_node *v = cy_get(d->node, key);

	return v ? v : default_for(c, in, key);
}

static enum kiln_rc parse_needs(struct ctx *c, struct jobdef *d, const struct cy_node *n)
{
	struct vec v = { 0 };
	enum kiln_rc rc;
	size_t i, j;

	d->has_needs = true;
	if ((rc = flatten(c, d->what, "needs", n, 0, true, PIPELINE_MAX_NEEDS, &v)))
		goto out;
	if (v.n && !(d->needs = cy_alloc(c->a, v.n * sizeof(*d->needs)))) {
		rc = nomem(c);
		goto out;
	}
	for (i = 0; i < v.n; i++) {
		const struct cy_node *it = v.v[i], *job, *par;
		struct needspec *s = &d->needs[d->n_needs];
		bool skip = false;

		s->node = it;
		s->artifacts = true;
		if (it->kind == CY_SCALAR) {
			s->name = it->str;
			d->n_needs++;
			continue;
		}
		for (j = 0; j < it->n; j++) {
			const char *k = it->pairs[j].key;

			if (!strcmp(k, "pipeline") || !strcmp(k, "project")) {
				warnf(c, it->pairs[j].knode, "%s: needs:%s is not supported by kiln (skipped)", d->what, k);
				skip = true;
			} else if (strcmp(k, "job") && strcmp(k, "optional") && strcmp(k, "artifacts") &&
				   strcmp(k, "parallel") && strcmp(k, "ref")) {
				warnf(c, it->pairs[j].knode, "%s: needs: unknown key '%s' (ignored)", d->what, k);
			}
		}
		if (skip)
			continue;
		job = cy_get(it, "job");
		if (!job || job->kind != CY_SCALAR) {
			rc = failf(c, it, KILN_E_INVALID, "%s: needs: each entry needs a job name (job: NAME)", d->what);
			goto out;
		}
		s->name = job->str;
		if (cy_get(it, "optional") && (rc = parse_bool(c, d->what, "needs:optional", cy_get(it, "optional"),
							      &s->optional)))
			goto out;
		if (cy_get(it, "artifacts") && (rc = parse_bool(c, d->what, "needs:artifacts",
							       cy_get(it, "artifacts"), &s->artifacts)))
			goto out;
		par = cy_get(it, "parallel");
		if (par && par->kind != CY_NULL) {
			const struct cy_node *m = cy_get(par, "matrix");
			struct combo *combos;
			size_t n_combos, k;

			if (!m) {
				rc = failf(c, par, KILN_E_INVALID, "%s: needs:parallel: expected {matrix: [...]}", d->what);
				goto out;
			}
			if ((rc = matrix_combos(c, d->what, s->name, m, &combos, &n_combos)))
				goto out;
			if (!(s->instances = cy_alloc(c->a, n_combos * sizeof(*s->instances)))) {
				rc = nomem(c);
				goto out;
			}
			for (k = 0; k < n_combos; k++)
				s->instances[k] = combos[k].name;
			s->n_instances = n_combos;
		}
		d->n_needs++;
	}
out:
	vec_free(&v);
	return rc;
}

/* Check the rules of a job once (their shape, when, allow_failure and
 * the keys kiln does not implement); matching happens per instance. */
static enum kiln_rc check_rules(struct ctx *c, struct jobdef *d, const struct cy_node *n)
{
	struct vec v = { 0 };
	enum kiln_rc rc;
	size_t i, j;

	d->has_rules = true;
	if ((rc = flatten(c, d->what, "rules", n, 0, true, 1000, &v)))
		goto out;
	if (v.n && !(d->rules = cy_alloc(c->a, v.n * sizeof(*d->rules)))) {
		rc = nomem(c);
		goto out;
	}
	for (i = 0; i < v.n; i++) {
		const struct cy_node *r = v.v[i], *x;
		enum pipeline_when w;
		bool b;

		if (r->kind != CY_MAP) {
			rc = failf(c, r, KILN_E_INVALID, "%s: rules: each rule must be a mapping, got %s", d->what,
				   cy_kind_name(r));
			goto out;
		}
		for (j = 0; j < r->n; j++) {
			const char *k = r->pairs[j].key;

			if (!strcmp(k, "needs") || !strcmp(k, "start_in") || !strcmp(k, "interruptible"))
				warnf(c, r->pairs[j].knode, "%s: rules:%s is not supported by kiln (ignored)", d->what, k);
			else if (strcmp(k, "if") && strcmp(k, "changes") && strcmp(k, "exists") && strcmp(k, "when") &&
				 strcmp(k, "allow_failure") && strcmp(k, "variables"))
				warnf(c, r->pairs[j].knode, "%s: rules: unknown key '%s' (ignored)", d->what, k);
		}
		if ((x = cy_get(r, "when")) && (rc = parse_when(c, d->what, "rules:when", x, &w)))
			goto out;
		if ((x = cy_get(r, "allow_failure")) && (rc = parse_bool(c, d->what, "rules:allow_failure", x, &b)))
			goto out;
		if ((x = cy_get(r, "variables")) && x->kind != CY_MAP && x->kind != CY_NULL) {
			rc = failf(c, x, KILN_E_INVALID, "%s: rules:variables: expected a mapping, got %s", d->what,
				   cy_kind_name(x));
			goto out;
		}
		d->rules[d->n_rules++] = r;
	}
out:
	vec_free(&v);
	return rc;
}

static enum kiln_rc parse_job(struct ctx *c, struct jobdef *d)
{
	const struct cy_node *m = d->node, *n;
	struct inherit inh_default = { true, NULL };
	const char **before = NULL, **script = NULL;
	size_t n_before = 0, n_script = 0, i;
	enum kiln_rc rc;

	if (!(d->what = cy_printf(c->a, "job '%s'", d->name)))
		return nomem(c);
	if (m->kind != CY_MAP)
		return failf(c, d->knode, KILN_E_INVALID, "%s: expected a mapping of job keywords, got %s", d->what,
			     cy_kind_name(m));
	if (!cy_find(m, "script") && !cy_find(m, "run") && !cy_find(m, "trigger"))
		return failf(c, d->knode, KILN_E_INVALID, "job '%s' has no script (a job needs script, run or trigger)",
			     d->name);
	for (i = 0; i < m->n; i++) {
		const char *k = m->pairs[i].key;
		const struct cy_node *kn = m->pairs[i].knode;

		if (in_list(job_supported, k))
			continue;
		if (!strcmp(k, "trigger") || !strcmp(k, "run")) {
			d->skip = !strcmp(k, "trigger") ? "trigger jobs are not run by kiln"
							: "run: (CI steps) is not supported by kiln";
			warnf(c, kn, "%s: %s is not supported by kiln (the job is skipped)", d->what, k);
		} else if (!strcmp(k, "only") || !strcmp(k, "except")) {
			warnf(c, kn, "%s: %s is not supported by kiln (ignored: the job runs as if it were absent; "
			      "use rules)", d->what, k);
		} else if (in_list(job_unsupported, k)) {
			warnf(c, kn, "%s: %s is not supported by kiln (ignored)", d->what, k);
		} else {
			warnf(c, kn, "%s: unknown key '%s' (ignored)", d->what, k);
		}
	}
	/* inherit */
	d->inh_vars.all = true;
	if ((n = cy_get(m, "inherit")) && n->kind != CY_NULL) {
		const struct cy_node *x;

		if (n->kind != CY_MAP)
			return failf(c, n, KILN_E_INVALID, "%s: inherit: expected a mapping, got %s", d->what,
				     cy_kind_name(n));
		for (i = 0; i < n->n; i++)
			if (strcmp(n->pairs[i].key, "default") && strcmp(n->pairs[i].key, "variables"))
				warnf(c, n->pairs[i].knode, "%s: inherit: unknown key '%s' (ignored)", d->what,
				      n->pairs[i].key);
		if ((x = cy_get(n, "default")) && (rc = parse_inherit_one(c, d->what, "default", x, default_supported,
									  default_unsupported, &inh_default)))
			return rc;
		if ((x = cy_get(n, "variables")) &&
		    (rc = parse_inherit_one(c, d->what, "variables", x, NULL, NULL, &d->inh_vars)))
			return rc;
	}
	/* stage */
	d->stage = SIZE_MAX;
	n = cy_get(m, "stage");
	{
		const char *st = "test";

		if (n && n->kind != CY_NULL) {
			if (n->kind != CY_SCALAR)
				return failf(c, n, KILN_E_INVALID, "%s: stage: expected a stage name, got %s", d->what,
					     cy_kind_name(n));
			st = n->str;
		}
		for (i = 0; i < c->pl->n_stages; i++)
			if (!strcmp(c->pl->stages[i], st))
				d->stage = i;
		if (d->stage == SIZE_MAX) {
			char list[300];
			size_t o = 0;

			list[0] = '\0';
			for (i = 0; i < c->pl->n_stages && o < sizeof(list); i++)
				o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", c->pl->stages[i]);
			return failf(c, n ? n : d->knode, KILN_E_INVALID,
				     "%s: stage: '%s' is not one of the stages (%s)", d->what, st, list);
		}
	}
	/* image, scripts, timeout, artifacts: the job's or the default */
	if ((n = job_or_default(c, d, &inh_default, "image")) && (rc = parse_image(c, d->what, n, &d->image)))
		return rc;
	if ((n = job_or_default(c, d, &inh_default, "before_script")) &&
	    (rc = strings(c, d->what, "before_script", n, PIPELINE_MAX_LINES, &before, &n_before)))
		return rc;
	if ((n = cy_get(m, "script"))) {
		if ((rc = strings(c, d->what, "script", n, PIPELINE_MAX_LINES, &script, &n_script)))
			return rc;
		if (!n_script)
			return failf(c, n, KILN_E_INVALID, "%s: script: can't be blank", d->what);
	}
	if (n_before + n_script > PIPELINE_MAX_LINES)
		return failf(c, d->knode, KILN_E_LIMIT, "%s: more than %d script lines", d->what, PIPELINE_MAX_LINES);
	if (n_before + n_script) {
		d->script = cy_alloc(c->a, (n_before + n_script) * sizeof(*d->script));
		if (!d->script)
			return nomem(c);
		if (n_before)
			memcpy(d->script, before, n_before * sizeof(*before));
		if (n_script)
			memcpy(d->script + n_before, script, n_script * sizeof(*script));
	}
	d->n_script = n_before + n_script;
	d->n_before = n_before;
	if ((n = job_or_default(c, d, &inh_default, "after_script")) &&
	    (rc = strings(c, d->what, "after_script", n, PIPELINE_MAX_LINES, &d->after, &d->n_after)))
		return rc;
	if ((n = job_or_default(c, d, &inh_default, "timeout")) && (rc = parse_timeout(c, d->what, n, &d->timeout)))
		return rc;
	if ((n = job_or_default(c, d, &inh_default, "artifacts")) &&
	    (rc = parse_artifacts(c, d->what, n, &d->artifacts)))
		return rc;
	/* variables */
	if ((rc = civars_parse(c->a, cy_get(m, "variables"), CIVAR_JOB, d->what, &d->vars, warn_cb, c, c->e)))
		return rc;
	/* when, allow_failure */
	d->when = PL_ON_SUCCESS;
	if ((n = cy_get(m, "when")) && n->kind != CY_NULL && (rc = parse_when(c, d->what, "when", n, &d->when)))
		return rc;
	if ((n = cy_get(m, "allow_failure")) && n->kind != CY_NULL && (rc = parse_allow_failure(c, d, n)))
		return rc;
	/* needs, dependencies */
	if ((n = cy_get(m, "needs")) && n->kind != CY_NULL && (rc = parse_needs(c, d, n)))
		return rc;
	if ((n = cy_get(m, "dependencies"))) {
		struct vec v = { 0 };

		d->has_deps = true;
		rc = flatten(c, d->what, "dependencies", n, 0, false, PIPELINE_MAX_JOBS, &v);
		if (!rc && v.n && !(d->deps = cy_alloc(c->a, v.n * sizeof(*d->deps))))
			rc = nomem(c);
		if (!rc && v.n) {
			memcpy(d->deps, v.v, v.n * sizeof(*d->deps));
			d->n_deps = v.n;
		}
		vec_free(&v);
		if (rc)
			return rc;
	}
	/* rules */
	if ((n = cy_get(m, "rules")) && n->kind != CY_NULL && (rc = check_rules(c, d, n)))
		return rc;
	/* parallel */
	if ((n = cy_get(m, "parallel")) && n->kind != CY_NULL) {
		long num;

		if (n->kind == CY_MAP) {
			const struct cy_node *mx = cy_get(n, "matrix");

			for (i = 0; i < n->n; i++)
				if (strcmp(n->pairs[i].key, "matrix"))
					warnf(c, n->pairs[i].knode, "%s: parallel: unknown key '%s' (ignored)", d->what,
					      n->pairs[i].key);
			if (!mx)
				return failf(c, n, KILN_E_INVALID, "%s: parallel: expected a number or {matrix: [...]}",
					     d->what);
			if ((rc = matrix_combos(c, d->what, d->name, mx, &d->combos, &d->n_combos)))
				return rc;
		} else if (!cy_int(n, &num) || num < 1 || num > PIPELINE_MAX_PARALLEL) {
			return failf(c, n, KILN_E_INVALID, "%s: parallel: expected a number from 1 to %d, got '%s'",
				     d->what, PIPELINE_MAX_PARALLEL, scalar_or_kind(n));
		} else {
			d->parallel = (int)num;
		}
	}
	return KILN_OK;
}

/* ---- instances ---------------------------------------------------------- */

static const char *slug(struct ctx *c, const char *name)
{
	char buf[64];
	size_t o = 0;
	const char *s;

	for (s = name; *s && o < 63; s++) {
		char ch = (char)tolower((unsigned char)*s);

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
			ch = '-';
		if (ch == '-' && (o == 0 || buf[o - 1] == '-'))
			continue;
		buf[o++] = ch;
	}
	while (o && buf[o - 1] == '-')
		o--;
	buf[o] = '\0';
	return cy_strdup(c->a, buf);
}

static enum kiln_rc set_predef(struct ctx *c, struct civars *env, const char *key, const char *value)
{
	struct civar v = { key, value, true, CIVAR_PREDEFINED, NULL, 0 };

	if (!value)
		return nomem(c);
	return civars_set(env, &v, c->e);
}

/* The variables of job j (instance of d) before expansion, in precedence
 * order; rules_vars may be NULL. */
static enum kiln_rc build_env(struct ctx *c, const struct jobdef *d, const struct pipeline_job *j,
			      const struct combo *cb, const struct civars *rules_vars, struct civars *env)
{
	enum kiln_rc rc;
	size_t i;

	civars_clear(env);
	if ((rc = append_vars(env, &c->predefined, NULL, c->e)) || (rc = set_predef(c, env, "CI_JOB_NAME", j->name)) ||
	    (rc = set_predef(c, env, "CI_JOB_NAME_SLUG", slug(c, j->name))) ||
	    (rc = set_predef(c, env, "CI_JOB_STAGE", c->pl->stages[j->stage])))
		return rc;
	if (j->node_total &&
	    ((rc = set_predef(c, env, "CI_NODE_INDEX", cy_printf(c->a, "%d", j->node_index))) ||
	     (rc = set_predef(c, env, "CI_NODE_TOTAL", cy_printf(c->a, "%d", j->node_total)))))
		return rc;
	if ((rc = append_vars(env, &c->global, &d->inh_vars, c->e)) ||
	    (rc = append_vars(env, &c->workflow, &d->inh_vars, c->e)) || (rc = append_vars(env, &d->vars, NULL, c->e)))
		return rc;
	for (i = 0; cb && i < cb->n_vars; i++)
		if ((rc = civars_set(env, &cb->vars[i], c->e)))
			return rc;
	if (rules_vars && (rc = append_vars(env, rules_vars, NULL, c->e)))
		return rc;
	return append_vars(env, &c->cli, NULL, c->e);
}

/* Match the rules of j; sets when, allow_failure, skipped and rules_vars. */
static enum kiln_rc eval_rules(struct ctx *c, const struct jobdef *d, struct pipeline_job *j,
			       const struct civars *env, struct civars *rules_vars)
{
	struct civars exp = { 0 };
	struct cirules_env renv;
	enum kiln_rc rc;
	size_t i;

	if ((rc = civars_expand(c->a, env, &exp, warn_cb, c, c->e)))
		goto out;
	rules_env(c, &renv, &exp, d->what);
	for (i = 0; i < d->n_rules; i++) {
		const struct cy_node *r = d->rules[i], *x;
		bool match;

		if ((rc = cirules_match(&renv, r, &match, c->e)))
			goto out;
		if (!match)
			continue;
		j->when = d->when;
		if ((x = cy_get(r, "when")) && (rc = parse_when(c, d->what, "rules:when", x, &j->when)))
			goto out;
		if ((x = cy_get(r, "allow_failure"))) {
			if ((rc = parse_bool(c, d->what, "rules:allow_failure", x, &j->allow_failure)))
				goto out;
			j->exit_codes = NULL;
			j->n_exit_codes = 0;
		} else if (d->af_set) {
			j->allow_failure = d->af;
		} else {
			j->allow_failure = false;
		}
		if ((x = cy_get(r, "variables")) &&
		    (rc = civars_parse(c->a, x, CIVAR_RULES, d->what, rules_vars, warn_cb, c, c->e)))
			goto out;
		if (j->when == PL_NEVER) {
			j->skipped = true;
			x = cy_get(r, "when");
			j->skip_reason = cy_printf(c->a, "rules: when: never (%s:%u)", x->file, x->line);
			if (!j->skip_reason)
				rc = nomem(c);
		}
		goto out;
	}
	j->when = PL_NEVER;
	j->skipped = true;
	j->skip_reason = "rules: no rule matched";
out:
	civars_free(&exp);
	return rc;
}

static enum kiln_rc add_instance(struct ctx *c, size_t di, const char *name, int index, int total,
				 const struct combo *cb)
{
	struct jobdef *d = &c->defs[di];
	struct civars env = { 0 }, rules_vars = { 0 }, exp = { 0 };
	struct pipeline_job *j;
	enum kiln_rc rc = KILN_OK;

	if (c->n_jobs >= PIPELINE_MAX_JOBS)
		return failf(c, d->knode, KILN_E_LIMIT, "more than %d jobs", PIPELINE_MAX_JOBS);
	if (VEC_GROW(c->jobs, c->cap_jobs, c->n_jobs, 1, PIPELINE_MAX_JOBS) ||
	    VEC_GROW(c->job_def, c->cap_job_def, c->n_jobs, 1, PIPELINE_MAX_JOBS))
		return kiln_fail(c->e, KILN_E_NOMEM, "out of memory");
	j = &c->jobs[c->n_jobs];
	memset(j, 0, sizeof(*j));
	j->name = name;
	j->group = d->name;
	j->file = d->knode->file;
	j->line = d->knode->line;
	j->stage = d->stage;
	j->when = d->when;
	j->allow_failure = d->af_set ? d->af : d->when == PL_MANUAL;
	j->exit_codes = d->exit_codes;
	j->n_exit_codes = d->n_exit_codes;
	j->has_needs = d->has_needs;
	j->timeout = d->timeout;
	j->script = d->script;
	j->n_script = d->n_script;
	j->n_before_script = d->n_before;
	j->after_script = d->after;
	j->n_after_script = d->n_after;
	j->artifacts = d->artifacts;
	j->node_index = index;
	j->node_total = total;
	if ((rc = build_env(c, d, j, cb, NULL, &env)))
		goto out;
	if (!c->pl->created) {
		j->skipped = true;
		j->skip_reason = c->pl->workflow_reason;
	} else if (d->skip) {
		j->skipped = true;
		j->skip_reason = d->skip;
	} else if (d->has_rules) {
		if ((rc = eval_rules(c, d, j, &env, &rules_vars)))
			goto out;
		if (rules_vars.n && (rc = build_env(c, d, j, cb, &rules_vars, &env)))
			goto out;
	} else if (j->when == PL_NEVER) {
		j->skipped = true;
		j->skip_reason = "when: never";
	}
	if ((rc = civars_expand(c->a, &env, &exp, warn_cb, c, c->e)))
		goto out;
	if (exp.n) {
		struct civar *vars = cy_alloc(c->a, exp.n * sizeof(*vars));

		if (!vars) {
			rc = nomem(c);
			goto out;
		}
		memcpy(vars, exp.v, exp.n * sizeof(*vars));
		j->vars = vars;
		j->n_vars = exp.n;
	}
	if (d->image && (rc = civars_expand_str(c->a, &exp, d->image, &j->image, c->e)))
		goto out;
	c->job_def[c->n_jobs++] = di;
out:
	civars_free(&env);
	civars_free(&rules_vars);
	civars_free(&exp);
	return rc;
}

static enum kiln_rc add_instances(struct ctx *c, size_t di)
{
	struct jobdef *d = &c->defs[di];
	enum kiln_rc rc;
	int k;

	if (d->parallel) {
		for (k = 1; k <= d->parallel; k++) {
			const char *name = cy_printf(c->a, "%s %d/%d", d->name, k, d->parallel);

			if (!name)
				return nomem(c);
			if ((rc = add_instance(c, di, name, k, d->parallel, NULL)))
				return rc;
		}
		return KILN_OK;
	}
	if (d->n_combos) {
		for (k = 0; k < (int)d->n_combos; k++)
			if ((rc = add_instance(c, di, d->combos[k].name, k + 1, (int)d->n_combos, &d->combos[k])))
				return rc;
		return KILN_OK;
	}
	return add_instance(c, di, d->name, 0, 0, NULL);
}

/* ---- needs and dependencies ----------------------------------------------- */

/* Jobs called name, or in the group name (all instances of a parallel job). */
static size_t matching(const struct ctx *c, const char *name, size_t *out, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < c->n_jobs && n < max; i++)
		if (!strcmp(c->jobs[i].name, name) || !strcmp(c->jobs[i].group, name))
			out[n++] = i;
	return n;
}

/* The needs of job ji resolved to jobs (needs: scratch room for n_jobs). */
static enum kiln_rc resolve_needs(struct ctx *c, size_t ji, size_t *cand, struct pipeline_need *needs)
{
	struct pipeline_job *j = &c->jobs[ji];
	const struct jobdef *d = &c->defs[c->job_def[ji]];
	struct pipeline_need *copy;
	size_t k, i, n_needs = 0;

	if (!d->n_needs)
		return KILN_OK;
	for (k = 0; k < d->n_needs; k++) {
		const struct needspec *s = &d->needs[k];
		size_t n = 0, live = 0, l;
		const char *reason = NULL;

		if (s->n_instances) {
			for (l = 0; l < s->n_instances; l++)
				for (i = 0; i < c->n_jobs; i++)
					if (!strcmp(c->jobs[i].name, s->instances[l])) {
						size_t m;

						for (m = 0; m < n && cand[m] != i; m++)
							;
						if (m == n)
							cand[n++] = i;
					}
		} else {
			n = matching(c, s->name, cand, c->n_jobs);
		}
		for (i = 0; i < n; i++) {
			if (c->jobs[cand[i]].skipped)
				reason = c->jobs[cand[i]].skip_reason;
			else
				cand[live++] = cand[i];
		}
		if (!live) {
			if (s->optional)
				continue;
			if (!n)
				return failf(c, s->node, KILN_E_INVALID, "%s: needs: job '%s' is not defined", d->what,
					     s->name);
			return failf(c, s->node, KILN_E_INVALID, "%s: needs: job '%s' is not in the pipeline (%s)",
				     d->what, s->name, reason);
		}
		for (i = 0; i < live; i++) {
			const struct pipeline_job *t = &c->jobs[cand[i]];

			if (cand[i] == ji)
				return failf(c, s->node, KILN_E_INVALID, "%s: needs: a job cannot need itself", d->what);
			if (t->stage > j->stage)
				return failf(c, s->node, KILN_E_INVALID,
					     "%s: needs: job '%s' is in a later stage (%s) than %s (%s)", d->what,
					     t->name, c->pl->stages[t->stage], j->name, c->pl->stages[j->stage]);
			for (l = 0; l < n_needs && needs[l].job != cand[i]; l++)
				;
			if (l < n_needs)
				continue;
			needs[n_needs++] = (struct pipeline_need){ cand[i], s->optional, s->artifacts };
		}
	}
	if (n_needs && !(copy = cy_alloc(c->a, n_needs * sizeof(*copy))))
		return nomem(c);
	if (n_needs) {
		memcpy(copy, needs, n_needs * sizeof(*copy));
		j->needs = copy;
	}
	j->n_needs = n_needs;
	return KILN_OK;
}

/* The jobs whose artifacts job ji downloads (deps: scratch room for n_jobs). */
static enum kiln_rc resolve_deps(struct ctx *c, size_t ji, size_t *cand, size_t *deps)
{
	struct pipeline_job *j = &c->jobs[ji];
	const struct jobdef *d = &c->defs[c->job_def[ji]];
	size_t *copy, n_deps = 0, k, i, l;

	if (d->has_deps) {
		for (k = 0; k < d->n_deps; k++) {
			const struct cy_node *dn = d->deps[k];
			size_t n = matching(c, dn->str, cand, c->n_jobs);

			if (!n)
				return failf(c, dn, KILN_E_INVALID, "%s: dependencies: job '%s' is not defined", d->what,
					     dn->str);
			for (i = 0; i < n; i++) {
				const struct pipeline_job *t = &c->jobs[cand[i]];

				if (t->skipped) {
					warnf(c, dn, "%s: dependencies: job '%s' is not in the pipeline (%s; no artifacts "
					      "from it)", d->what, t->name, t->skip_reason);
					continue;
				}
				if (t->stage > j->stage || cand[i] == ji)
					return failf(c, dn, KILN_E_INVALID,
						     "%s: dependencies: job '%s' is not in an earlier stage", d->what,
						     t->name);
				if (j->has_needs) {
					for (l = 0; l < j->n_needs && j->needs[l].job != cand[i]; l++)
						;
					if (l == j->n_needs)
						return failf(c, dn, KILN_E_INVALID,
							     "%s: dependencies: job '%s' must also be in needs", d->what,
							     t->name);
				} else if (t->stage == j->stage) {
					return failf(c, dn, KILN_E_INVALID,
						     "%s: dependencies: job '%s' is not in an earlier stage", d->what,
						     t->name);
				}
				for (l = 0; l < n_deps && deps[l] != cand[i]; l++)
					;
				if (l == n_deps)
					deps[n_deps++] = cand[i];
			}
		}
	} else if (j->has_needs) {
		for (k = 0; k < j->n_needs; k++)
			if (j->needs[k].artifacts)
				deps[n_deps++] = j->needs[k].job;
	} else {
		for (i = 0; i < c->n_jobs; i++)
			if (!c->jobs[i].skipped && c->jobs[i].stage < j->stage)
				deps[n_deps++] = i;
	}
	if (n_deps && !(copy = cy_alloc(c->a, n_deps * sizeof(*copy))))
		return nomem(c);
	if (n_deps) {
		memcpy(copy, deps, n_deps * sizeof(*copy));
		j->deps = copy;
	}
	j->n_deps = n_deps;
	return KILN_OK;
}

/* A cycle of needs (possible within a stage) is an error. */
static enum kiln_rc needs_cycle(struct ctx *c, size_t ji, unsigned char *state, size_t *path, size_t depth)
{
	const struct pipeline_job *j = &c->jobs[ji];
	enum kiln_rc rc;
	size_t k;

	if (state[ji] == 2)
		return KILN_OK;
	path[depth] = ji;
	if (state[ji] == 1) {
		char chain[400];
		size_t i, o = 0, start = 0;

		for (i = 0; i < depth; i++)
			if (path[i] == ji)
				start = i;
		chain[0] = '\0';
		for (i = start; i <= depth && o < sizeof(chain); i++)
			o += (size_t)snprintf(chain + o, sizeof(chain) - o, "%s%s", i > start ? " -> " : "",
					      c->jobs[path[i]].name);
		return failf(c, c->defs[c->job_def[path[start]]].knode, KILN_E_INVALID,
			     "job '%s': needs: circular dependency: %s", c->jobs[path[start]].name, chain);
	}
	state[ji] = 1;
	for (k = 0; k < j->n_needs; k++)
		if ((rc = needs_cycle(c, j->needs[k].job, state, path, depth + 1)))
			return rc;
	state[ji] = 2;
	return KILN_OK;
}

static int cmp_stage(const void *pa, const void *pb, void *arg)
{
	const struct ctx *c = arg;
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;

	if (c->jobs[a].stage != c->jobs[b].stage)
		return c->jobs[a].stage < c->jobs[b].stage ? -1 : 1;
	return a < b ? -1 : a > b;
}

/* Sort jobs by stage (stable), checking that names are unique. */
static enum kiln_rc sort_jobs(struct ctx *c)
{
	size_t *order = malloc((c->n_jobs + 1) * sizeof(*order));
	struct pipeline_job *jobs = malloc((c->n_jobs + 1) * sizeof(*jobs));
	size_t *defs = malloc((c->n_jobs + 1) * sizeof(*defs));
	enum kiln_rc rc = KILN_OK;
	size_t i, k;

	if (!c->n_jobs)
		goto out;
	if (!order || !jobs || !defs) {
		rc = kiln_fail(c->e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < c->n_jobs; i++) {
		for (k = 0; k < i; k++)
			if (!strcmp(c->jobs[k].name, c->jobs[i].name)) {
				rc = failf(c, c->defs[c->job_def[i]].knode, KILN_E_INVALID,
					   "job '%s': the name is also used by the job at %s:%u", c->jobs[i].name,
					   c->jobs[k].file, c->jobs[k].line);
				goto out;
			}
		order[i] = i;
	}
	qsort_r(order, c->n_jobs, sizeof(*order), cmp_stage, c);
	for (i = 0; i < c->n_jobs; i++) {
		jobs[i] = c->jobs[order[i]];
		defs[i] = c->job_def[order[i]];
	}
	memcpy(c->jobs, jobs, c->n_jobs * sizeof(*jobs));
	memcpy(c->job_def, defs, c->n_jobs * sizeof(*defs));
out:
	free(order);
	free(jobs);
	free(defs);
	return rc;
}

static enum kiln_rc link_jobs(struct ctx *c)
{
	size_t *cand = malloc((c->n_jobs + 1) * sizeof(*cand));
	size_t *deps = malloc((c->n_jobs + 1) * sizeof(*deps));
	struct pipeline_need *needs = malloc((c->n_jobs + 1) * sizeof(*needs));
	unsigned char *state = calloc(c->n_jobs + 1, 1);
	size_t *path = malloc((c->n_jobs + 2) * sizeof(*path));
	enum kiln_rc rc = KILN_OK;
	size_t i;

	if (!cand || !deps || !needs || !state || !path) {
		rc = kiln_fail(c->e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < c->n_jobs && !rc; i++)
		if (!c->jobs[i].skipped)
			rc = resolve_needs(c, i, cand, needs);
	for (i = 0; i < c->n_jobs && !rc; i++)
		if (!c->jobs[i].skipped)
			rc = needs_cycle(c, i, state, path, 0);
	for (i = 0; i < c->n_jobs && !rc; i++)
		if (!c->jobs[i].skipped)
			rc = resolve_deps(c, i, cand, deps);
out:
	free(cand);
	free(deps);
	free(needs);
	free(state);
	free(path);
	return rc;
}

/* ---- load -------------------------------------------------------------- */

static enum kiln_rc parse_kv_list(struct ctx *c, const char *const *list, size_t n, enum civar_source src,
				  struct civars *out)
{
	enum kiln_rc rc;
	size_t i;

	for (i = 0; i < n; i++) {
		const char *eq = strchr(list[i], '=');
		struct civar v = { NULL, NULL, src == CIVAR_PREDEFINED, src, NULL, 0 };

		if (!eq || eq == list[i])
			return kiln_fail(c->e, KILN_E_INVALID, "%s variable '%s': expected KEY=VALUE",
					 src == CIVAR_PREDEFINED ? "predefined" : "pipeline", list[i]);
		v.key = cy_strndup(c->a, list[i], (size_t)(eq - list[i]));
		v.value = cy_strdup(c->a, eq + 1);
		if (!v.key || !v.value)
			return nomem(c);
		if ((rc = civars_set(out, &v, c->e)))
			return rc;
	}
	return KILN_OK;
}

static enum kiln_rc load_jobs(struct ctx *c)
{
	const struct cy_node *root = c->root;
	enum kiln_rc rc;
	size_t i;

	c->defs = calloc(root->n ? root->n : 1, sizeof(*c->defs));
	if (!c->defs)
		return kiln_fail(c->e, KILN_E_NOMEM, "out of memory");
	for (i = 0; i < root->n; i++) {
		const struct cy_pair *p = &root->pairs[i];
		struct jobdef *d;

		if (ciconfig_is_keyword(p->key) || p->key[0] == '.')
			continue;
		d = &c->defs[c->n_defs++];
		d->name = p->key;
		d->node = p->value;
		d->knode = p->knode;
		if (!*p->key)
			return failf(c, p->knode, KILN_E_INVALID, "%s", "a job name cannot be empty");
		if ((rc = parse_job(c, d)))
			return rc;
	}
	for (i = 0; i < c->n_defs; i++)
		if ((rc = add_instances(c, i)))
			return rc;
	return KILN_OK;
}

static enum kiln_rc top_level(struct ctx *c)
{
	const struct cy_node *n;
	size_t i;

	for (i = 0; i < c->root->n; i++) {
		const char *k = c->root->pairs[i].key;

		if (!strcmp(k, "services") || !strcmp(k, "cache"))
			warnf(c, c->root->pairs[i].knode, "%s: is not supported by kiln (ignored)", k);
	}
	c->deflt = cy_get(c->root, "default");
	if (c->deflt && c->deflt->kind == CY_NULL)
		c->deflt = NULL;
	n = cy_get(c->root, "variables");
	return civars_parse(c->a, n, CIVAR_GLOBAL, "", &c->global, warn_cb, c, c->e);
}

enum kiln_rc pipeline_load(const struct pipeline_opts *o, struct pipeline *pl, struct kiln_err *e)
{
	struct ctx c = { .o = o, .pl = pl, .e = e };
	struct ciconfig_ctx cc = { 0 };
	struct civars inc_vars = { 0 };
	char file[PATH_MAX];
	struct cy_node *root;
	enum kiln_rc rc;
	size_t i;

	memset(pl, 0, sizeof(*pl));
	if (!o->repo_dir)
		return kiln_fail(e, KILN_E_INVALID, "pipeline: no repository directory");
	{
		const char *f = o->file ? o->file : PIPELINE_DEFAULT_FILE;
		size_t k = 0;

		/* a repository-relative name, without "./" */
		while (!strncmp(f, "./", 2))
			f += 2;
		for (; *f && k + 1 < sizeof(file); f++)
			if (!(*f == '/' && (k == 0 || file[k - 1] == '/')))
				file[k++] = *f;
		file[k] = '\0';
		if (!k)
			return kiln_fail(e, KILN_E_INVALID, "pipeline: empty file name");
	}
	if (!(pl->arena = c.a = cy_arena_new()))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	if ((rc = parse_kv_list(&c, o->predefined, o->n_predefined, CIVAR_PREDEFINED, &c.predefined)) ||
	    (rc = parse_kv_list(&c, o->variables, o->n_variables, CIVAR_PIPELINE, &c.cli)))
		goto out;
	if ((rc = append_vars(&inc_vars, &c.predefined, NULL, e)) || (rc = append_vars(&inc_vars, &c.cli, NULL, e)))
		goto out;
	cc.a = c.a;
	cc.repo_dir = o->repo_dir;
	cc.warn = warn_cb;
	cc.warn_arg = &c;
	cc.lookup = lookup_vars;
	cc.lookup_arg = &inc_vars;
	cc.exists = o->exists ? o->exists : exists_default;
	cc.exists_arg = o->exists ? o->exists_arg : &c;
	if ((rc = ciconfig_load(&cc, file, &root, e)))
		goto out;
	c.root = root;
	if ((rc = top_level(&c)) || (rc = load_stages(&c)) || (rc = check_default(&c)) || (rc = load_workflow(&c)) ||
	    (rc = load_jobs(&c)) || (rc = sort_jobs(&c)) || (rc = link_jobs(&c)))
		goto out;
	if (c.n_jobs) {
		pl->jobs = cy_alloc(c.a, c.n_jobs * sizeof(*pl->jobs));
		if (!pl->jobs) {
			rc = nomem(&c);
			goto out;
		}
		memcpy(pl->jobs, c.jobs, c.n_jobs * sizeof(*pl->jobs));
		pl->n_jobs = c.n_jobs;
	}
out:
	for (i = 0; i < c.n_defs; i++)
		civars_free(&c.defs[i].vars);
	free(c.defs);
	free(c.jobs);
	free(c.job_def);
	for (i = 0; i < c.n_warned; i++)
		free(c.warned[i]);
	free(c.warned);
	civars_free(&c.predefined);
	civars_free(&c.cli);
	civars_free(&c.global);
	civars_free(&c.workflow);
	civars_free(&inc_vars);
	if (rc)
		pipeline_free(pl);
	return rc;
}

void pipeline_free(struct pipeline *pl)
{
	if (!pl)
		return;
	cy_arena_free(&pl->arena);
	memset(pl, 0, sizeof(*pl));
}

ssize_t pipeline_find(const struct pipeline *pl, const char *name)
{
	size_t i;

	for (i = 0; i < pl->n_jobs; i++)
		if (!strcmp(pl->jobs[i].name, name))
			return (ssize_t)i;
	return -1;
}

const char *pipeline_job_var(const struct pipeline_job *j, const char *key)
{
	size_t i;

	for (i = 0; i < j->n_vars; i++)
		if (!strcmp(j->vars[i].key, key))
			return j->vars[i].value;
	return NULL;
}

/* ---- dump -------------------------------------------------------------- */

static void dump_str(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '\n')
			fputs("\\n", f);
		else if (ch == '\t')
			fputs("\\t", f);
		else if (ch == '\\')
			fputs("\\\\", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\x%02x", ch);
		else
			fputc(ch, f);
	}
}

static void dump_list(FILE *f, const char *label, const char *const *v, size_t n)
{
	size_t i;

	fprintf(f, "    %s:", label);
	for (i = 0; i < n; i++) {
		fputs(i ? ", " : " ", f);
		dump_str(f, v[i]);
	}
	fputc('\n', f);
}

static void dump_job(const struct pipeline *pl, const struct pipeline_job *j, FILE *f)
{
	size_t i;

	fprintf(f, "\njob ");
	dump_str(f, j->name);
	fprintf(f, "\n  defined: %s:%u\n", j->file, j->line);
	if (strcmp(j->group, j->name))
		fprintf(f, "  group: %s\n", j->group);
	fprintf(f, "  stage: %s\n", pl->stages[j->stage]);
	if (j->skipped)
		fprintf(f, "  skipped: %s\n", j->skip_reason);
	if (j->image) {
		fputs("  image: ", f);
		dump_str(f, j->image);
		fputc('\n', f);
	}
	fprintf(f, "  when: %s\n", pipeline_when_name(j->when));
	fprintf(f, "  allow_failure: %s", j->allow_failure ? "true" : "false");
	for (i = 0; i < j->n_exit_codes; i++)
		fprintf(f, "%s%d", i ? ", " : " (exit codes ", j->exit_codes[i]);
	fputs(j->n_exit_codes ? ")\n" : "\n", f);
	if (j->timeout)
		fprintf(f, "  timeout: %d\n", j->timeout);
	if (j->node_total)
		fprintf(f, "  parallel: %d/%d\n", j->node_index, j->node_total);
	if (j->has_needs) {
		fputs("  needs:", f);
		if (!j->n_needs)
			fputs(" []", f);
		for (i = 0; i < j->n_needs; i++) {
			const struct pipeline_need *nd = &j->needs[i];

			fprintf(f, "%s%s", i ? ", " : " ", pl->jobs[nd->job].name);
			if (nd->optional || !nd->artifacts)
				fprintf(f, " (%s%s%s)", nd->optional ? "optional" : "",
					nd->optional && !nd->artifacts ? ", " : "", nd->artifacts ? "" : "no artifacts");
		}
		fputc('\n', f);
	}
	if (!j->skipped) {
		fputs("  dependencies:", f);
		if (!j->n_deps)
			fputs(" -", f);
		for (i = 0; i < j->n_deps; i++)
			fprintf(f, "%s%s", i ? ", " : " ", pl->jobs[j->deps[i]].name);
		fputc('\n', f);
	}
	for (i = 0; i < j->n_vars && j->vars[i].source == CIVAR_PREDEFINED; i++)
		;
	fputs(i < j->n_vars ? "  variables:\n" : "  variables: -\n", f);
	for (i = 0; i < j->n_vars; i++) {
		const struct civar *v = &j->vars[i];

		if (v->source == CIVAR_PREDEFINED)
			continue;
		fprintf(f, "    %s=", v->key);
		dump_str(f, v->value);
		fprintf(f, " [%s%s]\n", civar_source_name(v->source), v->raw ? ", raw" : "");
	}
	fputs("  script:\n", f);
	for (i = 0; i < j->n_script; i++) {
		fputs(i < j->n_before_script ? "    (before) " : "    ", f);
		dump_str(f, j->script[i]);
		fputc('\n', f);
	}
	if (j->n_after_script) {
		fputs("  after_script:\n", f);
		for (i = 0; i < j->n_after_script; i++) {
			fputs("    ", f);
			dump_str(f, j->after_script[i]);
			fputc('\n', f);
		}
	}
	if (j->artifacts.defined) {
		const struct pipeline_artifacts *a = &j->artifacts;

		fputs("  artifacts:\n", f);
		if (a->name) {
			fputs("    name: ", f);
			dump_str(f, a->name);
			fputc('\n', f);
		}
		dump_list(f, "paths", a->paths, a->n_paths);
		if (a->n_exclude)
			dump_list(f, "exclude", a->exclude, a->n_exclude);
		fprintf(f, "    when: %s\n    untracked: %s\n", pipeline_when_name(a->when),
			a->untracked ? "true" : "false");
		if (a->expire_in) {
			fputs("    expire_in: ", f);
			dump_str(f, a->expire_in);
			fputc('\n', f);
		}
	}
}

void pipeline_dump(const struct pipeline *pl, FILE *f)
{
	size_t i;

	if (pl->created)
		fputs("pipeline: created\n", f);
	else
		fprintf(f, "pipeline: not created (%s)\n", pl->workflow_reason);
	if (pl->name) {
		fputs("name: ", f);
		dump_str(f, pl->name);
		fputc('\n', f);
	}
	fputs("stages:", f);
	for (i = 0; i < pl->n_stages; i++)
		fprintf(f, " %s", pl->stages[i]);
	fputc('\n', f);
	for (i = 0; i < pl->n_jobs; i++)
		dump_job(pl, &pl->jobs[i], f);
}

/* ---- plan -------------------------------------------------------------- */

struct planner {
	const struct pipeline *pl;
	unsigned char *want;        /* 1: planned */
	unsigned char *allowed;     /* manual job allowed (--manual or named) */
	unsigned char *mark;        /* topological sort: 1 visiting, 2 placed */
	size_t *pos;                /* job -> step */
	struct pipeline_plan *plan;
	struct kiln_err *e;
};

/* The jobs called name or of group name into out; how many. */
static size_t plan_match(const struct pipeline *pl, const char *name, size_t *out)
{
	size_t i, n = 0;

	for (i = 0; i < pl->n_jobs; i++)
		if (!strcmp(pl->jobs[i].name, name) || !strcmp(pl->jobs[i].group, name))
			out[n++] = i;
	return n;
}

static enum kiln_rc want_needs(struct planner *p, size_t ji, int depth)
{
	const struct pipeline_job *j = &p->pl->jobs[ji];
	enum kiln_rc rc;
	size_t k;

	if (depth > (int)p->pl->n_jobs)
		return KILN_OK;
	for (k = 0; k < j->n_needs; k++) {
		size_t ni = j->needs[k].job;
		const struct pipeline_job *n = &p->pl->jobs[ni];

		if (p->want[ni])
			continue;
		if (n->when == PL_MANUAL && !p->allowed[ni]) {
			if (j->needs[k].optional)
				continue;
			return kiln_fail(p->e, KILN_E_INVALID,
					 "job '%s' needs the manual job '%s': name it or allow it with --manual '%s'",
					 j->name, n->name, n->name);
		}
		p->want[ni] = 1;
		if ((rc = want_needs(p, ni, depth + 1)))
			return rc;
	}
	return KILN_OK;
}

static void place(struct planner *p, size_t ji)
{
	const struct pipeline_job *j = &p->pl->jobs[ji];
	size_t k;

	if (p->mark[ji])
		return;
	p->mark[ji] = 1;
	/* needs in the same stage first (load rejected cycles) */
	for (k = 0; k < j->n_needs; k++) {
		size_t ni = j->needs[k].job;

		if (p->want[ni] && p->pl->jobs[ni].stage == j->stage)
			place(p, ni);
	}
	p->mark[ji] = 2;
	p->pos[ji] = p->plan->n;
	p->plan->steps[p->plan->n++].job = ji;
}

enum kiln_rc pipeline_plan(const struct pipeline *pl, const char *const *selected, size_t n_selected,
			   bool include_needs, const char *const *manual, size_t n_manual,
			   struct pipeline_plan *plan, struct kiln_err *e)
{
	struct planner p = { pl, NULL, NULL, NULL, NULL, plan, e };
	size_t *match = NULL, i, k, s, n_pool = 0, stage_start = 0, cur_stage = SIZE_MAX;
	enum kiln_rc rc = KILN_OK;

	memset(plan, 0, sizeof(*plan));
	p.want = calloc(pl->n_jobs + 1, 1);
	p.allowed = calloc(pl->n_jobs + 1, 1);
	p.mark = calloc(pl->n_jobs + 1, 1);
	p.pos = calloc(pl->n_jobs + 1, sizeof(*p.pos));
	match = calloc(pl->n_jobs + 1, sizeof(*match));
	plan->steps = calloc(pl->n_jobs + 1, sizeof(*plan->steps));
	if (!p.want || !p.allowed || !p.mark || !p.pos || !match || !plan->steps) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n_manual; i++) {
		size_t n = plan_match(pl, manual[i], match);

		if (!n) {
			rc = kiln_fail(e, KILN_E_NOTFOUND, "--manual '%s': no such job", manual[i]);
			goto out;
		}
		for (k = 0; k < n; k++)
			p.allowed[match[k]] = 1;
	}
	if (!n_selected) {
		for (i = 0; i < pl->n_jobs; i++)
			if (!pl->jobs[i].skipped && (pl->jobs[i].when != PL_MANUAL || p.allowed[i]))
				p.want[i] = 1;
	}
	for (s = 0; s < n_selected; s++) {
		size_t n = plan_match(pl, selected[s], match), live = 0;
		const char *reason = NULL;

		if (!n) {
			rc = kiln_fail(e, KILN_E_NOTFOUND, "no job named '%s'", selected[s]);
			goto out;
		}
		for (k = 0; k < n; k++) {
			if (pl->jobs[match[k]].skipped) {
				reason = pl->jobs[match[k]].skip_reason;
				continue;
			}
			p.want[match[k]] = 1;
			p.allowed[match[k]] = 1;
			live++;
		}
		if (!live) {
			rc = kiln_fail(e, KILN_E_INVALID, "job '%s' is not in the pipeline (%s)", selected[s], reason);
			goto out;
		}
	}
	if (include_needs || !n_selected)
		for (i = 0; i < pl->n_jobs; i++)
			if (p.want[i] && (rc = want_needs(&p, i, 0)))
				goto out;
	for (i = 0; i < pl->n_jobs; i++)
		if (p.want[i])
			place(&p, i);
	/* what each step waits for */
	for (i = 0; i < plan->n; i++) {
		const struct pipeline_job *j = &pl->jobs[plan->steps[i].job];

		if (j->has_needs)
			for (k = 0; k < j->n_needs; k++)
				n_pool += p.want[j->needs[k].job];
	}
	plan->pool = calloc(n_pool + 1, sizeof(*plan->pool));
	if (!plan->pool) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	n_pool = 0;
	for (i = 0; i < plan->n; i++) {
		struct pipeline_step *st = &plan->steps[i];
		const struct pipeline_job *j = &pl->jobs[st->job];

		if (j->stage != cur_stage) {
			cur_stage = j->stage;
			stage_start = i;
		}
		st->needs_based = j->has_needs;
		st->n_before = j->has_needs ? 0 : stage_start;
		st->wait = plan->pool + n_pool;
		if (j->has_needs)
			for (k = 0; k < j->n_needs; k++)
				if (p.want[j->needs[k].job])
					plan->pool[n_pool + st->n_wait++] = p.pos[j->needs[k].job];
		n_pool += st->n_wait;
	}
out:
	free(p.want);
	free(p.allowed);
	free(p.mark);
	free(p.pos);
	free(match);
	if (rc)
		pipeline_plan_free(plan);
	return rc;
}

void pipeline_plan_free(struct pipeline_plan *plan)
{
	if (!plan)
		return;
	free(plan->steps);
	free(plan->pool);
	memset(plan, 0, sizeof(*plan));
}

bool pipeline_step_ready(const struct pipeline_plan *plan, size_t i, const bool *done)
{
	const struct pipeline_step *st = &plan->steps[i];
	size_t k;

	if (st->needs_based) {
		for (k = 0; k < st->n_wait; k++)
			if (!done[st->wait[k]])
				return false;
		return true;
	}
	for (k = 0; k < st->n_before; k++)
		if (!done[k])
			return false;
	return true;
}

void pipeline_plan_dump(const struct pipeline *pl, const struct pipeline_plan *plan, FILE *f)
{
	size_t i, k;

	if (!plan->n)
		fputs("(no jobs)\n", f);
	for (i = 0; i < plan->n; i++) {
		const struct pipeline_step *st = &plan->steps[i];

		fprintf(f, "%zu. %s (", i + 1, pl->jobs[st->job].name);
		if (st->needs_based) {
			fputs("needs:", f);
			if (!st->n_wait)
				fputs(" -", f);
			for (k = 0; k < st->n_wait; k++)
				fprintf(f, "%s%zu", k ? ", " : " ", st->wait[k] + 1);
		} else if (st->n_before) {
			fprintf(f, "after steps 1-%zu", st->n_before);
		} else {
			fputs("first", f);
		}
		fputs(")\n", f);
	}
}
