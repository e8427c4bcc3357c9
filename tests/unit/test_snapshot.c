/* The snapshot state file (vmm/snapshot.c) and the state records that go
 * in it and need no KVM: header checks, truncation, changed bytes,
 * version, machine and CPU mismatches, bounded readers; a virtio-mmio
 * device's transport state, a copy-on-write disk's overlay and rate
 * limiter buckets through a save and a restore; vm.json's snapshot keys
 * and the machine digest. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/sha256.h"
#include "tests/unit/vmm_suites.h"
#include "vmm/cow.h"
#include "vmm/ratelimit.h"
#include "vmm/snapshot.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/rng.h"
#include "vmm/vm.h"
#include "vmm/vmconfig.h"
#include "vmm/vmsnap.h"

static const uint8_t MACHINE[SNAP_DIGEST] = { 1, 2, 3 };
static const uint8_t CPU[SNAP_DIGEST] = { 4, 5, 6 };
static struct snap_file f;
static char err[256];

/* A small file: a section with numbers, an empty one, a blob. */
static struct snap_writer sample(void)
{
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION, .mem_bytes = 64u << 20 };

	memcpy(h.machine, MACHINE, SNAP_DIGEST);
	memcpy(h.cpu, CPU, SNAP_DIGEST);
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VCPU, 0);
	snap_put_u32(&w, 0xdeadbeef);
	snap_put_u64(&w, 0x0123456789abcdefULL);
	snap_section(&w, SNAP_SEC_SERIAL, 0);
	snap_section(&w, SNAP_SEC_VCPU, 1);
	snap_put_blob(&w, "hello", 5);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	return w;
}

/* Set the version field and make the digest right again. */
static void reseal(uint8_t *buf, size_t len)
{
	sha256_buf(buf, len - SNAP_DIGEST, buf + len - SNAP_DIGEST);
}

START_TEST(round_trip)
{
	struct snap_writer w = sample();
	struct snap_reader r;
	char blob[8];
	uint32_t n;

	ck_assert_int_eq(w.len % 8, 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, MACHINE, CPU, err, sizeof(err)), 0);
	ck_assert_uint_eq(f.n_sections, 3);
	ck_assert_uint_eq(f.h.version, SNAP_VERSION);
	ck_assert_uint_eq(f.h.mem_bytes, 64u << 20);
	ck_assert(snap_find(&f, SNAP_SEC_VCPU, 0, &r));
	ck_assert_uint_eq(snap_get_u32(&r), 0xdeadbeef);
	ck_assert_uint_eq(snap_get_u64(&r), 0x0123456789abcdefULL);
	ck_assert(snap_rd_done(&r));
	ck_assert(snap_find(&f, SNAP_SEC_SERIAL, 0, &r));
	ck_assert(snap_rd_done(&r));
	ck_assert(snap_find(&f, SNAP_SEC_VCPU, 1, &r));
	snap_get_blob_max(&r, blob, sizeof(blob), &n);
	ck_assert_uint_eq(n, 5);
	ck_assert(!memcmp(blob, "hello", 5));
	ck_assert(snap_rd_done(&r));
	ck_assert(!snap_find(&f, SNAP_SEC_VCPU, 2, &r));
	ck_assert(!snap_find(&f, SNAP_SEC_I8042, 0, &r));
	/* Without expectations the digests are not compared. */
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	snap_writer_free(&w);
}
END_TEST

START_TEST(every_truncation_refused)
{
	struct snap_writer w = sample();
	size_t len;

	for (len = 0; len < w.len; len++) {
		err[0] = 0;
		ck_assert_int_eq(snap_parse(&f, w.buf, len, MACHINE, CPU, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, "truncated"), "length %zu: %s", len, err);
		ck_assert_ptr_null(strchr(err, '\n'));
	}
	snap_writer_free(&w);
}
END_TEST

START_TEST(every_changed_byte_refused)
{
	struct snap_writer w = sample();
	size_t i;
	int rc;

	for (i = 0; i < w.len; i++) {
		w.buf[i] ^= 0x40;
		err[0] = 0;
		rc = snap_parse(&f, w.buf, w.len, MACHINE, CPU, err, sizeof(err));
		ck_assert_msg(rc < 0, "byte %zu changed, still accepted", i);
		ck_assert_msg(err[0], "byte %zu: no reason given", i);
		w.buf[i] ^= 0x40;
	}
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, MACHINE, CPU, err, sizeof(err)), 0);
	/* A header byte: named as a changed file (the digest), not parsed on. */
	w.buf[100] = 1;
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, MACHINE, CPU, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "digest mismatch: the file was changed or damaged");
	snap_writer_free(&w);
}
END_TEST

