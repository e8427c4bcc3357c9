#include "workspace/lfs.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/sha256.h"
#include "workspace/mirror.h"

#define LFS_JSON "application/vnd.git-lfs+json"

struct ptr {
	char *path;                 /* relative to the workdir */
	struct lfs_pointer p;
	bool have;                  /* the object is in .git/lfs/objects */
};

struct ptrs {
	struct ptr *v;
	size_t n, cap;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted: other callers' calls are harmless */
}

char *lfs_batch_url(const struct ws_url *url, char *out, size_t size)
{
	size_t n = strlen(url->redacted);
	int w;

	if (url->kind != WS_URL_HTTP)
		return NULL;
	while (n > 0 && url->redacted[n - 1] == '/')
		n--;
	w = snprintf(out, size, "%.*s%s/info/lfs/objects/batch", (int)n, url->redacted,
		     n >= 4 && !strncmp(url->redacted + n - 4, ".git", 4) ? "" : ".git");
	return w > 0 && (size_t)w < size ? out : NULL;
}

/* ---- pointers in the checkout ------------------------------------------ */

/* Whether a .gitattributes in the index (or .git/info/attributes) names the
 * lfs filter: most repositories have none, and then no file's attributes
 * need looking up. */
static bool mentions_lfs(git_index *idx, const char *workdir, const char *gitdir)
{
	char path[PATH_MAX], buf[65536];
	size_t i, n = git_index_entrycount(idx);
	bool found = false;

	for (i = 0; i <= n && !found; i++) {
		const git_index_entry *ie = i < n ? git_index_get_byindex(idx, i) : NULL;
		const char *base;
		ssize_t got;
		int fd;

		if (ie) {
			base = strrchr(ie->path, '/');
			base = base ? base + 1 : ie->path;
			if (strcmp(base, ".gitattributes") || !kiln_path_join(path, sizeof(path), workdir, ie->path))
				continue;
		} else if (!kiln_path_join(path, sizeof(path), gitdir, "info/attributes")) {
			continue;
		}
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			continue;
		/* A filter=lfs line cut at the buffer's end only costs the lookups. */
		while (!found && (got = read(fd, buf, sizeof(buf) - 1)) > 0) {
			buf[got] = '\0';
			found = memmem(buf, (size_t)got, "filter=lfs", 10) != NULL || (size_t)got == sizeof(buf) - 1;
		}
		close(fd);
	}
	return found;
}

static enum kiln_rc find_pointers(git_repository *repo, const char *workdir, struct ptrs *l, struct kiln_err *e)
{
	git_index *idx = NULL;
	enum kiln_rc rc = KILN_OK;
	size_t i, n;

	if (git_repository_index(&idx, repo) < 0)
		return kiln_git_fail(e, KILN_E_IO, "LFS: index of %s", workdir);
	n = mentions_lfs(idx, workdir, git_repository_path(repo)) ? git_index_entrycount(idx) : 0;
	for (i = 0; i < n && rc == KILN_OK; i++) {
		const git_index_entry *ie = git_index_get_byindex(idx, i);
		const char *filter = NULL;
		char path[PATH_MAX], buf[LFS_POINTER_MAX + 1];
		struct lfs_pointer p;
		ssize_t got;
		int fd;

		if ((ie->mode != GIT_FILEMODE_BLOB && ie->mode != GIT_FILEMODE_BLOB_EXECUTABLE) ||
		    ie->file_size > LFS_POINTER_MAX)
			continue;
		if (git_attr_get(&filter, repo, 0, ie->path, "filter") < 0 || !filter || strcmp(filter, "lfs"))
			continue;
		if (!kiln_path_join(path, sizeof(path), workdir, ie->path))
			continue;
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		got = read(fd, buf, sizeof(buf));
		close(fd);
		if (got < 0 || lfs_pointer_parse(buf, (size_t)got, &p) < 0)
			continue; /* committed without git-lfs: left as it is */
		if (l->n == LFS_MAX_OBJECTS) {
			rc = kiln_fail(e, KILN_E_LIMIT, "LFS: more than %d pointer files", LFS_MAX_OBJECTS);
			break;
		}
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 64;
			struct ptr *v = realloc(l->v, cap * sizeof(*v));

			if (!v) {
				rc = kiln_fail(e, KILN_E_NOMEM, "LFS: out of memory");
				break;
			}
			l->v = v;
			l->cap = cap;
		}
		l->v[l->n].p = p;
		l->v[l->n].have = false;
		if (!(l->v[l->n].path = strdup(ie->path))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "LFS: out of memory");
			break;
		}
		l->n++;
	}
	git_index_free(idx);
	return rc;
}

