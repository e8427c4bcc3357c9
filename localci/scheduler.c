#include "lib/clock.h"
#include "lib/varexpand.h"
#include "localci/scheduler.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "executors/hostfacts.h"
#include "workspace/artifacts.h"
#include "workspace/guestdisk/diskread.h"
#include "runner/cli.h"
#include "job/job.h"
#include "localci/project.h"
#include "lib/log.h"
#include "localci/outmux.h"
#include "lib/paths.h"
#include "job/payload.h"
#include "localci/pipeline.h"

enum pj_state { PJ_WAITING, PJ_RUNNING, PJ_PASS, PJ_WARN, PJ_FAIL, PJ_SKIPPED };

struct pexec;

/* One step of the plan. */
struct pjob {
	struct pexec *x;
	const struct pipeline_job *job;
	size_t index;                  /* of the job in pl.jobs */
	enum pj_state state;
	char why[512];                 /* why skipped, or how it failed */
	volatile sig_atomic_t cancel;  /* enum job_cancel */
	pthread_t th;
	bool joined;
	struct outmux_stream out;
	long long id;
	long long t_start, t_end, last_beat;  /* ms */
	struct job_result res;
	char art_err[300];             /* why its artifacts could not be kept, "" when they were */
};

struct pexec {
	const struct kiln_config *cfg;
	struct pexec_opts *o;
	struct localci_repo repo;
	struct pipeline pl;
	struct pipeline_plan plan;
	struct pjob *jobs;             /* plan.n */
	ssize_t *step_of;              /* pl.n_jobs: the step of each job, or -1 */
	bool *done;                    /* plan.n */
	int running;
	bool interrupted;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct outmux out;
	char kiln_dir[PATH_MAX], art_root[PATH_MAX + 16], tmp_dir[PATH_MAX], project_dir[320];
	long long pipeline_id;
	struct host_facts host;        /* probed once, for every job */
};

static volatile sig_atomic_t got_signal;  /* enum job_cancel */
static struct pjob *sig_jobs;             /* the steps whose cancel flags a signal sets */
static size_t sig_n;
static pthread_mutex_t shell_mu = PTHREAD_MUTEX_INITIALIZER; /* one shell at a time */

struct pipeexec_jobcore pipeexec_jobcore = { job_run, job_sweep };

/* Cancel every job at once, from the handler: the main thread may be
 * waiting for the terminal (a shell). */
static void on_signal(int sig)
{
	size_t i;

	got_signal = (sig == SIGTERM && got_signal == JOB_RUN) ? JOB_CANCEL_GRACEFUL : JOB_CANCEL_NOW;
	for (i = 0; i < sig_n; i++)
		if (sig_jobs[i].cancel < got_signal)
			sig_jobs[i].cancel = got_signal;
}

