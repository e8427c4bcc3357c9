#include "localci/pipeline.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Plan ni, which ji waits for or takes artifacts from, and what ni waits
 * for in turn. */
static enum kiln_rc want_needs(struct planner *p, size_t ji, int depth);

static enum kiln_rc want_one(struct planner *p, size_t ni, int depth)
{
	if (p->want[ni] || p->pl->jobs[ni].skipped)
		return KILN_OK;
	p->want[ni] = 1;
	return want_needs(p, ni, depth + 1);
}

/* Plan what ji waits for: its needs, or without needs: every job of the
 * earlier stages; and the jobs whose artifacts it downloads
 * (dependencies:), so that they exist. Manual ones only when allowed: in
 * GitLab they would not have run either. */
static enum kiln_rc want_needs(struct planner *p, size_t ji, int depth)
{
	const struct pipeline_job *j = &p->pl->jobs[ji];
	enum kiln_rc rc;
	size_t k;

	if (depth > (int)p->pl->n_jobs)
		return KILN_OK;
	if (!j->has_needs)
		for (k = 0; k < p->pl->n_jobs; k++) {
			const struct pipeline_job *n = &p->pl->jobs[k];

			if (n->stage < j->stage && (n->when != PL_MANUAL || p->allowed[k]) &&
			    (rc = want_one(p, k, depth)))
				return rc;
		}
	for (k = 0; k < j->n_deps; k++)
		if ((p->pl->jobs[j->deps[k]].when != PL_MANUAL || p->allowed[j->deps[k]]) &&
		    (rc = want_one(p, j->deps[k], depth)))
			return rc;
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