/* <gitdir>/lfs/objects/ab/cd/abcd... as git-lfs stores them. */
static bool object_path(char *out, size_t size, const char *gitdir, const char *oid)
{
	int w = snprintf(out, size, "%s/lfs/objects/%.2s/%.2s/%s", gitdir, oid, oid + 2, oid);

	return w > 0 && (size_t)w < size;
}

/* ---- HTTP --------------------------------------------------------------- */

struct sink {
	char *buf;                  /* memory sink (the batch reply) */
	size_t len, max;
	int fd;                     /* file sink (an object), hashed */
	struct sha256 sha;
	uint64_t written, limit;
	bool over, werr;
};

static size_t on_body(char *data, size_t sz, size_t nm, void *arg)
{
	struct sink *s = arg;
	size_t n = sz * nm;

	if (s->fd >= 0) {
		if (s->written + n > s->limit) {
			s->over = true;
			return 0;
		}
		if (kiln_write_all(s->fd, data, n) < 0) {
			s->werr = true;
			return 0;
		}
		sha256_update(&s->sha, data, n);
		s->written += n;
		return n;
	}
	if (n > s->max - s->len) {
		s->over = true;
		return 0;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	return n;
}

static void curl_common(CURL *c, const struct lfs_opts *o, char *errbuf)
{
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln " PACKAGE_VERSION " (git-lfs compatible)");
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)(o->timeout_s ? o->timeout_s : 3600));
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https,http");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP));
#endif
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	if (o->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
}

/* Whether href is on the repository's scheme, host and port: only there
 * do the repository's credentials go with a download that brings no
 * headers of its own. */
static bool same_origin(const char *href, const struct ws_url *u)
{
	size_t n = strcspn(u->redacted, ":");

	if (strncmp(href, u->redacted, n) || strncmp(href + n, "://", 3))
		return false;
	href += n + 3;
	n = strlen(u->host);
	return !strncasecmp(href, u->host, n) && (href[n] == '/' || href[n] == '\0');
}

/* POST one batch of objects v[from..to) (unique oids); the reply into b. */
static enum kiln_rc batch(CURL *c, const struct lfs_opts *o, const char *endpoint, struct ptr **v, size_t n,
			  struct lfs_batch *b, struct kiln_err *e)
{
	struct curl_slist *hh = NULL;
	struct sink s = { .fd = -1, .max = LFS_MAX_REPLY_BYTES };
	char errbuf[CURL_ERROR_SIZE] = "", *body = NULL;
	json_t *req = json_object(), *objs = json_array();
	enum kiln_rc rc = KILN_OK;
	long status = 0;
	CURLcode cc;
	size_t i;

	b->v = NULL;
	b->n = 0;
	if (!req || !objs || json_object_set_new(req, "operation", json_string("download")) ||
	    json_object_set_new(req, "transfers", json_pack("[s]", "basic")) || json_object_set(req, "objects", objs)) {
		rc = kiln_fail(e, KILN_E_NOMEM, "LFS: out of memory");
		goto out;
	}
	for (i = 0; i < n; i++)
		if (json_array_append_new(objs, json_pack("{s:s,s:I}", "oid", v[i]->p.oid, "size",
							   (json_int_t)v[i]->p.size))) {
			rc = kiln_fail(e, KILN_E_NOMEM, "LFS: out of memory");
			goto out;
		}
	if (!(body = json_dumps(req, JSON_COMPACT)) || !(s.buf = malloc(s.max))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "LFS: out of memory");
		goto out;
	}
	hh = curl_slist_append(hh, "Accept: " LFS_JSON);
	hh = curl_slist_append(hh, "Content-Type: " LFS_JSON);
	curl_easy_reset(c);
	curl_common(c, o, errbuf);
	curl_easy_setopt(c, CURLOPT_URL, endpoint);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hh);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	if (o->url->user[0] || o->url->pass[0]) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, o->url->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, o->url->pass);
	}
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (s.over) {
		rc = kiln_fail(e, KILN_E_LIMIT, "LFS: %s: the batch reply is over %u bytes", endpoint,
			       LFS_MAX_REPLY_BYTES);
	} else if (cc != CURLE_OK) {
		rc = kiln_fail(e, KILN_E_IO, "LFS: %s: %s", endpoint, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	} else if (status != 200) {
		rc = kiln_fail(e, KILN_E_IO, "LFS: %s: HTTP %ld%s", endpoint, status,
			       status == 401 || status == 403 ? " (the job token was refused)" : "");
	} else {
		rc = lfs_batch_parse(s.buf, s.len, b, e);
		if (rc == KILN_OK && b->n > n)
			rc = kiln_fail(e, KILN_E_SYNTAX, "LFS: %s: %zu objects in the reply, %zu asked for", endpoint,
				       b->n, n);
	}
out:
	if (rc)
		ws_url_scrub(o->url, e->msg, sizeof(e->msg));
	curl_slist_free_all(hh);
	free(s.buf);
	free(body);
	json_decref(objs);
	json_decref(req);
	return rc;
}

