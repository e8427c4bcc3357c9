/* The guest's physical memory map (Firecracker's x86_64 layout). */
#ifndef VMM_LAYOUT_H
#define VMM_LAYOUT_H

#define LAYOUT_GDT 0x500
#define LAYOUT_IDT 0x520
#define LAYOUT_PVH_INFO 0x6000
#define LAYOUT_PVH_MODLIST 0x6040
#define LAYOUT_PVH_MEMMAP 0x6080
#define LAYOUT_ZERO_PAGE 0x7000
#define LAYOUT_STACK 0x8ff0
#define LAYOUT_PML4 0x9000
#define LAYOUT_PDPT 0xa000
#define LAYOUT_PD 0xb000
#define LAYOUT_CMDLINE 0x20000
#define LAYOUT_CMDLINE_MAX 2048
#define LAYOUT_EBDA_START 0x9fc00   /* reserved up to 0x100000: MP table, ACPI */
#define LAYOUT_MPTABLE 0x9fc00
/* The 16-byte VM generation ID, alone in the reserved page after the MP
 * table (guest RAM, so a snapshot's memory file holds it). */
#define LAYOUT_VMGENID 0xa0000
#define LAYOUT_VMGENID_SIZE 16
#define LAYOUT_RSDP 0xe0000
#define LAYOUT_ACPI_END 0x100000
#define LAYOUT_HIMEM 0x100000       /* kernel load address */

#define LAYOUT_BOOT_TIMER 0xc0000000ULL
#define LAYOUT_MMIO_BASE 0xc0001000ULL  /* virtio-mmio devices, 4 KiB apart */
#define LAYOUT_MMIO_SIZE 0x1000
#define LAYOUT_IOAPIC 0xfec00000ULL
#define LAYOUT_LAPIC 0xfee00000ULL
#define LAYOUT_TSS 0xfffbd000ULL
#define LAYOUT_IDENTITY_MAP 0xfffbc000ULL

#define LAYOUT_FIRST_GSI 5          /* 0-4 are legacy (timer, i8042, COM1...) */
#define LAYOUT_LAST_GSI 23
#define LAYOUT_GED_GSI 23           /* ACPI Generic Event Device: "the VM generation ID changed" */
#define VMM_ACPI_SLEEP_CONTROL 0x3c0  /* hardware-reduced ACPI sleep control (S5 = poweroff) */
#define LAYOUT_SERIAL_IRQ 4
#define LAYOUT_I8042_IRQ 1

#endif
