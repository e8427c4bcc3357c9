#include "github/daemon.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "github/entry.h"
#include "github/vm.h"
#include "github/webhook.h"
#include "gitlab/metrics.h"
#include "lib/log.h"

struct worker {
	struct gh_entry ent;
	struct gh_vms *vms;     /* the runner VMs */
	unsigned long created, deleted, requests, not_modified, succeeded, failed; /* counted into /metrics already */
	pthread_t th;
	bool started;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static bool stopping;
static unsigned long wakes; /* gh_daemon_wake calls: each worker compares with what it last saw */
static struct worker *workers;
static size_t n_workers;

static void gauges(struct worker *w)
{
	char l[METRICS_MAX_LABELS] = "", ok[METRICS_MAX_LABELS], other[METRICS_MAX_LABELS];

	metrics_label(l, sizeof(l), "entry", w->ent.cfg->name);
	metrics_label(strcpy(ok, l), sizeof(ok), "result", "success");
	metrics_label(strcpy(other, l), sizeof(other), "result", "other");
	metrics_add("kiln_github_jobs_total", ok, (double)(w->ent.f.jobs_succeeded - w->succeeded));
	metrics_add("kiln_github_jobs_total", other, (double)(w->ent.f.jobs_failed - w->failed));
	w->succeeded = w->ent.f.jobs_succeeded;
	w->failed = w->ent.f.jobs_failed;
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
	unsigned long gen;

	if (gh_fleet_open(&w->ent.f, &e))
		log_error("%s", e.msg);
	pthread_mutex_lock(&mu);
	while (!stopping) {
		struct timespec until;

		gen = wakes;
		pthread_mutex_unlock(&mu);
		if (gh_fleet_round(&w->ent.f, (long long)time(NULL), &e))
			log_error("github %s: %s", w->ent.cfg->name, e.msg);
		gauges(w);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += w->ent.cfg->poll_interval > 0 ? w->ent.cfg->poll_interval : GH_ROUND_S;
		pthread_mutex_lock(&mu);
		/* A wake during the round counts: its event may postdate what the round read. */
		while (!stopping && wakes == gen)
			if (pthread_cond_timedwait(&cv, &mu, &until))
				break;
	}
	pthread_mutex_unlock(&mu);
	gh_fleet_close(&w->ent.f);
	return NULL;
}

static struct gh_deliveries *seen; /* delivery ids, shared by the entries (one server thread) */
static pthread_mutex_t wh_mu = PTHREAD_MUTEX_INITIALIZER; /* a webhook in flight vs gh_daemon_stop */

/* POST /github/webhook: the first entry whose webhook_secret signs the
 * body decides; a workflow_job wakes every entry's round (state always
 * comes from the API, never from the event). */
static unsigned webhook(void *arg, const char *body, size_t len, const char *(*header)(void *conn, const char *name),
			void *conn)
{
	const char *event = header(conn, "X-GitHub-Event"), *delivery = header(conn, "X-GitHub-Delivery");
	const char *sig = header(conn, "X-Hub-Signature-256");
	struct kiln_err e = { 0 };
	unsigned status = 401;
	size_t i;

	(void)arg;
	pthread_mutex_lock(&wh_mu);
	for (i = 0; i < n_workers; i++) {
		const char *secret = workers[i].ent.cfg ? workers[i].ent.cfg->webhook_secret : NULL;
		struct gh_wh_event ev = { 0 };
		enum gh_wh_verdict v;

		if (!secret || !sig || !gh_webhook_signed(secret, body, len, sig))
			continue;
		v = gh_webhook_accept(secret, seen, event, delivery, sig, body, len, &ev, &e);
		gh_wh_event_free(&ev);
		if (v == GH_WH_REFUSED) {
			log_warn("github webhook: %s", e.msg);
			status = 400;
		} else {
			if (v == GH_WH_JOB) {
				metrics_add("kiln_github_webhooks_total", "", 1);
				gh_daemon_wake();
			}
			status = 200;
		}
		break;
	}
	pthread_mutex_unlock(&wh_mu);
	if (status == 401)
		log_warn("github webhook: no entry's webhook_secret signs this delivery; refused");
	return status;
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
	stopping = false;
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
		if (!(w->vms = gh_vms_new(cfg, &cfg->github[i], w->ent.f.job_timeout, gh_daemon_wake))) {
			log_error("github %s: out of memory (not serving it)", cfg->github[i].name);
			continue;
		}
		w->ent.f.ops = gh_vms_ops(w->vms);
		if (pthread_create(&w->th, NULL, run, w)) {
			log_error("github %s: cannot start a thread", cfg->github[i].name);
			continue;
		}
		w->started = true;
		log_info("github %s: watching %s, runner VMs from image %s", cfg->github[i].name, cfg->github[i].url,
			 cfg->github[i].vm.image ? cfg->github[i].vm.image : "(default)");
	}
	for (i = 0; i < n_workers && !(cfg->github[i].webhook_secret && workers[i].started); i++)
		;
	if (i < n_workers && cfg->listen_address && *cfg->listen_address) {
		if (!(seen = calloc(1, sizeof(*seen))))
			return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
		metrics_set_post("/github/webhook", GH_WEBHOOK_MAX, webhook, NULL);
		log_info("github: webhooks on POST %s/github/webhook", cfg->listen_address);
	}
	return KILN_OK;
}

void gh_daemon_wake(void)
{
	pthread_mutex_lock(&mu);
	wakes++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

void gh_daemon_stop(void)
{
	size_t i;

	if (!workers)
		return;
	metrics_set_post(NULL, 0, NULL, NULL);
	pthread_mutex_lock(&wh_mu);
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (i = 0; i < n_workers; i++) {
		if (workers[i].started)
			pthread_join(workers[i].th, NULL);
		gh_vms_free(workers[i].vms);
		gh_entry_close(&workers[i].ent);
	}
	free(workers);
	workers = NULL;
	n_workers = 0;
	free(seen);
	seen = NULL;
	pthread_mutex_unlock(&wh_mu);
}
