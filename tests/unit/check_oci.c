/* oci/: references, the registry's JSON and challenges, layers applied
 * (hostile ones built here with libarchive's writer) and the store's list
 * and prune. The registry itself is tests/oci.sh's. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <check.h>

#include "lib/paths.h"
#include "lib/sha256.h"
#include "oci/layers.h"
#include "oci/manifest.h"
#include "oci/ref.h"
#include "oci/store.h"

#define D1 "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define D2 "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char tmp[PATH_MAX];

static void setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/check-oci.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void)
{
	kiln_rm_rf(tmp);
}

/* ---- references ---------------------------------------------------- */

static void ref_ok(const char *in, const char *canon, const char *host, const char *path)
{
	struct kiln_err e = { 0 };
	struct oci_ref r;
	char buf[700];

	ck_assert_msg(oci_ref_parse(in, &r, &e) == KILN_OK, "%s: %s", in, e.msg);
	ck_assert_str_eq(oci_ref_str(&r, buf, sizeof(buf)), canon);
	ck_assert_str_eq(r.host, host);
	ck_assert_str_eq(r.path, path);
}

static void ref_bad(const char *in, const char *needle)
{
	struct kiln_err e = { 0 };
	struct oci_ref r;

	ck_assert_msg(oci_ref_parse(in, &r, &e) == KILN_E_SYNTAX, "%s parsed", in);
	ck_assert_msg(strstr(e.msg, needle) && !strchr(e.msg, '\n'), "%s: %s", in, e.msg);
}

START_TEST(ref_docker_hub)
{
	ref_ok("alpine", "docker.io/library/alpine:latest", "registry-1.docker.io", "library/alpine");
	ref_ok("python:3.12", "docker.io/library/python:3.12", "registry-1.docker.io", "library/python");
	ref_ok("tutum/wordpress", "docker.io/tutum/wordpress:latest", "registry-1.docker.io", "tutum/wordpress");
	ref_ok("docker.io/alpine:3", "docker.io/library/alpine:3", "registry-1.docker.io", "library/alpine");
	ref_ok("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "registry-1.docker.io",
	       "library/busybox");
}
END_TEST

START_TEST(ref_hosts_and_digests)
{
	ref_ok("localhost/a", "localhost/a:latest", "localhost", "a");
	ref_ok("127.0.0.1:5000/x/y:v1.2_3", "127.0.0.1:5000/x/y:v1.2_3", "127.0.0.1:5000", "x/y");
	ref_ok("ghcr.io/o/r@" D1, "ghcr.io/o/r@" D1, "ghcr.io", "o/r");
	ref_ok("registry.example.com:4999/valkey/valkey:8@" D2, "registry.example.com:4999/valkey/valkey:8@" D2,
	       "registry.example.com:4999", "valkey/valkey");
	ref_ok("a__b/c-d--e.f", "docker.io/a__b/c-d--e.f:latest", "registry-1.docker.io", "a__b/c-d--e.f");
}
END_TEST

START_TEST(ref_malformed)
{
	ref_bad("", "empty");
	ref_bad("Alpine", "component 'Alpine'");
	ref_bad("alpine:", "tag ''");
	ref_bad("alpine:-x", "tag '-x'");
	ref_bad("alpine@sha256:abc", "digest 'sha256:abc'");
	ref_bad("alpine@md5:" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "digest");
	ref_bad("a//b", "component ''");
	ref_bad("host.io/a b", "component 'a b'");
	ref_bad("ho$t.io/a", "registry host");
	ref_bad("library/a-", "component 'a-'");
}
END_TEST

/* ---- manifests, indexes, challenges --------------------------------- */

static const char index_json[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
	"{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
	"{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":2,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"x86_64\"}}]}";

START_TEST(index_picks_amd64)
{
	struct kiln_err e = { 0 };
	struct oci_desc d;

	ck_assert_int_eq(oci_index_pick(index_json, strlen(index_json), OCI_MT_INDEX, "linux", "amd64", &d, &e),
			 KILN_OK);
	ck_assert_str_eq(d.digest, D2);
	ck_assert_int_eq(oci_index_pick(index_json, strlen(index_json), "", "linux", "s390x", &d, &e),
			 KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, "linux/arm64, linux/x86_64"), "%s", e.msg);
	ck_assert_int_eq(oci_index_pick(index_json, strlen(index_json), OCI_MT_DOCKER_LIST, "linux", "amd64", &d, &e),
			 KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "disagrees"), "%s", e.msg);
}
END_TEST

