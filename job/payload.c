#include "job/payload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/readfile.h"
#include "lib/varexpand.h"

static enum kiln_rc bad(struct kiln_err *e, const char *field, const char *what)
{
	return kiln_fail(e, KILN_E_INVALID, "payload: %s: %s", field, what);
}

/* obj[key] as a string: required or optional, non-empty when required. */
static enum kiln_rc str(struct kiln_err *e, json_t *obj, const char *key, const char *where, bool required,
			const char **out)
{
	json_t *v = json_object_get(obj, key);
	char field[128];

	snprintf(field, sizeof(field), "%s%s%s", where, *where ? "." : "", key);
	*out = NULL;
	if (!v || json_is_null(v))
		return required ? bad(e, field, "missing") : KILN_OK;
	if (!json_is_string(v))
		return bad(e, field, "must be a string");
	if (required && !*json_string_value(v))
		return bad(e, field, "must not be empty");
	*out = json_string_value(v);
	return KILN_OK;
}

static enum kiln_rc num(struct kiln_err *e, json_t *obj, const char *key, const char *where, bool required,
			long long min, long long max, long long *out)
{
	json_t *v = json_object_get(obj, key);
	char field[128], what[96];

	snprintf(field, sizeof(field), "%s%s%s", where, *where ? "." : "", key);
	if (!v || json_is_null(v))
		return required ? bad(e, field, "missing") : KILN_OK;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(what, sizeof(what), "must be an integer in %lld..%lld", min, max);
		return bad(e, field, what);
	}
	*out = json_integer_value(v);
	return KILN_OK;
}

static enum kiln_rc flag(struct kiln_err *e, json_t *obj, const char *key, const char *where, bool *out)
{
	json_t *v = json_object_get(obj, key);
	char field[128];

	*out = false;
	if (!v || json_is_null(v))
		return KILN_OK;
	snprintf(field, sizeof(field), "%s.%s", where, key);
	if (!json_is_boolean(v))
		return bad(e, field, "must be true or false");
	*out = json_is_true(v);
	return KILN_OK;
}

static bool is_hex_sha(const char *s)
{
	size_t i, n = strlen(s);

	if (n != 40 && n != 64)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* GitLab stores any [A-Za-z0-9_]+ key, a leading digit included. */
static bool valid_var_name(const char *s)
{
	size_t i;

	if (!*s)
		return false;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return i <= 255;
}

static enum kiln_rc parse_vars(struct kiln_err *e, json_t *arr, struct job_payload *p)
{
	json_t *v;
	size_t i;
	enum kiln_rc rc;

	if (!arr || json_is_null(arr))
		return KILN_OK;
	if (!json_is_array(arr) || json_array_size(arr) > PAYLOAD_MAX_VARS)
		return bad(e, "variables", "must be a list of at most 4096 variables");
	p->vars = calloc(json_array_size(arr) + 1, sizeof(*p->vars));
	if (!p->vars)
		return kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
	json_array_foreach(arr, i, v) {
		struct job_var *jv = &p->vars[p->n_vars];
		char where[48];

		snprintf(where, sizeof(where), "variables[%zu]", i);
		if (!json_is_object(v))
			return bad(e, where, "must be an object");
		if ((rc = str(e, v, "key", where, true, &jv->key)) || (rc = str(e, v, "value", where, false, &jv->value)) ||
		    (rc = flag(e, v, "public", where, &jv->public_)) || (rc = flag(e, v, "masked", where, &jv->masked)) ||
		    (rc = flag(e, v, "file", where, &jv->file)) || (rc = flag(e, v, "raw", where, &jv->raw)))
			return rc;
		if (!valid_var_name(jv->key)) {
			char field[64];
			snprintf(field, sizeof(field), "%s.key", where);
			return bad(e, field, "must be letters, digits and '_'");
		}
		if (!jv->value)
			jv->value = "";
		p->n_vars++;
	}
	return KILN_OK;
}

static enum kiln_rc parse_steps(struct kiln_err *e, json_t *arr, struct job_payload *p)
{
	json_t *s, *line;
	size_t i, j;
	enum kiln_rc rc;

	if (!arr)
		return bad(e, "steps", "missing");
	if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > PAYLOAD_MAX_STEPS)
		return bad(e, "steps", "must be a list of 1 to 16 steps");
	p->steps = calloc(json_array_size(arr), sizeof(*p->steps));
	if (!p->steps)
		return kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
	json_array_foreach(arr, i, s) {
		struct job_step *st = &p->steps[p->n_steps];
		json_t *script = json_object_get(s, "script");
		long long timeout = p->timeout;
		char where[32], field[48];

		snprintf(where, sizeof(where), "steps[%zu]", i);
		if (!json_is_object(s))
			return bad(e, where, "must be an object");
		if ((rc = str(e, s, "name", where, true, &st->name)) || (rc = str(e, s, "when", where, false, &st->when)) ||
		    (rc = num(e, s, "timeout", where, false, 0, 7 * 86400, &timeout)) ||
		    (rc = flag(e, s, "allow_failure", where, &st->allow_failure)))
			return rc;
		if (!st->when || !*st->when)
			st->when = "on_success";
		if (strcmp(st->when, "on_success") && strcmp(st->when, "on_failure") && strcmp(st->when, "always")) {
			snprintf(field, sizeof(field), "%s.when", where);
			return bad(e, field, "must be on_success, on_failure or always");
		}
		st->timeout = timeout > 0 ? (int)timeout : p->timeout;
		snprintf(field, sizeof(field), "%s.script", where);
		if (!json_is_array(script) || json_array_size(script) > PAYLOAD_MAX_LINES)
			return bad(e, field, "must be a list of command lines");
		st->script = calloc(json_array_size(script) + 1, sizeof(char *));
		if (!st->script)
			return kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
		/* Counted now: payload_free frees its script when a line is bad. */
		p->n_steps++;
		json_array_foreach(script, j, line) {
			if (!json_is_string(line)) {
				snprintf(field, sizeof(field), "%s.script[%zu]", where, j);
				return bad(e, field, "must be a string");
			}
			st->script[st->n_script++] = json_string_value(line);
		}
	}
	return KILN_OK;
}

