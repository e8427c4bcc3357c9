#include "workspace/checkout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "workspace/packwrite.h"
#include "lib/paths.h"
#include "lib/vec.h"

/* ---- shallow history --------------------------------------------------- */

struct shallow {
	struct oidset commits;   /* within depth, in BFS order */
	struct oidset objects;   /* everything to pack */
	git_oid *boundary;       /* commits whose parents are left out */
	size_t n_boundary;
};

/* The commits within depth of tip (breadth first, so each gets its least
 * distance, as git's upload-pack does) and their trees. */
static enum kiln_rc shallow_walk(git_repository *repo, const git_oid *tip, unsigned depth,
				 struct shallow *s, struct kiln_err *e)
{
	unsigned *dist = NULL;
	size_t dist_cap = 0, i, boundary_cap = 0;
	enum kiln_rc rc = KILN_OK;

	if (VEC_GROW(dist, dist_cap, 0, 1024, WSCO_MAX_SHALLOW_OBJECTS) || oidset_add(&s->commits, tip) < 0) {
		free(dist);
		return kiln_fail(e, KILN_E_NOMEM, "shallow history: out of memory");
	}
	dist[0] = 0;
	for (i = 0; i < s->commits.n; i++) {
		git_commit *c = NULL;
		unsigned d, p, np;

		d = dist[i];
		if (git_commit_lookup(&c, repo, &s->commits.list[i]) < 0) {
			rc = kiln_git_fail(e, KILN_E_IO, "shallow history");
			goto out;
		}
		if (pack_add_tree(repo, &s->objects, git_commit_tree_id(c), NULL) < 0 ||
		    oidset_add(&s->objects, &s->commits.list[i]) < 0) {
			git_commit_free(c);
			rc = kiln_git_fail(e, KILN_E_LIMIT, "shallow history");
			goto out;
		}
		np = git_commit_parentcount(c);
		if (d + 1 >= depth) {
			if (np > 0) {
				if (VEC_GROW(s->boundary, boundary_cap, s->n_boundary, 1, WSCO_MAX_SHALLOW_OBJECTS)) {
					git_commit_free(c);
					rc = kiln_fail(e, KILN_E_NOMEM, "shallow history: out of memory");
					goto out;
				}
				s->boundary[s->n_boundary++] = s->commits.list[i];
			}
			git_commit_free(c);
			continue;
		}
		for (p = 0; p < np; p++) {
			int r = oidset_add(&s->commits, git_commit_parent_id(c, p));

			if (r < 0) {
				git_commit_free(c);
				rc = kiln_fail(e, KILN_E_LIMIT, "shallow history: too many commits");
				goto out;
			}
			if (r == 1) {
				size_t k = s->commits.n - 1;

				if (VEC_GROW(dist, dist_cap, k, 1, WSCO_MAX_SHALLOW_OBJECTS)) {
					git_commit_free(c);
					rc = kiln_fail(e, KILN_E_NOMEM, "shallow history: out of memory");
					goto out;
				}
				dist[k] = d + 1;
			}
		}
		git_commit_free(c);
	}
out:
	free(dist);
	return rc;
}

static int cmp_oid(const void *a, const void *b)
{
	return git_oid_cmp(a, b);
}

static enum kiln_rc write_shallow_file(const char *gitdir, git_oid *boundary, size_t n,
				       struct kiln_err *e)
{
	char path[PATH_MAX], hex[GIT_OID_HEXSZ + 1];
	enum kiln_rc rc = KILN_OK;
	size_t i;
	FILE *f;

	if (n == 0)
		return KILN_OK; /* the whole history fits in depth: not shallow */
	qsort(boundary, n, sizeof(*boundary), cmp_oid);
	if (!kiln_path_join(path, sizeof(path), gitdir, "shallow"))
		return kiln_fail(e, KILN_E_LIMIT, "path too long: %s", gitdir);
	if (!(f = fopen(path, "we")))
		return kiln_fail_errno(e, "%s", path);
	for (i = 0; i < n; i++)
		fprintf(f, "%s\n", git_oid_tostr(hex, sizeof(hex), &boundary[i]));
	if (fclose(f) != 0)
		rc = kiln_fail_errno(e, "%s", path);
	return rc;
}

/* ---- refs -------------------------------------------------------------- */

struct refent {
	char *name;
	git_oid oid;
	git_oid peeled;
	bool has_peeled;
};

struct reflist {
	struct refent *v;
	size_t n, cap;
};

