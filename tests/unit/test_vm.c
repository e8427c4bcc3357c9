/* The parts of vmm/vm.c that run without KVM: guest memory mapping, the
 * exit request, and the vCPU loop's handling of each exit reason. The
 * vCPU loop (vm_vcpu_thread) runs on the test's own thread, its guest a
 * fake (vm->enter) that plays a script of exits and records what the VMM
 * answered to each read. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

#define MAX_STEPS 8

/* One exit of the fake guest. */
struct step {
	uint32_t reason;          /* KVM_EXIT_IO, _MMIO, ...; 0 past the end */
	uint64_t addr;            /* port or guest-physical address */
	uint32_t len;             /* access width */
	bool write;
	uint8_t value;            /* what a write writes (every byte) */
	uint64_t detail;          /* hardware entry failure reason, suberror, event type */
	int fail_errno;           /* enter fails with this instead */
};

/* kvm_run with room behind it for port I/O data, as KVM's mapping has. */
static union {
	struct kvm_run run;
	uint8_t bytes[8192];
} page;
#define IO_DATA_OFFSET 4096

static struct vm *vm;
static const struct step *script;
static int next_step;
static uint8_t answer[MAX_STEPS][8];  /* what the VMM left in a read's data */

static uint8_t *step_data(const struct step *s)
{
	return s->reason == KVM_EXIT_IO ? page.bytes + IO_DATA_OFFSET : page.run.mmio.data;
}

static int script_enter(struct vcpu *c)
{
	const struct step *s;
	struct kvm_run *run = c->run;

	if (next_step > 0 && !script[next_step - 1].write)
		memcpy(answer[next_step - 1], step_data(&script[next_step - 1]), script[next_step - 1].len);
	ck_assert_int_lt(next_step, MAX_STEPS);
	s = &script[next_step++];
	if (s->fail_errno) {
		errno = s->fail_errno;
		return -1;
	}
	memset(run, 0, sizeof(*run));
	run->exit_reason = s->reason ? s->reason : KVM_EXIT_HLT;
	switch (s->reason) {
	case KVM_EXIT_IO:
		run->io.direction = s->write ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
		run->io.size = (uint8_t)s->len;
		run->io.port = (uint16_t)s->addr;
		run->io.count = 1;
		run->io.data_offset = IO_DATA_OFFSET;
		memset(page.bytes + IO_DATA_OFFSET, s->write ? s->value : 0x5a, s->len);
		break;
	case KVM_EXIT_MMIO:
		run->mmio.phys_addr = s->addr;
		run->mmio.len = s->len;
		run->mmio.is_write = s->write;
		memset(run->mmio.data, s->write ? s->value : 0x5a, sizeof(run->mmio.data));
		break;
	case KVM_EXIT_FAIL_ENTRY:
		run->fail_entry.hardware_entry_failure_reason = s->detail;
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		run->internal.suberror = (uint32_t)s->detail;
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		run->system_event.type = (uint32_t)s->detail;
		break;
	}
	return 0;
}

static void setup(void)
{
	vm = calloc(1, sizeof(*vm));
	ck_assert_ptr_nonnull(vm);
	vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(vm->exit_fd, 0);
	atomic_store(&vm->exit_code, -1);
	vm->enter = script_enter;
	vm->n_vcpus = 1;
	vm->vcpus[0] = (struct vcpu){ .vm = vm, .index = 0, .fd = -1, .run = &page.run };
	ck_assert_int_eq(pthread_barrier_init(&vm->start, NULL, 1), 0);
	next_step = 0;
	memset(answer, 0, sizeof(answer));
}

static void teardown(void)
{
	pthread_barrier_destroy(&vm->start);
	close(vm->exit_fd);
	free(vm);
}

/* Run the vCPU loop over steps until it returns; the exit_fd must have
 * been signalled once. */
static void play(const struct step *steps)
{
	uint64_t n = 0;

	script = steps;
	ck_assert_ptr_null(vm_vcpu_thread(&vm->vcpus[0]));
	ck_assert_int_eq(read(vm->exit_fd, &n, sizeof(n)), (ssize_t)sizeof(n));
	ck_assert_uint_eq(n, 1);
}

static const struct {
	struct step step;
	int code;
	const char *reason;
} endings[] = {
	{ { .reason = KVM_EXIT_HLT }, 0, "guest halted" },
	{ { .reason = KVM_EXIT_SHUTDOWN }, 0, "guest reset (triple fault)" },
	{ { .reason = KVM_EXIT_SYSTEM_EVENT, .detail = KVM_SYSTEM_EVENT_RESET }, 0, "guest reset" },
	{ { .reason = KVM_EXIT_SYSTEM_EVENT, .detail = KVM_SYSTEM_EVENT_SHUTDOWN }, 0, "guest powered off" },
	/* ACPI sleep control: SLP_EN | SLP_TYP 5 (S5). */
	{ { .reason = KVM_EXIT_IO, .addr = VM_ACPI_SLEEP_PORT, .len = 1, .write = true, .value = 0x20 | 5 << 2 },
	  0, "guest powered off" },
	{ { .reason = KVM_EXIT_FAIL_ENTRY, .detail = 0x80000021 }, 1,
	  "vCPU 0: entry failed, hardware reason 0x80000021" },
	{ { .reason = KVM_EXIT_INTERNAL_ERROR, .detail = 3 }, 1, "vCPU 0: KVM internal error, suberror 3" },
	{ { .reason = KVM_EXIT_DEBUG }, 1, "vCPU 0: unexpected exit reason 4" },
	{ { .fail_errno = EIO }, 1, "vCPU 0: KVM_RUN: Input/output error" },
};