START_TEST(version_mismatch)
{
	struct snap_writer w = sample();

	w.buf[8] = SNAP_VERSION + 1;
	reseal(w.buf, w.len);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, MACHINE, CPU, err, sizeof(err)), -EPROTO);
	ck_assert_msg(strstr(err, "snapshot_version 2"), "%s", err);
	memcpy(w.buf, "KILNSNAQ", 8);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, MACHINE, CPU, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "bad magic"), "%s", err);
	snap_writer_free(&w);
}
END_TEST

START_TEST(machine_and_cpu_mismatch)
{
	struct snap_writer w = sample();
	uint8_t other[SNAP_DIGEST] = { 9 };

	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, other, CPU, err, sizeof(err)), -ESTALE);
	ck_assert_msg(strstr(err, "another machine"), "%s", err);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, MACHINE, other, err, sizeof(err)), -ESTALE);
	ck_assert_msg(strstr(err, "another host CPU"), "%s", err);
	snap_writer_free(&w);
}
END_TEST

START_TEST(sections_must_tile)
{
	struct snap_writer w = sample();
	uint8_t *buf = malloc(w.len + 8);

	/* The first section claims more than the file holds. */
	memcpy(buf, w.buf, w.len);
	buf[SNAP_HEADER_SIZE + 8] = 0xff;
	buf[SNAP_HEADER_SIZE + 12] = 0x7f;
	reseal(buf, w.len);
	ck_assert_int_eq(snap_parse(&f, buf, w.len, NULL, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "past the end"), "%s", err);
	/* More sections than written. */
	memcpy(buf, w.buf, w.len);
	buf[96] = 4;
	reseal(buf, w.len);
	ck_assert_int_eq(snap_parse(&f, buf, w.len, NULL, NULL, err, sizeof(err)), -EINVAL);
	/* Fewer: bytes left over. */
	buf[96] = 2;
	reseal(buf, w.len);
	ck_assert_int_eq(snap_parse(&f, buf, w.len, NULL, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "after the last section"), "%s", err);
	/* Too many sections for the table. */
	buf[96] = 0, buf[97] = 2;
	reseal(buf, w.len);
	ck_assert_int_eq(snap_parse(&f, buf, w.len, NULL, NULL, err, sizeof(err)), -EINVAL);
	free(buf);
	snap_writer_free(&w);
}
END_TEST

START_TEST(readers_are_bounded)
{
	struct snap_writer w = sample();
	struct snap_reader r;
	char small[3], big[8];
	uint32_t n;

	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VCPU, 0, &r));
	snap_get_u64(&r);
	snap_get_u32(&r);
	ck_assert(!r.bad);
	ck_assert_uint_eq(snap_get_u32(&r), 0); /* past the end: zeros */
	ck_assert(r.bad && !snap_rd_done(&r));
	/* A blob of the wrong length, or longer than its buffer. */
	ck_assert(snap_find(&f, SNAP_SEC_VCPU, 1, &r));
	snap_get_blob(&r, big, 6);
	ck_assert(r.bad);
	ck_assert(snap_find(&f, SNAP_SEC_VCPU, 1, &r));
	snap_get_blob_max(&r, small, sizeof(small), &n);
	ck_assert(r.bad && n == 0);
	/* Left over bytes are not "done" either. */
	ck_assert(snap_find(&f, SNAP_SEC_VCPU, 0, &r));
	snap_get_u32(&r);
	ck_assert(!snap_rd_done(&r));
	snap_writer_free(&w);
}
END_TEST

START_TEST(writer_ceiling)
{
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION };
	static uint8_t chunk[1 << 20];

	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VM, 0);
	for (int i = 0; i < 20; i++)
		snap_put(&w, chunk, sizeof(chunk));
	ck_assert_int_eq(w.err, -E2BIG);
	ck_assert_int_eq(snap_finish(&w, &h), -E2BIG);
	snap_writer_free(&w);
}
END_TEST

/* --- records -------------------------------------------------------------- */

static uint8_t ram[64 << 10];

static void put16(uint64_t gpa, uint16_t v) { memcpy(ram + gpa, &v, 2); }
static void put32(uint64_t gpa, uint32_t v) { memcpy(ram + gpa, &v, 4); }
static void put64(uint64_t gpa, uint64_t v) { memcpy(ram + gpa, &v, 8); }
static uint16_t get16(uint64_t gpa) { uint16_t v; memcpy(&v, ram + gpa, 2); return v; }

