#include "build-config.h"

#include "vmm/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct rule {
	int nr;
	const char *why;
};

#define R(name, why) { SCMP_SYS(name), why }

/* Both thread kinds. */
static const struct rule common[] = {
	R(read, "eventfds, timerfds, tap and socket reads"),
	R(write, "serial output, eventfd signals (irqfd), logs"),
	R(futex, "mutexes between vCPU and device threads"),
	R(brk, "malloc"),
	/* mmap: below, never PROT_EXEC */
	R(munmap, "free of large blocks, thread stacks"),
	R(madvise, "glibc releases thread stacks with MADV_DONTNEED"),
	R(close, "device reset closes its connections"),
	R(epoll_ctl, "devices register fds when the driver activates them"),
	R(pread64, "virtio-blk reads"),
	R(pwrite64, "virtio-blk writes and copy-on-write clusters"),
	R(fdatasync, "virtio-blk flush"),
	R(clock_gettime, "rate limiters and the boot marker (vDSO fallback)"),
	R(getrandom, "virtio-rng"),
	R(timerfd_settime, "rate limiter throttling"),
	R(rt_sigprocmask, "glibc thread and signal plumbing"),
	R(rt_sigreturn, "return from signal handlers"),
	R(restart_syscall, "interrupted system calls"),
	R(sched_yield, "lock contention"),
	R(exit, "thread exit"),
	R(exit_group, "process exit"),
	R(gettid, "glibc abort path"),
	R(getpid, "glibc abort path"),
	/* tgkill: below, only of this process */
};

#ifdef KILN_SANITIZERS
/* Sanitizer builds only (configure --enable-sanitizers, for CI; never
 * installed as the jail of a release): what the ASan and UBSan runtimes do
 * inside a jailed thread. Without these a vCPU thread that ends dies with
 * SIGSYS, and a sanitizer report dies before it is printed. */
static const struct rule sanitizer[] = {
	R(sigaltstack, "ASan removes a thread's alternate signal stack when the thread ends"),
	R(readlink, "a report finds the binary through /proc/self/exe"),
	R(fstat, "a report maps the binary to symbolize"),
	R(newfstatat, "a report maps the binary to symbolize"),
	R(lseek, "a report reads the binary's debug sections"),
	R(pread64, "a report reads the binary's debug sections"),
	R(sched_yield, "the runtimes' spin locks"),
	R(fcntl, "a report checks the fds it opens"),
};
#endif

/* Device (event-loop) thread only. */
static const struct rule vmm_only[] = {
	R(epoll_wait, "the event loop"),
	R(epoll_pwait, "the event loop (glibc may use the p variant)"),
	R(readv, "virtio-net and vsock scatter reads"),
	R(writev, "virtio-net frames to the tap"),
	R(accept4, "host-initiated vsock connections"),
	/* The path is behind a pointer, out of seccomp's sight: what a
	 * connect can reach is what the mount namespace shows (kiln's jail:
	 * the agent's socket in /vm), and its network namespace has only lo
	 * (abstract Unix sockets are per network namespace too). */
	R(connect, "guest-initiated vsock connections to <uds_path>_<port>"),
	R(recvfrom, "vsock socket reads"),
	R(sendto, "vsock socket writes"),
	R(recvmsg, "vsock socket reads"),
	R(sendmsg, "vsock socket writes"),
	R(shutdown, "vsock half-close"),
	R(getsockopt, "SO_ERROR of non-blocking connects"),
	R(fcntl, "O_NONBLOCK on new sockets"),
	/* unlink, unlinkat: below, only of the vsock socket's path */
	R(fsync, "virtio-blk flush fallback"),
	R(fstat, "stdio"),
	R(newfstatat, "stdio"),
	R(lseek, "stdio; a drive's size at a rescan (SIGUSR1)"),
	R(nanosleep, "shutdown grace polling"),
	R(clock_nanosleep, "shutdown grace polling"),
	R(timerfd_gettime, "rate limiter"),
	R(mremap, "realloc"),
	/* kill: below, only of this process */
};

/* The device thread's, when it may save snapshots (SIGUSR2): reading the
 * state of the paused VM and vCPUs. Restoring happens before the jail. */
