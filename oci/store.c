#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/paths.h"
#include "lib/sha256.h"
#include "oci/layers.h"
#include "oci/store.h"
#include "workspace/ext4img.h"

#define MAX_IMAGES 100000 /* the list's ceiling */

struct dirs {
	char oci[PATH_MAX], blobs[PATH_MAX], images[PATH_MAX], locks[PATH_MAX], tmp[PATH_MAX], refs[PATH_MAX];
};

static enum kiln_rc store_dirs(const char *state_dir, struct dirs *d, int create, struct kiln_err *e)
{
	if (snprintf(d->oci, sizeof(d->oci), "%s/oci", state_dir) >= (int)sizeof(d->oci) - 64)
		return kiln_fail(e, KILN_E_LIMIT, "image store: state folder %s is too long", state_dir);
	snprintf(d->blobs, sizeof(d->blobs), "%s/blobs/sha256", d->oci);
	snprintf(d->images, sizeof(d->images), "%s/images", d->oci);
	snprintf(d->locks, sizeof(d->locks), "%s/locks", d->oci);
	snprintf(d->tmp, sizeof(d->tmp), "%s/tmp", d->oci);
	snprintf(d->refs, sizeof(d->refs), "%s/refs", d->oci);
	if (create && (kiln_mkdir_p(d->blobs) != 0 || kiln_mkdir_p(d->images) != 0 || kiln_mkdir_p(d->locks) != 0 ||
		       kiln_mkdir_p(d->tmp) != 0 || kiln_mkdir_p(d->refs) != 0))
		return kiln_fail_errno(e, "image store: creating folders in %s", d->oci);
	return KILN_OK;
}

/* Open and flock path; the fd, or -1 (errno EWOULDBLOCK with LOCK_NB). */
static int lock_file(const char *path, int how)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return -1;
	while (flock(fd, how) != 0) {
		if (errno != EINTR) {
			int err = errno;

			close(fd);
			errno = err;
			return -1;
		}
	}
	return fd;
}

static uint64_t du(const char *path)
{
	struct stat st;
	uint64_t sum = 0;
	struct dirent *d;
	DIR *dir;

	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return (uint64_t)st.st_blocks * 512;
	dir = opendir(path);
	if (!dir)
		return 0;
	while ((d = readdir(dir))) {
		char p[PATH_MAX];

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", path, d->d_name) < (int)sizeof(p))
			sum += du(p);
	}
	closedir(dir);
	return sum;
}

static enum kiln_rc write_file(const char *path, const char *data, size_t n, struct kiln_err *e)
{
	char tmp[PATH_MAX];
	int fd;

	/* A name of its own: writers of one file (a reference, a last-used
	 * time) may race, and the last rename wins whole. */
	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
		return kiln_fail(e, KILN_E_LIMIT, "image store: path %s is too long", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0644) != 0) {
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		return kiln_fail_errno(e, "image store: creating %s", tmp);
	}
	if (kiln_write_all(fd, data, n) != 0 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return kiln_fail_errno(e, "image store: writing %s", tmp);
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return kiln_fail_errno(e, "image store: renaming %s", tmp);
	}
	return KILN_OK;
}

static enum kiln_rc write_meta(const char *dir, const struct oci_image *im, struct kiln_err *e)
{
	char path[PATH_MAX], *s;
	enum kiln_rc rc;
	json_t *j = json_pack("{s:s, s:s, s:I, s:I}", "reference", im->ref, "digest", im->digest, "size",
			      (json_int_t)im->size, "last_used", (json_int_t)im->last_used);

	s = j ? json_dumps(j, JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!s)
		return kiln_fail(e, KILN_E_NOMEM, "image store: out of memory");
	snprintf(path, sizeof(path), "%s/image.json", dir);
	rc = write_file(path, s, strlen(s), e);
	free(s);
	return rc;
}

