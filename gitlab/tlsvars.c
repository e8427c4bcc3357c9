#include "gitlab/tlsvars.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"

/* The contents of path (at most GL_TLS_FILE_MAX bytes), malloc'd. */
static char *slurp(const char *what, const char *path, struct kiln_err *e)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n;

	if (!f) {
		kiln_fail_errno(e, "%s %s", what, path);
		return NULL;
	}
	buf = malloc(GL_TLS_FILE_MAX + 1);
	if (!buf) {
		kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", what);
		goto out;
	}
	n = fread(buf, 1, GL_TLS_FILE_MAX + 1, f);
	if (ferror(f) || n > GL_TLS_FILE_MAX) {
		if (ferror(f))
			kiln_fail_errno(e, "%s %s: read", what, path);
		else
			kiln_fail(e, KILN_E_LIMIT, "%s %s: larger than 1 MiB", what, path);
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
out:
	fclose(f);
	return buf;
}

enum kiln_rc gl_payload_tls_vars(const char *text, size_t len, const char *ca_file, const char *cert_file,
				 const char *key_file, const char *runner_token, char **out, size_t *out_len,
				 struct kiln_err *e)
{
	static const char *const keys[] = { "CI_SERVER_TLS_CA_FILE", "CI_SERVER_TLS_CERT_FILE",
					    "CI_SERVER_TLS_KEY_FILE" };
	static const char *const whats[] = { "tls_ca_file", "tls_cert_file", "tls_key_file" };
	const char *paths[] = { ca_file, cert_file, key_file };
	enum kiln_rc rc = KILN_OK;
	json_t *doc = NULL, *vars, *mine = NULL;
	size_t i, at = 0;

	*out = NULL;
	*out_len = 0;
	if (!(ca_file && *ca_file) && !(cert_file && *cert_file) && !(runner_token && *runner_token))
		return KILN_OK;
	doc = json_loadb(text, len, 0, NULL);
	vars = json_object_get(doc, "variables");
	if (!json_is_object(doc) || (vars && !json_is_array(vars))) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "payload: not a JSON object with a variables list");
		goto out;
	}
	if (!vars && json_object_set_new(doc, "variables", vars = json_array())) {
		rc = kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
		goto out;
	}
	for (i = 0; i < 3; i++) {
		char *content;

		if (!paths[i] || !*paths[i] || (i == 2 && !(cert_file && *cert_file)))
			continue;
		if (!(content = slurp(whats[i], paths[i], e))) {
			rc = e->rc;
			goto out;
		}
		/* Internal in gitlab-runner: not public, never masked. */
		mine = json_pack("{s:s, s:s, s:b, s:b, s:b}", "key", keys[i], "value", content, "public", 0,
				 "file", 1, "masked", 0);
		free(content);
		if (!mine || json_array_insert_new(vars, at++, mine)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
			goto out;
		}
	}
	if (runner_token && *runner_token) {
		char shortened[16];

		cache_short_token(runner_token, shortened, sizeof(shortened));
		mine = json_pack("{s:s, s:s, s:b, s:b, s:b}", "key", "CI_RUNNER_SHORT_TOKEN", "value", shortened,
				 "public", 1, "file", 0, "masked", 0);
		if (!mine || json_array_insert_new(vars, at++, mine)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
			goto out;
		}
	}
	*out = json_dumps(doc, JSON_COMPACT);
	if (!*out)
		rc = kiln_fail(e, KILN_E_NOMEM, "payload: out of memory");
	else
		*out_len = strlen(*out);
out:
	json_decref(doc);
	return rc;
}