static const unsigned long snapshot_ioctls[] = {
	KVM_GET_MP_STATE, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_XSAVE,
#ifdef KVM_GET_XSAVE2
	KVM_GET_XSAVE2,
#endif
	KVM_GET_XCRS, KVM_GET_DEBUGREGS, KVM_GET_LAPIC, KVM_GET_VCPU_EVENTS, KVM_GET_MSRS,
	KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK,
};

static int snapshot_dirfd = -1;

void jail_allow_snapshots(int dirfd) { snapshot_dirfd = dirfd; }

/* Saving: state and memory files are created, truncated to size, written
 * and renamed into place, all inside the snapshot directory, by its fd. */
static int add_snapshot_args(scmp_filter_ctx ctx)
{
	scmp_datum_t dir = (scmp_datum_t)snapshot_dirfd;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(snapshot_ioctls) / sizeof(snapshot_ioctls[0]); i++)
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					   SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)snapshot_ioctls[i]))) < 0)
			return rc;
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1, SCMP_A0(SCMP_CMP_EQ, dir))) < 0 ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(renameat), 2, SCMP_A0(SCMP_CMP_EQ, dir),
				   SCMP_A2(SCMP_CMP_EQ, dir))) < 0 ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(renameat2), 2, SCMP_A0(SCMP_CMP_EQ, dir),
				   SCMP_A2(SCMP_CMP_EQ, dir))) < 0)
		return rc;
	/* ftruncate: the memory file takes the guest's size, holes and all. */
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ftruncate), 0);
}

/* Rules with argument checks, for both thread kinds: no executable memory
 * (nothing here loads code after start; a mapping made executable is how
 * injected code would run), signals only to this process (glibc's abort
 * raises SIGABRT with tgkill on itself). */
static int add_common_args(scmp_filter_ctx ctx, pid_t self)
{
	int rc;

	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				   SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) < 0)
		return rc;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
}

/* The device thread's: new sockets only stream Unix ones (vsock's host
 * side); kill only of itself; unlink only of the vsock socket's path, by
 * the address of the one buffer it lives in (at exit, the file it bound). */
static int add_vmm_args(scmp_filter_ctx ctx, pid_t self, const char *unlink_path)
{
	int rc;

	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_EQ, AF_UNIX),
				   SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM))) < 0 ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self))) < 0)
		return rc;
	if (!unlink_path)
		return 0;
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unlink), 1,
				   SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)(uintptr_t)unlink_path))) < 0)
		return rc;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unlinkat), 1,
				SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)(uintptr_t)unlink_path));
}

int jail_enter(enum jail_kind kind, const char *unlink_path)
{
	scmp_filter_ctx ctx;
	pid_t self = getpid();
	size_t i;
	int rc;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	for (i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, common[i].nr, 0)) < 0)
			goto out;
#ifdef KILN_SANITIZERS
	for (i = 0; i < sizeof(sanitizer) / sizeof(sanitizer[0]); i++)
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sanitizer[i].nr, 0)) < 0 && rc != -EEXIST)
			goto out;
	/* A report asks whether stderr is a terminal (colours), and reads
	 * /proc/self/maps and the binary to symbolize: read-only opens. */
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS))) < 0 ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(open), 1,
				   SCMP_A1(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY))) < 0 ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				   SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY))) < 0)
		goto out;
#endif
	if ((rc = add_common_args(ctx, self)) < 0)
		goto out;
	/* ioctl only for what each thread issues: KVM_RUN on its vCPU, and
	 * KVM_IRQ_LINE for the legacy serial and i8042 interrupts. */
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				   SCMP_A1(SCMP_CMP_EQ, KVM_IRQ_LINE))) < 0)
		goto out;
	if (kind == JAIL_VCPU) {
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					   SCMP_A1(SCMP_CMP_EQ, KVM_RUN))) < 0)
			goto out;
	} else {
		for (i = 0; i < sizeof(vmm_only) / sizeof(vmm_only[0]); i++)
			if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, vmm_only[i].nr, 0)) < 0)
				goto out;
		if ((rc = add_vmm_args(ctx, self, unlink_path)) < 0)
			goto out;
		if (snapshot_dirfd >= 0 && (rc = add_snapshot_args(ctx)) < 0)
			goto out;
	}
	rc = seccomp_load(ctx);
out:
	seccomp_release(ctx);
	return rc < 0 ? rc : 0;
}