static int read_meta(const char *dir, struct oci_image *im)
{
	char path[PATH_MAX];
	json_t *j;

	memset(im, 0, sizeof(*im));
	snprintf(path, sizeof(path), "%s/image.json", dir);
	j = json_load_file(path, 0, NULL);
	if (!j)
		return -1;
	snprintf(im->ref, sizeof(im->ref), "%s", json_string_value(json_object_get(j, "reference")) ?: "");
	snprintf(im->digest, sizeof(im->digest), "%s", json_string_value(json_object_get(j, "digest")) ?: "");
	im->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
	im->last_used = (time_t)json_integer_value(json_object_get(j, "last_used"));
	snprintf(im->rootfs, sizeof(im->rootfs), "%s/rootfs.ext4", dir);
	json_decref(j);
	return im->digest[0] ? 0 : -1;
}

/* Where the store remembers which image ref named for os/arch. */
static void ref_path(const struct dirs *d, const struct oci_ref *ref, const char *os, const char *arch, char *out,
		     size_t size)
{
	char canon[OCI_REF_MAX + 64], key[OCI_REF_MAX + 200], hex[65];

	oci_ref_str(ref, canon, sizeof(canon));
	snprintf(key, sizeof(key), "%s %s/%s", canon, os ? os : "linux", arch ? arch : "amd64");
	sha256_buf_hex(key, strlen(key), hex);
	snprintf(out, size, "%s/%s", d->refs, hex);
}

/* A reference file: the image's hex and the hex of what the tag named
 * (an index or the manifest itself). 0, or -1 when absent or malformed. */
static int read_ref(const char *path, char image[65], char top[65])
{
	char buf[140];
	ssize_t n = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	if (n < 129 || buf[64] != ' ')
		return -1;
	memcpy(image, buf, 64);
	memcpy(top, buf + 65, 64);
	image[64] = top[64] = '\0';
	return strspn(image, "0123456789abcdef") == 64 && strspn(top, "0123456789abcdef") == 64 ? 0 : -1;
}

/* The image hex's lock, waited for; with o's canceled, in 50 ms polls
 * that end, errno ECANCELED, once it answers nonzero. */
static int lock_file_at(const char *locks, const char *hex, const struct oci_pull_opts *o)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%.64s.lock", locks, hex);
	if (!o || !o->canceled)
		return lock_file(path, LOCK_EX);
	while ((fd = lock_file(path, LOCK_EX | LOCK_NB)) < 0 && errno == EWOULDBLOCK) {
		if (o->canceled(o->arg)) {
			errno = ECANCELED;
			return -1;
		}
		usleep(50000);
	}
	return fd;
}

/* Fetch the platform manifest for ref: through an index when there is one. */
static enum kiln_rc resolve(struct oci_client *c, const struct oci_ref *ref, const struct oci_pull_opts *o,
			    char **body, size_t *len, char mt[160], char digest[80], char top[80],
			    struct kiln_err *e)
{
	struct oci_desc pick;
	enum kiln_rc rc;

	rc = oci_get_manifest(c, ref->digest[0] ? ref->digest : ref->tag, body, len, mt, digest, e);
	if (rc == KILN_OK)
		snprintf(top, 80, "%s", digest);
	if (rc != KILN_OK || oci_mt_kind(mt) != OCI_KIND_INDEX)
		return rc;
	rc = oci_index_pick(*body, *len, mt, o && o->os ? o->os : "linux", o && o->arch ? o->arch : "amd64", &pick,
			    e);
	free(*body);
	*body = NULL;
	if (rc != KILN_OK)
		return rc;
	rc = oci_get_manifest(c, pick.digest, body, len, mt, digest, e);
	if (rc == KILN_OK && oci_mt_kind(mt) != OCI_KIND_MANIFEST) {
		free(*body);
		*body = NULL;
		rc = kiln_fail(e, KILN_E_INVALID, "registry: index entry %s is not an image manifest (%s)", pick.digest,
			       mt);
	}
	return rc;
}

/* Fetch the layers, apply them into a scratch tree, make the ext4 image
 * and the image folder beside images/, then rename it in. */