static void reflist_free(struct reflist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int reflist_add(struct reflist *l, const char *name, const git_oid *oid, const git_oid *peeled)
{
	struct refent *r;

	if (l->n >= WSCO_MAX_REFS) {
		git_error_set(GIT_ERROR_INVALID, "more than %d refs", WSCO_MAX_REFS);
		return -1;
	}
	if (VEC_GROW(l->v, l->cap, l->n, 1, WSCO_MAX_REFS)) {
		git_error_set_oom();
		return -1;
	}
	r = &l->v[l->n];
	if (!(r->name = strdup(name))) {
		git_error_set_oom();
		return -1;
	}
	r->oid = *oid;
	r->has_peeled = peeled != NULL;
	if (peeled)
		r->peeled = *peeled;
	l->n++;
	return 0;
}

static int cmp_ref(const void *a, const void *b)
{
	return strcmp(((const struct refent *)a)->name, ((const struct refent *)b)->name);
}

/* Add the tag objects from id down to its first non-tag target to objs. */
static int add_tag_chain(git_repository *repo, struct oidset *objs, const git_oid *id)
{
	git_oid cur = *id;
	int i;

	for (i = 0; i < 16; i++) {
		git_tag *tag = NULL;

		if (git_tag_lookup(&tag, repo, &cur) < 0) {
			git_error_clear();
			return 0;
		}
		if (oidset_add(objs, &cur) < 0) {
			git_tag_free(tag);
			return -1;
		}
		cur = *git_tag_target_id(tag);
		git_tag_free(tag);
	}
	return 0;
}

/* Add ref (matched by a refspec) to out, with its peeled target; with s
 * (shallow), only when that is a commit in s->commits, and then its tag
 * objects join s->objects. -1 with a libgit2 error. */
static int keep_ref(git_repository *mirror, git_reference *ref, struct shallow *s, struct reflist *out)
{
	const char *name = git_reference_name(ref);
	const git_oid *target = git_reference_target(ref);
	git_object *peeled = NULL;
	git_oid pid;
	bool tagged = false;
	int err = 0;

	if (!target || strncmp(name, "refs/kiln/", 10) == 0)
		return 0;
	pid = *target;
	if (git_reference_peel(&peeled, ref, GIT_OBJECT_ANY) == 0) {
		pid = *git_object_id(peeled);
		tagged = !git_oid_equal(&pid, target);
	}
	git_error_clear();
	if (s && (!peeled || git_object_type(peeled) != GIT_OBJECT_COMMIT || !oidset_has(&s->commits, &pid)))
		goto out;
	if (s && tagged && add_tag_chain(mirror, &s->objects, target) < 0) {
		err = -1;
		goto out;
	}
	err = reflist_add(out, name, target, tagged ? &pid : NULL);
out:
	git_object_free(peeled);
	return err;
}

/* The refs of the checkout: mirror refs matched by a refspec's destination,
 * and the destinations of "<sha>:<ref>" refspecs. With s (shallow), only
 * those whose commit is in s->commits; their tag objects join s->objects. */
static enum kiln_rc collect_refs(const struct wsco_opts *o, struct shallow *s, struct reflist *out,
				 struct kiln_err *e)
{
	git_reference_iterator *it = NULL;
	git_refspec *specs[MIRROR_MAX_REFSPECS] = { NULL };
	bool by_sha[MIRROR_MAX_REFSPECS];
	git_reference *ref = NULL;
	git_odb *odb = NULL;
	enum kiln_rc rc = KILN_OK;
	size_t i, n = o->n_refspecs, w;
	int err;

	if (n > MIRROR_MAX_REFSPECS)
		return kiln_fail(e, KILN_E_LIMIT, "more than %d refspecs", MIRROR_MAX_REFSPECS);
	if (git_repository_odb(&odb, o->mirror) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "mirror objects");
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *dst;
		git_oid oid;

		if (git_refspec_parse(&specs[i], o->refspecs[i], 1) < 0) {
			rc = kiln_git_fail(e, KILN_E_INVALID, "refspec '%s'", o->refspecs[i]);
			goto out;
		}
		by_sha[i] = ws_parse_sha(&oid, git_refspec_src(specs[i])) == 0;
		dst = git_refspec_dst(specs[i]);
		if (!by_sha[i] || !dst || strncmp(dst, "refs/", 5) != 0)
			continue;
		if ((s && !oidset_has(&s->commits, &oid)) || git_odb_exists(odb, &oid) != 1)
			continue;
		if (reflist_add(out, dst, &oid, NULL) < 0) {
			rc = kiln_git_fail(e, KILN_E_LIMIT, "checkout refs");
			goto out;
		}
	}
	if (git_reference_iterator_new(&it, o->mirror) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "mirror refs");
		goto out;
	}
	while ((err = git_reference_next(&ref, it)) == 0) {
		bool match = false;

		for (i = 0; i < n && !match; i++)
			match = !by_sha[i] && git_refspec_dst_matches(specs[i], git_reference_name(ref));
		err = match ? keep_ref(o->mirror, ref, s, out) : 0;
		git_reference_free(ref);
		if (err < 0) {
			rc = kiln_git_fail(e, KILN_E_LIMIT, "checkout refs");
			goto out;
		}
	}
	if (err != GIT_ITEROVER) {
		rc = kiln_git_fail(e, KILN_E_IO, "mirror refs");
		goto out;
	}
	if (out->n) /* out->v is NULL when nothing matched */
		qsort(out->v, out->n, sizeof(*out->v), cmp_ref);
	for (i = w = 0; i < out->n; i++) {
		if (w > 0 && strcmp(out->v[w - 1].name, out->v[i].name) == 0)
			free(out->v[i].name);
		else
			out->v[w++] = out->v[i];
	}
	out->n = w;
