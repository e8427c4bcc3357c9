#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "lib/clock.h"
#include "vmm/layout.h"
#include "vmm/ratelimit.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/mmio.h"
#include "vmm/vm.h"

/* kiln-vmm's shutdown order, without KVM: the vCPU threads run the real
 * vm_vcpu_thread, but vm->enter is a fake guest that reads a virtio-blk
 * device's config space (an MMIO exit into blk_config_read, each time),
 * or idles inside "KVM_RUN" until a signal, while the test ends the VM
 * with vm_shutdown. When the drive is closed, every vCPU must have left
 * the guest for good: before the fix, the drive was freed under vCPUs
 * still taking MMIO exits into it. */
#define N_VCPUS 4
#define RAM_SIZE (1u << 20)
#define DISK_SECTORS 64

static struct vm *vm;
static uint8_t *ram;
static char dir[PATH_MAX], image[PATH_MAX];
static struct kvm_run runs[N_VCPUS];
static atomic_uint reads[N_VCPUS];    /* config reads that returned the capacity */
static atomic_uint bad_reads;
static atomic_bool gone[N_VCPUS];     /* the vCPU's thread has ended */
static pthread_key_t vcpu_key;        /* its destructor marks the thread gone */
static bool idle_vcpus;               /* odd vCPUs idle in the guest after their first read */
static int closes;
static bool all_gone_at_close;