#define MANIFEST(cfgmt, layermt)                                                                      \
	"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" cfgmt "\",\"digest\":\"" D1 "\",\"size\":3}," \
	"\"layers\":[{\"mediaType\":\"" layermt "\",\"digest\":\"" D2 "\",\"size\":4}]}"

START_TEST(manifest_types)
{
	struct kiln_err e = { 0 };
	struct oci_manifest m;
	const char *ok = MANIFEST(OCI_MT_DOCKER_CONFIG, "application/vnd.oci.image.layer.v1.tar+zstd");
	const char *artifact = MANIFEST("application/vnd.cncf.helm.config.v1+json", "application/x-tar");
	const char *layer = MANIFEST(OCI_MT_CONFIG, "application/vnd.example.weird");

	ck_assert_int_eq(oci_manifest_parse(ok, strlen(ok), OCI_MT_DOCKER_MANIFEST, &m, &e), KILN_OK);
	ck_assert_int_eq(m.n_layers, 1);
	ck_assert_int_eq(m.layers[0].comp, OCI_COMP_ZSTD);
	ck_assert_int_eq(m.config.size, 3);
	oci_manifest_free(&m);
	ck_assert_int_eq(oci_manifest_parse(artifact, strlen(artifact), "", &m, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "application/vnd.cncf.helm.config.v1+json"), "%s", e.msg);
	ck_assert_int_eq(oci_manifest_parse(layer, strlen(layer), "", &m, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "application/vnd.example.weird"), "%s", e.msg);
	ck_assert_int_eq(oci_manifest_parse(ok, strlen(ok), "application/vnd.docker.distribution.manifest.v1+prettyjws",
					    &m, &e),
			 KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "prettyjws"), "%s", e.msg);
	ck_assert_int_eq(oci_mt_kind("application/vnd.oci.image.index.v1+json; charset=utf-8"), OCI_KIND_INDEX);
}
END_TEST

START_TEST(challenges)
{
	struct kiln_err e = { 0 };
	struct oci_challenge c;

	ck_assert_int_eq(oci_challenge_parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
					     "scope=\"repository:library/alpine:pull\"",
					     &c, &e),
			 KILN_OK);
	ck_assert_int_eq(c.scheme, OCI_AUTH_BEARER);
	ck_assert_str_eq(c.realm, "https://auth.docker.io/token");
	ck_assert_str_eq(c.service, "registry.docker.io");
	ck_assert_str_eq(c.scope, "repository:library/alpine:pull");
	ck_assert_int_eq(oci_challenge_parse("basic realm=\"Registry Realm\"", &c, &e), KILN_OK);
	ck_assert_int_eq(c.scheme, OCI_AUTH_BASIC);
	ck_assert_int_eq(oci_challenge_parse("Bearer realm=x, error=invalid_token", &c, &e), KILN_OK);
	ck_assert_str_eq(c.error, "invalid_token");
	ck_assert_int_eq(oci_challenge_parse("Negotiate abc", &c, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "Negotiate"), "%s", e.msg);
	ck_assert_int_eq(oci_challenge_parse("Bearer service=x", &c, &e), KILN_E_INVALID);
	ck_assert_int_eq(oci_challenge_parse("Bearer realm", &c, &e), KILN_E_SYNTAX);
}
END_TEST

START_TEST(config_diff_ids)
{
	static const char cfg[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]}}";
	struct kiln_err e = { 0 };
	char ids[2][80];

	ck_assert_int_eq(oci_config_diff_ids(cfg, strlen(cfg), 2, ids, &e), KILN_OK);
	ck_assert_str_eq(ids[1], D2);
	ck_assert_int_eq(oci_config_diff_ids(cfg, strlen(cfg), 3, ids, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "2 entries for 3 layers"), "%s", e.msg);
}
END_TEST

/* ---- layers ---------------------------------------------------------- */

