/* Firmware tables for the guest: ACPI (RSDP, XSDT, hardware-reduced FADT,
 * MADT, DSDT describing COM1, the i8042 and every virtio-mmio device as
 * LNRO0005) and the Intel MP table, so that kernels without
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

/* The byte that makes the sum of p[0..n) zero when stored in it. */
uint8_t acpi_checksum(const uint8_t *p, size_t n);

#endif
