#include "vmm/loader.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/layout.h"

#define ZP_E820_ENTRIES 0x1e8
#define ZP_SETUP_SECTS 0x1f1
#define ZP_BOOT_FLAG 0x1fe
#define ZP_JUMP 0x200
#define ZP_HEADER 0x202
#define ZP_VERSION 0x206
#define ZP_TYPE_OF_LOADER 0x210
#define ZP_LOADFLAGS 0x211
#define ZP_RAMDISK_IMAGE 0x218
#define ZP_RAMDISK_SIZE 0x21c
#define ZP_CMD_LINE_PTR 0x228
#define ZP_INITRD_ADDR_MAX 0x22c
#define ZP_KERNEL_ALIGNMENT 0x230
#define ZP_XLOADFLAGS 0x236
#define ZP_CMDLINE_SIZE 0x238
#define ZP_PREF_ADDRESS 0x258
#define ZP_INIT_SIZE 0x260
#define ZP_ACPI_RSDP 0x070
#define ZP_E820_TABLE 0x2d0
#define ZP_E820_MAX 128
#define XLF_KERNEL_64 1
#define HDRS_MAGIC 0x53726448  /* "HdrS" */
#define E820_RAM 1
#define E820_RESERVED 2
#define PVH_MAGIC 0x336ec578
#define XEN_ELFNOTE_PHYS32_ENTRY 18

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static bool is_bzimage(const uint8_t *buf, size_t len)
{
	return len > 0x264 && rd32(buf + ZP_HEADER) == HDRS_MAGIC && rd16(buf + ZP_BOOT_FLAG) == 0xaa55;
}

/* Copy n bytes at offset off of the image into dst: with pread when fd is
 * open (the page cache is copied straight into guest RAM, without faulting
 * in a mapping of the file page by page), else from the mapped image. */
static int copy_in(void *dst, const uint8_t *buf, int fd, uint64_t off, size_t n)
{
	uint8_t *d = dst;

	if (fd < 0) {
		memcpy(d, buf + off, n);
		return 0;
	}
	while (n > 0) {
		ssize_t r = pread(fd, d, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		d += r;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}

static bool is_elf64(const uint8_t *buf, size_t len)
{
	return len >= sizeof(Elf64_Ehdr) && !memcmp(buf, ELFMAG, SELFMAG) && buf[EI_CLASS] == ELFCLASS64;
}

uint64_t loader_initrd_max(const uint8_t *buf, size_t len)
{
	if (is_bzimage(buf, len) && rd32(buf + ZP_INITRD_ADDR_MAX))
		return rd32(buf + ZP_INITRD_ADDR_MAX);
	return 0xffffffffULL;
}

static int load_bzimage(const struct guest_mem *m, const uint8_t *buf, size_t len, int fd, struct boot_info *bi,
			char *err, size_t errlen)
{
	uint16_t version = rd16(buf + ZP_VERSION);
	unsigned setup_sects = buf[ZP_SETUP_SECTS] ? buf[ZP_SETUP_SECTS] : 4;
	size_t off = (size_t)(setup_sects + 1) * 512;
	uint64_t pref, init_size, need;
	void *dst;

	if (version < 0x20c)
		return fail(err, errlen, -EINVAL, "bzImage boot protocol %u.%02u is older than 2.12", version >> 8,
			    version & 0xff);
	if (!(rd16(buf + ZP_XLOADFLAGS) & XLF_KERNEL_64))
		return fail(err, errlen, -EINVAL, "bzImage has no 64-bit entry point (XLF_KERNEL_64)");
	if (off >= len)
		return fail(err, errlen, -EINVAL, "bzImage is truncated: setup ends past the file");
	dst = gm_ptr(m, LAYOUT_HIMEM, len - off);
	if (!dst)
		return fail(err, errlen, -E2BIG, "bzImage (%zu bytes) does not fit in guest memory", len - off);
	if (copy_in(dst, buf, fd, off, len - off))
		return fail(err, errlen, -EIO, "reading the bzImage failed");
	/* The decompressor runs in place at pref_address and needs init_size. */
	pref = rd64(buf + ZP_PREF_ADDRESS);
	init_size = rd32(buf + ZP_INIT_SIZE);
	need = (pref > LAYOUT_HIMEM ? pref : LAYOUT_HIMEM) + init_size;
	if (!gm_ptr(m, 0, need))
		return fail(err, errlen, -E2BIG, "guest memory too small: the kernel needs %llu MiB to decompress",
			    (unsigned long long)(need >> 20) + 1);
	bi->mode = BOOT_LINUX64;
	bi->entry = LAYOUT_HIMEM + 0x200;
	bi->kernel_end = need > LAYOUT_HIMEM + (len - off) ? need : LAYOUT_HIMEM + (len - off);
	return 0;
}

/* The PVH entry from a Xen PHYS32_ENTRY note in [p, p + n), or 0. */
static uint64_t pvh_note(const uint8_t *p, size_t n)
{
	size_t off = 0;

	while (off + 12 <= n) {
		uint32_t namesz = rd32(p + off), descsz = rd32(p + off + 4), type = rd32(p + off + 8);
		size_t name_off = off + 12;
		size_t desc_off = name_off + ((namesz + 3) & ~3u);
		size_t next = desc_off + ((descsz + 3) & ~3u);

		if (namesz > n || descsz > n || next > n || next <= off)
			return 0;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && !memcmp(p + name_off, "Xen", 4))
			return descsz >= 8 ? rd64(p + desc_off) : descsz >= 4 ? rd32(p + desc_off) : 0;
		off = next;
	}
	return 0;
}

static int load_elf(const struct guest_mem *m, const uint8_t *buf, size_t len, int fd, struct boot_info *bi,
		    char *err, size_t errlen)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)buf;
	uint64_t pvh = 0, end = 0;
	int i, loaded = 0;

	if (eh->e_machine != EM_X86_64 || buf[EI_DATA] != ELFDATA2LSB)
		return fail(err, errlen, -EINVAL, "ELF kernel is not little-endian x86_64");
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 64 ||
	    eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return fail(err, errlen, -EINVAL, "ELF kernel has a bad program header table");
	for (i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(buf + eh->e_phoff) + i;
		uint8_t *dst;

		if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset)
			return fail(err, errlen, -EINVAL, "ELF segment %d lies outside the file", i);
		if (ph->p_type == PT_NOTE && !pvh) {
			pvh = pvh_note(buf + ph->p_offset, ph->p_filesz);
			continue;
		}
		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_paddr < LAYOUT_HIMEM)
			return fail(err, errlen, -EINVAL, "ELF segment %d has a bad address or size", i);
		dst = gm_ptr(m, ph->p_paddr, ph->p_memsz);
		if (!dst)
			return fail(err, errlen, -E2BIG, "ELF segment %d at 0x%llx does not fit in guest memory", i,
				    (unsigned long long)ph->p_paddr);
		if (copy_in(dst, buf, fd, ph->p_offset, ph->p_filesz))
			return fail(err, errlen, -EIO, "reading ELF segment %d failed", i);
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		if (ph->p_paddr + ph->p_memsz > end)
			end = ph->p_paddr + ph->p_memsz;
		loaded++;
	}
	if (!loaded)
		return fail(err, errlen, -EINVAL, "ELF kernel has no loadable segment");
	bi->kernel_end = end;
	if (pvh) {
		bi->mode = BOOT_PVH;
		bi->entry = pvh;
	} else {
		bi->mode = BOOT_LINUX64;
		bi->entry = eh->e_entry;
	}
	return 0;
}

