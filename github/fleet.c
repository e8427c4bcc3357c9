#include "github/fleet.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/paths.h"
#include "lib/log.h"
#include "lib/readfile.h"

#define REC_MAX_BYTES 4096

static void add(struct gh_act *out, size_t max, size_t *n, struct gh_act a)
{
	if (*n < max)
		out[(*n)++] = a;
}

void gh_plan(const struct gh_plan_in *in, struct gh_act *out, size_t max, size_t *n_out)
{
	size_t i, j, idle = 0, live = 0;
	long long want, room;

	*n_out = 0;
	for (i = 0; i < in->n_recs; i++) {
		const struct gh_rec *r = &in->recs[i];
		const struct gh_seen *s = &in->seen[i];
		long long age = in->now - r->created;
		bool busy = s->runner_busy || r->job_id;

		if (s->vm == GH_VM_EXITED || s->vm == GH_VM_NONE) {
			/* NONE: a record from before a restart whose VM is gone. */
			add(out, max, n_out,
			    (struct gh_act){ GH_ACT_DELETE_RUNNER, i, 0, 0, s->vm == GH_VM_EXITED ? "runner exited" : "no VM" });
			continue;
		}
		if (in->job_timeout > 0 && age > in->job_timeout) {
			add(out, max, n_out, (struct gh_act){ GH_ACT_DESTROY_VM, i, 0, 0, "over the job time limit" });
			add(out, max, n_out, (struct gh_act){ GH_ACT_DELETE_RUNNER, i, 0, 0, "over the job time limit" });
			continue;
		}
		if (!busy && age > in->idle_timeout) {
			add(out, max, n_out, (struct gh_act){ GH_ACT_DELETE_RUNNER, i, 0, 0, "idle past idle_timeout" });
			add(out, max, n_out, (struct gh_act){ GH_ACT_DESTROY_VM, i, 0, 0, "idle past idle_timeout" });
			continue;
		}
		live++;
		if (!busy)
			idle++;
	}
	for (j = 0; in->listed && j < in->n_listed; j++) {
		const struct gh_runner *g = &in->listed[j];

		if (strcmp(g->status, "offline") || g->busy)
			continue; /* a busy one is reconnecting, or another kiln's; its job decides */
		for (i = 0; i < in->n_recs && in->recs[i].id != g->id; i++)
			;
		if (i == in->n_recs)
			add(out, max, n_out, (struct gh_act){ GH_ACT_DELETE_ORPHAN, 0, g->id, 0, "offline, no VM" });
	}
	want = (long long)in->queued + in->warm_pool - (long long)idle;
	if (in->max_runners > 0) {
		room = in->max_runners - (long long)live;
		if (want > room)
			want = room;
	}
	if (want > in->free_slots)
		want = in->free_slots;
	if (want > 0)
		add(out, max, n_out, (struct gh_act){ GH_ACT_SPAWN, 0, 0, (int)want, "queued jobs and warm pool" });
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n < GH_RUNNER_NAME_MAX && s[0] != '.' &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

enum kiln_rc gh_rec_dir(const char *state_dir, const char *entry, char *buf, size_t size, struct kiln_err *e)
{
	char safe[128];
	size_t i;

	snprintf(safe, sizeof(safe), "%s", entry);
	for (i = 0; safe[i]; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", safe[i]))
			safe[i] = '_';
	if (safe[0] == '.')
		safe[0] = '_';
	if ((size_t)snprintf(buf, size, "%s/github/%s", state_dir, safe) >= size)
		return kiln_fail(e, KILN_E_LIMIT, "github %s: state folder name too long", entry);
	return KILN_OK;
}

/* The records' folder (STATE_DIR/github/ENTRY) and any missing parent:
 * the state folder itself may not exist yet on a first start. */
static enum kiln_rc make_dir(const char *dir, struct kiln_err *e)
{
	if (kiln_mkdir_p(dir) < 0)
		return kiln_fail_errno(e, "github: making %s", dir);
	if (chmod(dir, 0700) < 0)
		return kiln_fail_errno(e, "github: %s", dir);
	return KILN_OK;
}

enum kiln_rc gh_rec_save(const char *dir, const struct gh_rec *r, struct kiln_err *e)
{
	char path[PATH_MAX];
	json_t *o = NULL;
	char *text = NULL;
	enum kiln_rc rc;

	if (!name_ok(r->name))
		return kiln_fail(e, KILN_E_INVALID, "github: runner name '%.64s' cannot name a record", r->name);
	if ((rc = make_dir(dir, e)))
		return rc;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.json", dir, r->name) >= sizeof(path))
		return kiln_fail(e, KILN_E_LIMIT, "github: record path too long in %s", dir);
	o = json_pack("{sIsssssIsIss}", "id", (json_int_t)r->id, "name", r->name, "vm", r->vm, "created",
		      (json_int_t)r->created, "job_id", (json_int_t)r->job_id, "repo", r->repo);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (!text) {
		rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
		goto out;
	}
	rc = kiln_write_atomic(path, text, strlen(text), 0600, e);
out:
	free(text);
	json_decref(o);
	return rc;
}

enum kiln_rc gh_rec_remove(const char *dir, const char *name, struct kiln_err *e)
{
	char path[PATH_MAX];

	if (!name_ok(name))
		return kiln_fail(e, KILN_E_INVALID, "github: runner name '%.64s' cannot name a record", name);
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		return kiln_fail_errno(e, "github: removing %s", path);
	return KILN_OK;
}

/* One record file into r; false when it is not one. */
static bool load_one(const char *path, struct gh_rec *r)
{
	char *text = NULL;
	size_t len;
	json_t *o;
	json_int_t id = 0, created = 0, job = 0;
	const char *name = NULL, *vm = NULL, *repo = NULL;
	bool ok = false;

	if (kiln_read_file(path, REC_MAX_BYTES, &text, &len) < 0)
		return false;
	o = json_loadb(text, len, 0, NULL);
	if (o && !json_unpack(o, "{sI,ss,ss,sI,sI,s?s}", "id", &id, "name", &name, "vm", &vm, "created", &created,
			      "job_id", &job, "repo", &repo) &&
	    name_ok(name) && strlen(vm) < GH_VM_ID_MAX && (!repo || strlen(repo) < sizeof(r->repo))) {
		memset(r, 0, sizeof(*r));
		r->id = id;
		snprintf(r->name, sizeof(r->name), "%s", name);
		snprintf(r->vm, sizeof(r->vm), "%s", vm);
		r->created = created;
		r->job_id = job;
		snprintf(r->repo, sizeof(r->repo), "%s", repo ? repo : "");
		ok = true;
	}
	json_decref(o);
	free(text);
	return ok;
}

enum kiln_rc gh_rec_load_all(const char *dir, struct gh_rec **out, size_t *n, struct kiln_err *e)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct gh_rec *v = NULL;
	size_t cap = 0;
	enum kiln_rc rc = KILN_OK;

	*out = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? KILN_OK : kiln_fail_errno(e, "github: reading %s", dir);
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		size_t len = strlen(de->d_name);

		if (len < 6 || strcmp(de->d_name + len - 5, ".json") || de->d_name[0] == '.')
			continue;
		if (*n >= GH_FLEET_MAX) {
			rc = kiln_fail(e, KILN_E_LIMIT, "github: more than %d runner records in %s", GH_FLEET_MAX, dir);
			break;
		}
		if (*n == cap) {
			struct gh_rec *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				rc = kiln_fail(e, KILN_E_NOMEM, "github: out of memory");
				break;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (load_one(path, &v[*n]))
			(*n)++;
		else
			log_warn("github: %s is not a runner record; ignoring it", path);
	}
	closedir(d);
	if (rc) {
		free(v);
		*n = 0;
		return rc;
	}
	*out = v;
	return KILN_OK;
}
