#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/layout.h"
#include "vmm/loader.h"

static struct guest_mem mem;
static char err[256];

static void setup(void)
{
	gm_layout(&mem, 64 << 20);
	mem.host = calloc(1, 64 << 20);
}

static void teardown(void) { free(mem.host); }

static void w16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void w32(uint8_t *p, uint32_t v) { w16(p, (uint16_t)v); w16(p + 2, (uint16_t)(v >> 16)); }
static uint32_t r32(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24); }

/* A fake bzImage: 4 setup sectors + 1 boot sector, then "payload". */
static uint8_t *fake_bzimage(size_t *len, uint16_t version, uint16_t xload)
{
	size_t n = 5 * 512 + 4096;
	uint8_t *b = calloc(1, n);

	b[0x1f1] = 4;
	w16(b + 0x1fe, 0xaa55);
	b[0x201] = 0x62;                 /* jump: header ends at 0x264 */
	w32(b + 0x202, 0x53726448);
	w16(b + 0x206, version);
	w32(b + 0x22c, 0x7fffffff);      /* initrd_addr_max */
	w16(b + 0x236, xload);
	w32(b + 0x260, 8 << 20);         /* init_size */
	memcpy(b + 5 * 512, "payload", 7);
	*len = n;
	return b;
}

START_TEST(bzimage_loads_at_1mib)
{
	struct boot_info bi;
	size_t len;
	uint8_t *k = fake_bzimage(&len, 0x20f, 1), *zp;
	static uint8_t initrd[8192];

	ck_assert_msg(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(bi.mode, BOOT_LINUX64);
	ck_assert_uint_eq(bi.entry, 0x100200);
	ck_assert(!memcmp(gm_ptr(&mem, 0x100000, 7), "payload", 7));
	memset(initrd, 0x5a, sizeof(initrd));
	ck_assert_int_eq(loader_load_initrd(&mem, initrd, sizeof(initrd), -1, loader_initrd_max(k, len), &bi), 0);
	ck_assert_uint_eq(bi.initrd_addr, (64 << 20) - 8192);
	ck_assert_uint_eq(bi.initrd_addr % 4096, 0);
	ck_assert_msg(loader_write_boot_params(&mem, k, len, "console=ttyS0", &bi, err, sizeof(err)) == 0, "%s", err);
	zp = gm_ptr(&mem, LAYOUT_ZERO_PAGE, 4096);
	ck_assert_uint_eq(r32(zp + 0x202), 0x53726448);     /* header copied from the image */
	ck_assert_uint_eq(zp[0x210], 0xff);                /* type_of_loader */
	ck_assert_uint_eq(r32(zp + 0x228), LAYOUT_CMDLINE);
	ck_assert_uint_eq(r32(zp + 0x218), (64 << 20) - 8192);
	ck_assert_uint_eq(r32(zp + 0x21c), 8192);
	ck_assert_uint_eq(zp[0x1e8], 3);                   /* e820 entries */
	ck_assert_uint_eq(r32(zp + 0x2d0 + 40 + 8), (64 << 20) - 0x100000);
	ck_assert_str_eq((char *)gm_ptr(&mem, LAYOUT_CMDLINE, 14), "console=ttyS0");
	free(k);
}
END_TEST

START_TEST(bzimage_rejections)
{
	struct boot_info bi;
	size_t len;
	uint8_t *k = fake_bzimage(&len, 0x20b, 1);
	static uint8_t junk[4096];
	char big[3000];

	ck_assert_int_ne(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "older than 2.12"));
	free(k);
	k = fake_bzimage(&len, 0x20f, 0);
	ck_assert_int_ne(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "64-bit entry"));
	ck_assert_int_ne(loader_load_kernel(&mem, k, 5 * 512, -1, &bi, err, sizeof(err)), 0);
	free(k);
	ck_assert_int_ne(loader_load_kernel(&mem, junk, sizeof(junk), -1, &bi, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "neither"));
	/* A command line over 2047 bytes is refused, not truncated. */
	k = fake_bzimage(&len, 0x20f, 1);
	ck_assert_int_eq(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_ne(loader_write_boot_params(&mem, k, len, big, &bi, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "command line"));
	/* An initrd larger than RAM does not fit. */
	ck_assert_int_ne(loader_load_initrd(&mem, mem.host, 64 << 20, -1, 0xffffffff, &bi), 0);
	free(k);
}
END_TEST

