#include "job/images.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "runner/config.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/readfile.h"
#include "lib/sha256.h"
#include "lib/spawn.h"
#include "lib/vec.h"

#define INPUTS_MAX_BYTES (64 * 1024)

void images_ctx_init(struct images_ctx *ctx, const struct kiln_config *cfg)
{
	static char recipes[PATH_MAX], agent[PATH_MAX];

	snprintf(recipes, sizeof(recipes), "%s/images/recipes", kiln_data_dir());
	snprintf(agent, sizeof(agent), "%s/kiln-agent", kiln_libexec_dir());
	ctx->images_dir = cfg->images_dir;
	ctx->cache_dir = cfg->cache_dir;
	ctx->recipes_dir = recipes;
	ctx->agent_path = agent;
}

bool images_valid_name(const char *name)
{
	size_t i, len = strlen(name);

	if (len == 0 || len > 64 || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (i = 1; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

enum kiln_rc images_recipes(const struct images_ctx *ctx, char ***names, size_t *n, struct kiln_err *e)
{
	DIR *d = opendir(ctx->recipes_dir);
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;
	enum kiln_rc rc;

	*names = NULL;
	*n = 0;
	if (!d)
		return kiln_fail_errno(e, "recipes folder %s", ctx->recipes_dir);
	while ((de = readdir(d))) {
		if (!images_valid_name(de->d_name))
			continue;
		if ((rc = VEC_GROW(v, cap, *n, 1, IMAGES_MAX_RECIPES)))
			goto fail;
		if (!(v[*n] = strdup(de->d_name))) {
			rc = KILN_E_NOMEM;
			goto fail;
		}
		(*n)++;
	}
	closedir(d);
	if (v)
		qsort(v, *n, sizeof(*v), cmp_str);
	*names = v;
	return KILN_OK;
fail:
	closedir(d);
	while (*n)
		free(v[--*n]);
	free(v);
	return rc == KILN_E_LIMIT ? kiln_fail(e, rc, "recipes folder %s: more than %d recipes", ctx->recipes_dir,
					      IMAGES_MAX_RECIPES)
				  : kiln_fail(e, KILN_E_NOMEM, "out of memory");
}

static enum kiln_rc recipe_path(const struct images_ctx *ctx, const char *name, char *buf, size_t size,
				struct kiln_err *e)
{
	if (!images_valid_name(name))
		return kiln_fail(e, KILN_E_INVALID, "invalid image name '%s'", name);
	if (!kiln_path_join(buf, size, ctx->recipes_dir, name))
		return kiln_fail(e, KILN_E_LIMIT, "recipe path too long");
	if (access(buf, X_OK) < 0)
		return kiln_fail(e, KILN_E_NOTFOUND, "no image recipe '%s' in %s", name, ctx->recipes_dir);
	return KILN_OK;
}

/* The recipe's kind, from its "# kind: KIND" line. */
static enum kiln_rc recipe_kind(const char *path, char *kind, size_t size, struct kiln_err *e)
{
	FILE *f = fopen(path, "re");
	char line[256];
	int i;

	if (!f)
		return kiln_fail_errno(e, "%s", path);
	for (i = 0; i < 5 && fgets(line, sizeof(line), f); i++) {
		if (sscanf(line, "# kind: %31s", kind) == 1 && strlen(kind) < size) {
			fclose(f);
			return KILN_OK;
		}
	}
	fclose(f);
	return kiln_fail(e, KILN_E_INVALID, "%s: no '# kind: KIND' line near the top", path);
}

/* Prefix the error already in e with the image name and what failed. */
static enum kiln_rc wrap(struct kiln_err *e, enum kiln_rc rc, const char *name, const char *what)
{
	char inner[sizeof(e->msg)];

	if (!e)
		return rc;
	memcpy(inner, e->msg, sizeof(inner));
	return kiln_fail(e, rc, "image %s: %s (%.400s)", name, what, inner);
}

#define RECIPE_ENV 4

/* What every recipe gets, for inputs and build alike (an empty
 * KILN_RUNNER_TARBALL is unset to the recipe). */
static void recipe_env(const struct images_ctx *ctx, char env[RECIPE_ENV][PATH_MAX + 32])
{
	snprintf(env[0], sizeof(env[0]), "KILN_CACHE_DIR=%s", ctx->cache_dir);
	snprintf(env[1], sizeof(env[1]), "KILN_AGENT=%s", ctx->agent_path);
	snprintf(env[2], sizeof(env[2]), "KILN_SRCDIR=%s/..", ctx->recipes_dir);
	snprintf(env[3], sizeof(env[3]), "KILN_RUNNER_TARBALL=%s", ctx->runner_tarball ? ctx->runner_tarball : "");
}

enum kiln_rc images_inputs(const struct images_ctx *ctx, const char *name, char **lines, char sha[65],
			   struct kiln_err *e)
{
	char path[PATH_MAX], recipe_sha[65], env[RECIPE_ENV][PATH_MAX + 32];
	char *envp[] = { env[0], env[1], env[2], env[3], NULL };
	char *argv[] = { path, "inputs", NULL };
	char *out = NULL, *all = NULL;
	enum kiln_rc rc;
	size_t len;

	*lines = NULL;
	if ((rc = recipe_path(ctx, name, path, sizeof(path), e)))
		return rc;
	if ((rc = sha256_file_hex(path, recipe_sha, NULL, e)))
		return rc;
	recipe_env(ctx, env);
	if ((rc = kiln_spawn(argv, envp, &out, INPUTS_MAX_BYTES, e)))
		return wrap(e, rc, name, "listing its inputs failed");
	len = strlen(out) + 128;
	all = malloc(len);
	if (!all) {
		free(out);
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	snprintf(all, len, "recipe %s %s\n%s", name, recipe_sha, out);
	free(out);
	sha256_buf_hex(all, strlen(all), sha);
	*lines = all;
	return KILN_OK;
}

enum kiln_rc images_manifest(const struct images_ctx *ctx, const char *name, struct manifest *m,
			     struct kiln_err *e)
{
	char path[PATH_MAX];
	struct stat st;

	if (!images_valid_name(name))
		return kiln_fail(e, KILN_E_INVALID, "invalid image name '%s'", name);
	if (snprintf(path, sizeof(path), "%s/%s/manifest.json", ctx->images_dir, name) >= (int)sizeof(path))
		return kiln_fail(e, KILN_E_LIMIT, "image path too long");
	if (stat(path, &st) < 0)
		return kiln_fail(e, KILN_E_NOTFOUND, "image '%s' is not built (run: kiln images build %s)",
				 name, name);
	return manifest_load(m, path, e);
}

enum kiln_rc images_file(const struct images_ctx *ctx, const char *name, const char *file, char *buf,
			 size_t size, struct kiln_err *e)
{
	char link[PATH_MAX], dir[PATH_MAX];
	struct manifest m;
	struct stat st;
	enum kiln_rc rc;

	if ((rc = images_manifest(ctx, name, &m, e)))
		return rc;
	if (!manifest_find(&m, file)) {
		rc = kiln_fail(e, KILN_E_NOTFOUND, "image '%s' has no file '%s'", name, file);
		goto out;
	}
	/* Through the link to the version folder: a job names files that a
	 * rebuild does not replace under it (images_hold). */
	snprintf(link, sizeof(link), "%s/%s", ctx->images_dir, name);
	if (!realpath(link, dir)) {
		rc = kiln_fail_errno(e, "image '%s': %s", name, link);
		goto out;
	}
	if (snprintf(buf, size, "%s/%s", dir, file) >= (int)size) {
		rc = kiln_fail(e, KILN_E_LIMIT, "image path too long");
		goto out;
	}
	if (stat(buf, &st) < 0)
		rc = kiln_fail_errno(e, "image '%s': %s", name, buf);
out:
	manifest_free(&m);
	return rc;
}

/* Whether the built image is intact: same inputs and files of the recorded
 * sizes (hashing every file on each check would cost seconds for rootfs). */
static bool image_current(const struct images_ctx *ctx, const char *name, const char *sha)
{
	struct manifest m;
	bool ok;
	size_t i;

	if (images_manifest(ctx, name, &m, NULL))
		return false;
	ok = !strcmp(m.inputs_sha256, sha);
	for (i = 0; ok && i < m.n_files; i++) {
		char path[PATH_MAX];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s/%s", ctx->images_dir, name, m.files[i].name);
		ok = stat(path, &st) == 0 && (uint64_t)st.st_size == m.files[i].size;
	}
	manifest_free(&m);
	return ok;
}

static enum kiln_rc hash_outputs(const char *dir, struct manifest *m, struct kiln_err *e)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	enum kiln_rc rc = KILN_OK;
	char names[MANIFEST_MAX_FILES][NAME_MAX + 1];
	size_t n = 0, i;

	if (!d)
		return kiln_fail_errno(e, "%s", dir);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "manifest.json"))
			continue;
		if (n == MANIFEST_MAX_FILES) {
			closedir(d);
			return kiln_fail(e, KILN_E_LIMIT, "recipe wrote more than %d files", MANIFEST_MAX_FILES);
		}
		snprintf(names[n++], NAME_MAX + 1, "%s", de->d_name);
	}
	closedir(d);
	if (n == 0)
		return kiln_fail(e, KILN_E_INVALID, "recipe wrote no files into %s", dir);
	qsort(names, n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	for (i = 0; i < n && !rc; i++) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (!(m->files[i].name = strdup(names[i])))
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
		m->n_files++;
		rc = sha256_file_hex(path, m->files[i].sha256, &m->files[i].size, e);
	}
	return rc;
}