struct tent {
	char type; /* f file, d folder, l symlink, h hard link, p fifo, c char device */
	const char *name;
	const char *arg; /* file data, link target */
	int mode;
};

static void mk_layer(const char *path, int filter, const struct tent *t, size_t n)
{
	struct archive *w = archive_write_new();
	struct archive_entry *en;
	size_t i;

	archive_write_set_format_pax_restricted(w);
	if (filter == 'g')
		archive_write_add_filter_gzip(w);
	else if (filter == 'z')
		archive_write_add_filter_zstd(w);
	ck_assert_int_eq(archive_write_open_filename(w, path), ARCHIVE_OK);
	for (i = 0; i < n; i++) {
		en = archive_entry_new();
		archive_entry_set_pathname(en, t[i].name);
		archive_entry_set_perm(en, t[i].mode ? (mode_t)t[i].mode : 0644);
		archive_entry_set_mtime(en, 1000000000, 0);
		archive_entry_set_uid(en, 0);
		archive_entry_set_gid(en, 0);
		switch (t[i].type) {
		case 'f':
			archive_entry_set_filetype(en, AE_IFREG);
			archive_entry_set_size(en, (la_int64_t)strlen(t[i].arg));
			break;
		case 'd':
			archive_entry_set_filetype(en, AE_IFDIR);
			break;
		case 'l':
			archive_entry_set_filetype(en, AE_IFLNK);
			archive_entry_set_symlink(en, t[i].arg);
			break;
		case 'h':
			archive_entry_set_filetype(en, AE_IFREG);
			archive_entry_set_hardlink(en, t[i].arg);
			break;
		case 'p':
			archive_entry_set_filetype(en, AE_IFIFO);
			break;
		case 'c':
			archive_entry_set_filetype(en, AE_IFCHR);
			archive_entry_set_rdevmajor(en, 1);
			archive_entry_set_rdevminor(en, 3);
			break;
		}
		if (!strcmp(t[i].name, "xattr"))
			archive_entry_xattr_add_entry(en, "user.kiln", "yes", 3);
		ck_assert_int_eq(archive_write_header(w, en), ARCHIVE_OK);
		if (t[i].type == 'f')
			archive_write_data(w, t[i].arg, strlen(t[i].arg));
		archive_entry_free(en);
	}
	ck_assert_int_eq(archive_write_close(w), ARCHIVE_OK);
	archive_write_free(w);
}

static char *at(const char *rel)
{
	static char b[4][PATH_MAX];
	static int k;
	char *p = b[k++ % 4];

	snprintf(p, PATH_MAX, "%s/root/%s", tmp, rel);
	return p;
}

static enum kiln_rc apply(int filter, const struct tent *t, size_t n, struct kiln_err *e)
{
	static int seq;
	char layer[PATH_MAX];

	snprintf(layer, sizeof(layer), "%s/layer%d", tmp, seq++);
	mk_layer(layer, filter, t, n);
	mkdir(at(""), 0755);
	return oci_layer_apply(at(""), layer, NULL, NULL, NULL, NULL, e);
}

