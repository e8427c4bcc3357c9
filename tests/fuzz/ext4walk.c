/* Fuzz target: kiln-diskread's walk over a mutated ext4 image
 * (workspace/guestdisk/ext4walk.h). The input is the whole image; the walk
 * must end with KILN_OK or an error, within its ceilings, without a
 * sanitizer report. Seeds: small images made by mke2fs -d. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "workspace/guestdisk/ext4walk.h"

static bool want_all(void *arg, const char *rel, bool folder)
{
	return true;
}

static enum kiln_rc begin(void *arg, const struct ext4walk_entry *en, struct kiln_err *e)
{
	return KILN_OK;
}

static enum kiln_rc data(void *arg, const void *buf, size_t n, struct kiln_err *e)
{
	/* Touch every byte, as the tar writer would. */
	volatile uint8_t sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		sum ^= ((const uint8_t *)buf)[i];
	return KILN_OK;
}

static enum kiln_rc end(void *arg, struct kiln_err *e)
{
	return KILN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
	static const struct ext4walk_limits lim = { 1 << 20, 1000, 10000 };
	struct ext4walk_sink sink = { want_all, begin, data, end, NULL };
	struct kiln_err e = { 0 };
	struct ext4walk *w = NULL;
	char *file = NULL;
	size_t flen = 0;
	int fd = memfd_create("image", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (len && write(fd, buf, len) != (ssize_t)len)
		abort();
	if (ext4walk_open(&w, fd, &e) == KILN_OK) {
		ext4walk_tree(w, "", &lim, &sink, &e);
		if (ext4walk_read_file(w, "g/demo/.git/index", 1 << 20, &file, &flen, &e) == KILN_OK)
			free(file);
		ext4walk_close(w);
	}
	close(fd);
	return 0;
}
