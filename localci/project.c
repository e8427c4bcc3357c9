#include "localci/project.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <git2.h>

#include "job/jobspec.h"
#include "workspace/mirror.h"
#include "job/payload.h"
#include "lib/vec.h"

/* ---- strings ------------------------------------------------------------ */

enum kiln_rc localci_strv_add(struct localci_strv *s, const char *key, const char *value, struct kiln_err *e)
{
	enum kiln_rc rc;
	char *kv;

	if ((rc = VEC_GROW(s->v, s->cap, s->n, 1, LOCALCI_STRV_MAX)))
		return rc == KILN_E_LIMIT ? kiln_fail(e, rc, "more than %d predefined variables", LOCALCI_STRV_MAX)
					  : kiln_fail(e, rc, "out of memory");
	if (asprintf(&kv, "%s=%s", key, value) < 0)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	s->v[s->n++] = kv;
	return KILN_OK;
}

void localci_strv_free(struct localci_strv *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

void localci_slug(const char *s, char *buf, size_t size)
{
	size_t n = 0, max = size ? size - 1 : 0;

	if (max > 63)
		max = 63;
	for (; *s && n < max; s++) {
		char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (ok)
			buf[n++] = c;
		else if (n && buf[n - 1] != '-')
			buf[n++] = '-';
	}
	while (n && buf[n - 1] == '-')
		n--;
	if (size)
		buf[n] = '\0';
}

/* ---- the repository ------------------------------------------------------ */

/* "group/project" from a remote URL into buf; false for a local path. */
static bool path_from_url(const char *url, char *buf, size_t size)
{
	const char *p = strstr(url, "://"), *colon = strchr(url, ':'), *slash = strchr(url, '/');
	size_t n;

	if (p) {
		if (!strncmp(url, "file://", 7))
			return false;
		p = strchr(p + 3, '/');
		if (!p)
			return false;
	} else if (colon && (!slash || colon < slash) && url[0] != '/' && url[0] != '.') {
		p = colon + 1;  /* scp-like: user@host:group/project.git */
	} else {
		return false;
	}
	while (*p == '/')
		p++;
	if (snprintf(buf, size, "%s", p) >= (int)size)
		return false;
	n = strlen(buf);
	while (n && buf[n - 1] == '/')
		buf[--n] = '\0';
	if (n > 4 && !strcmp(buf + n - 4, ".git"))
		buf[n -= 4] = '\0';
	return n > 0;
}

static void iso_time(git_time_t t, int offset_min, char *buf, size_t size)
{
	time_t local = (time_t)t + (time_t)offset_min * 60;
	struct tm tm;
	int off = offset_min < 0 ? -offset_min : offset_min;

	gmtime_r(&local, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, offset_min < 0 ? '-' : '+', off / 60, off % 60);
}

/* A tag (lightweight or annotated) pointing at oid, into buf. */
static void tag_at(git_repository *repo, const git_oid *oid, char *buf, size_t size)
{
	git_strarray tags = { 0 };
	size_t i;

	buf[0] = '\0';
	if (git_tag_list(&tags, repo) < 0)
		return;
	for (i = 0; i < tags.count && !buf[0]; i++) {
		char ref[300];
		git_object *o = NULL;

		snprintf(ref, sizeof(ref), "refs/tags/%s", tags.strings[i]);
		if (git_revparse_single(&o, repo, ref) == 0) {
			git_object *c = NULL;

			if (git_object_peel(&c, o, GIT_OBJECT_COMMIT) == 0 && git_oid_equal(git_object_id(c), oid))
				snprintf(buf, size, "%s", tags.strings[i]);
			git_object_free(c);
		}
		git_object_free(o);
	}
	git_strarray_dispose(&tags);
}

static void config_str(git_config *cfg, const char *key, char *buf, size_t size)
{
	git_buf b = { 0 };

	if (cfg && git_config_get_string_buf(&b, cfg, key) == 0 && b.ptr)
		snprintf(buf, size, "%s", b.ptr);
	git_buf_dispose(&b);
}

static unsigned count_changes(git_repository *repo)
{
	git_status_options so;
	git_status_list *st = NULL;
	unsigned n = 0;

	if (git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION) < 0)
		return 0;
	so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(&st, repo, &so) == 0)
		n = (unsigned)git_status_list_entrycount(st);
	git_status_list_free(st);
	return n;
}

