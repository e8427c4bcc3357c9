#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/cow.h"

#define CL COW_CLUSTER_SIZE
/* Three whole clusters and a short fourth: the tail case gets exercised. */
#define DISK_SIZE (3 * CL + 1000)

static char dir[PATH_MAX], base[PATH_MAX], tmp[PATH_MAX];
static uint8_t *orig;   /* the base image as written */
static uint8_t *model;  /* what the disk should read as */

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 31 + i / 251 + 7);
}

static void cow_setup(void)
{
	size_t i;
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/kiln-cow-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.img", dir);
	snprintf(tmp, sizeof(tmp), "%s/overlays", dir);
	ck_assert_int_eq(mkdir(tmp, 0700), 0);

	orig = malloc(DISK_SIZE);
	model = malloc(DISK_SIZE);
	ck_assert(orig && model);
	for (i = 0; i < DISK_SIZE; i++)
		orig[i] = pattern(i);
	memcpy(model, orig, DISK_SIZE);
	fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, orig, DISK_SIZE), DISK_SIZE);
	close(fd);
}

static void cow_teardown(void)
{
	unlink(base);
	rmdir(tmp);
	rmdir(dir);
	free(orig);
	free(model);
	orig = model = NULL;
}

/* Whether the base file still holds exactly what was written. */
static bool base_unchanged(void)
{
	uint8_t *now = malloc(DISK_SIZE + 1);
	int fd = open(base, O_RDONLY);
	ssize_t n;
	bool same;

	ck_assert_ptr_nonnull(now);
	ck_assert_int_ge(fd, 0);
	n = read(fd, now, DISK_SIZE + 1);
	close(fd);
	same = n == DISK_SIZE && memcmp(now, orig, DISK_SIZE) == 0;
	free(now);
	return same;
}

/* Entries in the overlay directory other than . and .. */
static int entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void put(struct cow_disk *c, uint64_t off, size_t len, uint8_t seed)
{
	uint8_t *buf = malloc(len ? len : 1);
	size_t i;

	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 13);
	ck_assert_int_eq(cow_pwrite(c, buf, len, off), (ssize_t)len);
	memcpy(model + off, buf, len);
	free(buf);
}

/* The whole disk reads back as the model, in one read and in odd pieces
 * that straddle cluster edges. */
static void check_model(struct cow_disk *c)
{
	uint8_t *buf = malloc(DISK_SIZE);
	size_t off, step = 1;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(cow_pread(c, buf, DISK_SIZE, 0), DISK_SIZE);
	ck_assert(memcmp(buf, model, DISK_SIZE) == 0);
	memset(buf, 0, DISK_SIZE);
	for (off = 0; off < DISK_SIZE;) {
		size_t n = off + step > DISK_SIZE ? DISK_SIZE - off : step;

		ck_assert_int_eq(cow_pread(c, buf + off, n, off), (ssize_t)n);
		off += n;
		step = step * 7 % 40009 + 1;
	}
	ck_assert(memcmp(buf, model, DISK_SIZE) == 0);
	free(buf);
}

START_TEST(cow_writes_across_clusters)
{
	struct cow_disk c;

	ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
	ck_assert_uint_eq(cow_size(&c), DISK_SIZE);
	/* The overlay has no name anywhere. */
	ck_assert_int_eq(entries(tmp), 0);
	check_model(&c);

	put(&c, CL - 100, 300, 1);          /* straddles clusters 0 and 1 */
	check_model(&c);
	put(&c, 2 * CL + 5000, 10, 2);      /* small write in the middle of 2 */
	put(&c, 2 * CL + 5005, 10, 3);      /* overlaps it, cluster now copied */
	check_model(&c);
	put(&c, 3 * CL, 1000, 4);           /* the whole short tail cluster */
	put(&c, DISK_SIZE - 1, 1, 5);       /* last byte */
	put(&c, 0, 1, 6);                   /* first byte */
	check_model(&c);
	put(&c, CL / 2, 2 * CL, 7);         /* spans three clusters */
	check_model(&c);
	ck_assert_int_eq(cow_flush(&c), 0);
	ck_assert_int_eq(entries(tmp), 0);
	cow_close(&c);
	ck_assert_int_eq(c.base_fd, -1);
	ck_assert_int_eq(c.overlay_fd, -1);
	cow_close(&c);  /* idempotent */
	ck_assert(base_unchanged());
	ck_assert_int_eq(entries(tmp), 0);
}
END_TEST

