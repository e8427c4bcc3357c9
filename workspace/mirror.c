#include "workspace/mirror.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "workspace/gitstream.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "workspace/packwrite.h"
#include "lib/paths.h"
#include "lib/sha256.h"
#include "lib/spawn.h"
#include "lib/vec.h"

/* ---- errors ------------------------------------------------------------ */

/* ---- lock -------------------------------------------------------------- */

enum kiln_rc mirror_lock(const char *lock_path, unsigned timeout_s, int *fd, long *waited_ms,
			 struct kiln_err *e)
{
	int64_t t0;
	long limit_ms = (long)(timeout_s ? timeout_s : MIRROR_DEFAULT_LOCK_TIMEOUT_S) * 1000;
	long pause_ms = 10;
	int lfd = -1;

	*fd = -1;
	*waited_ms = 0;
	t0 = mono_ms();
	for (;;) {
		struct stat a, b;
		struct timespec ts;

		if (lfd < 0 && (lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
			return kiln_fail_errno(e, "mirror lock %s", lock_path);
		if (flock(lfd, LOCK_EX | LOCK_NB) == 0) {
			/* mirror_sweep() may have removed the file we locked. */
			if (fstat(lfd, &a) == 0 && stat(lock_path, &b) == 0 && a.st_ino == b.st_ino &&
			    a.st_dev == b.st_dev)
				break;
			close(lfd);
			lfd = -1;
			continue;
		}
		if (errno != EWOULDBLOCK && errno != EINTR) {
			enum kiln_rc rc = kiln_fail_errno(e, "mirror lock %s: flock", lock_path);
			close(lfd);
			return rc;
		}
		if ((long)(mono_ms() - t0) >= limit_ms) {
			close(lfd);
			return kiln_fail(e, KILN_E_LIMIT,
					 "mirror lock %s: still held by another job after %ld s",
					 lock_path, limit_ms / 1000);
		}
		ts.tv_sec = 0;
		ts.tv_nsec = pause_ms * 1000000;
		nanosleep(&ts, NULL);
		if (pause_ms < 200)
			pause_ms *= 2;
	}
	futimens(lfd, NULL); /* the mirror's last use, for mirror_sweep() */
	*fd = lfd;
	*waited_ms = (long)(mono_ms() - t0);
	return KILN_OK;
}

void mirror_sweep(const char *state_dir, unsigned max_age_days, const char *keep)
{
	char dir[PATH_MAX], lock[PATH_MAX], path[PATH_MAX];
	time_t now = time(NULL);
	struct dirent *de;
	DIR *d;

	if (!kiln_path_join(dir, sizeof(dir), state_dir, "mirrors") || !(d = opendir(dir)))
		return;
	if (!max_age_days)
		max_age_days = MIRROR_DEFAULT_MAX_AGE_DAYS;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		struct stat st;
		int fd;

		if (len < 10 || strcmp(de->d_name + len - 9, ".git.lock") != 0 ||
		    !kiln_path_join(lock, sizeof(lock), dir, de->d_name) ||
		    snprintf(path, sizeof(path), "%.*s", (int)strlen(lock) - 5, lock) >= (int)sizeof(path) ||
		    (keep && strcmp(path, keep) == 0) || stat(lock, &st) != 0 ||
		    now - st.st_mtime < (time_t)max_age_days * 86400)
			continue;
		fd = open(lock, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			char tree[PATH_MAX];

			log_info("mirror %s: unused for more than %u days, removing it", path, max_age_days);
			if (mirror_tree_path(tree, sizeof(tree), state_dir, path))
				kiln_rm_rf(tree);
			if (kiln_rm_rf(path) == 0)
				unlink(lock);
		}
		close(fd);
	}
	closedir(d);
}

char *mirror_tree_path(char *buf, size_t size, const char *state_dir, const char *mirror)
{
	const char *name = strrchr(mirror, '/');
	size_t len;

	name = name ? name + 1 : mirror;
	len = strlen(name);
	if (len > 4 && strcmp(name + len - 4, ".git") == 0)
		len -= 4;
	if (snprintf(buf, size, "%s/trees/%.*s", state_dir, (int)len, name) >= (int)size)
		return NULL;
	return buf;
}

void mirror_unlock(int fd)
{
	if (fd < 0)
		return;
	flock(fd, LOCK_UN);
	close(fd);
}

char *mirror_path(char *buf, size_t size, const char *state_dir, const char *redacted)
{
	char hex[65];
	int n;

	sha256_buf_hex(redacted, strlen(redacted), hex);
	n = snprintf(buf, size, "%s/mirrors/%s.git", state_dir, hex);
	return n < 0 || (size_t)n >= size ? NULL : buf;
}

/* ---- fetch ------------------------------------------------------------- */

struct fetch_ctx {
	const struct ws_url *url;
	int64_t t0;
	long limit_ms;
	unsigned userpass_tries, ssh_tries, username_tries;
};

static int fetch_check(struct fetch_ctx *c, uint64_t bytes)
{
	if (bytes > MIRROR_MAX_FETCH_BYTES) {
		git_error_set(GIT_ERROR_NET, "the server sent more than %llu bytes",
			      (unsigned long long)MIRROR_MAX_FETCH_BYTES);
		return -1;
	}
	if (mono_ms() - c->t0 > c->limit_ms) {
		git_error_set(GIT_ERROR_NET, "the fetch took longer than %ld s", c->limit_ms / 1000);
		return -1;
	}
	return 0;
}

static int progress_cb(const git_indexer_progress *st, void *payload)
{
	return fetch_check(payload, st->received_bytes);
}

static int sideband_cb(const char *str, int len, void *payload)
{
	(void)str; (void)len;
	return fetch_check(payload, 0);
}

static int cred_cb(git_credential **out, const char *url, const char *user_from_url,
		   unsigned int allowed, void *payload)
{
	static const char *const keys[] = { "id_ed25519", "id_ecdsa", "id_rsa" };
	struct fetch_ctx *c = payload;
	const char *user = user_from_url && *user_from_url ? user_from_url
			 : c->url->user[0] ? c->url->user : "git";

	(void)url;
	if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && (c->url->user[0] || c->url->pass[0]) &&
	    c->userpass_tries++ == 0)
		return git_credential_userpass_plaintext_new(out, c->url->user, c->url->pass);
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		while (c->ssh_tries < 1 + sizeof(keys) / sizeof(keys[0])) {
			unsigned i = c->ssh_tries++;
			const char *home = getenv("HOME");
			char priv[PATH_MAX], pub[PATH_MAX];

			if (i == 0) {
				if (getenv("SSH_AUTH_SOCK"))
					return git_credential_ssh_key_from_agent(out, user);
				continue;
			}
			if (!home || !*home) {
				struct passwd pw, *res = NULL;
				static _Thread_local char pwbuf[1024];

				home = getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res
				       ? res->pw_dir : "/";
			}
			snprintf(priv, sizeof(priv), "%s/.ssh/%s", home, keys[i - 1]);
			snprintf(pub, sizeof(pub), "%s.pub", priv);
			if (access(priv, R_OK) != 0)
				continue;
			return git_credential_ssh_key_new(out, user, access(pub, R_OK) == 0 ? pub : NULL,
							  priv, NULL);
		}
	}
	if ((allowed & GIT_CREDENTIAL_USERNAME) && c->username_tries++ == 0)
		return git_credential_username_new(out, user);
	git_error_set(GIT_ERROR_NET, "authentication failed (%s)",
		      (allowed & GIT_CREDENTIAL_SSH_KEY) ? "tried ssh-agent and ~/.ssh/id_{ed25519,ecdsa,rsa}"
		      : (c->url->user[0] || c->url->pass[0]) ? "the credentials in the URL were refused"
		      : "the URL has no credentials");
	return GIT_EAUTH;
}

