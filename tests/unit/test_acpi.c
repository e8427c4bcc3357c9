#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/acpi.h"
#include "vmm/layout.h"
#include "vmm/vmgenid.h"

static struct guest_mem mem;

static void setup(void)
{
	gm_layout(&mem, 2 << 20);
	mem.host = calloc(1, 2 << 20);
}

static void teardown(void) { free(mem.host); }

static uint32_t rd32(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24); }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* Find the table with signature sig through RSDP -> XSDT (-> FADT for DSDT). */
static const uint8_t *table(const char *sig)
{
	const uint8_t *rsdp = gm_ptr(&mem, LAYOUT_RSDP, 36);
	const uint8_t *xsdt = gm_ptr(&mem, rd64(rsdp + 24), 36);
	uint32_t n = (rd32(xsdt + 4) - 36) / 8, i;

	for (i = 0; i < n; i++) {
		const uint8_t *t = gm_ptr(&mem, rd64(xsdt + 36 + 8 * i), 36);
		if (!memcmp(t, sig, 4))
			return t;
		if (!memcmp(t, "FACP", 4) && !strcmp(sig, "DSDT"))
			return gm_ptr(&mem, rd64(t + 140), 36);
	}
	return NULL;
}

START_TEST(tables_checksum_to_zero)
{
	struct acpi_mmio_dev devs[3] = {
		{ LAYOUT_MMIO_BASE, 0x1000, 5 }, { LAYOUT_MMIO_BASE + 0x1000, 0x1000, 6 }, { LAYOUT_MMIO_BASE + 0x2000, 0x1000, 7 },
	};
	const char *const sigs[] = { "FACP", "APIC", "DSDT" };
	const uint8_t *rsdp, *t;
	int i;

	ck_assert_int_eq(acpi_build(&mem, 4, devs, 3), 0);
	rsdp = gm_ptr(&mem, LAYOUT_RSDP, 36);
	ck_assert(!memcmp(rsdp, "RSD PTR ", 8));
	ck_assert_uint_eq(sum(rsdp, 20), 0);
	ck_assert_uint_eq(sum(rsdp, 36), 0);
	ck_assert_uint_eq(rsdp[15], 2);
	t = gm_ptr(&mem, rd64(rsdp + 24), 36);
	ck_assert(!memcmp(t, "XSDT", 4));
	ck_assert_uint_eq(sum(t, rd32(t + 4)), 0);
	for (i = 0; i < 3; i++) {
		t = table(sigs[i]);
		ck_assert_msg(t != NULL, "no %s", sigs[i]);
		ck_assert_msg(sum(t, rd32(t + 4)) == 0, "%s checksum", sigs[i]);
	}
	t = table("FACP");
	ck_assert_uint_eq(rd32(t + 4), 276);
	ck_assert_uint_eq(rd32(t + 112) & (1u << 20), 1u << 20); /* HW_REDUCED_ACPI */
	/* IAPC_BOOT_ARCH: no VGA, no CMOS RTC (which Linux would poll for) */
	ck_assert_uint_eq(t[109] | t[110] << 8, 1u << 2 | 1u << 5);
	ck_assert_uint_eq(rd64(t + 244 + 4), VMM_ACPI_SLEEP_CONTROL);
	t = table("APIC");
	/* 44-byte header, 4 local APICs (8 bytes each), 1 IOAPIC (12 bytes). */
	ck_assert_uint_eq(rd32(t + 4), 44 + 4 * 8 + 12);
	ck_assert_uint_eq(t[44], 0);
	ck_assert_uint_eq(t[44 + 3 * 8 + 3], 3); /* APIC id of the 4th vCPU */
	ck_assert_uint_eq(t[44 + 4 * 8], 1);     /* IOAPIC entry */
	t = table("DSDT");
	ck_assert_ptr_nonnull(memmem(t, rd32(t + 4), "LNRO0005", 8));
	ck_assert_ptr_nonnull(memmem(t, rd32(t + 4), "V002", 4));
	ck_assert_ptr_nonnull(memmem(t, rd32(t + 4), "_S5_", 4));
	ck_assert_ptr_nonnull(memmem(t, rd32(t + 4), "VMGENCTR", 8));
	ck_assert_ptr_nonnull(memmem(t, rd32(t + 4), "ACPI0013", 8));
}
END_TEST

/* The AML of one virtio-mmio device, byte for byte as ACPI defines it. */
START_TEST(virtio_mmio_aml)
{
	static const uint8_t expect[] = {
		0x5b, 0x82, 0x42, 0x04, 'V', '0', '1', '2',                   /* Device(V012), PkgLength 66 in two bytes */
		0x08, '_', 'H', 'I', 'D', 0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00,
		0x08, '_', 'U', 'I', 'D', 0x0a, 12,                                    /* Name(_UID, 12) */
		0x08, '_', 'C', 'C', 'A', 0x01,                                        /* Name(_CCA, One) */
		0x08, '_', 'C', 'R', 'S', 0x11, 0x1a, 0x0a, 0x17,                     /* Buffer(23) */
		0x86, 0x09, 0x00, 0x01, 0x00, 0x30, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00, /* Memory32Fixed RW */
		0x89, 0x06, 0x00, 0x03, 0x01, 0x11, 0x00, 0x00, 0x00,                 /* Interrupt, GSI 17 */
		0x79, 0x00,                                                            /* EndTag */
	};
	struct acpi_mmio_dev d = { 0xc0003000, 0x1000, 17 };
	uint8_t out[128];
	size_t n = acpi_aml_virtio_mmio(out, sizeof(out), 12, &d);

	ck_assert_uint_eq(n, sizeof(expect));
	ck_assert_int_eq(memcmp(out, expect, n), 0);
	ck_assert_uint_eq(acpi_aml_virtio_mmio(out, 10, 12, &d), 0); /* too small: refused, not overrun */
}
END_TEST