/* Each way a vCPU ends the VM: its code and the reason given. */
START_TEST(vcpu_exit_ends_the_vm)
{
	const struct step steps[2] = { endings[_i].step };

	play(steps);
	ck_assert_int_eq(atomic_load(&vm->exit_code), endings[_i].code);
	ck_assert_str_eq(vm->exit_reason, endings[_i].reason);
	ck_assert_int_eq(next_step, 1);
}
END_TEST

/* An interrupted or retried KVM_RUN goes back into the guest. */
START_TEST(vcpu_eintr_goes_back_in)
{
	static const struct step steps[] = {
		{ .fail_errno = EINTR }, { .fail_errno = EAGAIN }, { .reason = KVM_EXIT_HLT },
	};

	play(steps);
	ck_assert_int_eq(next_step, 3);
	ck_assert_str_eq(vm->exit_reason, "guest halted");
}
END_TEST

/* Reads of what nothing backs: unknown ports and unbacked MMIO read all
 * ones, the ACPI sleep port and the boot timer read zero; a sleep other
 * than S5 does not end the VM. Every exit is counted by kind. */
START_TEST(vcpu_unbacked_reads_and_exit_counts)
{
	static const struct step steps[] = {
		{ .reason = KVM_EXIT_IO, .addr = 0x80, .len = 1 },
		{ .reason = KVM_EXIT_IO, .addr = 0x70, .len = 2 },
		{ .reason = KVM_EXIT_IO, .addr = VM_ACPI_SLEEP_PORT, .len = 1 },
		{ .reason = KVM_EXIT_IO, .addr = VM_ACPI_SLEEP_PORT, .len = 1, .write = true, .value = 0x20 | 3 << 2 },
		{ .reason = KVM_EXIT_MMIO, .addr = LAYOUT_BOOT_TIMER + 8, .len = 4 },
		{ .reason = KVM_EXIT_MMIO, .addr = 0xa0000000, .len = 8 },
		{ .reason = KVM_EXIT_MMIO, .addr = LAYOUT_MMIO_BASE + 3 * LAYOUT_MMIO_SIZE, .len = 4 },
		{ .reason = KVM_EXIT_HLT },
	};
	static const uint8_t ones[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zeros[8];
	uint64_t counts[VCPU_EXIT_KINDS];

	play(steps);
	ck_assert_str_eq(vm->exit_reason, "guest halted");
	ck_assert_mem_eq(answer[0], ones, 1);
	ck_assert_mem_eq(answer[1], ones, 2);
	ck_assert_mem_eq(answer[2], zeros, 1);
	ck_assert_mem_eq(answer[4], zeros, 4);
	ck_assert_mem_eq(answer[5], ones, 8);
	ck_assert_mem_eq(answer[6], ones, 4);  /* no device in that slot */
	vm_exit_counts(vm, counts);
	ck_assert_uint_eq(counts[VCPU_EXIT_SERIAL], 0);
	ck_assert_uint_eq(counts[VCPU_EXIT_PIO_OTHER], 4);
	ck_assert_uint_eq(counts[VCPU_EXIT_MMIO_OTHER], 2);
	ck_assert_uint_eq(counts[VCPU_EXIT_VIRTIO], 1);
}
END_TEST

/* The first request to end the VM wins, and wakes the main thread once. */
START_TEST(request_exit_first_wins)
{
	uint64_t n = 0;

	vm_request_exit(vm, 3, "first");
	vm_request_exit(vm, 0, "second");
	ck_assert_int_eq(atomic_load(&vm->exit_code), 3);
	ck_assert_str_eq(vm->exit_reason, "first");
	ck_assert_int_eq(read(vm->exit_fd, &n, sizeof(n)), (ssize_t)sizeof(n));
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(read(vm->exit_fd, &n, sizeof(n)), -1);
}
END_TEST

/* Guest RAM is mapped 2 MiB aligned (huge pages line up), laid out in the
 * ranges of gm_layout, and writable end to end. */
START_TEST(map_memory_aligned)
{
	char err[256] = "";
	struct guest_mem want;

	ck_assert_msg(vm_map_memory(vm, 64, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(vm->mem_bytes, 64u << 20);
	ck_assert_uint_eq((uintptr_t)vm->mem.host % (2u << 20), 0);
	gm_layout(&want, 64u << 20);
	ck_assert_uint_eq(vm->mem.low_size, want.low_size);
	ck_assert_uint_eq(vm->mem.high_size, want.high_size);
	vm->mem.host[0] = 1;
	vm->mem.host[vm->mem_bytes - 1] = 2;
	ck_assert_int_eq(munmap(vm->mem.host, vm->mem_bytes), 0);
}
END_TEST

Suite *vm_suite(void)
{
	Suite *s = suite_create("vm");
	TCase *tc = tcase_create("nokvm");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, vcpu_exit_ends_the_vm, 0, (int)(sizeof(endings) / sizeof(endings[0])));
	tcase_add_test(tc, vcpu_eintr_goes_back_in);
	tcase_add_test(tc, vcpu_unbacked_reads_and_exit_counts);
	tcase_add_test(tc, request_exit_first_wins);
	tcase_add_test(tc, map_memory_aligned);
	suite_add_tcase(s, tc);
	return s;
}
