#include "gitlab/artifacts.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workspace/artifacts.h"
#include "workspace/guestdisk/diskread.h"
#include "gitlab/gzmembers.h"
#include "job/jobspec.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/sha256.h"
#include "lib/varexpand.h"
#include "workspace/zip.h"

#define YELLOW "\033[0;33m"
#define GREEN "\033[32;1m"
#define RED "\033[31;1m"
#define RESET "\033[0;m"

static json_t *entries(const struct gla *g, const char *key)
{
	json_t *a = json_object_get(g->p->doc, key);

	return json_is_array(a) ? a : NULL;
}

static const char *str_of(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && *s ? s : dflt;
}

/* $NAME and ${NAME} from the job's variables ($CI_PROJECT_DIR too). */
static const char *gla_var(void *arg, const char *name)
{
	const struct gla *g = arg;

	return !strcmp(name, "CI_PROJECT_DIR") ? g->project_dir : payload_var(g->p, name);
}

static void expand(const struct gla *g, const char *s, char *out, size_t size)
{
	var_expand(s, gla_var, (void *)g, out, size);
}

/* Whether a `when` lets an archive be made after a job that ended ok or not. */
static bool when_matches(const char *when, bool ok)
{
	return !strcmp(when, "always") || (!strcmp(when, "on_failure") ? !ok : ok);
}

/* Whether the job's ref is protected: git_info.protected, else
 * $CI_COMMIT_REF_PROTECTED. */