static enum kiln_rc mirror_fetch(git_remote *remote, char **specs, size_t n, const struct mirror_opts *o,
				 bool prune, struct kiln_err *e)
{
	git_fetch_options fo;
	git_strarray arr = { specs, n };
	struct fetch_ctx c = { .url = o->url };
	char fetch_head[PATH_MAX];
	int rc;

	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	c.t0 = mono_ms();
	c.limit_ms = (long)(o->fetch_timeout_s ? o->fetch_timeout_s : MIRROR_DEFAULT_FETCH_TIMEOUT_S) * 1000;
	fo.callbacks.credentials = cred_cb;
	fo.callbacks.transfer_progress = progress_cb;
	fo.callbacks.sideband_progress = sideband_cb;
	fo.callbacks.payload = &c;
	fo.prune = prune ? GIT_FETCH_PRUNE : GIT_FETCH_NO_PRUNE;
	fo.update_fetchhead = 0;
	fo.proxy_opts.type = GIT_PROXY_AUTO; /* http.proxy, then $https_proxy/$http_proxy */
	gitstream_deadline_set((unsigned)(c.limit_ms / 1000));
	rc = git_remote_fetch(remote, &arr, &fo, "kiln: fetch");
	gitstream_deadline_clear();
	if (rc < 0)
		return kiln_git_fail(e, KILN_E_IO, "fetch from %s", o->url->redacted);
	/* libgit2 1.5 leaves an empty FETCH_HEAD even when told not to write it. */
	if (kiln_path_join(fetch_head, sizeof(fetch_head), git_repository_path(git_remote_owner(remote)),
			   "FETCH_HEAD"))
		unlink(fetch_head);
	return KILN_OK;
}

/* ---- config ------------------------------------------------------------ */

/* value as a quoted git config value into f. */
static void config_quoted(FILE *f, const char *value)
{
	fputc('"', f);
	for (; *value; value++) {
		if (*value == '"' || *value == '\\')
			fputc('\\', f);
		else if (*value == '\t') {
			fputs("\\t", f);
			continue;
		}
		fputc(*value, f);
	}
	fputc('"', f);
}

