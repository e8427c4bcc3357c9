/* Just-in-time runners: one GitHub runner per job, made with POST
 * .../actions/runners/generate-jitconfig (repository or organization
 * form), listed, deleted; and a job's state read back by id for its
 * result.
 *
 * The encoded_jit_config blob holds the runner's RSA private key. It is
 * kept only in struct gh_jit, wiped by gh_jit_free, and never handed to a
 * log function or put in an error message: errors about it say what is
 * wrong with it, not what it holds. */
#ifndef KILN_GHJIT_H
#define KILN_GHJIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "github/client.h"
#include "github/demand.h"
#include "lib/result.h"

#define GH_RUNNER_NAME_MAX 64    /* kiln's names: prefix, '-', 12 hex digits */
#define GH_PREFIX_MAX 48
#define GH_JIT_MAX (64u << 10)   /* a blob is a few KiB */
#define GH_MAX_RUNNERS 10000     /* runners listed */

struct gh_runner {
	long long id;
	char name[GH_RUNNER_NAME_MAX * 2];
	char status[16];          /* online, offline */
	bool busy;
};

struct gh_jit {
	struct gh_runner runner;
	char *encoded;            /* encoded_jit_config: secret */
	size_t len;
};

struct gh_jit_req {
	const char *prefix;       /* name_prefix: [A-Za-z0-9._-], at most GH_PREFIX_MAX */
	const char *name;         /* gh_runner_name's, made before; NULL: a fresh one */
	long long runner_group_id;/* 0: 1 (Default) */
	const struct gh_labels *labels;
	const char *work_folder;  /* NULL: "_work" */
	/* Called with the blob as soon as it arrived, before gh_jit_create
	 * returns: where the caller registers it with its log masker (the
	 * runner's output is streamed to kiln's log). NULL: none. */
	void (*mask)(void *arg, const char *secret, size_t len);
	void *mask_arg;
};

/* A fresh runner name: prefix, '-', 12 random hex digits, into buf (size
 * at least GH_RUNNER_NAME_MAX). KILN_E_INVALID naming the prefix when it
 * is empty, too long or holds other characters than [A-Za-z0-9._-]. */
enum kiln_rc gh_runner_name(const char *prefix, char *buf, size_t size, struct kiln_err *e);

/* The 201 reply of generate-jitconfig: runner.id, runner.name and an
 * encoded_jit_config that is base64 of a JSON object (what the runner's
 * --jitconfig decodes), else KILN_E_SYNTAX saying which. out->encoded is
 * a copy (caller: gh_jit_free). */
enum kiln_rc gh_jit_parse(const char *body, size_t len, struct gh_jit *out, struct kiln_err *e);

/* Whether s (n bytes) is padded base64 whose bytes are a JSON object. */
bool gh_jit_blob_valid(const char *s, size_t n);

/* Make a JIT runner in scope. Labels: 1 to GH_MAX_LABELS, else
 * KILN_E_LIMIT/KILN_E_INVALID naming the count. A 409 (the name is taken)
 * looks the runner up by name, deletes it and tries once more. Errors
 * carry GitHub's message (403 "Resource not accessible by integration",
 * 404 for a runner group that does not exist) and never the blob. */
enum kiln_rc gh_jit_create(struct gh_client *c, const struct gh_scope *scope, const struct gh_jit_req *req,
			   struct gh_jit *out, struct kiln_err *e);

void gh_jit_free(struct gh_jit *j);

/* DELETE a runner; 204 and 404 (gone already) are KILN_OK, 422 (busy
 * running a job) KILN_E_INVALID. */
enum kiln_rc gh_runner_delete(struct gh_client *c, const struct gh_scope *scope, long long id, struct kiln_err *e);

/* The runner called name: KILN_E_NOTFOUND when there is none. */
enum kiln_rc gh_runner_find(struct gh_client *c, const struct gh_scope *scope, const char *name,
			    struct gh_runner *out, struct kiln_err *e);

/* Every runner of scope whose name is prefix-<something> (the
 * reconciler's view), into *out (caller frees) and *n. */
enum kiln_rc gh_runners_list(struct gh_client *c, const struct gh_scope *scope, const char *prefix,
			     struct gh_runner **out, size_t *n, struct kiln_err *e);

/* One runner object of a list or reply; false when it lacks id or name. */
bool gh_runner_from_json(const json_t *j, struct gh_runner *out);

struct gh_job {
	long long id;
	long long run_id;
	char status[16];          /* queued, in_progress, completed, waiting, ... */
	char conclusion[24];      /* success, failure, cancelled, ...; "" while running */
	long long runner_id;      /* 0 while queued */
	char runner_name[GH_RUNNER_NAME_MAX * 2];
};

/* A workflow_job object (the API's or a webhook's) into out. */
enum kiln_rc gh_job_from_json(const json_t *j, struct gh_job *out, struct kiln_err *e);

/* GET /repos/{repo}/actions/jobs/{id}: the job's state and result. */
enum kiln_rc gh_job_get(struct gh_client *c, const char *repo, long long id, struct gh_job *out,
			struct kiln_err *e);

#endif
