/* Loading a Linux kernel into guest memory and writing what it needs to
 * start: bzImage (boot protocol >= 2.12, 64-bit entry) or ELF vmlinux (PVH
 * entry when it carries the Xen PVH note, else the 64-bit entry), the
 * command line, the initrd, and the zero page or PVH start info with the
 * e820 map. Works on a guest_mem only, so it is testable without KVM. */
#ifndef VMM_LOADER_H
#define VMM_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guestmem.h"

enum boot_mode { BOOT_LINUX64, BOOT_PVH };

struct boot_info {
	enum boot_mode mode;
	uint64_t entry;        /* first instruction */
	uint64_t kernel_end;   /* first byte after the loaded kernel */
	uint64_t initrd_addr;  /* 0 when none */
	uint64_t initrd_size;
};

/* Load the kernel image held in buf (size len, parsed from there); what
 * goes into guest memory is read from fd with pread when fd >= 0 (the file
 * buf maps: faster than faulting the mapping in), else copied from buf.
 * err gets a one-line reason on failure. Returns 0 or
 * -EINVAL/-E2BIG/-ENOMEM/-EIO. */
int loader_load_kernel(const struct guest_mem *m, const uint8_t *buf, size_t len, int fd, struct boot_info *bi,
		       char *err, size_t errlen);

/* Place the initrd (buf, or read from fd when fd >= 0, as above) at the top
 * of low RAM (below max_addr) after the kernel. 0, -E2BIG when it does not
 * fit, -EIO when reading fails. */
int loader_load_initrd(const struct guest_mem *m, const uint8_t *buf, size_t len, int fd, uint64_t max_addr,
		       struct boot_info *bi);

/* Write the command line and the zero page (BOOT_LINUX64) or the PVH start
 * info (BOOT_PVH), both with the e820 map; kernel_buf is the image again
 * (its setup header seeds the zero page of a bzImage). err gets a one-line
 * reason on failure. Returns 0 or -E2BIG/-EINVAL. */
int loader_write_boot_params(const struct guest_mem *m, const uint8_t *kernel_buf, size_t kernel_len,
			     const char *cmdline, const struct boot_info *bi, char *err, size_t errlen);

/* Largest address an initrd may end at, from a bzImage header (or 4 GiB). */
uint64_t loader_initrd_max(const uint8_t *kernel_buf, size_t kernel_len);

#endif