out:
	for (i = 0; i < n; i++)
		git_refspec_free(specs[i]);
	git_reference_iterator_free(it);
	git_odb_free(odb);
	return rc;
}

static enum kiln_rc write_packed_refs(const char *gitdir, const struct reflist *l, struct kiln_err *e)
{
	char path[PATH_MAX], hex[GIT_OID_HEXSZ + 1];
	enum kiln_rc rc = KILN_OK;
	size_t i;
	FILE *f;

	if (!kiln_path_join(path, sizeof(path), gitdir, "packed-refs"))
		return kiln_fail(e, KILN_E_LIMIT, "path too long: %s", gitdir);
	if (!(f = fopen(path, "we")))
		return kiln_fail_errno(e, "%s", path);
	fputs("# pack-refs with: peeled fully-peeled sorted \n", f);
	for (i = 0; i < l->n; i++) {
		fprintf(f, "%s %s\n", git_oid_tostr(hex, sizeof(hex), &l->v[i].oid), l->v[i].name);
		if (l->v[i].has_peeled)
			fprintf(f, "^%s\n", git_oid_tostr(hex, sizeof(hex), &l->v[i].peeled));
	}
	if (fclose(f) != 0)
		rc = kiln_fail_errno(e, "%s", path);
	return rc;
}

/* ---- checkout ---------------------------------------------------------- */

static enum kiln_rc set_origin(git_repository *repo, const struct wsco_opts *o, struct kiln_err *e)
{
	const char *fetch[MIRROR_MAX_REFSPECS + 1];
	size_t i, n = 0;

	for (i = 0; i < o->n_refspecs && n < MIRROR_MAX_REFSPECS; i++) {
		git_refspec *rs = NULL;
		git_oid oid;
		bool sha;

		if (git_refspec_parse(&rs, o->refspecs[i], 1) < 0)
			return kiln_git_fail(e, KILN_E_INVALID, "refspec '%s'", o->refspecs[i]);
		sha = ws_parse_sha(&oid, git_refspec_src(rs)) == 0;
		git_refspec_free(rs);
		if (!sha) /* a one-off by SHA is not a fetch spec for later */
			fetch[n++] = o->refspecs[i];
	}
	if (n == 0)
		fetch[n++] = WS_DEFAULT_REFSPEC_HEADS;
	return ws_config_add_remote(repo, "origin", o->origin_url, fetch, n, e);
}

static int spot_gitattributes(const char *root, const git_tree_entry *entry, void *payload)
{
	(void)root;
	if (strcmp(git_tree_entry_name(entry), ".gitattributes"))
		return 0;
	*(bool *)payload = true;
	return -1; /* found: stop the walk */
}

static bool file_exists(const char *dir, const char *rel)
{
	char path[PATH_MAX];

	return dir && *dir && kiln_path_join(path, sizeof(path), dir, rel) && access(path, F_OK) == 0;
}

/* Whether checking out commit can run a filter (crlf, ident). Both need an
 * attribute or core.autocrlf / core.eol; with none of them anywhere the
 * filters change no byte, and skipping them spares libgit2 a realpath()
 * and a dozen stat()s per file (some 7700 syscalls for 350 files, about
 * 5 % of a warm checkout on the development VM). Any doubt
 * (an error, a config key set, an attributes file) answers true. */
static bool filters_may_apply(git_repository *repo, const git_oid *commit)
{
	static const char *const keys[] = { "core.autocrlf", "core.eol", "core.attributesFile" };
	git_config *cfg = NULL;
	git_config_entry *ent = NULL;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	bool found = false;
	size_t i;

	if (file_exists(git_repository_path(repo), "info/attributes") || access("/etc/gitattributes", F_OK) == 0 ||
	    file_exists(getenv("XDG_CONFIG_HOME"), "git/attributes") || file_exists(getenv("HOME"), ".config/git/attributes"))
		return true;
	if (git_repository_config_snapshot(&cfg, repo) < 0)
		return true;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]) && !found; i++) {
		int r = git_config_get_entry(&ent, cfg, keys[i]);

		found = r != GIT_ENOTFOUND && (r < 0 || strcmp(keys[i], "core.autocrlf") || strcmp(ent->value, "false"));
		git_config_entry_free(ent);
		ent = NULL;
	}
	git_config_free(cfg);
	if (found)
		return true;
	if (git_commit_lookup(&c, repo, commit) < 0 || git_commit_tree(&tree, c) < 0)
		found = true;
	else if (git_tree_walk(tree, GIT_TREEWALK_PRE, spot_gitattributes, &found) < 0 && !found)
		found = true;
	git_tree_free(tree);
	git_commit_free(c);
	return found;
}

