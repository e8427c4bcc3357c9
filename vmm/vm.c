#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/jail.h"
#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/virtio/mmio.h"

#define BOOT_MARKER_MAGIC 123
#define VCPU_KICK_SIGNAL VM_VCPU_KICK_SIGNAL
#define GUEST_HUGE_PAGE (2u << 20)

static int fail(char *err, size_t errlen, const char *what)
{
	int e = errno;

	snprintf(err, errlen, "%s: %s", what, strerror(e));
	return -e;
}

int vm_map_memory(struct vm *vm, uint64_t mem_mib, char *err, size_t errlen)
{
	vm->mem_bytes = mem_mib << 20;
	gm_layout(&vm->mem, vm->mem_bytes);
	/* 2 MiB aligned, so that guest-physical huge pages are host huge
	 * pages too: loading the kernel then faults 2 MiB at a time instead of
	 * 4 KiB, and the guest's nested page tables stay small. */
	{
		size_t span = vm->mem_bytes + GUEST_HUGE_PAGE;
		uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		uintptr_t base;

		if (raw == MAP_FAILED)
			return fail(err, errlen, "mapping guest memory");
		base = ((uintptr_t)raw + GUEST_HUGE_PAGE - 1) & ~(uintptr_t)(GUEST_HUGE_PAGE - 1);
		if (base > (uintptr_t)raw)
			munmap(raw, base - (uintptr_t)raw);
		if ((uintptr_t)raw + span > base + vm->mem_bytes)
			munmap((void *)(base + vm->mem_bytes), (uintptr_t)raw + span - (base + vm->mem_bytes));
		vm->mem.host = (uint8_t *)base;
	}
	/* Guest RAM is not worth a core dump or a fork copy; huge pages where
	 * the host allows them (THP "madvise" or "always"). */
	madvise(vm->mem.host, vm->mem_bytes, MADV_DONTDUMP);
	madvise(vm->mem.host, vm->mem_bytes, MADV_HUGEPAGE);
	return 0;
}

int vm_create(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct kvm_userspace_memory_region region;
	int rc;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return fail(err, errlen, "/dev/kvm");
	rc = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (rc != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm speaks API %d, expected %d", rc, KVM_API_VERSION);
		return -EINVAL;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return fail(err, errlen, "KVM_CREATE_VM");
	/* RAM before the irqchip: on kvm_pvm the slot takes 0.1 ms on a fresh
	 * VM but 4-11 ms right after KVM_CREATE_IRQCHIP (stock KVM: no
	 * difference), and the irqchip costs the same either way. */
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem.low_size,
		.userspace_addr = (uint64_t)(uintptr_t)vm->mem.host,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail(err, errlen, "KVM_SET_USER_MEMORY_REGION (low)");
	if (vm->mem.high_size) {
		region = (struct kvm_userspace_memory_region){
			.slot = 1, .guest_phys_addr = GM_HIGH_START, .memory_size = vm->mem.high_size,
			.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.host + vm->mem.low_size),
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			return fail(err, errlen, "KVM_SET_USER_MEMORY_REGION (high)");
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS) < 0)
		return fail(err, errlen, "KVM_SET_TSS_ADDR");
	{
		uint64_t ident = LAYOUT_IDENTITY_MAP;
		if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
			return fail(err, errlen, "KVM_SET_IDENTITY_MAP_ADDR");
	}
	/* The irqchip and PIT must exist before the vCPUs. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return fail(err, errlen, "KVM_CREATE_IRQCHIP");
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return fail(err, errlen, "KVM_CREATE_PIT2");
	vm->run_size = (size_t)ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if ((long)vm->run_size <= 0)
		return fail(err, errlen, "KVM_GET_VCPU_MMAP_SIZE");
	vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_fd < 0)
		return fail(err, errlen, "eventfd");
	atomic_store(&vm->exit_code, -1);
	return 0;
}

static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

static struct kvm_segment segment(uint16_t flags, uint16_t selector)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector,
		.type = flags & 0xf, .present = (flags >> 7) & 1, .dpl = (flags >> 5) & 3,
		.db = (flags >> 14) & 1, .s = (flags >> 4) & 1, .l = (flags >> 13) & 1,
		.g = (flags >> 15) & 1, .avl = (flags >> 12) & 1,
	};
}

static int setup_cpuid(struct vm *vm, struct vcpu *c)
{
	struct kvm_cpuid2 *cpuid;
	int nent = 128, rc = 0;
	bool tsc_deadline;
	uint32_t i;

	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid)
			return -ENOMEM;
		cpuid->nent = (uint32_t)nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		free(cpuid);
		if (errno != E2BIG || nent > 4096)
			return -errno;
		nent *= 2;
	}
	/* KVM_GET_SUPPORTED_CPUID leaves out the TSC-deadline timer, which
	 * the in-kernel LAPIC emulates (KVM_CAP_TSC_DEADLINE_TIMER, see the
	 * KVM API documentation); without it Linux calibrates the LAPIC timer
	 * against the PIT at boot, ~100 ms. */
	tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	for (i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)c->index << 24) |
				 ((uint32_t)vm->n_vcpus << 16);
			e->ecx |= 1u << 31; /* running under a hypervisor */
			if (tsc_deadline)
				e->ecx |= 1u << 24;
			break;
		case 0xb:
		case 0x1f:
			e->edx = (uint32_t)c->index;
			break;
		default:
			break;
		}
	}
	if (ioctl(c->fd, KVM_SET_CPUID2, cpuid) < 0)
		rc = -errno;
	free(cpuid);
	return rc;
}

