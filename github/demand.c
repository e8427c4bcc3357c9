#include "github/demand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/vec.h"

enum kiln_rc gh_labels_add(struct gh_labels *l, const char *label, struct kiln_err *e)
{
	size_t i, n = strlen(label);
	char *copy;

	if (n == 0)
		return kiln_fail(e, KILN_E_INVALID, "label '': empty");
	if (n > GH_LABEL_MAX)
		return kiln_fail(e, KILN_E_INVALID, "label '%.40s...': longer than %d bytes", label, GH_LABEL_MAX);
	for (i = 0; i < n; i++)
		if ((unsigned char)label[i] < 0x20 || label[i] == 0x7f)
			return kiln_fail(e, KILN_E_INVALID, "label '%.60s': holds a control character", label);
	for (i = 0; i < l->n; i++)
		if (!strcasecmp(l->v[i], label))
			return KILN_OK;
	if (l->n >= GH_MAX_LABELS)
		return kiln_fail(e, KILN_E_LIMIT, "label '%.60s': more than %d labels", label, GH_MAX_LABELS);
	if (VEC_GROW(l->v, l->cap, l->n, 1, GH_MAX_LABELS) || !(copy = strdup(label)))
		return kiln_fail(e, KILN_E_NOMEM, "labels: out of memory");
	l->v[l->n++] = copy;
	return KILN_OK;
}

enum kiln_rc gh_labels_from_json(struct gh_labels *l, const json_t *arr, const char *what, struct kiln_err *e)
{
	struct kiln_err le;
	size_t i;
	enum kiln_rc rc;

	if (!json_is_array(arr))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: labels are not an array", what);
	if (json_array_size(arr) > GH_MAX_LABELS)
		return kiln_fail(e, KILN_E_LIMIT, "%s: %zu labels, more than %d", what, json_array_size(arr),
				 GH_MAX_LABELS);
	for (i = 0; i < json_array_size(arr); i++) {
		const char *s = json_string_value(json_array_get(arr, i));

		if (!s)
			return kiln_fail(e, KILN_E_SYNTAX, "%s: label %zu is not a string", what, i);
		if ((rc = gh_labels_add(l, s, &le)))
			return kiln_fail(e, rc, "%s: %s", what, le.msg);
	}
	return KILN_OK;
}

bool gh_labels_cover(const struct gh_labels *served, const struct gh_labels *job)
{
	size_t i, j;

	if (job->n == 0)
		return false;
	for (i = 0; i < job->n; i++) {
		for (j = 0; j < served->n; j++)
			if (!strcasecmp(job->v[i], served->v[j]))
				break;
		if (j == served->n)
			return false;
	}
	return true;
}

