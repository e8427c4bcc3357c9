/* Demand: how many queued GitHub Actions jobs a runner entry could take.
 * For a repository, or each repository of an organization, it lists the
 * workflow runs with status queued and in_progress (a run in progress
 * queues its later `needs:` jobs), then each run's jobs, all through the
 * client's ETag cache so that an idle repository costs 304s only. A job
 * counts when its status is queued and every one of its runs-on labels is
 * in the served set (case-insensitive), as GitHub matches runners. */
#ifndef KILN_GHDEMAND_H
#define KILN_GHDEMAND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "github/client.h"
#include "lib/result.h"

#define GH_MAX_LABELS 100   /* GitHub's limit for a runner's labels */
#define GH_LABEL_MAX 256    /* bytes of one label */
#define GH_MAX_RUNS 1000    /* runs looked at per repository and poll */
#define GH_MAX_REPOS 1000   /* repositories of an organization polled */
#define GH_MAX_QUEUED 10000 /* matching job ids kept per poll */

/* A set of runs-on labels (kiln's served set, or a job's). */
struct gh_labels {
	char **v;
	size_t n, cap;
};

/* Add one label (copied). KILN_E_INVALID naming it when empty, longer
 * than GH_LABEL_MAX or holding a control character; KILN_E_LIMIT when it
 * would be label number GH_MAX_LABELS + 1. A duplicate (ignoring case) is
 * dropped. */
enum kiln_rc gh_labels_add(struct gh_labels *l, const char *label, struct kiln_err *e);
/* The labels of a JSON array of strings; what names the array in errors. */
enum kiln_rc gh_labels_from_json(struct gh_labels *l, const json_t *arr, const char *what, struct kiln_err *e);
/* Whether every label of job is in served (case-insensitive); a job
 * without labels matches nothing. */
bool gh_labels_cover(const struct gh_labels *served, const struct gh_labels *job);
void gh_labels_free(struct gh_labels *l);

struct gh_demand {
	size_t repos;          /* repositories polled */
	size_t runs;           /* queued or in-progress runs looked at */
	size_t queued;         /* queued jobs seen */
	size_t matching;       /* of which this entry serves */
	long long *job_ids;    /* the matching ones (at most GH_MAX_QUEUED) */
	char (*job_repos)[2 * GH_NAME_MAX + 2]; /* "owner/repo" of each */
	size_t n_ids, cap;
	/* Jobs in progress on a runner (any runner's): how a fleet learns
	 * which job its runner took, to read the result back later. */
	struct gh_taken *taken;
	size_t n_taken, cap_taken;
};

struct gh_taken {
	long long job, runner_id;
	char repo[2 * GH_NAME_MAX + 2];
};

/* Tally a run's jobs (the "jobs" array of GET .../runs/{id}/jobs) into d,
 * repo naming them: the queued ones into the demand, those in progress
 * with a runner_id into d->taken (at most GH_MAX_QUEUED). An element that is not an object with an integer id
 * and a string status is a KILN_E_SYNTAX error naming it; labels beyond
 * GH_MAX_LABELS a KILN_E_LIMIT. */
enum kiln_rc gh_demand_tally(struct gh_demand *d, const char *repo, const json_t *jobs,
			     const struct gh_labels *served, struct kiln_err *e);

/* The run ids of a "workflow_runs" array appended to ids[0..*n) (at most
 * max in all), each id once: a run that moved from queued to in progress
 * between the two lists shows in both, and its jobs count once. */
enum kiln_rc gh_runs_ids(const json_t *runs, long long *ids, size_t max, size_t *n, struct kiln_err *e);

/* Poll one repository ("owner/repo") into d. */
enum kiln_rc gh_demand_repo(struct gh_client *c, const char *repo, const struct gh_labels *served,
			    struct gh_demand *d, struct kiln_err *e);

/* Poll scope into d (cleared first): the repository, or for an
 * organization its repositories: GET /installation/repositories when
 * installation (an App), else GET /orgs/{org}/repos. A repository that
 * fails is an error naming it (state comes from the API, never guessed). */
enum kiln_rc gh_demand_poll(struct gh_client *c, const struct gh_scope *scope, bool installation,
			    const struct gh_labels *served, struct gh_demand *d, struct kiln_err *e);

void gh_demand_free(struct gh_demand *d);

#endif