static int setup_lapic(struct vcpu *c)
{
	struct kvm_lapic_state lapic;
	uint32_t *lvt0 = (uint32_t *)(void *)&lapic.regs[0x350];
	uint32_t *lvt1 = (uint32_t *)(void *)&lapic.regs[0x360];

	if (ioctl(c->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	/* LINT0 carries the PIC (ExtINT), LINT1 NMIs. */
	*lvt0 = (*lvt0 & ~0x700u) | (7u << 8);
	*lvt1 = (*lvt1 & ~0x700u) | (4u << 8);
	return ioctl(c->fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}

static int setup_msrs(struct vcpu *c)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[1];
	} m = { .hdr.nmsrs = 1, .e = { { .index = 0x1a0, .data = 1 } } }; /* MISC_ENABLE: fast strings */

	return ioctl(c->fd, KVM_SET_MSRS, &m) == 1 ? 0 : -EINVAL;
}

static int setup_boot_regs(struct vm *vm, struct vcpu *c, const struct boot_info *bi)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 2, .rip = bi->entry };
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	bool pvh = bi->mode == BOOT_PVH;
	uint16_t code = pvh ? 0xc09b : 0xa09b;
	uint64_t gdt[4] = { 0, gdt_entry(code, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff), gdt_entry(0x808b, 0, 0xfffff) };
	uint64_t idt = 0;

	if (!gm_write(&vm->mem, LAYOUT_GDT, gdt, sizeof(gdt)) || !gm_write(&vm->mem, LAYOUT_IDT, &idt, sizeof(idt)))
		return -E2BIG;
	if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.gdt.base = LAYOUT_GDT;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.idt.base = LAYOUT_IDT;
	sregs.idt.limit = sizeof(idt) - 1;
	sregs.cs = segment(code, 0x8);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(0xc093, 0x10);
	sregs.tr = segment(0x808b, 0x18);
	if (pvh) {
		/* 32-bit protected mode, paging off; EBX points at start info. */
		sregs.cr0 = 0x11;
		sregs.cr4 = 0;
		sregs.efer = 0;
		regs.rbx = LAYOUT_PVH_INFO;
	} else {
		/* 64-bit mode on identity-mapped 2 MiB pages for the first 1 GiB. */
		uint64_t pml4 = LAYOUT_PDPT | 3, pdpt = LAYOUT_PD | 3, pd[512];
		int i;

		for (i = 0; i < 512; i++)
			pd[i] = ((uint64_t)i << 21) | 0x83;
		if (!gm_write(&vm->mem, LAYOUT_PML4, &pml4, 8) || !gm_write(&vm->mem, LAYOUT_PDPT, &pdpt, 8) ||
		    !gm_write(&vm->mem, LAYOUT_PD, pd, sizeof(pd)))
			return -E2BIG;
		sregs.cr3 = LAYOUT_PML4;
		sregs.cr4 = 0x20;              /* PAE */
		sregs.cr0 = 0x80000011;        /* PG, ET, PE */
		sregs.efer = 0x500;            /* LMA, LME */
		regs.rsp = regs.rbp = LAYOUT_STACK;
		regs.rsi = LAYOUT_ZERO_PAGE;
	}
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(c->fd, KVM_SET_REGS, &regs) < 0 ||
	    ioctl(c->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

int vm_create_vcpu(struct vm *vm, int i, char *err, size_t errlen)
{
	struct vcpu *c = &vm->vcpus[i];
	int rc;

	c->vm = vm;
	c->index = i;
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (c->fd < 0)
		return fail(err, errlen, "KVM_CREATE_VCPU");
	c->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->run == MAP_FAILED) {
		c->run = NULL;
		return fail(err, errlen, "mapping kvm_run");
	}
	if ((rc = setup_cpuid(vm, c)) || (rc = setup_msrs(c)) || (rc = setup_lapic(c))) {
		snprintf(err, errlen, "setting up vCPU %d: %s", i, strerror(-rc));
		return rc;
	}
	return 0;
}

