#include "job/jobspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "lib/varexpand.h"

void jobspec_project_path(const struct job_payload *p, char *buf, size_t size)
{
	const char *src = p->project_path ? p->project_path : p->project_name ? p->project_name : "project";
	size_t i, n = 0;

	for (i = 0; src[i] && n + 1 < size; i++) {
		char c = src[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
			  c == '_' || c == '-' || c == '/';
		buf[n++] = ok ? c : '_';
	}
	buf[n] = '\0';
	/* No absolute paths, empty components or "..": each would escape or
	 * confuse the builds folder. */
	while (buf[0] == '/')
		memmove(buf, buf + 1, strlen(buf));
	for (i = 0; buf[i]; i++)
		if (buf[i] == '.' && buf[i + 1] == '.')
			buf[i] = buf[i + 1] = '_';
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '/')
		buf[--n] = '\0';
	if (!buf[0])
		snprintf(buf, size, "project");
}

static int add_env(json_t *env, const char *k, const char *v)
{
	return json_array_append_new(env, json_pack("[ss]", k, v));
}

/* The job's variables in gitlab-runner's order (a later definition wins),
 * before expansion; path is set for a file variable. */
struct jvar {
	const char *key, *value;
	char *path;
	bool raw;
};

struct jvars {
	struct jvar *v;
	size_t n, cap;
};

static void put_var(struct jvars *vs, const char *key, const char *value, bool raw)
{
	/* cap is sized for every definition below: never exceeded. */
	if (vs->n < vs->cap)
		vs->v[vs->n++] = (struct jvar){ key, value, NULL, raw };
}

/* gitlab-runner's JobVariables.Get: the last definition, a file variable's
 * path, and nothing for the shell's positional parameters ($1..$9). */
static const char *var_lookup(void *arg, const char *name, size_t len)
{
	const struct jvars *vs = arg;
	size_t i = vs->n;

	if (len == 1 && name[0] >= '0' && name[0] <= '9')
		return NULL;
	while (i-- > 0)
		if (!strncmp(vs->v[i].key, name, len) && !vs->v[i].key[len])
			return vs->v[i].path ? vs->v[i].path : vs->v[i].value;
	return NULL;
}

static const char *runner_arch(void)
{
#if defined(__x86_64__)
	return "linux/amd64";
#elif defined(__aarch64__)
	return "linux/arm64";
#else
	return "linux/unknown";
#endif
}

enum kiln_rc jobspec_build(const struct job_payload *p, char **out, struct kiln_err *e)
{
	char project[256], dir[320], tmpdir[340], id[32], timeout_s[32];
	json_t *spec = NULL, *env, *files, *steps;
	struct jvars vs = { NULL, 0, p->n_vars + 32 };
	char *buf = NULL;
	size_t blen = 0, bcap = 0, total = 0;
	enum kiln_rc rc = KILN_OK;
	size_t i, j;

	*out = NULL;
	jobspec_project_path(p, project, sizeof(project));
	snprintf(dir, sizeof(dir), "%s/%s", JOBSPEC_BUILDS_DIR, project);
	snprintf(tmpdir, sizeof(tmpdir), "%s.tmp", dir);
	spec = json_pack("{s:s, s:[], s:[], s:[]}", "workdir", dir, "env", "files", "steps");
	vs.v = calloc(vs.cap, sizeof(*vs.v));
	if (!spec || !vs.v) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	env = json_object_get(spec, "env");
	files = json_object_get(spec, "files");
	steps = json_object_get(spec, "steps");

	/* Defaults GitLab normally sends; the payload's own values win. */
	put_var(&vs, "CI", "true", false);
	put_var(&vs, "GITLAB_CI", "true", false);
	snprintf(id, sizeof(id), "%lld", p->id);
	put_var(&vs, "CI_JOB_ID", id, false);
	put_var(&vs, "CI_JOB_NAME", p->job_name, false);
	if (p->stage)
		put_var(&vs, "CI_JOB_STAGE", p->stage, false);
	put_var(&vs, "CI_COMMIT_SHA", p->sha, false);
	if (p->ref)
		put_var(&vs, "CI_COMMIT_REF_NAME", p->ref, false);
	put_var(&vs, "CI_PROJECT_NAME", p->project_name ? p->project_name : project, false);
	put_var(&vs, "CI_PROJECT_PATH", project, false);

	for (i = 0; i < p->n_vars; i++) {
		const struct job_var *v = &p->vars[i];
		size_t n = strlen(tmpdir) + strlen(v->key) + 2;

		put_var(&vs, v->key, v->value, v->raw);
		if (!v->file)
			continue;
		/* File variables: the value goes into a file, the variable holds
		 * its path (gitlab-runner keeps them beside the project). */
		if (!(vs.v[vs.n - 1].path = malloc(n))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			goto out;
		}
		snprintf(vs.v[vs.n - 1].path, n, "%s/%s", tmpdir, v->key);
	}
	/* What the runner itself defines, after the payload so that it wins.
	 * Each job has a VM of its own, so no two share a concurrency slot's
	 * folders: the slot ids are 0. */
	put_var(&vs, "CI_BUILDS_DIR", JOBSPEC_BUILDS_DIR, false);
	put_var(&vs, "CI_PROJECT_DIR", dir, false);
	put_var(&vs, "CI_CONCURRENT_ID", "0", false);
	put_var(&vs, "CI_CONCURRENT_PROJECT_ID", "0", false);
	put_var(&vs, "CI_SERVER", "yes", false);
	put_var(&vs, "CI_DISPOSABLE_ENVIRONMENT", "true", false);
	put_var(&vs, "CI_RUNNER_VERSION", PACKAGE_VERSION, false);
	put_var(&vs, "CI_RUNNER_REVISION", KILN_REVISION, false);
	put_var(&vs, "CI_RUNNER_EXECUTABLE_ARCH", runner_arch(), false);
	snprintf(timeout_s, sizeof(timeout_s), "%d", p->timeout);
	put_var(&vs, "CI_JOB_TIMEOUT", timeout_s, false);

