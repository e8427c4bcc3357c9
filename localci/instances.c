#include "localci/pipeline-int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/vec.h"

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
	j->services = d->services;
	j->image_opts = d->image_opts;
	c->job_def[c->n_jobs++] = di;
out:
	civars_free(&env);
	civars_free(&rules_vars);
	civars_free(&exp);
	return rc;
}

enum kiln_rc add_instances(struct ctx *c, size_t di)
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
enum kiln_rc sort_jobs(struct ctx *c)
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

enum kiln_rc link_jobs(struct ctx *c)
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