START_TEST(virtio_transport_round_trip)
{
	struct guest_mem mem = { .host = ram, .low_size = sizeof(ram) };
	struct virtio_dev a, b, c;
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION };
	struct snap_reader r;

	ck_assert_int_eq(virtio_mmio_init(&a, &virtio_rng_ops, NULL, &mem, NULL, 0xd0000000, 5), 0);
	ck_assert_int_eq(virtio_mmio_init(&b, &virtio_rng_ops, NULL, &mem, NULL, 0xd0000000, 5), 0);
	a.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		   VIRTIO_STATUS_DRIVER_OK;
	a.driver_features = 1ULL << VIRTIO_F_VERSION_1;
	a.config_generation = 3;
	a.vq[0] = (struct virtq){ .size = 16, .ready = true, .desc_gpa = 0x1000, .avail_gpa = 0x2000,
				  .used_gpa = 0x3000, .last_avail = 7, .used_idx = 6 };
	memset(ram, 0, sizeof(ram));
	put16(0x2002, 7); /* avail idx: nothing posted past last_avail */
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	virtio_mmio_save(&a, &w);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(virtio_mmio_restore(&b, &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(b.status, a.status);
	ck_assert_uint_eq(b.driver_features, a.driver_features);
	ck_assert_uint_eq(b.config_generation, 3);
	ck_assert(!memcmp(&b.vq[0], &a.vq[0], sizeof(a.vq[0])));
	ck_assert(virtio_live(&b));

	/* The same state into another kind of device is refused. */
	ck_assert_int_eq(virtio_mmio_init(&c, &virtio_rng_ops, NULL, &mem, NULL, 0xd0000000, 5), 0);
	w.buf[SNAP_HEADER_SIZE + SNAP_SECTION_HEAD] = 2; /* device id: blk */
	reseal(w.buf, w.len);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(virtio_mmio_restore(&c, &r, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "another kind of device"), "%s", err);
	virtio_mmio_detach(&c);
	snap_writer_free(&w);

	/* A live queue outside guest RAM is refused. */
	a.vq[0].used_gpa = sizeof(ram) - 4;
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	virtio_mmio_save(&a, &w);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(virtio_mmio_init(&c, &virtio_rng_ops, NULL, &mem, NULL, 0xd0000000, 5), 0);
	ck_assert_int_eq(virtio_mmio_restore(&c, &r, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "outside guest RAM"), "%s", err);
	virtio_mmio_detach(&c);
	snap_writer_free(&w);
	virtio_mmio_detach(&a);
	virtio_mmio_detach(&b);
}
END_TEST

/* The guest posted a request and kicked just before the save, and the
 * kick sat in an ioeventfd nobody read: the restore serves it, or the
 * guest would wait for it forever (a restored guest that never ticked). */
START_TEST(virtio_restore_serves_a_posted_request)
{
	struct guest_mem mem = { .host = ram, .low_size = sizeof(ram) };
	struct virtio_dev a, b;
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION };
	struct snap_reader r;
	static const uint8_t zero[32];

	memset(ram, 0, sizeof(ram));
	put64(0x1000, 0x4000);                 /* desc 0: 32 bytes at 0x4000, device writes */
	put32(0x1008, 32);
	put16(0x100c, VIRTQ_DESC_F_WRITE);
	put16(0x2004 + 2 * 7, 0);              /* avail ring[7] = desc 0 */
	put16(0x2002, 8);                      /* avail idx: one past last_avail */
	put16(0x3002, 7);                      /* used idx */
	ck_assert_int_eq(virtio_mmio_init(&a, &virtio_rng_ops, NULL, &mem, NULL, 0xd0000000, 5), 0);
	ck_assert_int_eq(virtio_mmio_init(&b, &virtio_rng_ops, NULL, &mem, NULL, 0xd0000000, 5), 0);
	a.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		   VIRTIO_STATUS_DRIVER_OK;
	a.driver_features = 1ULL << VIRTIO_F_VERSION_1;
	a.vq[0] = (struct virtq){ .size = 16, .ready = true, .desc_gpa = 0x1000, .avail_gpa = 0x2000,
				  .used_gpa = 0x3000, .last_avail = 7, .used_idx = 7 };
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	virtio_mmio_save(&a, &w);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(virtio_mmio_restore(&b, &r, err, sizeof(err)), 0);
	ck_assert(virtio_live(&b));
	ck_assert_uint_eq(b.vq[0].last_avail, 8);
	ck_assert_uint_eq(get16(0x3002), 8);    /* used idx moved on */
	ck_assert_uint_eq(get16(0x3004 + 8 * 7), 0);
	ck_assert_uint_eq(get16(0x3004 + 8 * 7 + 4), 32);
	ck_assert(memcmp(ram + 0x4000, zero, sizeof(zero)));
	ck_assert(b.isr & VIRTIO_INT_USED);
	snap_writer_free(&w);
	virtio_mmio_detach(&a);
	virtio_mmio_detach(&b);
}
END_TEST

