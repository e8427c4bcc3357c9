#include "vmm/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "vmm/layout.h"

#define OEM_ID "KILN  "
#define MPTABLE_CAP 0x400

/* The generation ID sits between the MP table and the RSDP, both reserved. */
_Static_assert(LAYOUT_VMGENID >= LAYOUT_MPTABLE + MPTABLE_CAP && LAYOUT_VMGENID + LAYOUT_VMGENID_SIZE <= LAYOUT_RSDP,
	       "the VM generation ID overlaps the firmware tables");
#define OEM_TABLE "KILNVMM "
#define CREATOR "KILN"

/* A bounded byte writer: overflow sets bad instead of writing. */
struct aml {
	uint8_t *p;
	size_t len, cap;
	bool bad;
};

static void put(struct aml *a, const void *src, size_t n)
{
	if (a->bad || n > a->cap - a->len) {
		a->bad = true;
		return;
	}
	memcpy(a->p + a->len, src, n);
	a->len += n;
}

static void put8(struct aml *a, uint8_t v) { put(a, &v, 1); }
static void put16(struct aml *a, uint16_t v) { put8(a, (uint8_t)v); put8(a, (uint8_t)(v >> 8)); }
static void put32(struct aml *a, uint32_t v) { put16(a, (uint16_t)v); put16(a, (uint16_t)(v >> 16)); }
static void put64(struct aml *a, uint64_t v) { put32(a, (uint32_t)v); put32(a, (uint32_t)(v >> 32)); }

uint8_t acpi_checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;

	while (n--)
		sum = (uint8_t)(sum + *p++);
	return (uint8_t)(0 - sum);
}

/* Wrap body (len bytes) in a PkgLength-prefixed package after opcode
 * bytes op[0..nop). PkgLength counts itself, so its size depends on it. */
static void put_pkg(struct aml *a, const uint8_t *op, size_t nop, const uint8_t *body, size_t len)
{
	size_t total;

	put(a, op, nop);
	if (len + 1 < 0x40) {
		put8(a, (uint8_t)(len + 1));
	} else if (len + 2 < 0x1000) {
		total = len + 2;
		put8(a, (uint8_t)(0x40 | (total & 0xf)));
		put8(a, (uint8_t)(total >> 4));
	} else {
		total = len + 3;
		put8(a, (uint8_t)(0x80 | (total & 0xf)));
		put8(a, (uint8_t)(total >> 4));
		put8(a, (uint8_t)(total >> 12));
	}
	put(a, body, len);
}

static void name_int(struct aml *a, const char *name, uint32_t v)
{
	put8(a, 0x08); /* NameOp */
	put(a, name, 4);
	if (v == 0) {
		put8(a, 0x00);
	} else if (v == 1) {
		put8(a, 0x01);
	} else if (v <= 0xff) {
		put8(a, 0x0a);
		put8(a, (uint8_t)v);
	} else {
		put8(a, 0x0c);
		put32(a, v);
	}
}

static void name_str(struct aml *a, const char *name, const char *s)
{
	put8(a, 0x08);
	put(a, name, 4);
	put8(a, 0x0d); /* StringPrefix */
	put(a, s, strlen(s) + 1);
}

/* EisaId("PNPxxxx") as ACPI compresses it. */
static void name_eisaid(struct aml *a, const char *name, const char *id)
{
	uint16_t vendor = (uint16_t)(((id[0] - 0x40) & 0x1f) << 10 | ((id[1] - 0x40) & 0x1f) << 5 |
				     ((id[2] - 0x40) & 0x1f));
	unsigned product = 0;
	int i;

	for (i = 3; i < 7; i++)
		product = product << 4 | (unsigned)(id[i] <= '9' ? id[i] - '0' : id[i] - 'A' + 10);
	put8(a, 0x08);
	put(a, name, 4);
	put8(a, 0x0c);
	put8(a, (uint8_t)(vendor >> 8));
	put8(a, (uint8_t)vendor);
	put8(a, (uint8_t)(product >> 8));
	put8(a, (uint8_t)product);
}

/* Name(_CRS, ResourceTemplate() { res }) with the end tag appended. */
static void name_crs(struct aml *a, const uint8_t *res, size_t n)
{
	uint8_t buf[128];
	struct aml b = { buf, 0, sizeof(buf), false };
	static const uint8_t buffer_op = 0x11;

	put8(&b, 0x0a); /* BufferSize as a ByteConst */
	put8(&b, (uint8_t)(n + 2));
	put(&b, res, n);
	put8(&b, 0x79); /* end tag */
	put8(&b, 0x00);
	put8(a, 0x08);
	put(a, "_CRS", 4);
	if (b.bad) {
		a->bad = true;
		return;
	}
	put_pkg(a, &buffer_op, 1, buf, b.len);
}