/* hooks[]: {name, script[]}. gitlab-runner runs pre_get_sources_script
 * before fetching and post_get_sources_script after it, in the job's
 * shell; kiln fetches on the host before the VM starts, so both run in
 * the guest, in that order, as the first steps (each its own section),
 * after the sources are in place. A failing hook fails the job. Other
 * names are ignored, as gitlab-runner ignores them. */
static enum kiln_rc parse_hooks(struct kiln_err *e, json_t *arr, struct job_payload *p)
{
	static const char *const order[] = { "pre_get_sources_script", "post_get_sources_script" };
	struct job_step hooks[PAYLOAD_MAX_HOOKS], *steps;
	enum kiln_rc rc = KILN_OK;
	size_t i, k, n = 0;
	json_t *h;

	if (!arr || json_is_null(arr))
		return KILN_OK;
	if (!json_is_array(arr) || json_array_size(arr) > 16)
		return bad(e, "hooks", "must be a list of at most 16 hooks");
	memset(hooks, 0, sizeof(hooks));
	for (k = 0; k < 2; k++) {
		json_array_foreach(arr, i, h) {
			json_t *name = json_object_get(h, "name"), *script = json_object_get(h, "script"), *line;
			char where[48];
			size_t j;

			snprintf(where, sizeof(where), "hooks[%zu]", i);
			if (!json_is_object(h) || !json_is_string(name)) {
				rc = bad(e, where, "must be an object with a name");
				goto fail;
			}
			if (strcmp(json_string_value(name), order[k]))
				continue;
			snprintf(where, sizeof(where), "hooks[%zu].script", i);
			if (!json_is_array(script) || json_array_size(script) > PAYLOAD_MAX_LINES) {
				rc = bad(e, where, "must be a list of command lines");
				goto fail;
			}
			json_array_foreach(script, j, line)
				if (!json_is_string(line)) {
					rc = bad(e, where, "must be a list of strings");
					goto fail;
				}
			if (json_array_size(script) == 0)
				break;
			hooks[n].script = calloc(json_array_size(script) + 1, sizeof(char *));
			if (!hooks[n].script)
				goto nomem;
			json_array_foreach(script, j, line)
				hooks[n].script[hooks[n].n_script++] = json_string_value(line);
			hooks[n].name = order[k];
			hooks[n].when = "on_success";
			hooks[n].timeout = p->timeout;
			n++;
			break;
		}
	}
	if (n == 0)
		return KILN_OK;
	steps = realloc(p->steps, (p->n_steps + n) * sizeof(*steps));
	if (!steps)
		goto nomem;
	memmove(steps + n, steps, p->n_steps * sizeof(*steps));
	memcpy(steps, hooks, n * sizeof(*steps));
	p->steps = steps;
	p->n_steps += n;
	return KILN_OK;
nomem:
	rc = kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
fail:
	for (k = 0; k < 2; k++)
		free(hooks[k].script);
	return rc;
}

static const char *payload_lookup(void *arg, const char *name)
{
	return payload_var(arg, name);
}

/* obj[key], when a string with a '$', replaced by its expansion against
 * the job's variables (Go's os.Expand, as gitlab-runner's ExpandValue). */