static bool ref_protected(const struct gla *g)
{
	json_t *v = json_object_get(json_object_get(g->p->doc, "git_info"), "protected");
	const char *var = payload_var(g->p, "CI_COMMIT_REF_PROTECTED");

	return json_is_boolean(v) ? json_is_true(v) : var && !strcmp(var, "true");
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

void gla_cache_key(const struct gla *g, const char *key, char *out, size_t size)
{
	char k[256];
	bool prot = ref_protected(g);

	expand(g, key, k, sizeof(k));
	if ((prot && ends_with(k, "-protected")) || ends_with(k, "-non_protected"))
		snprintf(out, size, "%s", k);
	else
		snprintf(out, size, "%s%s", k, prot ? "-protected" : "-non_protected");
}

bool gla_cache_folder(const char *key, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	char name[256 * 3 + 1];
	size_t i, n = 0;

	if (!*key || size < 70)
		return false;
	for (i = 0; key[i] && n + 4 < sizeof(name); i++) {
		unsigned char c = (unsigned char)key[i];
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
			     c == '-' || (c == '.' && i > 0);

		if (plain) {
			name[n++] = (char)c;
			continue;
		}
		name[n++] = '%';
		name[n++] = hex[c >> 4];
		name[n++] = hex[c & 15];
	}
	name[n] = '\0';
	/* Too long for one folder name: its hash ('h' is no hex digit, so no
	 * escaped key reads the same). */
	if (key[i] || n >= 200 || n >= size) {
		char digest[65];

		sha256_buf_hex(key, strlen(key), digest);
		snprintf(out, size, "%%h%s", digest);
		return true;
	}
	memcpy(out, name, n + 1);
	return true;
}

enum kiln_rc gla_init(struct gla *g, const struct job_payload *p, struct gl_client *cl, struct trace *t,
		      const char *state_dir, const char *cache_root, struct kiln_err *e)
{
	char dir[PATH_MAX];

	memset(g, 0, sizeof(*g));
	g->p = p;
	g->cl = cl;
	g->t = t;
	g->cache_root = cache_root;
	g->store.local_root = cache_root;
	jobspec_project_path(p, g->project, sizeof(g->project));
	snprintf(g->project_dir, sizeof(g->project_dir), "%s/%s", JOBSPEC_BUILDS_DIR, g->project);
	snprintf(dir, sizeof(dir), "%s/tmp", state_dir);
	if (kiln_mkdir_p(dir) < 0)
		return kiln_fail_errno(e, "creating %s", dir);
	/* The pid in the name lets a later kiln tell an abandoned folder (gla_sweep). */
	if ((size_t)snprintf(g->tmp, sizeof(g->tmp), "%s/gljob-%lld.%d.XXXXXX", dir, p->id, (int)getpid()) >=
		    sizeof(g->tmp) ||
	    !mkdtemp(g->tmp)) {
		g->tmp[0] = '\0';
		return kiln_fail_errno(e, "creating a job folder in %s", dir);
	}
	snprintf(g->cache_in, sizeof(g->cache_in), "%s/cache-in", g->tmp);
	snprintf(g->deps_in, sizeof(g->deps_in), "%s/deps-in", g->tmp);
	return KILN_OK;
}

void gla_use_cache(struct gla *g, const struct kiln_cache_config *cfg, const char *runner_token)
{
	g->store.cfg = cfg;
	g->store.runner_token = runner_token;
}

static void restore_caches(struct gla *g)
{
	json_t *arr = entries(g, "cache"), *c;
	bool opened = false, any = false;
	size_t i;

	json_array_foreach(arr, i, c) {
		const char *policy = str_of(c, "policy", "pull-push"), *tried[34];
		json_t *fb = json_object_get(c, "fallback_keys"), *v;
		char key[256], folder[256], path[PATH_MAX * 2], warn[1024];
		size_t n = 0, j;

		if (i >= GLA_MAX_ENTRIES || !strcmp(policy, "push"))
			continue;
		if (!opened) {
			trace_section(g->t, "restore_cache", true, "Restoring cache");
			opened = true;
		}
		tried[n++] = str_of(c, "key", "default");
		json_array_foreach(fb, j, v)
			if (json_is_string(v) && n < 33)
				tried[n++] = json_string_value(v);
		if (payload_var(g->p, "CACHE_FALLBACK_KEY"))
			tried[n++] = payload_var(g->p, "CACHE_FALLBACK_KEY");
		for (j = 0; j < n; j++) {
			struct zip_stats st;
			struct kiln_err e = { 0 };

			gla_cache_key(g, tried[j], key, sizeof(key));
			if (!gla_cache_folder(key, folder, sizeof(folder))) {
				trace_printf(g->t, YELLOW "WARNING: cache key '%s' cannot be used" RESET "\n", key);
				continue;
			}
			trace_printf(g->t, "Checking cache for %s...\n", key);
			if (!cache_store_fetch(&g->store, g->project, g->p->project_id, key, folder, path, sizeof(path),
					       warn, sizeof(warn))) {
				if (warn[0])
					trace_printf(g->t, YELLOW "WARNING: %s" RESET "\n", warn);
				continue;
			}
			if (warn[0])
				trace_printf(g->t, YELLOW "WARNING: %s" RESET "\n", warn);
			if (zip_extract(path, g->cache_in, GLA_MAX_BYTES, &st, &e)) {
				trace_printf(g->t, YELLOW "WARNING: cache %s: %s" RESET "\n", key, e.msg);
				continue;
			}
			trace_printf(g->t, "Successfully extracted cache (%s: %u files)\n", key, st.files);
			any = true;
			break;
		}
		if (j == n)
			trace_printf(g->t, YELLOW "WARNING: no cache found for %s" RESET "\n", tried[0]);
	}
	if (opened)
		trace_section(g->t, "restore_cache", false, NULL);
	if (any)
		g->extra[g->n_extra++] = g->cache_in;
}

static enum kiln_rc download_dependencies(struct gla *g, struct kiln_err *e)
{
	json_t *arr = entries(g, "dependencies"), *d;
	enum kiln_rc rc = KILN_OK;
	bool opened = false, any = false;
	size_t i;

	json_array_foreach(arr, i, d) {
		json_t *file = json_object_get(d, "artifacts_file");
		const char *token = json_string_value(json_object_get(d, "token")), *name = str_of(d, "name", "?");
		long long id = json_integer_value(json_object_get(d, "id"));
		char zip[PATH_MAX + 64];
		struct zip_stats st;

		if (!json_is_object(file) || !json_string_value(json_object_get(file, "filename")))
			continue;
		if (!opened) {
			trace_section(g->t, "download_artifacts", true, "Downloading artifacts");
			opened = true;
		}
		if (id <= 0 || !token) {
			rc = kiln_fail(e, KILN_E_INVALID, "dependencies[%zu]: no id or token", i);
			break;
		}
		trace_printf(g->t, "Downloading artifacts for %s (%lld)...\n", name, id);
		snprintf(zip, sizeof(zip), "%s/dep-%lld.zip", g->tmp, id);
		if ((rc = gl_download_artifacts(g->cl, id, token, zip, GLA_MAX_BYTES, e)) ||
		    (rc = zip_extract(zip, g->deps_in, GLA_MAX_BYTES, &st, e)))
			break;
		unlink(zip);
		trace_printf(g->t, "Downloaded artifacts for %s (%lld): %u files\n", name, id, st.files);
		any = true;
	}
	if (rc)
		trace_printf(g->t, RED "ERROR: Downloading artifacts failed: %s" RESET "\n", e->msg);
	if (opened)
		trace_section(g->t, "download_artifacts", false, NULL);
	if (any)
		g->extra[g->n_extra++] = g->deps_in;
	return rc;
}

enum kiln_rc gla_before(struct gla *g, struct kiln_err *e)
{
	restore_caches(g);
	return download_dependencies(g, e);
}

/* Copy what paths/exclude of o select out of the image into en->dir. */
static void collect_one(struct gla *g, json_t *o, const char *image, const char *project, struct gla_entry *en)
{
	char *paths[ARTIFACTS_MAX_PATTERNS], *excl[ARTIFACTS_MAX_PATTERNS];
	struct artifacts_spec spec = { .project_dir = g->project_dir };
	json_t *arr, *v;
	struct fstree_stats st;
	struct kiln_err e = { 0 };
	size_t i, np = 0, nx = 0;

	arr = json_object_get(o, "paths");
	json_array_foreach(arr, i, v) {
		char buf[PATH_MAX];

		if (!json_is_string(v) || np >= ARTIFACTS_MAX_PATTERNS)
			continue;
		expand(g, json_string_value(v), buf, sizeof(buf));
		if ((paths[np] = strdup(buf)))
			np++;
	}
	arr = json_object_get(o, "exclude");
	json_array_foreach(arr, i, v) {
		char buf[PATH_MAX];

		if (!json_is_string(v) || nx >= ARTIFACTS_MAX_PATTERNS)
			continue;
		expand(g, json_string_value(v), buf, sizeof(buf));
		if ((excl[nx] = strdup(buf)))
			nx++;
	}
	spec.paths = (const char *const *)paths;
	spec.n_paths = np;
	spec.exclude = (const char *const *)excl;
	spec.n_exclude = nx;
	spec.untracked = json_is_true(json_object_get(o, "untracked"));
	en->wanted = true;
	if ((np || spec.untracked) && artifacts_collect(image, project, &spec, g->tmp, en->dir, &st, &e) == KILN_OK)
		en->files = st.files;
	else if (np || spec.untracked)
		snprintf(en->error, sizeof(en->error), "%s", e.msg);
	for (i = 0; i < np; i++)
		free(paths[i]);
	for (i = 0; i < nx; i++)
		free(excl[i]);
}

void gla_collect(struct gla *g, const char *image, const char *project, bool ok)
{
	json_t *arr, *o;
	size_t i;

	g->collected = true;
	g->ok = ok;
	arr = entries(g, "artifacts");
	json_array_foreach(arr, i, o) {
		if (i >= GLA_MAX_ENTRIES || !when_matches(str_of(o, "when", "on_success"), ok))
			continue;
		snprintf(g->art[i].dir, sizeof(g->art[i].dir), "%s/art-%zu", g->tmp, i);
		collect_one(g, o, image, project, &g->art[i]);
	}
	arr = entries(g, "cache");
	json_array_foreach(arr, i, o) {
		const char *policy = str_of(o, "policy", "pull-push");

		if (i >= GLA_MAX_ENTRIES || !strcmp(policy, "pull") || !when_matches(str_of(o, "when", "on_success"), ok))
			continue;
		snprintf(g->cache[i].dir, sizeof(g->cache[i].dir), "%s/cache-%zu", g->tmp, i);
		collect_one(g, o, image, project, &g->cache[i]);
	}
}

static void save_caches(struct gla *g)
{
	json_t *arr = entries(g, "cache"), *o;
	bool opened = false;
	size_t i;

	json_array_foreach(arr, i, o) {
		struct gla_entry *en = &g->cache[i];
		char key[256], folder[256], dir[PATH_MAX * 2], tmp[PATH_MAX * 2 + 32], final[PATH_MAX * 2 + 16];
		struct zip_stats st;
		struct kiln_err e = { 0 };

		if (i >= GLA_MAX_ENTRIES || !en->wanted)
			continue;
		if (!opened) {
			trace_section(g->t, g->ok ? "archive_cache" : "archive_cache_on_failure", true,
				      g->ok ? "Saving cache for successful job" : "Saving cache for failed job");
			opened = true;
		}
		gla_cache_key(g, str_of(o, "key", "default"), key, sizeof(key));
		if (en->error[0] || !gla_cache_folder(key, folder, sizeof(folder))) {
			trace_printf(g->t, YELLOW "WARNING: cache %s not saved: %s" RESET "\n", key,
				     en->error[0] ? en->error : "the key cannot be used");
			continue;
		}
		if (!en->files) {
			trace_printf(g->t, YELLOW "WARNING: cache %s: no matching files; not saved" RESET "\n", key);
			continue;
		}
		trace_printf(g->t, "Creating cache %s...\n", key);
		snprintf(dir, sizeof(dir), "%s/%s/%s", g->cache_root, g->project, folder);
		snprintf(tmp, sizeof(tmp), "%s/cache.zip.tmp.%d", dir, (int)getpid());
		snprintf(final, sizeof(final), "%s/cache.zip", dir);
		if (kiln_mkdir_p(dir) < 0) {
			trace_printf(g->t, YELLOW "WARNING: cache %s: creating %s: %s" RESET "\n", key, dir, strerror(errno));
			continue;
		}
		if (zip_write_dir(en->dir, tmp, GLA_MAX_BYTES, &st, &e) || rename(tmp, final) < 0) {
			trace_printf(g->t, YELLOW "WARNING: cache %s: %s" RESET "\n", key, e.msg[0] ? e.msg : strerror(errno));
			unlink(tmp);
			continue;
		}
		trace_printf(g->t, "Created cache %s: %u files\n", key, st.files);
		if (cache_store_remote(&g->store)) {
			char warn[1024];

			if (cache_store_push(&g->store, g->p->project_id, key, final, warn, sizeof(warn)))
				trace_printf(g->t, "Uploaded cache %s to S3\n", key);
			else
				trace_printf(g->t, YELLOW "WARNING: %s" RESET "\n", warn);
		}
	}
	if (opened)
		trace_section(g->t, g->ok ? "archive_cache" : "archive_cache_on_failure", false, NULL);
}

/* The path of the one file below dir (collected folders hold only what was
 * copied, so a single file is the end of a single chain of folders). */
static bool only_file(const char *dir, char *buf, size_t size)
{
	char cur[PATH_MAX];
	int depth;

	snprintf(cur, sizeof(cur), "%s", dir);
	for (depth = 0; depth < 64; depth++) {
		struct dirent *de;
		struct stat sb;
		DIR *d = opendir(cur);
		bool found = false;

		if (!d)
			return false;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
				found = (size_t)snprintf(buf, size, "%s/%s", cur, de->d_name) < size;
				break;
			}
		closedir(d);
		if (!found || lstat(buf, &sb) < 0)
			return false;
		if (S_ISREG(sb.st_mode))
			return true;
		if (!S_ISDIR(sb.st_mode))
			return false;
		snprintf(cur, sizeof(cur), "%s", buf);
	}
	return false;
}

