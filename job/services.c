#include "job/services.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/glob.h"
#include "lib/varexpand.h"

size_t service_name_aliases(const char *ref, char out[2][SERVICE_ALIAS_MAX])
{
	char name[SERVICE_ALIAS_MAX];
	const char *slash, *colon;
	size_t n = strcspn(ref, "@"), i, k = 0;

	/* The name without @digest, then without a :tag after the last '/'. */
	if (n >= sizeof(name))
		return 0;
	memcpy(name, ref, n);
	name[n] = '\0';
	slash = strrchr(name, '/');
	colon = strrchr(name, ':');
	if (colon && (!slash || colon > slash))
		name[colon - name] = '\0';
	/* A registry's :port sits in the first component, before a '/'. */
	slash = strchr(name, '/');
	colon = strchr(name, ':');
	if (slash && colon && colon < slash)
		memmove((char *)colon, slash, strlen(slash) + 1);
	if (!name[0])
		return 0;
	for (i = 0; i < 2; i++) {
		const char *sep = i == 0 ? "__" : "-";
		size_t len = 0;
		const char *c;

		for (c = name; *c; c++) {
			const char *piece = *c == '/' ? sep : (char[2]){ *c, 0 };
			size_t pl = strlen(piece);

			if (len + pl >= SERVICE_ALIAS_MAX)
				return 0;
			memcpy(out[k] + len, piece, pl);
			len += pl;
		}
		out[k][len] = '\0';
		if (k == 0 || strcmp(out[0], out[1]))
			k++;
	}
	return k;
}

static bool alias_taken(const struct job_services *s, const struct job_service *cur, const char *a)
{
	size_t i, j;

	for (i = 0; i < s->n; i++)
		for (j = 0; j < s->v[i].n_aliases; j++)
			if (!strcmp(s->v[i].aliases[j], a))
				return true;
	for (j = 0; j < cur->n_aliases; j++)
		if (!strcmp(cur->aliases[j], a))
			return true;
	return false;
}

/* Adds alias a (len bytes) to svc unless taken; false when out of memory. */
static bool add_alias(const struct job_services *s, struct job_service *svc, const char *a, size_t len,
		      void (*warn)(void *, const char *), void *warn_arg)
{
	char name[SERVICE_ALIAS_MAX], line[SERVICE_ALIAS_MAX + 128];

	if (!len || len >= sizeof(name) || svc->n_aliases == SERVICE_ALIASES_MAX)
		return true;
	memcpy(name, a, len);
	name[len] = '\0';
	if (alias_taken(s, svc, name)) {
		snprintf(line, sizeof(line), "service %s: alias %s is taken by another service, skipped", svc->name, name);
		if (warn)
			warn(warn_arg, line);
		return true;
	}
	return (svc->aliases[svc->n_aliases++] = strdup(name)) != NULL;
}

static void service_clear(struct job_service *svc)
{
	size_t i;

	for (i = 0; i < svc->n_aliases; i++)
		free(svc->aliases[i]);
	free(svc->entrypoint);
	free(svc->command);
	free(svc->vars);
	memset(svc, 0, sizeof(*svc));
}

/* A JSON array of strings as a NULL-less vector pointing into the doc. */
static enum kiln_rc str_list(json_t *a, size_t idx, const char *field, const char ***out, size_t *n,
			     struct kiln_err *e)
{
	size_t i;

	*out = NULL;
	*n = 0;
	if (!a || json_is_null(a))
		return KILN_OK;
	if (!json_is_array(a) || json_array_size(a) > PAYLOAD_MAX_LINES)
		return kiln_fail(e, KILN_E_SYNTAX, "payload: services[%zu]: %s: not an array of strings", idx, field);
	if (!(*out = calloc(json_array_size(a) + 1, sizeof(**out))))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	for (i = 0; i < json_array_size(a); i++) {
		json_t *v = json_array_get(a, i);

		if (!json_is_string(v))
			return kiln_fail(e, KILN_E_SYNTAX, "payload: services[%zu]: %s[%zu]: not a string", idx, field, i);
		(*out)[(*n)++] = json_string_value(v);
	}
	return KILN_OK;
}

