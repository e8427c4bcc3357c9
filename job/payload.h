/* A GitLab job payload, the JSON body of POST /jobs/request: the one
 * description of a job, whether it came from GitLab, from `kiln exec` or
 * from a replay. Parsing checks every field kiln uses and names the field
 * in its error. */
#ifndef KILN_PAYLOAD_H
#define KILN_PAYLOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define PAYLOAD_MAX_BYTES (16u << 20)
#define PAYLOAD_MAX_VARS 4096
#define PAYLOAD_MAX_STEPS 16
#define PAYLOAD_MAX_HOOKS 2        /* pre_ and post_get_sources_script, steps too */
#define PAYLOAD_MAX_LINES 10000

struct job_var {
	const char *key, *value;   /* point into the JSON document */
	bool public_, masked, file, raw;
};

struct job_step {
	const char *name;          /* script, after_script, release, ... */
	const char **script;       /* command lines */
	size_t n_script;
	int timeout;               /* seconds */
	const char *when;          /* on_success, on_failure, always */
	bool allow_failure;
};

struct job_payload {
	json_t *doc;               /* owns every string below */
	long long id;
	const char *token;
	const char *job_name, *stage;
	long long pipeline_id, project_id;
	const char *project_name, *project_path;  /* project_path may be NULL */
	const char *repo_url, *ref, *sha, *before_sha, *ref_type;
	const char **refspecs;
	size_t n_refspecs;
	int depth;
	int timeout;               /* runner_info.timeout, seconds */
	const char *image;         /* image.name or NULL */
	struct job_var *vars;
	size_t n_vars;
	struct job_step *steps;   /* the payload's hooks first (parse_hooks), then its steps */
	size_t n_steps;
};

/* Parse text (len bytes). On failure e says "payload: FIELD: problem". */
enum kiln_rc payload_parse(const char *text, size_t len, struct job_payload *p, struct kiln_err *e);
/* Read and parse a file. */
enum kiln_rc payload_load(const char *path, struct job_payload *p, struct kiln_err *e);
void payload_free(struct job_payload *p);

/* The value of variable key, or NULL (the last definition wins). */
const char *payload_var(const struct job_payload *p, const char *key);

/* Whether variable key is true as Go's strconv.ParseBool reads it (1, t, T,
 * true, True, TRUE), as gitlab-runner reads CI_DEBUG_TRACE and FF_* flags. */
bool payload_var_true(const struct job_payload *p, const char *key);

/* NULL, or what the job asks for that kiln does not do and GitLab assigns
 * anyway (secrets:, image or service executor options), as one line for the job
 * log: such a job fails with runner_unsupported. */
const char *payload_unsupported(const struct job_payload *p);

#endif