/* Pack en's files as format into a file under g->tmp (*path, the upload's
 * *file name from name): zip (archive), gzip (reports: one member per
 * file) or raw (exactly one file, sent as it is). */
static enum kiln_rc pack(struct gla *g, struct gla_entry *en, size_t i, const char *format, const char *name,
			 char *path, size_t path_size, char *file, size_t file_size, struct zip_stats *st,
			 struct kiln_err *e)
{
	if (!strcmp(format, "zip")) {
		snprintf(file, file_size, "%s.zip", name);
		snprintf(path, path_size, "%s/art-%zu.zip", g->tmp, i);
		return zip_write_dir(en->dir, path, GLA_MAX_BYTES, st, e);
	}
	if (!strcmp(format, "gzip")) {
		snprintf(file, file_size, "%s.gz", name);
		snprintf(path, path_size, "%s/art-%zu.gz", g->tmp, i);
		return gzm_write_dir(en->dir, path, GLA_MAX_BYTES, st, e);
	}
	if (!strcmp(format, "raw")) {
		memset(st, 0, sizeof(*st));
		if (en->files != 1)
			return kiln_fail(e, KILN_E_INVALID, "a raw artifact is one file, and %u matched", en->files);
		if (!only_file(en->dir, path, path_size))
			return kiln_fail(e, KILN_E_IO, "the raw artifact's file is not in %s", en->dir);
		snprintf(file, file_size, "%s", name);
		st->files = 1;
		return KILN_OK;
	}
	return kiln_fail(e, KILN_E_INVALID, "artifact format '%s' is not supported (zip, gzip, raw)", format);
}