static void device(struct aml *a, const char *name, const uint8_t *body, size_t n)
{
	static const uint8_t op[] = { 0x5b, 0x82 };
	uint8_t buf[512];
	struct aml b = { buf, 0, sizeof(buf), false };

	put(&b, name, 4);
	put(&b, body, n);
	if (b.bad) {
		a->bad = true;
		return;
	}
	put_pkg(a, op, 2, buf, b.len);
}

size_t acpi_aml_virtio_mmio(uint8_t *out, size_t cap, int index, const struct acpi_mmio_dev *dev)
{
	uint8_t body[256], res[32];
	struct aml b = { body, 0, sizeof(body), false }, r = { res, 0, sizeof(res), false };
	struct aml a = { out, 0, cap, false };
	char name[5] = "V000";

	name[1] = (char)('0' + index / 100 % 10);
	name[2] = (char)('0' + index / 10 % 10);
	name[3] = (char)('0' + index % 10);
	name_str(&b, "_HID", "LNRO0005");
	name_int(&b, "_UID", (uint32_t)index);
	name_int(&b, "_CCA", 1);
	put8(&r, 0x86); /* Memory32Fixed, read-write */
	put16(&r, 9);
	put8(&r, 1);
	put32(&r, (uint32_t)dev->base);
	put32(&r, dev->size);
	put8(&r, 0x89); /* Extended Interrupt: consumer, edge, active high, exclusive */
	put16(&r, 6);
	put8(&r, 0x03);
	put8(&r, 1);
	put32(&r, dev->gsi);
	name_crs(&b, res, r.len);
	if (b.bad || r.bad)
		return 0;
	device(&a, name, body, b.len);
	return a.bad ? 0 : a.len;
}

/* An integer as the shortest AML constant: Zero, One, Byte/Word/DWord/QWordConst. */
static void put_int(struct aml *a, uint64_t v)
{
	if (v <= 1) {
		put8(a, (uint8_t)v);
	} else if (v <= 0xff) {
		put8(a, 0x0a);
		put8(a, (uint8_t)v);
	} else if (v <= 0xffff) {
		put8(a, 0x0b);
		put16(a, (uint16_t)v);
	} else if (v <= 0xffffffff) {
		put8(a, 0x0c);
		put32(a, (uint32_t)v);
	} else {
		put8(a, 0x0e);
		put64(a, v);
	}
}

/* Method(name, nargs, NotSerialized) { body }. */
static void method(struct aml *a, const char *name, uint8_t nargs, const uint8_t *body, size_t n)
{
	static const uint8_t op = 0x14;
	uint8_t buf[128];
	struct aml b = { buf, 0, sizeof(buf), false };

	put(&b, name, 4);
	put8(&b, nargs & 7);
	put(&b, body, n);
	if (b.bad) {
		a->bad = true;
		return;
	}
	put_pkg(a, &op, 1, buf, b.len);
}

