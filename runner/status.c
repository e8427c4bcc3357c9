#include "runner/status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gitlab/jobrecord.h"
#include "job/images.h"
#include "job/manifest.h"
#include "lib/paths.h"
#include "lib/readfile.h"
#include "lib/treewalk.h"

#define STATUS_MAX_ROWS 1000 /* per section: a ceiling on what a folder can make us list */
#define STATUS_MAX_ERRORS 10

static void runners(const struct kiln_config *cfg, json_t *doc)
{
	json_t *a = json_array();
	long now = (long)time(NULL);
	size_t i;

	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *r = &cfg->runners[i];
		char reason[256] = "";
		long until = 0;
		bool paused = jobrec_pause_read(cfg->state_dir, r->token, &until, reason, sizeof(reason)) &&
			      until > now;

		json_array_append_new(a, json_pack("{s:s,s:s,s:b,s:I,s:s}", "name", r->name ? r->name : "",
						   "url", r->url ? r->url : "", "paused", paused, "paused_until",
						   (json_int_t)(paused ? until : 0), "reason", paused ? reason : ""));
	}
	json_object_set_new(doc, "runners", a);
}

/* The journal entry of job id (running/<id>.json), NULL when none. */
static json_t *journal(const char *state_dir, long long id)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/running/%lld.json", state_dir, id);
	return json_load_file(path, 0, NULL);
}

/* Job folders (<state>/jobs/<id>.<pid>.<n>) held by a live process. */
static void jobs(const struct kiln_config *cfg, json_t *doc)
{
	char dir[PATH_MAX], path[PATH_MAX * 2];
	json_t *a = json_array();
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/jobs", cfg->state_dir);
	if ((d = opendir(dir))) {
		while ((de = readdir(d)) && json_array_size(a) < STATUS_MAX_ROWS) {
			long long id;
			int pid;
			struct stat st;
			json_t *j, *rec;

			if (sscanf(de->d_name, "%lld.%d.", &id, &pid) != 2)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (!kiln_path_held(path) || lstat(path, &st) < 0)
				continue;
			j = json_pack("{s:I,s:i,s:s,s:I,s:s}", "id", (json_int_t)id, "pid", pid, "folder", path,
				      "started", (json_int_t)st.st_mtime, "runner", "");
			if ((rec = journal(cfg->state_dir, id))) {
				if (json_is_string(json_object_get(rec, "runner")))
					json_object_set(j, "runner", json_object_get(rec, "runner"));
				json_decref(rec);
			}
			json_array_append_new(a, j);
		}
		closedir(d);
	}
	json_object_set_new(doc, "jobs", a);
}

/* kiln-vmm and QEMU processes: the VMs of this host, whoever started them. */
static void vms(const char *proc, json_t *doc)
{
	char path[PATH_MAX], *comm = NULL;
	json_t *a = json_array();
	struct dirent *de;
	size_t len;
	DIR *d;

	if ((d = opendir(proc))) {
		while ((de = readdir(d)) && json_array_size(a) < STATUS_MAX_ROWS) {
			char *end;
			long pid = strtol(de->d_name, &end, 10);

			if (*end || pid <= 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s/comm", proc, de->d_name);
			if (kiln_read_file(path, 64, &comm, &len) < 0)
				continue;
			while (len && comm[len - 1] == '\n')
				comm[--len] = '\0';
			if (!strcmp(comm, "kiln-vmm") || !strncmp(comm, "qemu-system", 11))
				json_array_append_new(a, json_pack("{s:I,s:s}", "pid", (json_int_t)pid, "program", comm));
			free(comm);
			comm = NULL;
		}
		closedir(d);
	}
	json_object_set_new(doc, "vms", a);
}

static void images(const struct kiln_config *cfg, json_t *doc)
{
	struct images_ctx ctx;
	char **names = NULL;
	size_t n = 0, i;
	json_t *a = json_array();

	images_ctx_init(&ctx, cfg);
	if (images_recipes(&ctx, &names, &n, NULL) == KILN_OK) {
		for (i = 0; i < n; i++) {
			struct manifest m;

			if (images_manifest(&ctx, names[i], &m, NULL) == KILN_OK) {
				json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:I}", "name", names[i], "kind",
								   m.kind, "built", m.built, "bytes",
								   (json_int_t)manifest_size(&m)));
				manifest_free(&m);
			} else {
				json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:I}", "name", names[i], "kind", "",
								   "built", "", "bytes", (json_int_t)0));
			}
			free(names[i]);
		}
		free(names);
	}
	json_object_set_new(doc, "images", a);
}

static enum kiln_walk_step add_size(void *arg, const char *rel, const struct stat *st)
{
	(void)rel;
	if (S_ISREG(st->st_mode))
		*(long long *)arg += (long long)st->st_blocks * 512;
	return KILN_WALK_NEXT;
}

static void cache(const struct kiln_config *cfg, json_t *doc)
{
	const struct kiln_cache_config *c = &cfg->default_cache;
	long long bytes = 0;
	int fd = open(cfg->cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool s3 = c->type && !strcmp(c->type, "s3");
	size_t i;

	if (fd >= 0)
		kiln_treewalk(fd, 32, add_size, &bytes);
	/* A runner of its own S3 store counts too. */
	for (i = 0; i < cfg->n_runners && !s3; i++)
		if (cfg->runners[i].cache.type && !strcmp(cfg->runners[i].cache.type, "s3")) {
			c = &cfg->runners[i].cache;
			s3 = true;
		}
	json_object_set_new(doc, "cache",
			    json_pack("{s:s,s:I,s:b,s:s,s:s,s:b}", "dir", cfg->cache_dir, "bytes", (json_int_t)bytes,
				      "s3", s3, "server", s3 && c->s3.server_address ? c->s3.server_address : "",
				      "bucket", s3 && c->s3.bucket_name ? c->s3.bucket_name : "", "shared",
				      s3 && c->shared));
}

/* Journal entries that say something went wrong: a job that ended failed
 * (not yet acknowledged by GitLab) or whose kiln is gone (reported at the
 * next start). Newest job ids first. */
static int by_id_desc(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "job"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "job"));

	return x < y ? 1 : x > y ? -1 : 0;
}

