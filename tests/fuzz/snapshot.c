/* The snapshot state file parser (vmm/snapshot.c) and the restore of a
 * virtio-mmio device's state and of a rate limiter from its sections.
 *
 * The input is tried twice: as it is (almost always refused, by size,
 * magic, version or digest), and "repaired": magic, version, header size
 * and file length set and the trailing digest recomputed, so that the
 * fuzzer reaches the section walk and the readers behind them.
 *
 * Properties:
 * - a parsed file's sections lie inside it, in order, tiling its body;
 * - a reader never yields more bytes than its section holds;
 * - a restored device has no queue larger than it offers, and a live
 *   one's ready queues lie inside guest RAM;
 * - a restored rate limiter never holds more than its configuration. */
#include <string.h>

#include "lib/sha256.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/ratelimit.h"
#include "vmm/snapshot.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/rng.h"

#define RAM (64u << 10)

static uint8_t ram[RAM];
static uint8_t file[SNAP_MAX_BYTES / 64];
static struct snap_file parsed;

static void check_tiling(const struct snap_file *f, const uint8_t *buf, size_t len)
{
	const uint8_t *at = buf + SNAP_HEADER_SIZE;
	uint32_t i;

	for (i = 0; i < f->n_sections; i++) {
		FUZZ_CHECK(f->sec[i].data == at + SNAP_SECTION_HEAD);
		at = f->sec[i].data + ((f->sec[i].len + 7u) & ~7u);
		FUZZ_CHECK(at <= buf + len - SNAP_DIGEST);
	}
	FUZZ_CHECK(at == buf + len - SNAP_DIGEST);
}

static void restore_sections(const struct snap_file *f)
{
	struct guest_mem mem = { .host = ram, .low_size = RAM };
	struct token_bucket_cfg tb = { .size = 1000, .one_time_burst = 10, .refill_time_ms = 100 };
	struct rate_limiter_cfg rc = { .bandwidth = tb, .ops = tb };
	uint32_t i;

	for (i = 0; i < f->n_sections; i++) {
		struct snap_reader r = { .p = f->sec[i].data, .len = f->sec[i].len };
		struct virtio_dev d;
		struct rate_limiter rl;
		char err[256];
		void *priv = NULL;
		unsigned q;

		if (f->sec[i].tag == SNAP_SEC_VIRTIO) {
			FUZZ_CHECK(virtio_rng_open(&priv) == 0);
			FUZZ_CHECK(virtio_mmio_init(&d, &virtio_rng_ops, priv, &mem, NULL, 0xd0000000, 5) == 0);
			if (virtio_mmio_restore(&d, &r, err, sizeof(err)) == 0) {
				FUZZ_CHECK(r.off == r.len);
				for (q = 0; q < VIRTIO_MAX_QUEUES; q++) {
					FUZZ_CHECK(d.vq[q].size <= virtio_rng_ops.queue_max);
					if (virtio_live(&d) && d.vq[q].ready)
						FUZZ_CHECK(virtq_valid(&d.vq[q], &mem));
				}
			}
			FUZZ_CHECK(r.off <= r.len);
			virtio_mmio_detach(&d);
			virtio_rng_close(priv);
		} else {
			/* Any other section read as rate limiter state (no timer
			 * is made: rl_init's timerfd is not needed for restore). */
			memset(&rl, 0, sizeof(rl));
			tb_init(&rl.bw, &rc.bandwidth, 0);
			tb_init(&rl.ops, &rc.ops, 0);
			rl_restore(&rl, &r, 1);
			FUZZ_CHECK(r.off <= r.len);
			FUZZ_CHECK(rl.bw.budget <= tb.size && rl.ops.budget <= tb.size);
			FUZZ_CHECK(rl.bw.burst_left <= tb.one_time_burst);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	uint8_t digest[SNAP_DIGEST];
	size_t i;

	if (snap_parse(&parsed, data, size, NULL, NULL, err, sizeof(err)) == 0) {
		check_tiling(&parsed, data, size);
		restore_sections(&parsed);
	}
	if (size < SNAP_HEADER_SIZE + SNAP_DIGEST || size > sizeof(file))
		return 0;
	memcpy(file, data, size);
	memcpy(file, SNAP_MAGIC, 8);
	file[8] = SNAP_VERSION, file[9] = file[10] = file[11] = 0;
	file[12] = SNAP_HEADER_SIZE, file[13] = file[14] = file[15] = 0;
	for (i = 0; i < 8; i++)
		file[16 + i] = (uint8_t)(size >> (8 * i));
	sha256_buf(file, size - SNAP_DIGEST, digest);
	memcpy(file + size - SNAP_DIGEST, digest, SNAP_DIGEST);
	if (snap_parse(&parsed, file, size, NULL, NULL, err, sizeof(err)) == 0) {
		check_tiling(&parsed, file, size);
		restore_sections(&parsed);
	} else {
		FUZZ_CHECK(err[0] != 0);
	}
	return 0;
}