enum kiln_rc wsco_checkout(const struct wsco_opts *o, struct kiln_err *e)
{
	git_repository_init_options io;
	git_checkout_options co;
	git_repository *repo = NULL;
	git_index *old_index = NULL;
	git_odb *odb = NULL;
	struct shallow s;
	struct reflist refs = { 0 };
	char gitdir[PATH_MAX], objects[PATH_MAX], pack_dir[PATH_MAX], src_objects[PATH_MAX];
	char dot_git[PATH_MAX], old_git[PATH_MAX + 16], kept_index[PATH_MAX + 32];
	enum kiln_rc rc = KILN_OK;

	memset(&s, 0, sizeof(s));
	oidset_init(&s.commits, WSCO_MAX_SHALLOW_OBJECTS);
	oidset_init(&s.objects, WSCO_MAX_SHALLOW_OBJECTS);
	old_git[0] = '\0';
	if (o->reuse) {
		/* Everything in .git is made again except the index: it says
		 * what the files are, so that only changes get written. (The
		 * links to the mirror's packs go without freeing inodes.) */
		if (!kiln_path_join(dot_git, sizeof(dot_git), o->workdir, ".git") ||
		    snprintf(old_git, sizeof(old_git), "%s.kiln-old-git", o->workdir) >= (int)sizeof(old_git) ||
		    !kiln_path_join(kept_index, sizeof(kept_index), old_git, "index")) {
			old_git[0] = '\0';
			rc = kiln_fail(e, KILN_E_LIMIT, "checkout %s: path too long", o->workdir);
			goto out;
		}
		if (kiln_rm_rf(old_git) < 0 || rename(dot_git, old_git) < 0) {
			rc = kiln_fail_errno(e, "checkout %s: reusing the earlier checkout", o->workdir);
			goto out;
		}
	}
	git_repository_init_options_init(&io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
	io.flags = GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
	if (git_repository_init_ext(&repo, o->workdir, &io) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "checkout %s: init", o->workdir);
		goto out;
	}
	snprintf(gitdir, sizeof(gitdir), "%s", git_repository_path(repo));
	git_repository_free(repo);
	repo = NULL;
	if (!kiln_path_join(objects, sizeof(objects), gitdir, "objects") ||
	    !kiln_path_join(pack_dir, sizeof(pack_dir), objects, "pack") ||
	    !kiln_path_join(src_objects, sizeof(src_objects), git_repository_path(o->mirror), "objects")) {
		rc = kiln_fail(e, KILN_E_LIMIT, "checkout %s: path too long", o->workdir);
		goto out;
	}
	if (o->depth == 0) {
		rc = objects_link(src_objects, objects, e);
		if (rc == KILN_OK)
			rc = collect_refs(o, NULL, &refs, e);
	} else {
		rc = shallow_walk(o->mirror, o->commit, o->depth, &s, e);
		if (rc == KILN_OK)
			rc = collect_refs(o, &s, &refs, e);
		if (rc == KILN_OK && git_repository_odb(&odb, o->mirror) < 0)
			rc = kiln_git_fail(e, KILN_E_IO, "mirror objects");
		if (rc == KILN_OK)
			rc = pack_write(odb, &s.objects, pack_dir, e);
		if (rc == KILN_OK)
			rc = write_shallow_file(gitdir, s.boundary, s.n_boundary, e);
	}
	if (rc == KILN_OK)
		rc = write_packed_refs(gitdir, &refs, e);
	if (rc)
		goto out;
	if (old_git[0]) {
		char index[PATH_MAX];

		if (!kiln_path_join(index, sizeof(index), gitdir, "index") || rename(kept_index, index) < 0) {
			rc = kiln_fail_errno(e, "checkout %s: moving the earlier index", o->workdir);
			goto out;
		}
		if (git_index_open(&old_index, index) < 0) {
			rc = kiln_git_fail(e, KILN_E_IO, "checkout %s: the earlier index", o->workdir);
			goto out;
		}
	}
	if (git_repository_open(&repo, o->workdir) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "checkout %s: open", o->workdir);
		goto out;
	}
	rc = set_origin(repo, o, e);
	if (rc)
		goto out;
	git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
	co.checkout_strategy = GIT_CHECKOUT_FORCE;
	co.disable_filters = !filters_may_apply(repo, o->commit);
	if (old_index) {
		/* A copy of the old index is the baseline; files beyond it
		 * (none expected) are removed. */
		co.checkout_strategy |= GIT_CHECKOUT_REMOVE_UNTRACKED | GIT_CHECKOUT_REMOVE_IGNORED;
		co.baseline_index = old_index;
	}
	if (git_repository_set_head_detached(repo, o->commit) < 0 ||
	    (!o->no_checkout && git_checkout_head(repo, &co) < 0)) {
		char hex[GIT_OID_HEXSZ + 1];
		rc = kiln_git_fail(e, KILN_E_IO, "checkout of %s into %s",
				   git_oid_tostr(hex, sizeof(hex), o->commit), o->workdir);
	}