	/* GitLab leaves references to the runner's variables and to file
	 * variables as written; like gitlab-runner, expand every value that is
	 * not raw once, against the values as defined (no recursion). */
	for (i = 0; i < vs.n; i++) {
		const struct jvar *v = &vs.v[i];
		const char *value = v->value;

		if (!v->raw) {
			blen = 0;
			rc = var_expand_into(v->value, VAR_GO_NAMES, var_lookup, &vs, &buf, &blen, &bcap, PAYLOAD_MAX_BYTES);
			if (rc == KILN_E_NOMEM) {
				rc = kiln_fail(e, rc, "out of memory");
				goto out;
			}
			if (rc || (total += blen) > PAYLOAD_MAX_BYTES) {
				rc = kiln_fail(e, KILN_E_LIMIT, "variable %s: the variables expand to more than 16 MiB",
					       v->key);
				goto out;
			}
			value = buf;
		}
		if (v->path && json_array_append_new(files, json_pack("{s:s, s:s, s:i}", "path", v->path, "content",
								      value, "mode", 0600))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			goto out;
		}
		if (add_env(env, v->key, v->path ? v->path : value)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			goto out;
		}
	}

	for (i = 0; i < p->n_steps; i++) {
		const struct job_step *s = &p->steps[i];
		json_t *script = json_array(), *step;

		for (j = 0; j < s->n_script; j++)
			json_array_append_new(script, json_string(s->script[j]));
		/* The runner enforces the job timeout by stopping the VM; a step
		 * limit that is not tighter than it is left a little looser so
		 * that the outcome does not depend on who notices first. */
		int timeout = s->timeout >= p->timeout ? p->timeout + 5 : s->timeout;

		step = json_pack("{s:s, s:o, s:i, s:s, s:b}", "name", s->name, "script", script, "timeout", timeout,
				 "when", s->when, "allow_failure", s->allow_failure);
		if (!step || json_array_append_new(steps, step)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			goto out;
		}
	}
	/* CI_DEBUG_TRACE: the guest's shell traces each command. */
	if (payload_var_true(p, "CI_DEBUG_TRACE") && json_object_set_new(spec, "debug_trace", json_true())) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	*out = json_dumps(spec, JSON_COMPACT);
	if (!*out)
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
out:
	for (i = 0; vs.v && i < vs.n; i++)
		free(vs.v[i].path);
	free(vs.v);
	free(buf);
	json_decref(spec);
	return rc;
}

enum kiln_rc jobspec_stamp_clock(const char *spec, char **out, struct kiln_err *e)
{
	json_t *o = json_loads(spec, 0, NULL);
	enum kiln_rc rc = KILN_OK;
	struct timespec now;

	*out = NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	if (!json_is_object(o)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "job spec: not a JSON object");
		goto out;
	}
	if (json_object_set_new(o, "clock", json_pack("{s:I, s:I}", "sec", (json_int_t)now.tv_sec, "nsec",
						     (json_int_t)now.tv_nsec)) ||
	    !(*out = json_dumps(o, JSON_COMPACT)))
		rc = kiln_fail(e, KILN_E_NOMEM, "job spec: out of memory");
out:
	json_decref(o);
	return rc;
}

enum kiln_rc jobspec_add_env(const char *spec, const char *key, const char *value, char **out,
			     struct kiln_err *e)
{
	json_t *o = json_loads(spec, 0, NULL), *env = json_object_get(o, "env");
	enum kiln_rc rc = KILN_OK;

	*out = NULL;
	if (!json_is_array(env)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "job spec: no env array");
		goto out;
	}
	if (add_env(env, key, value) || !(*out = json_dumps(o, JSON_COMPACT)))
		rc = kiln_fail(e, KILN_E_NOMEM, "job spec: out of memory");
out:
	json_decref(o); /* jansson's copy of value is freed, not wiped: it offers no hook */
	return rc;
}

enum kiln_rc jobspec_exec(const char *spec, const struct jobspec_exec *x, char **out, struct kiln_err *e)
{
	json_t *o = json_loads(spec, 0, NULL), *argv = json_array();
	enum kiln_rc rc = KILN_OK;
	size_t i;

	*out = NULL;
	if (!json_is_object(o)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "job spec: not a JSON object");
		goto out;
	}
	if (!argv)
		goto nomem;
	for (i = 0; x->argv[i]; i++)
		if (json_array_append_new(argv, json_string(x->argv[i])))
			goto nomem;
	if (json_object_set_new(o, "mode", json_string("exec")) || json_object_set(o, "argv", argv) ||
	    (x->user && json_object_set_new(o, "user", json_string(x->user))) ||
	    (x->add_user && json_object_set_new(o, "add_user", json_true())) ||
	    (x->workdir && json_object_set_new(o, "workdir", json_string(x->workdir))) ||
	    (x->stdin_data && json_object_set_new(o, "stdin", json_string(x->stdin_data))))
		goto nomem;
	json_object_del(o, "steps");
	if ((*out = json_dumps(o, JSON_COMPACT)))
		goto out;
nomem:
	rc = kiln_fail(e, KILN_E_NOMEM, "job spec: out of memory");
out:
	json_decref(argv);
	json_decref(o); /* as for jobspec_add_env: jansson's copy of stdin is not wiped */
	return rc;
}