/* Download ob into gitdir's object store, verified. */
static enum kiln_rc download(CURL *c, const struct lfs_opts *o, const char *gitdir, const struct lfs_obj *ob,
			     const char *path, struct kiln_err *e)
{
	struct curl_slist *hh = NULL;
	struct sink s = { .fd = -1 };
	char errbuf[CURL_ERROR_SIZE] = "", tmp[PATH_MAX], dst[PATH_MAX], hex[65];
	uint8_t digest[32];
	enum kiln_rc rc = KILN_OK;
	long status = 0;
	CURLcode cc;
	size_t i;

	if (!object_path(dst, sizeof(dst), gitdir, ob->oid) ||
	    snprintf(tmp, sizeof(tmp), "%s/lfs/tmp/%.16s-XXXXXX", gitdir, ob->oid) >= (int)sizeof(tmp))
		return kiln_fail(e, KILN_E_LIMIT, "LFS: %s: path too long", gitdir);
	*strrchr(tmp, '/') = '\0';
	if (kiln_mkdir_p(tmp) < 0)
		return kiln_fail_errno(e, "LFS: %s", tmp);
	tmp[strlen(tmp)] = '/';
	if ((s.fd = mkstemp(tmp)) < 0)
		return kiln_fail_errno(e, "LFS: %s", tmp);
	sha256_init(&s.sha);
	s.limit = ob->size;
	for (i = 0; i < ob->n_headers; i++)
		hh = curl_slist_append(hh, ob->headers[i]);
	curl_easy_reset(c);
	curl_common(c, o, errbuf);
	curl_easy_setopt(c, CURLOPT_URL, ob->href);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hh);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	if (ob->n_headers == 0 && same_origin(ob->href, o->url) && (o->url->user[0] || o->url->pass[0])) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, o->url->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, o->url->pass);
	}
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	sha256_final(&s.sha, digest);
	sha256_hex(digest, hex);
	if (s.over)
		rc = kiln_fail(e, KILN_E_INVALID, "LFS object %.12s (%s): the server sent more than its %llu bytes",
			       ob->oid, path, (unsigned long long)ob->size);
	else if (s.werr)
		rc = kiln_fail(e, KILN_E_IO, "LFS object %.12s (%s): writing %s failed", ob->oid, path, tmp);
	else if (cc != CURLE_OK)
		rc = kiln_fail(e, KILN_E_IO, "LFS object %.12s (%s): %s", ob->oid, path,
			       errbuf[0] ? errbuf : curl_easy_strerror(cc));
	else if (status != 200)
		rc = kiln_fail(e, KILN_E_IO, "LFS object %.12s (%s): HTTP %ld", ob->oid, path, status);
	else if (s.written != ob->size || strcmp(hex, ob->oid))
		rc = kiln_fail(e, KILN_E_INVALID,
			       "LFS object %.12s (%s): the download (%llu bytes, sha256 %.12s) is not the object",
			       ob->oid, path, (unsigned long long)s.written, hex);
	if (rc == KILN_OK) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s", dst);
		*strrchr(dir, '/') = '\0';
		if (kiln_mkdir_p(dir) < 0 || rename(tmp, dst) < 0)
			rc = kiln_fail_errno(e, "LFS: %s", dst);
	}
	close(s.fd);
	if (rc)
		unlink(tmp);
	curl_slist_free_all(hh);
	if (rc)
		ws_url_scrub(o->url, e->msg, sizeof(e->msg));
	return rc;
}

/* Replace the pointer file at workdir/rel by a copy of the object at src,
 * keeping its mode. */
static enum kiln_rc replace(const char *workdir, const char *rel, const char *src, struct kiln_err *e)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16], buf[65536];
	struct stat st;
	enum kiln_rc rc = KILN_OK;
	int in = -1, out = -1;
	ssize_t n;

	if (!kiln_path_join(path, sizeof(path), workdir, rel) ||
	    snprintf(tmp, sizeof(tmp), "%s.kiln-lfs-XXXXXX", path) >= (int)sizeof(tmp))
		return kiln_fail(e, KILN_E_LIMIT, "LFS: %s: path too long", rel);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return kiln_fail(e, KILN_E_INVALID, "LFS: %s is no longer a file", rel);
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0 || (out = mkstemp(tmp)) < 0) {
		rc = kiln_fail_errno(e, "LFS: %s", in < 0 ? src : tmp);
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (kiln_write_all(out, buf, (size_t)n) < 0)
			break;
	if (n != 0 || fchmod(out, st.st_mode & 07777) < 0 || rename(tmp, path) < 0)
		rc = kiln_fail_errno(e, "LFS: writing %s", rel);
out:
	if (in >= 0)
		close(in);
	if (out >= 0) {
		close(out);
		if (rc)
			unlink(tmp);
	}
	return rc;
}

