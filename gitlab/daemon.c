#include "gitlab/daemon.h"

#include <errno.h>
#include <git2.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "build-config.h"
#include "executors/hostfacts.h"
#include "lib/atomicfile.h"
#include "lib/clock.h"
#include "runner/cli.h"
#include "gitlab/artifacts.h"
#include "gitlab/client.h"
#include "gitlab/registration.h"
#include "job/job.h"
#include "gitlab/jobrecord.h"
#include "lib/log.h"
#include "gitlab/metrics.h"
#include "lib/paths.h"
#include "lib/sdnotify.h"
#include "lib/slots.h"
#include "job/payload.h"
#include "gitlab/trace.h"
#include "gitlab/tlsvars.h"
#include "workspace/gittls.h"
#include "workspace/url.h"

/* Histogram bounds, seconds: gitlab-runner's for job durations; a VM boot
 * is under a second on hardware and several under TCG. */
static const double job_buckets[] = { 30, 60, 300, 600, 1800, 3600, 7200, 10800, 18000, 36000 };
static const double boot_buckets[] = { 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60 };

#define UNHEALTHY_LIMIT 3
#define UNHEALTHY_PAUSE_S 3600
#define CA_MAX_BYTES (1u << 20)
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* One runners: entry's scheduling state, kept across reloads (matched by
 * URL and token, which never change). Its other settings come from the
 * configuration a request holds. */
struct rstate {
	struct rstate *next;
	char *url, *token;
	int limit, request_concurrency;
	char last_update[128];
	int running, requesting, unhealthy;
	double paused_until;
	bool removed;
	/* A client kept between job requests: its connection and TLS session
	 * are reused, so an idle poll costs no handshake. */
	struct gl_client *poller;
	double renew_retry_at;    /* mono_s() before which no token renewal is tried */
};

/* A configuration and the threads using it. */
struct cfgref {
	struct kiln_config cfg;
	int refs;
};

/* A running job, for shutdown. */
struct gjob {
	struct gjob *next;
	long long id;
	volatile sig_atomic_t cancel;
	volatile sig_atomic_t shutdown; /* canceled because kiln stops */
};

struct daemon {
	pthread_mutex_t mu;
	struct cfgref *cur;
	struct rstate *runners;
	struct gjob *jobs;
	int busy;                 /* requests in flight and jobs: `concurrent` */
	int threads;
	volatile sig_atomic_t stopping;
	char system_id[GLC_SYSTEM_ID_SIZE];
	const char *config_path;
	struct host_facts host;   /* probed once at start-up, for every job */
};

static struct glrunner_hooks hooks;  /* tests' fakes; zeroed: the real calls */
static enum kiln_rc (*svc_start)(const struct kiln_config *cfg, struct kiln_err *e);
static void (*svc_stop)(void);

struct req {
	struct daemon *d;
	struct rstate *r;
	struct cfgref *cref;                  /* held for the request and its job */
	const struct kiln_runner_config *rc;  /* r's entry in cref */
};

/* The gauges of runner rc from its state r (lock held). */
static void runner_gauges(const struct kiln_runner_config *rc, const struct rstate *r)
{
	char l[METRICS_MAX_LABELS] = "";

	metrics_label(l, sizeof(l), "runner", rc->name);
	metrics_set("kiln_jobs", l, r->running);
	metrics_set("kiln_request_concurrency", l, r->requesting);
	metrics_set("kiln_runner_paused", l, r->paused_until > 0 ? 1 : 0);
}

static void cfgref_put(struct daemon *d, struct cfgref *c)
{
	bool last;

	pthread_mutex_lock(&d->mu);
	last = --c->refs == 0;
	pthread_mutex_unlock(&d->mu);
	if (last) {
		kiln_config_free(&c->cfg);
		free(c);
	}
}

static void poller_free(struct gl_client *cl)
{
	if (cl) {
		gl_client_free(cl);
		free(cl);
	}
}

static void rstate_free(struct rstate *r)
{
	poller_free(r->poller);
	free(r->url);
	free(r->token);
	free(r);
}

static const struct kiln_runner_config *find_runner(const struct kiln_config *cfg, const struct rstate *r)
{
	size_t i;

	for (i = 0; i < cfg->n_runners; i++)
		if (!strcmp(cfg->runners[i].token, r->token) && !strcmp(cfg->runners[i].url, r->url))
			return &cfg->runners[i];
	return NULL;
}

/* Match the runner states to d->cur's runners (lock held). */
static void sync_runners(struct daemon *d)
{
	const struct kiln_config *cfg = &d->cur->cfg;
	struct rstate *r, **pp;
	size_t i;

	for (r = d->runners; r; r = r->next)
		r->removed = true;
	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *rc = &cfg->runners[i];

		for (r = d->runners; r && (strcmp(r->token, rc->token) || strcmp(r->url, rc->url)); r = r->next)
			;
		if (!r) {
			if (!(r = calloc(1, sizeof(*r))) || !(r->token = strdup(rc->token)) || !(r->url = strdup(rc->url))) {
				if (r)
					rstate_free(r);
				log_error("runner %s: out of memory", rc->name);
				continue;
			}
			for (pp = &d->runners; *pp; pp = &(*pp)->next)
				;
			*pp = r;
		}
		r->limit = rc->limit;
		r->request_concurrency = rc->request_concurrency > 0 ? rc->request_concurrency : 1;
		r->removed = false;
	}
	/* Forget removed runners nobody uses any more. */
	for (pp = &d->runners; (r = *pp);) {
		if (r->removed && !r->running && !r->requesting) {
			*pp = r->next;
			rstate_free(r);
		} else {
			pp = &r->next;
		}
	}
}