enum kiln_rc ws_config_add_remote(git_repository *repo, const char *name, const char *url,
				  const char *const *fetch, size_t n_fetch, struct kiln_err *e)
{
	char path[PATH_MAX];
	git_config *cfg = NULL;
	size_t i;
	FILE *f;

	if (strpbrk(name, "\"\\\n\r") || strchr(url, '\n') || strchr(url, '\r'))
		return kiln_fail(e, KILN_E_INVALID, "remote %s: a newline or quote cannot go into the git config", name);
	for (i = 0; i < n_fetch; i++)
		if (strchr(fetch[i], '\n') || strchr(fetch[i], '\r'))
			return kiln_fail(e, KILN_E_INVALID, "remote %s: a fetch spec holds a newline", name);
	if (!kiln_path_join(path, sizeof(path), git_repository_path(repo), "config"))
		return kiln_fail(e, KILN_E_LIMIT, "path too long: %s", git_repository_path(repo));
	if (!(f = fopen(path, "ae")))
		return kiln_fail_errno(e, "opening %s", path);
	fprintf(f, "[remote \"%s\"]\n\turl = ", name);
	config_quoted(f, url);
	fputc('\n', f);
	for (i = 0; i < n_fetch; i++) {
		fputs("\tfetch = ", f);
		config_quoted(f, fetch[i]);
		fputc('\n', f);
	}
	if (fclose(f) != 0)
		return kiln_fail_errno(e, "writing %s", path);
	/* libgit2 caches the parsed file; a lookup re-reads a changed file, and
	 * reading the URL back checks what was written. */
	{
		git_buf got = { 0 };
		char key[300];
		bool same;

		snprintf(key, sizeof(key), "remote.%s.url", name);
		if (git_repository_config(&cfg, repo) < 0 || git_config_get_string_buf(&got, cfg, key) < 0) {
			git_config_free(cfg);
			return kiln_git_fail(e, KILN_E_IO, "reading back %s from %s", key, path);
		}
		same = !strcmp(got.ptr, url);
		git_buf_dispose(&got);
		git_config_free(cfg);
		if (!same)
			return kiln_fail(e, KILN_E_IO, "%s: %s reads back differently", path, key);
	}
	return KILN_OK;
}

/* ---- mirror ------------------------------------------------------------ */

static enum kiln_rc open_or_init(struct mirror *m, const char *url, struct kiln_err *e)
{
	git_repository_init_options io;
	git_remote *remote = NULL;
	enum kiln_rc rc = KILN_OK;
	struct stat st;