out:
	if (old_git[0] && kiln_rm_rf(old_git) < 0 && rc == KILN_OK)
		rc = kiln_fail_errno(e, "checkout %s: removing %s", o->workdir, old_git);
	git_index_free(old_index);
	reflist_free(&refs);
	oidset_free(&s.commits);
	oidset_free(&s.objects);
	free(s.boundary);
	git_odb_free(odb);
	git_repository_free(repo);
	return rc;
}

/* ---- submodules -------------------------------------------------------- */

struct names {
	char *v[WS_MAX_SUBMODULES];
	size_t n;
	bool overflow;
};

static int collect_name(git_submodule *sm, const char *name, void *payload)
{
	struct names *l = payload;

	(void)sm;
	if (l->n >= WS_MAX_SUBMODULES) {
		l->overflow = true;
		return 1;
	}
	if (!(l->v[l->n] = strdup(name))) {
		git_error_set_oom();
		return -1;
	}
	l->n++;
	return 0;
}

/* Remove what names the mirror's host path in a submodule's git folder. */
static void forget_clone_source(git_repository *sub)
{
	char path[PATH_MAX];

	if (kiln_path_join(path, sizeof(path), git_repository_path(sub), "FETCH_HEAD"))
		unlink(path);
	if (kiln_path_join(path, sizeof(path), git_repository_path(sub), "logs"))
		kiln_rm_rf(path);
}

static enum kiln_rc update_one(git_repository *repo, const char *name, const struct ws_url *parent,
			       const struct mirror_opts *base, const struct ws_gitopts *g, unsigned level,
			       unsigned *count, struct kiln_err *e);

/* Whether g (NULL: all) selects the top-level submodule name. */
static bool selected(git_repository *repo, const char *name, const struct ws_gitopts *g)
{
	git_submodule *sm = NULL;
	bool yes = true;

	if (!g || g->n_paths == 0)
		return true;
	if (git_submodule_lookup(&sm, repo, name) == 0) {
		yes = ws_gitopts_path_selected(g, git_submodule_path(sm));
		git_submodule_free(sm);
	}
	if (!yes)
		log_debug("workspace: submodule %s left out by GIT_SUBMODULE_PATHS", name);
	return yes;
}

static enum kiln_rc update_all(git_repository *repo, const struct ws_url *parent,
			       const struct mirror_opts *base, const struct ws_gitopts *g, unsigned level,
			       unsigned *count, struct kiln_err *e)
{
	struct names l = { .n = 0 };
	enum kiln_rc rc = KILN_OK;
	size_t i;
	int err = git_submodule_foreach(repo, collect_name, &l);

	if (err < 0 && !l.overflow) {
		rc = kiln_git_fail(e, KILN_E_IO, "submodules of %s", git_repository_workdir(repo));
		goto out;
	}
	if (l.overflow || *count + l.n > WS_MAX_SUBMODULES) {
		rc = kiln_fail(e, KILN_E_LIMIT, "more than %d submodules", WS_MAX_SUBMODULES);
		goto out;
	}
	if (l.n > 0 && level >= WS_MAX_SUBMODULE_NESTING) {
		rc = kiln_fail(e, KILN_E_LIMIT, "submodules nested more than %d deep (at %s)",
			       WS_MAX_SUBMODULE_NESTING, git_repository_workdir(repo));
		goto out;
	}
	for (i = 0; i < l.n && rc == KILN_OK; i++)
		if (level > 0 || selected(repo, l.v[i], g))
			rc = update_one(repo, l.v[i], parent, base, g, level, count, e);
out:
	for (i = 0; i < l.n; i++)
		free(l.v[i]);
	return rc;
}

/* The tip of the branch that --remote follows in the submodule's mirror:
 * .gitmodules' branch, else the mirror's HEAD, else main or master. */
static enum kiln_rc remote_tip(git_repository *mirror, git_submodule *sm, git_oid *out, struct kiln_err *e)
{
	static const char *const fallback[] = { "main", "master" };
	const char *branch = git_submodule_branch(sm);
	char ref[512];
	size_t i;

