#include "github/vm.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitlab/mask.h"
#include "job/job.h"
#include "job/jobspec.h"
#include "job/payload.h"
#include "lib/log.h"

#define GH_VM_LINE_MAX 2048
/* How long a guest that is ready waits for its runner's blob (the JIT
 * request's own time limits are far shorter) before its job fails. */
#define GH_VM_BLOB_WAIT_S 600

/* What the guest runs: GitHub's run.sh, started by the agent itself
 * ("mode": "exec", set at the guest's HELLO by on_ready) as user runner
 * in its folder, the blob on its standard input. Each process started
 * before run.sh would be a cold start under TCG (bench/github.sh); now
 * there is none: no shell, no setpriv. The blob goes over the host
 * channel into a pipe the agent fills before the fork: no file, command
 * line or environment holds it, and once run.sh has read it nobody can
 * read it again. User runner and /home/runner/actions-runner come with
 * the image (images/recipes/github-runner). A runner laid over the
 * project folder (KILN_GITHUB_RUNNER_DIR, for tests) runs there instead,
 * and the agent adds user runner, at home in it, to an image without
 * one. The payload's own step is what the spec carried before HELLO. */
#define GH_RUNNER_HOME_DIR "/home/runner/actions-runner"
static const char *const run_argv[] = { "./run.sh", "--jitconfig", NULL };
static const char *const script[] = { "exec ./run.sh --jitconfig" };

struct ghvm {
	struct gh_vms *owner;
	char name[GH_VM_ID_MAX];
	struct job_payload p;
	struct mask m;
	char line[GH_VM_LINE_MAX];
	size_t nline;
	bool esc;                   /* inside a terminal escape (the trace's colours), dropped */
	pthread_t th;
	volatile sig_atomic_t cancel;
	atomic_int state;           /* enum gh_vm_state */
	/* The JIT blob, from vm_boot until the guest is ready for it (under
	 * the owner's mu; wiped when taken). */
	pthread_cond_t got;
	char *blob;
	size_t blob_len;
	struct ghvm *next;
};

struct gh_vms {
	const struct kiln_config *cfg;
	const struct kiln_github_config *g;
	int job_timeout;
	void (*stopped)(void);
	long long seq;
	pthread_mutex_t mu;
	struct ghvm *vms;
};

static void line_out(void *arg, const void *buf, size_t n)
{
	struct ghvm *v = arg;
	const char *s = buf;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\n' || v->nline == sizeof(v->line) - 1) {
			v->line[v->nline] = '\0';
			log_info("github %s: %s: %s", v->owner->g->name, v->name, v->line);
			v->nline = 0;
			if (s[i] == '\n')
				continue;
		}
		if (v->esc || s[i] == '\033')
			v->esc = !(s[i] >= '@' && s[i] <= '~' && s[i] != '[');
		else if (s[i] != '\r')
			v->line[v->nline++] = s[i];
	}
}

static void on_output(void *arg, const void *buf, size_t n)
{
	struct ghvm *v = arg;

	if (mask_write(&v->m, buf, n))
		log_warn("github %s: %s: output dropped (masker)", v->owner->g->name, v->name);
}

static void on_notice(void *arg, const char *line)
{
	struct ghvm *v = arg;

	log_info("github %s: %s: %s", v->owner->g->name, v->name, line);
}

/* job_opts.ready: at the guest's HELLO, the spec becomes run.sh's exec
 * spec with the blob (GitHub made it while the VM booted) as its standard
 * input; the masker learns it here, on the thread that writes the VM's
 * output. */
static enum kiln_rc on_ready(void *arg, const char *spec, char **out, struct kiln_err *e)
{
	struct ghvm *v = arg;
	const char *runner_dir = getenv("KILN_GITHUB_RUNNER_DIR");
	bool laid_over = runner_dir && *runner_dir;
	struct jobspec_exec x = { .argv = run_argv, .user = "runner", .add_user = laid_over,
				  .workdir = laid_over ? NULL : GH_RUNNER_HOME_DIR };
	struct timespec until;
	char *blob;
	size_t len;
	enum kiln_rc rc;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += GH_VM_BLOB_WAIT_S;
	pthread_mutex_lock(&v->owner->mu);
	while (!v->blob && !v->cancel)
		if (pthread_cond_timedwait(&v->got, &v->owner->mu, &until) == ETIMEDOUT)
			break;
	blob = v->blob;
	len = v->blob_len;
	v->blob = NULL;
	pthread_mutex_unlock(&v->owner->mu);
	if (!blob)
		return kiln_fail(e, KILN_E_LIMIT, v->cancel ? "canceled before the runner's JIT config came"
					     : "no JIT config for the runner within %d s", GH_VM_BLOB_WAIT_S);
	x.stdin_data = blob;
	if ((rc = mask_add_secret(&v->m, blob, e)))
		rc = kiln_fail(e, KILN_E_LIMIT, "the JIT config (%zu bytes) cannot be masked in the VM's log", len);
	else
		rc = jobspec_exec(spec, &x, out, e);
	explicit_bzero(blob, len);
	free(blob);
	return rc;
}