size_t acpi_aml_vmgenid(uint8_t *out, size_t cap, uint64_t id_addr, uint32_t gsi)
{
	static const uint8_t package_op = 0x12, if_op = 0xa0;
	uint8_t body[160], code[64], pkg[32], res[16];
	struct aml a = { out, 0, cap, false };
	struct aml b = { body, 0, sizeof(body), false }, c = { code, 0, sizeof(code), false };
	struct aml p = { pkg, 0, sizeof(pkg), false }, r = { res, 0, sizeof(res), false };

	/* Device(VGEN): the IDs Linux's vmgenid driver matches, and ADDR, the
	 * ID's guest-physical address as Package { low 32 bits, high 32 bits }. */
	name_str(&b, "_HID", "VMGENCTR");
	name_str(&b, "_CID", "VM_GEN_COUNTER");
	name_str(&b, "_DDN", "VM_GEN_COUNTER");
	put8(&p, 2); /* NumElements */
	put_int(&p, id_addr & 0xffffffff);
	put_int(&p, id_addr >> 32);
	put8(&c, 0xa4); /* Return */
	if (p.bad)
		return 0;
	put_pkg(&c, &package_op, 1, pkg, p.len);
	if (c.bad)
		return 0;
	method(&b, "ADDR", 0, code, c.len);
	if (b.bad)
		return 0;
	device(&a, "VGEN", body, b.len);

	/* Device(GED_): a Generic Event Device whose one interrupt runs _EVT,
	 * which tells VGEN its ID changed: If (Arg0 == gsi) {
	 * Notify(\_SB_.VGEN, 0x80) }. */
	b.len = c.len = p.len = 0;
	name_str(&b, "_HID", "ACPI0013");
	name_int(&b, "_UID", 0);
	put8(&r, 0x89); /* Extended Interrupt: consumer, edge, active high, exclusive */
	put16(&r, 6);
	put8(&r, 0x03);
	put8(&r, 1);
	put32(&r, gsi);
	if (r.bad)
		return 0;
	name_crs(&b, res, r.len);
	put8(&p, 0x93); /* LEqual (Arg0, gsi) */
	put8(&p, 0x68);
	put_int(&p, gsi);
	put(&p, "\x86\x5c\x2e_SB_VGEN\x0a\x80", 13); /* Notify (\_SB_.VGEN, 0x80) */
	if (p.bad)
		return 0;
	put_pkg(&c, &if_op, 1, pkg, p.len);
	if (c.bad)
		return 0;
	method(&b, "_EVT", 1, code, c.len);
	if (b.bad)
		return 0;
	device(&a, "GED_", body, b.len);
	return a.bad ? 0 : a.len;
}

static size_t legacy_devices(uint8_t *out, size_t cap)
{
	uint8_t body[128], res[32];
	struct aml a = { out, 0, cap, false };
	struct aml b = { body, 0, sizeof(body), false }, r = { res, 0, sizeof(res), false };

	/* COM1: 8 ports at 0x3f8, IRQ 4. */
	name_eisaid(&b, "_HID", "PNP0501");
	name_int(&b, "_UID", 0);
	put8(&r, 0x47);
	put8(&r, 1);
	put16(&r, 0x3f8);
	put16(&r, 0x3f8);
	put8(&r, 1);
	put8(&r, 8);
	put8(&r, 0x22);
	put16(&r, 1 << LAYOUT_SERIAL_IRQ);
	name_crs(&b, res, r.len);
	device(&a, "COM1", body, b.len);
	/* i8042 keyboard controller: 0x60 and 0x64, IRQ 1. */
	b.len = r.len = 0;
	name_eisaid(&b, "_HID", "PNP0303");
	name_int(&b, "_STA", 0x0f);
	put8(&r, 0x47);
	put8(&r, 1);
	put16(&r, 0x60);
	put16(&r, 0x60);
	put8(&r, 1);
	put8(&r, 1);
	put8(&r, 0x47);
	put8(&r, 1);
	put16(&r, 0x64);
	put16(&r, 0x64);
	put8(&r, 1);
	put8(&r, 1);
	put8(&r, 0x22);
	put16(&r, 1 << LAYOUT_I8042_IRQ);
	name_crs(&b, res, r.len);
	device(&a, "PS2_", body, b.len);
	return a.bad || b.bad || r.bad ? 0 : a.len;
}

static void header(struct aml *a, const char *sig, uint32_t len, uint8_t rev)
{
	put(a, sig, 4);
	put32(a, len);
	put8(a, rev);
	put8(a, 0); /* checksum, filled in later */
	put(a, OEM_ID, 6);
	put(a, OEM_TABLE, 8);
	put32(a, 1);
	put(a, CREATOR, 4);
	put32(a, 1);
}

/* Finish a table written at a->p + start: length and checksum. */
static void seal(struct aml *a, size_t start)
{
	uint32_t len = (uint32_t)(a->len - start);
	uint8_t *t = a->p + start;

	if (a->bad)
		return;
	t[4] = (uint8_t)len;
	t[5] = (uint8_t)(len >> 8);
	t[6] = (uint8_t)(len >> 16);
	t[7] = (uint8_t)(len >> 24);
	t[9] = 0;
	t[9] = acpi_checksum(t, len);
}

/* A Generic Address Structure for one byte in I/O space. */
static void gas_io(struct aml *a, uint16_t port)
{
	put8(a, 1);
	put8(a, 8);
	put8(a, 0);
	put8(a, 1);
	put64(a, port);
}

static void align8(struct aml *a)
{
	while (!a->bad && a->len % 8)
		put8(a, 0);
}