/* --- git trusts the runners' CAs ------------------------------------------ */

static enum kiln_rc append_file(FILE *out, const char *path, struct kiln_err *e)
{
	char buf[65536];
	size_t n, total = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return kiln_fail_errno(e, "tls_ca_file %s", path);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		total += n;
		if (total > CA_MAX_BYTES && strcmp(path, SYSTEM_CA_BUNDLE)) {
			fclose(f);
			return kiln_fail(e, KILN_E_LIMIT, "tls_ca_file %s: larger than 1 MiB", path);
		}
		fwrite(buf, 1, n, out);
	}
	fputc('\n', out);
	fclose(f);
	return KILN_OK;
}

/* The runners' client certificates for the fetches from their GitLab's host. */
static enum kiln_rc git_client_certs(const struct kiln_config *cfg, struct kiln_err *e)
{
	size_t i;

	gittls_client_certs_clear();
	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *r = &cfg->runners[i];
		struct ws_url u;
		char *h, *end;
		enum kiln_rc rc;

		if (!r->tls_cert_file || !r->tls_key_file || ws_url_parse(r->url, &u, e))
			continue;
		/* "host:port" or "[v6]:port" as libgit2's stream gets it: bare. */
		h = u.host;
		if (*h == '[' && (end = strchr(h, ']'))) {
			h++;
			*end = '\0';
		} else if ((end = strrchr(h, ':'))) {
			*end = '\0';
		}
		rc = gittls_client_cert(h, r->tls_cert_file, r->tls_key_file, e);
		ws_url_wipe(&u);
		if (rc)
			return rc;
	}
	return KILN_OK;
}

enum kiln_rc glrunner_git_trust(const struct kiln_config *cfg, struct kiln_err *e)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	enum kiln_rc rc = KILN_OK;
	bool any = false;
	char *text = NULL;
	size_t i, len = 0;
	FILE *out;

	if ((rc = git_client_certs(cfg, e)))
		return rc;
	for (i = 0; i < cfg->n_runners; i++)
		any |= cfg->runners[i].tls_ca_file && *cfg->runners[i].tls_ca_file;
	if (!any)
		return KILN_OK;
	snprintf(dir, sizeof(dir), "%s/tls", cfg->state_dir);
	if (kiln_mkdir_p(dir) < 0)
		return kiln_fail_errno(e, "creating %s", dir);
	snprintf(path, sizeof(path), "%s/git-ca-bundle.pem", dir);
	if (!(out = open_memstream(&text, &len)))
		return kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
	if (access(SYSTEM_CA_BUNDLE, R_OK) == 0)
		rc = append_file(out, SYSTEM_CA_BUNDLE, e);
	for (i = 0; !rc && i < cfg->n_runners; i++)
		if (cfg->runners[i].tls_ca_file && *cfg->runners[i].tls_ca_file)
			rc = append_file(out, cfg->runners[i].tls_ca_file, e);
	if (fclose(out) != 0 && !rc)
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
	if (!rc)
		rc = kiln_write_atomic(path, text, len, 0, e);
	free(text);
	if (rc)
		return rc;
	/* The fetches' TLS is kiln's (workspace/gittls.h), not libgit2's. */
	return gittls_trust(path, e);
}

/* A client for the runner's GitLab with its TLS settings. */
static enum kiln_rc runner_client(struct gl_client *c, const struct kiln_runner_config *rc, struct kiln_err *e)
{
	enum kiln_rc r = gl_client_init(c, rc->url, rc->tls_ca_file, e);

	return r ? r : gl_client_tls(c, rc->tls_cert_file, rc->tls_key_file, e);
}

/* --- jobs ------------------------------------------------------------------ */

struct jctx {
	struct trace *t;
	struct gla *gla;
	const char *executor;
	const char *state_dir;
	pthread_mutex_t mu;        /* guards jr: the trace's uploader writes it too */
	struct jobrec_running jr;
};

static void on_output(void *arg, const void *buf, size_t n)
{
	struct jctx *c = arg;

	trace_write(c->t, buf, n);
}

static void on_notice(void *arg, const char *line)
{
	struct jctx *c = arg;

	log_debug("job %lld: %s", c->jr.id, line);
	trace_printf(c->t, "%s\n", line);
}

static void on_stage(void *arg, const char *name, bool begin)
{
	struct jctx *c = arg;
	char header[160];

	if (!strcmp(name, "get_sources"))
		snprintf(header, sizeof(header), "Getting source from Git repository");
	else if (!strcmp(name, "prepare_executor"))
		snprintf(header, sizeof(header), "Preparing the \"%s\" executor", c->executor);
	else if (!strcmp(name, "after_script"))
		snprintf(header, sizeof(header), "Running after_script");
	else
		snprintf(header, sizeof(header), "Executing \"%s\" stage of the job script", name);
	trace_section(c->t, name, begin, begin ? header : NULL);
}

static void on_finished(void *arg, const char *image, const char *project, bool ok)
{
	struct jctx *c = arg;

	gla_collect(c->gla, image, project, ok);
}

static void on_sent(void *arg, size_t offset, uint32_t crc)
{
	struct jctx *c = arg;
	struct kiln_err e = { 0 };

	pthread_mutex_lock(&c->mu);
	c->jr.sent = offset;
	c->jr.crc = crc;
	if (jobrec_journal_write(c->state_dir, &c->jr, &e))
		log_warn("job %lld: journal: %s", c->jr.id, e.msg);
	pthread_mutex_unlock(&c->mu);
}

/* The job's outcome into its journal entry, before the final update: a
 * kiln restarted after a crash (or after GitLab could not be reached)
 * reports it as it was. */