/* A minimal ELF vmlinux: one PT_LOAD at 16 MiB and a Xen PVH note. */
static uint8_t *fake_elf(size_t *len, int with_note)
{
	size_t n = 4096 * 2;
	uint8_t *b = calloc(1, n);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;
	Elf64_Phdr *ph = (Elf64_Phdr *)(b + sizeof(*eh));
	uint8_t *note = b + 1024;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_entry = 0x1000000;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 4096, .p_paddr = 0x1000000, .p_filesz = 4096,
			      .p_memsz = 8192 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 1024, .p_filesz = with_note ? 20 : 0 };
	w32(note, 4);
	w32(note + 4, 4);
	w32(note + 8, 18);
	memcpy(note + 12, "Xen", 4);
	w32(note + 16, 0x1000123);
	memset(b + 4096, 0xcc, 4096);
	*len = n;
	return b;
}

START_TEST(elf_with_pvh_note)
{
	struct boot_info bi;
	size_t len;
	uint8_t *k = fake_elf(&len, 1), *info;

	memset(gm_ptr(&mem, 0x1001000, 4096), 0xee, 4096);
	ck_assert_msg(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(bi.mode, BOOT_PVH);
	ck_assert_uint_eq(bi.entry, 0x1000123);
	ck_assert_uint_eq(bi.kernel_end, 0x1002000);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&mem, 0x1000000, 1), 0xcc);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&mem, 0x1001000, 1), 0); /* bss zeroed */
	ck_assert_int_eq(loader_write_boot_params(&mem, k, len, "quiet", &bi, err, sizeof(err)), 0);
	info = gm_ptr(&mem, LAYOUT_PVH_INFO, 56);
	ck_assert_uint_eq(r32(info), 0x336ec578);
	ck_assert_uint_eq(r32(info + 24), LAYOUT_CMDLINE);
	ck_assert_uint_eq(r32(info + 48), 3); /* memmap entries */
	free(k);
	k = fake_elf(&len, 0);
	ck_assert_int_eq(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	ck_assert_int_eq(bi.mode, BOOT_LINUX64);
	ck_assert_uint_eq(bi.entry, 0x1000000);
	free(k);
}
END_TEST

/* Read through the file descriptor: the same guest memory as the copy,
 * and a file cut short is an error, not a crash. */
START_TEST(elf_read_through_fd)
{
	char path[] = "/tmp/kiln-loader-test-XXXXXX";
	struct boot_info bi;
	size_t len;
	uint8_t *k = fake_elf(&len, 1);
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(write(fd, k, len), (ssize_t)len);
	memset(gm_ptr(&mem, 0x1000000, 8192), 0x55, 8192);
	ck_assert_msg(loader_load_kernel(&mem, k, len, fd, &bi, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(memcmp(gm_ptr(&mem, 0x1000000, 4096), k + 4096, 4096), 0);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&mem, 0x1001000, 1), 0);
	ck_assert_int_eq(ftruncate(fd, 4096 + 100), 0);
	ck_assert_int_eq(loader_load_kernel(&mem, k, len, fd, &bi, err, sizeof(err)), -EIO);
	ck_assert_ptr_nonnull(strstr(err, "reading ELF segment"));
	close(fd);
	free(k);
}
END_TEST

START_TEST(elf_hostile_headers)
{
	struct boot_info bi;
	size_t len;
	uint8_t *k = fake_elf(&len, 1);
	Elf64_Phdr *ph = (Elf64_Phdr *)(k + sizeof(Elf64_Ehdr));

	ph[0].p_paddr = 0xfffffffffffff000ULL;  /* wraps around */
	ck_assert_int_ne(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	ph[0].p_paddr = 0x1000000;
	ph[0].p_filesz = 1 << 30;               /* past the file */
	ck_assert_int_ne(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	ph[0].p_filesz = 4096;
	ph[0].p_memsz = 1ULL << 40;             /* past guest RAM */
	ck_assert_int_ne(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	ph[0].p_memsz = 8192;
	((Elf64_Ehdr *)k)->e_phnum = 60000;     /* table past the file */
	ck_assert_int_ne(loader_load_kernel(&mem, k, len, -1, &bi, err, sizeof(err)), 0);
	free(k);
}
END_TEST

Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, bzimage_loads_at_1mib);
	tcase_add_test(tc, bzimage_rejections);
	tcase_add_test(tc, elf_with_pvh_note);
	tcase_add_test(tc, elf_read_through_fd);
	tcase_add_test(tc, elf_hostile_headers);
	suite_add_tcase(s, tc);
	return s;
}