	if (branch && *branch && strcmp(branch, ".")) {
		if (snprintf(ref, sizeof(ref), "refs/heads/%s", branch) < (int)sizeof(ref) &&
		    git_reference_name_to_id(out, mirror, ref) == 0)
			return KILN_OK;
		return kiln_fail(e, KILN_E_NOTFOUND, "submodule %s: no branch '%.200s' for --remote",
				 git_submodule_name(sm), branch);
	}
	if (git_reference_name_to_id(out, mirror, "HEAD") == 0)
		return KILN_OK;
	for (i = 0; i < sizeof(fallback) / sizeof(fallback[0]); i++)
		if (snprintf(ref, sizeof(ref), "refs/heads/%s", fallback[i]) < (int)sizeof(ref) &&
		    git_reference_name_to_id(out, mirror, ref) == 0)
			return KILN_OK;
	return kiln_fail(e, KILN_E_NOTFOUND, "submodule %s: no default branch for --remote", git_submodule_name(sm));
}

/* Check out submodule sm (mirror m locked) with wsco_checkout: shallow or
 * at its branch's tip, with its .git a folder inside it (what git calls an
 * embedded repository, which git and git submodule accept). *sub gets the
 * opened submodule repository. */
static enum kiln_rc update_own_git(git_repository *repo, git_submodule *sm, const char *key,
				   const struct ws_url *su, struct mirror *m, const struct ws_gitopts *g,
				   git_oid *want, git_repository **sub, struct kiln_err *e)
{
	static const char *const specs[] = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" };
	struct wsco_opts co;
	git_config *cfg = NULL;
	char path[PATH_MAX];
	enum kiln_rc rc = KILN_OK;

	if (g->submodule_remote && (rc = remote_tip(m->repo, sm, want, e)))
		return rc;
	if (!kiln_path_join(path, sizeof(path), git_repository_workdir(repo), git_submodule_path(sm)))
		return kiln_fail(e, KILN_E_LIMIT, "submodule %s: path too long", git_submodule_name(sm));
	if (rmdir(path) < 0 && errno != ENOENT)
		return kiln_fail_errno(e, "submodule %s: %s", git_submodule_name(sm), path);
	memset(&co, 0, sizeof(co));
	co.mirror = m->repo;
	co.workdir = path;
	co.origin_url = su->redacted;
	co.commit = want;
	co.refspecs = specs;
	co.n_refspecs = 2;
	co.depth = g->submodule_depth;
	rc = wsco_checkout(&co, e);
	mirror_release(m);
	if (rc)
		return rc;
	if (git_submodule_init(sm, 1) < 0 || git_repository_config(&cfg, repo) < 0 ||
	    git_config_set_string(cfg, key, su->redacted) < 0 || git_repository_open(sub, path) < 0)
		rc = kiln_git_fail(e, KILN_E_IO, "submodule %s: config", git_submodule_name(sm));
	git_config_free(cfg);
	return rc;
}