static void iso_now(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

static void duration(long long ms, char *buf, size_t size)
{
	if (ms < 60000)
		snprintf(buf, size, "%.1fs", ms / 1000.0);
	else if (ms < 3600000)
		snprintf(buf, size, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
	else
		snprintf(buf, size, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
}

/* The job's folder name under .kiln/artifacts: its name with '/' and
 * control characters as '_' (and no leading '.'). */
static void safe_name(const char *name, char *buf, size_t size)
{
	size_t i, n = 0;

	for (i = 0; name[i] && n + 1 < size; i++) {
		unsigned char c = (unsigned char)name[i];
		bool bad = c == '/' || c < 0x20 || c == 0x7f || (n == 0 && c == '.');

		buf[n++] = bad ? '_' : (char)c;
	}
	buf[n] = '\0';
	if (!n)
		snprintf(buf, size, "_");
}

/* ---- .kiln/ ----------------------------------------------------------------- */

/* Make <repo>/.kiln with its .gitignore. */
static enum kiln_rc kiln_dir_make(struct pexec *x, struct kiln_err *e)
{
	char path[PATH_MAX + 32];
	FILE *f;

	if (kiln_mkdir_p(x->kiln_dir) < 0)
		return kiln_fail_errno(e, "creating %s", x->kiln_dir);
	snprintf(path, sizeof(path), "%s/.gitignore", x->kiln_dir);
	if (access(path, F_OK) == 0)
		return KILN_OK;
	if (!(f = fopen(path, "we")))
		return kiln_fail_errno(e, "creating %s", path);
	fputs("# kiln exec's own files (artifacts, ids): never part of the repository.\n*\n", f);
	if (fclose(f) != 0)
		return kiln_fail_errno(e, "writing %s", path);
	return KILN_OK;
}

/* The next pipeline number from .kiln/ids (1 when there is none yet),
 * which stays locked (*fd) until ids_commit writes it back or ids_drop
 * leaves it as it was. */
static enum kiln_rc ids_take(const char *kiln_dir, int *fd, long long *pipeline, struct kiln_err *e)
{
	char path[PATH_MAX + 8], buf[64];
	long long p = 0;
	ssize_t got;

	*pipeline = 1;
	snprintf(path, sizeof(path), "%s/ids", kiln_dir);
	*fd = open(path, O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return errno == ENOENT ? KILN_OK : kiln_fail_errno(e, "opening %s", path);
	if (flock(*fd, LOCK_EX) < 0) {
		close(*fd);
		*fd = -1;
		return kiln_fail_errno(e, "locking %s", path);
	}
	got = pread(*fd, buf, sizeof(buf) - 1, 0);
	buf[got > 0 ? got : 0] = '\0';
	if (sscanf(buf, "pipeline %lld", &p) != 1 || p < 0 || p >= PIPEEXEC_MAX_PIPELINE_ID)
		p = 0;
	*pipeline = p + 1;
	return KILN_OK;
}

static enum kiln_rc ids_commit(const char *kiln_dir, int *fd, long long pipeline, struct kiln_err *e)
{
	char path[PATH_MAX + 8], buf[64];
	int len = snprintf(buf, sizeof(buf), "pipeline %lld\n", pipeline);
	enum kiln_rc rc = KILN_OK;

	snprintf(path, sizeof(path), "%s/ids", kiln_dir);
	if (*fd < 0 && (*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return kiln_fail_errno(e, "creating %s", path);
	if (ftruncate(*fd, 0) < 0 || pwrite(*fd, buf, (size_t)len, 0) != len)
		rc = kiln_fail_errno(e, "writing %s", path);
	close(*fd);
	*fd = -1;
	return rc;
}

static void ids_drop(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- artifacts ---------------------------------------------------------------- */

/* s with $NAME, ${NAME} and $$ expanded against the job's variables (an
 * undefined one is empty, as in the runner's shell-less expansion). */
struct expand_ctx {
	const struct pexec *x;
	const struct pjob *pj;
};

static const char *pexec_var(void *arg, const char *name)
{
	const struct expand_ctx *c = arg;

	return !strcmp(name, "CI_PROJECT_DIR") ? c->x->project_dir : pipeline_job_var(c->pj->job, name);
}

static void expand(const struct pexec *x, const struct pjob *pj, const char *s, char *out, size_t size)
{
	struct expand_ctx c = { x, pj };

	var_expand(s, pexec_var, &c, out, size);
}

static void on_finished(void *arg, const char *image, const char *project, bool ok)
{
	struct pjob *pj = arg;
	struct pexec *x = pj->x;
	const struct pipeline_artifacts *a = &pj->job->artifacts;
	char dest[PATH_MAX * 2], name[256], **paths = NULL, **excl = NULL;
	struct artifacts_spec spec = { .project_dir = x->project_dir };
	struct fstree_stats st;
	struct kiln_err e = { 0 };
	size_t i;

	if (!a->defined)
		return;
	if (!a->n_paths && !a->untracked)
		return;
	if ((a->when == PL_ON_SUCCESS && !ok) || (a->when == PL_ON_FAILURE && ok)) {
		outmux_note(&pj->out, "artifacts: not kept (artifacts:when is %s)", pipeline_when_name(a->when));
		return;
	}
	paths = calloc(a->n_paths + 1, sizeof(*paths));
	excl = calloc(a->n_exclude + 1, sizeof(*excl));
	if (!paths || !excl)
		goto out;
	for (i = 0; i < a->n_paths; i++) {
		char buf[PATH_MAX];

		expand(x, pj, a->paths[i], buf, sizeof(buf));
		if (!(paths[i] = strdup(buf)))
			goto out;
	}
	for (i = 0; i < a->n_exclude; i++) {
		char buf[PATH_MAX];

		expand(x, pj, a->exclude[i], buf, sizeof(buf));
		if (!(excl[i] = strdup(buf)))
			goto out;
	}
	spec.paths = (const char *const *)paths;
	spec.n_paths = a->n_paths;
	spec.exclude = (const char *const *)excl;
	spec.n_exclude = a->n_exclude;
	spec.untracked = a->untracked;
	safe_name(pj->job->name, name, sizeof(name));
	snprintf(dest, sizeof(dest), "%s/%s", x->art_root, name);
	if (artifacts_collect(image, project, &spec, x->tmp_dir, dest, &st, &e)) {
		const char *why = strncmp(e.msg, "artifacts: ", 11) ? e.msg : e.msg + 11;

		/* As gitlab-runner fails a job whose artifacts it cannot upload. */
		outmux_note(&pj->out, "artifacts: %s", why);
		snprintf(pj->art_err, sizeof(pj->art_err), "%s", why);
		goto out;
	}
	if (!st.files)
		outmux_note(&pj->out, "artifacts: no file matched %s%s", a->n_paths ? paths[0] : "(untracked)",
			    a->n_paths > 1 || (a->n_paths && a->untracked) ? " (and the others)" : "");
	else
		outmux_note(&pj->out, "artifacts: %u file%s (%llu bytes) kept in %s/artifacts/%s/", st.files,
			    st.files == 1 ? "" : "s", (unsigned long long)st.bytes, LOCALCI_KILN_DIR, name);
out:
	for (i = 0; paths && i < a->n_paths; i++)
		free(paths[i]);
	for (i = 0; excl && i < a->n_exclude; i++)
		free(excl[i]);
	free(paths);
	free(excl);
}

/* ---- one job, in its thread ------------------------------------------------ */

static void on_output(void *arg, const void *buf, size_t n)
{
	struct pjob *pj = arg;

	outmux_write(&pj->out, buf, n, mono_ms());
}

static void on_notice(void *arg, const char *line)
{
	struct pjob *pj = arg;

	outmux_note(&pj->out, "%s", line);
}

/* --shell: the terminal is the shell's while it runs. */
static void on_shell(void *arg, bool begin)
{
	struct pjob *pj = arg;

	if (begin) {
		pthread_mutex_lock(&shell_mu);
		outmux_tick(&pj->out, mono_ms(), true);
		outmux_pause(&pj->x->out);
	} else {
		outmux_resume(&pj->x->out);
		pthread_mutex_unlock(&shell_mu);
	}
}

static bool exit_code_allowed(const struct pipeline_job *j, int code)
{
	size_t i;

	for (i = 0; i < j->n_exit_codes; i++)
		if (j->exit_codes[i] == code)
			return true;
	return false;
}

/* Judge the job's end: state and why. Called with x->mu held. */
static void judge(struct pjob *pj, enum kiln_rc rc, const char *err)
{
	const struct pipeline_job *j = pj->job;
	const struct job_result *r = &pj->res;
	bool allowed;

	if (!rc && r->exit_code == 0 && !r->failure_reason[0] && !pj->art_err[0]) {
		pj->state = PJ_PASS;
		return;
	}
	if (rc)
		snprintf(pj->why, sizeof(pj->why), "could not run: %s", err);
	else if (r->exit_code == 0 && !r->failure_reason[0])
		snprintf(pj->why, sizeof(pj->why), "artifacts not kept: %s", pj->art_err);
	else if (!strcmp(r->failure_reason, "script_failure"))
		snprintf(pj->why, sizeof(pj->why), "exit code %d", r->exit_code);
	else if (!strcmp(r->failure_reason, "job_execution_timeout"))
		snprintf(pj->why, sizeof(pj->why), "timed out (timeout %d s)",
			 j->timeout > 0 ? j->timeout : LOCALCI_DEFAULT_TIMEOUT);
	else if (!strcmp(r->failure_reason, "canceled"))
		snprintf(pj->why, sizeof(pj->why), "canceled");
	else
		snprintf(pj->why, sizeof(pj->why), "%s, exit code %d", r->failure_reason, r->exit_code);
	allowed = j->allow_failure ||
		  (!rc && !strcmp(r->failure_reason, "script_failure") && exit_code_allowed(j, r->exit_code));
	if (allowed && strcmp(r->failure_reason, "canceled")) {
		size_t n = strlen(pj->why);

		snprintf(pj->why + n, sizeof(pj->why) - n, "%s", j->allow_failure ? ", allowed to fail"
										    : ", an allowed exit code");
		pj->state = PJ_WARN;
	} else {
		pj->state = PJ_FAIL;
	}
}

static void *worker(void *arg)
{
	struct pjob *pj = arg;
	struct pexec *x = pj->x;
	const struct pipeline_job *j = pj->job;
	struct job_opts o = { .cfg = x->cfg, .executor = x->o->executor, .image = x->o->image,
			      .kernel = x->o->kernel, .vcpus = x->o->vcpus, .memory_mib = x->o->memory_mib,
			      .network = x->o->network, .no_snapshot = x->o->no_snapshot, .dirty_dir = x->o->dirty ? x->repo.dir : NULL,
			      .output = on_output, .notice = on_notice, .finished = on_finished, .arg = pj,
			      .shell = x->o->shell, .shell_in = 0, .shell_out = 1, .shell_hook = on_shell,
			      .cancel = &pj->cancel, .host = &x->host };
	char started[32], *json = NULL, **extra = NULL, names[1024];
	struct job_payload p;
	bool parsed = false;
	struct kiln_err e = { 0 };
	enum kiln_rc rc;
	size_t i, n_extra = 0, nl = 0;

	names[0] = '\0';
	iso_now(started, sizeof(started));
	rc = localci_payload(&x->repo, &x->pl, j, pj->id, x->pipeline_id, started, &json, &e);
	if (!rc && !(rc = payload_parse(json, strlen(json), &p, &e)))
		parsed = true;
	if (!rc && j->n_deps && !(extra = calloc(j->n_deps, sizeof(*extra))))
		rc = kiln_fail(&e, KILN_E_NOMEM, "out of memory");
	for (i = 0; !rc && i < j->n_deps; i++) {
		const char *dep = x->pl.jobs[j->deps[i]].name;
		char name[256], dir[PATH_MAX * 2];
		struct stat st;

		safe_name(dep, name, sizeof(name));
		snprintf(dir, sizeof(dir), "%s/%s", x->art_root, name);
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (!(extra[n_extra] = strdup(dir))) {
			rc = kiln_fail(&e, KILN_E_NOMEM, "out of memory");
			break;
		}
		n_extra++;
		nl += (size_t)snprintf(names + nl, nl < sizeof(names) ? sizeof(names) - nl : 0, "%s%s%s",
				       nl ? ", " : "", dep, x->step_of[j->deps[i]] < 0 ? " (from an earlier run)" : "");
		if (nl >= sizeof(names))
			nl = sizeof(names) - 1;
	}
	if (!rc) {
		if (n_extra)
			outmux_note(&pj->out, "with the artifacts of %s", names);
		o.extra_dirs = (const char *const *)extra;
		o.n_extra_dirs = n_extra;
		rc = pipeexec_jobcore.run(&p, &o, &pj->res, &e);
	} else {
		pj->res.exit_code = 1;
		snprintf(pj->res.failure_reason, sizeof(pj->res.failure_reason), "runner_system_failure");
	}
	outmux_tick(&pj->out, mono_ms(), true);
	if (parsed)
		payload_free(&p);
	free(json);
	for (i = 0; i < n_extra; i++)
		free(extra[i]);
	free(extra);

	pthread_mutex_lock(&x->mu);
	pj->t_end = mono_ms();
	judge(pj, rc, e.msg);
	if (pj->res.after_script_exit) {
		/* The job keeps its result, as in GitLab, but it shows. */
		size_t n = strlen(pj->why);

		snprintf(pj->why + n, sizeof(pj->why) - n, "%safter_script failed (exit %d)", n ? "; " : "",
			 pj->res.after_script_exit);
	}
	{
		const char *verdict = pj->state == PJ_PASS   ? "passed"
				      : pj->state == PJ_WARN ? "failed (allowed)"
							     : "failed";
		char took[32];

		duration(pj->t_end - pj->t_start, took, sizeof(took));
		outmux_note(&pj->out, "%s in %s%s%s", verdict, took, pj->why[0] ? ": " : "", pj->why);
	}
	x->done[pj - x->jobs] = true;
	x->running--;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

/* ---- scheduling ------------------------------------------------------------- */

/* Whether step i runs, judged on the steps it waited for; else why not. */
static bool should_run(struct pexec *x, size_t i, char *why, size_t size)
{
	const struct pipeline_step *st = &x->plan.steps[i];
	const struct pipeline_job *j = x->jobs[i].job;
	const char *failed = NULL, *skipped = NULL;
	size_t k, n = st->needs_based ? st->n_wait : st->n_before;

	for (k = 0; k < n; k++) {
		size_t w = st->needs_based ? st->wait[k] : k;

		if (x->jobs[w].state == PJ_FAIL && !failed)
			failed = x->jobs[w].job->name;
		if (x->jobs[w].state == PJ_SKIPPED && st->needs_based && !skipped)
			skipped = x->jobs[w].job->name;
	}
	switch (j->when) {
	case PL_ALWAYS:
		return true;
	case PL_ON_FAILURE:
		if (failed)
			return true;
		snprintf(why, size, "when: on_failure, and no job it waits for failed");
		return false;
	default:
		if (failed) {
			snprintf(why, size, "%s '%s' failed", st->needs_based ? "its need" : "earlier job", failed);
			return false;
		}
		if (skipped) {
			snprintf(why, size, "its need '%s' did not run", skipped);
			return false;
		}
		return true;
	}
}

static enum kiln_rc start(struct pexec *x, size_t i, struct kiln_err *e)
{
	struct pjob *pj = &x->jobs[i];
	int err;

	pj->state = PJ_RUNNING;
	pj->t_start = pj->last_beat = mono_ms();
	x->running++;
	err = pthread_create(&pj->th, NULL, worker, pj);
	if (err) {
		x->running--;
		pj->state = PJ_FAIL;
		pj->joined = true;
		snprintf(pj->why, sizeof(pj->why), "could not start a thread: %s", strerror(err));
		x->done[i] = true;
		errno = err;
		return kiln_fail_errno(e, "job '%s': starting its thread", pj->job->name);
	}
	return KILN_OK;
}

/* Start or skip whatever may; true when every step is done. */
static bool schedule(struct pexec *x)
{
	bool progress = true, all = true;
	size_t i;

	while (progress) {
		progress = false;
		for (i = 0; i < x->plan.n; i++) {
			struct pjob *pj = &x->jobs[i];
			char why[256];

			if (pj->state != PJ_WAITING || !pipeline_step_ready(&x->plan, i, x->done))
				continue;
			if (x->interrupted || !should_run(x, i, why, sizeof(why))) {
				pj->state = PJ_SKIPPED;
				snprintf(pj->why, sizeof(pj->why), "%s", x->interrupted ? "canceled" : why);
				x->done[i] = true;
				outmux_note(&pj->out, "skipped: %s", pj->why);
				progress = true;
				continue;
			}
			if (x->running >= x->o->concurrency)
				continue;
			if (start(x, i, NULL))
				progress = true;
		}
	}
	for (i = 0; i < x->plan.n; i++)
		all = all && x->done[i];
	return all;
}

/* Partial lines, quiet jobs, signals: every 100 ms. */
static void housekeeping(struct pexec *x)
{
	long long now = mono_ms();
	size_t i;

	if (got_signal && !x->interrupted) {
		x->interrupted = true;
		outmux_print(&x->out, "kiln: %s: canceling the running jobs%s, skipping the rest",
			     got_signal == JOB_CANCEL_NOW ? "interrupted" : "terminated",
			     got_signal == JOB_CANCEL_NOW ? "" : " (after_script still runs)");
	}
	for (i = 0; i < x->plan.n; i++) {
		struct pjob *pj = &x->jobs[i];
		long long last;

		if (pj->state != PJ_RUNNING)
			continue;
		if (got_signal && pj->cancel < got_signal)
			pj->cancel = got_signal;
		outmux_tick(&pj->out, now, false);
		last = outmux_last_output(&pj->out);
		if (last < pj->last_beat)
			last = pj->last_beat;
		if (now - last >= PIPEEXEC_HEARTBEAT_MS) {
			char took[32];

			duration(now - pj->t_start, took, sizeof(took));
			outmux_note(&pj->out, "... still running (%s)", took);
			pj->last_beat = now;
		}
	}
}

static void run_all(struct pexec *x)
{
	size_t i;

	pthread_mutex_lock(&x->mu);
	while (!schedule(x)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&x->cv, &x->mu, &ts);
		housekeeping(x);
	}
	pthread_mutex_unlock(&x->mu);
	for (i = 0; i < x->plan.n; i++)
		if (x->jobs[i].state != PJ_WAITING && x->jobs[i].state != PJ_SKIPPED && !x->jobs[i].joined) {
			pthread_join(x->jobs[i].th, NULL);
			x->jobs[i].joined = true;
		}
}

/* ---- printing ------------------------------------------------------------------ */

static int name_width(const struct pexec *x, bool all)
{
	size_t i, w = 4;

	for (i = 0; i < x->pl.n_jobs; i++)
		if (all || x->step_of[i] >= 0)
			w = strlen(x->pl.jobs[i].name) > w ? strlen(x->pl.jobs[i].name) : w;
	return w > 40 ? 40 : (int)w;
}

static int stage_width(const struct pexec *x)
{
	size_t i, w = 5;

	for (i = 0; i < x->pl.n_stages; i++)
		w = strlen(x->pl.stages[i]) > w ? strlen(x->pl.stages[i]) : w;
	return w > 30 ? 30 : (int)w;
}

static void print_list(const struct pexec *x)
{
	int nw = name_width(x, true), sw = stage_width(x);
	size_t i, k;

	printf("%-*s  %-*s  %-10s  %s\n", sw, "STAGE", nw, "JOB", "WHEN", "NOTES");
	for (i = 0; i < x->pl.n_jobs; i++) {
		const struct pipeline_job *j = &x->pl.jobs[i];
		char notes[1024];
		size_t n = 0;

		notes[0] = '\0';
#define NOTE(...) (n += (size_t)snprintf(notes + n, n < sizeof(notes) ? sizeof(notes) - n : 0, __VA_ARGS__), \
		   n = n < sizeof(notes) ? n : sizeof(notes) - 1)
		if (j->skipped)
			NOTE("skipped: %s", j->skip_reason ? j->skip_reason : "excluded");
		if (j->allow_failure)
			NOTE("%sallow_failure", n ? "; " : "");
		for (k = 0; k < j->n_exit_codes; k++)
			NOTE("%s%d", k ? "," : n ? "; allowed exit codes " : "allowed exit codes ", j->exit_codes[k]);
		if (j->has_needs) {
			NOTE("%sneeds:%s", n ? "; " : "", j->n_needs ? "" : " []");
			for (k = 0; k < j->n_needs; k++)
				NOTE("%s %s", k ? "," : "", x->pl.jobs[j->needs[k].job].name);
		}
		if (j->image)
			NOTE("%simage %s", n ? "; " : "", j->image);
		if (j->timeout)
			NOTE("%stimeout %ds", n ? "; " : "", j->timeout);
		if (j->artifacts.defined && j->artifacts.n_paths) {
			NOTE("%sartifacts:", n ? "; " : "");
			for (k = 0; k < j->artifacts.n_paths; k++)
				NOTE(" %s", j->artifacts.paths[k]);
		}
#undef NOTE
		printf("%-*s  %-*s  %-10s  %s\n", sw, x->pl.stages[j->stage], nw, j->name,
		       j->skipped ? "-" : pipeline_when_name(j->when), notes);
	}
}

static void summary(struct pexec *x, long long took_ms)
{
	int nw = name_width(x, !x->o->n_selected), sw = stage_width(x);
	unsigned pass = 0, warn = 0, fail = 0, skip = 0;
	bool c = x->out.colour;
	char took[32];
	size_t i, k;

	for (i = 0; i < x->plan.n; i++) {
		enum pj_state s = x->jobs[i].state;

		pass += s == PJ_PASS;
		warn += s == PJ_WARN;
		fail += s == PJ_FAIL;
		skip += s == PJ_SKIPPED;
	}
	duration(took_ms, took, sizeof(took));
	outmux_print(&x->out, "%s", "");
	outmux_print(&x->out,
		     "%spipeline #%lld%s of %s at %s (%s): %u passed, %u allowed to fail, %u failed, %u skipped, in %s",
		     c ? "\033[1m" : "", x->pipeline_id, c ? "\033[0m" : "", x->repo.project_path, x->repo.short_sha,
		     x->repo.ref_name, pass, warn, fail, skip, took);
	for (i = 0; i < x->pl.n_jobs; i++) {
		const struct pipeline_job *j = &x->pl.jobs[i];
		ssize_t s = x->step_of[i];
		const char *tag, *col = "", *why = "";
		char dur[32] = "", hint[320];

		if (s < 0) {
			/* Not in the plan: listed when the whole pipeline ran. */
			if (x->o->n_selected)
				continue;
			tag = "skip";
			snprintf(hint, sizeof(hint), "manual job: run it with kiln exec '%s'", j->name);
			why = j->skipped ? (j->skip_reason ? j->skip_reason : "excluded")
					 : j->when == PL_MANUAL ? hint : "not planned";
		} else {
			struct pjob *pj = &x->jobs[s];

			switch (pj->state) {
			case PJ_PASS: tag = "PASS"; col = "\033[32m"; break;
			case PJ_WARN: tag = "WARN"; col = "\033[33m"; break;
			case PJ_FAIL: tag = "FAIL"; col = "\033[31;1m"; break;
			default: tag = "skip"; break;
			}
			if (pj->state != PJ_SKIPPED && pj->state != PJ_WAITING && pj->t_end)
				duration(pj->t_end - pj->t_start, dur, sizeof(dur));
			why = pj->why;
		}
		outmux_print(&x->out, "  %-*s  %-*s  %s%s%s  %7s%s%s", sw, x->pl.stages[j->stage], nw, j->name,
			     c ? col : "", tag, c && *col ? "\033[0m" : "", dur, *why ? "  " : "", why);
		if (s >= 0 && x->jobs[s].state == PJ_FAIL) {
			unsigned count;

			outmux_tail(&x->jobs[s].out, 0, &count);
			for (k = 0; k < count; k++)
				outmux_print(&x->out, "  %-*s  %-*s  %7s  | %s", sw, "", nw, "", "",
					     outmux_tail(&x->jobs[s].out, (unsigned)k, NULL));
		}
	}
}

/* ---- main ------------------------------------------------------------------ */

static void on_warning(void *arg, const char *msg)
{
	(void)arg;
	log_warn("%s", msg);
}

int pipeexec_run(const struct kiln_config *cfg, const struct pexec_opts *opts)
{
	struct pexec_opts o = *opts;
	struct pexec x = { .cfg = cfg, .o = &o };
	struct pipeline_opts po = { 0 };
	struct localci_strv pre = { 0 };
	struct kiln_err e = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	char cwd[PATH_MAX], created[32];
	bool first = false, colour, inited = false;
	long long t0;
	int ret, w, ids_fd = -1;
	size_t i;

	if (!o.cwd) {
		if (!getcwd(cwd, sizeof(cwd))) {
			log_error("the current folder: %s", strerror(errno));
			return EXIT_FAIL;
		}
		o.cwd = cwd;
	}
	pthread_mutex_init(&x.mu, NULL);
	pthread_cond_init(&x.cv, NULL);
	if (localci_repo_open(o.cwd, &x.repo, &e)) {
		log_error("%s", e.msg);
		ret = EXIT_USAGE;
		goto out;
	}
	snprintf(x.kiln_dir, sizeof(x.kiln_dir), "%s/%s", x.repo.dir, LOCALCI_KILN_DIR);
	snprintf(x.art_root, sizeof(x.art_root), "%s/artifacts", x.kiln_dir);
	snprintf(x.tmp_dir, sizeof(x.tmp_dir), "%s/tmp", cfg->state_dir);
	localci_project_dir(&x.repo, x.project_dir, sizeof(x.project_dir));
	first = access(x.kiln_dir, F_OK) < 0;
	if (!o.list && ids_take(x.kiln_dir, &ids_fd, &x.pipeline_id, &e)) {
		log_error("%s", e.msg);
		ret = EXIT_FAIL;
		goto out;
	}
	iso_now(created, sizeof(created));
	if (localci_predefined(&x.repo, x.pipeline_id, x.pipeline_id, created, &pre, &e)) {
		log_error("%s", e.msg);
		ret = EXIT_FAIL;
		goto out;
	}
	po.repo_dir = x.repo.dir;
	po.file = o.file;
	po.predefined = (const char *const *)pre.v;
	po.n_predefined = pre.n;
	po.variables = o.variables;
	po.n_variables = o.n_variables;
	po.warn = on_warning;
	if (pipeline_load(&po, &x.pl, &e)) {
		log_error("%s", e.msg);
		ret = EXIT_USAGE;
		goto out;
	}
	if (!x.pl.created) {
		log_info("no pipeline: %s", x.pl.workflow_reason ? x.pl.workflow_reason : "workflow:rules");
		ret = EXIT_OK;
		goto out;
	}
	if (!(x.step_of = calloc(x.pl.n_jobs + 1, sizeof(*x.step_of)))) {
		log_error("out of memory");
		ret = EXIT_FAIL;
		goto out;
	}
	for (i = 0; i < x.pl.n_jobs; i++)
		x.step_of[i] = -1;
	if (o.list) {
		print_list(&x);
		ret = EXIT_OK;
		goto out;
	}
	if (pipeline_plan(&x.pl, o.selected, o.n_selected, o.needs, o.manual, o.n_manual, &x.plan, &e)) {
		log_error("%s", e.msg);
		ret = EXIT_USAGE;
		goto out;
	}
	/* Something runs: the pipeline number is used, .kiln/ made. */
	if (kiln_dir_make(&x, &e) || ids_commit(x.kiln_dir, &ids_fd, x.pipeline_id, &e)) {
		log_error("%s", e.msg);
		ret = EXIT_FAIL;
		goto out;
	}
	x.jobs = calloc(x.plan.n + 1, sizeof(*x.jobs));
	x.done = calloc(x.plan.n + 1, sizeof(*x.done));
	if (!x.jobs || !x.done) {
		log_error("out of memory");
		ret = EXIT_FAIL;
		goto out;
	}
	colour = isatty(1) && !getenv("NO_COLOR") && (!getenv("TERM") || strcmp(getenv("TERM"), "dumb"));
	for (i = 0; i < x.plan.n; i++)
		x.step_of[x.plan.steps[i].job] = (ssize_t)i;
	w = name_width(&x, false);
	outmux_init(&x.out, NULL, NULL, colour, w);
	inited = true;
	for (i = 0; i < x.plan.n; i++) {
		struct pjob *pj = &x.jobs[i];
		char name[256], dir[PATH_MAX * 2];

		pj->x = &x;
		pj->index = x.plan.steps[i].job;
		pj->job = &x.pl.jobs[pj->index];
		pj->id = x.pipeline_id * PIPEEXEC_JOB_IDS + (long long)pj->index + 1;
		outmux_stream_init(&x.out, &pj->out, pj->job->name, (unsigned)i, mono_ms());
		/* A planned job's artifacts are this run's, or none. */
		safe_name(pj->job->name, name, sizeof(name));
		snprintf(dir, sizeof(dir), "%s/%s", x.art_root, name);
		kiln_rm_rf(dir);
	}

	if (first)
		outmux_print(&x.out, "kiln: first run here: each job runs in a fresh VM; artifacts are kept in %s/%s/ "
				     "(which git ignores)", x.repo.dir, LOCALCI_KILN_DIR);
	outmux_print(&x.out, "kiln: pipeline #%lld of %s at %s (%s): %zu job%s, %d at a time", x.pipeline_id,
		     x.repo.project_path, x.repo.short_sha, x.repo.ref_name, x.plan.n, x.plan.n == 1 ? "" : "s",
		     o.concurrency);
	if (x.repo.changes && !o.dirty)
		outmux_print(&x.out, "kiln: %u uncommitted change%s or untracked file%s left out: the jobs see commit %s "
				     "(--dirty adds them)", x.repo.changes, x.repo.changes == 1 ? "" : "s",
			     x.repo.changes == 1 ? "" : "s", x.repo.short_sha);
	else if (o.dirty)
		outmux_print(&x.out, "kiln: the jobs see commit %s with the working tree's %u change%s (--dirty)",
			     x.repo.short_sha, x.repo.changes, x.repo.changes == 1 ? "" : "s");

	sig_jobs = x.jobs;
	sig_n = x.plan.n;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	pipeexec_jobcore.sweep(cfg->state_dir);
	hostfacts_probe("", kiln_libexec_dir(), &x.host);
	t0 = mono_ms();
	run_all(&x);
	sig_n = 0;
	summary(&x, mono_ms() - t0);
	ret = EXIT_OK;
	for (i = 0; i < x.plan.n; i++)
		if (x.jobs[i].state == PJ_FAIL)
			ret = EXIT_FAIL;
out:
	ids_drop(&ids_fd);
	if (inited)
		outmux_destroy(&x.out);
	free(x.jobs);
	free(x.done);
	free(x.step_of);
	pipeline_plan_free(&x.plan);
	pipeline_free(&x.pl);
	localci_strv_free(&pre);
	localci_repo_free(&x.repo);
	pthread_cond_destroy(&x.cv);
	pthread_mutex_destroy(&x.mu);
	return ret;
}