enum kiln_rc localci_repo_open(const char *cwd, struct localci_repo *r, struct kiln_err *e)
{
	git_repository *repo = NULL;
	git_reference *head = NULL, *ohead = NULL;
	git_commit *commit = NULL;
	git_remote *origin = NULL;
	git_config *cfg = NULL;
	const git_signature *sig;
	const char *wd, *msg;
	enum kiln_rc rc = KILN_OK;
	size_t n;

	memset(r, 0, sizeof(*r));
	if (git_libgit2_init() < 0)
		return kiln_git_fail(e, KILN_E_IO, "libgit2 init");
	if (git_repository_open_ext(&repo, cwd, 0, NULL) < 0) {
		rc = kiln_fail(e, KILN_E_NOTFOUND, "%s: not in a git repository (kiln exec runs the pipeline of one)",
			       cwd);
		goto out;
	}
	wd = git_repository_workdir(repo);
	if (!wd) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: a bare repository: kiln exec needs a working tree", cwd);
		goto out;
	}
	if (snprintf(r->dir, sizeof(r->dir), "%s", wd) >= (int)sizeof(r->dir)) {
		rc = kiln_fail(e, KILN_E_LIMIT, "%s: path too long", wd);
		goto out;
	}
	n = strlen(r->dir);
	while (n > 1 && r->dir[n - 1] == '/')
		r->dir[--n] = '\0';
	if (git_repository_head(&head, repo) < 0) {
		rc = kiln_fail(e, KILN_E_NOTFOUND, "%s: HEAD names no commit yet (commit something first)", r->dir);
		goto out;
	}
	if (git_reference_peel((git_object **)&commit, head, GIT_OBJECT_COMMIT) < 0) {
		rc = kiln_git_fail(e, KILN_E_NOTFOUND, "%s: HEAD", r->dir);
		goto out;
	}
	git_oid_tostr(r->sha, sizeof(r->sha), git_commit_id(commit));
	snprintf(r->short_sha, sizeof(r->short_sha), "%.8s", r->sha);
	if (git_reference_is_branch(head))
		snprintf(r->branch, sizeof(r->branch), "%s", git_reference_shorthand(head));
	else
		tag_at(repo, git_commit_id(commit), r->tag, sizeof(r->tag));
	snprintf(r->ref_name, sizeof(r->ref_name), "%s", r->branch[0] ? r->branch : r->tag[0] ? r->tag : "HEAD");

	/* The default branch: what origin/HEAD points at. */
	if (git_reference_lookup(&ohead, repo, "refs/remotes/origin/HEAD") == 0 &&
	    git_reference_type(ohead) == GIT_REFERENCE_SYMBOLIC &&
	    !strncmp(git_reference_symbolic_target(ohead), "refs/remotes/origin/", 20))
		snprintf(r->default_branch, sizeof(r->default_branch), "%s", git_reference_symbolic_target(ohead) + 20);
	else
		snprintf(r->default_branch, sizeof(r->default_branch), "%s", r->branch[0] ? r->branch : "main");

	if (git_remote_lookup(&origin, repo, "origin") < 0 || !git_remote_url(origin) ||
	    !path_from_url(git_remote_url(origin), r->project_path, sizeof(r->project_path))) {
		const char *base = strrchr(r->dir, '/');

		snprintf(r->project_path, sizeof(r->project_path), "%s", base && base[1] ? base + 1 : "project");
	}
	{
		const char *last = strrchr(r->project_path, '/');

		snprintf(r->project_name, sizeof(r->project_name), "%s", last ? last + 1 : r->project_path);
		snprintf(r->namespace_, sizeof(r->namespace_), "%.*s",
			 last ? (int)(last - r->project_path) : 0, r->project_path);
	}

	msg = git_commit_message(commit);
	if (!(r->message = strdup(msg ? msg : ""))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	sig = git_commit_author(commit);
	snprintf(r->author, sizeof(r->author), "%s <%s>", sig->name, sig->email);
	sig = git_commit_committer(commit);
	iso_time(sig->when.time, sig->when.offset, r->timestamp, sizeof(r->timestamp));
	if (git_repository_config_snapshot(&cfg, repo) < 0)
		cfg = NULL;
	config_str(cfg, "user.name", r->user_name, sizeof(r->user_name));
	config_str(cfg, "user.email", r->user_email, sizeof(r->user_email));
	sig = git_commit_author(commit);
	if (!r->user_name[0])
		snprintf(r->user_name, sizeof(r->user_name), "%s", sig->name);
	if (!r->user_email[0])
		snprintf(r->user_email, sizeof(r->user_email), "%s", sig->email);
	r->changes = count_changes(repo);
out:
	git_config_free(cfg);
	git_remote_free(origin);
	git_reference_free(ohead);
	git_commit_free(commit);
	git_reference_free(head);
	git_repository_free(repo);
	git_libgit2_shutdown();
	if (rc)
		localci_repo_free(r);
	return rc;
}