int loader_load_kernel(const struct guest_mem *m, const uint8_t *buf, size_t len, int fd, struct boot_info *bi,
		       char *err, size_t errlen)
{
	memset(bi, 0, sizeof(*bi));
	if (is_elf64(buf, len))
		return load_elf(m, buf, len, fd, bi, err, errlen);
	if (is_bzimage(buf, len))
		return load_bzimage(m, buf, len, fd, bi, err, errlen);
	return fail(err, errlen, -EINVAL, "kernel is neither an ELF vmlinux nor a bzImage");
}

int loader_load_initrd(const struct guest_mem *m, const uint8_t *buf, size_t len, int fd, uint64_t max_addr,
		       struct boot_info *bi)
{
	uint64_t top = m->low_size < max_addr + 1 ? m->low_size : max_addr + 1;
	uint64_t addr;
	void *dst;

	if (len > top)
		return -E2BIG;
	addr = (top - len) & ~0xfffULL;
	if (addr < bi->kernel_end || !(dst = gm_ptr(m, addr, len)))
		return -E2BIG;
	if (copy_in(dst, buf, fd, 0, len))
		return -EIO;
	bi->initrd_addr = addr;
	bi->initrd_size = len;
	return 0;
}

struct e820 {
	uint64_t addr, size;
	uint32_t type;
};

static int build_e820(const struct guest_mem *m, struct e820 *e)
{
	int n = 0;

	e[n++] = (struct e820){ 0, LAYOUT_EBDA_START, E820_RAM };
	e[n++] = (struct e820){ LAYOUT_EBDA_START, LAYOUT_HIMEM - LAYOUT_EBDA_START, E820_RESERVED };
	e[n++] = (struct e820){ LAYOUT_HIMEM, m->low_size - LAYOUT_HIMEM, E820_RAM };
	if (m->high_size)
		e[n++] = (struct e820){ GM_HIGH_START, m->high_size, E820_RAM };
	return n;
}