static enum kiln_rc build(const struct dirs *d, struct oci_client *c, const struct oci_manifest *m,
			  const char *manifest, size_t mlen, const char *hex, struct oci_image *im,
			  const struct oci_pull_opts *o, struct kiln_err *e)
{
	char scratch[PATH_MAX], root[PATH_MAX], stage[PATH_MAX], path[PATH_MAX], final[PATH_MAX];
	struct ext4img_stats xs;
	char (*diff_ids)[80] = NULL;
	char *config = NULL;
	enum kiln_rc rc;
	size_t i;

	snprintf(scratch, sizeof(scratch), "%s/%.16s.XXXXXX", d->tmp, hex);
	if (!mkdtemp(scratch))
		return kiln_fail_errno(e, "image store: creating a folder in %s", d->tmp);
	snprintf(root, sizeof(root), "%s/root", scratch);
	snprintf(stage, sizeof(stage), "%s/image", scratch);
	if (mkdir(root, 0755) != 0 || mkdir(stage, 0755) != 0) {
		rc = kiln_fail_errno(e, "image store: creating folders in %s", scratch);
		goto out;
	}
	rc = oci_get_blob_mem(c, &m->config, OCI_CONFIG_MAX_BYTES, &config, e);
	if (rc != KILN_OK)
		goto out;
	diff_ids = calloc(m->n_layers + 1, sizeof(*diff_ids));
	if (!diff_ids) {
		rc = kiln_fail(e, KILN_E_NOMEM, "image store: out of memory");
		goto out;
	}
	rc = oci_config_diff_ids(config, m->config.size, m->n_layers, diff_ids, e);
	if (rc != KILN_OK)
		goto out;
	for (i = 0; i < m->n_layers; i++) {
		snprintf(path, sizeof(path), "%s/%s", d->blobs, m->layers[i].digest + 7);
		if (access(path, F_OK) != 0) {
			rc = oci_get_blob_file(c, &m->layers[i], path, e);
			if (rc != KILN_OK)
				goto out;
		} else {
			utimensat(AT_FDCWD, path, NULL, 0); /* used: for the prune's blob sweep */
		}
		rc = oci_layer_apply(root, path, diff_ids[i], o ? o->canceled : NULL, o ? o->arg : NULL, NULL, e);
		if (rc != KILN_OK)
			goto out;
	}
	if (o && o->canceled && o->canceled(o->arg)) {
		rc = kiln_fail(e, KILN_E_LIMIT, "image store: pull of %s canceled", m->config.digest);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/rootfs.ext4", stage);
	rc = ext4img_build(root, path, "kiln-oci", o ? o->max_image_bytes : 0, NULL, &xs, e);
	if (rc != KILN_OK)
		goto out;
	snprintf(path, sizeof(path), "%s/manifest.json", stage);
	rc = write_file(path, manifest, mlen, e);
	if (rc != KILN_OK)
		goto out;
	snprintf(path, sizeof(path), "%s/config.json", stage);
	rc = write_file(path, config, m->config.size, e);
	if (rc != KILN_OK)
		goto out;
	im->size = du(stage);
	rc = write_meta(stage, im, e);
	if (rc != KILN_OK)
		goto out;
	snprintf(final, sizeof(final), "%s/%s", d->images, hex);
	kiln_rm_rf(final); /* a folder left by a crash between rename and now cannot exist, but be sure */
	if (rename(stage, final) != 0) {
		rc = kiln_fail_errno(e, "image store: renaming %s to %s", stage, final);
		goto out;
	}
out:
	free(diff_ids);
	free(config);
	kiln_rm_rf(scratch);
	return rc;
}

/* One try of oci_pull against api_host (ref's registry or a mirror of it)
 * with reg's options; the store is locked shared already. */
static enum kiln_rc pull_from(const struct dirs *d, const struct oci_ref *ref, const char *api_host,
			      const struct oci_registry_opts *reg, const struct oci_pull_opts *o, struct oci_image *out,
			      struct kiln_err *e)
{
	struct oci_client *c = NULL;
	struct oci_manifest m = { 0 };
	struct oci_image im, old;
	struct oci_ref at = *ref;
	struct oci_registry_opts with_cancel = *reg;
	char mt[160], digest[80], top[80], dir[PATH_MAX], refp[PATH_MAX], *body = NULL;
	char known[65], known_top[65], line[140];
	int lock_fd = -1;
	size_t len = 0;
	enum kiln_rc rc;

	memset(&im, 0, sizeof(im));
	snprintf(at.host, sizeof(at.host), "%s", api_host);
	if (o && o->canceled) {
		with_cancel.canceled = o->canceled;
		with_cancel.cancel_arg = o->arg;
	}
	rc = oci_client_new(&at, &with_cancel, &c, e);
	if (rc != KILN_OK)
		goto out;
	ref_path(d, ref, o ? o->os : NULL, o ? o->arch : NULL, refp, sizeof(refp));
	if (!ref->digest[0] && read_ref(refp, known, known_top) == 0 &&
	    oci_head_manifest(c, ref->tag, top, NULL) == KILN_OK && !strcmp(top + 7, known_top)) {
		/* The tag still names what was pulled: no manifest GET. */
		snprintf(dir, sizeof(dir), "%s/%s", d->images, known);
		lock_fd = lock_file_at(d->locks, known, o);
		if (lock_fd >= 0 && read_meta(dir, &old) == 0) {
			old.last_used = time(NULL);
			oci_ref_str(ref, old.ref, sizeof(old.ref));
			rc = write_meta(dir, &old, e);
			if (rc == KILN_OK && out)
				*out = old;
			goto out;
		}
		if (lock_fd >= 0)
			close(lock_fd);
		lock_fd = -1;
	}
	rc = resolve(c, ref, o, &body, &len, mt, digest, top, e);
	if (rc != KILN_OK)
		goto out;
	rc = oci_manifest_parse(body, len, mt, &m, e);
	if (rc != KILN_OK)
		goto out;
	lock_fd = lock_file_at(d->locks, digest + 7, o);
	if (lock_fd < 0 && errno == ECANCELED) {
		rc = kiln_fail(e, KILN_E_LIMIT, "image store: canceled while another pull built %s", digest);
		goto out;
	}
	if (lock_fd < 0) {
		rc = kiln_fail_errno(e, "image store: locking the image %s", digest);
		goto out;
	}
	snprintf(dir, sizeof(dir), "%s/%s", d->images, digest + 7);
	oci_ref_str(ref, im.ref, sizeof(im.ref));
	snprintf(im.digest, sizeof(im.digest), "%s", digest);
	im.last_used = time(NULL);
	if (read_meta(dir, &old) == 0) {
		/* Built before (perhaps while this pull waited): only mark it used. */
		im.size = old.size;
		rc = write_meta(dir, &im, e);
	} else {
		rc = build(d, c, &m, body, len, digest + 7, &im, o, e);
	}
	if (rc != KILN_OK)
		goto out;
	snprintf(im.rootfs, sizeof(im.rootfs), "%s/rootfs.ext4", dir);
	snprintf(line, sizeof(line), "%s %s\n", digest + 7, top + 7);
	rc = write_file(refp, line, strlen(line), e);
	if (rc != KILN_OK)
		goto out;
	if (out)
		*out = im;
out:
	if (lock_fd >= 0)
		close(lock_fd);
	oci_manifest_free(&m);
	free(body);
	oci_client_free(c);
	return rc;
}

enum kiln_rc oci_pull(const char *state_dir, const char *reference, const struct oci_pull_opts *o,
		      struct oci_image *out, struct kiln_err *e)
{
	static const struct oci_registry_opts none;
	struct oci_ref ref;
	struct dirs d;
	char path[PATH_MAX], line[900];
	int store_fd;
	size_t i;
	enum kiln_rc rc;

	rc = oci_ref_parse(reference, &ref, e);
	if (rc != KILN_OK)
		return rc;
	rc = store_dirs(state_dir, &d, 1, e);
	if (rc != KILN_OK)
		return rc;
	snprintf(path, sizeof(path), "%s/store.lock", d.oci);
	store_fd = lock_file(path, LOCK_SH);
	if (store_fd < 0)
		return kiln_fail_errno(e, "image store: locking %s", path);
	/* dockerd's registry-mirrors: each mirror in turn, whatever it
	 * answers, then the registry itself. */
	for (i = 0; o && i < o->n_mirrors; i++) {
		if (!(rc = pull_from(&d, &ref, o->mirrors[i].host, &o->mirrors[i].reg, o, out, e)))
			goto out;
		if (o->canceled && o->canceled(o->arg))
			goto out; /* not a mirror's fault: no fallback */
		snprintf(line, sizeof(line), "mirror %s: %s; trying the %s", o->mirrors[i].host, e ? e->msg : "failed",
			 i + 1 < o->n_mirrors ? "next mirror" : "registry itself");
		if (o->notice)
			o->notice(o->arg, line);
	}
	rc = pull_from(&d, &ref, ref.host, o ? &o->reg : &none, o, out, e);
out:
	close(store_fd);
	return rc;
}

enum kiln_rc oci_image_find(const char *state_dir, const char *reference, const char *os, const char *arch,
			    struct oci_image *out, struct kiln_err *e)
{
	char path[PATH_MAX], dir[PATH_MAX], hex[65] = "", canon[OCI_REF_MAX + 64];
	struct oci_image im;
	struct oci_ref ref;
	struct dirs d;
	enum kiln_rc rc;
	ssize_t n = -1;
	int fd;

	rc = oci_ref_parse(reference, &ref, e);
	if (rc == KILN_OK)
		rc = store_dirs(state_dir, &d, 0, e);
	if (rc != KILN_OK)
		return rc;
	ref_path(&d, &ref, os, arch, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, hex, 64);
		close(fd);
	}
	if (n != 64 && ref.digest[0])
		snprintf(hex, sizeof(hex), "%s", ref.digest + 7); /* a platform manifest named by digest */
	else if (n != 64)
		hex[0] = '\0';
	hex[64] = '\0';
	snprintf(dir, sizeof(dir), "%s/%s", d.images, hex);
	oci_ref_str(&ref, canon, sizeof(canon));
	if (!hex[0] || strspn(hex, "0123456789abcdef") != 64 || read_meta(dir, &im) != 0)
		return kiln_fail(e, KILN_E_NOTFOUND, "image %s (%s/%s) is not in the store", canon, os ? os : "linux",
				 arch ? arch : "amd64");
	im.last_used = time(NULL);
	rc = write_meta(dir, &im, e);
	if (rc == KILN_OK && out)
		*out = im;
	return rc;
}

