#include "github/round.h"

#include <stdlib.h>
#include <string.h>

#include "github/jit.h"
#include "lib/log.h"
#include "lib/slots.h"

enum kiln_rc gh_fleet_open(struct gh_fleet *f, struct kiln_err *e)
{
	enum kiln_rc rc;
	size_t i;

	if ((rc = gh_rec_load_all(f->dir, &f->recs, &f->n_recs, e)))
		return rc;
	for (i = 0; i < f->n_recs; i++)
		kiln_slots_add(); /* held until the record goes, like a spawned one's */
	if (f->n_recs)
		log_info("github %s: %zu runner record%s from before; checking them", f->entry, f->n_recs,
			 f->n_recs == 1 ? "" : "s");
	return KILN_OK;
}

void gh_fleet_close(struct gh_fleet *f)
{
	size_t i;

	for (i = 0; i < f->n_recs; i++)
		kiln_slots_give();
	free(f->recs);
	f->recs = NULL;
	f->n_recs = 0;
}

static void drop_cand(struct gh_fleet *f, size_t i)
{
	memmove(&f->cands[i], &f->cands[i + 1], (f->n_cands - i - 1) * sizeof(f->cands[0]));
	f->n_cands--;
}

/* Remember this round's queued jobs as candidates, the oldest going first. */
static void add_cands(struct gh_fleet *f, const struct gh_demand *d)
{
	size_t i, k;

	for (i = 0; i < d->n_ids; i++) {
		for (k = 0; k < f->n_cands && f->cands[k].job != d->job_ids[i]; k++)
			;
		if (k < f->n_cands)
			continue;
		if (f->n_cands == GH_CANDS_MAX)
			drop_cand(f, 0);
		f->cands[f->n_cands].job = d->job_ids[i];
		f->cands[f->n_cands].runner_id = 0;
		snprintf(f->cands[f->n_cands].repo, sizeof(f->cands[0].repo), "%s", d->job_repos[i]);
		f->n_cands++;
	}
}

/* The result of the job r's runner ran, from the API: its record's job,
 * else the candidate GitHub shows on r's runner. Candidates found
 * completed are forgotten (whoever ran them). */
static void report_job(struct gh_fleet *f, struct gh_rec *r)
{
	struct kiln_err e = { 0 };
	struct gh_job j;
	size_t i;

	if (r->job_id > 0 && r->repo[0]) {
		if (gh_job_get(f->c, r->repo, r->job_id, &j, &e)) {
			log_warn("github %s: runner %s: the result of job %lld: %s", f->entry, r->name, r->job_id, e.msg);
			return;
		}
	} else {
		for (i = 0; i < f->n_cands;) {
			if (gh_job_get(f->c, f->cands[i].repo, f->cands[i].job, &j, &e)) {
				drop_cand(f, i); /* gone (404), or unreadable: not worth asking again */
				continue;
			}
			if (j.runner_id == r->id)
				break;
			if (!strcmp(j.status, "completed"))
				drop_cand(f, i);
			else
				i++;
		}
		if (i == f->n_cands) {
			log_info("github %s: runner %s: GitHub shows no job it ran", f->entry, r->name);
			return;
		}
		r->job_id = j.id;
		snprintf(r->repo, sizeof(r->repo), "%s", f->cands[i].repo);
	}
	for (i = 0; i < f->n_cands; i++)
		if (f->cands[i].job == j.id) {
			drop_cand(f, i);
			break;
		}
	if (!strcmp(j.conclusion, "success"))
		f->jobs_succeeded++;
	else if (j.conclusion[0])
		f->jobs_failed++;
	log_info("github %s: job %lld of %s on runner %s: %s%s", f->entry, j.id, r->repo, r->name,
		 j.conclusion[0] ? j.conclusion : j.status, j.conclusion[0] ? "" : " (no result yet)");
}

/* Delete r's runner (404 fine), destroy its VM, forget the record. false
 * when GitHub says it is busy: the record stays for the next round. */