static int fake_enter(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	sigset_t kick, old;
	uint64_t v;
	int rc = 0;

	/* As KVM_RUN: immediate_exit or a pending signal returns EINTR
	 * before the guest runs; the kick is held until the check is made,
	 * then let in atomically by ppoll (no lost wake-up). */
	sigemptyset(&kick);
	sigaddset(&kick, VM_VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, &old);
	if (run->exit_reason == KVM_EXIT_MMIO) {
		memcpy(&v, run->mmio.data, sizeof(v));
		atomic_fetch_add(v == DISK_SECTORS ? &reads[c->index] : &bad_reads, 1);
	}
	run->exit_reason = KVM_EXIT_UNKNOWN;
	if (__atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST)) {
		errno = EINTR;
		rc = -1;
	} else if (idle_vcpus && c->index % 2 && atomic_load(&reads[c->index])) {
		rc = ppoll(NULL, 0, NULL, &old); /* returns only for a signal */
	} else {
		run->exit_reason = KVM_EXIT_MMIO;
		run->mmio.phys_addr = LAYOUT_MMIO_BASE + VIRTIO_MMIO_CONFIG; /* capacity */
		run->mmio.len = 8;
		run->mmio.is_write = 0;
	}
	pthread_setspecific(vcpu_key, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static void vcpu_ended(void *arg)
{
	atomic_store(&gone[((struct vcpu *)arg)->index], true);
}

static void close_drive(void *priv)
{
	int i;

	closes++;
	all_gone_at_close = true;
	for (i = 0; i < N_VCPUS; i++)
		all_gone_at_close &= atomic_load(&gone[i]);
	virtio_blk_close(priv);
}

static void setup(void)
{
	struct vm_drive_cfg cfg = { .id = "kiln-disk0", .path = image };
	void *blk;
	int fd, i;

	ck_assert_int_eq(pthread_key_create(&vcpu_key, vcpu_ended), 0);
	vm = calloc(1, sizeof(*vm));
	ram = calloc(1, RAM_SIZE);
	ck_assert_ptr_nonnull(vm);
	ck_assert_ptr_nonnull(ram);
	vm->mem = (struct guest_mem){ .host = ram, .low_size = RAM_SIZE };
	snprintf(dir, sizeof(dir), "/tmp/kiln-vmshutdown-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(image, sizeof(image), "%s/disk.img", dir);
	fd = open(image, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, DISK_SECTORS * 512), 0);
	close(fd);
	ck_assert_int_eq(ev_init(&vm->loop), 0);
	ck_assert_int_eq(virtio_blk_open(&blk, &cfg, dir, mono_ns()), 0);
	ck_assert_int_eq(virtio_mmio_init(&vm->virtio[0], &virtio_blk_ops, blk, &vm->mem, &vm->loop,
					  LAYOUT_MMIO_BASE, LAYOUT_FIRST_GSI), 0);
	vm->virtio_close[0] = close_drive;
	vm->n_virtio = 1;
	vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(vm->exit_fd, 0);
	atomic_store(&vm->exit_code, -1);
	vm->enter = fake_enter;
	vm->n_vcpus = N_VCPUS;
	for (i = 0; i < N_VCPUS; i++) {
		runs[i] = (struct kvm_run){ 0 };
		vm->vcpus[i] = (struct vcpu){ .vm = vm, .index = i, .fd = -1, .run = &runs[i] };
		atomic_store(&reads[i], 0);
		atomic_store(&gone[i], false);
	}
	atomic_store(&bad_reads, 0);
	closes = 0;
	idle_vcpus = false;
	all_gone_at_close = false;
}

static void teardown(void)
{
	virtio_mmio_detach(&vm->virtio[0]);
	ev_close(&vm->loop);
	close(vm->exit_fd);
	unlink(image);
	rmdir(dir);
	free(ram);
	free(vm);
	pthread_key_delete(vcpu_key);
}

/* _i = 0: unjailed, odd vCPUs idle in the guest (the signal gets them
 * out); 1: every vCPU thread in its seccomp jail and busy (the kick's
 * handler and the thread's exit must be allowed by the filter). */
START_TEST(shutdown_stops_vcpus_before_closing_devices)
{
	int i;

	vm->jail = _i == 1;
	idle_vcpus = _i == 0;
	ck_assert_int_eq(vm_start_vcpus(vm), 0);
	pthread_barrier_wait(&vm->start);
	/* Each vCPU has been through blk_config_read at least once. */
	for (i = 0; i < N_VCPUS; i++)
		while (!atomic_load(&reads[i]) && atomic_load(&vm->exit_code) < 0)
			sched_yield();
	ck_assert_msg(atomic_load(&vm->exit_code) < 0, "a vCPU ended the VM: %s", vm->exit_reason);
	vm_request_exit(vm, 0, "test: guest powered off");
	vm_shutdown(vm);
	ck_assert_int_eq(closes, 1);
	ck_assert_msg(all_gone_at_close, "the drive was closed while a vCPU could still take MMIO exits into it");
	ck_assert_uint_eq(atomic_load(&bad_reads), 0);
	for (i = 0; i < N_VCPUS; i++)
		ck_assert(!vm->vcpus[i].started);
	ck_assert_ptr_null(vm->virtio_close[0]);
}
END_TEST

/* Shutdown with no exit asked for (a caller's mistake) still ends: the
 * kicked vCPUs must not go back into the guest. */
START_TEST(shutdown_without_exit_request)
{
	int i;

	ck_assert_int_eq(vm_start_vcpus(vm), 0);
	pthread_barrier_wait(&vm->start);
	for (i = 0; i < N_VCPUS; i++)
		while (!atomic_load(&reads[i]))
			sched_yield();
	vm_shutdown(vm);
	ck_assert_int_eq(atomic_load(&vm->exit_code), 1);
	ck_assert(all_gone_at_close);
}
END_TEST

/* A vCPU that ended the VM itself (guest halted) has returned already:
 * shutdown joins it all the same. */
static int halt_enter(struct vcpu *c)
{
	c->run->exit_reason = KVM_EXIT_HLT;
	return 0;
}

START_TEST(shutdown_after_vcpus_returned)
{
	int i;

	vm->enter = halt_enter;
	ck_assert_int_eq(vm_start_vcpus(vm), 0);
	pthread_barrier_wait(&vm->start);
	while (atomic_load(&vm->exit_code) < 0)
		sched_yield();
	vm_shutdown(vm);
	ck_assert_int_eq(atomic_load(&vm->exit_code), 0);
	ck_assert_str_eq(vm->exit_reason, "guest halted");
	ck_assert_int_eq(closes, 1);
	for (i = 0; i < N_VCPUS; i++)
		ck_assert(!vm->vcpus[i].started);
}
END_TEST

Suite *vmshutdown_suite(void)
{
	Suite *s = suite_create("vmshutdown");
	TCase *tc = tcase_create("order");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, shutdown_stops_vcpus_before_closing_devices, 0, 2);
	tcase_add_test(tc, shutdown_without_exit_request);
	tcase_add_test(tc, shutdown_after_vcpus_returned);
	suite_add_tcase(s, tc);
	return s;
}