static enum kiln_rc update_one(git_repository *repo, const char *name, const struct ws_url *parent,
			       const struct mirror_opts *base, const struct ws_gitopts *g, unsigned level,
			       unsigned *count, struct kiln_err *e)
{
	static const char *const sub_specs[] = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" };
	struct ws_url *su = NULL;
	struct mirror m = MIRROR_INIT;
	struct mirror_opts mo = *base;
	git_submodule_update_options uo;
	git_submodule *sm = NULL;
	git_repository *sub = NULL;
	git_config *cfg = NULL;
	char resolved[WS_URL_MAX];
	char key[512];
	git_oid want;
	enum kiln_rc rc = KILN_OK;

	if (snprintf(key, sizeof(key), "submodule.%s.url", name) >= (int)sizeof(key))
		return kiln_fail(e, KILN_E_LIMIT, "submodule name too long: %.64s...", name);
	if (!(su = calloc(1, sizeof(*su))))
		return kiln_fail(e, KILN_E_NOMEM, "submodule %s: out of memory", name);
	if (git_submodule_lookup(&sm, repo, name) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "submodule %s", name);
		goto out;
	}
	if (git_submodule_update_strategy(sm) == GIT_SUBMODULE_UPDATE_NONE || !git_submodule_head_id(sm))
		goto out; /* update = none, or not in the commit */
	want = *git_submodule_head_id(sm);
	if (!git_submodule_url(sm)) {
		rc = kiln_fail(e, KILN_E_INVALID, "submodule %s has no url in .gitmodules", name);
		goto out;
	}
	/* Relative to the parent's real URL (libgit2's resolver mangles file:///). */
	rc = ws_url_resolve(parent->redacted, git_submodule_url(sm), resolved, sizeof(resolved), e);
	if (rc)
		goto out;
	rc = ws_url_parse(resolved, su, e);
	if (rc)
		goto out;
	ws_url_inherit(su, parent);
	mo.url = su;
	mo.refspecs = sub_specs;
	mo.n_refspecs = 2;
	mo.want = &want;
	mo.n_want = g && g->submodule_remote ? 0 : 1;
	rc = mirror_acquire(&m, &mo, e);
	if (rc)
		goto out;
	if (g && (g->submodule_depth || g->submodule_remote)) {
		rc = update_own_git(repo, sm, key, su, &m, g, &want, &sub, e);
		if (rc)
			goto out;
		goto done;
	}
	/* Update from the mirror: point the submodule's url at it, clone (hard
	 * links, no alternates), then put the real (redacted) URL back. */
	if (git_submodule_init(sm, 1) < 0 || git_repository_config(&cfg, repo) < 0 ||
	    git_config_set_string(cfg, key, m.path) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "submodule %s: init", name);
		goto out;
	}
	git_submodule_free(sm);
	sm = NULL;
	git_submodule_update_options_init(&uo, GIT_SUBMODULE_UPDATE_OPTIONS_VERSION);
	uo.checkout_opts.checkout_strategy = GIT_CHECKOUT_FORCE;
	uo.allow_fetch = 0;
	if (git_submodule_lookup(&sm, repo, name) < 0 || git_submodule_update(sm, 0, &uo) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "submodule %s (%s)", name, su->redacted);
		goto out;
	}
	mirror_release(&m);
	if (git_config_set_string(cfg, key, su->redacted) < 0 || git_submodule_open(&sub, sm) < 0 ||
	    git_remote_set_url(sub, "origin", su->redacted) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "submodule %s: config", name);
		goto out;
	}
	forget_clone_source(sub);
done:
	(*count)++;
	log_debug("workspace: submodule %s (%s) checked out", name, su->redacted);
	if (!g || g->submodules == WSGIT_SUB_RECURSIVE)
		rc = update_all(sub, su, base, g, level + 1, count, e);
out:
	mirror_release(&m);
	git_repository_free(sub);
	git_config_free(cfg);
	git_submodule_free(sm);
	if (su) {
		ws_url_wipe(su);
		free(su);
	}
	return rc;
}

enum kiln_rc wsco_submodules(const char *workdir, const struct ws_url *parent,
			     const struct mirror_opts *base, unsigned *count, struct kiln_err *e)
{
	git_repository *repo = NULL;
	enum kiln_rc rc;

	*count = 0;
	if (git_repository_open(&repo, workdir) < 0)
		return kiln_git_fail(e, KILN_E_IO, "checkout %s", workdir);
	rc = update_all(repo, parent, base, NULL, 0, count, e);
	git_repository_free(repo);
	return rc;
}

enum kiln_rc wsco_submodules_opts(const char *workdir, const struct ws_url *parent,
				  const struct mirror_opts *base, const struct ws_gitopts *g,
				  unsigned *count, struct kiln_err *e)
{
	git_repository *repo = NULL;
	enum kiln_rc rc;

	*count = 0;
	if (git_repository_open(&repo, workdir) < 0)
		return kiln_git_fail(e, KILN_E_IO, "checkout %s", workdir);
	rc = update_all(repo, parent, base, g, 0, count, e);
	git_repository_free(repo);
	return rc;
}

/* ---- overlay ----------------------------------------------------------- */

/* Open the folder that holds the last component of rel, below root,
 * without following symbolic links. With create, missing folders are made
 * and non-folders in the way replaced; without, a missing one gives -1 with
 * errno ENOENT. The last component goes to *leaf (pointing into buf). */
static int open_parent_beneath(int root, const char *rel, char *buf, size_t size, bool create,
			       const char **leaf)
{
	char *comp, *slash;
	int cur;

	if (strlen(rel) >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, rel);
	cur = fcntl(root, F_DUPFD_CLOEXEC, 0);
	for (comp = buf; cur >= 0 && (slash = strchr(comp, '/')); comp = slash + 1) {
		int next;

		*slash = '\0';
		if (!*comp || strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0 || strcmp(comp, ".git") == 0) {
			close(cur);
			errno = EINVAL;
			return -1;
		}
		next = openat(cur, comp, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
		if (next < 0 && create && (errno == ENOTDIR || errno == ELOOP)) {
			unlinkat(cur, comp, 0);
			errno = ENOENT;
		}
		if (next < 0 && create && errno == ENOENT && mkdirat(cur, comp, 0755) == 0)
			next = openat(cur, comp, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
		close(cur);
		cur = next;
	}
	if (cur >= 0 && (!*comp || strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0 ||
			 strcmp(comp, ".git") == 0)) {
		close(cur);
		errno = EINVAL;
		return -1;
	}
	*leaf = comp;
	return cur;
}

/* Remove leaf (a file, link or whole folder) from dir; path names it. */
static int remove_at(int dir, const char *leaf, const char *path)
{
	struct stat st;

	if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode))
		return kiln_rm_rf(path);
	return unlinkat(dir, leaf, 0);
}

