/* Fuzz target: kiln's reader of kiln-diskread's tar stream
 * (workspace/guestdisk/tarstream.h), which a compromised reader controls.
 * Whatever the input, nothing may be written outside the destination
 * (checked: the folder beside it stays empty) and no sanitizer report. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workspace/guestdisk/tarstream.h"
#include "lib/paths.h"
#include "tests/fuzz/fuzz.h"

static char top[PATH_MAX], above[PATH_MAX + 8], dest[PATH_MAX + 16], beside[PATH_MAX + 16];

/* Entries in the folder path other than "." and "..". */
static int entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	if (!d)
		abort();
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static void cleanup(void)
{
	kiln_rm_rf(top);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
	static const struct tarin_limits lim = { 1 << 20, 100, 0 };
	struct tarin_stats st;
	struct kiln_err e = { 0 };
	int fd = memfd_create("stream", MFD_CLOEXEC);

	if (!top[0]) {
		snprintf(top, sizeof(top), "%s/kiln-fuzz-tarin-XXXXXX", fuzz_tmpdir());
		if (!mkdtemp(top))
			abort();
		atexit(cleanup);
		snprintf(above, sizeof(above), "%s/a", top);
		snprintf(dest, sizeof(dest), "%s/out", above);
		snprintf(beside, sizeof(beside), "%s/beside", above);
	}
	if (fd < 0 || (len && write(fd, buf, len) != (ssize_t)len) || lseek(fd, 0, SEEK_SET) < 0)
		abort();
	kiln_mkdir_p(beside);
	kiln_mkdir_p(dest);
	tarin_extract(fd, dest, &lim, &st, &e);
	close(fd);
	/* Nothing beside dest, nothing above it. */
	if (entries(beside) != 0 || entries(above) != 2 || entries(top) != 1)
		abort();
	kiln_rm_rf(dest);
	return 0;
}