static void *vm_thread(void *arg)
{
	struct ghvm *v = arg;
	const struct kiln_vm_settings *vm = &v->owner->g->vm;
	const char *runner_dir = getenv("KILN_GITHUB_RUNNER_DIR");
	const char *extra[1] = { runner_dir };
	struct job_opts o = { .cfg = v->owner->cfg, .executor = vm->executor, .image = vm->image,
			      .kernel = vm->kernel, .vcpus = vm->vcpus, .memory_mib = vm->memory_mib,
			      .network = vm->network, .vm = vm, .output = on_output, .notice = on_notice,
			      .ready = on_ready, .arg = v, .cancel = &v->cancel };
	struct job_result r = { 0 };
	struct kiln_err e = { 0 };

	if (runner_dir && *runner_dir) {
		o.extra_dirs = extra;
		o.n_extra_dirs = 1;
	}
	if (job_run(&v->p, &o, &r, &e))
		log_error("github %s: %s: runner VM: %s", v->owner->g->name, v->name, e.msg);
	else
		log_info("github %s: %s: runner VM stopped (exit %d, prepare %.3f s, boot %.3f s, run %.3f s)",
			 v->owner->g->name, v->name, r.exit_code, r.prepare_s, r.boot_s, r.run_s);
	mask_flush(&v->m);
	if (v->nline)
		line_out(v, "\n", 1);
	atomic_store(&v->state, GH_VM_EXITED);
	if (v->owner->stopped && !v->cancel)
		v->owner->stopped();
	return NULL;
}

static json_t *var(const char *key, const char *value, bool masked)
{
	return json_pack("{s:s, s:s, s:b, s:b, s:b}", "key", key, "value", value, "public", !masked, "masked", masked,
			 "raw", 1);
}

/* The payload of v's runner job: the blob is not in it (on_ready adds it
 * to the job spec when the guest is ready). */
static enum kiln_rc payload(struct gh_vms *vs, struct ghvm *v, struct kiln_err *e)
{
	json_t *doc, *steps, *vars, *lines;
	enum kiln_rc rc = KILN_OK;
	char *text = NULL;
	size_t i;

	doc = json_pack("{s:I, s:s, s:b, s:{s:I, s:s, s:s, s:I, s:I, s:s, s:s}, "
			"s:{s:s, s:s, s:s, s:s, s:s, s:[], s:i}, s:{s:i}, s:[], s:[], s:[]}",
			"id", (json_int_t)vs->seq, "token", "kiln-github-runner", "allow_git_fetch", 0, "job_info",
			"id", (json_int_t)vs->seq, "name", v->name, "stage", "github", "pipeline_id", (json_int_t)0,
			"project_id", (json_int_t)0, "project_name", "actions-runner", "project_full_path",
			"kiln/actions-runner", "git_info", "repo_url", "https://github.invalid/kiln/actions-runner.git",
			"ref", "main", "sha", "0000000000000000000000000000000000000000", "before_sha",
			"0000000000000000000000000000000000000000", "ref_type", "branch", "refspecs", "depth", 0,
			"runner_info", "timeout", vs->job_timeout > 0 ? vs->job_timeout : 6 * 3600, "variables", "steps",
			"dependencies");
	lines = json_array();
	if (!doc || !lines) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < sizeof(script) / sizeof(script[0]); i++)
		json_array_append_new(lines, json_string(script[i]));
	vars = json_object_get(doc, "variables");
	steps = json_object_get(doc, "steps");
	if (json_array_append_new(vars, var("GIT_STRATEGY", "none", false)) ||
	    json_array_append_new(vars, var("KILN_GITHUB_RUNNER", v->name, false)) ||
	    json_array_append_new(steps, json_pack("{s:s, s:O, s:i, s:s, s:b}", "name", "script", "script", lines,
						   "timeout", vs->job_timeout > 0 ? vs->job_timeout : 6 * 3600,
						   "when", "on_success", "allow_failure", 0)) ||
	    !(text = json_dumps(doc, JSON_COMPACT))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	rc = payload_parse(text, strlen(text), &v->p, e);
out:
	free(text);
	json_decref(lines);
	json_decref(doc);
	return rc;
}

static struct ghvm *find(struct gh_vms *vs, const char *name)
{
	struct ghvm *v;

	for (v = vs->vms; v && strcmp(v->name, name); v = v->next)
		;
	return v;
}

/* A VM called name, booting on its own thread, its guest to wait for the
 * blob; vs->mu held. */
static enum kiln_rc start_locked(struct gh_vms *vs, const char *name, struct ghvm **out, struct kiln_err *e)
{
	struct ghvm *v = calloc(1, sizeof(*v));
	enum kiln_rc rc;