START_TEST(cow_overlay_round_trip)
{
	char dir[] = "/tmp/kiln-snap-test-XXXXXX", base[PATH_MAX];
	struct cow_disk a, b;
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION };
	struct snap_reader r;
	static uint8_t img[3 * COW_CLUSTER_SIZE], got[3 * COW_CLUSTER_SIZE];
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.img", dir);
	memset(img, 0x11, sizeof(img));
	fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_eq(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
	close(fd);
	ck_assert_int_eq(cow_open(&a, base, true, false, dir), 0);
	ck_assert_int_eq(cow_pwrite(&a, "written", 7, COW_CLUSTER_SIZE + 100), 7);
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	ck_assert_int_eq(cow_save(&a, &w), 0);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(cow_open(&b, base, true, false, dir), 0);
	ck_assert_int_eq(cow_restore(&b, &r), 0);
	ck_assert(snap_rd_done(&r));
	ck_assert_int_eq(cow_pread(&b, got, sizeof(got), 0), (ssize_t)sizeof(got));
	memcpy(img + COW_CLUSTER_SIZE + 100, "written", 7);
	ck_assert(!memcmp(got, img, sizeof(img)));
	ck_assert_uint_eq(b.overlay_used, COW_CLUSTER_SIZE);
	cow_close(&b);
	/* Into a disk of another mode: refused. */
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(cow_open(&b, base, false, true, dir), 0);
	ck_assert_int_eq(cow_restore(&b, &r), -EINVAL);
	cow_close(&b);
	cow_close(&a);
	snap_writer_free(&w);
	unlink(base);
	rmdir(dir);
}
END_TEST

/* A plain writable disk saved empty and grown before the restore (a late
 * workspace filled in while the VM restores): it keeps the saved size
 * until a rescan takes the file's. Shrunk, or copy-on-write: refused. */