static enum kiln_rc overlay_one(const char *dirty_dir, const char *workdir, int root, const char *rel,
				uint64_t *bytes, struct kiln_err *e)
{
	char src[PATH_MAX], dst[PATH_MAX], buf[PATH_MAX], target[PATH_MAX];
	const char *leaf = NULL;
	struct stat st;
	enum kiln_rc rc = KILN_OK;
	bool present;
	int dir = -1, in = -1;
	ssize_t n;

	if (!kiln_path_join(src, sizeof(src), dirty_dir, rel) || !kiln_path_join(dst, sizeof(dst), workdir, rel))
		return kiln_fail(e, KILN_E_LIMIT, "overlay: path too long: %s", rel);
	present = lstat(src, &st) == 0;
	if (!present && errno != ENOENT)
		return kiln_fail_errno(e, "overlay: %s", src);
	if (present && S_ISDIR(st.st_mode))
		return KILN_OK; /* its files come as their own entries */
	dir = open_parent_beneath(root, rel, buf, sizeof(buf), present, &leaf);
	if (dir < 0) {
		if (!present && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
			return KILN_OK; /* deleted there, absent here */
		return kiln_fail_errno(e, "overlay: %s", dst);
	}
	if (remove_at(dir, leaf, dst) < 0) {
		rc = kiln_fail_errno(e, "overlay: remove %s", dst);
		goto out;
	}
	if (!present)
		goto out;
	if (S_ISLNK(st.st_mode)) {
		n = readlink(src, target, sizeof(target) - 1);
		if (n < 0) {
			rc = kiln_fail_errno(e, "overlay: readlink %s", src);
			goto out;
		}
		target[n] = '\0';
		if (symlinkat(target, dir, leaf) < 0)
			rc = kiln_fail_errno(e, "overlay: symlink %s", dst);
	} else if (S_ISREG(st.st_mode)) {
		in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (in < 0) {
			rc = kiln_fail_errno(e, "overlay: %s", src);
			goto out;
		}
		rc = file_copy_at(in, dir, leaf, st.st_mode & 0777, dst, bytes, e);
		if (rc == KILN_OK && *bytes > WSCO_MAX_OVERLAY_BYTES)
			rc = kiln_fail(e, KILN_E_LIMIT, "overlay of %s: more than %llu bytes", dirty_dir,
				       (unsigned long long)WSCO_MAX_OVERLAY_BYTES);
	}
	/* Sockets, fifos and devices are left out. */
out:
	if (in >= 0)
		close(in);
	close(dir);
	return rc;
}

enum kiln_rc wsco_overlay(const char *dirty_dir, const char *workdir, unsigned *count,
			  struct kiln_err *e)
{
	git_repository *repo = NULL;
	git_status_list *list = NULL;
	git_status_options so;
	enum kiln_rc rc = KILN_OK;
	uint64_t bytes = 0;
	size_t i, n;
	int root = -1;

	*count = 0;
	if (git_repository_open(&repo, dirty_dir) < 0 || git_repository_is_bare(repo)) {
		rc = kiln_git_fail(e, KILN_E_INVALID, "dirty tree %s is not the top of a git working tree",
				   dirty_dir);
		goto out;
	}
	git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
	so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
		   GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(&list, repo, &so) < 0) {
		rc = kiln_git_fail(e, KILN_E_IO, "dirty tree %s: status", dirty_dir);
		goto out;
	}
	n = git_status_list_entrycount(list);
	if (n > WSCO_MAX_OVERLAY_FILES) {
		rc = kiln_fail(e, KILN_E_LIMIT, "dirty tree %s has %zu changed files, more than %d",
			       dirty_dir, n, WSCO_MAX_OVERLAY_FILES);
		goto out;
	}
	root = open(workdir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (root < 0) {
		rc = kiln_fail_errno(e, "overlay: %s", workdir);
		goto out;
	}
	for (i = 0; i < n && rc == KILN_OK; i++) {
		const git_status_entry *se = git_status_byindex(list, i);
		const git_diff_delta *d = se->index_to_workdir ? se->index_to_workdir : se->head_to_index;
		const char *rel;

		if (!d)
			continue;
		rel = d->new_file.path ? d->new_file.path : d->old_file.path;
		rc = overlay_one(dirty_dir, workdir, root, rel, &bytes, e);
		(*count)++;
	}
out:
	if (root >= 0)
		close(root);
	git_status_list_free(list);
	git_repository_free(repo);
	return rc;
}