static void journal_outcome(struct jctx *c, const char *state, const char *reason, int exit_code)
{
	struct kiln_err e = { 0 };

	pthread_mutex_lock(&c->mu);
	snprintf(c->jr.state, sizeof(c->jr.state), "%s", state);
	snprintf(c->jr.failure_reason, sizeof(c->jr.failure_reason), "%s", reason ? reason : "");
	c->jr.exit_code = exit_code;
	if (jobrec_journal_write(c->state_dir, &c->jr, &e))
		log_warn("job %lld: journal: %s", c->jr.id, e.msg);
	pthread_mutex_unlock(&c->mu);
}

/* The job's masks: masked variables, token prefixes, its own token. */
static void add_masks(struct trace *t, const struct job_payload *p)
{
	struct mask *m = trace_masker(t);
	struct kiln_err e = { 0 };
	json_t *prefixes = json_object_get(json_object_get(p->doc, "features"), "token_mask_prefixes"), *v;
	size_t i;

	for (i = 0; i < p->n_vars; i++)
		if (p->vars[i].masked && mask_add_secret(m, p->vars[i].value, &e))
			trace_printf(t, "\033[0;33mWARNING: variable %s is not masked: %s\033[0;m\n", p->vars[i].key, e.msg);
	json_array_foreach(prefixes, i, v)
		if (json_is_string(v))
			mask_add_prefix(m, json_string_value(v), NULL);
	if (p->token && strlen(p->token) >= 8)
		mask_add_secret(m, p->token, NULL);
}

/* The job's features.failure_reasons, pointing into its document. */
static size_t supported_reasons(json_t *doc, const char **out, size_t max)
{
	json_t *arr = json_object_get(json_object_get(doc, "features"), "failure_reasons"), *v;
	size_t i, n = 0;

	json_array_foreach(arr, i, v)
		if (json_is_string(v) && n < max)
			out[n++] = json_string_value(v);
	return n;
}

static void job_list_add(struct daemon *d, struct gjob *j)
{
	pthread_mutex_lock(&d->mu);
	j->next = d->jobs;
	d->jobs = j;
	pthread_mutex_unlock(&d->mu);
}