static enum kiln_rc expand_field(struct kiln_err *e, struct job_payload *p, json_t *obj, const char *key,
				 const char *field)
{
	struct var_names names = { payload_lookup, p };
	json_t *v = json_object_get(obj, key);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	enum kiln_rc rc;

	if (!json_is_string(v) || !strchr(json_string_value(v), '$'))
		return KILN_OK;
	rc = var_expand_into(json_string_value(v), VAR_GO_NAMES, var_by_name, &names, &buf, &len, &cap, 4096);
	if (rc == KILN_OK && json_object_set_new(obj, key, json_string(buf)))
		rc = KILN_E_NOMEM;
	free(buf);
	if (rc == KILN_E_LIMIT)
		return bad(e, field, "expands to more than 4 KiB");
	return rc ? kiln_fail(e, rc, "payload: out of memory") : KILN_OK;
}

/* image.name, services[i].name and .alias expanded as gitlab-runner
 * expands them before it pulls (expandImageName, getServicesDefinitions);
 * a service written as a plain string (a local pipeline's) too. */
static enum kiln_rc expand_names(struct kiln_err *e, struct job_payload *p)
{
	json_t *image = json_object_get(p->doc, "image"), *list = json_object_get(p->doc, "services"), *svc;
	enum kiln_rc rc;
	char field[64];
	size_t i;

	if ((rc = expand_field(e, p, image, "name", "image.name")))
		return rc;
	p->image = json_is_string(json_object_get(image, "name")) ? json_string_value(json_object_get(image, "name"))
								   : p->image;
	json_array_foreach (list, i, svc) {
		if (json_is_string(svc) && strchr(json_string_value(svc), '$')) {
			json_t *o = json_pack("{sO}", "name", svc);

			snprintf(field, sizeof(field), "services[%zu]", i);
			if (!o)
				return kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
			if ((rc = expand_field(e, p, o, "name", field)) ||
			    json_array_set(list, i, json_object_get(o, "name"))) {
				json_decref(o);
				return rc ? rc : kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
			}
			json_decref(o);
			continue;
		}
		snprintf(field, sizeof(field), "services[%zu].name", i);
		if ((rc = expand_field(e, p, svc, "name", field)))
			return rc;
		snprintf(field, sizeof(field), "services[%zu].alias", i);
		if ((rc = expand_field(e, p, svc, "alias", field)))
			return rc;
	}
	return KILN_OK;
}

enum kiln_rc payload_parse(const char *text, size_t len, struct job_payload *p, struct kiln_err *e)
{
	json_error_t jerr;
	json_t *root, *o, *v;
	long long n;
	enum kiln_rc rc;
	size_t i;

	memset(p, 0, sizeof(*p));
	if (len > PAYLOAD_MAX_BYTES)
		return kiln_fail(e, KILN_E_LIMIT, "payload: larger than 16 MiB");
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return kiln_fail(e, KILN_E_SYNTAX, "payload:%d:%d: %s", jerr.line, jerr.column, jerr.text);
	p->doc = root;
	if (!json_is_object(root)) {
		rc = bad(e, "(top level)", "must be a JSON object");
		goto fail;
	}
	if ((rc = num(e, root, "id", "", true, 1, (1LL << 62), &p->id)) ||
	    (rc = str(e, root, "token", "", false, &p->token)))
		goto fail;

	o = json_object_get(root, "job_info");
	if (!json_is_object(o)) {
		rc = bad(e, "job_info", o ? "must be an object" : "missing");
		goto fail;
	}
	if ((rc = str(e, o, "name", "job_info", true, &p->job_name)) ||
	    (rc = str(e, o, "stage", "job_info", false, &p->stage)) ||
	    (rc = num(e, o, "pipeline_id", "job_info", false, 0, 1LL << 62, &p->pipeline_id)) ||
	    (rc = num(e, o, "project_id", "job_info", false, 0, 1LL << 62, &p->project_id)) ||
	    (rc = str(e, o, "project_name", "job_info", false, &p->project_name)) ||
	    (rc = str(e, o, "project_full_path", "job_info", false, &p->project_path)))
		goto fail;

