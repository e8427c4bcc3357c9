/* The zip reader and writer (workspace/zip): a round trip, modes that lose
 * setuid, and archives with unsafe names or bad CRCs refused. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/paths.h"
#include "workspace/fstree.h"
#include "workspace/zip.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(zip_roundtrip)
{
	char *d = test_tmpdir(), src[128], out[128], path[256], zipf[128], cmd[160], *big = malloc(300000), *got;
	struct zip_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;
	size_t i, n;

	for (i = 0; i < 300000; i++)
		big[i] = (char)((i * 7 + i / 1000) & 0xff);
	snprintf(src, sizeof(src), "%s/src", d);
	snprintf(path, sizeof(path), "%s/sub/deeper", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/a.txt", src);
	test_write_file(path, "hello\n", 6, 0644);
	snprintf(path, sizeof(path), "%s/sub/big.bin", src);
	test_write_file(path, big, 300000, 0600);
	snprintf(path, sizeof(path), "%s/sub/empty", src);
	test_write_file(path, "", 0, 0644);
	snprintf(path, sizeof(path), "%s/sub/deeper/run.sh", src);
	test_write_file(path, "#!/bin/sh\n", 10, 0755);
	snprintf(path, sizeof(path), "%s/link", src);
	ck_assert_int_eq(symlink("/etc/passwd", path), 0);
	snprintf(path, sizeof(path), "%s/sub/deeper/up", src);
	ck_assert_int_eq(symlink("../big.bin", path), 0);

	snprintf(zipf, sizeof(zipf), "%s/a.zip", d);
	ck_assert_msg(zip_write_dir(src, zipf, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 4);
	ck_assert_uint_eq(st.links, 2);
	ck_assert_uint_eq(st.bytes, 300016);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 4);
	ck_assert_uint_eq(st.links, 1);
	ck_assert_uint_eq(st.skipped, 1); /* the absolute link: never created */
	/* The link inside comes back as a link. */
	snprintf(path, sizeof(path), "%s/sub/deeper/up", out);
	n = (size_t)readlink(path, cmd, sizeof(cmd));
	ck_assert_uint_eq(n, 10);
	ck_assert_int_eq(memcmp(cmd, "../big.bin", 10), 0);
	snprintf(path, sizeof(path), "%s/sub/big.bin", out);
	got = test_read_file(path, &n);
	ck_assert_uint_eq(n, 300000);
	ck_assert_int_eq(memcmp(got, big, n), 0);
	free(got);
	snprintf(path, sizeof(path), "%s/sub/deeper/run.sh", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0755);
	snprintf(path, sizeof(path), "%s/sub/empty", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, 0);
	snprintf(path, sizeof(path), "%s/link", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	/* A limit on the extracted size. */
	snprintf(out, sizeof(out), "%s/out2", d);
	ck_assert_int_eq(zip_extract(zipf, out, 1000, &st, &e), KILN_E_LIMIT);
	free(big);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* No setuid, setgid or sticky bit survives a zip (written or read) or a
 * tree copy: modes are masked to 0777. The written archive is checked with
 * Python's zipfile, and a zip made by Python with 06755 is extracted. */
START_TEST(modes_lose_setuid)
{
	char *d = test_tmpdir(), path[256], zipf[128], out[128], cmd[600];
	struct fstree_stats fst;
	struct zip_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;

	snprintf(path, sizeof(path), "%s/src/sub", d);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	ck_assert_int_eq(chmod(path, 01777), 0);
	snprintf(path, sizeof(path), "%s/src/sub/suid", d);
	test_write_file(path, "#!/bin/sh\n", 10, 0755);
	ck_assert_int_eq(chmod(path, 06755), 0);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 06755);

	snprintf(zipf, sizeof(zipf), "%s/w.zip", d);
	snprintf(path, sizeof(path), "%s/src", d);
	ck_assert_msg(zip_write_dir(path, zipf, 0, &st, &e) == KILN_OK, "%s", e.msg);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import sys, zipfile; sys.exit(any(i.external_attr >> 16 & 0o7000 "
		 "for i in zipfile.ZipFile(\"%s\").infolist()))'", zipf);
	ck_assert_int_eq(system(cmd), 0);

	snprintf(zipf, sizeof(zipf), "%s/py.zip", d);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import zipfile; z = zipfile.ZipFile(\"%s\", \"w\"); i = zipfile.ZipInfo(\"x/suid\"); "
		 "i.external_attr = 0o106755 << 16; z.writestr(i, \"hi\"); z.close()'", zipf);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/x/suid", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0755);

	snprintf(path, sizeof(path), "%s/src", d);
	snprintf(out, sizeof(out), "%s/copy", d);
	ck_assert_msg(fstree_copy(path, out, NULL, NULL, &fst, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/sub/suid", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0755);
	snprintf(path, sizeof(path), "%s/sub", out);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07000, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static uint8_t *p16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	return p + 2;
}

static uint8_t *p32(uint8_t *p, uint32_t v)
{
	return p16(p16(p, v & 0xffff), v >> 16);
}

static uint8_t *pstr(uint8_t *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* A zip of stored entries, by hand: names the writer would never make. */
static size_t craft_zip(uint8_t *buf, const char *const *names, const char *data, bool bad_crc)
{
	uint8_t *p = buf, *cd;
	uint32_t offs[8], crc = (uint32_t)crc32(0, (const Bytef *)data, (uInt)strlen(data)) ^ (bad_crc ? 1u : 0u);
	uint32_t dl = (uint32_t)strlen(data), cd_size;
	size_t i, n = 0;

	for (i = 0; names[i]; i++, n++) {
		unsigned nl = (unsigned)strlen(names[i]);

		offs[i] = (uint32_t)(p - buf);
		p = p32(p, 0x04034b50u);
		p = p16(p16(p16(p16(p16(p, 20), 0), 0), 0), 0);
		p = p32(p32(p32(p, crc), dl), dl);
		p = p16(p16(p, nl), 0);
		p = pstr(pstr(p, names[i], nl), data, dl);
	}
	cd = p;
	for (i = 0; i < n; i++) {
		unsigned nl = (unsigned)strlen(names[i]);

		p = p32(p, 0x02014b50u);
		p = p16(p16(p16(p16(p16(p16(p, 0x031e), 20), 0), 0), 0), 0);
		p = p32(p32(p32(p, crc), dl), dl);
		p = p16(p16(p16(p16(p16(p, nl), 0), 0), 0), 0);
		p = p32(p32(p, (uint32_t)0100644 << 16), offs[i]);
		p = pstr(p, names[i], nl);
	}
	cd_size = (uint32_t)(p - cd);
	p = p32(p, 0x06054b50u);
	p = p16(p16(p16(p16(p, 0), 0), (unsigned)n), (unsigned)n);
	p = p32(p32(p, cd_size), (uint32_t)(cd - buf));
	p = p16(p, 0);
	return (size_t)(p - buf);
}

static uint8_t *p64(uint8_t *p, uint64_t v)
{
	return p32(p32(p, (uint32_t)v), (uint32_t)(v >> 32));
}

/* One stored entry for craft_zip64: its name, content and mode bits. */
struct centry {
	const char *name, *data;
	uint32_t mode;
	uint64_t declared;     /* the size it claims; 0: its real size */
};

/* A zip64 archive of stored entries, by hand: every size and offset in
 * the zip64 extra field, a zip64 end record and its locator. */
static size_t craft_zip64(uint8_t *buf, const struct centry *ents)
{
	uint8_t *p = buf, *cd, *end64;
	uint64_t offs[16];
	size_t i, n = 0;

	for (i = 0; ents[i].name; i++, n++) {
		unsigned nl = (unsigned)strlen(ents[i].name);
		uint64_t dl = strlen(ents[i].data), us = ents[i].declared ? ents[i].declared : dl;
		uint32_t crc = (uint32_t)crc32(0, (const Bytef *)ents[i].data, (uInt)dl);

		offs[i] = (uint64_t)(p - buf);
		p = p32(p, 0x04034b50u);
		p = p16(p16(p16(p16(p16(p, 45), 0), 0), 0), 0);
		p = p32(p32(p32(p, crc), 0xffffffffu), 0xffffffffu);
		p = p16(p16(p, nl), 20);
		p = pstr(p, ents[i].name, nl);
		p = p64(p64(p16(p16(p, 1), 16), us), dl);
		p = pstr(p, ents[i].data, dl);
	}
	cd = p;
	for (i = 0; i < n; i++) {
		unsigned nl = (unsigned)strlen(ents[i].name);
		uint64_t dl = strlen(ents[i].data), us = ents[i].declared ? ents[i].declared : dl;
		uint32_t crc = (uint32_t)crc32(0, (const Bytef *)ents[i].data, (uInt)dl);

		p = p32(p, 0x02014b50u);
		p = p16(p16(p16(p16(p16(p16(p, 0x032d), 45), 0), 0), 0), 0);
		p = p32(p32(p32(p, crc), 0xffffffffu), 0xffffffffu);
		p = p16(p16(p16(p16(p16(p, nl), 28), 0), 0), 0);
		p = p32(p32(p, ents[i].mode << 16), 0xffffffffu);
		p = pstr(p, ents[i].name, nl);
		p = p64(p64(p64(p16(p16(p, 1), 24), us), dl), offs[i]);
	}
	end64 = p;
	p = p64(p32(p, 0x06064b50u), 44);
	p = p32(p32(p16(p16(p, 45), 45), 0), 0);
	p = p64(p64(p64(p64(p, n), n), (uint64_t)(end64 - cd)), (uint64_t)(cd - buf));
	p = p32(p64(p32(p32(p, 0x07064b50u), 0), (uint64_t)(end64 - buf)), 1);
	p = p32(p, 0x06054b50u);
	p = p16(p16(p16(p16(p, 0), 0), 0xffff), 0xffff);
	p = p32(p32(p, 0xffffffffu), 0xffffffffu);
	p = p16(p, 0);
	return (size_t)(p - buf);
}

START_TEST(zip_refuses_unsafe)
{
	static const char *const names[] = { "../evil", "/abs", "a/../../evil2", "ok/fine.txt", "..\\evil3", NULL };
	static const char *const one[] = { "x.txt", NULL };
	char *d = test_tmpdir(), zipf[128], out[128], path[256], cmd[160];
	uint8_t buf[4096];
	struct zip_stats st;
	struct kiln_err e = { 0 };
	size_t n;

	snprintf(zipf, sizeof(zipf), "%s/bad.zip", d);
	n = craft_zip(buf, names, "payload", false);
	test_write_file(zipf, buf, n, 0644);
	snprintf(out, sizeof(out), "%s/out/inner", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 1);
	ck_assert_uint_eq(st.skipped, 4);
	snprintf(path, sizeof(path), "%s/out/inner/ok/fine.txt", d);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/out/evil", d);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/evil2", d);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/out/evil3", d);
	ck_assert_int_ne(access(path, F_OK), 0);
	/* A wrong CRC is an error. */
	n = craft_zip(buf, one, "payload", true);
	test_write_file(zipf, buf, n, 0644);
	ck_assert_int_eq(zip_extract(zipf, out, 0, &st, &e), KILN_E_SYNTAX);
	ck_assert_ptr_nonnull(strstr(e.msg, "CRC"));
	/* Not a zip. */
	test_write_file(zipf, "not a zip at all, really not", 28, 0644);
	ck_assert_int_eq(zip_extract(zipf, out, 0, &st, &e), KILN_E_SYNTAX);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* zip64: every size and offset in the extra field is read; a link entry
 * climbing out of dest is never made, and a file through its name lands
 * in a real folder inside dest; a declared size over the limit is refused
 * before anything is written. */
START_TEST(zip64_and_hostile)
{
	static const struct centry good[] = {
		{ "dir/a.txt", "hello zip64\n", 0100640, 0 },
		{ "ln", "../outside", 0120777, 0 },
		{ "ln/escaped", "nope", 0100644, 0 },
		{ NULL, NULL, 0, 0 },
	};
	static const struct centry huge[] = {
		{ "huge.bin", "tiny", 0100644, 5ULL << 30 },
		{ NULL, NULL, 0, 0 },
	};
	char *d = test_tmpdir(), zipf[128], out[128], path[256], cmd[600], *got;
	uint8_t buf[4096];
	struct zip_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;
	size_t n;

	snprintf(zipf, sizeof(zipf), "%s/z64.zip", d);
	n = craft_zip64(buf, good);
	test_write_file(zipf, buf, n, 0644);
	/* The fixture is a valid zip64 archive to Python's zipfile as well. */
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import sys, zipfile; z = zipfile.ZipFile(\"%s\"); "
		 "sys.exit(z.testzip() is not None or z.read(\"dir/a.txt\") != b\"hello zip64\\n\")'", zipf);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 2);
	ck_assert_uint_eq(st.skipped, 1);
	ck_assert_uint_eq(st.bytes, 16);
	snprintf(path, sizeof(path), "%s/dir/a.txt", out);
	got = test_read_file(path, &n);
	ck_assert_uint_eq(n, 12);
	ck_assert_int_eq(memcmp(got, "hello zip64\n", 12), 0);
	free(got);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0640);
	snprintf(path, sizeof(path), "%s/ln", out);
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));
	snprintf(path, sizeof(path), "%s/outside", d);
	ck_assert_int_ne(access(path, F_OK), 0);

	/* More entries in the zip64 end record than the ceiling: refused
	 * before libarchive reads the central directory. */
	n = craft_zip64(buf, good);
	p64(p64(buf + n - 22 - 20 - 56 + 24, 1500000), 1500000);
	test_write_file(zipf, buf, n, 0644);
	snprintf(out, sizeof(out), "%s/out3", d);
	ck_assert_int_eq(zip_extract(zipf, out, 0, &st, &e), KILN_E_LIMIT);
	ck_assert_ptr_nonnull(strstr(e.msg, "1500000 entries"));
	ck_assert_int_ne(access(out, F_OK), 0);

	n = craft_zip64(buf, huge);
	test_write_file(zipf, buf, n, 0644);
	snprintf(out, sizeof(out), "%s/out2", d);
	ck_assert_int_eq(zip_extract(zipf, out, 1 << 20, &st, &e), KILN_E_LIMIT);
	ck_assert_ptr_nonnull(strstr(e.msg, "bytes once extracted"));
	snprintf(path, sizeof(path), "%s/huge.bin", out);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static bool is_link_to(const char *path, const char *want)
{
	char got[PATH_MAX];
	ssize_t n = readlink(path, got, sizeof(got) - 1);

	if (n < 0)
		return false;
	got[n] = '\0';
	return !strcmp(got, want);
}

/* Links whose target stays inside dest come back as links, written by
 * zip_write_dir (node_modules/.bin, shared-library names) or made by hand;
 * those that can lead out (absolute, climbing above dest, a ".." after a
 * name through another link) are skipped; nothing is written through a
 * link, whether an earlier entry or an earlier archive made it. */
START_TEST(zip_links_inside)
{
	static const struct centry hostile[] = {
		{ "self", ".", 0120777, 0 },
		{ "esc", "self/..", 0120777, 0 },          /* dest/.. through self */
		{ "abs", "/etc", 0120777, 0 },
		{ "a/up", "../../x", 0120777, 0 },
		{ "a/mid", "b/../../..", 0120777, 0 },
		{ "sub/", "", 040755, 0 },
		{ "d", "sub", 0120777, 0 },                /* inside: made */
		{ "d/through", "nope", 0100644, 0 },       /* under a link: skipped */
		{ "t", "sub/f", 0120777, 0 },
		{ "t", "replaced", 0100644, 0 },           /* replaces the link */
		{ "sub", "x", 0120777, 0 },                /* over a folder: skipped */
		{ "pre/f", "nope", 0100644, 0 },           /* pre is a link already */
		{ NULL, NULL, 0, 0 },
	};
	char *d = test_tmpdir(), src[128], out[128], path[256], zipf[128], cmd[600], *got;
	uint8_t buf[8192];
	struct zip_stats st;
	struct kiln_err e = { 0 };
	struct stat sb;
	size_t n;

	snprintf(src, sizeof(src), "%s/src", d);
	snprintf(path, sizeof(path), "%s/node_modules/pkg/bin", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/node_modules/.bin", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/node_modules/pkg/bin/x", src);
	test_write_file(path, "#!/bin/sh\n", 10, 0755);
	snprintf(path, sizeof(path), "%s/node_modules/.bin/x", src);
	ck_assert_int_eq(symlink("../pkg/bin/x", path), 0);
	snprintf(path, sizeof(path), "%s/lib", src);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/lib/libfoo.so.1", src);
	test_write_file(path, "ELF", 3, 0644);
	snprintf(path, sizeof(path), "%s/lib/libfoo.so", src);
	ck_assert_int_eq(symlink("libfoo.so.1", path), 0);
	snprintf(path, sizeof(path), "%s/lib/nm", src);
	ck_assert_int_eq(symlink("../node_modules/", path), 0);
	snprintf(path, sizeof(path), "%s/lib/out", src);
	ck_assert_int_eq(symlink("../..", path), 0);

	snprintf(zipf, sizeof(zipf), "%s/nm.zip", d);
	ck_assert_msg(zip_write_dir(src, zipf, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 2);
	ck_assert_uint_eq(st.links, 4);
	/* Stored as Info-ZIP and gitlab-runner store them. */
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import stat, sys, zipfile; z = zipfile.ZipFile(\"%s\"); i = z.getinfo(\"lib/libfoo.so\"); "
		 "sys.exit(not stat.S_ISLNK(i.external_attr >> 16) or z.read(i) != b\"libfoo.so.1\")'", zipf);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 2);
	ck_assert_uint_eq(st.links, 3);
	ck_assert_uint_eq(st.skipped, 1); /* lib/out */
	snprintf(path, sizeof(path), "%s/node_modules/.bin/x", out);
	ck_assert(is_link_to(path, "../pkg/bin/x"));
	got = test_read_file(path, &n);
	ck_assert_uint_eq(n, 10);
	free(got);
	snprintf(path, sizeof(path), "%s/lib/libfoo.so", out);
	ck_assert(is_link_to(path, "libfoo.so.1"));
	snprintf(path, sizeof(path), "%s/lib/nm/pkg/bin/x", out);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/lib/out", out);
	ck_assert_int_ne(lstat(path, &sb), 0);

	/* By hand: what the writer never makes. pre already is a link to a
	 * folder outside (as if another archive had made it). */
	snprintf(path, sizeof(path), "%s/outside", d);
	ck_assert_int_eq(kiln_mkdir_p(path), 0);
	snprintf(out, sizeof(out), "%s/out2", d);
	ck_assert_int_eq(kiln_mkdir_p(out), 0);
	snprintf(path, sizeof(path), "%s/pre", out);
	ck_assert_int_eq(symlink("../outside", path), 0);
	snprintf(zipf, sizeof(zipf), "%s/hostile.zip", d);
	n = craft_zip64(buf, hostile);
	test_write_file(zipf, buf, n, 0644);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.links, 3);     /* self, d, and t until a file replaced it */
	ck_assert_uint_eq(st.files, 1);     /* t */
	ck_assert_uint_eq(st.skipped, 7);
	snprintf(path, sizeof(path), "%s/self", out);
	ck_assert(is_link_to(path, "."));
	snprintf(path, sizeof(path), "%s/d", out);
	ck_assert(is_link_to(path, "sub"));
	snprintf(path, sizeof(path), "%s/esc", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/abs", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/a/up", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/a/mid", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/sub/through", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/sub/f", out);
	ck_assert_int_ne(lstat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/t", out);
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert(S_ISREG(sb.st_mode));
	snprintf(path, sizeof(path), "%s/sub", out);
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));
	snprintf(path, sizeof(path), "%s/outside/f", d);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* More entries than zip's 16-bit count (a node_modules cache): written
 * with a zip64 end record and read back whole. In memory where it can
 * (70,000 files on a busy disk take seconds to make). */
START_TEST(zip_many_entries)
{
	char shm[] = "/dev/shm/kiln-test-zip.XXXXXX";
	char *d = mkdtemp(shm) ? shm : test_tmpdir(), src[128], out[128], path[256], zipf[128], cmd[160], *got;
	struct zip_stats st;
	struct kiln_err e = { 0 };
	unsigned i;
	size_t n;

	for (i = 0; i < 70; i++) {
		snprintf(path, sizeof(path), "%s/src/m%02u", d, i);
		ck_assert_int_eq(kiln_mkdir_p(path), 0);
	}
	for (i = 0; i < 70000; i++) {
		snprintf(path, sizeof(path), "%s/src/m%02u/f%u", d, i % 70, i);
		test_write_file(path, i % 1000 ? "" : "x", i % 1000 ? 0 : 1, 0644);
	}
	snprintf(src, sizeof(src), "%s/src", d);
	snprintf(zipf, sizeof(zipf), "%s/many.zip", d);
	ck_assert_msg(zip_write_dir(src, zipf, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 70000);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", src);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, sizeof(out), "%s/out", d);
	ck_assert_msg(zip_extract(zipf, out, 0, &st, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(st.files, 70000);
	ck_assert_uint_eq(st.skipped, 0);
	ck_assert_uint_eq(st.bytes, 70);
	snprintf(path, sizeof(path), "%s/m59/f69009", out);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/m50/f69000", out);
	got = test_read_file(path, &n);
	ck_assert_uint_eq(n, 1);
	free(got);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST


Suite *zip_suite(void)
{
	Suite *s = suite_create("zip");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, zip_roundtrip);
	tcase_add_test(tc, modes_lose_setuid);
	tcase_add_test(tc, zip_refuses_unsafe);
	tcase_add_test(tc, zip64_and_hostile);
	tcase_add_test(tc, zip_links_inside);
	tcase_add_test(tc, zip_many_entries);
	suite_add_tcase(s, tc);
	return s;
}