static void job_list_remove(struct daemon *d, struct gjob *j)
{
	struct gjob **pp;

	pthread_mutex_lock(&d->mu);
	for (pp = &d->jobs; *pp && *pp != j; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = j->next;
	pthread_mutex_unlock(&d->mu);
}

/* Run the job in text (len bytes) that q's request got. */
static void run_job(const struct req *q, const char *text, size_t len)
{
	struct daemon *d = q->d;
	const struct kiln_config *cfg = &q->cref->cfg;
	const struct kiln_runner_config *rc = q->rc;
	struct gjob job = { 0 };
	struct jctx c = { 0 };
	struct gla gla = { 0 };
	struct job_payload p = { 0 };
	char *tls_text = NULL;
	size_t tls_len = 0;
	struct job_result res = { 0 };
	struct gl_client cl = { 0 };
	struct gl_reply rep = { 0 };
	struct gl_update ack = { .state = "running" };
	struct trace_opts to = { 0 };
	struct kiln_err e = { 0 }, pe = { 0 };
	const char *reasons[64], *reason = NULL, *state = "failed", *token;
	char why[600] = "";
	bool parsed = false, journal = false, keep_journal = false;
	json_t *doc = json_loadb(text, len, 0, NULL);
	enum gl_put put;
	long long id;
	int exit_code = 0;
	double t_start = mono_s();

	pthread_mutex_init(&c.mu, NULL);
	id = json_integer_value(json_object_get(doc, "id"));
	token = json_string_value(json_object_get(doc, "token"));
	if (id <= 0 || !token || !*token) {
		log_error("runner %s: a job payload without a usable id or token: dropped", rc->name);
		goto out;
	}
	c.executor = rc->vm.executor ? rc->vm.executor : "auto";
	c.gla = &gla;
	c.state_dir = cfg->state_dir;
	ack.executor = c.executor;
	log_info("runner %s: job %lld (%s) received", rc->name, id,
		 json_string_value(json_object_get(json_object_get(doc, "job_info"), "name")) ?: "?");
	if (jobrec_save_payload(cfg->state_dir, id, text, len, &e))
		log_warn("job %lld: saving the payload: %s", id, e.msg);
	jobrec_prune_payloads(cfg->state_dir, JOBREC_KEEP_PAYLOADS);
	c.jr.id = id;
	snprintf(c.jr.token, sizeof(c.jr.token), "%s", token);
	snprintf(c.jr.url, sizeof(c.jr.url), "%s", rc->url);
	snprintf(c.jr.ca_file, sizeof(c.jr.ca_file), "%s", rc->tls_ca_file ? rc->tls_ca_file : "");
	snprintf(c.jr.runner, sizeof(c.jr.runner), "%s", rc->name);
	if (jobrec_journal_write(cfg->state_dir, &c.jr, &e))
		log_warn("job %lld: journal: %s", id, e.msg);
	else
		journal = true;
	job.id = id;
	job_list_add(d, &job);
	/* The job's git and curl trust what the runner trusts (gitlab-runner's CI_SERVER_TLS_*). */
	if (gl_payload_tls_vars(text, len, rc->tls_ca_file, rc->tls_cert_file, rc->tls_key_file, rc->token,
				&tls_text, &tls_len, &e))
		log_warn("job %lld: CI_SERVER_TLS_CA_FILE: %s", id, e.msg);
	parsed = payload_parse(tls_text ? tls_text : text, tls_text ? tls_len : len, &p, &pe) == KILN_OK;
	free(tls_text);

	if (runner_client(&cl, rc, &e)) {
		log_error("job %lld: %s", id, e.msg);
		keep_journal = true;
		goto out;
	}
	/* Acknowledge: the job is ours. */
	put = gl_update_job(&cl, id, token, &ack, &rep, &e);
	if (put == GL_PUT_ABORT) {
		log_info("job %lld: GitLab withdrew it (%s): dropped", id, e.msg);
		goto out;
	}
	if (put == GL_PUT_FAILED)
		log_warn("job %lld: acknowledging it: %s (running it anyway)", id, e.msg);
	if (!strcmp(rep.job_status, "canceling") || !strcmp(rep.job_status, "canceled"))
		job.cancel = JOB_CANCEL_NOW;

	to.url = rc->url;
	to.limit = rc->output_limit > 0 ? (size_t)rc->output_limit << 10 : 0;
	to.ca_file = rc->tls_ca_file;
	to.cert_file = rc->tls_cert_file;
	to.key_file = rc->tls_key_file;
	to.job_id = id;
	to.token = token;
	to.executor = c.executor;
	to.cancel = &job.cancel;
	to.sent = journal ? on_sent : NULL;
	to.sent_arg = &c;
	to.debug_trace = parsed && payload_var_true(&p, "CI_DEBUG_TRACE");
	if (trace_start(&c.t, &to, &e)) {
		log_error("job %lld: %s", id, e.msg);
		keep_journal = true;
		goto out;
	}
	if (parsed)
		add_masks(c.t, &p);
	trace_printf(c.t, "\033[0KRunning with kiln %s\033[0;m\n\033[0K  on %s, system ID: %s\033[0;m\n", PACKAGE_VERSION,
		     rc->name, d->system_id);
	if (to.debug_trace)
		trace_printf(c.t, "\033[0;33mWARNING: CI_DEBUG_TRACE is enabled: every command the job runs and the "
			     "values it handles appear in this log, secrets included\033[0;m\n");
	if (!parsed) {
		/* Unsupported payload: say why in the log, fail as a system failure. */
		snprintf(why, sizeof(why), "%s", pe.msg);
		reason = "runner_system_failure";
		exit_code = 3;
	} else if (payload_unsupported(&p)) {
		/* GitLab assigns these anyway: fail them as gitlab-runner fails
		 * what its executor cannot do (the reason is logged below). */
		reason = "runner_unsupported";
		exit_code = 1;
	} else if (gla_init(&gla, &p, &cl, c.t, cfg->state_dir, rc->cache_dir ? rc->cache_dir : cfg->cache_dir, &e) ||
		   (gla_use_cache(&gla, &rc->cache, rc->token), gla_before(&gla, &e))) {
		/* No VM without the dependencies it needs. */
		snprintf(why, sizeof(why), "%s", e.msg);
		reason = "runner_system_failure";
		exit_code = 1;
	} else {
		struct job_opts o = { .cfg = cfg, .executor = rc->vm.executor, .image = NULL, .kernel = rc->vm.kernel,
				      .vcpus = rc->vm.vcpus, .memory_mib = rc->vm.memory_mib, .network = rc->vm.network,
				      .vm = &rc->vm, .extra_dirs = gla.extra, .n_extra_dirs = gla.n_extra, .output = on_output,
				      .notice = on_notice, .stage = on_stage, .finished = on_finished, .arg = &c,
				      .cancel = &job.cancel, .host = &d->host };

		/* The runner's image is the default; the payload's image, when
		 * kiln has it, wins (job_run decides). */
		if (!p.image)
			o.image = rc->vm.image;
		if (job_run(&p, &o, &res, &e)) {
			snprintf(why, sizeof(why), "%s", e.msg);
			reason = "runner_system_failure";
		} else if (res.failure_reason[0] || res.exit_code) {
			reason = res.failure_reason[0] ? res.failure_reason : "script_failure";
		}
		exit_code = res.exit_code;
		if (res.boot_s > 0)
			metrics_observe("kiln_vm_boot_seconds", "", boot_buckets, sizeof(boot_buckets) / sizeof(boot_buckets[0]),
					res.boot_s);
		/* Caches and artifacts, as the job's outcome allows. */
		if (gla_after(&gla, &e) && !reason) {
			snprintf(why, sizeof(why), "%s", e.msg);
			reason = "runner_system_failure";
			exit_code = 1;
		}
	}
	if (job.shutdown) {
		snprintf(why, sizeof(why), "kiln is shutting down (shutdown_timeout %d s)", cfg->shutdown_timeout);
		reason = "runner_system_failure";
	}
	if (!reason) {
		state = "success";
		exit_code = 0;
		trace_printf(c.t, "\033[32;1mJob succeeded\033[0;m\n");
	} else if (why[0]) {
		trace_printf(c.t, "\033[31;1mERROR: Job failed (system failure): %s\033[0;m\n", why);
	} else if (!strcmp(reason, "script_failure")) {
		trace_printf(c.t, "\033[31;1mERROR: Job failed: exit code %d\033[0;m\n", exit_code);
	} else if (!strcmp(reason, "canceled")) {
		trace_printf(c.t, "\033[31;1mERROR: Job failed: canceled\033[0;m\n");
	} else if (!strcmp(reason, "runner_unsupported") && parsed && payload_unsupported(&p)) {
		trace_printf(c.t, "\033[31;1mERROR: Job failed: %s\033[0;m\n", payload_unsupported(&p));
	}
	{
		size_t n = parsed ? supported_reasons(p.doc, reasons, sizeof(reasons) / sizeof(reasons[0])) : 0;
		const char *sent_reason = reason ? gl_failure_reason(reason, reasons, n) : NULL;
		char l[METRICS_MAX_LABELS] = "";
		enum kiln_rc frc;

		if (journal)
			journal_outcome(&c, state, sent_reason, reason ? exit_code : 0);
		frc = trace_finish(c.t, state, sent_reason, reason ? exit_code : 0, &e);

		metrics_label(metrics_label(l, sizeof(l), "runner", rc->name), sizeof(l), "state", state);
		metrics_add("kiln_jobs_total", l, 1);
		if (sent_reason) {
			l[0] = '\0';
			metrics_add("kiln_failed_jobs_total", metrics_label(l, sizeof(l), "failure_reason", sent_reason), 1);
		}
		metrics_observe("kiln_job_duration_seconds", "", job_buckets, sizeof(job_buckets) / sizeof(job_buckets[0]),
				mono_s() - t_start);
		if (frc == KILN_OK)
			log_info("job %lld: %s%s%s (exit code %d)", id, state, sent_reason ? ", " : "",
				 sent_reason ? sent_reason : "", exit_code);
		else if (frc == KILN_E_NOTFOUND)
			log_warn("job %lld: %s", id, e.msg);
		else {
			log_error("job %lld: the final update failed: %s", id, e.msg);
			keep_journal = true;
		}
	}
out:
	if (job.id)
		job_list_remove(d, &job);
	if (journal && !keep_journal)
		jobrec_journal_remove(cfg->state_dir, id);
	gla_free(&gla);
	trace_free(c.t);
	gl_reply_free(&rep);
	gl_client_free(&cl);
	if (parsed)
		payload_free(&p);
	json_decref(doc);
	pthread_mutex_destroy(&c.mu);
}

static void feed(struct daemon *d, struct rstate *r);

static void *request_thread(void *arg)
{
	struct req *q = arg;
	struct daemon *d = q->d;
	struct rstate *r = q->r;
	const struct kiln_runner_config *rc = q->rc;
	struct gl_client *cl = NULL;
	struct kiln_err e = { 0 };
	enum gl_poll res = GL_NO_JOB;
	char last_update[128], *payload = NULL;
	size_t len = 0;

	pthread_mutex_lock(&d->mu);
	memcpy(last_update, r->last_update, sizeof(last_update));
	/* The kept client serves while its TLS files are the ones it was made with. */
	if (r->poller && !strcmp(r->poller->ca_file, rc->tls_ca_file ? rc->tls_ca_file : "") &&
	    !strcmp(r->poller->cert_file, rc->tls_cert_file ? rc->tls_cert_file : "")) {
		cl = r->poller;
		r->poller = NULL;
	}
	pthread_mutex_unlock(&d->mu);
	if (!cl && (cl = calloc(1, sizeof(*cl))) && runner_client(cl, rc, &e)) {
		free(cl);
		cl = NULL;
	}
	if (cl) {
		cl->stop = &d->stopping;
		res = (hooks.request ? hooks.request : gl_request_job)(cl, rc->token, d->system_id, rc->vm.executor,
								       last_update, &payload, &len, &e);
	} else if (!e.msg[0]) {
		kiln_fail(&e, KILN_E_NOMEM, "out of memory");
	}
	if (res != GL_JOB && e.rc != KILN_E_NOTFOUND && !d->stopping)
		log_warn("runner %s: %s", rc->name, e.msg);
	pthread_mutex_lock(&d->mu);
	r->requesting--;
	if (last_update[0])
		memcpy(r->last_update, last_update, sizeof(last_update));
	if (res == GL_UNHEALTHY) {
		if (++r->unhealthy >= UNHEALTHY_LIMIT) {
			r->paused_until = mono_s() + UNHEALTHY_PAUSE_S;
			r->unhealthy = 0;
			log_error("runner %s: %d job requests in a row were refused (403): pausing it for %d min", rc->name,
				  UNHEALTHY_LIMIT, UNHEALTHY_PAUSE_S / 60);
			jobrec_pause_write(d->cur->cfg.state_dir, rc->token, rc->name, rc->url,
					   (long)time(NULL) + UNHEALTHY_PAUSE_S, "job requests refused (403)");
		}
	} else {
		r->unhealthy = 0;
	}
	if (res == GL_JOB)
		r->running++;
	else {
		d->busy--;
		kiln_slots_give();
	}
	if (cl && !r->poller && !r->removed && !d->stopping) {
		r->poller = cl;
		cl = NULL;
	}
	runner_gauges(rc, r);
	/* A runner that just got a job likely has more waiting: ask again now
	 * (as gitlab-runner requeues it) rather than at the next tick. */
	if (res == GL_JOB)
		feed(d, r);
	pthread_mutex_unlock(&d->mu);
	poller_free(cl);

	if (res == GL_JOB) {
		if (hooks.job)
			hooks.job(rc, payload, len);
		else
			run_job(q, payload, len);
		malloc_trim(0);
		pthread_mutex_lock(&d->mu);
		r->running--;
		d->busy--;
		kiln_slots_give();
		runner_gauges(rc, r);
		/* The freed slot goes to the same runner at once: jobs queued
		 * back to back do not wait a check_interval each. */
		feed(d, r);
		pthread_mutex_unlock(&d->mu);
	}
	free(payload);
	cfgref_put(d, q->cref);
	pthread_mutex_lock(&d->mu);
	d->threads--;
	pthread_mutex_unlock(&d->mu);
	free(q);
	return NULL;
}

/* Start a request for r if the slots allow (lock held). */
static void feed(struct daemon *d, struct rstate *r)
{
	const struct kiln_runner_config *rc = find_runner(&d->cur->cfg, r);
	pthread_attr_t attr;
	pthread_t th;
	struct req *q;

	if (!rc || r->removed || d->stopping || mono_s() < r->paused_until ||
	    r->requesting >= r->request_concurrency || (r->limit > 0 && r->running + r->requesting >= r->limit) ||
	    !kiln_slots_take()) /* last: `concurrent` is shared with the GitHub fleets (lib/slots.h) */
		return;
	if (!(q = calloc(1, sizeof(*q)))) {
		kiln_slots_give();
		return;
	}
	q->d = d;
	q->r = r;
	q->cref = d->cur;
	q->rc = rc;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	d->cur->refs++;
	d->busy++;
	d->threads++;
	r->requesting++;
	if (r->paused_until > 0)
		jobrec_pause_clear(d->cur->cfg.state_dir, rc->token);
	r->paused_until = 0;
	runner_gauges(rc, r);
	if (pthread_create(&th, &attr, request_thread, q)) {
		d->cur->refs--;
		d->busy--;
		kiln_slots_give();
		d->threads--;
		r->requesting--;
		free(q);
		log_error("runner %s: cannot start a thread", rc->name);
	}
	pthread_attr_destroy(&attr);
}

/* --- orphans of a dead kiln ------------------------------------------------ */

static void report_orphan(const char *state_dir, const struct jobrec_running *o, const volatile sig_atomic_t *stop)
{
	char msg[300], range[64], path[64];
	struct gl_client cl;
	struct gl_reply r = { 0 };
	struct kiln_err e = { 0 };
	struct gl_update u = { .state = "failed", .failure_reason = "runner_system_failure", .executor = "kiln" };
	uint64_t at = o->sent;
	enum kiln_rc rc;
	int n, tries;

	/* A job that had ended is reported as it ended: only its final update
	 * (and the log GitLab had not acknowledged) was missing. */
	if (o->state[0]) {
		u.state = o->state;
		u.failure_reason = o->failure_reason[0] ? o->failure_reason : NULL;
		u.exit_code = o->exit_code;
	}
	log_warn("job %lld (runner %s): the kiln that ran it (pid %d) %s: reporting it %s", o->id, o->runner, o->pid,
		 o->state[0] ? "ended before GitLab had the job's end" : "died", u.state);
	if (gl_client_init(&cl, o->url, o->ca_file, &e)) {
		log_error("job %lld: %s", o->id, e.msg);
		return;
	}
	cl.stop = stop;
	if (o->state[0])
		n = snprintf(msg, sizeof(msg),
			     "\n\033[0;33mWARNING: kiln (pid %d) stopped before GitLab had this job's end: the rest of its "
			     "log is lost; the job had %s\033[0;m\n",
			     o->pid, strcmp(o->state, "success") ? "failed" : "succeeded");
	else
		n = snprintf(msg, sizeof(msg),
			     "\n\033[31;1mERROR: Job failed (system failure): kiln was interrupted while running this job "
			     "(pid %d); its VM is gone\033[0;m\n",
			     o->pid);
	snprintf(path, sizeof(path), "/jobs/%lld/trace", o->id);
	u.crc = o->crc;
	u.output = true;
	for (tries = 0; tries < 2; tries++) {
		snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)at, (unsigned long long)at + n - 1);
		if (gl_call(&cl, "PATCH", path, NULL, o->token, "text/plain", msg, (size_t)n, range, GL_MAX_REPLY, &r,
			    &e))
			break;
		if (r.status == 202) {
			u.crc = (uint32_t)crc32(u.crc, (const Bytef *)msg, (uInt)n);
			at += (uint64_t)n;
			break;
		}
		if (r.status != 416 || r.range_end < 0)
			break;
		/* The server holds more than the journal says: no checksum then. */
		at = (uint64_t)r.range_end;
		u.output = false;
	}
	u.bytesize = at;
	if (r.status == 403 || r.status == 404) {
		log_info("job %lld: GitLab no longer runs it (HTTP %ld)", o->id, r.status);
		jobrec_journal_remove(state_dir, o->id);
		goto out;
	}
	rc = gl_final_update(&cl, o->id, o->token, &u, NULL, NULL, &e);
	if (rc == KILN_OK || rc == KILN_E_NOTFOUND) {
		log_info("job %lld: reported %s%s%s%s%s%s", o->id, u.state, u.failure_reason ? " (" : "",
			 u.failure_reason ? u.failure_reason : "", u.failure_reason ? ")" : "", rc ? ": " : "",
			 rc ? e.msg : "");
		jobrec_journal_remove(state_dir, o->id);
	} else {
		log_error("job %lld: reporting it: %s (again at the next start)", o->id, e.msg);
	}
