#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/guestmem.h"

START_TEST(layout_splits_at_gap)
{
	struct guest_mem m = { 0 };

	gm_layout(&m, 512ULL << 20);
	ck_assert_uint_eq(m.low_size, 512ULL << 20);
	ck_assert_uint_eq(m.high_size, 0);
	gm_layout(&m, 4ULL << 30);
	ck_assert_uint_eq(m.low_size, GM_GAP_START);
	ck_assert_uint_eq(m.high_size, (4ULL << 30) - GM_GAP_START);
}
END_TEST

START_TEST(low_bounds)
{
	static uint8_t ram[4096];
	struct guest_mem m = { .host = ram, .low_size = sizeof(ram) };

	ck_assert_ptr_eq(gm_ptr(&m, 0, 4096), ram);
	ck_assert_ptr_eq(gm_ptr(&m, 4095, 1), ram + 4095);
	ck_assert_ptr_eq(gm_ptr(&m, 100, 0), ram + 100);
	ck_assert_ptr_null(gm_ptr(&m, 4095, 2));
	ck_assert_ptr_null(gm_ptr(&m, 0, 4097));
	ck_assert_ptr_null(gm_ptr(&m, 4097, 0));
	ck_assert_ptr_null(gm_ptr(&m, 1ULL << 40, 1));
	/* No high RAM: nothing above the gap either. */
	ck_assert_ptr_null(gm_ptr(&m, GM_HIGH_START, 1));
}
END_TEST

/* gpa + len wrapping around 2^64 must not look like a small range. */
START_TEST(overflow)
{
	static uint8_t ram[4096];
	struct guest_mem m = { .host = ram, .low_size = sizeof(ram) };

	ck_assert_ptr_null(gm_ptr(&m, UINT64_MAX, 2));
	ck_assert_ptr_null(gm_ptr(&m, UINT64_MAX, 1));
	ck_assert_ptr_null(gm_ptr(&m, 16, UINT64_MAX));
	ck_assert_ptr_null(gm_ptr(&m, UINT64_MAX - 15, 32));
	m.high_size = 4096;
	ck_assert_ptr_null(gm_ptr(&m, GM_HIGH_START + 1, UINT64_MAX));
	ck_assert_ptr_null(gm_ptr(&m, GM_HIGH_START, UINT64_MAX - GM_HIGH_START + 2));
}
END_TEST

/* RAM on both sides of the 32-bit gap: nothing inside it, nothing that
 * straddles an edge, high RAM right after low RAM in the mapping. The
 * mapping is reserved only (PROT_NONE): gm_ptr computes, never touches. */
START_TEST(gap)
{
	uint64_t size = 4ULL << 30;
	struct guest_mem m = { 0 };
	uint8_t *h;

	h = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert_ptr_ne(h, MAP_FAILED);
	m.host = h;
	gm_layout(&m, size);

	ck_assert_ptr_eq(gm_ptr(&m, GM_GAP_START - 8, 8), h + GM_GAP_START - 8);
	ck_assert_ptr_null(gm_ptr(&m, GM_GAP_START - 8, 9));
	ck_assert_ptr_null(gm_ptr(&m, GM_GAP_START, 1));
	ck_assert_ptr_null(gm_ptr(&m, 0xfee00000ULL, 4));
	ck_assert_ptr_null(gm_ptr(&m, GM_HIGH_START - 1, 2));
	/* A range from low RAM across the whole gap into high RAM. */
	ck_assert_ptr_null(gm_ptr(&m, GM_GAP_START - 4096, GM_HIGH_START - GM_GAP_START + 8192));
	ck_assert_ptr_eq(gm_ptr(&m, GM_HIGH_START, 4096), h + m.low_size);
	ck_assert_ptr_eq(gm_ptr(&m, GM_HIGH_START + m.high_size - 1, 1), h + size - 1);
	ck_assert_ptr_null(gm_ptr(&m, GM_HIGH_START + m.high_size - 1, 2));
	ck_assert_ptr_null(gm_ptr(&m, GM_HIGH_START + m.high_size, 1));
	munmap(h, size);
}
END_TEST

START_TEST(read_write)
{
	static uint8_t ram[256];
	struct guest_mem m = { .host = ram, .low_size = sizeof(ram) };
	uint8_t buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, out[8];

	memset(ram, 0, sizeof(ram));
	ck_assert(gm_write(&m, 248, buf, 8));
	ck_assert(gm_read(&m, out, 248, 8));
	ck_assert_mem_eq(out, buf, 8);
	ck_assert(!gm_write(&m, 249, buf, 8));
	memset(out, 0xaa, sizeof(out));
	ck_assert(!gm_read(&m, out, 249, 8));
	ck_assert_uint_eq(out[0], 0xaa);  /* untouched on failure */
	ck_assert_uint_eq(ram[255], 8);
}
END_TEST

Suite *guestmem_suite(void)
{
	Suite *s = suite_create("guestmem");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, layout_splits_at_gap);
	tcase_add_test(tc, low_bounds);
	tcase_add_test(tc, overflow);
	tcase_add_test(tc, gap);
	tcase_add_test(tc, read_write);
	suite_add_tcase(s, tc);
	return s;
}