static bool retire(struct gh_fleet *f, struct gh_rec *r, const char *why)
{
	struct kiln_err e = { 0 };
	enum gh_vm_state st = f->ops.state(f->ops.arg, r);
	enum kiln_rc rc = gh_runner_delete(f->c, &f->scope, r->id, &e);

	if (rc == KILN_E_INVALID && st != GH_VM_EXITED && st != GH_VM_NONE) {
		log_warn("github %s: runner %s (%s): %s; trying again next round", f->entry, r->name, why, e.msg);
		return false;
	}
	if (rc && rc != KILN_E_INVALID)
		log_warn("github %s: deleting runner %s: %s", f->entry, r->name, e.msg);
	f->ops.destroy(f->ops.arg, r);
	if (r->job_id || ((st == GH_VM_EXITED || st == GH_VM_NONE) && f->n_cands))
		report_job(f, r);
	if (gh_rec_remove(f->dir, r->name, &e))
		log_warn("github %s: %s", f->entry, e.msg);
	log_info("github %s: runner %s retired (%s)", f->entry, r->name, why);
	f->deleted++;
	kiln_slots_give();
	return true;
}

/* One new runner: a slot, its VM booting (ops.start), the JIT config,
 * the record on disk, then the blob to the VM. */
static enum kiln_rc spawn(struct gh_fleet *f, long long now, struct kiln_err *e)
{
	struct gh_jit_req req = { .prefix = f->prefix, .runner_group_id = f->runner_group_id,
				  .labels = f->labels, .mask = f->ops.mask, .mask_arg = f->ops.arg };
	struct gh_jit j = { 0 };
	struct gh_rec *v, *r, early = { 0 };
	struct kiln_err e2 = { 0 };
	enum kiln_rc rc;

	if (!kiln_slots_take())
		return kiln_fail(e, KILN_E_LIMIT, "github %s: no free slot", f->entry);
	if (!(v = realloc(f->recs, (f->n_recs + 1) * sizeof(*v)))) {
		kiln_slots_give();
		return kiln_fail(e, KILN_E_NOMEM, "github %s: out of memory", f->entry);
	}
	f->recs = v;
	/* The VM boots while GitHub makes the JIT config: the guest waits
	 * for it, and cannot start a runner before the record is on disk. */
	if (f->ops.start && ((rc = gh_runner_name(f->prefix, early.name, sizeof(early.name), e)) ||
			     (rc = f->ops.start(f->ops.arg, early.name, e)))) {
		kiln_slots_give();
		goto out;
	}
	if (f->ops.start) {
		snprintf(early.vm, sizeof(early.vm), "%s", early.name);
		req.name = early.name;
	}
	if ((rc = gh_jit_create(f->c, &f->scope, &req, &j, e))) {
		f->ops.destroy(f->ops.arg, &early);
		kiln_slots_give();
		goto out;
	}
	r = &f->recs[f->n_recs];
	memset(r, 0, sizeof(*r));
	r->id = j.runner.id;
	snprintf(r->name, sizeof(r->name), "%s", j.runner.name);
	snprintf(r->vm, sizeof(r->vm), "%s", early.vm);
	r->created = now;
	/* On disk before the runner can start (the blob is in no VM yet): a
	 * kill -9 from here on leaves a record that names the runner to
	 * delete. */
	if ((rc = gh_rec_save(f->dir, r, e))) {
		gh_runner_delete(f->c, &f->scope, r->id, &e2);
		f->ops.destroy(f->ops.arg, &early);
		kiln_slots_give();
		goto out;
	}
	f->n_recs++;
	f->created++;
	if ((rc = f->ops.boot(f->ops.arg, r, j.encoded, j.len, e))) {
		f->spawn_failures++;
		retire(f, r, "its VM did not boot");
		f->n_recs--;
		goto out;
	}
	if (gh_rec_save(f->dir, r, &e2))
		log_warn("github %s: %s", f->entry, e2.msg);
	log_info("github %s: runner %s (id %lld) started in VM %s", f->entry, r->name, r->id, r->vm);
out:
	gh_jit_free(&j);
	return rc;
}

enum kiln_rc gh_fleet_round(struct gh_fleet *f, long long now, struct kiln_err *e)
{
	struct gh_demand d = { 0 };
	struct gh_runner *listed = NULL;
	struct gh_seen *seen = NULL;
	struct gh_act *acts = NULL;
	size_t max_acts = 2 * f->n_recs + 2 * GH_MAX_RUNNERS + 1;
	size_t n_listed = 0, n_acts, i, j, kept;
	bool *gone = NULL;
	enum kiln_rc rc;