int acpi_build(const struct guest_mem *m, int vcpus, const struct acpi_mmio_dev *devs, int ndevs)
{
	size_t cap = LAYOUT_ACPI_END - LAYOUT_RSDP, dsdt, fadt, madt, xsdt, scope_body_len;
	uint8_t *base = gm_ptr(m, LAYOUT_RSDP, cap);
	static uint8_t scope_body[16384];
	static const uint8_t scope_op = 0x10;
	struct aml a;
	struct aml s = { scope_body, 0, sizeof(scope_body), false };
	int i;

	if (!base)
		return -E2BIG;
	memset(base, 0, cap);
	a = (struct aml){ base, 0, cap, false };

	/* RSDP first (fixed address), then the tables; XSDT is filled last. */
	put(&a, "RSD PTR ", 8);
	put8(&a, 0);
	put(&a, OEM_ID, 6);
	put8(&a, 2);
	put32(&a, 0);
	put32(&a, 36);
	put64(&a, 0); /* XSDT address, patched below */
	put8(&a, 0);
	put8(&a, 0);
	put16(&a, 0);
	align8(&a);

	/* DSDT: Scope(\_SB_) { COM1, PS2_, V000..., VGEN, GED_ } */
	dsdt = a.len;
	header(&a, "DSDT", 0, 2);
	s.len = legacy_devices(scope_body + 4, sizeof(scope_body) - 4);
	memcpy(scope_body, "_SB_", 4);
	if (!s.len)
		return -E2BIG;
	s.len += 4;
	for (i = 0; i < ndevs; i++) {
		size_t n = acpi_aml_virtio_mmio(scope_body + s.len, sizeof(scope_body) - s.len, i, &devs[i]);
		if (!n)
			return -E2BIG;
		s.len += n;
	}
	{
		size_t n = acpi_aml_vmgenid(scope_body + s.len, sizeof(scope_body) - s.len, LAYOUT_VMGENID,
					    LAYOUT_GED_GSI);
		if (!n)
			return -E2BIG;
		s.len += n;
	}
	scope_body_len = s.len;
	{
		uint8_t op[2] = { scope_op, 0 };
		/* NameString "\_SB_" is the root char plus the segment. */
		uint8_t tmp[16384 + 1];

		if (scope_body_len + 1 > sizeof(tmp))
			return -E2BIG;
		tmp[0] = '\\';
		memcpy(tmp + 1, scope_body, scope_body_len);
		put_pkg(&a, op, 1, tmp, scope_body_len + 1);
	}
	/* Name(_S5_, Package() { 5 }): the sleep type poweroff writes. */
	put(&a, "\x08_S5_\x12\x04\x01\x0a\x05", 10);
	seal(&a, dsdt);
	align8(&a);

	/* FADT, revision 6: hardware-reduced, no fixed buttons. */
	fadt = a.len;
	header(&a, "FACP", 0, 6);
	put32(&a, 0);                                /* FIRMWARE_CTRL */
	put32(&a, (uint32_t)(LAYOUT_RSDP + dsdt));   /* DSDT */
	while (a.len - fadt < 109)
		put8(&a, 0);
	/* IAPC_BOOT_ARCH: no VGA, no CMOS RTC. Without the second, a kernel
	 * with the rtc_cmos driver polls the absent RTC's ports (0xff: update
	 * always in progress) for a second or more at boot; the wall clock
	 * comes from kvm-clock. */
	put16(&a, 1 << 2 | 1 << 5);
	put8(&a, 0);
	put32(&a, 1 << 20 | 1 << 4 | 1 << 5);        /* HW_REDUCED_ACPI, PWR_BUTTON, SLP_BUTTON */
	while (a.len - fadt < 131)
		put8(&a, 0);
	put8(&a, 5);                                 /* FADT minor version */
	put64(&a, 0);                                /* X_FIRMWARE_CTRL */
	put64(&a, LAYOUT_RSDP + dsdt);               /* X_DSDT */
	while (a.len - fadt < 244)
		put8(&a, 0);
	gas_io(&a, VMM_ACPI_SLEEP_CONTROL);          /* SLEEP_CONTROL_REG */
	gas_io(&a, VMM_ACPI_SLEEP_CONTROL + 1);      /* SLEEP_STATUS_REG */
	while (a.len - fadt < 268)
		put8(&a, 0);
	put(&a, "KILNVMM ", 8);                      /* hypervisor vendor */
	seal(&a, fadt);
	align8(&a);

	/* MADT: one IOAPIC, one local APIC per vCPU. */
	madt = a.len;
	header(&a, "APIC", 0, 6);
	put32(&a, (uint32_t)LAYOUT_LAPIC);
	put32(&a, 0);
	for (i = 0; i < vcpus; i++) {
		put8(&a, 0);
		put8(&a, 8);
		put8(&a, (uint8_t)i);
		put8(&a, (uint8_t)i);
		put32(&a, 1);
	}
	put8(&a, 1);
	put8(&a, 12);
	put8(&a, 0);
	put8(&a, 0);
	put32(&a, (uint32_t)LAYOUT_IOAPIC);
	put32(&a, 0);
	seal(&a, madt);
	align8(&a);

	xsdt = a.len;
	header(&a, "XSDT", 0, 1);
	put64(&a, LAYOUT_RSDP + fadt);
	put64(&a, LAYOUT_RSDP + madt);
	seal(&a, xsdt);
	if (a.bad)
		return -E2BIG;

	/* Patch the RSDP: XSDT address, then both checksums. */
	for (i = 0; i < 8; i++)
		base[24 + i] = (uint8_t)((LAYOUT_RSDP + xsdt) >> (8 * i));
	base[8] = acpi_checksum(base, 20);
	base[32] = acpi_checksum(base, 36);
	return 0;
}

