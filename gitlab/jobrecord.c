#include "gitlab/jobrecord.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/readfile.h"
#include "lib/sha256.h"
#include "lib/vec.h"

#define SCRUB_MAX_SECRETS 256
#define JOBREC_MAX_RUNNING 65536 /* journal entries read at start-up */

struct secrets {
	const char *v[SCRUB_MAX_SECRETS];
	size_t n;
};

static void add_secret(struct secrets *s, json_t *v)
{
	const char *str = json_string_value(v);

	/* Short values would mangle unrelated text; GitLab masks 8 and more. */
	if (str && strlen(str) >= 8 && s->n < SCRUB_MAX_SECRETS)
		s->v[s->n++] = str;
}

/* text without URL credentials and without any of the secrets; NULL when
 * nothing changes (or out of memory). */
static char *scrub_string(const char *text, const struct secrets *s)
{
	size_t len = strlen(text), i, j, out = 0;
	char *r = malloc(len + 1);
	bool changed = false;

	if (!r)
		return NULL;
	for (i = 0; i < len;) {
		/* scheme://user:pass@host: drop "user:pass@". */
		if (i >= 1 && !strncmp(text + i, "://", 3)) {
			size_t a = i + 3, at = 0;

			for (j = a; j < len && !strchr("/?# \t\r\n\"'", text[j]); j++)
				if (text[j] == '@')
					at = j;
			memcpy(r + out, "://", 3);
			out += 3;
			if (at) {
				i = at + 1;
				changed = true;
			} else {
				i = a;
			}
			continue;
		}
		for (j = 0; j < s->n; j++) {
			size_t sl = strlen(s->v[j]);

			if (sl && !strncmp(text + i, s->v[j], sl))
				break;
		}
		if (j < s->n) {
			/* "[MASKED]" is 8 bytes and secrets are at least 8: it fits. */
			memcpy(r + out, JOBREC_SCRUBBED, sizeof(JOBREC_SCRUBBED) - 1);
			out += sizeof(JOBREC_SCRUBBED) - 1;
			i += strlen(s->v[j]);
			changed = true;
			continue;
		}
		r[out++] = text[i++];
	}
	r[out] = '\0';
	if (!changed) {
		free(r);
		return NULL;
	}
	return r;
}

static void scrub_walk(json_t *v, const struct secrets *s, int depth)
{
	const char *k;
	json_t *c;
	size_t i;

	if (depth > 32)
		return;
	if (json_is_object(v)) {
		json_object_foreach(v, k, c) {
			if (json_is_string(c)) {
				char *r = scrub_string(json_string_value(c), s);
				if (r)
					json_object_set_new(v, k, json_string(r));
				free(r);
			} else {
				scrub_walk(c, s, depth + 1);
			}
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, c) {
			if (json_is_string(c)) {
				char *r = scrub_string(json_string_value(c), s);
				if (r)
					json_array_set_new(v, i, json_string(r));
				free(r);
			} else {
				scrub_walk(c, s, depth + 1);
			}
		}
	}
}

void jobrec_scrub(json_t *doc)
{
	struct secrets s = { .n = 0 };
	json_t *copy, *arr, *it;
	size_t i;

	/* Collect the secrets from a copy: the values are replaced below. */
	copy = json_deep_copy(doc);
	if (!copy)
		return;
	add_secret(&s, json_object_get(copy, "token"));
	json_array_foreach(json_object_get(copy, "dependencies"), i, it)
		add_secret(&s, json_object_get(it, "token"));
	json_array_foreach(json_object_get(copy, "credentials"), i, it)
		add_secret(&s, json_object_get(it, "password"));
	json_array_foreach(json_object_get(copy, "variables"), i, it)
		if (json_is_true(json_object_get(it, "masked")) || json_is_true(json_object_get(it, "file")))
			add_secret(&s, json_object_get(it, "value"));

	if (json_is_string(json_object_get(doc, "token")))
		json_object_set_new(doc, "token", json_string(JOBREC_SCRUBBED));
	json_array_foreach(json_object_get(doc, "dependencies"), i, it)
		if (json_is_string(json_object_get(it, "token")))
			json_object_set_new(it, "token", json_string(JOBREC_SCRUBBED));
	json_array_foreach(json_object_get(doc, "credentials"), i, it)
		if (json_is_string(json_object_get(it, "password")))
			json_object_set_new(it, "password", json_string(JOBREC_SCRUBBED));
	arr = json_object_get(doc, "variables");
	json_array_foreach(arr, i, it)
		if (json_is_true(json_object_get(it, "masked")) || json_is_true(json_object_get(it, "file")))
			json_object_set_new(it, "value", json_string(JOBREC_SCRUBBED));
	scrub_walk(doc, &s, 0);
	json_decref(copy);
}