	git_repository_init_options_init(&io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
	if (git_repository_open_bare(&m->repo, m->path) == 0) {
		/* The URL from the config, not git_remote_lookup: that walks
		 * url.*.insteadOf with a regexp over every entry, and libgit2
		 * 1.5 leaks on each one that does not match. */
		git_config *cfg = NULL;
		git_buf got = { 0 };
		bool found = false;

		if (git_repository_config(&cfg, m->repo) < 0) {
			rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: config", m->path);
			goto out;
		}
		if (git_config_get_string_buf(&got, cfg, "remote.origin.url") == 0) {
			found = true;
			if (strcmp(got.ptr, url) != 0 && git_config_set_string(cfg, "remote.origin.url", url) < 0)
				rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: set origin", m->path);
		}
		git_buf_dispose(&got);
		git_config_free(cfg);
		if (found || rc)
			goto out;
	} else {
		if (stat(m->path, &st) == 0) {
			log_warn("mirror %s is not a usable repository; recreating it", m->path);
			if (kiln_rm_rf(m->path) < 0) {
				rc = kiln_fail_errno(e, "mirror %s: remove", m->path);
				goto out;
			}
		}
		io.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
		if (git_repository_init_ext(&m->repo, m->path, &io) < 0) {
			rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: init", m->path);
			goto out;
		}
		m->cloned = true;
	}
	rc = ws_config_add_remote(m->repo, "origin", url, NULL, 0, e);
out:
	git_remote_free(remote);
	return rc;
}

/* Remove what an interrupted fetch leaves: temporary packs and objects. */
static void sweep_temp_files(const char *mirror)
{
	static const char *const sub[] = { "objects/pack", "objects" };
	size_t i;

	for (i = 0; i < 2; i++) {
		char dir[PATH_MAX], path[PATH_MAX];
		struct dirent *de;
		DIR *d;

		if (!kiln_path_join(dir, sizeof(dir), mirror, sub[i]) || !(d = opendir(dir)))
			continue;
		while ((de = readdir(d))) {
			bool tmp = i == 0 ? strncmp(de->d_name, "pack-", 5) != 0 && de->d_name[0] != '.' &&
					    strcmp(de->d_name, "multi-pack-index") != 0
					  : strncmp(de->d_name, "tmp_", 4) == 0;

			if (tmp && kiln_path_join(path, sizeof(path), dir, de->d_name) &&
			    unlink(path) == 0)
				log_debug("mirror %s: removed leftover %s", mirror, path);
		}
		closedir(d);
	}
}

/* Delete the refs under refs/kiln/ (SHA fetches): a bounded namespace. */
static void drop_kiln_refs(git_repository *repo)
{
	git_reference_iterator *it = NULL;
	char *names[256];
	size_t n = 0, i;
	const char *name;

	do {
		n = 0;
		if (git_reference_iterator_glob_new(&it, repo, "refs/kiln/*") < 0)
			return;
		while (n < 256 && git_reference_next_name(&name, it) == 0)
			if ((names[n] = strdup(name)) != NULL)
				n++;
		git_reference_iterator_free(it);
		for (i = 0; i < n; i++) {
			git_reference_remove(repo, names[i]);
			free(names[i]);
		}
	} while (n == 256);
}

static size_t count_packs(const char *mirror)
{
	char dir[PATH_MAX];
	struct dirent *de;
	size_t n = 0, len;
	DIR *d;

	if (!kiln_path_join(dir, sizeof(dir), mirror, "objects/pack") || !(d = opendir(dir)))
		return 0;
	while ((de = readdir(d)))
		if ((len = strlen(de->d_name)) > 5 && strcmp(de->d_name + len - 5, ".pack") == 0)
			n++;
	closedir(d);
	return n;
}

#define MIRROR_MAX_LOOSE 1024

/* The number of loose objects, counting up to limit. */
static size_t count_loose(const char *mirror, size_t limit)
{
	char dir[PATH_MAX];
	size_t n = 0;
	int i;

	for (i = 0; i < 256 && n < limit; i++) {
		struct dirent *de;
		DIR *d;

		if (snprintf(dir, sizeof(dir), "%s/objects/%02x", mirror, i) >= (int)sizeof(dir) ||
		    !(d = opendir(dir)))
			continue;
		while (n < limit && (de = readdir(d)))
			if (de->d_name[0] != '.')
				n++;
		closedir(d);
	}
	return n;
}

/* Remove the loose objects (after they were packed). */
static void drop_loose(const char *mirror)
{
	char dir[PATH_MAX];
	int i;

	for (i = 0; i < 256; i++)
		if (snprintf(dir, sizeof(dir), "%s/objects/%02x", mirror, i) < (int)sizeof(dir))
			kiln_rm_rf(dir);
}

/* Delete the packs other than pack-<keep>.*. */
static void drop_packs_except(const char *mirror, const char *keep)
{
	char dir[PATH_MAX], path[PATH_MAX], want[128];
	struct dirent *de;
	DIR *d;

	snprintf(want, sizeof(want), "pack-%s.", keep);
	if (!kiln_path_join(dir, sizeof(dir), mirror, "objects/pack") || !(d = opendir(dir)))
		return;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "pack-", 5) == 0 && strncmp(de->d_name, want, strlen(want)) != 0 &&
		    kiln_path_join(path, sizeof(path), dir, de->d_name))
			unlink(path);
	closedir(d);
}


struct tag_insert {
	git_repository *repo;
	git_packbuilder *pb;
};

static int insert_tag_cb(const char *name, git_oid *oid, void *payload)
{
	struct tag_insert *t = payload;
	git_object *obj = NULL;
	int err = 0;

	if (git_object_lookup(&obj, t->repo, oid, GIT_OBJECT_TAG) == 0)
		err = git_packbuilder_insert_recur(t->pb, oid, name);
	git_object_free(obj);
	git_error_clear();
	return err;
}

/* Pack everything reachable from the refs into one pack with libgit2 (used
 * when git is not installed; it recomputes every delta, so it is slow). */
static enum kiln_rc repack_libgit2(struct mirror *m, struct kiln_err *e)
{
	git_packbuilder *pb = NULL;
	git_revwalk *walk = NULL;
	struct tag_insert t = { m->repo, NULL };
	char dir[PATH_MAX];
	enum kiln_rc rc = KILN_OK;

	if (!kiln_path_join(dir, sizeof(dir), m->path, "objects/pack"))
		return kiln_fail(e, KILN_E_LIMIT, "mirror %s: path too long", m->path);
	if (git_packbuilder_new(&pb, m->repo) < 0 || git_revwalk_new(&walk, m->repo) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: repack", m->path);
		goto out;
	}
	git_packbuilder_set_threads(pb, 0);
	t.pb = pb;
	if (git_revwalk_push_glob(walk, "refs/*") < 0 || git_packbuilder_insert_walk(pb, walk) < 0 ||
	    git_tag_foreach(m->repo, insert_tag_cb, &t) < 0 ||
	    git_packbuilder_write(pb, dir, 0, NULL, NULL) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: repack", m->path);
		goto out;
	}
	drop_packs_except(m->path, git_packbuilder_name(pb));
	drop_loose(m->path);
out:
	git_revwalk_free(walk);
	git_packbuilder_free(pb);
	return rc;
}