out:
	gl_reply_free(&r);
	gl_client_free(&cl);
}

void glrunner_report_orphans(const char *state_dir, const volatile sig_atomic_t *stop)
{
	struct jobrec_running *list;
	struct kiln_err e = { 0 };
	size_t n, i;

	if (jobrec_journal_orphans(state_dir, &list, &n, &e)) {
		log_error("%s", e.msg);
		return;
	}
	for (i = 0; i < n && !(stop && *stop); i++)
		report_orphan(state_dir, &list[i], stop);
	free(list);
}

struct orphans {
	struct daemon *d;
	struct cfgref *cref;
};

static void *orphans_thread(void *arg)
{
	struct orphans *o = arg;
	struct daemon *d = o->d;

	glrunner_report_orphans(o->cref->cfg.state_dir, &d->stopping);
	cfgref_put(d, o->cref);
	free(o);
	pthread_mutex_lock(&d->mu);
	d->threads--;
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Report the orphans in a thread while polling goes on (lock not held). */
static void start_orphans(struct daemon *d)
{
	struct orphans *o = calloc(1, sizeof(*o));
	pthread_attr_t attr;
	pthread_t th;

	if (!o) {
		log_error("out of memory");
		return;
	}
	pthread_mutex_lock(&d->mu);
	o->d = d;
	o->cref = d->cur;
	d->cur->refs++;
	d->threads++;
	pthread_mutex_unlock(&d->mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, orphans_thread, o)) {
		log_error("cannot start a thread: reporting the jobs of a dead kiln in this one");
		orphans_thread(o);
	}
	pthread_attr_destroy(&attr);
}