START_TEST(plain_disk_grown_before_restore)
{
	char dir[] = "/tmp/kiln-snap-test-XXXXXX", path[PATH_MAX];
	struct cow_disk a, b;
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION };
	struct snap_reader r;
	static uint8_t img[2 * COW_CLUSTER_SIZE];
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ws.img", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(cow_open(&a, path, false, false, dir), 0);
	ck_assert_uint_eq(cow_size(&a), 0);
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	ck_assert_int_eq(cow_save(&a, &w), 0);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	memset(img, 0x5a, sizeof(img));
	ck_assert_int_eq(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
	ck_assert_int_eq(cow_open(&b, path, false, false, dir), 0);
	ck_assert_uint_eq(cow_size(&b), sizeof(img));
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(cow_restore(&b, &r), 0);
	ck_assert_uint_eq(cow_size(&b), 0);
	ck_assert_int_eq(cow_pwrite(&b, img, 512, 0), -ENOSPC);
	ck_assert_int_eq(cow_rescan(&b), 1);
	ck_assert_uint_eq(cow_size(&b), sizeof(img));
	cow_close(&b);
	/* Copy-on-write over the grown file: its bitmap is of another size. */
	ck_assert_int_eq(cow_open(&b, path, true, false, dir), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(cow_restore(&b, &r), -EINVAL);
	cow_close(&b);
	snap_writer_free(&w);
	/* Saved at the grown size, restored over a shorter file. */
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	ck_assert_int_eq(cow_open(&b, path, false, false, dir), 0);
	ck_assert_int_eq(cow_save(&b, &w), 0);
	cow_close(&b);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(ftruncate(fd, COW_CLUSTER_SIZE), 0);
	ck_assert_int_eq(cow_open(&b, path, false, false, dir), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert_int_eq(cow_restore(&b, &r), -EINVAL);
	cow_close(&b);
	cow_close(&a);
	snap_writer_free(&w);
	close(fd);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(limiter_round_trip_and_capped)
{
	struct token_bucket_cfg tb = { .size = 1000, .one_time_burst = 50, .refill_time_ms = 100 };
	struct rate_limiter_cfg cfg = { .bandwidth = tb, .ops = tb };
	struct rate_limiter a = { 0 }, b = { 0 };
	struct snap_writer w;
	struct snap_header h = { .version = SNAP_VERSION };
	struct snap_reader r;

	tb_init(&a.bw, &cfg.bandwidth, 0);
	tb_init(&a.ops, &cfg.ops, 0);
	a.bw.budget = 123;
	a.ops.burst_left = 7;
	tb_init(&b.bw, &cfg.bandwidth, 0);
	tb_init(&b.ops, &cfg.ops, 0);
	snap_writer_init(&w);
	snap_section(&w, SNAP_SEC_VIRTIO, 0);
	rl_save(&a, &w);
	ck_assert_int_eq(snap_finish(&w, &h), 0);
	ck_assert_int_eq(snap_parse(&f, w.buf, w.len, NULL, NULL, err, sizeof(err)), 0);
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert(rl_restore(&b, &r, 5000));
	ck_assert_uint_eq(b.bw.budget, 123);
	ck_assert_uint_eq(b.ops.burst_left, 7);
	ck_assert_uint_eq(b.bw.last_ns, 5000);
	/* A budget above the configured size is cut to it. */
	b.bw.cfg.size = 100;
	ck_assert(snap_find(&f, SNAP_SEC_VIRTIO, 0, &r));
	ck_assert(rl_restore(&b, &r, 5000));
	ck_assert_uint_eq(b.bw.budget, 100);
	snap_writer_free(&w);
}
END_TEST

START_TEST(config_keys_and_machine_digest)
{
	static const char base[] = "{\"boot\": {\"kernel\": \"/k\"}, \"machine\": {\"vcpus\": 2, \"mem_mib\": 256},"
				   " \"drives\": [{\"id\": \"root\", \"path\": \"/a.img\", \"cow\": true}]";
	struct vm_config c;
	uint8_t d1[32], d2[32];
	char text[512];

	snprintf(text, sizeof(text), "%s, \"snapshot\": {\"save_to\": \"/s\", \"resume_after_save\": true}}", base);
	ck_assert_int_eq(vm_config_parse(&c, "vm.json", text, err, sizeof(err)), 0);
	ck_assert_str_eq(c.snapshot_save_to, "/s");
	ck_assert(c.snapshot_resume && !c.snapshot_load);
	vm_config_machine_digest(&c, d1);
	vm_config_free(&c);
	/* Another image path: the same machine. */
	snprintf(text, sizeof(text), "%s}", base);
	*strstr(text, "/a.img") = 'b';
	ck_assert_int_eq(vm_config_parse(&c, "vm.json", text, err, sizeof(err)), 0);
	vm_config_machine_digest(&c, d2);
	ck_assert(!memcmp(d1, d2, 32));
	vm_config_free(&c);
	/* Another vCPU count: another machine. */
	snprintf(text, sizeof(text), "%s}", base);
	*strstr(text, "2,") = '1';
	ck_assert_int_eq(vm_config_parse(&c, "vm.json", text, err, sizeof(err)), 0);
	vm_config_machine_digest(&c, d2);
	ck_assert(memcmp(d1, d2, 32));
	vm_config_free(&c);
	/* With snapshot.load the kernel may go. */
	ck_assert_int_eq(vm_config_parse(&c, "vm.json", "{\"boot\": {}, \"snapshot\": {\"load\": \"/s\"}}", err,
					 sizeof(err)), 0);
	ck_assert_str_eq(c.snapshot_load, "/s");
	ck_assert(!c.snapshot_copy);
	vm_config_free(&c);
	ck_assert_int_eq(vm_config_parse(&c, "vm.json",
					 "{\"boot\": {}, \"snapshot\": {\"load\": \"/s\", \"memory\": \"copy\"}}", err,
					 sizeof(err)), 0);
	ck_assert(c.snapshot_copy);
	vm_config_free(&c);
	ck_assert_int_eq(vm_config_parse(&c, "vm.json",
					 "{\"boot\": {}, \"snapshot\": {\"load\": \"/s\", \"memory\": \"all\"}}", err,
					 sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "snapshot.memory"), "%s", err);
	ck_assert_int_eq(vm_config_parse(&c, "vm.json", "{\"boot\": {}}", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(vm_config_parse(&c, "vm.json",
					 "{\"boot\": {\"kernel\": \"/k\"}, \"snapshot\": {\"save\": \"/s\"}}", err,
					 sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "snapshot"), "%s", err);
}
END_TEST

/* The memory file's mappings over guest memory, from /proc/self/maps. */
static int file_mappings(const char *path)
{
	char line[1024];
	FILE *m = fopen("/proc/self/maps", "r");
	int n = 0;

	ck_assert_ptr_nonnull(m);
	while (fgets(line, sizeof(line), m))
		if (strstr(line, path))
			n++;
	fclose(m);
	return n;
}

/* A restored guest's memory: the file's data where it has data, private;
 * its long holes anonymous (a page the guest first writes there costs one
 * page, not the file's page and a copy); short holes mapped with the data
 * around them. */
START_TEST(memory_file_mapped_by_extent)
{
	const uint64_t mem = 8u << 20;
	char dir[] = "/tmp/kiln-test-mem.XXXXXX", path[PATH_MAX], page[4096];
	struct vm vm;
	uint8_t *g;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/memory", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)mem), 0);
	memset(page, 0xa5, sizeof(page));
	/* Pages 0 and 2 (one short hole between), one at 4 MiB, the last. */
	ck_assert_int_eq(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	ck_assert_int_eq(pwrite(fd, page, sizeof(page), 2 * 4096), (ssize_t)sizeof(page));
	ck_assert_int_eq(pwrite(fd, page, sizeof(page), 4u << 20), (ssize_t)sizeof(page));
	ck_assert_int_eq(pwrite(fd, page, sizeof(page), mem - 4096), (ssize_t)sizeof(page));
	memset(&vm, 0, sizeof(vm));
	ck_assert_int_eq(vmsnap_map_memory(&vm, dir, mem, err, sizeof(err)), 0);
	g = vm.mem.host;
	ck_assert_int_eq(vm.mem_bytes, mem);
	ck_assert_int_eq(g[0], 0xa5);
	ck_assert_int_eq(g[4096], 0);
	ck_assert_int_eq(g[2 * 4096 + 4095], 0xa5);
	ck_assert_int_eq(g[(1u << 20) + 17], 0);
	ck_assert_int_eq(g[(4u << 20) + 100], 0xa5);
	ck_assert_int_eq(g[mem - 1], 0xa5);
	/* Three file mappings, the long holes between them anonymous; one
	 * where the filesystem tells no holes. */
	if (lseek(fd, 0, SEEK_HOLE) < (off_t)mem)
		ck_assert_int_eq(file_mappings(path), 3);
	else
		ck_assert_int_eq(file_mappings(path), 1);
	/* Writes stay the guest's. */
	g[0] = 1;
	g[(1u << 20) + 17] = 2;
	ck_assert_int_eq(pread(fd, page, 1, 0), 1);
	ck_assert_int_eq((uint8_t)page[0], 0xa5);
	ck_assert_int_eq(pread(fd, page, 1, (1u << 20) + 17), 1);
	ck_assert_int_eq(page[0], 0);
	ck_assert_int_eq(g[(1u << 20) + 17], 2);
	munmap(vm.mem.host, mem);
	ck_assert_int_eq(file_mappings(path), 0);
	/* A file of another size is refused. */
	ck_assert_int_eq(ftruncate(fd, (off_t)mem / 2), 0);
	ck_assert_int_eq(vmsnap_map_memory(&vm, dir, mem, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(file_mappings(path), 0);
	close(fd);
	unlink(path);
	rmdir(dir);
}
END_TEST

Suite *snapshot_suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = tcase_create("format");
	TCase *rec = tcase_create("records");

	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, every_truncation_refused);
	tcase_add_test(tc, every_changed_byte_refused);
	tcase_add_test(tc, version_mismatch);
	tcase_add_test(tc, machine_and_cpu_mismatch);
	tcase_add_test(tc, sections_must_tile);
	tcase_add_test(tc, readers_are_bounded);
	tcase_add_test(tc, writer_ceiling);
	suite_add_tcase(s, tc);
	tcase_add_test(rec, virtio_transport_round_trip);
	tcase_add_test(rec, virtio_restore_serves_a_posted_request);
	tcase_add_test(rec, cow_overlay_round_trip);
	tcase_add_test(rec, plain_disk_grown_before_restore);
	tcase_add_test(rec, limiter_round_trip_and_capped);
	tcase_add_test(rec, config_keys_and_machine_digest);
	tcase_add_test(rec, memory_file_mapped_by_extent);
	suite_add_tcase(s, rec);
	return s;
}
