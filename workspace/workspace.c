#include "workspace/workspace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>

#include "lib/clock.h"
#include "workspace/ext4img.h"
#include "workspace/fstree.h"
#include "workspace/gitstream.h"
#include "workspace/gittls.h"
#include "workspace/lfs.h"
#include "lib/log.h"
#include "workspace/mirror.h"
#include "lib/paths.h"
#include "workspace/checkout.h"

char *ws_redact_url(const char *url, char *out, size_t size)
{
	struct ws_url *u = malloc(sizeof(*u));
	char *ret = NULL;

	if (!u)
		return NULL;
	if (ws_url_parse(url, u, NULL) == KILN_OK && strlen(u->redacted) < size) {
		strcpy(out, u->redacted);
		ret = out;
	}
	ws_url_wipe(u);
	free(u);
	return ret;
}

/* libgit2 stays initialised for the life of the process: initialising it
 * loads the CA certificates (several ms), once is enough. Its sockets are
 * ours (gitstream.h: time limits, no 40 ms delayed-ACK stalls). */
static int git_init_rc;
static pthread_once_t git_once = PTHREAD_ONCE_INIT;

static void git_init_once(void)
{
	git_init_rc = git_libgit2_init();
	if (git_init_rc >= 0 && (gitstream_register() < 0 || gittls_register() < 0))
		git_init_rc = -1;
}

/* A relative path of plain components: no "", ".", ".." or ".git". */
static bool valid_project_path(const char *p)
{
	const char *c = p;

	if (!*p || *p == '/' || strlen(p) > 255)
		return false;
	while (*c) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && strncmp(c, "..", 2) == 0) ||
		    (n == 4 && strncmp(c, ".git", 4) == 0))
			return false;
		c += n;
		if (*c == '/')
			c++;
		if (!*c && c[-1] == '/')
			return false;
	}
	return true;
}

static enum kiln_rc check_spec(const struct ws_spec *s, struct kiln_err *e)
{
	git_oid oid;

	if (!s->state_dir || !*s->state_dir)
		return kiln_fail(e, KILN_E_INVALID, "workspace: state folder not set");
	if (!s->url)
		return kiln_fail(e, KILN_E_INVALID, "workspace: repository URL not set");
	if (ws_parse_sha(&oid, s->sha) < 0)
		return kiln_fail(e, KILN_E_INVALID, "workspace: sha '%.64s' is not 40 hex digits",
				 s->sha ? s->sha : "");
	if (!s->project_path || !valid_project_path(s->project_path))
		return kiln_fail(e, KILN_E_INVALID,
				 "workspace: project path '%.255s' must be relative, without '.', '..' or '.git'",
				 s->project_path ? s->project_path : "");
	if (!s->image_path || !*s->image_path)
		return kiln_fail(e, KILN_E_INVALID, "workspace: image path not set");
	if (s->n_refspecs > MIRROR_MAX_REFSPECS || (s->n_refspecs && !s->refspecs))
		return kiln_fail(e, KILN_E_LIMIT, "workspace: %zu refspecs, at most %d", s->n_refspecs,
				 MIRROR_MAX_REFSPECS);
	if (s->depth > WS_MAX_DEPTH)
		return kiln_fail(e, KILN_E_LIMIT, "workspace: depth %u, at most %u", s->depth, WS_MAX_DEPTH);
	return KILN_OK;
}

/* Remove the build folders of jobs that died: a live one is flocked. */
static void sweep_tmp(const char *tmp_dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(tmp_dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd;

		if (strncmp(de->d_name, "ws-", 3) != 0 || !kiln_path_join(path, sizeof(path), tmp_dir, de->d_name))
			continue;
		fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			log_debug("workspace: removing %s, left by a job that ended", path);
			kiln_rm_rf(path);
		}
		close(fd);
	}
	closedir(d);
}

