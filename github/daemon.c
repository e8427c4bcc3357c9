#include "github/daemon.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "github/entry.h"
#include "gitlab/metrics.h"
#include "lib/log.h"

struct worker {
	struct gh_entry ent;
	unsigned long created, deleted, requests, not_modified; /* counted into /metrics already */
	pthread_t th;
	bool started;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static bool stopping, woken;
static struct worker *workers;
static size_t n_workers;

static enum gh_vm_state no_vm_state(void *arg, const struct gh_rec *r)
{
	(void)arg;
	(void)r;
	return GH_VM_NONE;
}

static void no_vm_destroy(void *arg, const struct gh_rec *r)
{
	(void)arg;
	(void)r;
}

static void gauges(struct worker *w)
{
	char l[METRICS_MAX_LABELS] = "";

	metrics_label(l, sizeof(l), "entry", w->ent.cfg->name);
	metrics_set("kiln_github_queued_jobs", l, (double)w->ent.f.queued);
	metrics_set("kiln_github_runners", l, (double)w->ent.f.n_recs);
	metrics_add("kiln_github_runners_created_total", l, (double)(w->ent.f.created - w->created));
	metrics_add("kiln_github_runners_deleted_total", l, (double)(w->ent.f.deleted - w->deleted));
	metrics_add("kiln_github_api_requests_total", l, (double)(w->ent.c.requests - w->requests));
	metrics_add("kiln_github_api_not_modified_total", l, (double)(w->ent.c.not_modified - w->not_modified));
	w->created = w->ent.f.created;
	w->deleted = w->ent.f.deleted;
	w->requests = w->ent.c.requests;
	w->not_modified = w->ent.c.not_modified;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	struct kiln_err e = { 0 };

	if (gh_fleet_open(&w->ent.f, &e))
		log_error("%s", e.msg);
	pthread_mutex_lock(&mu);
	while (!stopping) {
		struct timespec until;

		pthread_mutex_unlock(&mu);
		if (gh_fleet_round(&w->ent.f, (long long)time(NULL), &e))
			log_error("github %s: %s", w->ent.cfg->name, e.msg);
		gauges(w);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += GH_ROUND_S;
		pthread_mutex_lock(&mu);
		while (!stopping && !woken)
			if (pthread_cond_timedwait(&cv, &mu, &until))
				break;
		woken = false;
	}
	pthread_mutex_unlock(&mu);
	gh_fleet_close(&w->ent.f);
	return NULL;
}

enum kiln_rc gh_daemon_start(const struct kiln_config *cfg, struct kiln_err *e)
{
	pthread_condattr_t ca;
	size_t i;

	if (!cfg->n_github)
		return KILN_OK;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	stopping = woken = false;
	if (!(workers = calloc(cfg->n_github, sizeof(*workers))))
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	n_workers = cfg->n_github;
	gh_global_init();
	for (i = 0; i < n_workers; i++) {
		struct worker *w = &workers[i];
		struct kiln_err e2 = { 0 };

		if (gh_entry_open(&w->ent, &cfg->github[i], cfg->state_dir, &e2)) {
			log_error("%s (not serving it)", e2.msg);
			continue;
		}
		/* No VM side yet: nothing boots, every record is reaped. */
		w->ent.f.ops = (struct gh_vm_ops){ NULL, no_vm_state, no_vm_destroy, NULL, NULL };
		if (pthread_create(&w->th, NULL, run, w)) {
			log_error("github %s: cannot start a thread", cfg->github[i].name);
			continue;
		}
		w->started = true;
		log_info("github %s: watching %s (runner VMs are not implemented yet: no runner is started)",
			 cfg->github[i].name, cfg->github[i].url);
	}
	return KILN_OK;
}

void gh_daemon_wake(void)
{
	pthread_mutex_lock(&mu);
	woken = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

void gh_daemon_stop(void)
{
	size_t i;

	if (!workers)
		return;
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (i = 0; i < n_workers; i++) {
		if (workers[i].started)
			pthread_join(workers[i].th, NULL);
		gh_entry_close(&workers[i].ent);
	}
	free(workers);
	workers = NULL;
	n_workers = 0;
}
