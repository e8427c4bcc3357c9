#include "workspace/lfsbatch.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_sha256_hex(const char *s, size_t n)
{
	size_t i;

	if (n != 64)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The line at *at (up to '\n', which must be there), advancing *at. */
static bool next_line(const char *buf, size_t len, size_t *at, const char **line, size_t *n)
{
	const char *nl;

	if (*at >= len)
		return false;
	nl = memchr(buf + *at, '\n', len - *at);
	if (!nl)
		return false;
	*line = buf + *at;
	*n = (size_t)(nl - *line);
	*at += *n + 1;
	return true;
}

int lfs_pointer_parse(const char *buf, size_t len, struct lfs_pointer *p)
{
	static const char version[] = "version https://git-lfs.github.com/spec/v1";
	const char *line;
	size_t at = 0, n;
	bool have_oid = false, have_size = false;

	if (len > LFS_POINTER_MAX || !next_line(buf, len, &at, &line, &n) || n != sizeof(version) - 1 ||
	    memcmp(line, version, n) != 0)
		return -1;
	while (next_line(buf, len, &at, &line, &n)) {
		if (n > 11 && !memcmp(line, "oid sha256:", 11) && !have_oid && !have_size) {
			if (!is_sha256_hex(line + 11, n - 11))
				return -1;
			memcpy(p->oid, line + 11, 64);
			p->oid[64] = '\0';
			have_oid = true;
		} else if (n > 5 && !memcmp(line, "size ", 5) && have_oid && !have_size) {
			uint64_t v = 0;
			size_t i;

			if (n - 5 > 20 || (line[5] == '0' && n > 6))
				return -1;
			for (i = 5; i < n; i++) {
				if (line[i] < '0' || line[i] > '9' || v > (UINT64_MAX - 9) / 10)
					return -1;
				v = v * 10 + (uint64_t)(line[i] - '0');
			}
			p->size = v;
			have_size = true;
		} else if (n == 0 || memchr(line, ' ', n) == NULL) {
			return -1; /* every line is "key value" */
		}
	}
	return have_oid && have_size && at == len ? 0 : -1;
}

void lfs_batch_free(struct lfs_batch *b)
{
	size_t i, k;

	for (i = 0; i < b->n; i++) {
		free(b->v[i].href);
		for (k = 0; k < b->v[i].n_headers; k++)
			free(b->v[i].headers[k]);
	}
	free(b->v);
	b->v = NULL;
	b->n = 0;
}

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

static enum kiln_rc parse_download(json_t *dl, struct lfs_obj *o, size_t idx, struct kiln_err *e)
{
	json_t *href = json_object_get(dl, "href"), *hdr = json_object_get(dl, "header"), *v;
	const char *name;

	if (!json_is_string(href) || json_string_length(href) >= LFS_MAX_HREF ||
	    strlen(json_string_value(href)) != json_string_length(href) ||
	    (strncmp(json_string_value(href), "https://", 8) && strncmp(json_string_value(href), "http://", 7)) ||
	    strpbrk(json_string_value(href), " \r\n\t"))
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu].actions.download.href is not an http(s) URL",
				 idx);
	if (hdr && !json_is_object(hdr))
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu].actions.download.header is not an object",
				 idx);
	if (json_object_size(hdr) > LFS_MAX_HEADERS)
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu]: more than %d headers", idx,
				 LFS_MAX_HEADERS);
	if (!(o->href = strdup(json_string_value(href))))
		return kiln_fail(e, KILN_E_NOMEM, "LFS batch reply: out of memory");
	json_object_foreach(hdr, name, v) {
		const char *val = json_string_value(v);
		size_t n;

		if (!json_is_string(v) || !header_name_ok(name) || strlen(val) != json_string_length(v) ||
		    strpbrk(val, "\r\n") || (n = strlen(name) + 2 + strlen(val)) >= LFS_MAX_HEADER_BYTES)
			return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu]: a malformed header '%.64s'",
					 idx, name);
		if (!(o->headers[o->n_headers] = malloc(n + 1)))
			return kiln_fail(e, KILN_E_NOMEM, "LFS batch reply: out of memory");
		snprintf(o->headers[o->n_headers++], n + 1, "%s: %s", name, val);
	}
	return KILN_OK;
}

static enum kiln_rc parse_obj(json_t *j, struct lfs_obj *o, size_t idx, struct kiln_err *e)
{
	json_t *oid = json_object_get(j, "oid"), *size = json_object_get(j, "size");
	json_t *err = json_object_get(j, "error"), *dl = json_object_get(json_object_get(j, "actions"), "download");

	if (!json_is_object(j))
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu] is not an object", idx);
	if (!json_is_string(oid) || !is_sha256_hex(json_string_value(oid), json_string_length(oid)))
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu].oid is not a sha256", idx);
	if (!json_is_integer(size) || json_integer_value(size) < 0 ||
	    (uint64_t)json_integer_value(size) > LFS_MAX_OBJECT_BYTES)
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu].size is not a size up to %llu", idx,
				 (unsigned long long)LFS_MAX_OBJECT_BYTES);
	memcpy(o->oid, json_string_value(oid), 65);
	o->size = (uint64_t)json_integer_value(size);
	if (err) {
		json_t *code = json_object_get(err, "code"), *msg = json_object_get(err, "message");

		o->err_code = json_is_integer(code) && json_integer_value(code) > 0 &&
					      json_integer_value(code) < 1000
				      ? (int)json_integer_value(code)
				      : 500;
		snprintf(o->err, sizeof(o->err), "%s", json_is_string(msg) ? json_string_value(msg) : "error");
		o->err[strcspn(o->err, "\r\n")] = '\0';
		return KILN_OK;
	}
	if (!json_is_object(dl))
		return kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects[%zu] has neither a download action nor an error",
				 idx);
	return parse_download(dl, o, idx, e);
}

enum kiln_rc lfs_batch_parse(const char *body, size_t len, struct lfs_batch *b, struct kiln_err *e)
{
	json_error_t je;
	json_t *doc = NULL, *objs, *tr;
	enum kiln_rc rc = KILN_OK;
	size_t i;

	b->v = NULL;
	b->n = 0;
	if (len > LFS_MAX_REPLY_BYTES)
		return kiln_fail(e, KILN_E_LIMIT, "LFS batch reply: %zu bytes, at most %u", len, LFS_MAX_REPLY_BYTES);
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(doc)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: not a JSON object (%.80s)", doc ? "" : je.text);
		goto out;
	}
	tr = json_object_get(doc, "transfer");
	if (tr && (!json_is_string(tr) || strcmp(json_string_value(tr), "basic"))) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: transfer is not basic");
		goto out;
	}
	objs = json_object_get(doc, "objects");
	if (!json_is_array(objs)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "LFS batch reply: objects is not an array");
		goto out;
	}
	if (json_array_size(objs) > LFS_MAX_OBJECTS) {
		rc = kiln_fail(e, KILN_E_LIMIT, "LFS batch reply: more than %d objects", LFS_MAX_OBJECTS);
		goto out;
	}
	if (json_array_size(objs) && !(b->v = calloc(json_array_size(objs), sizeof(*b->v)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "LFS batch reply: out of memory");
		goto out;
	}
	for (i = 0; i < json_array_size(objs) && rc == KILN_OK; i++) {
		b->n = i + 1;
		rc = parse_obj(json_array_get(objs, i), &b->v[i], i, e);
	}
out:
	if (rc)
		lfs_batch_free(b);
	json_decref(doc);
	return rc;
}
