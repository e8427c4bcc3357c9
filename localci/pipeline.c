#include "localci/pipeline-int.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/vec.h"

#define MAX_NESTED_LISTS 10
#define MAX_WARNINGS 2000
#define MAX_LIST_ITEMS 1000000 /* nodes one list collects: past every item limit of its callers */

/* ---- context, messages ------------------------------------------------ */

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

void warn_cb(void *arg, const char *msg)
{
	warn_msg(arg, msg);
}

void warnf(struct ctx *c, const struct cy_node *n, const char *fmt, ...)
{
	char what[420], msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%u: %s", n->file, n->line, what);
	warn_msg(c, msg);
}

enum kiln_rc failf(struct ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *fmt, ...)
{
	char what[460];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(c->e, rc, "%s:%u: %s", n->file, n->line, what);
}

enum kiln_rc nomem(struct ctx *c)
{
	return cy_fail_alloc(c->a, c->e);
}

int vec_push(struct vec *v, void *p)
{
	if (VEC_GROW(v->v, v->cap, v->n, 1, MAX_LIST_ITEMS))
		return -1;
	v->v[v->n++] = p;
	return 0;
}

void vec_free(struct vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

/* Flatten n (a scalar, or lists nested up to MAX_NESTED_LISTS levels) into
 * out, as nodes. Mappings are taken when allow_maps, otherwise an error;
 * null items are skipped. */
enum kiln_rc flatten(struct ctx *c, const char *what, const char *key, const struct cy_node *n, int depth,
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
enum kiln_rc strings(struct ctx *c, const char *what, const char *key, const struct cy_node *n, size_t max,
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

const char *scalar_or_kind(const struct cy_node *n)
{
	return n->kind == CY_SCALAR ? n->str : cy_kind_name(n);
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

		if (!strcmp(k, "cache"))
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