void jobrec_payload_path(const char *state_dir, long long id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/payloads/%lld.json", state_dir, id);
}

enum kiln_rc jobrec_save_payload(const char *state_dir, long long id, const char *text, size_t len,
				 struct kiln_err *e)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], *out = NULL;
	json_error_t jerr;
	json_t *doc = json_loadb(text, len, 0, &jerr);
	enum kiln_rc rc;

	if (!doc)
		return kiln_fail(e, KILN_E_SYNTAX, "job %lld: payload: %s (line %d)", id, jerr.text, jerr.line);
	jobrec_scrub(doc);
	out = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (!out)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	snprintf(dir, sizeof(dir), "%s/payloads", state_dir);
	if (kiln_mkdir_p(dir) < 0) {
		rc = kiln_fail_errno(e, "creating %s", dir);
		goto out;
	}
	jobrec_payload_path(state_dir, id, path, sizeof(path));
	rc = kiln_write_atomic(path, out, strlen(out), 0600, e);
out:
	free(out);
	return rc;
}

static int cmp_id(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

size_t jobrec_prune_payloads(const char *state_dir, size_t keep)
{
	/* The listing has a ceiling; what lies past it goes on a later call. */
	enum { MAX_LISTED = 1 << 20 };
	char dir[PATH_MAX], path[PATH_MAX + 32];
	long long *ids = NULL;
	size_t n = 0, cap = 0, removed = 0, i;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/payloads", state_dir);
	if (!(d = opendir(dir)))
		return 0;
	while ((de = readdir(d)) && n < MAX_LISTED) {
		char *end;
		long long id = strtoll(de->d_name, &end, 10);

		if (end == de->d_name || strcmp(end, ".json") || id <= 0)
			continue;
		if (VEC_GROW(ids, cap, n, 1, MAX_LISTED))
			break;
		ids[n++] = id;
	}
	closedir(d);
	if (n > keep) {
		qsort(ids, n, sizeof(*ids), cmp_id);
		for (i = 0; i < n - keep; i++) {
			jobrec_payload_path(state_dir, ids[i], path, sizeof(path));
			removed += unlink(path) == 0;
		}
	}
	free(ids);
	return removed;
}

/* --- the journal ---------------------------------------------------------- */

/* A process's start time in clock ticks since boot (field 22 of
 * /proc/PID/stat), -1 when it is gone. */
static long long proc_start(int pid)
{
	char path[64], buf[1024], *p;
	long long start = -1;
	FILE *f;
	size_t n;
	int field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (!(f = fopen(path, "re")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: start after the last ')'. */
	if (!(p = strrchr(buf, ')')))
		return -1;
	for (field = 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field == 22)
		start = strtoll(p, NULL, 10);
	return start;
}

static void journal_path(const char *state_dir, long long id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/running/%lld.json", state_dir, id);
}

enum kiln_rc jobrec_journal_write(const char *state_dir, struct jobrec_running *r, struct kiln_err *e)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], *text;
	enum kiln_rc rc;
	json_t *o;

	r->pid = (int)getpid();
	r->pid_start = proc_start(r->pid);
	o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:s, s:s, s:i}", "id", (json_int_t)r->id, "token",
		      r->token, "url", r->url, "ca_file", r->ca_file, "runner", r->runner, "pid", r->pid, "pid_start",
		      (json_int_t)r->pid_start, "sent", (json_int_t)r->sent, "crc", (json_int_t)r->crc, "state", r->state,
		      "failure_reason", r->failure_reason, "exit_code", r->exit_code);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	snprintf(dir, sizeof(dir), "%s/running", state_dir);
	if (kiln_mkdir_p(dir) < 0) {
		free(text);
		return kiln_fail_errno(e, "creating %s", dir);
	}
	journal_path(state_dir, r->id, path, sizeof(path));
	rc = kiln_write_atomic(path, text, strlen(text), 0600, e);
	free(text);
	return rc;
}