	/* Runners first, then jobs: a job taken between the two calls then
	 * shows as taken (its runner busy, below) against a runner listed
	 * idle, and is spawned for by nobody. In the other order it would
	 * count as queued and its runner as busy: one runner too many. */
	if ((rc = gh_runners_list(f->c, &f->scope, f->prefix, &listed, &n_listed, e)))
		goto out;
	if ((rc = gh_demand_poll(f->c, &f->scope, f->installation, f->labels, &d, e)))
		goto out;
	f->queued = d.matching;
	add_cands(f, &d);
	seen = calloc(f->n_recs + 1, sizeof(*seen));
	gone = calloc(f->n_recs + 1, sizeof(*gone));
	acts = calloc(max_acts, sizeof(*acts));
	if (!seen || !gone || !acts) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github %s: out of memory", f->entry);
		goto out;
	}
	for (i = 0; i < f->n_recs; i++) {
		struct gh_rec *r = &f->recs[i];

		seen[i].vm = f->ops.state(f->ops.arg, r);
		for (j = 0; j < d.n_taken; j++)
			if (d.taken[j].runner_id == r->id && r->job_id != d.taken[j].job) {
				struct kiln_err e2 = { 0 };

				r->job_id = d.taken[j].job;
				snprintf(r->repo, sizeof(r->repo), "%s", d.taken[j].repo);
				seen[i].runner_busy = true;
				log_info("github %s: runner %s took job %lld of %s", f->entry, r->name, r->job_id, r->repo);
				if (gh_rec_save(f->dir, r, &e2)) /* a restarted kiln reports it too */
					log_warn("github %s: %s", f->entry, e2.msg);
			}
		for (j = 0; j < n_listed; j++)
			if (listed[j].id == f->recs[i].id && listed[j].busy) {
				seen[i].runner_busy = true;
				if (!f->recs[i].job_id)
					f->recs[i].job_id = -1; /* took a job; which one the API says later */
			}
	}
	{
		struct gh_plan_in in = { .recs = f->recs, .seen = seen, .n_recs = f->n_recs, .listed = listed,
					 .n_listed = n_listed, .queued = d.matching, .warm_pool = f->warm_pool,
					 .max_runners = f->max_runners,
					 /* retirements below give slots back before the spawns */
					 .free_slots = kiln_slots_free() + (int)f->n_recs, .now = now,
					 .idle_timeout = f->idle_timeout, .job_timeout = f->job_timeout };

		gh_plan(&in, acts, max_acts, &n_acts);
	}
	for (i = 0; i < n_acts; i++) {
		struct gh_act *a = &acts[i];
		struct kiln_err e2 = { 0 };

		switch (a->kind) {
		case GH_ACT_DESTROY_VM:
			if (!gone[a->rec])
				f->ops.destroy(f->ops.arg, &f->recs[a->rec]);
			break;
		case GH_ACT_DELETE_RUNNER:
			if (!gone[a->rec])
				gone[a->rec] = retire(f, &f->recs[a->rec], a->why);
			break;
		case GH_ACT_DELETE_ORPHAN:
			if (gh_runner_delete(f->c, &f->scope, a->runner_id, &e2))
				log_warn("github %s: deleting offline runner %lld: %s", f->entry, a->runner_id, e2.msg);
			else
				f->deleted++;
			break;
		case GH_ACT_SPAWN:
			break; /* after the records are compacted */
		}
	}
	for (i = kept = 0; i < f->n_recs; i++)
		if (!gone[i])
			f->recs[kept++] = f->recs[i];
	f->n_recs = kept;
	for (i = 0; f->ops.boot && i < n_acts; i++) /* no VM side: watch and reap only */
		if (acts[i].kind == GH_ACT_SPAWN)
			for (j = 0; j < (size_t)acts[i].n; j++) {
				struct kiln_err e2 = { 0 };

				if (!kiln_slots_free())
					break; /* the other service took the rest */
				if (spawn(f, now, &e2)) {
					log_error("github %s: starting a runner: %s", f->entry, e2.msg);
					break;
				}
			}
out:
	free(acts);
	free(gone);
	free(seen);
	free(listed);
	gh_demand_free(&d);
	return rc;
}