/* A line in the job log every few seconds while an archive goes up: a
 * large one takes minutes, and the file is read from disk as it is sent. */
static void upload_progress(void *arg, uint64_t done, uint64_t total)
{
	struct gla *g = arg;

	if (total)
		trace_printf(g->t, "Uploading artifacts... %.1f of %.1f MiB (%u%%)\n", done / 1048576.0,
			     total / 1048576.0, (unsigned)(done * 100 / total));
	else
		trace_printf(g->t, "Uploading artifacts... %.1f MiB\n", done / 1048576.0);
}

static enum kiln_rc upload_artifacts(struct gla *g, struct kiln_err *e)
{
	json_t *arr = entries(g, "artifacts"), *o;
	const char *section = g->ok ? "upload_artifacts_on_success" : "upload_artifacts_on_failure";
	enum kiln_rc rc = KILN_OK;
	bool opened = false;
	size_t i;

	json_array_foreach(arr, i, o) {
		struct gla_entry *en = i < GLA_MAX_ENTRIES ? &g->art[i] : NULL;
		const char *type = str_of(o, "artifact_type", "archive");
		const char *format = str_of(o, "artifact_format", strcmp(type, "archive") ? "gzip" : "zip");
		char name[256], file[300], path[PATH_MAX + 64];
		struct zip_stats st;

		if (!en || !en->wanted)
			continue;
		if (!opened) {
			trace_section(g->t, section, true,
				      g->ok ? "Uploading artifacts for successful job" : "Uploading artifacts for failed job");
			opened = true;
		}
		if (en->error[0]) {
			rc = kiln_fail(e, KILN_E_IO, "collecting %s artifacts: %s", type, en->error);
			break;
		}
		if (!en->files) {
			trace_printf(g->t, YELLOW "WARNING: %s: no files to upload (no path matched)" RESET "\n", type);
			continue;
		}
		expand(g, str_of(o, "name", "artifacts"), name, sizeof(name));
		trace_printf(g->t, "Uploading artifacts (%s, %s): %u files...\n", type, format, en->files);
		if ((rc = pack(g, en, i, format, name, path, sizeof(path), file, sizeof(file), &st, e)))
			break;
		g->cl->progress = upload_progress;
		g->cl->progress_arg = g;
		rc = gl_upload_artifacts(g->cl, g->p->id, g->p->token, path, file, type, format,
					 str_of(o, "expire_in", NULL), e);
		g->cl->progress = NULL;
		if (rc)
			break;
		if (strcmp(format, "raw"))
			unlink(path);
		trace_printf(g->t, "Uploading artifacts as \"%s\" to coordinator... 201 Created (%s, %u files)\n", type,
			     file, st.files);
	}
	if (rc)
		trace_printf(g->t, RED "ERROR: Uploading artifacts failed: %s" RESET "\n", e->msg);
	if (opened)
		trace_section(g->t, section, false, NULL);
	return rc;
}

enum kiln_rc gla_after(struct gla *g, struct kiln_err *e)
{
	if (!g->collected)
		return KILN_OK;
	save_caches(g);
	return upload_artifacts(g, e);
}

void gla_sweep(const char *state_dir)
{
	char dir[PATH_MAX], path[PATH_MAX * 2];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tmp", state_dir);
	if (!(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		long long id;
		int pid;

		if (sscanf(de->d_name, "gljob-%lld.%d.", &id, &pid) != 2 || (kill(pid, 0) == 0 || errno == EPERM))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		log_info("removing what an interrupted kiln (pid %d) left of job %lld's artifacts", pid, id);
		kiln_rm_rf(path);
	}
	closedir(d);
}

void gla_free(struct gla *g)
{
	if (g->tmp[0] && kiln_rm_rf(g->tmp) < 0)
		log_warn("removing %s: %s", g->tmp, strerror(errno));
	g->tmp[0] = '\0';
}