int vm_set_boot_regs(struct vm *vm, const struct boot_info *bi, char *err, size_t errlen)
{
	int rc = setup_boot_regs(vm, &vm->vcpus[0], bi);

	if (rc)
		snprintf(err, errlen, "setting up vCPU 0's boot registers: %s", strerror(-rc));
	return rc;
}

void vm_irq_pulse(struct vm *vm, uint32_t irq)
{
	struct kvm_irq_level lvl = { .irq = irq, .level = 1 };

	ioctl(vm->vm_fd, KVM_IRQ_LINE, &lvl);
	lvl.level = 0;
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &lvl);
}

void vm_request_exit(struct vm *vm, int code, const char *reason)
{
	int expected = -1;
	uint64_t one = 1;
	ssize_t n;

	if (atomic_compare_exchange_strong(&vm->exit_code, &expected, code)) {
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%s", reason);
		n = write(vm->exit_fd, &one, sizeof(one));
		(void)n;
	}
}

static void boot_marker(struct vm *vm)
{
	uint64_t us = (mono_ns() - vm->t0_ns) / 1000;
	char line[96];
	int len;
	ssize_t n;

	len = snprintf(line, sizeof(line), "kiln-vmm: Guest-boot-time = %llu us %llu ms\n",
		       (unsigned long long)us, (unsigned long long)us / 1000);
	n = write(2, line, (size_t)len);
	(void)n;
}

static void handle_mmio(struct vcpu *c)
{
	struct vm *vm = c->vm;
	uint64_t addr = c->run->mmio.phys_addr;
	uint32_t len = c->run->mmio.len;
	uint8_t *data = c->run->mmio.data;
	bool w = c->run->mmio.is_write;

	if (addr >= LAYOUT_BOOT_TIMER && addr < LAYOUT_BOOT_TIMER + LAYOUT_MMIO_SIZE) {
		if (w && addr == LAYOUT_BOOT_TIMER && len == 1 && data[0] == BOOT_MARKER_MAGIC)
			boot_marker(vm);
		else if (!w)
			memset(data, 0, len);
		return;
	}
	if (addr >= LAYOUT_MMIO_BASE) {
		uint64_t idx = (addr - LAYOUT_MMIO_BASE) / LAYOUT_MMIO_SIZE;

		if (idx < (uint64_t)vm->n_virtio) {
			virtio_mmio_access(&vm->virtio[idx], (addr - LAYOUT_MMIO_BASE) % LAYOUT_MMIO_SIZE, data, len, w);
			return;
		}
	}
	if (!w)
		memset(data, 0xff, len);
}