/* Make parent folders of path (not path itself) below base. */
static int mkdir_parents(const char *path)
{
	char buf[PATH_MAX];
	char *slash;

	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	slash = strrchr(buf, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	return kiln_mkdir_p(buf);
}

/* <tree>/kept holds the project path of a clean checkout in <tree>/root. */
#define WS_TREE_MARK "kept"

/* Take the kept checkout at tree (made when missing) without waiting: the
 * locked descriptor, or -1 when another job holds it or it cannot be made.
 * *reuse is set when the mark names project_path; the mark is removed either
 * way (it is written again after a clean job), and a root that cannot be
 * reused is emptied. */
static int tree_take(const char *tree, const char *project_path, bool *reuse)
{
	char mark[PATH_MAX], root[PATH_MAX], got[300];
	int fd, mfd;

	*reuse = false;
	if (!kiln_path_join(mark, sizeof(mark), tree, WS_TREE_MARK) ||
	    !kiln_path_join(root, sizeof(root), tree, "root") || kiln_mkdir_p(tree) < 0)
		return -1;
	fd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		goto fail;
	mfd = open(mark, O_RDONLY | O_CLOEXEC);
	if (mfd >= 0) {
		ssize_t n = read(mfd, got, sizeof(got) - 1);

		close(mfd);
		*reuse = n > 0 && (size_t)n == strlen(project_path) && memcmp(got, project_path, (size_t)n) == 0;
	}
	if ((unlink(mark) < 0 && errno != ENOENT) || (!*reuse && kiln_rm_rf(root) < 0))
		goto fail;
	return fd;
fail:
	log_debug("workspace: not reusing %s: %s", tree, strerror(errno));
	*reuse = false;
	close(fd);
	return -1;
}

/* Mark the checkout under tree as clean for the next job on project_path. */
static void tree_keep(const char *tree, const char *project_path)
{
	char mark[PATH_MAX];
	int fd;

	if (!kiln_path_join(mark, sizeof(mark), tree, WS_TREE_MARK))
		return;
	fd = open(mark, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || kiln_write_all(fd, project_path, strlen(project_path)) < 0)
		log_warn("workspace: cannot mark %s: %s", mark, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Where the blank images of the workspace's size are kept (ext4img.h):
 * STATE/blanks; NULL (mke2fs -d) when the path does not fit. */
static const char *blanks_dir(const struct ws_spec *spec, char *buf, size_t size)
{
	return kiln_path_join(buf, size, spec->state_dir, "blanks");
}

/* GIT_STRATEGY none or empty: an image holding the project folder, empty
 * but for extra_dirs, made in the temporary folder tmp (created here and
 * flocked through *tmp_fd, which the caller closes). */
static enum kiln_rc prepare_empty(const struct ws_spec *spec, struct ws_result *res, char *tmp, int *tmp_fd,
				  struct kiln_err *e)
{
	struct ext4img_stats ist;
	char work[PATH_MAX], blanks[PATH_MAX];
	enum kiln_rc rc;
	long t0 = mono_ms();
	size_t i;

	if (!mkdtemp(tmp))
		return kiln_fail_errno(e, "workspace: temporary folder %s", tmp);
	/* Flocked as a checkout's folder is: unlocked, the sweep_tmp of a job
	 * starting beside this one takes it for a dead job's and removes it
	 * under mke2fs. */
	*tmp_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*tmp_fd < 0 || flock(*tmp_fd, LOCK_EX) < 0)
		return kiln_fail_errno(e, "workspace: lock %s", tmp);
	if (!kiln_path_join(work, sizeof(work), tmp, spec->project_path))
		return kiln_fail(e, KILN_E_LIMIT, "workspace: path too long: %s/%s", tmp, spec->project_path);
	if (kiln_mkdir_p(work) < 0)
		return kiln_fail_errno(e, "workspace: %s", work);
	for (i = 0; i < spec->n_extra_dirs; i++) {
		struct fstree_stats fst;

		rc = fstree_copy(spec->extra_dirs[i], work, NULL, NULL, &fst, e);
		if (rc)
			return rc;
		res->extra_files += fst.files;
	}
	res->checkout_ms = mono_ms() - t0;
	t0 = mono_ms();
	rc = ext4img_build(tmp, spec->image_path, "kiln-ws", spec->max_image_bytes,
			   blanks_dir(spec, blanks, sizeof(blanks)), &ist, e);
	res->image_ms = mono_ms() - t0;
	res->content_bytes = ist.content_bytes;
	res->image_bytes = ist.image_bytes;
	return rc;
}

/* LFS objects for the checkout at work: over http(s) only, where GitLab
 * serves them (lfs.h). */
static enum kiln_rc fetch_lfs(const struct ws_spec *spec, const struct ws_url *url, const char *work,
			      struct ws_result *res, struct kiln_err *e)
{
	struct lfs_opts lo = { .workdir = work, .url = url, .timeout_s = spec->fetch_timeout_s };
	struct lfs_stats ls;
	char bundle[PATH_MAX];
	enum kiln_rc rc;

	if (url->kind != WS_URL_HTTP)
		return KILN_OK;
	/* The bundle that `kiln run` gives libgit2 (the system's CAs and the
	 * runners' tls_ca_file, gitlab/daemon.c) is trusted for LFS too. */
	if (kiln_path_join(bundle, sizeof(bundle), spec->state_dir, "tls/git-ca-bundle.pem") &&
	    access(bundle, R_OK) == 0)
		lo.ca_file = bundle;
	rc = lfs_fetch(&lo, &ls, e);
	res->lfs_files = ls.pointers;
	return rc;
}

enum kiln_rc ws_prepare(const struct ws_spec *spec, struct ws_result *res, struct kiln_err *e)
{
	static const char *const default_specs[] = { WS_DEFAULT_REFSPEC_HEADS, WS_DEFAULT_REFSPEC_TAGS };
	struct ws_url *url = NULL;
	struct mirror m = MIRROR_INIT;
	struct mirror_opts mo;
	struct wsco_opts co;
	struct ext4img_stats ist;
	char tmp_dir[PATH_MAX], tmp[PATH_MAX], work[PATH_MAX], tree[PATH_MAX], blanks[PATH_MAX];
	const char *const *specs = spec->n_refspecs ? spec->refspecs : default_specs;
	size_t n_specs = spec->n_refspecs ? spec->n_refspecs : 2;
	enum kiln_rc rc;
	git_oid oid;
	long t0;
	int tmp_fd = -1;
	bool in_tree = false, reuse = false, dirtied = false;
	size_t i;

	memset(res, 0, sizeof(*res));
	tmp[0] = '\0';
	rc = check_spec(spec, e);
	if (rc)
		return rc;
	ws_parse_sha(&oid, spec->sha);
	if (!(url = calloc(1, sizeof(*url))))
		return kiln_fail(e, KILN_E_NOMEM, "workspace: out of memory");
	rc = ws_url_parse(spec->url, url, e);
	if (rc)
		goto out;
	pthread_once(&git_once, git_init_once);
	if (git_init_rc < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "libgit2 init");
		goto out;
	}
	if (url->kind == WS_URL_SSH && !(git_libgit2_features() & GIT_FEATURE_SSH)) {
		rc = kiln_fail(e, KILN_E_INVALID, "%s: this libgit2 was built without ssh support; use an https URL",
			       url->redacted);
		goto out;
	}
	if (!kiln_path_join(tmp_dir, sizeof(tmp_dir), spec->state_dir, "tmp") ||
	    snprintf(tmp, sizeof(tmp), "%s/ws-XXXXXX", tmp_dir) >= (int)sizeof(tmp)) {
		tmp[0] = '\0';
		rc = kiln_fail(e, KILN_E_LIMIT, "workspace: state folder path too long: %s", spec->state_dir);
		goto out;
	}
	if (kiln_mkdir_p(tmp_dir) < 0) {
		tmp[0] = '\0';
		rc = kiln_fail_errno(e, "workspace: %s", tmp_dir);
		goto out;
	}
	sweep_tmp(tmp_dir);
	if (spec->git && (spec->git->strategy == WSGIT_NONE || spec->git->strategy == WSGIT_EMPTY)) {
		rc = prepare_empty(spec, res, tmp, &tmp_fd, e);
		goto out;
	}
	if (mirror_path(work, sizeof(work), spec->state_dir, url->redacted))
		mirror_sweep(spec->state_dir, spec->mirror_max_age_days, work);

	/* 1. The mirror. */
	memset(&mo, 0, sizeof(mo));
	mo.state_dir = spec->state_dir;
	mo.url = url;
	mo.refspecs = specs;
	mo.n_refspecs = n_specs;
	mo.want = &oid;
	mo.n_want = 1;
	mo.lock_timeout_s = spec->lock_timeout_s;
	mo.fetch_timeout_s = spec->fetch_timeout_s;
	mo.max_packs = spec->mirror_max_packs;
	t0 = mono_ms();
	rc = mirror_acquire(&m, &mo, e);
	res->lock_wait_ms = m.lock_wait_ms;
	res->mirror_cloned = m.cloned;
	res->fetched_by_sha = m.fetched_by_sha;
	res->mirror_ms = mono_ms() - t0 - m.lock_wait_ms;
	if (rc) {
		size_t n = e ? strlen(e->msg) : 0;

		if (rc == KILN_E_NOTFOUND && spec->ref && e)
			snprintf(e->msg + n, sizeof(e->msg) - n, " (job ref %s)", spec->ref);
		tmp[0] = '\0';
		goto out;
	}
	log_debug("workspace: %s %s in %ld ms", m.cloned ? "cloned" : "fetched", url->redacted, res->mirror_ms);

	/* 2. The checkout: updated in place in the repository's kept one when
	 * that is free, else in a folder of its own; either is flocked. */
	t0 = mono_ms();
	/* Without a checkout the kept one's files would stay: a folder of its own. */
	if (!spec->fresh_checkout && !(spec->git && !spec->git->checkout) &&
	    mirror_tree_path(tree, sizeof(tree), spec->state_dir, m.path) &&
	    snprintf(tmp, sizeof(tmp), "%s/root", tree) < (int)sizeof(tmp))
		tmp_fd = tree_take(tree, spec->project_path, &reuse);
	if (tmp_fd >= 0) {
		in_tree = true;
	} else {
		snprintf(tmp, sizeof(tmp), "%s/ws-XXXXXX", tmp_dir);
		if (!mkdtemp(tmp)) {
			rc = kiln_fail_errno(e, "workspace: temporary folder under %s", tmp_dir);
			tmp[0] = '\0';
			goto out;
		}
		tmp_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (tmp_fd < 0 || flock(tmp_fd, LOCK_EX) < 0) {
			rc = kiln_fail_errno(e, "workspace: lock %s", tmp);
			goto out;
		}
	}
	if (!kiln_path_join(work, sizeof(work), tmp, spec->project_path)) {
		rc = kiln_fail(e, KILN_E_LIMIT, "workspace: path too long: %s/%s", tmp, spec->project_path);
		goto out;
	}
	if (mkdir_parents(work) < 0) {
		rc = kiln_fail_errno(e, "workspace: %s", work);
		goto out;
	}
	memset(&co, 0, sizeof(co));
	co.mirror = m.repo;
	co.workdir = work;
	co.origin_url = url->redacted;
	co.commit = &oid;
	co.refspecs = specs;
	co.n_refspecs = n_specs;
	co.depth = spec->depth;
	co.reuse = reuse;
	co.no_checkout = spec->git && !spec->git->checkout;
	rc = wsco_checkout(&co, e);
	if (rc && reuse) {
		log_warn("workspace: updating the kept checkout in %s failed, checking out afresh: %s", tmp, e->msg);
		co.reuse = reuse = false;
		if (kiln_rm_rf(tmp) < 0 || mkdir_parents(work) < 0)
			rc = kiln_fail_errno(e, "workspace: emptying %s", tmp);
		else
			rc = wsco_checkout(&co, e);
	}
	res->tree_reused = rc == KILN_OK && reuse;
	mirror_release(&m);
	if (rc)
		goto out;
	/* Submodules and a dirty overlay write what the next update could
	 * miss (nested repositories, files staged from elsewhere): such a
	 * checkout is not kept past this job. Extra folders only add and
	 * replace files, which the next update removes or restores (their
	 * inode and ctime differ from the index's). */
	dirtied = spec->submodules || spec->dirty_dir;
	if (spec->git) {
		/* Without a checkout there is no index for the next update
		 * to start from; LFS objects replace files behind it. */
		dirtied = spec->git->submodules != WSGIT_SUB_NONE || spec->dirty_dir || !spec->git->checkout;
		if (spec->git->checkout && spec->git->submodules != WSGIT_SUB_NONE)
			rc = wsco_submodules_opts(work, url, &mo, spec->git, &res->submodules, e);
		if (rc)
			goto out;
	} else if (spec->submodules) {
		rc = wsco_submodules(work, url, &mo, &res->submodules, e);
		if (rc)
			goto out;
	}
	if (spec->git && spec->git->lfs && spec->git->checkout) {
		rc = fetch_lfs(spec, url, work, res, e);
		if (rc)
			goto out;
		dirtied = dirtied || res->lfs_files > 0;
	}
	if (spec->dirty_dir) {
		rc = wsco_overlay(spec->dirty_dir, work, &res->overlay_files, e);
		if (rc)
			goto out;
	}
	for (i = 0; i < spec->n_extra_dirs; i++) {
		struct fstree_stats fst;

		rc = fstree_copy(spec->extra_dirs[i], work, NULL, NULL, &fst, e);
		if (rc)
			goto out;
		res->extra_files += fst.files;
	}
	res->checkout_ms = mono_ms() - t0;

	/* 3. The image. */
	t0 = mono_ms();
	rc = ext4img_build(tmp, spec->image_path, "kiln-ws", spec->max_image_bytes,
			   blanks_dir(spec, blanks, sizeof(blanks)), &ist, e);
	res->image_ms = mono_ms() - t0;
	res->content_bytes = ist.content_bytes;
	res->image_bytes = ist.image_bytes;
	if (rc == KILN_OK)
		log_debug("workspace: %s at %.12s%s%s: mirror %ld ms, checkout %ld ms, image %ld ms (%llu MiB)",
			  url->redacted, spec->sha, spec->ref ? " " : "", spec->ref ? spec->ref : "",
			  res->mirror_ms, res->checkout_ms, res->image_ms,
			  (unsigned long long)(res->image_bytes >> 20));
out:
	mirror_release(&m);
	if (in_tree) {
		if (rc == KILN_OK && !dirtied)
			tree_keep(tree, spec->project_path);
		else if (rc != KILN_OK && kiln_rm_rf(tmp) < 0)
			log_warn("workspace: cannot remove %s: %s", tmp, strerror(errno));
		tmp[0] = '\0';
	}
	if (tmp[0] && kiln_rm_rf(tmp) < 0)
		log_warn("workspace: cannot remove %s: %s", tmp, strerror(errno));
	if (tmp_fd >= 0)
		close(tmp_fd);
	if (rc && unlink(spec->image_path) < 0 && errno != ENOENT)
		log_warn("workspace: cannot remove %s: %s", spec->image_path, strerror(errno));
	if (rc && e && url)
		ws_url_scrub(url, e->msg, sizeof(e->msg));
	if (url) {
		ws_url_wipe(url);
		free(url);
	}
	return rc;
}
