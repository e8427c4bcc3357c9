/* virtio-blk behind virtio-mmio, driven by a fuzzed guest (fguest.h), over
 * a 256 KiB disk that starts as zeros for every input. The first byte picks
 * the drive's mode: plain, read-only or copy-on-write. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "tests/fuzz/fguest.h"
#include "vmm/ratelimit.h"
#include "vmm/virtio/blk.h"

#define DISK_SIZE (256 * 1024)

static int disk_fd = -1;
static char disk_path[64];

/* An unnamed file, opened again by the device through /proc: nothing is
 * left behind however the fuzzer ends. */
static void disk_init(void)
{
	disk_fd = open(fuzz_tmpdir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	FUZZ_CHECK(disk_fd >= 0);
	snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", disk_fd);
}

static int blk_open(void **priv, struct fuzz_in *in)
{
	uint8_t mode = fuzz_u8(in);
	struct vm_drive_cfg cfg = {
		.id = "fuzz",
		.path = disk_path,
		.read_only = mode % 3 == 1,
		.cow = mode % 3 == 2,
	};

	FUZZ_CHECK(ftruncate(disk_fd, 0) == 0 && ftruncate(disk_fd, DISK_SIZE) == 0);
	return virtio_blk_open(priv, &cfg, fuzz_tmpdir(), mono_ns());
}

static const struct fg_device blk = {
	.ops = &virtio_blk_ops,
	.init = disk_init,
	.open = blk_open,
	.drains = 1,
	.close = virtio_blk_close,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fg_run(&blk, data, size);
}
