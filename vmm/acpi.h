/* Firmware tables for the guest: ACPI (RSDP, XSDT, hardware-reduced FADT,
 * MADT, DSDT describing COM1, the i8042, every virtio-mmio device as
 * LNRO0005 and the VM generation ID with its Generic Event Device) and the Intel MP table, so that kernels without
 * VIRTIO_MMIO_CMDLINE_DEVICES or without ACPI both find everything. */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/guestmem.h"

struct acpi_mmio_dev {
	uint64_t base;
	uint32_t size;
	uint32_t gsi;
};

/* Write the RSDP at LAYOUT_RSDP and the tables after it (below
 * LAYOUT_ACPI_END). 0 or -E2BIG when they do not fit. */
int acpi_build(const struct guest_mem *m, int vcpus, const struct acpi_mmio_dev *devs, int ndevs);

/* Write the MP floating pointer and configuration table at LAYOUT_MPTABLE.
 * 0 or -E2BIG. */
int mptable_build(const struct guest_mem *m, int vcpus);

/* The AML of one virtio-mmio device (Device(Vnnn) with _HID "LNRO0005",
 * _UID, _CCA and _CRS = Memory32Fixed + Interrupt); returns its length, or
 * 0 when cap is too small. */
size_t acpi_aml_virtio_mmio(uint8_t *out, size_t cap, int index, const struct acpi_mmio_dev *dev);

/* The AML of the VM generation ID (ACPI VMGENID, as Linux's vmgenid driver
 * reads it) and of the event that announces a new one: Device(VGEN) with
 * _HID "VMGENCTR", _CID and _DDN "VM_GEN_COUNTER" and Method(ADDR) returning
 * Package { low, high 32 bits of id_addr }, where the 16-byte ID lives; and
 * Device(GED_), _HID "ACPI0013" (a Generic Event Device), whose _CRS is
 * gsi (edge, active high) and whose _EVT does Notify(\_SB_.VGEN, 0x80)
 * for that gsi, on which the guest re-reads the ID. Both go in \_SB_.
 * Returns the length, or 0 when cap is too small. */
size_t acpi_aml_vmgenid(uint8_t *out, size_t cap, uint64_t id_addr, uint32_t gsi);

/* The byte that makes the sum of p[0..n) zero when stored in it. */
uint8_t acpi_checksum(const uint8_t *p, size_t n);

#endif
