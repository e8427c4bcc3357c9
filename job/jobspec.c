#include "job/jobspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"

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

enum kiln_rc jobspec_build(const struct job_payload *p, char **out, struct kiln_err *e)
{
	char project[256], dir[320], tmpdir[340], num[32], path[600];
	json_t *spec = NULL, *env, *files, *steps;
	enum kiln_rc rc = KILN_OK;
	size_t i, j;

	*out = NULL;
	jobspec_project_path(p, project, sizeof(project));
	snprintf(dir, sizeof(dir), "%s/%s", JOBSPEC_BUILDS_DIR, project);
	snprintf(tmpdir, sizeof(tmpdir), "%s.tmp", dir);
	spec = json_pack("{s:s, s:[], s:[], s:[]}", "workdir", dir, "env", "files", "steps");
	if (!spec)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	env = json_object_get(spec, "env");
	files = json_object_get(spec, "files");
	steps = json_object_get(spec, "steps");

	/* Defaults GitLab normally sends; the payload's own values win. */
	add_env(env, "CI", "true");
	add_env(env, "GITLAB_CI", "true");
	snprintf(num, sizeof(num), "%lld", p->id);
	add_env(env, "CI_JOB_ID", num);
	add_env(env, "CI_JOB_NAME", p->job_name);
	if (p->stage)
		add_env(env, "CI_JOB_STAGE", p->stage);
	add_env(env, "CI_COMMIT_SHA", p->sha);
	if (p->ref)
		add_env(env, "CI_COMMIT_REF_NAME", p->ref);
	add_env(env, "CI_PROJECT_NAME", p->project_name ? p->project_name : project);
	add_env(env, "CI_PROJECT_PATH", project);

	for (i = 0; i < p->n_vars; i++) {
		const struct job_var *v = &p->vars[i];

		if (!v->file) {
			add_env(env, v->key, v->value);
			continue;
		}
		/* File variables: the value goes into a file, the variable holds
		 * its path (gitlab-runner keeps them beside the project). */
		snprintf(path, sizeof(path), "%s/%s", tmpdir, v->key);
		json_array_append_new(files, json_pack("{s:s, s:s, s:i}", "path", path, "content", v->value, "mode", 0600));
		add_env(env, v->key, path);
	}
	/* What the runner itself defines, after the payload so that it wins. */
	add_env(env, "CI_BUILDS_DIR", JOBSPEC_BUILDS_DIR);
	add_env(env, "CI_PROJECT_DIR", dir);
	add_env(env, "CI_SERVER", "yes");
	add_env(env, "CI_DISPOSABLE_ENVIRONMENT", "true");
	add_env(env, "CI_RUNNER_VERSION", PACKAGE_VERSION);
	snprintf(num, sizeof(num), "%d", p->timeout);
	add_env(env, "CI_JOB_TIMEOUT", num);

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
	*out = json_dumps(spec, JSON_COMPACT);
	if (!*out)
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
out:
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