void localci_repo_free(struct localci_repo *r)
{
	free(r->message);
	r->message = NULL;
}

/* ---- variables and the payload ------------------------------------------ */

void localci_project_dir(const struct localci_repo *r, char *buf, size_t size)
{
	struct job_payload p = { .project_name = r->project_name, .project_path = r->project_path };
	char project[256];

	jobspec_project_path(&p, project, sizeof(project));
	snprintf(buf, size, "%s/%s", JOBSPEC_BUILDS_DIR, project);
}

enum kiln_rc localci_predefined(const struct localci_repo *r, long long pipeline_id, long long pipeline_iid,
				const char *created_at, struct localci_strv *out, struct kiln_err *e)
{
	char num[2][32], ref_slug[64], path_slug[64], dir[320], title[1024], login[128];
	const char *msg = r->message ? r->message : "", *nl = strchr(msg, '\n'), *body = nl ? nl + 1 : "";
	enum kiln_rc rc;
	size_t i;

	snprintf(num[0], sizeof(num[0]), "%lld", pipeline_id);
	snprintf(num[1], sizeof(num[1]), "%lld", pipeline_iid);
	localci_slug(r->ref_name, ref_slug, sizeof(ref_slug));
	localci_slug(r->project_path, path_slug, sizeof(path_slug));
	localci_project_dir(r, dir, sizeof(dir));
	snprintf(title, sizeof(title), "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg), msg);
	while (*body == '\n')
		body++;
	snprintf(login, sizeof(login), "%.*s", (int)strcspn(r->user_email, "@"), r->user_email);
	{
		const char *const kv[][2] = {
			{ "CI", "true" },
			{ "GITLAB_CI", "true" },
			{ "CI_SERVER", "yes" },
			{ "CI_PIPELINE_ID", num[0] },
			{ "CI_PIPELINE_IID", num[1] },
			{ "CI_PIPELINE_SOURCE", "push" },
			{ "CI_PIPELINE_CREATED_AT", created_at },
			{ "CI_COMMIT_SHA", r->sha },
			{ "CI_COMMIT_SHORT_SHA", r->short_sha },
			{ "CI_COMMIT_BEFORE_SHA", "0000000000000000000000000000000000000000" },
			{ "CI_COMMIT_REF_NAME", r->ref_name },
			{ "CI_COMMIT_REF_SLUG", ref_slug },
			{ "CI_COMMIT_BRANCH", r->branch[0] ? r->branch : NULL },
			{ "CI_COMMIT_TAG", r->tag[0] ? r->tag : NULL },
			{ "CI_COMMIT_MESSAGE", msg },
			{ "CI_COMMIT_TITLE", title },
			{ "CI_COMMIT_DESCRIPTION", body },
			{ "CI_COMMIT_AUTHOR", r->author },
			{ "CI_COMMIT_TIMESTAMP", r->timestamp },
			{ "CI_DEFAULT_BRANCH", r->default_branch },
			{ "CI_PROJECT_NAME", r->project_name },
			{ "CI_PROJECT_PATH", r->project_path },
			{ "CI_PROJECT_PATH_SLUG", path_slug },
			{ "CI_PROJECT_NAMESPACE", r->namespace_[0] ? r->namespace_ : NULL },
			{ "CI_PROJECT_DIR", dir },
			{ "CI_BUILDS_DIR", JOBSPEC_BUILDS_DIR },
			{ "GITLAB_USER_NAME", r->user_name },
			{ "GITLAB_USER_EMAIL", r->user_email },
			{ "GITLAB_USER_LOGIN", login },
		};

		for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
			if (kv[i][1] && (rc = localci_strv_add(out, kv[i][0], kv[i][1], e)))
				return rc;
	}
	return KILN_OK;
}

static json_t *strings(const char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(v[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *variable(const char *key, const char *value, bool raw)
{
	return json_pack("{s:s, s:s, s:b, s:b, s:b}", "key", key, "value", value, "public", 1, "masked", 0, "raw",
			 raw);
}

/* A local job's services: (checked by localci/jobdef.c) as GitLab's
 * payload has them. */
static json_t *services_json(const struct cy_node *n)
{
	json_t *list = json_array();
	size_t i, k, j;

	for (i = 0; list && i < n->n; i++) {
		const struct cy_node *s = n->items[i];
		json_t *o = json_object();

		if (s->kind == CY_SCALAR)
			json_object_set_new(o, "name", json_string(s->str));
		for (k = 0; s->kind == CY_MAP && k < s->n; k++) {
			const struct cy_node *v = s->pairs[k].value;
			const char *key = s->pairs[k].key;

			if (!strcmp(key, "name") || !strcmp(key, "alias")) {
				json_object_set_new(o, key, json_string(v->str));
			} else if (!strcmp(key, "entrypoint") || !strcmp(key, "command") || !strcmp(key, "pull_policy")) {
				json_t *a = v->kind == CY_SCALAR ? json_pack("[s]", v->str) : json_array();

				for (j = 0; v->kind == CY_SEQ && j < v->n; j++)
					json_array_append_new(a, json_string(v->items[j]->str));
				json_object_set_new(o, key, a);
			} else if (!strcmp(key, "variables")) {
				json_t *a = json_array();

				for (j = 0; j < v->n; j++)
					json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "key", v->pairs[j].key, "value",
									   v->pairs[j].value->str, "public", 1));
				json_object_set_new(o, key, a);
			}
		}
		json_array_append_new(list, o);
	}
	return list;
}

/* A local job's image: its expanded name, entrypoint and pull_policy as
 * GitLab's payload has them (checked by localci/jobdef.c). */
static json_t *image_json(const struct pipeline_job *j)
{
	json_t *o = json_pack("{s:s}", "name", j->image);
	const struct cy_node *n = j->image_opts;
	size_t i, k;

	for (i = 0; o && n && i < n->n; i++) {
		const struct cy_node *v = n->pairs[i].value;
		const char *key = n->pairs[i].key;
		json_t *a;

		if (strcmp(key, "entrypoint") && strcmp(key, "pull_policy"))
			continue;
		a = v->kind == CY_SCALAR ? json_pack("[s]", v->str) : json_array();
		for (k = 0; a && v->kind == CY_SEQ && k < v->n; k++)
			json_array_append_new(a, json_string(v->items[k]->str));
		json_object_set_new(o, key, a);
	}
	return o;
}

static json_t *artifacts_json(const struct pipeline_job *j)
{
	const struct pipeline_artifacts *a = &j->artifacts;
	json_t *arr = json_array(), *o;

	if (!arr || !a->defined)
		return arr;
	o = json_pack("{s:s, s:b, s:o, s:o, s:s, s:s, s:s}", "name", a->name ? a->name : "artifacts", "untracked",
		      a->untracked, "paths", strings(a->paths, a->n_paths), "exclude", strings(a->exclude, a->n_exclude),
		      "when", pipeline_when_name(a->when), "artifact_type", "archive", "artifact_format", "zip");
	if (o && a->expire_in)
		json_object_set_new(o, "expire_in", json_string(a->expire_in));
	if (!o || json_array_append_new(arr, o)) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

enum kiln_rc localci_payload(const struct localci_repo *r, const struct pipeline *pl, const struct pipeline_job *j,
			     long long job_id, long long pipeline_id, const char *started_at, char **json,
			     struct kiln_err *e)
{
	json_t *doc = NULL, *vars, *steps, *deps, *refspecs;
	char id[32], pipeline_ref[96];
	const char *depth_var = pipeline_job_var(j, "GIT_DEPTH");
	long depth = depth_var ? strtol(depth_var, NULL, 10) : 0;
	int timeout = j->timeout > 0 ? j->timeout : LOCALCI_DEFAULT_TIMEOUT;
	enum kiln_rc rc = KILN_OK;
	size_t i;

	*json = NULL;
	if (timeout > 30 * 86400)
		timeout = 30 * 86400; /* the payload's ceiling */
	if (depth < 0 || depth > 1 << 30)
		depth = 0;
	snprintf(id, sizeof(id), "%lld", job_id);
	snprintf(pipeline_ref, sizeof(pipeline_ref), "+%s:refs/pipelines/%lld", r->sha, pipeline_id);
	refspecs = json_pack("[s, s, s]", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
			     pipeline_ref);
	doc = json_pack("{s:I, s:s, s:b, s:{s:I, s:s, s:s, s:I, s:I, s:s, s:s}, "
			"s:{s:s, s:s, s:s, s:s, s:s, s:o, s:I}, s:{s:i}, s:[], s:[], s:[]}",
			"id", (json_int_t)job_id, "token", "kiln-exec-local", "allow_git_fetch", 0,
			"job_info", "id", (json_int_t)job_id, "name", j->name, "stage", pl->stages[j->stage],
			"pipeline_id", (json_int_t)pipeline_id, "project_id", (json_int_t)0,
			"project_name", r->project_name,
			"project_full_path", r->project_path,
			"git_info", "repo_url", r->dir, "ref", r->ref_name, "sha", r->sha, "before_sha",
			"0000000000000000000000000000000000000000",
			"ref_type", r->tag[0] && !r->branch[0] ? "tag" : "branch",
			"refspecs", refspecs, "depth", (json_int_t)depth,
			"runner_info", "timeout", timeout, "variables", "steps", "dependencies");
	if (!doc) {
		rc = kiln_fail(e, KILN_E_NOMEM, "payload of job '%s': out of memory", j->name);
		goto out;
	}
	vars = json_object_get(doc, "variables");
	steps = json_object_get(doc, "steps");
	deps = json_object_get(doc, "dependencies");
	json_array_append_new(vars, variable("CI_JOB_ID", id, true));
	json_array_append_new(vars, variable("CI_JOB_STARTED_AT", started_at, true));
	/* Expanded as GitLab's server expands them (`$$` kept): the runner's
	 * pass in jobspec_build turns `$$` into `$`, as gitlab-runner does. */
	for (i = 0; i < j->n_vars; i++)
		if (json_array_append_new(vars, variable(j->vars[i].key, j->vars[i].value, j->vars[i].raw))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "payload of job '%s': variable %s", j->name, j->vars[i].key);
			goto out;
		}
	if (json_array_append_new(steps, json_pack("{s:s, s:o, s:i, s:s, s:b}", "name", "script", "script",
						   strings(j->script, j->n_script), "timeout", timeout, "when",
						   "on_success", "allow_failure", 0)) ||
	    (j->n_after_script &&
	     json_array_append_new(steps, json_pack("{s:s, s:o, s:i, s:s, s:b}", "name", "after_script", "script",
						    strings(j->after_script, j->n_after_script), "timeout",
						    LOCALCI_AFTER_SCRIPT_TIMEOUT, "when", "always", "allow_failure", 1)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "payload of job '%s': steps", j->name);
		goto out;
	}
	for (i = 0; i < j->n_deps; i++)
		json_array_append_new(deps, json_pack("{s:s}", "name", pl->jobs[j->deps[i]].name));
	if (json_object_set_new(doc, "artifacts", artifacts_json(j)) ||
	    (j->image && json_object_set_new(doc, "image", image_json(j))) ||
	    (j->services && json_object_set_new(doc, "services", services_json(j->services)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "payload of job '%s': out of memory", j->name);
		goto out;
	}
	if (!(*json = json_dumps(doc, JSON_COMPACT)))
		rc = kiln_fail(e, KILN_E_NOMEM, "payload of job '%s': out of memory", j->name);
out:
	json_decref(doc);
	return rc;
}