/* Keep the number of packs (every fetch adds one) and of loose objects (a
 * new mirror of a local repository links its loose objects) bounded. git
 * repack reuses deltas and drops unreachable objects; libgit2's packbuilder
 * is the fallback. */
static void maybe_repack(struct mirror *m)
{
	struct kiln_err e = { 0 };
	char git[PATH_MAX], gitdir[PATH_MAX + 16];
	size_t packs = count_packs(m->path);
	enum kiln_rc rc;

	if (packs <= m->max_packs && count_loose(m->path, MIRROR_MAX_LOOSE) < MIRROR_MAX_LOOSE)
		return;
	if (kiln_which(NULL, "git", git, sizeof(git))) {
		char *argv[] = { git, gitdir, "-c", "gc.auto=0", "repack", "-a", "-d", "-q", NULL };
		char *out = NULL;

		snprintf(gitdir, sizeof(gitdir), "--git-dir=%s", m->path);
		rc = kiln_spawn(argv, NULL, &out, 64 * 1024, &e);
		free(out);
	} else {
		rc = repack_libgit2(m, &e);
	}
	if (rc)
		log_warn("mirror %s: repacking %zu packs failed: %s", m->path, packs, e.msg);
	else
		log_debug("mirror %s: repacked %zu packs", m->path, packs);
}

static bool is_sha_src(const char *spec, git_oid *oid)
{
	git_refspec *rs = NULL;
	bool yes;

	if (git_refspec_parse(&rs, spec, 1) < 0)
		return false;
	yes = ws_parse_sha(oid, git_refspec_src(rs)) == 0;
	git_refspec_free(rs);
	return yes;
}

static bool have_object(git_odb *odb, const git_oid *oid)
{
	return git_odb_exists(odb, oid) == 1;
}

/* What a sync works from: the refspecs split into ref refspecs and SHAs. */
struct sync_plan {
	char *normal[MIRROR_MAX_REFSPECS];
	size_t n_normal;
	git_oid need[MIRROR_MAX_REFSPECS + 8];
	size_t n_need;
};

/* ---- sync from a remote: libgit2 fetch --------------------------------- */

/* Fetch the ref refspecs, then each needed object still missing by its SHA.
 * A failed SHA fetch is not an error here: the caller names what is missing
 * (with *sha_err). */
static enum kiln_rc sync_remote(struct mirror *m, const struct mirror_opts *o, const struct sync_plan *p,
				git_odb *odb, struct kiln_err *sha_err, struct kiln_err *e)
{
	char *by_sha[MIRROR_MAX_REFSPECS + 8];
	char specs[MIRROR_MAX_REFSPECS + 8][GIT_OID_HEXSZ + 40];
	git_remote *remote = NULL;
	size_t i, n_sha = 0;
	enum kiln_rc rc = KILN_OK;

	/* An anonymous remote with the fetch specs given: no config walk
	 * (see open_or_init), and the mirror's origin URL is the redacted one
	 * its path is made from. */
	{
		git_remote_create_options ro;

		git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
		ro.repository = m->repo;
		ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
		if (git_remote_create_with_opts(&remote, o->url->redacted, &ro) < 0) {
			rc = kiln_git_fail(e, KILN_E_IO, "mirror %s", m->path);
			goto out;
		}
	}
	if (p->n_normal > 0) {
		rc = mirror_fetch(remote, (char **)p->normal, p->n_normal, o, true, e);
		if (rc)
			goto out;
	}
	for (i = 0; i < p->n_need; i++) {
		char hex[GIT_OID_HEXSZ + 1];

		if (have_object(odb, &p->need[i]))
			continue;
		git_oid_tostr(hex, sizeof(hex), &p->need[i]);
		snprintf(specs[n_sha], sizeof(specs[n_sha]), "+%s:refs/kiln/want/%zu", hex, n_sha);
		by_sha[n_sha] = specs[n_sha];
		n_sha++;
	}
	if (n_sha > 0) {
		m->fetched_by_sha = true;
		if (mirror_fetch(remote, by_sha, n_sha, o, false, sha_err) != KILN_OK)
			ws_url_scrub(o->url, sha_err->msg, sizeof(sha_err->msg));
		git_odb_refresh(odb);
	}
out:
	git_remote_free(remote);
	return rc;
}

/* ---- sync from a repository on this machine ----------------------------- */

/* libgit2's local transport packs what it sends with its packbuilder, which
 * recomputes every delta (7.4 s for a 10,000-commit, 8 MiB repository) and,
 * on every fetch, packs the whole tree of each annotated tag. A local source
 * is read directly instead: a new mirror hard-links its object files, then
 * each sync packs only the objects the mirror lacks and sets the refs. */

/* The path of a local (path or file://) URL; NULL for other URLs. */
static const char *local_path(const struct ws_url *u)
{
	const char *p = u->redacted;

	if (u->kind == WS_URL_LOCAL)
		return p;
	if (u->kind != WS_URL_FILE)
		return NULL;
	p += strlen("file://");
	if (strncmp(p, "localhost/", 10) == 0)
		p += 9;
	return *p == '/' ? p : NULL;
}