/* --- the main loop ---------------------------------------------------------- */

void glrunner_set_service(enum kiln_rc (*start)(const struct kiln_config *cfg, struct kiln_err *e),
			  void (*stop)(void))
{
	svc_start = start;
	svc_stop = stop;
}

void glrunner_set_hooks(const struct glrunner_hooks *h)
{
	hooks = h ? *h : (struct glrunner_hooks){ 0 };
}

static bool healthy(void *arg)
{
	const struct daemon *d = arg;

	return !d->stopping;
}

static void reload(struct daemon *d)
{
	struct cfgref *n = calloc(1, sizeof(*n)), *old;
	struct kiln_err e = { 0 };

	if (!n) {
		log_error("reload: out of memory");
		return;
	}
	if (kiln_config_defaults(&n->cfg, &e) || kiln_config_load(&n->cfg, d->config_path, true, &e)) {
		log_error("reload: %s (keeping the running configuration)", e.msg);
		kiln_config_free(&n->cfg);
		free(n);
		return;
	}
	if (glrunner_git_trust(&n->cfg, &e))
		log_warn("reload: %s", e.msg);
	n->refs = 1;
	pthread_mutex_lock(&d->mu);
	old = d->cur;
	d->cur = n;
	sync_runners(d);
	pthread_mutex_unlock(&d->mu);
	log_info("reloaded %s: %zu runner%s, concurrent %d", d->config_path, n->cfg.n_runners,
		 n->cfg.n_runners == 1 ? "" : "s", n->cfg.concurrent);
	metrics_set("kiln_concurrent", "", n->cfg.concurrent);
	kiln_slots_set_max(n->cfg.concurrent);
	cfgref_put(d, old);
}