static const char *slurp(const char *path)
{
	static char buf[256];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(layers_whiteouts_links)
{
	static const struct tent l1[] = {
		{ 'd', "etc", NULL, 0755 },
		{ 'f', "etc/keep", "k", 0 },
		{ 'f', "etc/gone", "g", 0 },
		{ 'd', "opq", NULL, 0755 },
		{ 'f', "opq/lower", "l", 0 },
		{ 'f', "bin/busybox", "bb", 04755 },
		{ 'h', "bin/sh", "bin/busybox", 0 },
		{ 'l', "lib", "usr/lib", 0 },
		{ 'f', "usr/lib/libc", "c", 0 },
		{ 'p', "fifo", NULL, 0600 },
		{ 'f', "xattr", "x", 0 },
		{ 'd', "srv", NULL, 0750 },
	};
	static const struct tent l2[] = {
		{ 'f', "etc/.wh.gone", "", 0 },
		{ 'f', "opq/upper", "u", 0 },
		{ 'f', "opq/.wh..wh..opq", "", 0 },
		{ 'f', ".wh.nothing-here", "", 0 },
		{ 'f', "missing/.wh.x", "", 0 },
		{ 'f', "lib/libm", "m", 0 },
		{ 'f', "etc/keep", "k2", 0600 },
	};
	struct kiln_err e = { 0 };
	struct stat a, b;

	ck_assert_msg(apply('g', l1, N(l1), &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(apply('z', l2, N(l2), &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(slurp(at("etc/keep")), "k2");
	ck_assert_int_ne(access(at("etc/gone"), F_OK), 0);
	ck_assert_int_ne(access(at("opq/lower"), F_OK), 0);
	ck_assert_str_eq(slurp(at("opq/upper")), "u");
	ck_assert_int_ne(access(at("missing"), F_OK), 0);
	ck_assert_str_eq(slurp(at("usr/lib/libm")), "m");
	ck_assert_int_eq(lstat(at("bin/busybox"), &a), 0);
	ck_assert_int_eq(lstat(at("bin/sh"), &b), 0);
	ck_assert_int_eq(a.st_ino, b.st_ino);
	ck_assert_int_eq(a.st_mode & 07777, 04755);
	ck_assert_int_eq(lstat(at("fifo"), &a), 0);
	ck_assert(S_ISFIFO(a.st_mode));
	ck_assert_int_eq(lstat(at("etc/keep"), &a), 0);
	ck_assert_int_eq(a.st_mode & 07777, 0600);
	ck_assert_int_eq(a.st_mtime, 1000000000);
	ck_assert_int_eq(lstat(at("srv"), &a), 0);
	ck_assert_int_eq(a.st_mtime, 1000000000);
	ck_assert_int_eq(a.st_mode & 07777, 0750);
}
END_TEST

START_TEST(layers_plain_tar_and_replace)
{
	static const struct tent l1[] = {
		{ 'd', "x", NULL, 0755 },
		{ 'f', "x/in", "1", 0 },
		{ 'f', "y", "file", 0 },
	};
	static const struct tent l2[] = {
		{ 'f', "x", "now a file", 0 },
		{ 'd', "y", NULL, 0700 },
		{ 'c', "null", NULL, 0666 },
	};
	struct kiln_err e = { 0 };
	struct stat st;

	ck_assert_msg(apply(0, l1, N(l1), &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(apply(0, l2, N(l2), &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(slurp(at("x")), "now a file");
	ck_assert_int_eq(lstat(at("y"), &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	if (geteuid() == 0) {
		ck_assert_int_eq(lstat(at("null"), &st), 0);
		ck_assert(S_ISCHR(st.st_mode));
	}
}
END_TEST

/* Hostile names: '..' refused, absolute names and symlinked parents
 * resolved inside the root, hard links out refused. */
START_TEST(layers_hostile)
{
	char outside[PATH_MAX], target[PATH_MAX + 16];
	struct kiln_err e = { 0 };
	struct tent evil[2];

	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	ck_assert_int_eq(mkdir(outside, 0755), 0);

	/* '..' in a name. */
	{
		static const struct tent t[] = { { 'f', "../../escape", "x", 0 } };

		ck_assert_int_ne(apply(0, t, 1, &e), KILN_OK);
		ck_assert_msg(strstr(e.msg, "'..'"), "%s", e.msg);
	}
	{
		static const struct tent t[] = { { 'f', "a/../../../escape", "x", 0 } };

		ck_assert_int_ne(apply(0, t, 1, &e), KILN_OK);
	}
	/* An absolute name lands inside. */
	snprintf(target, sizeof(target), "%s/abs", outside);
	evil[0] = (struct tent){ 'f', target, "in", 0 };
	ck_assert_msg(apply(0, evil, 1, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_ne(access(target, F_OK), 0);
	ck_assert_str_eq(slurp(at(target + 1)), "in");

	/* Layer 1: a symlink to the host folder; layer 2 writes through it. */
	evil[0] = (struct tent){ 'l', "evil", outside, 0 };
	ck_assert_msg(apply(0, evil, 1, &e) == KILN_OK, "%s", e.msg);
	evil[0] = (struct tent){ 'f', "evil/pwned", "p", 0 };
	ck_assert_msg(apply(0, evil, 1, &e) == KILN_OK, "%s", e.msg);
	snprintf(target, sizeof(target), "%s/pwned", outside);
	ck_assert_int_ne(access(target, F_OK), 0);
	ck_assert_str_eq(slurp(at(target + 1)), "p");

	/* A climbing symlink, then writes and a whiteout through it. */
	{
		static const struct tent t1[] = { { 'l', "up", "../../../../../../..", 0 } };
		static const struct tent t2[] = { { 'f', "up/tmp/climbed", "c", 0 }, { 'f', "up/.wh.tmp", "", 0 } };

		ck_assert_msg(apply(0, t1, 1, &e) == KILN_OK, "%s", e.msg);
		ck_assert_msg(apply(0, t2, N(t2), &e) == KILN_OK, "%s", e.msg);
		ck_assert_int_ne(access("/tmp/climbed", F_OK), 0);
		ck_assert_int_eq(access("/tmp", F_OK), 0);
		ck_assert_int_ne(access(at("tmp"), F_OK), 0);
	}
	/* A dangling symlinked parent: its target is made inside the root. */
	{
		static const struct tent t1[] = { { 'l', "dang", "/kiln-oci-made/by/link", 0 },
						  { 'l', "rel", "../../kiln-oci-rel", 0 } };
		static const struct tent t2[] = { { 'f', "dang/file", "d", 0 }, { 'f', "rel/sub/file", "r", 0 } };

		ck_assert_msg(apply(0, t1, N(t1), &e) == KILN_OK, "%s", e.msg);
		ck_assert_msg(apply(0, t2, N(t2), &e) == KILN_OK, "%s", e.msg);
		ck_assert_str_eq(slurp(at("kiln-oci-made/by/link/file")), "d");
		ck_assert_str_eq(slurp(at("kiln-oci-rel/sub/file")), "r");
		ck_assert_int_ne(access("/kiln-oci-made", F_OK), 0);
	}
	/* Hard links out of the root: by '..', by an absolute host path (it
	 * resolves inside, where there is nothing), through a symlink. */
	{
		static const struct tent t[] = { { 'h', "hl", "../../../etc/passwd", 0 } };

		ck_assert_int_ne(apply(0, t, 1, &e), KILN_OK);
	}
	{
		static const struct tent t[] = { { 'h', "hl", "/etc/passwd", 0 } };

		ck_assert_int_ne(apply(0, t, 1, &e), KILN_OK);
		ck_assert_int_ne(access(at("hl"), F_OK), 0);
	}
	snprintf(target, sizeof(target), "%s/secret", outside);
	ck_assert_int_eq(kiln_write_all(open(target, O_WRONLY | O_CREAT, 0600), "s", 1), 0);
	evil[0] = (struct tent){ 'h', "hl2", "evil/secret", 0 };
	ck_assert_int_ne(apply(0, evil, 1, &e), KILN_OK);
	ck_assert_int_ne(access(at("hl2"), F_OK), 0);
	/* Replacing a symlink to the host with a file does not write through it. */
	evil[0] = (struct tent){ 'f', "evil", "replaced", 0 };
	ck_assert_msg(apply(0, evil, 1, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(slurp(at("evil")), "replaced");
	ck_assert_int_eq(access(target, F_OK), 0);
	/* A hard link to a folder, a bare whiteout, a root entry that is a file. */
	{
		static const struct tent t1[] = { { 'd', "dir", NULL, 0755 }, { 'h', "dl", "dir", 0 } };
		static const struct tent t2[] = { { 'f', ".wh.", "", 0 } };
		static const struct tent t4[] = { { 'd', "w", NULL, 0755 }, { 'f', "w/.wh...", "", 0 } };
		static const struct tent t3[] = { { 'f', "/.", "", 0 } };

		ck_assert_int_eq(apply(0, t1, N(t1), &e), KILN_E_INVALID);
		ck_assert_int_eq(apply(0, t2, 1, &e), KILN_E_INVALID);
		ck_assert_int_eq(apply(0, t4, N(t4), &e), KILN_E_INVALID);
		ck_assert_msg(strstr(e.msg, "names no file"), "%s", e.msg);
		ck_assert_int_eq(access(at("evil"), F_OK), 0);
		ck_assert_int_eq(apply(0, t3, 1, &e), KILN_E_INVALID);
	}
}
END_TEST

START_TEST(layers_bad_stream)
{
	struct kiln_err e = { 0 };
	char layer[PATH_MAX];
	static const struct tent t[] = { { 'f', "big", "0123456789012345678901234567890123456789", 0 } };
	struct stat st;

	snprintf(layer, sizeof(layer), "%s/trunc", tmp);
	mk_layer(layer, 'g', t, 1);
	ck_assert_int_eq(stat(layer, &st), 0);
	ck_assert_int_eq(truncate(layer, st.st_size / 2), 0);
	mkdir(at(""), 0755);
	ck_assert_int_ne(oci_layer_apply(at(""), layer, NULL, NULL, NULL, NULL, &e), KILN_OK);
	ck_assert(e.msg[0] && !strchr(e.msg, '\n'));
}
END_TEST

/* Several gzip members, the diff_id checked, truncated zstd refused. */
START_TEST(layers_streams_and_diff_ids)
{
	static const struct tent t[] = {
		{ 'f', "one", "first file", 0 },
		{ 'f', "two", "second file", 0 },
	};
	char plain[PATH_MAX], multi[PATH_MAX], zst[PATH_MAX], cmd[4 * PATH_MAX], id[80], hex[65];
	struct kiln_err e = { 0 };
	struct stat st;

	snprintf(plain, sizeof(plain), "%s/plain.tar", tmp);
	snprintf(multi, sizeof(multi), "%s/multi.tar.gz", tmp);
	snprintf(zst, sizeof(zst), "%s/layer.tar.zst", tmp);
	mk_layer(plain, 0, t, N(t));
	ck_assert_int_eq(sha256_file_hex(plain, hex, NULL, &e), KILN_OK);
	snprintf(id, sizeof(id), "sha256:%s", hex);
	/* Two members: the first 1000 bytes, then the rest. */
	snprintf(cmd, sizeof(cmd), "head -c 1000 %s | gzip -c >%s && tail -c +1001 %s | gzip -c >>%s", plain, multi,
		 plain, multi);
	ck_assert_int_eq(system(cmd), 0);
	mkdir(at(""), 0755);
	ck_assert_msg(oci_layer_apply(at(""), multi, id, NULL, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(slurp(at("two")), "second file");
	ck_assert_msg(oci_layer_apply(at(""), plain, id, NULL, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(oci_layer_apply(at(""), multi, D1, NULL, NULL, NULL, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "not the config's diff_id " D1), "%s", e.msg);
	mk_layer(zst, 'z', t, N(t));
	ck_assert_msg(oci_layer_apply(at(""), zst, id, NULL, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(stat(zst, &st), 0);
	ck_assert_int_eq(truncate(zst, st.st_size - 3), 0);
	ck_assert_int_ne(oci_layer_apply(at(""), zst, NULL, NULL, NULL, NULL, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "zstd"), "%s", e.msg);
	/* Garbage after a gzip member is not a layer. */
	snprintf(cmd, sizeof(cmd), "printf 'garbage!' >>%s", multi);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_ne(oci_layer_apply(at(""), multi, NULL, NULL, NULL, NULL, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "gzip"), "%s", e.msg);
}
END_TEST

/* A cancel asked between entries stops the apply after the ones before. */
static int cancel_after(void *arg)
{
	int *left = arg;

	return (*left)-- <= 0;
}

START_TEST(layers_canceled)
{
	static const struct tent t[] = {
		{ 'f', "one", "1", 0 },
		{ 'f', "two", "2", 0 },
		{ 'f', "three", "3", 0 },
	};
	char layer[PATH_MAX];
	struct kiln_err e = { 0 };
	struct stat st;
	int left = 2;

	snprintf(layer, sizeof(layer), "%s/l.tar.gz", tmp);
	mk_layer(layer, 'g', t, N(t));
	mkdir(at(""), 0755);
	ck_assert_int_eq(oci_layer_apply(at(""), layer, NULL, cancel_after, &left, NULL, &e), KILN_E_LIMIT);
	ck_assert_msg(strstr(e.msg, "canceled"), "%s", e.msg);
	ck_assert_str_eq(slurp(at("two")), "2");
	ck_assert_int_ne(stat(at("three"), &st), 0);
}
END_TEST

/* ---- store ----------------------------------------------------------- */

static void fake_image(const char *hexch, long last_used, size_t bytes, const char *blob)
{
	char dir[PATH_MAX], p[PATH_MAX + 32], hex[65], *data;
	int fd;

	memset(hex, hexch[0], 64);
	hex[64] = '\0';
	snprintf(dir, sizeof(dir), "%s/oci/images/%s", tmp, hex);
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	snprintf(p, sizeof(p), "%s/image.json", dir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	dprintf(fd, "{\"reference\":\"x/%s:1\",\"digest\":\"sha256:%s\",\"size\":%zu,\"last_used\":%ld}", hexch, hex,
		bytes, last_used);
	close(fd);
	snprintf(p, sizeof(p), "%s/manifest.json", dir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	dprintf(fd, "{\"layers\":[{\"digest\":\"sha256:%s\"}]}", blob);
	close(fd);
	data = calloc(1, bytes);
	snprintf(p, sizeof(p), "%s/rootfs.ext4", dir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_eq(kiln_write_all(fd, data, bytes), 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/oci/blobs/sha256", tmp);
	kiln_mkdir_p(p);
	snprintf(p, sizeof(p), "%s/oci/blobs/sha256/%s", tmp, blob);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_eq(kiln_write_all(fd, data, 8192), 0);
	close(fd);
	free(data);
}

START_TEST(store_list_prune)
{
	struct kiln_err e = { 0 };
	struct oci_image *v;
	char p[PATH_MAX + 64];
	uint64_t freed = 0;
	size_t n;

	ck_assert_int_eq(oci_images_list(tmp, &v, &n, &e), KILN_OK);
	ck_assert_int_eq(n, 0);
	free(v);
	fake_image("c", 300, 1 << 20, "blobc");
	fake_image("a", 100, 1 << 20, "bloba");
	fake_image("b", 200, 1 << 20, "blobb");
	ck_assert_int_eq(oci_images_list(tmp, &v, &n, &e), KILN_OK);
	ck_assert_int_eq(n, 3);
	ck_assert_str_eq(v[0].ref, "x/a:1");
	ck_assert_str_eq(v[2].ref, "x/c:1");
	ck_assert_int_eq(v[1].last_used, 200);
	free(v);
	/* Room for about two images: the oldest goes, with its blob. */
	ck_assert_int_eq(oci_images_prune(tmp, (2u << 20) + (200u << 10), &freed, &e), KILN_OK);
	ck_assert_uint_ge(freed, 1 << 20);
	ck_assert_int_eq(oci_images_list(tmp, &v, &n, &e), KILN_OK);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(v[0].ref, "x/b:1");
	free(v);
	snprintf(p, sizeof(p), "%s/oci/blobs/sha256/bloba", tmp);
	ck_assert_int_ne(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/oci/blobs/sha256/blobb", tmp);
	ck_assert_int_eq(access(p, F_OK), 0);
	ck_assert_int_eq(oci_images_prune(tmp, 0, &freed, &e), KILN_OK);
	ck_assert_int_eq(oci_images_list(tmp, &v, &n, &e), KILN_OK);
	ck_assert_int_eq(n, 0);
	free(v);
}
END_TEST

static Suite *oci_suite(void)
{
	Suite *s = suite_create("oci");
	TCase *t = tcase_create("ref");

	tcase_add_test(t, ref_docker_hub);
	tcase_add_test(t, ref_hosts_and_digests);
	tcase_add_test(t, ref_malformed);
	suite_add_tcase(s, t);
	t = tcase_create("manifest");
	tcase_add_test(t, index_picks_amd64);
	tcase_add_test(t, manifest_types);
	tcase_add_test(t, challenges);
	tcase_add_test(t, config_diff_ids);
	suite_add_tcase(s, t);
	t = tcase_create("layers");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, layers_whiteouts_links);
	tcase_add_test(t, layers_plain_tar_and_replace);
	tcase_add_test(t, layers_hostile);
	tcase_add_test(t, layers_bad_stream);
	tcase_add_test(t, layers_streams_and_diff_ids);
	tcase_add_test(t, layers_canceled);
	suite_add_tcase(s, t);
	t = tcase_create("store");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, store_list_prune);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(oci_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