	if (!v)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	v->owner = vs;
	snprintf(v->name, sizeof(v->name), "%s", name);
	mask_init(&v->m, line_out, v);
	pthread_cond_init(&v->got, NULL);
	vs->seq++;
	if ((rc = payload(vs, v, e)))
		goto fail;
	atomic_store(&v->state, GH_VM_RUNNING);
	if (pthread_create(&v->th, NULL, vm_thread, v)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "cannot start a thread");
		goto fail;
	}
	v->next = vs->vms;
	vs->vms = v;
	*out = v;
	return KILN_OK;
fail:
	payload_free(&v->p);
	mask_free(&v->m);
	pthread_cond_destroy(&v->got);
	free(v);
	return rc;
}

static enum kiln_rc vm_start(void *arg, const char *name, struct kiln_err *e)
{
	struct gh_vms *vs = arg;
	struct ghvm *v;
	enum kiln_rc rc;

	pthread_mutex_lock(&vs->mu);
	rc = find(vs, name) ? kiln_fail(e, KILN_E_INVALID, "a runner VM %s exists already", name)
			    : start_locked(vs, name, &v, e);
	pthread_mutex_unlock(&vs->mu);
	return rc;
}

/* rec's VM (the one vm_start booted, else a new one) gets the blob. */
static enum kiln_rc vm_boot(void *arg, struct gh_rec *rec, const char *blob, size_t len, struct kiln_err *e)
{
	struct gh_vms *vs = arg;
	const char *name = rec->vm[0] ? rec->vm : rec->name;
	struct ghvm *v;
	char *b;
	enum kiln_rc rc = KILN_OK;

	/* No VM whose output could show the blob unmasked. */
	if (len == 0 || len > MASK_MAX_SECRET_BYTES)
		return kiln_fail(e, KILN_E_LIMIT, "the JIT config (%zu bytes) cannot be masked in the VM's log", len);
	if (!(b = strndup(blob, len)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	pthread_mutex_lock(&vs->mu);
	if (!(v = find(vs, name)))
		rc = start_locked(vs, name, &v, e);
	if (!rc && v->blob)
		rc = kiln_fail(e, KILN_E_INVALID, "runner VM %s has its JIT config already", name);
	if (!rc) {
		v->blob = b;
		v->blob_len = len;
		b = NULL;
		pthread_cond_signal(&v->got);
		snprintf(rec->vm, sizeof(rec->vm), "%s", v->name);
	}
	pthread_mutex_unlock(&vs->mu);
	if (b) {
		explicit_bzero(b, len);
		free(b);
	}
	return rc;
}

static enum gh_vm_state vm_state(void *arg, const struct gh_rec *rec)
{
	struct gh_vms *vs = arg;
	enum gh_vm_state s = GH_VM_NONE;
	struct ghvm *v;

	pthread_mutex_lock(&vs->mu);
	if (rec->vm[0] && (v = find(vs, rec->vm)))
		s = atomic_load(&v->state);
	pthread_mutex_unlock(&vs->mu);
	return s;
}

static void reap(struct gh_vms *vs, struct ghvm *v)
{
	pthread_mutex_lock(&vs->mu);
	v->cancel = JOB_CANCEL_NOW;
	pthread_cond_signal(&v->got);
	pthread_mutex_unlock(&vs->mu);
	pthread_join(v->th, NULL);
	if (v->blob) {
		explicit_bzero(v->blob, v->blob_len);
		free(v->blob);
	}
	payload_free(&v->p);
	mask_free(&v->m);
	pthread_cond_destroy(&v->got);
	free(v);
}

static void vm_destroy(void *arg, const struct gh_rec *rec)
{
	struct gh_vms *vs = arg;
	struct ghvm **pp, *v = NULL;

	pthread_mutex_lock(&vs->mu);
	for (pp = &vs->vms; *pp; pp = &(*pp)->next)
		if (rec->vm[0] && !strcmp((*pp)->name, rec->vm)) {
			v = *pp;
			*pp = v->next;
			break;
		}
	pthread_mutex_unlock(&vs->mu);
	if (v)
		reap(vs, v);
}

struct gh_vms *gh_vms_new(const struct kiln_config *cfg, const struct kiln_github_config *g, int job_timeout,
			  void (*stopped)(void))
{
	struct gh_vms *vs = calloc(1, sizeof(*vs));

	if (!vs)
		return NULL;
	vs->cfg = cfg;
	vs->g = g;
	vs->job_timeout = job_timeout;
	vs->stopped = stopped;
	pthread_mutex_init(&vs->mu, NULL);
	return vs;
}

struct gh_vm_ops gh_vms_ops(struct gh_vms *v)
{
	return (struct gh_vm_ops){ .boot = vm_boot, .state = vm_state, .destroy = vm_destroy, .arg = v,
				   .start = vm_start };
}

void gh_vms_free(struct gh_vms *vs)
{
	struct ghvm *v;

	if (!vs)
		return;
	while ((v = vs->vms)) {
		vs->vms = v->next;
		reap(vs, v);
	}
	pthread_mutex_destroy(&vs->mu);
	free(vs);
}