struct ref_update {
	char *name;
	git_oid oid;
};

struct ref_updates {
	struct ref_update *v;
	size_t n, cap;
};

static void updates_free(struct ref_updates *u)
{
	size_t i;

	for (i = 0; i < u->n; i++)
		free(u->v[i].name);
	free(u->v);
}

static int updates_add(struct ref_updates *u, const char *name, const git_oid *oid)
{
	if (u->n >= MIRROR_MAX_REFS) {
		git_error_set(GIT_ERROR_INVALID, "more than %d refs", MIRROR_MAX_REFS);
		return -1;
	}
	if (VEC_GROW(u->v, u->cap, u->n, 1, MIRROR_MAX_REFS)) {
		git_error_set_oom();
		return -1;
	}
	if (!(u->v[u->n].name = strdup(name))) {
		git_error_set_oom();
		return -1;
	}
	u->v[u->n++].oid = *oid;
	return 0;
}

static bool updates_has(const struct ref_updates *u, const char *name)
{
	size_t i;

	for (i = 0; i < u->n; i++)
		if (strcmp(u->v[i].name, name) == 0)
			return true;
	return false;
}

/* The source's refs that the refspecs take, renamed to their destinations. */
static int plan_updates(git_repository *src, git_refspec **specs, size_t n, struct ref_updates *u)
{
	git_reference_iterator *it = NULL;
	git_reference *ref;
	int err;

	if (git_reference_iterator_new(&it, src) < 0)
		return -1;
	while ((err = git_reference_next(&ref, it)) == 0) {
		const char *name = git_reference_name(ref);
		size_t i;

		for (i = 0; i < n && err == 0; i++) {
			git_buf dst = { 0 };

			if (!git_reference_target(ref) || !git_refspec_src_matches(specs[i], name))
				continue;
			err = git_refspec_transform(&dst, specs[i], name);
			if (err == 0)
				err = updates_add(u, dst.ptr, git_reference_target(ref));
			git_buf_dispose(&dst);
		}
		git_reference_free(ref);
		if (err < 0)
			break;
	}
	git_reference_iterator_free(it);
	return err == GIT_ITEROVER ? 0 : -1;
}

static int hide_ref_cb(git_reference *ref, void *payload)
{
	if (git_reference_target(ref))
		git_revwalk_hide(payload, git_reference_target(ref));
	git_error_clear(); /* the source may not have it, or it is not a commit */
	git_reference_free(ref);
	return 0;
}

/* The objects reachable from tips that the mirror (odb) lacks: tag objects,
 * then commits from a walk that stops at the mirror's refs, and their trees
 * down to what the mirror has. */
static int plan_objects(git_repository *src, git_repository *mirror, git_odb *odb, const git_oid *tips,
			size_t n_tips, struct oidset *set)
{
	git_revwalk *walk = NULL;
	git_oid id;
	size_t i;
	int err = 0, pushed = 0;

	if (git_revwalk_new(&walk, src) < 0)
		return -1;
	for (i = 0; i < n_tips && err == 0; i++) {
		git_object *obj = NULL;
		int k;

		if (have_object(odb, &tips[i]) || git_object_lookup(&obj, src, &tips[i], GIT_OBJECT_ANY) < 0) {
			git_error_clear(); /* present already, or the source lacks it: checked later */
			continue;
		}
		/* Tag objects down to the first non-tag. */
		for (k = 0; k < 16 && git_object_type(obj) == GIT_OBJECT_TAG; k++) {
			git_object *next = NULL;

			if (!have_object(odb, git_object_id(obj)) && oidset_add_git(set, git_object_id(obj)) < 0)
				err = -1;
			if (err || git_tag_target(&next, (git_tag *)obj) < 0) {
				git_error_clear();
				break;
			}
			git_object_free(obj);
			obj = next;
		}
		if (err == 0 && git_object_type(obj) == GIT_OBJECT_COMMIT) {
			err = git_revwalk_push(walk, git_object_id(obj));
			pushed++;
		} else if (err == 0 && git_object_type(obj) == GIT_OBJECT_TREE) {
			err = pack_add_tree(src, set, git_object_id(obj), odb);
		} else if (err == 0 && !have_object(odb, git_object_id(obj))) {
			err = oidset_add_git(set, git_object_id(obj)) < 0 ? -1 : 0;
		}
		git_object_free(obj);
	}
	if (err == 0 && pushed > 0)
		err = git_reference_foreach(mirror, hide_ref_cb, walk);
	while (err == 0 && pushed > 0 && (err = git_revwalk_next(&id, walk)) == 0) {
		git_commit *c = NULL;

		if (have_object(odb, &id))
			continue;
		if ((err = git_commit_lookup(&c, src, &id)) < 0)
			break;
		err = pack_add_tree(src, set, git_commit_tree_id(c), odb);
		if (err == 0 && oidset_add_git(set, &id) < 0)
			err = -1;
		git_commit_free(c);
	}
	if (err == GIT_ITEROVER)
		err = 0;
	git_revwalk_free(walk);
	return err;
}