void gh_labels_free(struct gh_labels *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void gh_demand_free(struct gh_demand *d)
{
	free(d->job_ids);
	free(d->job_repos);
	free(d->taken);
	memset(d, 0, sizeof(*d));
}

static enum kiln_rc add_job(struct gh_demand *d, const char *repo, long long id, struct kiln_err *e)
{
	size_t cap = d->cap;

	if (d->n_ids >= GH_MAX_QUEUED)
		return KILN_OK; /* counted in matching, not listed */
	if (VEC_GROW(d->job_ids, cap, d->n_ids, 1, GH_MAX_QUEUED))
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	if (VEC_GROW(d->job_repos, d->cap, d->n_ids, 1, GH_MAX_QUEUED))
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	d->job_ids[d->n_ids] = id;
	snprintf(d->job_repos[d->n_ids], sizeof(d->job_repos[0]), "%s", repo);
	d->n_ids++;
	return KILN_OK;
}

enum kiln_rc gh_demand_tally(struct gh_demand *d, const char *repo, const json_t *jobs,
			     const struct gh_labels *served, struct kiln_err *e)
{
	size_t i;
	enum kiln_rc rc = KILN_OK;

	if (!json_is_array(jobs))
		return kiln_fail(e, KILN_E_SYNTAX, "%s: jobs are not an array", repo);
	for (i = 0; i < json_array_size(jobs); i++) {
		const json_t *j = json_array_get(jobs, i), *id = json_object_get(j, "id");
		const char *status = json_string_value(json_object_get(j, "status"));
		struct gh_labels l = { 0 };
		char what[300];

		if (!json_is_integer(id) || !status)
			return kiln_fail(e, KILN_E_SYNTAX, "%s: job %zu has no id or status", repo, i);
		if (!strcmp(status, "in_progress") && json_integer_value(json_object_get(j, "runner_id")) > 0 &&
		    d->n_taken < GH_MAX_QUEUED) {
			struct gh_taken *t;

			if (VEC_GROW(d->taken, d->cap_taken, d->n_taken, 1, GH_MAX_QUEUED))
				return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
			t = &d->taken[d->n_taken++];
			t->job = json_integer_value(id);
			t->runner_id = json_integer_value(json_object_get(j, "runner_id"));
			snprintf(t->repo, sizeof(t->repo), "%s", repo);
		}
		if (strcmp(status, "queued"))
			continue;
		d->queued++;
		snprintf(what, sizeof(what), "%s: job %lld", repo, (long long)json_integer_value(id));
		if ((rc = gh_labels_from_json(&l, json_object_get(j, "labels"), what, e))) {
			gh_labels_free(&l);
			return rc;
		}
		if (gh_labels_cover(served, &l)) {
			d->matching++;
			rc = add_job(d, repo, json_integer_value(id), e);
		}
		gh_labels_free(&l);
		if (rc)
			return rc;
	}
	return KILN_OK;
}

enum kiln_rc gh_runs_ids(const json_t *runs, long long *ids, size_t max, size_t *n, struct kiln_err *e)
{
	size_t i, k;

	if (!json_is_array(runs))
		return kiln_fail(e, KILN_E_SYNTAX, "workflow runs are not an array");
	for (i = 0; i < json_array_size(runs); i++) {
		const json_t *id = json_object_get(json_array_get(runs, i), "id");

		if (!json_is_integer(id) || json_integer_value(id) <= 0)
			return kiln_fail(e, KILN_E_SYNTAX, "workflow run %zu has no id", i);
		for (k = 0; k < *n && ids[k] != json_integer_value(id); k++)
			;
		if (k < *n)
			continue;
		if (*n >= max)
			return kiln_fail(e, KILN_E_LIMIT, "more than %zu workflow runs", max);
		ids[(*n)++] = json_integer_value(id);
	}
	return KILN_OK;
}

enum kiln_rc gh_demand_repo(struct gh_client *c, const char *repo, const struct gh_labels *served,
			    struct gh_demand *d, struct kiln_err *e)
{
	static const char *const statuses[] = { "queued", "in_progress" };
	long long *ids = NULL;
	size_t n = 0, i, k;
	char path[512], what[400];
	json_t *items = NULL;
	struct kiln_err le;
	enum kiln_rc rc = KILN_OK;

	if (!(ids = malloc(GH_MAX_RUNS * sizeof(*ids))))
		return kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
	for (k = 0; k < 2; k++) {
		snprintf(path, sizeof(path), "/repos/%s/actions/runs?status=%s&per_page=100", repo, statuses[k]);
		snprintf(what, sizeof(what), "github %s: %s runs", repo, statuses[k]);
		if ((rc = gh_get_all(c, path, "workflow_runs", GH_MAX_RUNS, what, &items, e)))
			goto out;
		if ((rc = gh_runs_ids(items, ids, GH_MAX_RUNS, &n, &le))) {
			rc = kiln_fail(e, rc, "%s: %s", what, le.msg);
			goto out;
		}
		json_decref(items);
		items = NULL;
	}
	d->repos++;
	for (i = 0; i < n; i++) {
		d->runs++;
		snprintf(path, sizeof(path), "/repos/%s/actions/runs/%lld/jobs?per_page=100", repo, ids[i]);
		snprintf(what, sizeof(what), "github %s: jobs of run %lld", repo, ids[i]);
		if ((rc = gh_get_all(c, path, "jobs", 0, what, &items, e)))
			goto out;
		if ((rc = gh_demand_tally(d, repo, items, served, e)))
			goto out;
		json_decref(items);
		items = NULL;
	}
out:
	json_decref(items);
	free(ids);
	return rc;
}

enum kiln_rc gh_demand_poll(struct gh_client *c, const struct gh_scope *scope, bool installation,
			    const struct gh_labels *served, struct gh_demand *d, struct kiln_err *e)
{
	char path[300], what[300], full[2 * GH_NAME_MAX + 2];
	json_t *repos = NULL;
	size_t i;
	enum kiln_rc rc = KILN_OK;

	gh_demand_free(d);
	if (scope->repo[0]) {
		snprintf(full, sizeof(full), "%s/%s", scope->owner, scope->repo);
		return gh_demand_repo(c, full, served, d, e);
	}
	if (installation) {
		snprintf(path, sizeof(path), "/installation/repositories?per_page=100");
		snprintf(what, sizeof(what), "github %s: the installation's repositories", scope->owner);
	} else {
		snprintf(path, sizeof(path), "/orgs/%s/repos?per_page=100", scope->owner);
		snprintf(what, sizeof(what), "github %s: the organization's repositories", scope->owner);
	}
	if ((rc = gh_get_all(c, path, installation ? "repositories" : NULL, GH_MAX_REPOS, what, &repos, e)))
		return rc;
	for (i = 0; i < json_array_size(repos); i++) {
		const char *name = json_string_value(json_object_get(json_array_get(repos, i), "full_name"));
		const json_t *owner = json_object_get(json_object_get(json_array_get(repos, i), "owner"), "login");

		if (!name || strlen(name) >= sizeof(full) || !strchr(name, '/') ||
		    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./") != strlen(name) ||
		    strstr(name, "..")) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "%s: repository %zu has no usable full_name", what, i);
			break;
		}
		/* An installation on several accounts: only this entry's. */
		if (json_is_string(owner) && strcasecmp(json_string_value(owner), scope->owner))
			continue;
		if ((rc = gh_demand_repo(c, name, served, d, e)))
			break;
	}
	json_decref(repos);
	return rc;
}