static int port_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* HEALTHCHECK_TCP_PORT from the service's variables, then the job's, in
 * any case (gitlab-runner looks the name up case-insensitively). */
static void service_ports(const struct job_payload *p, struct job_service *svc)
{
	const char *v = NULL;
	size_t i;
	char *end;
	long port;

	for (i = 0; i < svc->n_vars && !v; i++)
		if (!strcasecmp(svc->vars[i].key, "HEALTHCHECK_TCP_PORT"))
			v = svc->vars[i].value;
	for (i = 0; i < p->n_vars && !v; i++)
		if (!strcasecmp(p->vars[i].key, "HEALTHCHECK_TCP_PORT"))
			v = p->vars[i].value;
	if (!v)
		return;
	port = strtol(v, &end, 10);
	if (end != v && !*end && port > 0 && port < 65536)
		svc->ports[svc->n_ports++] = (int)port;
	qsort(svc->ports, svc->n_ports, sizeof(svc->ports[0]), port_cmp);
}

static enum kiln_rc parse_one(const struct job_payload *p, const struct job_services *s, json_t *o, size_t idx,
			      struct job_service *svc, void (*warn)(void *, const char *), void *warn_arg,
			      struct kiln_err *e)
{
	char derived[2][SERVICE_ALIAS_MAX];
	json_t *alias, *vars;
	enum kiln_rc rc;
	size_t i, k;

	svc->index = idx;
	if (json_is_string(o)) /* a local pipeline's `- postgres:16` */
		svc->name = json_string_value(o);
	else if (json_is_object(o) && json_is_string(json_object_get(o, "name")))
		svc->name = json_string_value(json_object_get(o, "name"));
	else
		return kiln_fail(e, KILN_E_SYNTAX, "payload: services[%zu]: name: missing or not a string", idx);
	if (!svc->name[0])
		return kiln_fail(e, KILN_E_INVALID, "payload: services[%zu]: name: empty", idx);
	if (!json_is_object(o))
		goto aliases;
	if ((rc = str_list(json_object_get(o, "entrypoint"), idx, "entrypoint", &svc->entrypoint,
			   &svc->n_entrypoint, e)) ||
	    (rc = str_list(json_object_get(o, "command"), idx, "command", &svc->command, &svc->n_command, e)))
		return rc;
	/* Checked where it is used: job/ociimage.c, an OCI service's pull. */
	svc->pull_policy = json_object_get(o, "pull_policy");
	vars = json_object_get(o, "variables");
	if (vars && !json_is_null(vars)) {
		if (!json_is_array(vars) || json_array_size(vars) > PAYLOAD_MAX_VARS)
			return kiln_fail(e, KILN_E_SYNTAX, "payload: services[%zu]: variables: not an array", idx);
		if (!(svc->vars = calloc(json_array_size(vars) + 1, sizeof(*svc->vars))))
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
		for (i = 0; i < json_array_size(vars); i++) {
			json_t *v = json_array_get(vars, i);
			json_t *key = json_object_get(v, "key"), *value = json_object_get(v, "value");

			if (!json_is_string(key) || !json_string_length(key) || (value && !json_is_string(value)))
				return kiln_fail(e, KILN_E_SYNTAX,
						 "payload: services[%zu]: variables[%zu]: key and value must be strings",
						 idx, i);
			svc->vars[svc->n_vars++] = (struct job_var){ .key = json_string_value(key),
								     .value = value ? json_string_value(value) : "",
								     .public_ = true,
								     .raw = json_is_true(json_object_get(v, "raw")) };
		}
	}
aliases:
	k = service_name_aliases(svc->name, derived);
	for (i = 0; i < k; i++)
		if (!add_alias(s, svc, derived[i], strlen(derived[i]), warn, warn_arg))
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	/* alias: names separated by commas and spaces (service_multiple_aliases). */
	alias = json_is_object(o) ? json_object_get(o, "alias") : NULL;
	if (alias && !json_is_null(alias)) {
		const char *a;

		if (!json_is_string(alias))
			return kiln_fail(e, KILN_E_SYNTAX, "payload: services[%zu]: alias: not a string", idx);
		for (a = json_string_value(alias); *a;) {
			size_t len = strcspn(a, ", \t");

			if (!add_alias(s, svc, a, len, warn, warn_arg))
				return kiln_fail(e, KILN_E_NOMEM, "out of memory");
			a += len;
			a += strspn(a, ", \t");
		}
	}
	service_ports(p, svc);
	return KILN_OK;
}

