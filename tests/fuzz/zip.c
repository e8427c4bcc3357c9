/* Zip extraction (workspace/zip.c: libarchive's seekable zip reader under
 * kiln's rules), which reads archives from GitLab and the local cache,
 * with the input as the archive. Properties: whatever the
 * archive, only regular files, folders and symbolic links appear, all
 * inside dest, with no setuid, setgid or sticky bit, and no more bytes than
 * the limit; a link that resolves lands inside dest. */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workspace/zip.h"
#include "tests/fuzz/fuzz.h"

#define LIMIT (256u << 10)

static char sandbox[64], top[80], dest[96], archive[64], real_dest[PATH_MAX];
static int archive_fd = -1;
static uint64_t seen_bytes;

/* The sandbox holds a/ and in it dest, a/out/; anything else got out. */
static int check(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *rel = path + strlen(sandbox);

	(void)ftw;
	if (strcmp(rel, "") && strcmp(rel, "/a") && strcmp(rel, "/a/out") && strncmp(rel, "/a/out/", 7)) {
		fprintf(stderr, "zip: %s is outside %s\n", path, dest);
		FUZZ_CHECK(!"an entry outside dest");
	}
	FUZZ_CHECK(flag == FTW_F || flag == FTW_D || flag == FTW_SL);
	FUZZ_CHECK(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode));
	if (S_ISLNK(st->st_mode)) {
		char real[PATH_MAX];
		size_t n = strlen(real_dest);

		/* Dangling is fine; resolved, it is dest or below it. */
		if (realpath(path, real) && (strncmp(real, real_dest, n) || (real[n] && real[n] != '/'))) {
			fprintf(stderr, "zip: link %s resolves to %s, outside %s\n", path, real, dest);
			FUZZ_CHECK(!"a link out of dest");
		}
		return 0;
	}
	FUZZ_CHECK(!(st->st_mode & (S_ISUID | S_ISGID | S_ISVTX)));
	if (S_ISREG(st->st_mode))
		seen_bytes += (uint64_t)st->st_size;
	return 0;
}

/* Empty dest for the next input (root needs no permission bits). */
static int removal(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level >= 2)
		remove(path);
	return 0;
}

static void cleanup(void)
{
	nftw(sandbox, removal, 16, FTW_PHYS | FTW_DEPTH);
	rmdir(top);
	rmdir(sandbox);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(sandbox, sizeof(sandbox), "%s/kiln-fuzz-zip-XXXXXX", fuzz_tmpdir());
	FUZZ_CHECK(mkdtemp(sandbox));
	snprintf(top, sizeof(top), "%s/a", sandbox);
	snprintf(dest, sizeof(dest), "%s/out", top);
	FUZZ_CHECK(mkdir(top, 0700) == 0);
	atexit(cleanup);
	archive_fd = open(fuzz_tmpdir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	FUZZ_CHECK(archive_fd >= 0);
	snprintf(archive, sizeof(archive), "/proc/self/fd/%d", archive_fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zip_stats st = { 0 };
	struct kiln_err e = { 0 };

	FUZZ_CHECK(ftruncate(archive_fd, 0) == 0);
	FUZZ_CHECK(pwrite(archive_fd, data, size, 0) == (ssize_t)size);
	zip_extract(archive, dest, LIMIT, &st, &e);
	if (!realpath(dest, real_dest))
		snprintf(real_dest, sizeof(real_dest), "%s", dest);
	seen_bytes = 0;
	FUZZ_CHECK(nftw(sandbox, check, 16, FTW_PHYS) == 0);
	FUZZ_CHECK(seen_bytes <= LIMIT && st.bytes <= LIMIT);
	nftw(sandbox, removal, 16, FTW_PHYS | FTW_DEPTH);
	return 0;
}