/* Renew the runner tokens past 75 % of their lifetime (an hour before
 * expiry when the time they were obtained is unknown), as gitlab-runner
 * does: the new token goes into the configuration file, then the
 * configuration is reloaded. Main thread only (d->cur changes only there). */
static void renew_tokens(struct daemon *d)
{
	const struct kiln_config *cfg = &d->cur->cfg;
	long long now = (long long)time(NULL);
	bool changed = false;
	size_t i;

	if (!d->config_path)
		return;
	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *rc = &cfg->runners[i];
		long long got = rc->token_obtained_at, exp = rc->token_expires_at, due, new_exp = 0;
		struct kiln_err e = { 0 };
		struct gl_client cl;
		struct rstate *r;
		char *fresh = NULL;

		if (exp <= 0)
			continue;
		due = got > 0 && got < exp ? got + (exp - got) * 3 / 4 : exp - 3600;
		if (now < due)
			continue;
		pthread_mutex_lock(&d->mu);
		for (r = d->runners; r && (strcmp(r->token, rc->token) || strcmp(r->url, rc->url)); r = r->next)
			;
		if (r && mono_s() >= r->renew_retry_at)
			r->renew_retry_at = mono_s() + 60;
		else
			r = NULL;
		pthread_mutex_unlock(&d->mu);
		if (!r)
			continue;
		if (runner_client(&cl, rc, &e) == KILN_OK) {
			cl.stop = &d->stopping;
			gl_reset_token(&cl, rc->token, &fresh, &new_exp, &e);
			gl_client_free(&cl);
		}
		if (!fresh) {
			log_warn("runner %s: renewing its token (it expires in %lld s): %s; trying again in 60 s", rc->name,
				 exp - now, e.msg);
			continue;
		}
		if (glc_config_set_token(d->config_path, rc->url, rc->token, fresh, now, new_exp, &e)) {
			/* GitLab has already retired the old token. */
			log_error("runner %s: GitLab renewed its token but it could not be saved: %s; the runner stops "
				  "working until it is registered again",
				  rc->name, e.msg);
			free(fresh);
			continue;
		}
		pthread_mutex_lock(&d->mu);
		free(r->token);
		r->token = fresh; /* the same state under the new token after the reload */
		pthread_mutex_unlock(&d->mu);
		changed = true;
		if (new_exp > 0)
			log_info("runner %s: token renewed; the new one expires in %lld s", rc->name, new_exp - now);
		else
			log_info("runner %s: token renewed; the new one does not expire", rc->name);
	}
	if (changed)
		reload(d);
}

static void cancel_all(struct daemon *d, const char *why)
{
	struct gjob *j;

	pthread_mutex_lock(&d->mu);
	for (j = d->jobs; j; j = j->next) {
		log_warn("job %lld: canceled: %s", j->id, why);
		j->shutdown = 1;
		j->cancel = JOB_CANCEL_NOW;
	}
	pthread_mutex_unlock(&d->mu);
}