static void handle_io(struct vcpu *c)
{
	struct vm *vm = c->vm;
	struct kvm_run *run = c->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool w = run->io.direction == KVM_EXIT_IO_OUT;
	uint16_t port = run->io.port;
	uint32_t i;

	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		if (port >= SERIAL_PORT && port < SERIAL_PORT + SERIAL_PORTS && run->io.size == 1) {
			serial_io(&vm->serial, (uint16_t)(port - SERIAL_PORT), data, w);
		} else if ((port == I8042_DATA || port == I8042_CMD) && run->io.size == 1) {
			i8042_io(&vm->kbd, port, data, w);
		} else if (port == VM_ACPI_SLEEP_PORT && run->io.size == 1) {
			/* ACPI sleep control: SLP_EN with SLP_TYP 5 (S5) is poweroff. */
			if (w && (*data & 0x20) && ((*data >> 2) & 7) == 5)
				vm_request_exit(vm, 0, "guest powered off");
			else if (!w)
				*data = 0;
		} else if (!w) {
			memset(data, 0xff, run->io.size);
		}
	}
}

static void count_exit(struct vcpu *c, enum vcpu_exit_kind k)
{
	atomic_store_explicit(&c->exits[k], atomic_load_explicit(&c->exits[k], memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

void vm_exit_counts(const struct vm *vm, uint64_t counts[VCPU_EXIT_KINDS])
{
	int i, k;

	for (k = 0; k < VCPU_EXIT_KINDS; k++)
		counts[k] = 0;
	for (i = 0; i < vm->n_vcpus; i++)
		for (k = 0; k < VCPU_EXIT_KINDS; k++)
			counts[k] += atomic_load_explicit(&vm->vcpus[i].exits[k], memory_order_relaxed);
}

/* Out of KVM_RUN with EINTR: the last exit is complete. Wait here while
 * a snapshot is taken. */
static void pause_point(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_req) {
		vm->n_paused++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_req && atomic_load(&vm->exit_code) < 0)
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->n_paused--;
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

int vm_pause(struct vm *vm)
{
	int i, n = 0, rc = 0;

	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_req = true;
	pthread_mutex_unlock(&vm->pause_lock);
	for (i = 0; i < vm->n_vcpus; i++) {
		if (!vm->vcpus[i].started)
			continue;
		__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		pthread_kill(vm->vcpus[i].thread, VCPU_KICK_SIGNAL);
		n++;
	}
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->n_paused < n && atomic_load(&vm->exit_code) < 0) {
		struct timespec t;

		/* A vCPU that ends instead of pausing asks the VM to end, which
		 * this wait notices at the next tick. */
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += 50 * 1000 * 1000;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &t);
	}
	if (atomic_load(&vm->exit_code) >= 0)
		rc = -ECANCELED;
	pthread_mutex_unlock(&vm->pause_lock);
	if (rc)
		vm_resume(vm);
	return rc;
}

void vm_resume(struct vm *vm)
{
	int i;

	for (i = 0; i < vm->n_vcpus; i++)
		if (vm->vcpus[i].started && vm->vcpus[i].run)
			__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_req = false;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void *vm_vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vm *vm = c->vm;
	char reason[128];
	int rc;

	if (vm->jail && (rc = jail_enter(JAIL_VCPU, NULL)) < 0) {
		snprintf(reason, sizeof(reason), "vCPU %d: installing the seccomp filter: %s", c->index, strerror(-rc));
		vm_request_exit(vm, 1, reason);
		pthread_barrier_wait(&vm->start);
		return NULL;
	}
	pthread_barrier_wait(&vm->start);
	while (atomic_load(&vm->exit_code) < 0) {
		if ((vm->enter ? vm->enter(c) : ioctl(c->fd, KVM_RUN, 0)) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				pause_point(vm);
				continue;
			}
			snprintf(reason, sizeof(reason), "vCPU %d: KVM_RUN: %s", c->index, strerror(errno));
			vm_request_exit(vm, 1, reason);
			break;
		}
		switch (c->run->exit_reason) {
		case KVM_EXIT_IO:
			count_exit(c, c->run->io.port >= SERIAL_PORT && c->run->io.port < SERIAL_PORT + SERIAL_PORTS
					      ? VCPU_EXIT_SERIAL : VCPU_EXIT_PIO_OTHER);
			handle_io(c);
			break;
		case KVM_EXIT_MMIO:
			count_exit(c, c->run->mmio.phys_addr >= LAYOUT_MMIO_BASE ? VCPU_EXIT_VIRTIO : VCPU_EXIT_MMIO_OTHER);
			handle_mmio(c);
			break;
		case KVM_EXIT_SHUTDOWN:
			/* Usually a guest crash: said even though it ends like a reboot. */
			vmm_log("vCPU %d: triple fault: the guest reset", c->index);
			vm_request_exit(vm, 0, "guest reset (triple fault)");
			return NULL;
		case KVM_EXIT_SYSTEM_EVENT:
			vm_request_exit(vm, 0, c->run->system_event.type == KVM_SYSTEM_EVENT_RESET
					       ? "guest reset" : "guest powered off");
			return NULL;
		case KVM_EXIT_HLT:
			vm_request_exit(vm, 0, "guest halted");
			return NULL;
		case KVM_EXIT_FAIL_ENTRY:
			snprintf(reason, sizeof(reason), "vCPU %d: entry failed, hardware reason 0x%llx", c->index,
				 (unsigned long long)c->run->fail_entry.hardware_entry_failure_reason);
			vm_request_exit(vm, 1, reason);
			return NULL;
		case KVM_EXIT_INTERNAL_ERROR:
			snprintf(reason, sizeof(reason), "vCPU %d: KVM internal error, suberror %u", c->index,
				 c->run->internal.suberror);
			vm_request_exit(vm, 1, reason);
			return NULL;
		default:
			snprintf(reason, sizeof(reason), "vCPU %d: unexpected exit reason %u", c->index,
				 c->run->exit_reason);
			vm_request_exit(vm, 1, reason);
			return NULL;
		}
	}
	return NULL;
}

