/* Guest physical memory and the one checked way to reach it.
 *
 * RAM is one host mapping split in at most two guest ranges: [0, low_size)
 * and, when the guest has more than fits below the 32-bit MMIO gap,
 * [4 GiB, 4 GiB + high_size). Every guest-supplied address goes through
 * gm_ptr(), which checks bounds and overflow. */
#ifndef VMM_GUESTMEM_H
#define VMM_GUESTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GM_GAP_START 0xC0000000ULL  /* 32-bit MMIO gap: boot timer, virtio-mmio, IOAPIC, LAPIC */
#define GM_HIGH_START 0x100000000ULL

struct guest_mem {
	uint8_t *host;       /* mapping of low_size + high_size bytes */
	uint64_t low_size;   /* RAM at [0, low_size) */
	uint64_t high_size;  /* RAM at [4 GiB, 4 GiB + high_size) */
};

/* Split size bytes of RAM into the two ranges (no mapping is made). */
void gm_layout(struct guest_mem *m, uint64_t size);

/* Host pointer for guest range [gpa, gpa + len), or NULL when any byte lies
 * outside RAM, the range crosses the gap, or the arithmetic overflows.
 * len 0 is allowed and checks gpa alone. */
void *gm_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory; false when the range is not all RAM. */
bool gm_read(const struct guest_mem *m, void *dst, uint64_t gpa, uint64_t len);
bool gm_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);

#endif