static int write_zero_page(const struct guest_mem *m, const uint8_t *kbuf, size_t klen, size_t cmdlen,
			   const struct boot_info *bi)
{
	uint8_t *zp = gm_ptr(m, LAYOUT_ZERO_PAGE, 4096);
	struct e820 e[4];
	int n, i;

	if (!zp)
		return -E2BIG;
	memset(zp, 0, 4096);
	if (is_bzimage(kbuf, klen)) {
		/* Start from the image's own setup header, as the boot protocol asks. */
		size_t end = ZP_JUMP + 2 + kbuf[ZP_JUMP + 1];
		if (end > klen || end > 4096)
			return -EINVAL;
		memcpy(zp + ZP_SETUP_SECTS, kbuf + ZP_SETUP_SECTS, end - ZP_SETUP_SECTS);
	} else {
		wr16(zp + ZP_BOOT_FLAG, 0xaa55);
		wr32(zp + ZP_HEADER, HDRS_MAGIC);
		wr32(zp + ZP_KERNEL_ALIGNMENT, 0x1000000);
	}
	zp[ZP_TYPE_OF_LOADER] = 0xff;
	zp[ZP_LOADFLAGS] |= 1; /* LOADED_HIGH */
	wr32(zp + ZP_CMD_LINE_PTR, LAYOUT_CMDLINE);
	wr32(zp + ZP_CMDLINE_SIZE, (uint32_t)cmdlen);
	wr32(zp + ZP_RAMDISK_IMAGE, (uint32_t)bi->initrd_addr);
	wr32(zp + ZP_RAMDISK_SIZE, (uint32_t)bi->initrd_size);
	wr64(zp + ZP_ACPI_RSDP, LAYOUT_RSDP);
	n = build_e820(m, e);
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	for (i = 0; i < n; i++) {
		wr64(zp + ZP_E820_TABLE + 20 * i, e[i].addr);
		wr64(zp + ZP_E820_TABLE + 20 * i + 8, e[i].size);
		wr32(zp + ZP_E820_TABLE + 20 * i + 16, e[i].type);
	}
	return 0;
}

static int write_pvh_info(const struct guest_mem *m, const struct boot_info *bi)
{
	uint8_t *info = gm_ptr(m, LAYOUT_PVH_INFO, 56);
	uint8_t *mod = gm_ptr(m, LAYOUT_PVH_MODLIST, 32);
	struct e820 e[4];
	uint8_t *map;
	int n, i;

	n = build_e820(m, e);
	map = gm_ptr(m, LAYOUT_PVH_MEMMAP, 24 * (uint64_t)n);
	if (!info || !mod || !map)
		return -E2BIG;
	memset(info, 0, 56);
	wr32(info, PVH_MAGIC);
	wr32(info + 4, 1);                     /* version */
	wr32(info + 12, bi->initrd_size ? 1 : 0); /* nr_modules */
	wr64(info + 16, LAYOUT_PVH_MODLIST);
	wr64(info + 24, LAYOUT_CMDLINE);
	wr64(info + 32, LAYOUT_RSDP);
	wr64(info + 40, LAYOUT_PVH_MEMMAP);
	wr32(info + 48, (uint32_t)n);
	memset(mod, 0, 32);
	wr64(mod, bi->initrd_addr);
	wr64(mod + 8, bi->initrd_size);
	for (i = 0; i < n; i++) {
		wr64(map + 24 * i, e[i].addr);
		wr64(map + 24 * i + 8, e[i].size);
		wr32(map + 24 * i + 16, e[i].type);
		wr32(map + 24 * i + 20, 0);
	}
	return 0;
}

int loader_write_boot_params(const struct guest_mem *m, const uint8_t *kbuf, size_t klen, const char *cmdline,
			     const struct boot_info *bi, char *err, size_t errlen)
{
	size_t cmdlen = strlen(cmdline);
	int rc;

	if (cmdlen >= LAYOUT_CMDLINE_MAX)
		return fail(err, errlen, -E2BIG, "kernel command line is %zu bytes, the limit is %d", cmdlen,
			    LAYOUT_CMDLINE_MAX - 1);
	if (!gm_write(m, LAYOUT_CMDLINE, cmdline, cmdlen + 1))
		return fail(err, errlen, -E2BIG, "guest memory too small for the command line");
	rc = bi->mode == BOOT_PVH ? write_pvh_info(m, bi) : write_zero_page(m, kbuf, klen, cmdlen, bi);
	if (rc)
		return fail(err, errlen, rc, "cannot write the boot parameters (%s)", strerror(-rc));
	return 0;
}