/* Delete the mirror refs that a refspec's destination matches but that the
 * source no longer has (git fetch --prune). */
static enum kiln_rc prune_refs(struct mirror *m, git_refspec **specs, size_t n,
			       const struct ref_updates *u, struct kiln_err *e)
{
	git_reference_iterator *it = NULL;
	struct ref_updates gone = { 0 };
	const char *name;
	enum kiln_rc rc = KILN_OK;
	size_t i;
	int err;

	if (git_reference_iterator_new(&it, m->repo) < 0)
		return kiln_git_fail(e, KILN_E_IO, "mirror %s: refs", m->path);
	while ((err = git_reference_next_name(&name, it)) == 0) {
		bool match = false;

		for (i = 0; i < n && !match; i++)
			match = git_refspec_dst_matches(specs[i], name);
		if (match && !updates_has(u, name) && updates_add(&gone, name, &(git_oid){ { 0 } }) < 0)
			break;
	}
	git_reference_iterator_free(it);
	if (err != GIT_ITEROVER)
		rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: refs", m->path);
	for (i = 0; rc == KILN_OK && i < gone.n; i++)
		if (git_reference_remove(m->repo, gone.v[i].name) < 0)
			rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: prune %s", m->path, gone.v[i].name);
	updates_free(&gone);
	return rc;
}

static int is_shallow_or_alternate(git_repository *src, const char *objects)
{
	char path[PATH_MAX];

	if (git_repository_is_shallow(src) == 1)
		return 1;
	return kiln_path_join(path, sizeof(path), objects, "info/alternates") && access(path, F_OK) == 0;
}

/* Sync from a local repository; *handled is false when the source cannot be
 * read that way (not a repository, shallow), for libgit2's transport to try. */
static enum kiln_rc sync_local(struct mirror *m, const struct sync_plan *p, const char *path,
			       git_odb *odb, bool *handled, struct kiln_err *e)
{
	git_repository *src = NULL;
	git_refspec *specs[MIRROR_MAX_REFSPECS] = { NULL };
	struct ref_updates u = { 0 };
	struct oidset set;
	git_oid *tips = NULL;
	git_odb *src_odb = NULL;
	char src_objects[PATH_MAX], dst_objects[PATH_MAX], pack_dir[PATH_MAX];
	enum kiln_rc rc = KILN_OK;
	size_t i, n_tips = 0;

	*handled = false;
	oidset_init(&set, MIRROR_MAX_REFS * 64);
	if (git_repository_open_ext(&src, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0 ||
	    git_repository_is_shallow(src) == 1) {
		git_error_clear();
		goto out;
	}
	*handled = true;
	if (!kiln_path_join(src_objects, sizeof(src_objects), git_repository_commondir(src), "objects") ||
	    !kiln_path_join(dst_objects, sizeof(dst_objects), m->path, "objects") ||
	    !kiln_path_join(pack_dir, sizeof(pack_dir), dst_objects, "pack")) {
		rc = kiln_fail(e, KILN_E_LIMIT, "mirror %s: path too long", m->path);
		goto out;
	}
	/* A new mirror starts with the source's object files (deltas and all). */
	if (m->cloned && !is_shallow_or_alternate(src, src_objects)) {
		rc = objects_link(src_objects, dst_objects, e);
		if (rc)
			goto out;
		git_odb_refresh(odb);
	}
	for (i = 0; i < p->n_normal; i++)
		if (git_refspec_parse(&specs[i], p->normal[i], 1) < 0) {
			rc = kiln_git_fail(e, KILN_E_INVALID, "refspec '%s'", p->normal[i]);
			goto out;
		}
	if (plan_updates(src, specs, p->n_normal, &u) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "refs of %s", path);
		goto out;
	}
	if (!(tips = calloc(u.n + p->n_need + 1, sizeof(*tips)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "mirror %s: out of memory", m->path);
		goto out;
	}
	for (i = 0; i < u.n; i++)
		tips[n_tips++] = u.v[i].oid;
	for (i = 0; i < p->n_need; i++) {
		size_t k;
		bool ref_tip = false;

		for (k = 0; k < u.n && !ref_tip; k++)
			ref_tip = git_oid_equal(&u.v[k].oid, &p->need[i]);
		if (!ref_tip && !have_object(odb, &p->need[i]))
			m->fetched_by_sha = true;
		tips[n_tips++] = p->need[i];
	}
	if (git_repository_odb(&src_odb, src) < 0 ||
	    plan_objects(src, m->repo, odb, tips, n_tips, &set) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "objects of %s", path);
		goto out;
	}
	if (set.n > 0) {
		rc = pack_write(src_odb, &set, pack_dir, e);
		if (rc)
			goto out;
		git_odb_refresh(odb);
	}
	/* The refs, last: each names objects that are in the mirror now. */
	for (i = 0; i < u.n; i++) {
		git_reference *ref = NULL;

		if (git_reference_create(&ref, m->repo, u.v[i].name, &u.v[i].oid, 1, NULL) < 0) {
			rc = kiln_git_fail(e, KILN_E_IO, "mirror %s: ref %s", m->path, u.v[i].name);
			goto out;
		}
		git_reference_free(ref);
	}
	rc = prune_refs(m, specs, p->n_normal, &u, e);
out:
	for (i = 0; i < p->n_normal; i++)
		git_refspec_free(specs[i]);
	updates_free(&u);
	oidset_free(&set);
	free(tips);
	git_odb_free(src_odb);
	git_repository_free(src);
	return rc;
}

