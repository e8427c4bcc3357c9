/* kvm-smoke: check that /dev/kvm can run a guest.
 *
 * Creates a VM with one page of memory and one vCPU in real mode, runs
 *   mov $0x2a,%al; add $0x10,%al; out %al,$0xf1;
 *   mov $0x1234,%bx; mov %bx,(0x500); hlt
 * and checks the exits (KVM_EXIT_IO on port 0xf1 with 0x3a, then
 * KVM_EXIT_HLT) and the word the guest stored at 0x500.
 *
 * Prints one line per step and "kvm-smoke: OK" at the end.  Exit status:
 * 0 success, 1 failure (with a one-line reason), 77 when /dev/kvm is absent.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_MEM_SIZE 0x1000
#define CODE_ADDR 0x100
#define DATA_ADDR 0x500
#define RUN_TIMEOUT 10

static const uint8_t guest_code[] = {
	0xb0, 0x2a,             /* mov $0x2a,%al */
	0x04, 0x10,             /* add $0x10,%al */
	0xe6, 0xf1,             /* out %al,$0xf1 */
	0xbb, 0x34, 0x12,       /* mov $0x1234,%bx */
	0x89, 0x1e, 0x00, 0x05, /* mov %bx,(0x500) */
	0xf4,                   /* hlt */
};

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("kvm-smoke: FAIL: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void step(const char *what)
{
	printf("kvm-smoke: %s\n", what);
	fflush(stdout);
}

/* A PVM /dev/kvm accepts the ioctls but may never return from KVM_RUN
 * for a real-mode guest; do not hang the test suite on it. */
static void on_alarm(int sig)
{
	static const char msg[] = "kvm-smoke: FAIL: KVM_RUN did not return within 10 s "
				  "(is this a PVM /dev/kvm that cannot run real-mode guests?)\n";
	ssize_t n;

	(void)sig;
	n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	_exit(1);
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
	case KVM_EXIT_IO: return "KVM_EXIT_IO";
	case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
	case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
	case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
	default: return "another exit";
	}
}

static void run_vcpu(int vcpu)
{
	alarm(RUN_TIMEOUT);
	while (ioctl(vcpu, KVM_RUN, 0) < 0) {
		if (errno != EINTR)
			fail("KVM_RUN: %s", strerror(errno));
	}
	alarm(0);
}

int main(void)
{
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	struct sigaction sa;
	uint8_t *mem, *io;
	uint16_t word;
	int kvm, vm, vcpu, api, run_size;

	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		if (errno == ENOENT || errno == ENODEV || errno == ENXIO) {
			fprintf(stderr, "kvm-smoke: SKIP: /dev/kvm: %s\n", strerror(errno));
			return 77;
		}
		fail("open /dev/kvm: %s", strerror(errno));
	}
	step("opened /dev/kvm");

	api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION)
		fail("KVM_GET_API_VERSION is %d, want %d", api, KVM_API_VERSION);
	printf("kvm-smoke: KVM_GET_API_VERSION %d\n", api);

	vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
	if (vm < 0)
		fail("KVM_CREATE_VM: %s", strerror(errno));
	step("KVM_CREATE_VM ok");

	mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		fail("mmap guest memory: %s", strerror(errno));
	memcpy(mem + CODE_ADDR, guest_code, sizeof(guest_code));

	memset(&region, 0, sizeof(region));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = GUEST_MEM_SIZE;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	step("KVM_SET_USER_MEMORY_REGION ok (1 page at 0x0)");

	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
	if (vcpu < 0)
		fail("KVM_CREATE_VCPU: %s", strerror(errno));
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(*run))
		fail("KVM_GET_VCPU_MMAP_SIZE: %s", run_size < 0 ? strerror(errno) : "too small");
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		fail("mmap kvm_run: %s", strerror(errno));
	step("KVM_CREATE_VCPU ok, kvm_run mapped");

	/* Real mode, flat: CS base 0, execution starts at CODE_ADDR. */
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		fail("KVM_GET_SREGS: %s", strerror(errno));
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		fail("KVM_SET_SREGS: %s", strerror(errno));
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_ADDR;
	regs.rflags = 0x2; /* bit 1 is reserved and must be set */
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		fail("KVM_SET_REGS: %s", strerror(errno));
	step("registers set (real mode, rip 0x100)");

	run_vcpu(vcpu);
	if (run->exit_reason != KVM_EXIT_IO)
		fail("first exit is %s (%u), want KVM_EXIT_IO", exit_name(run->exit_reason),
		     run->exit_reason);
	io = (uint8_t *)run + run->io.data_offset;
	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != 0xf1 ||
	    run->io.size != 1 || run->io.count != 1)
		fail("KVM_EXIT_IO is %s port 0x%x size %u count %u, want out port 0xf1 size 1 count 1",
		     run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port,
		     run->io.size, run->io.count);
	if (*io != 0x3a)
		fail("guest wrote 0x%02x to port 0xf1, want 0x3a", *io);
	printf("kvm-smoke: KVM_EXIT_IO out port 0x%x value 0x%02x\n", run->io.port, *io);

	run_vcpu(vcpu);
	if (run->exit_reason != KVM_EXIT_HLT)
		fail("second exit is %s (%u), want KVM_EXIT_HLT", exit_name(run->exit_reason),
		     run->exit_reason);
	step("KVM_EXIT_HLT");

	memcpy(&word, mem + DATA_ADDR, sizeof(word));
	if (word != 0x1234)
		fail("guest memory at 0x500 holds 0x%04x, want 0x1234", word);
	printf("kvm-smoke: guest memory at 0x%x holds 0x%04x\n", DATA_ADDR, word);

	munmap(run, (size_t)run_size);
	munmap(mem, GUEST_MEM_SIZE);
	close(vcpu);
	close(vm);
	close(kvm);
	puts("kvm-smoke: OK");
	return 0;
}