void jobrec_journal_remove(const char *state_dir, long long id)
{
	char path[PATH_MAX + 32];

	journal_path(state_dir, id, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("removing %s: %s", path, strerror(errno));
}

static bool copy_str(char *dst, size_t size, json_t *v)
{
	const char *s = json_string_value(v);

	if (!s || strlen(s) >= size)
		return false;
	memcpy(dst, s, strlen(s) + 1);
	return true;
}

enum kiln_rc jobrec_journal_orphans(const char *state_dir, struct jobrec_running **out, size_t *n,
				    struct kiln_err *e)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct jobrec_running *list = NULL;
	enum kiln_rc rc;
	size_t cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	*n = 0;
	snprintf(dir, sizeof(dir), "%s/running", state_dir);
	if (!(d = opendir(dir)))
		return errno == ENOENT ? KILN_OK : kiln_fail_errno(e, "reading %s", dir);
	while ((de = readdir(d))) {
		struct jobrec_running r = { 0 };
		json_error_t jerr;
		json_t *o;
		size_t len = strlen(de->d_name);
		bool ok;

		if (len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		o = json_load_file(path, 0, &jerr);
		ok = o && json_is_integer(json_object_get(o, "id")) && copy_str(r.token, sizeof(r.token), json_object_get(o, "token")) &&
		     copy_str(r.url, sizeof(r.url), json_object_get(o, "url")) &&
		     copy_str(r.ca_file, sizeof(r.ca_file), json_object_get(o, "ca_file")) &&
		     copy_str(r.runner, sizeof(r.runner), json_object_get(o, "runner"));
		if (ok) {
			r.id = json_integer_value(json_object_get(o, "id"));
			r.pid = (int)json_integer_value(json_object_get(o, "pid"));
			r.pid_start = json_integer_value(json_object_get(o, "pid_start"));
			r.sent = (uint64_t)json_integer_value(json_object_get(o, "sent"));
			r.crc = (uint32_t)json_integer_value(json_object_get(o, "crc"));
			/* An outcome only when it is one kiln could have written. */
			if (copy_str(r.state, sizeof(r.state), json_object_get(o, "state")) &&
			    strcmp(r.state, "success") && strcmp(r.state, "failed"))
				r.state[0] = '\0';
			if (!r.state[0] || !copy_str(r.failure_reason, sizeof(r.failure_reason),
						     json_object_get(o, "failure_reason")))
				r.failure_reason[0] = '\0';
			r.exit_code = (int)json_integer_value(json_object_get(o, "exit_code"));
		}
		json_decref(o);
		if (!ok) {
			log_warn("%s: not a kiln journal entry: %s", path, o ? "fields missing" : jerr.text);
			continue;
		}
		/* Still running in a live kiln (the same process, not a reused pid)? */
		if (r.pid > 0 && (kill(r.pid, 0) == 0 || errno == EPERM) && proc_start(r.pid) == r.pid_start)
			continue;
		if ((rc = VEC_GROW(list, cap, *n, 1, JOBREC_MAX_RUNNING))) {
			closedir(d);
			free(list);
			*n = 0;
			return rc == KILN_E_LIMIT ? kiln_fail(e, rc, "%s: more than %d journal entries", dir, JOBREC_MAX_RUNNING)
						  : kiln_fail(e, rc, "out of memory");
		}
		list[(*n)++] = r;
	}
	closedir(d);
	*out = list;
	return KILN_OK;
}

/* state_dir/paused/<sha256 of token>.json: the token itself never lands on disk again. */
static void pause_path(const char *state_dir, const char *token, char *buf, size_t size)
{
	char hex[65];

	sha256_buf_hex(token, strlen(token), hex);
	snprintf(buf, size, "%s/paused/%s.json", state_dir, hex);
}

void jobrec_pause_write(const char *state_dir, const char *token, const char *name, const char *url, long until,
			const char *reason)
{
	char path[PATH_MAX], dir[PATH_MAX];
	struct kiln_err e = { 0 };
	json_t *doc = json_pack("{s:s,s:s,s:I,s:s}", "name", name ? name : "", "url", url ? url : "", "until",
				(json_int_t)until, "reason", reason ? reason : "");
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

	snprintf(dir, sizeof(dir), "%s/paused", state_dir);
	pause_path(state_dir, token, path, sizeof(path));
	if (!text || kiln_mkdir_p(dir) < 0 || kiln_write_atomic(path, text, strlen(text), 0644, &e))
		log_warn("runner %s: cannot note its pause in %s: %s", name ? name : "?", path,
			 e.msg[0] ? e.msg : strerror(errno));
	free(text);
	json_decref(doc);
}

void jobrec_pause_clear(const char *state_dir, const char *token)
{
	char path[PATH_MAX];

	pause_path(state_dir, token, path, sizeof(path));
	unlink(path);
}

bool jobrec_pause_read(const char *state_dir, const char *token, long *until, char *reason, size_t size)
{
	char path[PATH_MAX], *text = NULL;
	size_t len;
	json_t *doc;
	bool ok;

	pause_path(state_dir, token, path, sizeof(path));
	if (kiln_read_file(path, 64 * 1024, &text, &len) < 0)
		return false;
	doc = json_loadb(text, len, 0, NULL);
	free(text);
	ok = json_is_object(doc);
	if (ok) {
		*until = (long)json_integer_value(json_object_get(doc, "until"));
		snprintf(reason, size, "%s", json_string_value(json_object_get(doc, "reason")) ?: "");
	}
	json_decref(doc);
	return ok;
}
