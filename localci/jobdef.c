#include "localci/pipeline-int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const default_supported[] = {
	"image", "services", "before_script", "after_script", "timeout", "artifacts", NULL,
};

static const char *const default_unsupported[] = {
	"interruptible", "retry", "tags", "cache", "hooks", "id_tokens", "identity", NULL,
};

static const char *const job_supported[] = {
	"stage", "script", "before_script", "after_script", "image", "variables", "rules", "when",
	"allow_failure", "needs", "dependencies", "artifacts", "timeout", "parallel", "inherit", "services", NULL,
};

/* GitLab job keywords kiln does not implement (a warning each). */
static const char *const job_unsupported[] = {
	"cache", "tags", "retry", "interruptible", "environment", "coverage", "resource_group",
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
enum kiln_rc parse_when(struct ctx *c, const char *what, const char *key, const struct cy_node *n,
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

enum kiln_rc parse_bool(struct ctx *c, const char *what, const char *key, const struct cy_node *n, bool *b)
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

/* n a list of strings (entrypoint), or also one string (pull_policy). */
static bool string_list(const struct cy_node *n, bool scalar_ok)
{
	size_t i;

	if (n->kind == CY_SCALAR)
		return scalar_ok;
	for (i = 0; n->kind == CY_SEQ && i < n->n && n->items[i]->kind == CY_SCALAR; i++)
		;
	return n->kind == CY_SEQ && i == n->n;
}

/* image: a name, or a map with name, entrypoint and pull_policy (kept as
 * *opts for localci/project.c's payload). */
static enum kiln_rc parse_image(struct ctx *c, const char *what, const struct cy_node *n, const char **out,
				const struct cy_node **opts)
{
	const struct cy_node *name = n, *v;
	size_t i;

	*out = NULL;
	*opts = NULL;
	if (n->kind == CY_NULL)
		return KILN_OK;
	if (n->kind == CY_MAP) {
		name = cy_get(n, "name");
		for (i = 0; i < n->n; i++) {
			const char *key = n->pairs[i].key;

			v = n->pairs[i].value;
			if (!strcmp(key, "entrypoint") && !string_list(v, false))
				return failf(c, v, KILN_E_INVALID, "%s: image:entrypoint: expected a list of strings",
					     what);
			if (!strcmp(key, "pull_policy") && !string_list(v, true))
				return failf(c, v, KILN_E_INVALID,
					     "%s: image:pull_policy: expected a policy or a list of policies", what);
			if (strcmp(key, "name") && strcmp(key, "entrypoint") && strcmp(key, "pull_policy"))
				warnf(c, n->pairs[i].knode, "%s: image:%s is not supported by kiln (ignored)", what,
				      key);
		}
		if (!name)
			return failf(c, n, KILN_E_INVALID, "%s: image: missing key 'name'", what);
		*opts = n;
	}
	if (name->kind != CY_SCALAR)
		return failf(c, name, KILN_E_INVALID, "%s: image: expected an image name, got %s", what,
			     cy_kind_name(name));
	*out = name->str;
	return KILN_OK;
}

/* services: a list of names or of maps with name, alias, entrypoint,
 * command, pull_policy and variables, as GitLab takes them; checked here, turned into
 * the payload's services[] by localci/project.c. */
static enum kiln_rc parse_services(struct ctx *c, const char *what, const struct cy_node *n,
				   const struct cy_node **out)
{
	size_t i, k;

	*out = NULL;
	if (n->kind == CY_NULL)
		return KILN_OK;
	if (n->kind != CY_SEQ)
		return failf(c, n, KILN_E_INVALID, "%s: services: expected a list, got %s", what, cy_kind_name(n));
	for (i = 0; i < n->n; i++) {
		const struct cy_node *s = n->items[i], *v;

		if (s->kind == CY_SCALAR)
			continue;
		if (s->kind != CY_MAP || !(v = cy_get(s, "name")) || v->kind != CY_SCALAR)
			return failf(c, s, KILN_E_INVALID, "%s: services[%zu]: expected a name or a map with a name",
				     what, i);
		for (k = 0; k < s->n; k++) {
			const char *key = s->pairs[k].key;
			const struct cy_node *val = s->pairs[k].value;
			size_t j;

			if (!strcmp(key, "name") || (!strcmp(key, "alias") && val->kind == CY_SCALAR))
				continue;
			if (!strcmp(key, "entrypoint") || !strcmp(key, "command")) {
				for (j = 0; val->kind == CY_SEQ && j < val->n && val->items[j]->kind == CY_SCALAR; j++)
					;
				if (val->kind == CY_SEQ && j == val->n)
					continue;
				return failf(c, val, KILN_E_INVALID, "%s: services[%zu]: %s: expected a list of strings",
					     what, i, key);
			}
			if (!strcmp(key, "pull_policy")) {
				if (string_list(val, true))
					continue;
				return failf(c, val, KILN_E_INVALID,
					     "%s: services[%zu]: pull_policy: expected a policy or a list of policies", what,
					     i);
			}
			if (!strcmp(key, "variables")) {
				for (j = 0; val->kind == CY_MAP && j < val->n && val->pairs[j].value->kind == CY_SCALAR; j++)
					;
				if (val->kind == CY_MAP && j == val->n)
					continue;
				return failf(c, val, KILN_E_INVALID, "%s: services[%zu]: variables: expected a map of strings",
					     what, i);
			}
			if (!strcmp(key, "alias"))
				return failf(c, val, KILN_E_INVALID, "%s: services[%zu]: alias: expected a string", what, i);
			warnf(c, s->pairs[k].knode, "%s: services:%s is not supported by kiln (ignored)", what, key);
		}
	}
	*out = n;
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

enum kiln_rc load_stages(struct ctx *c)
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

enum kiln_rc check_default(struct ctx *c)
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

const char *lookup_vars(void *arg, const char *name)
{
	const struct civar *v = civars_get(arg, name);

	return v ? v->value : NULL;
}

enum kiln_rc exists_default(void *arg, const char *pattern, bool *found, struct kiln_err *e)
{
	const struct ctx *c = arg;

	return cirules_exists_in(c->o->repo_dir, pattern, found, e);
}

void rules_env(struct ctx *c, struct cirules_env *env, const struct civars *vars, const char *what)
{
	env->lookup = lookup_vars;
	env->lookup_arg = (void *)vars;
	env->exists = c->o->exists ? c->o->exists : exists_default;
	env->exists_arg = c->o->exists ? c->o->exists_arg : c;
	env->warn = warn_cb;
	env->warn_arg = c;
	env->what = what;
}

enum kiln_rc append_vars(struct civars *to, const struct civars *from, const struct inherit *filter,
			 struct kiln_err *e)
{
	enum kiln_rc rc;
	size_t i;

	for (i = 0; i < from->n; i++)
		if ((!filter || inherits(filter, from->v[i].key)) && (rc = civars_set(to, &from->v[i], e)))
			return rc;
	return KILN_OK;
}

enum kiln_rc load_workflow(struct ctx *c)
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
	/* The deprecated top-level forms, as GitLab still reads them. */
	if (!strcmp(key, "image") || !strcmp(key, "services") || !strcmp(key, "before_script") ||
	    !strcmp(key, "after_script"))
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
				/* The job still runs, without that job's artifacts. */
				warnf(c, it->pairs[j].knode, "%s: needs:%s (a job of another %s) is ignored: kiln runs "
				      "this pipeline only", d->what, k, !strcmp(k, "project") ? "project" : "pipeline");
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

enum kiln_rc parse_job(struct ctx *c, struct jobdef *d)
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
	if ((n = job_or_default(c, d, &inh_default, "image")) && (rc = parse_image(c, d->what, n, &d->image, &d->image_opts)))
		return rc;
	if ((n = job_or_default(c, d, &inh_default, "services")) &&
	    (rc = parse_services(c, d->what, n, &d->services)))
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