static void errors(const struct kiln_config *cfg, json_t *doc)
{
	char dir[PATH_MAX];
	json_t *list[STATUS_MAX_ROWS], *a = json_array(), *r;
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/running", cfg->state_dir);
	if ((d = opendir(dir))) {
		while ((de = readdir(d)) && n < STATUS_MAX_ROWS) {
			long long id;
			char tail[8];
			const char *state;
			int pid;

			if (sscanf(de->d_name, "%lld.%7s", &id, tail) != 2 || strcmp(tail, "json") ||
			    !(r = journal(cfg->state_dir, id)))
				continue;
			state = json_string_value(json_object_get(r, "state")) ?: "";
			pid = (int)json_integer_value(json_object_get(r, "pid"));
			if (!strcmp(state, "failed"))
				list[n++] = json_pack("{s:I,s:O,s:O}", "job", (json_int_t)id, "runner",
						      json_object_get(r, "runner"), "error",
						      json_object_get(r, "failure_reason"));
			else if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH)
				list[n++] = json_pack("{s:I,s:O,s:s}", "job", (json_int_t)id, "runner",
						      json_object_get(r, "runner"), "error",
						      "its kiln died while running it (reported at the next start)");
			json_decref(r);
		}
		closedir(d);
	}
	qsort(list, n, sizeof(list[0]), by_id_desc);
	for (i = 0; i < n; i++) {
		if (list[i] && i < STATUS_MAX_ERRORS)
			json_array_append(a, list[i]);
		json_decref(list[i]);
	}
	json_object_set_new(doc, "errors", a);
}

json_t *status_collect(const struct kiln_config *cfg, const char *proc)
{
	json_t *doc = json_object();

	if (!doc)
		return NULL;
	runners(cfg, doc);
	jobs(cfg, doc);
	vms(proc ? proc : "/proc", doc);
	images(cfg, doc);
	cache(cfg, doc);
	errors(cfg, doc);
	return doc;
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && *s ? s : "-";
}

static long long num(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static void human(long long bytes, char *buf, size_t size)
{
	if (bytes >= 1LL << 30)
		snprintf(buf, size, "%.1f GiB", (double)bytes / (1LL << 30));
	else
		snprintf(buf, size, "%.1f MiB", (double)bytes / (1LL << 20));
}

void status_print(json_t *doc, bool json, FILE *out)
{
	json_t *a, *o, *c;
	size_t i;
	char size[32], when[32];

	if (json) {
		json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', out);
		return;
	}
	a = json_object_get(doc, "runners");
	fprintf(out, "RUNNERS (%zu)\n%-20s %-8s %s\n", json_array_size(a), "NAME", "STATE", "URL");
	json_array_foreach(a, i, o) {
		time_t t = (time_t)num(o, "paused_until");

		if (json_is_true(json_object_get(o, "paused")))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime(&t));
		fprintf(out, "%-20s %-8s %s", str(o, "name"), json_is_true(json_object_get(o, "paused")) ? "paused" : "active",
			str(o, "url"));
		if (json_is_true(json_object_get(o, "paused")))
			fprintf(out, " (until %s: %s)", when, str(o, "reason"));
		fputc('\n', out);
	}
	a = json_object_get(doc, "jobs");
	fprintf(out, "\nJOBS RUNNING (%zu)\n%-10s %-8s %-20s %s\n", json_array_size(a), "JOB", "PID", "RUNNER", "FOLDER");
	json_array_foreach(a, i, o)
		fprintf(out, "%-10lld %-8lld %-20s %s\n", num(o, "id"), num(o, "pid"), str(o, "runner"), str(o, "folder"));
	a = json_object_get(doc, "vms");
	fprintf(out, "\nVMS (%zu)\n%-8s %s\n", json_array_size(a), "PID", "PROGRAM");
	json_array_foreach(a, i, o)
		fprintf(out, "%-8lld %s\n", num(o, "pid"), str(o, "program"));
	a = json_object_get(doc, "images");
	fprintf(out, "\nIMAGES (%zu)\n%-16s %-8s %-22s %s\n", json_array_size(a), "NAME", "KIND", "BUILT", "SIZE");
	json_array_foreach(a, i, o) {
		human(num(o, "bytes"), size, sizeof(size));
		fprintf(out, "%-16s %-8s %-22s %s\n", str(o, "name"), str(o, "kind"),
			*str(o, "built") == '-' ? "not built" : str(o, "built"), num(o, "bytes") ? size : "-");
	}
	c = json_object_get(doc, "cache");
	human(num(c, "bytes"), size, sizeof(size));
	fprintf(out, "\nCACHE\nlocal  %s in %s\n", size, str(c, "dir"));
	if (json_is_true(json_object_get(c, "s3")))
		fprintf(out, "s3     %s/%s%s\n", str(c, "server"), str(c, "bucket"),
			json_is_true(json_object_get(c, "shared")) ? " (shared)" : "");
	else
		fprintf(out, "s3     not configured\n");
	a = json_object_get(doc, "errors");
	fprintf(out, "\nLAST ERRORS (%zu)\n", json_array_size(a));
	json_array_foreach(a, i, o)
		fprintf(out, "job %lld (%s): %s\n", num(o, "job"), str(o, "runner"), str(o, "error"));
}