enum kiln_rc lfs_fetch(const struct lfs_opts *o, struct lfs_stats *st, struct kiln_err *e)
{
	struct ptrs l = { 0 };
	struct ptr **want = NULL;
	git_repository *repo = NULL;
	CURL *c = NULL;
	char endpoint[WS_URL_MAX + 64], gitdir[PATH_MAX], obj[PATH_MAX];
	enum kiln_rc rc = KILN_OK;
	size_t i, k, n_want = 0;

	memset(st, 0, sizeof(*st));
	if (!lfs_batch_url(o->url, endpoint, sizeof(endpoint)))
		return kiln_fail(e, KILN_E_INVALID, "LFS: %s is not an http(s) URL", o->url->redacted);
	if (git_repository_open(&repo, o->workdir) < 0)
		return kiln_git_fail(e, KILN_E_IO, "LFS: %s", o->workdir);
	snprintf(gitdir, sizeof(gitdir), "%s", git_repository_path(repo));
	if (gitdir[0] && gitdir[strlen(gitdir) - 1] == '/')
		gitdir[strlen(gitdir) - 1] = '\0';
	rc = find_pointers(repo, o->workdir, &l, e);
	if (rc || l.n == 0)
		goto out;
	/* One request per object, however many files hold it. */
	if (!(want = calloc(l.n, sizeof(*want)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "LFS: out of memory");
		goto out;
	}
	for (i = 0; i < l.n; i++) {
		for (k = 0; k < n_want && strcmp(want[k]->p.oid, l.v[i].p.oid); k++)
			;
		if (k == n_want && object_path(obj, sizeof(obj), gitdir, l.v[i].p.oid) && access(obj, F_OK) < 0)
			want[n_want++] = &l.v[i];
	}
	pthread_once(&curl_once, curl_init_once);
	if (n_want && !(c = curl_easy_init())) {
		rc = kiln_fail(e, KILN_E_NOMEM, "LFS: cannot start libcurl");
		goto out;
	}
	for (i = 0; i < n_want && rc == KILN_OK; i += LFS_BATCH_SIZE) {
		size_t n = n_want - i < LFS_BATCH_SIZE ? n_want - i : LFS_BATCH_SIZE;
		struct lfs_batch b;

		rc = batch(c, o, endpoint, want + i, n, &b, e);
		for (k = 0; k < b.n && rc == KILN_OK; k++) {
			const struct lfs_obj *ob = &b.v[k];
			size_t m;

			for (m = 0; m < n && (strcmp(want[i + m]->p.oid, ob->oid) || want[i + m]->p.size != ob->size);
			     m++)
				;
			if (m == n) {
				rc = kiln_fail(e, KILN_E_SYNTAX, "LFS: the reply names object %.12s (%llu bytes), not asked for",
					       ob->oid, (unsigned long long)ob->size);
				break;
			}
			if (ob->err_code) {
				rc = kiln_fail(e, KILN_E_NOTFOUND, "LFS object %.12s (%s): the server says %d: %s", ob->oid,
					       want[i + m]->path, ob->err_code, ob->err);
				break;
			}
			rc = download(c, o, gitdir, ob, want[i + m]->path, e);
			if (rc == KILN_OK) {
				st->objects++;
				st->bytes += ob->size;
			}
		}
		lfs_batch_free(&b);
	}
	for (i = 0; i < l.n && rc == KILN_OK; i++) {
		if (!object_path(obj, sizeof(obj), gitdir, l.v[i].p.oid) || access(obj, F_OK) < 0) {
			rc = kiln_fail(e, KILN_E_NOTFOUND, "LFS object %.12s (%s): the server did not send it",
				       l.v[i].p.oid, l.v[i].path);
			break;
		}
		rc = replace(o->workdir, l.v[i].path, obj, e);
		if (rc == KILN_OK)
			st->pointers++;
	}
	if (rc == KILN_OK)
		log_debug("LFS: %u files from %u objects (%llu bytes) for %s", st->pointers, st->objects,
			  (unsigned long long)st->bytes, o->url->redacted);
out:
	if (c)
		curl_easy_cleanup(c);
	for (i = 0; i < l.n; i++)
		free(l.v[i].path);
	free(l.v);
	free(want);
	git_repository_free(repo);
	return rc;
}
