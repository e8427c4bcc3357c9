/* The KVM machine: VM and vCPU file descriptors, guest RAM, the legacy
 * devices and the virtio-mmio devices, and the rules for ending the VM. */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "lib/clock.h"
#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/i8042.h"
#include "vmm/layout.h"
#include "vmm/loader.h"
#include "vmm/serial.h"
#include "vmm/virtio/virtio.h"
#include "vmm/vmconfig.h"

#define VM_MAX_VIRTIO 16   /* GSIs 5..20 */
_Static_assert(LAYOUT_FIRST_GSI + VM_MAX_VIRTIO <= LAYOUT_GED_GSI, "virtio GSIs run into the GED's");
#define VM_ACPI_SLEEP_PORT VMM_ACPI_SLEEP_CONTROL
/* Sent by vm_shutdown and vm_pause to a vCPU thread inside KVM_RUN: KVM
 * returns EINTR for a pending signal; the handler itself does nothing. A
 * real-time signal, so that SIGUSR2 stays free for "save a snapshot". */
#define VM_VCPU_KICK_SIGNAL SIGRTMIN

struct vm;

/* Why a vCPU came back to user space, counted for KILN_VMM_TIMINGS: each
 * such exit is a round trip through the host, and a nested one costs
 * hundreds of microseconds. */
enum vcpu_exit_kind {
	VCPU_EXIT_SERIAL,     /* port I/O to the UART */
	VCPU_EXIT_PIO_OTHER,  /* other port I/O */
	VCPU_EXIT_VIRTIO,     /* virtio-mmio registers (queue kicks are ioeventfds) */
	VCPU_EXIT_MMIO_OTHER, /* the boot timer, unbacked MMIO */
	VCPU_EXIT_KINDS
};

struct vcpu {
	struct vm *vm;
	int index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;                /* thread created, not yet joined */
	_Atomic uint64_t exits[VCPU_EXIT_KINDS]; /* written by this vCPU only */
};

struct vm {
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	uint64_t mem_bytes;
	size_t run_size;
	int n_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct serial serial;
	struct i8042 kbd;
	struct virtio_dev virtio[VM_MAX_VIRTIO];
	void (*virtio_close[VM_MAX_VIRTIO])(void *priv); /* frees virtio[i].priv */
	int n_virtio;
	struct evloop loop;
	int exit_fd;              /* eventfd: a vCPU asks the main thread to end */
	atomic_int exit_code;     /* -1 while running */
	char exit_reason[160];
	uint64_t t0_ns;           /* process start, for the boot-time marker */
	atomic_bool first_run_logged;
	bool jail;                /* vCPU threads install their seccomp filter */
	pthread_barrier_t start;  /* vCPUs wait here until the jail is in place */
	/* Pausing for a snapshot: vm_pause sets pause_req and kicks; each
	 * vCPU, out of KVM_RUN with its last exit complete, counts itself in
	 * n_paused and waits on pause_cond until vm_resume. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool pause_req;
	int n_paused;
	/* Enter the guest on c: KVM_RUN on its fd when NULL. Tests put a fake
	 * guest here. 0, or -1 with errno (EINTR once kicked). */
	int (*enter)(struct vcpu *c);
};

/* Map mem_mib of guest RAM (vm->mem), not yet known to KVM, so that the
 * kernel can be loaded into it while the VM is created. Fills err on
 * failure; 0 or -errno. */
int vm_map_memory(struct vm *vm, uint64_t mem_mib, char *err, size_t errlen);

/* Open /dev/kvm, create the VM with its irqchip and PIT, and give it the
 * RAM vm_map_memory mapped. Fills err on failure; 0 or -errno. */
int vm_create(struct vm *vm, char *err, size_t errlen);

/* Create vCPU i: its fd, kvm_run, CPUID, MSRs and local APIC. Fills err
 * on failure; 0 or -errno. */
int vm_create_vcpu(struct vm *vm, int i, char *err, size_t errlen);

/* Set vCPU 0's registers for the boot described by bi (after
 * vm_create_vcpu, once the kernel is loaded). Fills err on failure; 0 or
 * -errno. */
int vm_set_boot_regs(struct vm *vm, const struct boot_info *bi, char *err, size_t errlen);

/* Pulse an interrupt line of the in-kernel irqchip (edge): a legacy IRQ
 * or a GSI such as LAYOUT_GED_GSI. */
void vm_irq_pulse(struct vm *vm, uint32_t irq);

/* End the VM with code (the first request wins) and wake the main thread. */
void vm_request_exit(struct vm *vm, int code, const char *reason);

/* The vCPU thread body: KVM_RUN until the VM ends. */
void *vm_vcpu_thread(void *arg);

/* Start a thread per vCPU (vm->n_vcpus of them, each made by
 * vm_create_vcpu) running vm_vcpu_thread; each waits at vm->start, which
 * this initialises for n_vcpus + 1 parties, so the caller's
 * pthread_barrier_wait lets them run. Installs the handler of the signal
 * that vm_shutdown kicks them with. 0 or -errno (threads started before a
 * failure are left to vm_shutdown). */
int vm_start_vcpus(struct vm *vm);

/* End the VM in order, once the event loop has stopped (normally after
 * vm_request_exit; if nothing asked, the VM ends with status 1): kick
 * every vCPU out of KVM_RUN (immediate_exit, then a signal for one inside
 * it), join every vCPU thread, and only then close each virtio device
 * (vm->virtio_close), since a vCPU taking an MMIO exit reads that
 * device's state. */
void vm_shutdown(struct vm *vm);

/* Stop every started vCPU outside KVM_RUN, each with its last exit
 * completed (KVM finishes a pending MMIO or port read on the next KVM_RUN,
 * which immediate_exit turns into EINTR), so that its state can be read.
 * From the main thread only. 0, or -ECANCELED when the VM is ending. */
int vm_pause(struct vm *vm);

/* Let the vCPUs vm_pause stopped run again. */
void vm_resume(struct vm *vm);

/* The vCPUs' exits to user space so far, summed per kind (a snapshot:
 * running vCPUs go on counting). */
void vm_exit_counts(const struct vm *vm, uint64_t counts[VCPU_EXIT_KINDS]);

#endif
