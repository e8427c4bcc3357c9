/* virtio-rng behind virtio-mmio, driven by a fuzzed guest (fguest.h). */
#include "tests/fuzz/fguest.h"
#include "vmm/virtio/rng.h"

static int rng_open(void **priv, struct fuzz_in *in)
{
	(void)in;
	return virtio_rng_open(priv);
}

static const struct fg_device rng = {
	.ops = &virtio_rng_ops,
	.open = rng_open,
	.drains = 1,
	.close = virtio_rng_close,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fg_run(&rng, data, size);
}