int mptable_build(const struct guest_mem *m, int vcpus)
{
	size_t cap = MPTABLE_CAP, table;
	uint8_t *base = gm_ptr(m, LAYOUT_MPTABLE, cap);
	struct aml a;
	uint16_t entries = 0;
	uint8_t ioapic_id = (uint8_t)vcpus;
	int i;

	if (!base)
		return -E2BIG;
	memset(base, 0, cap);
	a = (struct aml){ base, 0, cap, false };
	put(&a, "_MP_", 4);
	put32(&a, (uint32_t)(LAYOUT_MPTABLE + 16));
	put8(&a, 1);     /* length in 16-byte units */
	put8(&a, 4);     /* spec revision 1.4 */
	put8(&a, 0);     /* checksum */
	put8(&a, 0);
	put32(&a, 0);
	table = a.len;
	put(&a, "PCMP", 4);
	put16(&a, 0);    /* length, patched */
	put8(&a, 4);
	put8(&a, 0);     /* checksum */
	put(&a, "KILN    ", 8);
	put(&a, "KILNVMM     ", 12);
	put32(&a, 0);
	put16(&a, 0);
	put16(&a, 0);    /* entry count, patched */
	put32(&a, (uint32_t)LAYOUT_LAPIC);
	put16(&a, 0);
	put8(&a, 0);
	put8(&a, 0);
	for (i = 0; i < vcpus; i++, entries++) {
		put8(&a, 0);                  /* processor */
		put8(&a, (uint8_t)i);
		put8(&a, 0x14);
		put8(&a, (uint8_t)(1 | (i == 0 ? 2 : 0)));
		put32(&a, 0x600);
		put32(&a, 0x201);             /* FPU, APIC */
		put32(&a, 0);
		put32(&a, 0);
	}
	put8(&a, 1);                          /* bus 0: ISA */
	put8(&a, 0);
	put(&a, "ISA   ", 6);
	entries++;
	put8(&a, 2);                          /* IOAPIC */
	put8(&a, ioapic_id);
	put8(&a, 0x11);
	put8(&a, 1);
	put32(&a, (uint32_t)LAYOUT_IOAPIC);
	entries++;
	for (i = 0; i < 16; i++, entries++) { /* ISA IRQs straight to IOAPIC pins */
		put8(&a, 3);
		put8(&a, i == 0 ? 3 : 0);     /* IRQ 0 is ExtINT through the PIC */
		put16(&a, 0);
		put8(&a, 0);
		put8(&a, (uint8_t)i);
		put8(&a, ioapic_id);
		put8(&a, (uint8_t)i);
	}
	for (i = 0; i < 2; i++, entries++) {  /* LINT0 ExtINT, LINT1 NMI */
		put8(&a, 4);
		put8(&a, i == 0 ? 3 : 1);
		put16(&a, 0);
		put8(&a, 0);
		put8(&a, 0);
		put8(&a, 0xff);
		put8(&a, (uint8_t)i);
	}
	if (a.bad)
		return -E2BIG;
	base[table + 4] = (uint8_t)(a.len - table);
	base[table + 5] = (uint8_t)((a.len - table) >> 8);
	base[table + 34] = (uint8_t)entries;
	base[table + 35] = (uint8_t)(entries >> 8);
	base[table + 7] = acpi_checksum(base + table, a.len - table);
	base[10] = acpi_checksum(base, 16);
	return 0;
}
