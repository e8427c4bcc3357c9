/* The VM generation ID (ACPI VMGENID): 16 random bytes at LAYOUT_VMGENID
 * that change whenever the machine may have been cloned, i.e. on every
 * restore from a snapshot. acpi_build describes it (Device VGEN) and the
 * Generic Event Device whose interrupt, LAYOUT_GED_GSI, tells the guest to
 * re-read it; Linux's vmgenid driver then reseeds its CRNG at once
 * (add_vmfork_randomness) instead of at its next scheduled reseed. */
#ifndef VMM_VMGENID_H
#define VMM_VMGENID_H

#include <stdint.h>

#include "vmm/guestmem.h"
#include "vmm/layout.h"

/* Write a fresh random ID (getrandom) into guest memory at LAYOUT_VMGENID
 * and copy it to id when id is not NULL. At a cold boot, and on a restore
 * before any vCPU runs; after a restore the caller then pulses
 * LAYOUT_GED_GSI. 0, -EFAULT when guest RAM does not hold the ID's range,
 * or -errno of getrandom. */
int vmgenid_fresh(const struct guest_mem *m, uint8_t id[LAYOUT_VMGENID_SIZE]);

#endif