	o = json_object_get(root, "git_info");
	if (!json_is_object(o)) {
		rc = bad(e, "git_info", o ? "must be an object" : "missing");
		goto fail;
	}
	if ((rc = str(e, o, "repo_url", "git_info", true, &p->repo_url)) ||
	    (rc = str(e, o, "ref", "git_info", false, &p->ref)) || (rc = str(e, o, "sha", "git_info", true, &p->sha)) ||
	    (rc = str(e, o, "before_sha", "git_info", false, &p->before_sha)) ||
	    (rc = str(e, o, "ref_type", "git_info", false, &p->ref_type)))
		goto fail;
	if (!is_hex_sha(p->sha)) {
		rc = bad(e, "git_info.sha", "must be a full commit id (40 or 64 hex digits)");
		goto fail;
	}
	n = 0;
	if ((rc = num(e, o, "depth", "git_info", false, 0, 1 << 30, &n)))
		goto fail;
	p->depth = (int)n;
	v = json_object_get(o, "refspecs");
	if (v && !json_is_null(v)) {
		json_t *r;

		if (!json_is_array(v) || json_array_size(v) > 64) {
			rc = bad(e, "git_info.refspecs", "must be a list of at most 64 strings");
			goto fail;
		}
		p->refspecs = calloc(json_array_size(v) + 1, sizeof(char *));
		if (!p->refspecs) {
			rc = kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
			goto fail;
		}
		json_array_foreach(v, i, r) {
			if (!json_is_string(r)) {
				rc = bad(e, "git_info.refspecs", "must be a list of strings");
				goto fail;
			}
			p->refspecs[p->n_refspecs++] = json_string_value(r);
		}
	}

	o = json_object_get(root, "runner_info");
	n = 3600;
	if (o && !json_is_object(o)) {
		rc = bad(e, "runner_info", "must be an object");
		goto fail;
	}
	if (o && (rc = num(e, o, "timeout", "runner_info", false, 1, 30 * 86400, &n)))
		goto fail;
	p->timeout = (int)n;

	o = json_object_get(root, "image");
	if (o && !json_is_null(o)) {
		if (!json_is_object(o)) {
			rc = bad(e, "image", "must be an object");
			goto fail;
		}
		if ((rc = str(e, o, "name", "image", false, &p->image)))
			goto fail;
	}
	if ((rc = parse_vars(e, json_object_get(root, "variables"), p)) || (rc = expand_names(e, p)) ||
	    (rc = parse_steps(e, json_object_get(root, "steps"), p)) ||
	    (rc = parse_hooks(e, json_object_get(root, "hooks"), p)))
		goto fail;
	return KILN_OK;
fail:
	payload_free(p);
	return rc;
}

enum kiln_rc payload_load(const char *path, struct job_payload *p, struct kiln_err *e)
{
	char *buf = NULL;
	size_t len;
	enum kiln_rc rc;
	int r = kiln_read_file(path, PAYLOAD_MAX_BYTES, &buf, &len);

	memset(p, 0, sizeof(*p));
	if (r == -EFBIG)
		return kiln_fail(e, KILN_E_LIMIT, "%s: payload: larger than 16 MiB", path);
	if (r == -ENOMEM)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	if (r < 0) {
		errno = -r;
		return kiln_fail_errno(e, "job file %s", path);
	}
	rc = payload_parse(buf, len, p, e);
	free(buf);
	if (rc && e) {
		char inner[sizeof(e->msg)];
		memcpy(inner, e->msg, sizeof(inner));
		kiln_fail(e, rc, "%s: %.450s", path, inner);
	}
	return rc;
}

void payload_free(struct job_payload *p)
{
	size_t i;

	for (i = 0; i < p->n_steps; i++)
		free(p->steps[i].script);
	free(p->steps);
	free(p->vars);
	free(p->refspecs);
	json_decref(p->doc);
	memset(p, 0, sizeof(*p));
}

const char *payload_var(const struct job_payload *p, const char *key)
{
	const char *v = NULL;
	size_t i;

	for (i = 0; i < p->n_vars; i++)
		if (!strcmp(p->vars[i].key, key))
			v = p->vars[i].value;
	return v;
}

bool payload_var_true(const struct job_payload *p, const char *key)
{
	static const char *const yes[] = { "1", "t", "T", "true", "True", "TRUE" };
	const char *v = payload_var(p, key);
	size_t i;

	for (i = 0; v && i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!strcmp(v, yes[i]))
			return true;
	return false;
}

static bool non_empty(json_t *v)
{
	return (json_is_array(v) && json_array_size(v)) || (json_is_object(v) && json_object_size(v));
}

const char *payload_unsupported(const struct job_payload *p)
{
	/* GitLab holds back only the jobs whose features the runner does not
	 * advertise in Ci::Build::RUNNER_FEATURES; these come anyway. */
	json_t *svc;
	size_t i;

	/* services: run in VMs of their own (job/servicevm.h); their docker:
	 * options do not apply to a VM. */
	json_array_foreach (json_object_get(p->doc, "services"), i, svc)
		if (non_empty(json_object_get(svc, "executor_opts")))
			return "this job sets services:docker: executor options, which kiln does not apply";
	if (non_empty(json_object_get(p->doc, "secrets")))
		return "this job uses secrets:, which kiln does not fetch (no secrets provider integration)";
	if (non_empty(json_object_get(json_object_get(p->doc, "image"), "executor_opts")))
		return "this job sets image:docker: executor options, which kiln does not apply";
	return NULL;
}
