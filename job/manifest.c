#include "job/manifest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/atomicfile.h"

static int is_sha256(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[64] == '\0';
}

static enum kiln_rc dup_str(json_t *obj, const char *key, char **dst, const char *path,
			    struct kiln_err *e)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		return kiln_fail(e, KILN_E_INVALID, "%s: '%s' must be a string", path, key);
	*dst = strdup(json_string_value(v));
	return *dst ? KILN_OK : kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
}

enum kiln_rc manifest_load(struct manifest *m, const char *path, struct kiln_err *e)
{
	json_error_t jerr;
	json_t *root, *v, *files, *inputs;
	enum kiln_rc rc;
	size_t i;

	memset(m, 0, sizeof(*m));
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return kiln_fail(e, KILN_E_SYNTAX, "%s:%d: %s", path, jerr.line, jerr.text);
	if (!json_is_object(root)) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: not a JSON object", path);
		goto out;
	}
	if ((rc = dup_str(root, "name", &m->name, path, e)) || (rc = dup_str(root, "kind", &m->kind, path, e)) ||
	    (rc = dup_str(root, "built", &m->built, path, e)))
		goto out;
	v = json_object_get(root, "build_seconds");
	if (!json_is_number(v) || json_number_value(v) < 0) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: 'build_seconds' must be a number >= 0", path);
		goto out;
	}
	m->build_seconds = json_number_value(v);
	v = json_object_get(root, "inputs_sha256");
	if (!json_is_string(v) || !is_sha256(json_string_value(v))) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: 'inputs_sha256' must be 64 hex digits", path);
		goto out;
	}
	memcpy(m->inputs_sha256, json_string_value(v), 65);
	inputs = json_object_get(root, "inputs");
	if (!json_is_array(inputs) || json_array_size(inputs) > MANIFEST_MAX_INPUTS) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: 'inputs' must be a list of at most %d strings", path,
			       MANIFEST_MAX_INPUTS);
		goto out;
	}
	m->inputs = calloc(json_array_size(inputs) + 1, sizeof(char *));
	if (!m->inputs) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
		goto out;
	}
	json_array_foreach(inputs, i, v) {
		if (!json_is_string(v)) {
			rc = kiln_fail(e, KILN_E_INVALID, "%s: inputs[%zu] must be a string", path, i);
			goto out;
		}
		if (!(m->inputs[m->n_inputs++] = strdup(json_string_value(v)))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
			goto out;
		}
	}
	files = json_object_get(root, "files");
	if (!json_is_array(files) || json_array_size(files) == 0 ||
	    json_array_size(files) > MANIFEST_MAX_FILES) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: 'files' must list 1 to %d files", path, MANIFEST_MAX_FILES);
		goto out;
	}
	json_array_foreach(files, i, v) {
		struct manifest_file *f = &m->files[i];
		json_t *size = json_object_get(v, "size"), *sha = json_object_get(v, "sha256");
		char where[4200];

		snprintf(where, sizeof(where), "%s: files[%zu]", path, i);
		if ((rc = dup_str(v, "name", &f->name, where, e)))
			goto out;
		m->n_files++;
		if (strchr(f->name, '/') || !strcmp(f->name, "..") || !*f->name) {
			rc = kiln_fail(e, KILN_E_INVALID, "%s: 'name' must be a plain file name", where);
			goto out;
		}
		if (!json_is_integer(size) || json_integer_value(size) < 0) {
			rc = kiln_fail(e, KILN_E_INVALID, "%s: 'size' must be an integer >= 0", where);
			goto out;
		}
		f->size = (uint64_t)json_integer_value(size);
		if (!json_is_string(sha) || !is_sha256(json_string_value(sha))) {
			rc = kiln_fail(e, KILN_E_INVALID, "%s: 'sha256' must be 64 hex digits", where);
			goto out;
		}
		memcpy(f->sha256, json_string_value(sha), 65);
	}
	rc = KILN_OK;
out:
	json_decref(root);
	if (rc)
		manifest_free(m);
	return rc;
}

enum kiln_rc manifest_save(const struct manifest *m, const char *path, struct kiln_err *e)
{
	json_t *root, *files, *inputs;
	char *text = NULL;
	enum kiln_rc rc = KILN_OK;
	size_t i;

	root = json_pack("{s:s, s:s, s:s, s:f, s:s}", "name", m->name, "kind", m->kind, "built", m->built,
			 "build_seconds", m->build_seconds, "inputs_sha256", m->inputs_sha256);
	inputs = json_array();
	files = json_array();
	if (!root || !inputs || !files) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
		goto out;
	}
	for (i = 0; i < m->n_inputs; i++)
		json_array_append_new(inputs, json_string(m->inputs[i]));
	for (i = 0; i < m->n_files; i++)
		json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "name", m->files[i].name, "size",
						       (json_int_t)m->files[i].size, "sha256", m->files[i].sha256));
	json_object_set(root, "inputs", inputs);
	json_object_set(root, "files", files);
	if (!(text = json_dumps(root, JSON_INDENT(2)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "%s: out of memory", path);
		goto out;
	}
	rc = kiln_write_atomic(path, text, strlen(text), 0, e);
out:
	free(text);
	json_decref(inputs);
	json_decref(files);
	json_decref(root);
	return rc;
}

uint64_t manifest_size(const struct manifest *m)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < m->n_files; i++)
		total += m->files[i].size;
	return total;
}

const struct manifest_file *manifest_find(const struct manifest *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->n_files; i++)
		if (!strcmp(m->files[i].name, name))
			return &m->files[i];
	return NULL;
}

void manifest_free(struct manifest *m)
{
	size_t i;

	for (i = 0; i < m->n_inputs; i++)
		free(m->inputs[i]);
	free(m->inputs);
	for (i = 0; i < m->n_files; i++)
		free(m->files[i].name);
	free(m->name);
	free(m->kind);
	free(m->built);
	memset(m, 0, sizeof(*m));
}
