/* `kiln exec` without --job-file: what GitLab would know about a local
 * repository (its predefined variables), and the payload of one job of its
 * pipeline, built as JSON in GitLab's shape (protocol reference, section 3)
 * so that a local job goes through payload_parse and job_run exactly like
 * one from GitLab.
 *
 * Values come from the repository through libgit2: HEAD's commit (sha,
 * message, author, time), its branch (or, when HEAD is detached, a tag
 * pointing at it), the default branch (the branch origin/HEAD names, else
 * the current branch, else "main"), and the project path from origin's URL
 * ("group/project" of https://host/group/project.git or
 * git@host:group/project.git), else the folder's name. */
#ifndef KILN_LOCALCI_H
#define KILN_LOCALCI_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "localci/pipeline.h"
#include "lib/result.h"

#define LOCALCI_KILN_DIR ".kiln"              /* kiln's folder in the repository */
#define LOCALCI_AFTER_SCRIPT_TIMEOUT 300      /* seconds: GitLab's default */
#define LOCALCI_DEFAULT_TIMEOUT 3600          /* seconds: GitLab's default project timeout */

struct localci_repo {
	char dir[PATH_MAX];         /* the top of the working tree, no trailing '/' */
	char sha[41], short_sha[9];
	char branch[256];           /* "" when HEAD is detached */
	char tag[256];              /* detached: a tag at HEAD, else "" */
	char ref_name[256];         /* branch, else tag, else "HEAD" */
	char default_branch[256];
	char project_path[256];     /* "group/project", or "project" */
	char project_name[128];     /* its last component */
	char namespace_[256];       /* its other components, "" for none */
	char author[320];           /* "Name <email>" of the commit */
	char timestamp[32];         /* the commit's time, ISO 8601 with offset */
	char user_name[128], user_email[192]; /* git config user.*, else the author */
	char *message;              /* the whole commit message (malloc'd) */
	unsigned changes;           /* uncommitted changes and untracked files (not ignored) */
};

/* Find the repository holding folder cwd (it or a folder above it) and
 * read the facts above. Errors name the folder: not a repository, a bare
 * one, no commit yet. */
enum kiln_rc localci_repo_open(const char *cwd, struct localci_repo *r, struct kiln_err *e);
void localci_repo_free(struct localci_repo *r);

/* A list of "KEY=VALUE" strings (pipeline_opts.predefined), at most
 * LOCALCI_STRV_MAX. */
#define LOCALCI_STRV_MAX 4096
struct localci_strv {
	char **v;
	size_t n, cap;
};

enum kiln_rc localci_strv_add(struct localci_strv *s, const char *key, const char *value, struct kiln_err *e);
void localci_strv_free(struct localci_strv *s);

/* GitLab's slug: lowercased, every character outside [a-z0-9] a '-', at
 * most 63 characters, no '-' at either end. */
void localci_slug(const char *s, char *buf, size_t size);

/* The project folder in the VM ("/builds/group/project"): what the runner
 * makes CI_PROJECT_DIR for this repository (job/jobspec.h). */
void localci_project_dir(const struct localci_repo *r, char *buf, size_t size);

/* Append the predefined variables of a push pipeline of r (CI, GITLAB_CI,
 * CI_PIPELINE_*, CI_COMMIT_*, CI_DEFAULT_BRANCH, CI_PROJECT_*,
 * CI_BUILDS_DIR, GITLAB_USER_*) to out; created_at is the pipeline's
 * start, ISO 8601. */
enum kiln_rc localci_predefined(const struct localci_repo *r, long long pipeline_id, long long pipeline_iid,
				const char *created_at, struct localci_strv *out, struct kiln_err *e);

/* The payload of job j of pl, as JSON text (caller frees): job_info,
 * git_info (repo_url: r->dir; refspecs: branches, tags and
 * +<sha>:refs/pipelines/<pipeline_id>; depth from GIT_DEPTH, else full),
 * runner_info.timeout (the job's, else LOCALCI_DEFAULT_TIMEOUT), image,
 * variables (CI_JOB_ID, CI_JOB_STARTED_AT, then the job's final variables
 * in order), steps (script = before_script + script; after_script when
 * given), and GitLab's artifacts and dependencies lists. */
enum kiln_rc localci_payload(const struct localci_repo *r, const struct pipeline *pl, const struct pipeline_job *j,
			     long long job_id, long long pipeline_id, const char *started_at, char **json,
			     struct kiln_err *e);

#endif