static int by_last_used(const void *a, const void *b)
{
	const struct oci_image *x = a, *y = b;

	return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

enum kiln_rc oci_images_list(const char *state_dir, struct oci_image **out, size_t *n, struct kiln_err *e)
{
	struct oci_image *v = NULL;
	struct dirent *de;
	struct dirs d;
	size_t cnt = 0, cap = 0;
	DIR *dir;
	enum kiln_rc rc;

	*out = NULL;
	*n = 0;
	rc = store_dirs(state_dir, &d, 0, e);
	if (rc != KILN_OK)
		return rc;
	dir = opendir(d.images);
	if (!dir)
		return errno == ENOENT ? KILN_OK : kiln_fail_errno(e, "image store: reading %s", d.images);
	while ((de = readdir(dir)) && cnt < MAX_IMAGES) {
		char p[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		if (cnt == cap) {
			struct oci_image *nv;

			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(dir);
				return kiln_fail(e, KILN_E_NOMEM, "image store: out of memory");
			}
			v = nv;
		}
		snprintf(p, sizeof(p), "%s/%s", d.images, de->d_name);
		if (read_meta(p, &v[cnt]) == 0)
			cnt++;
	}
	closedir(dir);
	qsort(v, cnt, sizeof(*v), by_last_used);
	*out = v;
	*n = cnt;
	return KILN_OK;
}

/* Add the digests a manifest names to the keep set (a json object). */
static void keep_manifest(const char *dir, json_t *keep)
{
	char p[PATH_MAX];
	json_t *j, *l;
	size_t i;

	snprintf(p, sizeof(p), "%s/manifest.json", dir);
	j = json_load_file(p, 0, NULL);
	if (!j)
		return;
	json_array_foreach(json_object_get(j, "layers"), i, l) {
		const char *dg = json_string_value(json_object_get(l, "digest"));

		if (dg && strlen(dg) > 7)
			json_object_set_new(keep, dg + 7, json_true());
	}
	json_decref(j);
}

/* Remove blobs no image's manifest names; their bytes are added to *freed. */
static void sweep_blobs(const struct dirs *d, uint64_t *freed)
{
	json_t *keep = json_object();
	struct dirent *de;
	DIR *dir;

	if (!keep)
		return;
	dir = opendir(d->images);
	while (dir && (de = readdir(dir))) {
		char p[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", d->images, de->d_name);
		keep_manifest(p, keep);
	}
	if (dir)
		closedir(dir);
	dir = opendir(d->blobs);
	while (dir && (de = readdir(dir))) {
		char p[PATH_MAX];

		if (de->d_name[0] == '.' || json_object_get(keep, de->d_name))
			continue;
		snprintf(p, sizeof(p), "%s/%s", d->blobs, de->d_name);
		*freed += du(p);
		unlink(p);
	}
	if (dir)
		closedir(dir);
	json_decref(keep);
}

/* Forget references whose image is gone. */
static void sweep_refs(const struct dirs *d)
{
	struct dirent *de;
	DIR *dir = opendir(d->refs);

	while (dir && (de = readdir(dir))) {
		char p[PATH_MAX], img[PATH_MAX], hex[65] = "";
		ssize_t n = -1;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", d->refs, de->d_name);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, hex, 64);
			close(fd);
		}
		hex[n == 64 ? 64 : 0] = '\0';
		snprintf(img, sizeof(img), "%s/%s", d->images, hex);
		if (!hex[0] || access(img, F_OK) != 0)
			unlink(p);
	}
	if (dir)
		closedir(dir);
}

enum kiln_rc oci_images_prune(const char *state_dir, uint64_t cap_bytes, uint64_t *freed, struct kiln_err *e)
{
	struct oci_image *v = NULL;
	uint64_t total, gone = 0;
	char path[PATH_MAX];
	struct dirs d;
	size_t n = 0, i;
	int store_fd;
	enum kiln_rc rc;

	rc = store_dirs(state_dir, &d, 1, e);
	if (rc != KILN_OK)
		return rc;
	snprintf(path, sizeof(path), "%s/store.lock", d.oci);
	store_fd = lock_file(path, LOCK_EX);
	if (store_fd < 0)
		return kiln_fail_errno(e, "image store: locking %s", path);
	rc = oci_images_list(state_dir, &v, &n, e);
	if (rc != KILN_OK)
		goto out;
	sweep_blobs(&d, &gone);
	total = du(d.images) + du(d.blobs);
	for (i = 0; i < n && total > cap_bytes; i++) {
		char dir[PATH_MAX];
		int fd;

		snprintf(path, sizeof(path), "%s/%s.lock", d.locks, v[i].digest + 7);
		fd = lock_file(path, LOCK_EX | LOCK_NB);
		if (fd < 0)
			continue; /* in use */
		snprintf(dir, sizeof(dir), "%s/%s", d.images, v[i].digest + 7);
		gone += du(dir);
		if (kiln_rm_rf(dir) != 0) {
			rc = kiln_fail_errno(e, "image store: removing %s", dir);
			close(fd);
			goto out;
		}
		unlink(path);
		close(fd);
		sweep_blobs(&d, &gone);
		total = du(d.images) + du(d.blobs);
	}
	sweep_refs(&d);
out:
	if (freed)
		*freed = gone;
	free(v);
	close(store_fd);
	return rc;
}
