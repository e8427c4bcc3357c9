#include "cache/store.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/s3.h"
#include "lib/paths.h"
#include "lib/readfile.h"

#define SECRET_FILE_MAX 4096

static bool hex7(const char *p)
{
	int i;

	for (i = 0; i < 7; i++)
		if (!p[i] || !strchr("0123456789abcdefABCDEF", p[i]))
			return false;
	return true;
}

static bool partition(const char *p)
{
	return p[0] == 't' && p[1] >= '1' && p[1] <= '3' && p[2] == '_';
}

void cache_short_token(const char *token, char *out, size_t size)
{
	const char *p = token ? token : "";

	if (!strncmp(p, "glrt-", 5)) {
		p += 5;
		if (partition(p))
			p += 3;
	} else if (partition(p)) {
		p += 3;
	} else if (!strncmp(p, "glrtr-", 6)) {
		p += 6;
	} else if (!strncmp(p, "glcbt-", 6)) {
		p += 6;
	} else if (!strncmp(p, "GR", 2) && hex7(p + 2)) {
		p += 9;
	}
	snprintf(out, size, "%.9s", p);
}

/* path.Join's cleaning of key into out: empty and "." segments dropped,
 * ".." takes the previous one away; false when ".." would climb above the
 * start or nothing is left. */
static bool clean_key(const char *key, char *out, size_t size)
{
	size_t n = 0;

	while (*key) {
		size_t len = strcspn(key, "/");

		if (len == 0 || (len == 1 && key[0] == '.')) {
			/* nothing */
		} else if (len == 2 && key[0] == '.' && key[1] == '.') {
			if (n == 0)
				return false;
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--; /* the '/' before it */
		} else {
			if (n + (n ? 1 : 0) + len + 1 > size)
				return false;
			if (n)
				out[n++] = '/';
			memcpy(out + n, key, len);
			n += len;
		}
		key += len;
		if (*key == '/')
			key++;
	}
	out[n] = '\0';
	return n > 0;
}