enum kiln_rc services_image_allowed(const char *image, const char *what, const char *const *patterns, size_t n,
				    const char *const *internal, size_t n_internal, struct kiln_err *e)
{
	char list[1024];
	size_t i, len = 0;

	if (!n)
		return KILN_OK;
	for (i = 0; i < n; i++)
		if (kiln_glob_match(patterns[i], image, KILN_GLOB_BRACES | KILN_GLOB_DEEP_TAIL))
			return KILN_OK;
	for (i = 0; i < n_internal; i++)
		if (!strcmp(internal[i], image))
			return KILN_OK;
	list[0] = '\0';
	for (i = 0; i < n && len < sizeof(list); i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", patterns[i]);
	return kiln_fail(e, KILN_E_INVALID, "disallowed image: the %s is not present on list of allowed %s: %s "
			 "(oci: allowed_%s)", image, what, list, what);
}

/* The name of services entry o, or NULL. */
static const char *entry_name(json_t *o)
{
	return json_is_string(o) ? json_string_value(o) : json_string_value(json_object_get(o, "name"));
}

enum kiln_rc services_parse(const struct job_payload *p, const struct services_rules *r, struct job_services *out,
			    void (*warn)(void *arg, const char *line), void *warn_arg, struct kiln_err *e)
{
	json_t *list = json_object_get(p->doc, "services");
	const json_t *mine = r ? r->runner : NULL;
	const char *internal[SERVICES_MAX];
	size_t n_mine = json_array_size(mine), n_job, total, i;
	enum kiln_rc rc = KILN_OK;

	memset(out, 0, sizeof(*out));
	if (list && !json_is_null(list) && !json_is_array(list))
		return kiln_fail(e, KILN_E_SYNTAX, "payload: services: not an array");
	n_job = json_array_size(list);
	total = n_mine + n_job;
	if (n_mine > SERVICES_MAX)
		n_mine = SERVICES_MAX; /* the config allows no more */
	for (i = 0; i < n_mine; i++)
		internal[i] = entry_name(json_array_get(mine, i));
	/* gitlab-runner: the runner's services are always allowed. */
	for (i = 0; r && i < n_job; i++) {
		const char *name = entry_name(json_array_get(list, i));

		if (name && (rc = services_image_allowed(name, "services", r->allowed, r->n_allowed, internal, n_mine, e)))
			return rc;
	}
	if (r && r->limit >= 0 && total > (size_t)r->limit)
		return kiln_fail(e, KILN_E_INVALID, "too many services requested (%zu > %d): oci: services_limit", total,
				 r->limit);
	if (total > SERVICES_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "payload: services: too many services requested: %zu, only %d allowed",
				 total, SERVICES_MAX);
	if (!total)
		return KILN_OK;
	if (!(out->v = calloc(total, sizeof(*out->v))))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	for (i = 0; i < total; i++) {
		struct job_service *svc = &out->v[out->n];
		json_t *o = i < n_mine ? json_array_get(mine, i) : json_array_get(list, i - n_mine);

		if ((rc = parse_one(p, out, o, i < n_mine ? i : i - n_mine, svc, warn, warn_arg, e))) {
			service_clear(svc);
			services_free(out);
			return rc;
		}
		if (!svc->n_aliases) {
			char line[SERVICE_ALIAS_MAX + 96];

			snprintf(line, sizeof(line), "service %s: every alias is taken, the service is not started",
				 svc->name);
			if (warn)
				warn(warn_arg, line);
			service_clear(svc);
			continue;
		}
		out->n++;
	}
	return KILN_OK;
}

void services_free(struct job_services *s)
{
	size_t i;

	for (i = 0; s->v && i < s->n; i++)
		service_clear(&s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

enum kiln_rc services_hosts(const struct job_services *s, const char *const *addrs, char **text, struct kiln_err *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	size_t i, j;

	*text = NULL;
	if (!f)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	for (i = 0; i < s->n; i++) {
		fputs(addrs[i], f);
		for (j = 0; j < s->v[i].n_aliases; j++)
			fprintf(f, " %s", s->v[i].aliases[j]);
		fputc('\n', f);
	}
	if (fclose(f) || !buf) {
		free(buf);
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	*text = buf;
	return KILN_OK;
}

/* The job's variables by name (the last definition wins), for expanding
 * the service's variables against them. */
static const char *job_lookup(void *arg, const char *name)
{
	return payload_var(arg, name);
}

static enum kiln_rc add_env(json_t *env, const char *k, const char *v, struct kiln_err *e)
{
	if (json_array_append_new(env, json_pack("[ss]", k, v)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	return KILN_OK;
}

enum kiln_rc services_spec_build(const struct job_payload *p, const struct job_service *svc, const char *hosts,
				 char **json, struct kiln_err *e)
{
	struct var_names names = { job_lookup, (void *)p };
	json_t *spec = json_pack("{s:s, s:[], s:[], s:s}", "mode", "service", "argv", "env", "hosts", hosts ? hosts : "");
	json_t *argv, *env;
	char *buf = NULL;
	size_t blen, bcap = 0, total = 0, i;
	enum kiln_rc rc = KILN_OK;

	*json = NULL;
	if (!spec) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	argv = json_object_get(spec, "argv");
	env = json_object_get(spec, "env");
	for (i = 0; i < svc->n_entrypoint + svc->n_command; i++) {
		const char *a = i < svc->n_entrypoint ? svc->entrypoint[i] : svc->command[i - svc->n_entrypoint];

		if (json_array_append_new(argv, json_string(a))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			goto out;
		}
	}
	/* Only the job's public variables: project and group secrets stay
	 * with the job, as gitlab-runner keeps them from service containers. */
	for (i = 0; i < p->n_vars; i++)
		if (p->vars[i].public_ && !p->vars[i].file && (rc = add_env(env, p->vars[i].key, p->vars[i].value, e)))
			goto out;
	for (i = 0; i < svc->n_vars; i++) {
		const char *value = svc->vars[i].value;

		if (!svc->vars[i].raw) {
			blen = 0;
			rc = var_expand_into(value, VAR_GO_NAMES, var_by_name, &names, &buf, &blen, &bcap, PAYLOAD_MAX_BYTES);
			if (rc || (total += blen) > PAYLOAD_MAX_BYTES) {
				rc = kiln_fail(e, rc == KILN_E_NOMEM ? rc : KILN_E_LIMIT,
					       "service %s: variable %s: %s", svc->name, svc->vars[i].key,
					       rc == KILN_E_NOMEM ? "out of memory" : "the variables expand to more than 16 MiB");
				goto out;
			}
			value = buf;
		}
		if ((rc = add_env(env, svc->vars[i].key, value, e)))
			goto out;
	}
	if (!(*json = json_dumps(spec, JSON_COMPACT)))
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
out:
	free(buf);
	json_decref(spec);
	return rc;
}

enum kiln_rc services_spec_add_hosts(const char *spec, const char *hosts, char **out, struct kiln_err *e)
{
	json_t *o = json_loads(spec, 0, NULL);
	enum kiln_rc rc = KILN_OK;

	*out = NULL;
	if (!json_is_object(o)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "job spec: not a JSON object");
		goto out;
	}
	if (json_object_set_new(o, "hosts", json_string(hosts)) || !(*out = json_dumps(o, JSON_COMPACT)))
		rc = kiln_fail(e, KILN_E_NOMEM, "job spec: out of memory");
out:
	json_decref(o);
	return rc;
}