int glrunner_run(struct kiln_config *cfg, const char *config_path)
{
	struct daemon d = { .config_path = config_path };
	struct kiln_err e = { 0 };
	struct cfgref *gh_cfg;
	struct rstate *r;
	sigset_t set;
	double deadline = 0;
	bool canceled = false, draining = false;
	size_t turn = 0;
	int signals = 0;

	/* A long-lived daemon whose threads come and go: one arena per thread
	 * would keep what each job freed. Two arenas, and trimming after each
	 * job, keep the idle footprint small. */
	mallopt(M_ARENA_MAX, 2);
	pthread_mutex_init(&d.mu, NULL);
	if (!(d.cur = calloc(1, sizeof(*d.cur)))) {
		log_error("out of memory");
		return EXIT_FAIL;
	}
	d.cur->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	d.cur->refs = 1;
	if (!d.cur->cfg.n_runners && !d.cur->cfg.n_github) {
		log_error("%s has no runners: register one first (kiln register --url URL --token TOKEN)", config_path);
		goto fail;
	}
	if (glc_system_id(config_path, d.system_id, &e)) {
		log_error("%s", e.msg);
		goto fail;
	}
	if (glrunner_git_trust(&d.cur->cfg, &e))
		log_warn("%s (jobs cloning from those servers may fail)", e.msg);
	hostfacts_probe("", kiln_libexec_dir(), &d.host);

	/* Signals are taken synchronously by this thread; every other thread,
	 * started after this, keeps them blocked. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	gl_global_init();

	metrics_set("kiln_version_info", "version=\"" PACKAGE_VERSION "\"", 1);
	metrics_set("kiln_concurrent", "", d.cur->cfg.concurrent);
	kiln_slots_set_max(d.cur->cfg.concurrent);
	if (d.cur->cfg.listen_address && *d.cur->cfg.listen_address) {
		if (metrics_serve(d.cur->cfg.listen_address, healthy, &d, &e))
			log_error("%s: no /metrics", e.msg);
		else
			log_info("serving /metrics and /healthz on %s", d.cur->cfg.listen_address);
	}
	/* Before the GitHub fleets start their first runner VMs: what the
	 * sweep clears up must be a previous kiln's, never theirs. */
	job_sweep(d.cur->cfg.state_dir);
	/* The GitHub entries keep the configuration kiln started with (a
	 * reload changes the GitLab runners only). */
	gh_cfg = d.cur;
	gh_cfg->refs++;
	if (svc_start && svc_start(&gh_cfg->cfg, &e))
		log_error("%s", e.msg);
	gla_sweep(d.cur->cfg.state_dir);
	start_orphans(&d);
	pthread_mutex_lock(&d.mu);
	sync_runners(&d);
	pthread_mutex_unlock(&d.mu);
	log_info("kiln %s: %zu runner%s, concurrent %d, checking every %d s (system ID %s)", PACKAGE_VERSION,
		 d.cur->cfg.n_runners, d.cur->cfg.n_runners == 1 ? "" : "s", d.cur->cfg.concurrent,
		 d.cur->cfg.check_interval, d.system_id);
	sd_notify_send("READY=1\nSTATUS=polling for jobs"); /* Type=notify: systemd/kiln.service.in */

	for (;;) {
		struct timespec ts;
		siginfo_t si;
		long wait_ms;
		size_t n = 0, i;
		int sig;

		/* Before any request goes out with a token about to be retired. */
		if (!d.stopping)
			renew_tokens(&d);
		pthread_mutex_lock(&d.mu);
		if (d.stopping && d.threads == 0) {
			pthread_mutex_unlock(&d.mu);
			break;
		}
		for (r = d.runners; r; r = r->next)
			n += !r->removed;
		if (!d.stopping && n) {
			for (i = 0, r = d.runners; r; r = r->next)
				if (!r->removed && i++ == turn % n)
					break;
			if (r)
				feed(&d, r);
			turn++;
		}
		wait_ms = d.stopping ? 200 : (long)d.cur->cfg.check_interval * 1000 / (long)(n ? n : 1);
		pthread_mutex_unlock(&d.mu);
		wait_ms = sd_notify_tick(d.stopping, wait_ms); /* STOPPING=1 once, WATCHDOG=1 */
		if (wait_ms < 50)
			wait_ms = 50;
		ts.tv_sec = wait_ms / 1000;
		ts.tv_nsec = (wait_ms % 1000) * 1000000L;
		sig = sigtimedwait(&set, &si, &ts);
		if (sig == SIGHUP) {
			reload(&d);
		} else if (sig == SIGQUIT) {
			if (!d.stopping)
				log_info("SIGQUIT: no new jobs; waiting for the running ones to finish");
			draining = true;
			d.stopping = 1;
		} else if (sig == SIGTERM || sig == SIGINT) {
			signals++;
			if (signals == 1 && !draining) {
				d.stopping = 1;
				deadline = mono_s() + d.cur->cfg.shutdown_timeout;
				log_info("%s: no new jobs; running jobs get %d s to finish", strsignal(sig),
					 d.cur->cfg.shutdown_timeout);
			} else if (!canceled) {
				d.stopping = 1;
				deadline = mono_s();
			} else {
				log_warn("%s again: exiting now; the journal reports the jobs at the next start",
					 strsignal(sig));
				return EXIT_FAIL;
			}
		}
		if (d.stopping && deadline > 0 && !canceled && mono_s() >= deadline) {
			canceled = true;
			cancel_all(&d, "kiln is shutting down");
		}
	}
	if (svc_stop)
		svc_stop();
	cfgref_put(&d, gh_cfg);
	metrics_stop();
	log_info("stopped");
	pthread_mutex_lock(&d.mu);
	while ((r = d.runners)) {
		d.runners = r->next;
		rstate_free(r);
	}
	pthread_mutex_unlock(&d.mu);
	cfgref_put(&d, d.cur);
	return EXIT_OK;
fail:
	cfgref_put(&d, d.cur);
	return EXIT_FAIL;
}