bool cache_object_name(const struct cache_store *s, long long project_id, const char *key, char *out,
		       size_t size)
{
	const struct kiln_cache_config *c = s->cfg;
	char tok[16], prefix[512], clean[512];
	const char *path = c && c->path ? c->path : "";
	size_t n;

	if (!key || !clean_key(key, clean, sizeof(clean)))
		return false;
	while (*path == '/')
		path++;
	n = strlen(path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	if (c && c->shared) {
		snprintf(prefix, sizeof(prefix), "%.*s%sproject", (int)n, path, n ? "/" : "");
	} else {
		cache_short_token(s->runner_token, tok, sizeof(tok));
		if (!tok[0])
			return false;
		snprintf(prefix, sizeof(prefix), "%.*s%srunner/%s/project", (int)n, path, n ? "/" : "", tok);
	}
	return (size_t)snprintf(out, size, "%s/%lld/%s", prefix, project_id, clean) < size;
}

bool cache_local_path(const struct cache_store *s, const char *project, const char *folder, char *out,
		      size_t size)
{
	return (size_t)snprintf(out, size, "%s/%s/%s/cache.zip", s->local_root, project, folder) < size;
}

bool cache_store_remote(const struct cache_store *s)
{
	return s->cfg && s->cfg->type && !strcmp(s->cfg->type, "s3");
}

/* The client for s's bucket, its secret read now (a file may have been
 * rotated). Keys are filled into the caller's buffers. */
static bool client(const struct cache_store *s, struct s3_client *c, char *ak, char *sk, char *tok,
		   char *why, size_t wsize)
{
	const struct kiln_cache_s3 *o = &s->cfg->s3;
	struct kiln_err e = { 0 };

	memset(c, 0, sizeof(*c));
	c->server = o->server_address;
	c->bucket = o->bucket_name;
	c->region = o->bucket_location;
	c->insecure = o->insecure;
	c->part_size = s->part_size;
	if (o->authentication_type && !strcmp(o->authentication_type, "iam")) {
		if (s3_imds_credentials(s->imds_endpoint, ak, sk, tok, &e)) {
			snprintf(why, wsize, "%s", e.msg);
			return false;
		}
		c->access_key = ak;
		c->secret_key = sk;
		c->session_token = tok;
		return true;
	}
	c->access_key = o->access_key;
	if (o->secret_key_file) {
		char *text = NULL;
		size_t len;
		int r = kiln_read_file(o->secret_key_file, SECRET_FILE_MAX, &text, &len);

		if (r < 0) {
			snprintf(why, wsize, "secret_key_file %s: %s", o->secret_key_file,
				 r == -EFBIG ? "larger than 4 KiB" : strerror(-r));
			return false;
		}
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
			text[--len] = '\0';
		snprintf(sk, 256, "%s", text);
		free(text);
		c->secret_key = sk;
	} else {
		c->secret_key = o->secret_key;
	}
	return true;
}

/* <path>.etag: the S3 ETag of the local copy at path, when it came from or
 * went to S3 (so a restore downloads only what changed). */
static void etag_path(const char *path, char *out, size_t size)
{
	snprintf(out, size, "%s.etag", path);
}

static void etag_read(const char *path, char *etag)
{
	char p[PATH_MAX + 8], *text = NULL;
	size_t len;

	etag[0] = '\0';
	etag_path(path, p, sizeof(p));
	if (kiln_read_file(p, S3_ETAG_MAX - 1, &text, &len) < 0)
		return;
	/* Only what S3 sends: a quoted token, no header injection. */
	if (len && !memchr(text, '\n', len) && !memchr(text, '\r', len))
		snprintf(etag, S3_ETAG_MAX, "%.*s", (int)len, text);
	free(text);
}

/* Atomically, so that a reader sees the old ETag or the new one; an
 * empty etag removes the file. */
static void etag_write(const char *path, const char *etag)
{
	char p[PATH_MAX + 8], tmp[PATH_MAX + 32];
	FILE *f;

	etag_path(path, p, sizeof(p));
	if (!etag[0] || strchr(etag, '\n') || strchr(etag, '\r')) {
		unlink(p);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.%d.%lx", p, (int)getpid(), (unsigned long)(uintptr_t)&p);
	f = fopen(tmp, "we");
	if (!f)
		return;
	if (fputs(etag, f) < 0 || fclose(f) != 0 || rename(tmp, p) < 0) {
		unlink(tmp);
		unlink(p);
	}
}

bool cache_store_fetch(const struct cache_store *s, const char *project, long long project_id, const char *key,
		       const char *folder, char *path, size_t size, char *warn, size_t wsize)
{
	char obj[1024], dir[PATH_MAX], tmp[PATH_MAX + 32], ak[256], sk[256], why[512];
	char have[S3_ETAG_MAX], got[S3_ETAG_MAX];
	char *tok = NULL, *slash;
	struct s3_client c;
	struct kiln_err e = { 0 };
	enum s3_fail fail;
	int fd;

	warn[0] = '\0';
	if (!cache_local_path(s, project, folder, path, size))
		return false;
	if (!cache_store_remote(s))
		return access(path, F_OK) == 0;
	tok = malloc(4096);
	if (!tok || !cache_object_name(s, project_id, key, obj, sizeof(obj))) {
		snprintf(warn, wsize, "S3 cache: key %s cannot be used as an object name; using the local cache", key);
		goto local;
	}
	if (!client(s, &c, ak, sk, tok, why, sizeof(why))) {
		snprintf(warn, wsize, "S3 cache: %s; using the local cache", why);
		goto local;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	snprintf(tmp, sizeof(tmp), "%s/cache.zip.s3.XXXXXX", dir);
	if (kiln_mkdir_p(dir) < 0 || (fd = mkstemp(tmp)) < 0) {
		snprintf(warn, wsize, "S3 cache: creating a file in %s: %s; using the local cache", dir,
			 strerror(errno));
		goto local;
	}
	close(fd);
	etag_read(path, have);
	if (access(path, F_OK) < 0)
		have[0] = '\0';
	if (s3_get(&c, obj, tmp, have, got, &fail, &e) == KILN_OK) {
		if (fail == S3_UNCHANGED) {
			free(tok);
			return true; /* the local copy is S3's */
		}
		if (rename(tmp, path) == 0) {
			etag_write(path, got);
			free(tok);
			return true;
		}
		snprintf(warn, wsize, "S3 cache: keeping %s: %s; using the local cache", path, strerror(errno));
		unlink(tmp);
		goto local;
	}
	unlink(tmp);
	/* Not in S3: a copy this host kept when S3 was down still serves. */
	if (fail != S3_MISSING)
		snprintf(warn, wsize, "%s; using the local cache", e.msg);
local:
	free(tok);
	return access(path, F_OK) == 0;
}

bool cache_store_push(const struct cache_store *s, long long project_id, const char *key, const char *path,
		      char *warn, size_t wsize)
{
	char obj[1024], ak[256], sk[256], why[512], etag[S3_ETAG_MAX] = "";
	char *tok = NULL;
	struct s3_client c;
	struct kiln_err e = { 0 };
	bool ok = false;

	warn[0] = '\0';
	if (!cache_store_remote(s))
		return true;
	/* The local copy is new: until S3 has it, it is no object's copy. */
	etag_write(path, "");
	tok = malloc(4096);
	if (!tok || !cache_object_name(s, project_id, key, obj, sizeof(obj)))
		snprintf(warn, wsize, "S3 cache: key %s cannot be used as an object name; kept locally only", key);
	else if (!client(s, &c, ak, sk, tok, why, sizeof(why)))
		snprintf(warn, wsize, "S3 cache: %s; kept locally only", why);
	else if (s3_put(&c, obj, path, etag, NULL, &e))
		snprintf(warn, wsize, "%s; kept locally only", e.msg);
	else
		ok = true;
	if (ok)
		etag_write(path, etag);
	free(tok);
	return ok;
}

bool cache_store_check(const struct cache_store *s, char *why, size_t wsize)
{
	char ak[256], sk[256], tok[4096];
	struct kiln_err e = { 0 };
	struct s3_client c;

	why[0] = '\0';
	if (!cache_store_remote(s))
		return true;
	if (!client(s, &c, ak, sk, tok, why, wsize))
		return false;
	c.connect_timeout_s = 5;
	c.timeout_s = 15;
	if (s3_head_bucket(&c, NULL, &e)) {
		snprintf(why, wsize, "%s", e.msg);
		return false;
	}
	return true;
}