static void on_kick(int sig) { (void)sig; }

int vm_start_vcpus(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = on_kick }; /* no SA_RESTART: KVM_RUN must return */
	sigset_t kick;
	int i, rc;

	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	/* The threads inherit this thread's mask: the kick must get through. */
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	if ((rc = pthread_barrier_init(&vm->start, NULL, (unsigned)vm->n_vcpus + 1)) ||
	    (rc = pthread_mutex_init(&vm->pause_lock, NULL)) || (rc = pthread_cond_init(&vm->pause_cond, NULL)))
		return -rc;
	for (i = 0; i < vm->n_vcpus; i++) {
		if ((rc = pthread_create(&vm->vcpus[i].thread, NULL, vm_vcpu_thread, &vm->vcpus[i])))
			return -rc;
		vm->vcpus[i].started = true;
	}
	return 0;
}

void vm_shutdown(struct vm *vm)
{
	int i;

	/* Normally a no-op (the VM was asked to end already); otherwise a
	 * kicked vCPU would go straight back into the guest. */
	vm_request_exit(vm, 1, "stopped");
	/* The flag first: a vCPU between its exit_code check and KVM_RUN gets
	 * EINTR at once; one already inside it gets the signal. Either way it
	 * sees exit_code and returns; one in the middle of an exit finishes it
	 * against devices that still exist. */
	for (i = 0; i < vm->n_vcpus; i++)
		if (vm->vcpus[i].started && vm->vcpus[i].run)
			__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < vm->n_vcpus; i++)
		if (vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, VCPU_KICK_SIGNAL);
	/* A vCPU paused for a snapshot sees exit_code once woken. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (i = 0; i < vm->n_vcpus; i++) {
		if (!vm->vcpus[i].started)
			continue;
		pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].started = false;
	}
	for (i = 0; i < vm->n_virtio; i++) {
		if (vm->virtio_close[i])
			vm->virtio_close[i](vm->virtio[i].priv);
		vm->virtio_close[i] = NULL;
	}
}