enum kiln_rc mirror_acquire(struct mirror *m, const struct mirror_opts *o, struct kiln_err *e)
{
	char mirrors[PATH_MAX], lock[PATH_MAX + 8];
	struct sync_plan *p = NULL;
	const char *local = local_path(o->url);
	bool handled = false;
	git_odb *odb = NULL;
	struct kiln_err sha_err = { 0 };
	enum kiln_rc rc = KILN_OK;
	git_oid oid;
	size_t i;

	m->lock_fd = -1;
	m->repo = NULL;
	m->cloned = m->fetched_by_sha = false;
	m->lock_wait_ms = 0;
	m->max_packs = o->max_packs ? o->max_packs : MIRROR_DEFAULT_MAX_PACKS;
	if (o->n_refspecs == 0 || o->n_refspecs > MIRROR_MAX_REFSPECS)
		return kiln_fail(e, KILN_E_LIMIT, "fetch needs 1 to %d refspecs, got %zu",
				 MIRROR_MAX_REFSPECS, o->n_refspecs);
	if (o->n_want > 8)
		return kiln_fail(e, KILN_E_LIMIT, "at most 8 wanted commits, got %zu", o->n_want);
	if (!(p = calloc(1, sizeof(*p))))
		return kiln_fail(e, KILN_E_NOMEM, "mirror: out of memory");
	for (i = 0; i < o->n_want; i++)
		p->need[p->n_need++] = o->want[i];
	for (i = 0; i < o->n_refspecs; i++) {
		git_refspec *rs = NULL;

		if (git_refspec_parse(&rs, o->refspecs[i], 1) < 0) {
			rc = kiln_git_fail(e, KILN_E_INVALID, "refspec '%s'", o->refspecs[i]);
			goto out;
		}
		git_refspec_free(rs);
		if (is_sha_src(o->refspecs[i], &oid))
			p->need[p->n_need++] = oid;
		else
			p->normal[p->n_normal++] = (char *)o->refspecs[i];
	}
	if (!kiln_path_join(mirrors, sizeof(mirrors), o->state_dir, "mirrors") ||
	    !mirror_path(m->path, sizeof(m->path), o->state_dir, o->url->redacted) ||
	    snprintf(lock, sizeof(lock), "%s.lock", m->path) >= (int)sizeof(lock)) {
		rc = kiln_fail(e, KILN_E_LIMIT, "state folder path too long: %s", o->state_dir);
		goto out;
	}
	if (kiln_mkdir_p(mirrors) < 0) {
		rc = kiln_fail_errno(e, "mirrors folder %s", mirrors);
		goto out;
	}
	rc = mirror_lock(lock, o->lock_timeout_s, &m->lock_fd, &m->lock_wait_ms, e);
	if (rc)
		goto out;
	rc = open_or_init(m, o->url->redacted, e);
	if (rc)
		goto out;
	sweep_temp_files(m->path);
	drop_kiln_refs(m->repo);
	if (git_repository_odb(&odb, m->repo) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "mirror %s", m->path);
		goto out;
	}
	if (local)
		rc = sync_local(m, p, local, odb, &handled, e);
	if (rc == KILN_OK && !handled)
		rc = sync_remote(m, o, p, odb, &sha_err, e);
	for (i = 0; rc == KILN_OK && i < p->n_need; i++) {
		char hex[GIT_OID_HEXSZ + 1];

		if (have_object(odb, &p->need[i]))
			continue;
		git_oid_tostr(hex, sizeof(hex), &p->need[i]);
		rc = kiln_fail(e, KILN_E_NOTFOUND,
			       "commit %s is not in %s: not reachable from the fetched refspecs, "
			       "and fetching it by SHA failed%s%s", hex, o->url->redacted,
			       sha_err.msg[0] ? ": " : "", sha_err.msg);
	}
out:
	git_odb_free(odb);
	free(p);
	if (rc)
		mirror_release(m);
	return rc;
}

void mirror_release(struct mirror *m)
{
	if (m->repo) {
		drop_kiln_refs(m->repo);
		maybe_repack(m);
		git_repository_free(m->repo);
		m->repo = NULL;
	}
	mirror_unlock(m->lock_fd);
	m->lock_fd = -1;
}