/* Many writes of every size at every alignment against a flat model. */
START_TEST(cow_random_writes)
{
	struct cow_disk c;
	unsigned seed = 12345, i;

	ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
	for (i = 0; i < 300; i++) {
		uint64_t off = rand_r(&seed) % DISK_SIZE;
		size_t len = (size_t)rand_r(&seed) % (i % 10 == 0 ? 2 * CL : 5000);

		if (len > DISK_SIZE - off)
			len = DISK_SIZE - off;
		put(&c, off, len, (uint8_t)i);
		if (i % 50 == 0)
			check_model(&c);
	}
	check_model(&c);
	cow_close(&c);
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(cow_partial_cluster_keeps_rest)
{
	struct cow_disk c;
	uint8_t buf[CL];

	ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
	put(&c, CL + 1234, 1, 0xab);
	ck_assert_int_eq(cow_pread(&c, buf, CL, CL), CL);
	ck_assert(memcmp(buf, model + CL, CL) == 0);
	ck_assert_uint_eq(buf[1234], 0xab);
	ck_assert_uint_eq(buf[1233], pattern(CL + 1233));
	ck_assert_uint_eq(buf[CL - 1], pattern(2 * CL - 1));
	cow_close(&c);
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(cow_bounds)
{
	struct cow_disk c;
	uint8_t buf[100];

	ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
	ck_assert_int_eq(cow_pread(&c, buf, 100, DISK_SIZE - 10), 10);
	ck_assert_uint_eq(buf[9], pattern(DISK_SIZE - 1));
	ck_assert_int_eq(cow_pread(&c, buf, 100, DISK_SIZE), 0);
	ck_assert_int_eq(cow_pread(&c, buf, 100, UINT64_MAX), 0);
	ck_assert_int_eq(cow_pwrite(&c, buf, 100, DISK_SIZE - 10), -ENOSPC);
	ck_assert_int_eq(cow_pwrite(&c, buf, 1, DISK_SIZE), -ENOSPC);
	ck_assert_int_eq(cow_pwrite(&c, buf, 2, UINT64_MAX), -ENOSPC);
	ck_assert_int_eq(cow_pwrite(&c, buf, 0, DISK_SIZE), 0);
	check_model(&c);
	cow_close(&c);
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(cow_read_only)
{
	struct cow_disk c;
	uint8_t buf[16];

	ck_assert_int_eq(cow_open(&c, base, false, true, tmp), 0);
	ck_assert_int_eq(cow_pwrite(&c, "x", 1, 0), -EROFS);
	ck_assert_int_eq(cow_pread(&c, buf, 16, CL), 16);
	ck_assert_uint_eq(buf[0], pattern(CL));
	ck_assert_int_eq(cow_flush(&c), 0);
	cow_close(&c);
	/* cow + read_only: still no writes, and no overlay either. */
	ck_assert_int_eq(cow_open(&c, base, true, true, tmp), 0);
	ck_assert_int_eq(c.overlay_fd, -1);
	ck_assert_int_eq(cow_pwrite(&c, "x", 1, 0), -EROFS);
	cow_close(&c);
	ck_assert(base_unchanged());
	/* Read-only opens work on a file we may not write. */
	ck_assert_int_eq(chmod(base, 0444), 0);
	if (access(base, W_OK) != 0) {  /* root may write anyway */
		ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
		cow_close(&c);
		ck_assert_int_eq(cow_open(&c, base, false, false, tmp), -EACCES);
	}
}
END_TEST

/* Without cow the base itself is the disk. */
START_TEST(cow_plain_read_write)
{
	struct cow_disk c;

	ck_assert_int_eq(cow_open(&c, base, false, false, tmp), 0);
	ck_assert_int_eq(c.overlay_fd, -1);
	put(&c, CL - 3, 6, 9);
	check_model(&c);
	ck_assert_int_eq(cow_flush(&c), 0);
	cow_close(&c);
	memcpy(orig, model, DISK_SIZE);
	ck_assert(base_unchanged());  /* i.e. the base now holds the write */
}
END_TEST

START_TEST(cow_open_failures)
{
	struct cow_disk c;

	ck_assert_int_eq(cow_open(&c, "/nonexistent/base.img", true, false, tmp), -ENOENT);
	ck_assert_int_eq(c.base_fd, -1);
	ck_assert_int_lt(cow_open(&c, base, true, false, "/nonexistent-dir"), 0);
	ck_assert_int_eq(c.base_fd, -1);
	ck_assert_int_eq(c.overlay_fd, -1);
	ck_assert_ptr_null(c.bitmap);
	cow_close(&c);
}
END_TEST

/* The overlay holds at most its cap: a write needing one cluster more
 * fails as on a full disk, leaving the disk as it was; clusters already
 * copied stay writable, and without a cap every cluster can be. */
START_TEST(cow_overlay_cap)
{
	struct cow_disk c;
	uint8_t b = 0x5a;

	ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
	cow_limit(&c, 2 * CL);
	put(&c, 10, 100, 1);                 /* cluster 0 */
	put(&c, CL + 7, 100, 2);             /* cluster 1: the overlay is full */
	ck_assert_int_eq(cow_pwrite(&c, &b, 1, 2 * CL + 3), -ENOSPC);
	ck_assert_int_eq(cow_pwrite(&c, &b, 1, 3 * CL), -ENOSPC); /* the short last cluster too */
	put(&c, CL - 1, 2, 3);               /* clusters 0 and 1 again */
	check_model(&c);
	ck_assert_uint_eq(c.overlay_used, 2 * CL);
	cow_limit(&c, 0);
	put(&c, 2 * CL + 3, 1, 4);
	put(&c, 3 * CL, 1000, 5);
	check_model(&c);
	ck_assert_uint_eq(c.overlay_used, 3 * CL + 1000);
	cow_close(&c);
	ck_assert(base_unchanged());
}
END_TEST

START_TEST(cow_empty_disk)
{
	struct cow_disk c;
	uint8_t b;

	ck_assert_int_eq(truncate(base, 0), 0);
	ck_assert_int_eq(cow_open(&c, base, true, false, tmp), 0);
	ck_assert_uint_eq(cow_size(&c), 0);
	ck_assert_int_eq(cow_pread(&c, &b, 1, 0), 0);
	ck_assert_int_eq(cow_pwrite(&c, &b, 1, 0), -ENOSPC);
	cow_close(&c);
}
END_TEST

Suite *cow_suite(void)
{
	Suite *s = suite_create("cow");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, cow_setup, cow_teardown);
	tcase_add_test(tc, cow_writes_across_clusters);
	tcase_add_test(tc, cow_random_writes);
	tcase_add_test(tc, cow_partial_cluster_keeps_rest);
	tcase_add_test(tc, cow_bounds);
	tcase_add_test(tc, cow_read_only);
	tcase_add_test(tc, cow_plain_read_write);
	tcase_add_test(tc, cow_open_failures);
	tcase_add_test(tc, cow_empty_disk);
	tcase_add_test(tc, cow_overlay_cap);
	suite_add_tcase(s, tc);
	return s;
}
