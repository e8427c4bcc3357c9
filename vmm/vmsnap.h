/* Saving a running VM into a snapshot directory and building one back
 * from it: KVM's state of the VM (irqchips, PIT, kvmclock) and of each
 * vCPU, the legacy devices, every virtio device, and guest memory. The
 * container format is snapshot.h's; docs/vmm.md "Snapshots" has both. */
#ifndef VMM_VMSNAP_H
#define VMM_VMSNAP_H

#include <stdint.h>

#include "vmm/snapshot.h"
#include "vmm/vm.h"

#define VMSNAP_MAX_MSRS 1024

/* What the host offers, read once before the jail (KVM_GET_MSR_INDEX_LIST
 * and KVM_GET_SUPPORTED_CPUID are on /dev/kvm's fd). */
struct vmsnap_host {
	uint32_t msrs[VMSNAP_MAX_MSRS];   /* MSRs KVM can save and restore */
	uint32_t n_msrs;
	uint32_t xsave_size;              /* KVM_GET_XSAVE2's size, 4096 without XSAVE2 */
	bool xsave2;
	uint8_t cpu[SNAP_DIGEST];         /* sha256 of supported CPUID and xsave_size */
};

/* Fill h from the VM's KVM fds (after vm_create). 0 or -errno with err. */
int vmsnap_host_probe(struct vm *vm, struct vmsnap_host *h, char *err, size_t errlen);

/* Write the state of a paused VM (vm_pause) into w, one section per part.
 * 0 or -errno with err. */
int vmsnap_save_state(struct vm *vm, const struct vmsnap_host *h, struct snap_writer *w, char *err, size_t errlen);

/* Save into the directory dirfd: guest memory to "memory", then the state
 * to "state", each written to a temporary name first and renamed, so a
 * "state" file always comes with its memory. The VM must be paused.
 * 0 or -errno with err. */
int vmsnap_save(struct vm *vm, const struct vmsnap_host *h, int dirfd, const uint8_t machine[SNAP_DIGEST],
		char *err, size_t errlen);

/* Read and check DIR/state against this machine and host: into buf
 * (malloc'd, the caller frees it), parsed into f. 0 or -errno with err. */
int vmsnap_load_file(const char *dir, const struct vmsnap_host *h, const uint8_t machine[SNAP_DIGEST],
		     uint8_t **buf, struct snap_file *f, char *err, size_t errlen);

/* Map DIR/memory as guest RAM of mem_bytes, in place of vm_map_memory:
 * the file's data extents MAP_PRIVATE (pages come on demand; VMs restored
 * from one file share the clean ones), its holes of 64 KiB or more (or
 * mem_bytes / 4096) anonymous, so a guest page first written there costs
 * one page, not a file page and its copy. 0 or -errno with err. */
int vmsnap_map_memory(struct vm *vm, const char *dir, uint64_t mem_bytes, char *err, size_t errlen);

/* Copy DIR/memory into the guest RAM vm_map_memory mapped (anonymous, huge
 * pages where the host allows): slower to start and not shared, but the
 * guest then faults its memory in 2 MiB at a time. Only the file's data
 * extents are read. 0 or -errno with err. */
int vmsnap_copy_memory(struct vm *vm, const char *dir, char *err, size_t errlen);

/* Put f's state into a VM made the same way (vm_create, the same devices,
 * vm_create_vcpu for each vCPU) before its vCPUs start. Every field is
 * checked. 0 or -errno with err. */
int vmsnap_restore_state(struct vm *vm, const struct vmsnap_host *h, const struct snap_file *f, char *err,
			 size_t errlen);

#endif