static enum kiln_rc split_lines(char *text, struct manifest *m, struct kiln_err *e)
{
	char *line, *save = NULL;

	m->inputs = calloc(MANIFEST_MAX_INPUTS + 1, sizeof(char *));
	if (!m->inputs)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (m->n_inputs == MANIFEST_MAX_INPUTS)
			return kiln_fail(e, KILN_E_LIMIT, "recipe printed more than %d inputs", MANIFEST_MAX_INPUTS);
		if (!(m->inputs[m->n_inputs++] = strdup(line)))
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	return KILN_OK;
}

/* Point images_dir/name at IMAGES_VERSIONS/version: a link made beside it,
 * renamed over it. A folder there (an image built before versions) is
 * moved into the versions first. */
static enum kiln_rc swap_link(const struct images_ctx *ctx, const char *name, const char *version,
			      struct kiln_err *e)
{
	char final[PATH_MAX], tmp[PATH_MAX], target[PATH_MAX], legacy[PATH_MAX];
	struct stat st;

	snprintf(final, sizeof(final), "%s/%s", ctx->images_dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.link-%s-%d", ctx->images_dir, name, (int)getpid());
	snprintf(target, sizeof(target), IMAGES_VERSIONS "/%s", version);
	if (lstat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(legacy, sizeof(legacy), "%s/" IMAGES_VERSIONS "/%s@legacy%ld", ctx->images_dir, name,
			 (long)time(NULL));
		if (rename(final, legacy) < 0)
			return kiln_fail_errno(e, "moving %s into %s", final, legacy);
	}
	unlink(tmp);
	if (symlink(target, tmp) < 0)
		return kiln_fail_errno(e, "linking %s", tmp);
	if (rename(tmp, final) < 0) {
		unlink(tmp);
		return kiln_fail_errno(e, "renaming %s to %s", tmp, final);
	}
	return KILN_OK;
}

void images_prune_versions(const struct images_ctx *ctx, const char *name)
{
	char dir[PATH_MAX], link[PATH_MAX], cur[PATH_MAX], path[PATH_MAX * 2];
	size_t nlen = strlen(name);
	struct dirent *de;
	ssize_t n;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/" IMAGES_VERSIONS, ctx->images_dir);
	snprintf(link, sizeof(link), "%s/%s", ctx->images_dir, name);
	if ((n = readlink(link, cur, sizeof(cur) - 1)) < 0)
		return;
	cur[n] = '\0';
	if (!(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		int fd;

		if (strncmp(de->d_name, name, nlen) || de->d_name[nlen] != '@' ||
		    !strcmp(cur + strlen(IMAGES_VERSIONS) + 1, de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		/* Held exclusively while it goes: a job that asks to hold it
		 * meanwhile waits, then finds it gone and resolves again. */
		fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			log_info("removing image %s's old version %s", name, de->d_name);
			kiln_rm_rf(path);
		}
		close(fd);
	}
	closedir(d);
}

enum kiln_rc images_hold(const char *path, int *fd, struct kiln_err *e)
{
	char dir[PATH_MAX], *slash;

	*fd = -1;
	snprintf(dir, sizeof(dir), "%s", path);
	if (!(slash = strrchr(dir, '/')))
		return kiln_fail(e, KILN_E_INVALID, "image file %s: not a path", path);
	*slash = '\0';
	*fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0 || flock(*fd, LOCK_SH) < 0 || access(path, F_OK) < 0) {
		int err = errno;

		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return kiln_fail(e, err == ENOENT ? KILN_E_NOTFOUND : KILN_E_IO, "holding image folder %s: %s", dir,
				 strerror(err));
	}
	return KILN_OK;
}

enum kiln_rc images_build(const struct images_ctx *ctx, const char *name, bool force, bool *rebuilt,
			  struct kiln_err *e)
{
	char recipe[PATH_MAX], tmpdir[PATH_MAX], mpath[PATH_MAX];
	char sha[65], kind[32], env[RECIPE_ENV][PATH_MAX + 32], built[32];
	char *envp[] = { env[0], env[1], env[2], env[3], NULL };
	char *argv[] = { recipe, "build", tmpdir, NULL };
	struct manifest m = { 0 };
	char *lines = NULL;
	enum kiln_rc rc;
	double t0;
	time_t now;
	struct tm tm;

	*rebuilt = false;
	tmpdir[0] = '\0';
	if ((rc = recipe_path(ctx, name, recipe, sizeof(recipe), e)) ||
	    (rc = recipe_kind(recipe, kind, sizeof(kind), e)) ||
	    (rc = images_inputs(ctx, name, &lines, sha, e)))
		goto out;
	if (!force && image_current(ctx, name, sha))
		goto out;
	if (kiln_mkdir_p(ctx->images_dir) < 0 || kiln_mkdir_p(ctx->cache_dir) < 0) {
		rc = kiln_fail_errno(e, "creating %s and %s", ctx->images_dir, ctx->cache_dir);
		goto out;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/" IMAGES_VERSIONS, ctx->images_dir);
	if (kiln_mkdir_p(tmpdir) < 0) {
		rc = kiln_fail_errno(e, "creating %s", tmpdir);
		tmpdir[0] = '\0';
		goto out;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/" IMAGES_VERSIONS "/%s@XXXXXX", ctx->images_dir, name);
	if (!mkdtemp(tmpdir)) {
		rc = kiln_fail_errno(e, "mkdtemp %s", tmpdir);
		tmpdir[0] = '\0';
		goto out;
	}
	chmod(tmpdir, 0755);
	log_info("building image %s (%s) with %s", name, kind, recipe);
	recipe_env(ctx, env);
	t0 = mono_s();
	if ((rc = kiln_spawn(argv, envp, NULL, 0, e))) {
		rc = wrap(e, rc, name, "recipe failed");
		goto out;
	}
	m.build_seconds = mono_s() - t0;
	m.name = strdup(name);
	m.kind = strdup(kind);
	now = time(NULL);
	strftime(built, sizeof(built), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	m.built = strdup(built);
	memcpy(m.inputs_sha256, sha, sizeof(sha));
	if (!m.name || !m.kind || !m.built) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = split_lines(lines, &m, e)) || (rc = hash_outputs(tmpdir, &m, e)))
		goto out;
	snprintf(mpath, sizeof(mpath), "%s/manifest.json", tmpdir);
	if ((rc = manifest_save(&m, mpath, e)))
		goto out;
	/* Swap the new version in: images_dir/NAME is a link to it, replaced
	 * by rename(2) in one step, so a job sees the old image or the new one,
	 * never none; the versions that no job holds are removed after. */
	if ((rc = swap_link(ctx, name, strrchr(tmpdir, '/') + 1, e)))
		goto out;
	tmpdir[0] = '\0';
	*rebuilt = true;
	log_info("built image %s in %.1f s", name, m.build_seconds);
	images_prune_versions(ctx, name);
out:
	if (tmpdir[0])
		kiln_rm_rf(tmpdir);
	manifest_free(&m);
	free(lines);
	return rc;
}

/* "Sat, 05 Dec 2026 03:33:28 UTC" (a Release file's Date:) or
 * "2026-12-07T01:43:45Z" (a manifest's built); 0 when neither. */
static time_t parse_utc(const char *s, const char *fmt)
{
	struct tm tm = { 0 };

	return strptime(s, fmt, &tm) ? timegm(&tm) : 0;
}

/* The newest Date: of lists_dir's Release files of suite's archives. */
static time_t suite_published(const char *lists_dir, const char *suite, char *which, size_t size)
{
	char pat[96], path[PATH_MAX * 2], *text = NULL, *date;
	time_t newest = 0;
	struct dirent *de;
	size_t len, n = strlen(suite);
	DIR *d = opendir(lists_dir);

	if (!d)
		return 0;
	snprintf(pat, sizeof(pat), "_dists_%s", suite);
	while ((de = readdir(d))) {
		const char *at = strstr(de->d_name, pat), *end = strrchr(de->d_name, '_');
		time_t t;

		if (!at || (at[n + 7] != '_' && at[n + 7] != '-') || !end ||
		    (strcmp(end, "_InRelease") && strcmp(end, "_Release")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", lists_dir, de->d_name);
		if (kiln_read_file(path, 4 << 20, &text, &len) < 0)
			continue;
		date = strstr(text, "\nDate: ");
		t = date ? parse_utc(date + 7, "%a, %d %b %Y %H:%M:%S") : 0;
		if (t > newest) {
			newest = t;
			snprintf(which, size, "%.*s", (int)(end - de->d_name), de->d_name);
		}
		free(text);
		text = NULL;
	}
	closedir(d);
	return newest;
}

/* apt's candidate version of pkg into out; false when apt has none. */
static bool apt_candidate(const char *pkg, char *out, size_t size)
{
	char *argv[] = { "apt-cache", "policy", (char *)pkg, NULL }, *text = NULL, *c;
	struct kiln_err e = { 0 };
	bool ok = false;

	if (kiln_spawn(argv, NULL, &text, 64 * 1024, &e) == KILN_OK && (c = strstr(text, "Candidate: "))) {
		c += 11;
		snprintf(out, size, "%.*s", (int)strcspn(c, "\n"), c);
		ok = strcmp(out, "(none)") != 0;
	}
	free(text);
	return ok;
}

int images_debian_stale(const struct manifest *m, const char *lists_dir, char *why, size_t size)
{
	char cand[128], which[256];
	time_t built = parse_utc(m->built, "%Y-%m-%dT%H:%M:%SZ");
	int known = -1;
	size_t i;

	lists_dir = lists_dir ? lists_dir : "/var/lib/apt/lists";
	snprintf(why, size, "no apt lists in %s", lists_dir);
	for (i = 0; i < m->n_inputs; i++) {
		char name[128], ver[128];

		if (sscanf(m->inputs[i], "package %127s %127s", name, ver) == 2) {
			char *argv[] = { "dpkg", "--compare-versions", cand, "gt", ver, NULL };
			struct kiln_err e = { 0 };

			if (!apt_candidate(name, cand, sizeof(cand)))
				continue;
			known = 0;
			if (kiln_spawn(argv, NULL, NULL, 0, &e) == KILN_OK) {
				snprintf(why, size, "Debian has %s %s (built with %s)", name, cand, ver);
				return 1;
			}
		} else if (sscanf(m->inputs[i], "param suite %127s", name) == 1) {
			time_t pub = suite_published(lists_dir, name, which, sizeof(which));

			if (!pub)
				continue;
			known = 0;
			if (built && pub > built) {
				char when[32];
				struct tm tm;

				strftime(when, sizeof(when), "%Y-%m-%d %H:%M", gmtime_r(&pub, &tm));
				snprintf(why, size, "Debian published %s on %s UTC", which, when);
				return 1;
			}
		}
	}
	if (!known)
		why[0] = '\0';
	return known;
}