/* The VM generation ID and its Generic Event Device, byte for byte. */
START_TEST(vmgenid_aml)
{
	static const uint8_t expect[] = {
		0x5b, 0x82, 0x40, 0x05, 'V', 'G', 'E', 'N',                          /* Device(VGEN), PkgLength 80 */
		0x08, '_', 'H', 'I', 'D', 0x0d, 'V', 'M', 'G', 'E', 'N', 'C', 'T', 'R', 0x00,
		0x08, '_', 'C', 'I', 'D', 0x0d, 'V', 'M', '_', 'G', 'E', 'N', '_', 'C', 'O', 'U', 'N', 'T', 'E', 'R', 0x00,
		0x08, '_', 'D', 'D', 'N', 0x0d, 'V', 'M', '_', 'G', 'E', 'N', '_', 'C', 'O', 'U', 'N', 'T', 'E', 'R', 0x00,
		0x14, 0x10, 'A', 'D', 'D', 'R', 0x00,                                /* Method(ADDR, 0) */
		0xa4, 0x12, 0x08, 0x02, 0x0c, 0x00, 0x00, 0x0a, 0x00, 0x00,           /* Return(Package(2) { 0xa0000, Zero }) */
		0x5b, 0x82, 0x49, 0x04, 'G', 'E', 'D', '_',                          /* Device(GED_), PkgLength 73 */
		0x08, '_', 'H', 'I', 'D', 0x0d, 'A', 'C', 'P', 'I', '0', '0', '1', '3', 0x00,
		0x08, '_', 'U', 'I', 'D', 0x00,                                       /* Name(_UID, Zero) */
		0x08, '_', 'C', 'R', 'S', 0x11, 0x0e, 0x0a, 0x0b,                    /* Buffer(11) */
		0x89, 0x06, 0x00, 0x03, 0x01, 0x17, 0x00, 0x00, 0x00,                 /* Interrupt, GSI 23 */
		0x79, 0x00,                                                           /* EndTag */
		0x14, 0x19, '_', 'E', 'V', 'T', 0x01,                                /* Method(_EVT, 1) */
		0xa0, 0x12, 0x93, 0x68, 0x0a, 0x17,                                   /* If (LEqual(Arg0, 23)) */
		0x86, 0x5c, 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0a, 0x80, /* Notify(\_SB_.VGEN, 0x80) */
	};
	uint8_t out[256];
	size_t n = acpi_aml_vmgenid(out, sizeof(out), LAYOUT_VMGENID, LAYOUT_GED_GSI), cap;

	ck_assert_uint_eq(n, sizeof(expect));
	ck_assert_int_eq(memcmp(out, expect, n), 0);
	/* An address above 4 GiB: both halves, the high one as a ByteConst. */
	n = acpi_aml_vmgenid(out, sizeof(out), 0x1200000010ULL, LAYOUT_GED_GSI);
	ck_assert_ptr_nonnull(memmem(out, n, "\x12\x06\x02\x0a\x10\x0a\x12", 7));
	for (cap = 0; cap < sizeof(expect); cap++) /* too small: refused, not overrun */
		ck_assert_uint_eq(acpi_aml_vmgenid(out, cap, LAYOUT_VMGENID, LAYOUT_GED_GSI), 0);
}
END_TEST

/* A fresh ID lands at LAYOUT_VMGENID, differs each time, and a guest too
 * small to hold it is refused. */
START_TEST(vmgenid_fresh_ids)
{
	uint8_t a[LAYOUT_VMGENID_SIZE], b[LAYOUT_VMGENID_SIZE];
	struct guest_mem small;

	ck_assert_int_eq(vmgenid_fresh(&mem, a), 0);
	ck_assert_int_eq(memcmp(gm_ptr(&mem, LAYOUT_VMGENID, sizeof(a)), a, sizeof(a)), 0);
	ck_assert_int_eq(vmgenid_fresh(&mem, NULL), 0);
	memcpy(b, gm_ptr(&mem, LAYOUT_VMGENID, sizeof(b)), sizeof(b));
	ck_assert_int_ne(memcmp(a, b, sizeof(a)), 0);
	gm_layout(&small, LAYOUT_VMGENID + 8);
	small.host = mem.host;
	ck_assert_int_eq(vmgenid_fresh(&small, a), -EFAULT);
}
END_TEST

START_TEST(mptable_checksums)
{
	const uint8_t *fp, *t;

	ck_assert_int_eq(mptable_build(&mem, 2), 0);
	fp = gm_ptr(&mem, LAYOUT_MPTABLE, 16);
	ck_assert(!memcmp(fp, "_MP_", 4));
	ck_assert_uint_eq(sum(fp, 16), 0);
	t = gm_ptr(&mem, rd32(fp + 4), 44);
	ck_assert(!memcmp(t, "PCMP", 4));
	ck_assert_uint_eq(sum(t, (size_t)(t[4] | t[5] << 8)), 0);
	ck_assert_uint_eq(t[34], 2 + 1 + 1 + 16 + 2); /* cpus, bus, ioapic, irqs, lints */
	ck_assert_uint_eq(acpi_checksum((const uint8_t *)"\x01\x02", 2), 0xfd);
}
END_TEST

Suite *acpi_suite(void)
{
	Suite *s = suite_create("acpi");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, tables_checksum_to_zero);
	tcase_add_test(tc, virtio_mmio_aml);
	tcase_add_test(tc, vmgenid_aml);
	tcase_add_test(tc, vmgenid_fresh_ids);
	tcase_add_test(tc, mptable_checksums);
	suite_add_tcase(s, tc);
	return s;
}
