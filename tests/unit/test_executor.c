/* The executor layer's shared parts: the guest command line and how the
 * VMM process is started. */
#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "executors/executor.h"
#include "runner/paths.h"
#include "tests/unit/suites.h"

START_TEST(cmdline_words)
{
	struct vm_spec s = { .run_dir = "/tmp" };
	char buf[1024];

	executor_cmdline(&s, "vsock", buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, " reboot=k "));
	/* no probing for hardware neither machine has */
	ck_assert_ptr_nonnull(strstr(buf, " pci=off "));
	ck_assert_ptr_nonnull(strstr(buf, " 8250.nr_uarts=1 "));
	ck_assert_ptr_nonnull(strstr(buf, " kiln.channel=vsock"));
	ck_assert_ptr_null(strstr(buf, "kiln.workspace"));
	s.workspace_late = true;
	s.net_cmdline = "kiln.ip=10.0.0.2/30";
	executor_cmdline(&s, "vsock", buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, " kiln.channel=vsock kiln.workspace=late kiln.ip=10.0.0.2/30"));
	s.workspace_late = false;
	s.accel = "tcg";
	executor_cmdline(&s, "virtio-console", buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, " reboot=t "));
	ck_assert_ptr_nonnull(strstr(buf, " tsc_early_khz="));
}
END_TEST

/* Only a backend that can show the guest a disk filled in after start may
 * be handed a late workspace. */
START_TEST(late_workspace_backends)
{
	ck_assert_ptr_nonnull(executor_microvm.disks_changed);
	ck_assert_ptr_null(executor_qemu.disks_changed);
}
END_TEST

/* kiln-vmm limits its network devices itself; QEMU has no limiter for a
 * tap, so runner/jobnet limits the tap for it (issue 13, finding 3). */
START_TEST(network_limiter_backends)
{
	ck_assert(executor_microvm.limits_net);
	ck_assert(!executor_qemu.limits_net);
}
END_TEST

/* The signals blocked in pid, from /proc (SigBlk, a hex mask). */
static unsigned long long blocked(pid_t pid)
{
	char path[64], line[256];
	unsigned long long mask = ~0ULL;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			break;
	fclose(f);
	return mask;
}

/* The process must have exec'd: before that it runs with the test's mask. */
static void wait_exec(pid_t pid, const char *comm)
{
	char path[64], name[64] = "";
	int i;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	for (i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");

		if (f) {
			if (!fgets(name, sizeof(name), f))
				name[0] = '\0';
			fclose(f);
		}
		if (!strncmp(name, comm, strlen(comm)))
			return;
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	ck_abort_msg("%s did not start", comm);
}

/* A held signal starts blocked in the VMM: one sent before the VMM is
 * ready waits instead of killing it. Without one, nothing is blocked. */
START_TEST(spawn_holds_the_signal)
{
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX";
	char *argv[] = { "/bin/sleep", "30", NULL };
	struct vm_spec s = { 0 };
	struct executor x;
	struct kiln_err e;
	int status;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	s.run_dir = dir;
	executor_init(&x, &executor_microvm, &s);
	ck_assert_int_eq(executor_spawn(&x, argv, SIGUSR1, &e), KILN_OK);
	wait_exec(x.pid, "sleep");
	ck_assert_uint_eq(blocked(x.pid), 1ULL << (SIGUSR1 - 1));
	ck_assert_int_eq(x.ops->disks_changed(&x, &e), KILN_OK);
	ck_assert_int_eq(executor_wait(&x, 200, &status, &e), KILN_E_LIMIT);  /* still there */
	executor_cancel(&x);
	ck_assert_int_eq(executor_wait(&x, 5000, &status, &e), KILN_OK);
	ck_assert_int_eq(status, 128 + SIGKILL);
	executor_cleanup(&x);

	executor_init(&x, &executor_qemu, &s);
	ck_assert_int_eq(executor_spawn(&x, argv, 0, &e), KILN_OK);
	wait_exec(x.pid, "sleep");
	ck_assert_uint_eq(blocked(x.pid), 0);
	executor_cleanup(&x);
	ck_assert_int_eq(x.pid, -1);
	unlink(x.log_path);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* The word after the first opt that the qemu backend starts QEMU with for
 * spec t (kernel, rootfs, run_dir and helper filled in here): a fake QEMU
 * (a shell script) writes its arguments one per line into dir/argv. */
static void qemu_arg(const char *dir, const struct vm_spec *t, const char *opt, char *val, size_t size)
{
	char helper[PATH_MAX], out[PATH_MAX], line[PATH_MAX + 256];
	struct vm_spec s = *t;
	struct executor x;
	struct kiln_err e;
	bool next = false;
	int status;
	FILE *f;

	snprintf(helper, sizeof(helper), "%s/fake-qemu", dir);
	snprintf(out, sizeof(out), "%s/argv", dir);
	f = fopen(helper, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\n", out);
	fclose(f);
	ck_assert_int_eq(chmod(helper, 0755), 0);
	s.kernel = "/k";
	s.rootfs = "/r.ext4";
	s.vcpus = 1;
	s.memory_mib = 256;
	s.run_dir = dir;
	s.helper = helper;
	executor_init(&x, &executor_qemu, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	ck_assert_int_eq(x.ops->start(&x, &e), KILN_OK);
	ck_assert_int_eq(executor_wait(&x, 5000, &status, &e), KILN_OK);
	ck_assert_int_eq(status, 0);
	executor_cleanup(&x);
	unlink(x.log_path);
	unlink(x.console_path);
	val[0] = '\0';
	f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (next) {
			snprintf(val, size, "%s", line);
			break;
		}
		next = !strcmp(line, opt);
	}
	fclose(f);
	unlink(out);
	unlink(helper);
}

/* Without a CMOS RTC Linux polls for one at boot (under TCG for the wall
 * clock, and in Debian's rtc_cmos driver): the machine has one, with KVM
 * or TCG. */
START_TEST(qemu_has_an_rtc)
{
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX", machine[256];
	struct vm_spec s = { .accel = "tcg" };

	ck_assert_ptr_nonnull(mkdtemp(dir));
	qemu_arg(dir, &s, "-M", machine, sizeof(machine));
	ck_assert_ptr_nonnull(strstr(machine, "accel=tcg"));
	ck_assert_ptr_nonnull(strstr(machine, "rtc=on"));
	s.accel = "kvm";
	qemu_arg(dir, &s, "-M", machine, sizeof(machine));
	ck_assert_ptr_nonnull(strstr(machine, "accel=kvm"));
	ck_assert_ptr_nonnull(strstr(machine, "rtc=on"));
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static long long size_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void write_text(const char *path, const char *text, size_t n)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, n, f), n);
	fclose(f);
}

/* A guest's console is copied through a pipe into console.log up to the
 * limit, then a line saying so; the VM's process never blocks on the rest. */
START_TEST(console_pipe_has_a_ceiling)
{
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX", text[256];
	char *argv[] = { "/bin/sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x >&3 && echo wrote-all", NULL };
	struct vm_spec s = { 0 };
	struct executor x;
	struct kiln_err e;
	FILE *f;
	int status;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	s.run_dir = dir;
	executor_init(&x, &executor_qemu, &s);
	ck_assert_msg(executor_console_pipe(&x, 4096, &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(executor_spawn(&x, argv, 0, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(x.console_fd, -1);
	ck_assert_int_eq(executor_wait(&x, 10000, &status, &e), KILN_OK);
	ck_assert_int_eq(status, 0);
	executor_cleanup(&x);
	ck_assert_int_eq(x.drain_pid, -1);
	ck_assert_int_lt(size_of(x.console_path), 4096 + 100);
	ck_assert_int_gt(size_of(x.console_path), 4096);
	f = fopen(x.log_path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
	fclose(f);
	ck_assert_str_eq(text, "wrote-all\n");
	executor_tail(&x, text, sizeof(text));
	ck_assert_msg(strstr(text, "console output limit reached"), "%s", text);
	unlink(x.console_path);
	unlink(x.log_path);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* QEMU writes its serial console into that pipe (fd set 1 on fd 3, a file
 * chardev with append=on: QEMU 7.2 opens /dev/fdset/1 so, checked by hand),
 * not into a file of its own, and no file it writes (snapshot=on's overlay)
 * grows past 2 GiB: a fake QEMU records its arguments and RLIMIT_FSIZE and
 * writes a line to fd 3, which lands in console.log. */
START_TEST(qemu_console_goes_through_the_pipe)
{
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX", helper[PATH_MAX], out[PATH_MAX + 8], line[512], prev[512] = "";
	struct vm_spec s = { 0 };
	struct executor x;
	struct kiln_err e;
	bool addfd = false, serial = false, chardev = false, fsize = false, core = false;
	int status;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(helper, sizeof(helper), "%s/fake-qemu", dir);
	snprintf(out, sizeof(out), "%s/argv", dir);
	f = fopen(helper, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\ngrep 'Max file size\\|Max core' /proc/$$/limits >> %s\n"
		   "case \"$*\" in *-add-fd*) echo 'Linux booted' >&3;; esac\n",
		out, out);
	fclose(f);
	ck_assert_int_eq(chmod(helper, 0755), 0);
	s.kernel = "/k";
	s.rootfs = "/r.ext4";
	s.vcpus = 1;
	s.memory_mib = 256;
	s.run_dir = dir;
	s.helper = helper;
	s.accel = "tcg";
	executor_init(&x, &executor_qemu, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	ck_assert_int_eq(x.ops->start(&x, &e), KILN_OK);
	ck_assert_int_eq(executor_wait(&x, 5000, &status, &e), KILN_OK);
	ck_assert_int_eq(status, 0);
	executor_cleanup(&x);
	f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		addfd |= !strcmp(prev, "-add-fd") && !strcmp(line, "fd=3,set=1");
		serial |= !strcmp(prev, "-chardev") && !strcmp(line, "file,id=console,path=/dev/fdset/1,append=on");
		chardev |= !strcmp(prev, "-serial") && !strcmp(line, "chardev:console");
		fsize |= !strncmp(line, "Max file size", 13) && strstr(line, " 2147483648 ");
		if (!strncmp(line, "Max core file size", 18)) {
			char soft[32], hard[32];

			core = sscanf(line + 18, "%31s %31s", soft, hard) == 2 && !strcmp(soft, "0") && !strcmp(hard, "0");
		}
		snprintf(prev, sizeof(prev), "%s", line);
	}
	fclose(f);
	ck_assert(addfd);
	ck_assert(serial);
	ck_assert(chardev);
	ck_assert(fsize); /* snapshot=on's overlay: 2 GiB at most */
	ck_assert(core);
	f = fopen(x.console_path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_str_eq(line, "Linux booted\n");
	unlink(out);
	unlink(helper);
	unlink(x.console_path);
	unlink(x.log_path);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* The console tail that goes into error messages is one line of printable
 * ASCII: the guest's escape sequences (a screen clear, a window title, a
 * colour, an 8-bit CSI) are gone, its text stays. */
START_TEST(tail_strips_escape_sequences)
{
	static const char console[] = "\x1b[2J\x1b]0;pwned\x07" "boot \x1b[31;1mfailed\x1b[0m\r\n"
				      "\x9b" "6n\x1bPq#0\x1b\\x\ty\x00z\x7f\x1b[1";
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX", text[600], *c;
	struct vm_spec s = { 0 };
	struct executor x;
	size_t i;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	s.run_dir = dir;
	executor_init(&x, &executor_qemu, &s);
	write_text(x.console_path, console, sizeof(console) - 1);
	executor_tail(&x, text, sizeof(text));
	for (i = 0; text[i]; i++)
		ck_assert_msg(text[i] >= 0x20 && text[i] < 0x7f, "byte %zu is 0x%02x: %s", i, (unsigned char)text[i], text);
	c = strstr(text, "console: [");
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c, "console: [boot failed ?6nx yz]");
	unlink(x.console_path);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* Issue 13, finding 3: the disk limits reach QEMU as -drive throttling. */
START_TEST(qemu_throttles_disks)
{
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX", drive[PATH_MAX];
	struct vm_spec s = { .accel = "tcg", .disk_rate_limit = 209715200, .disk_iops_limit = 10000 };

	ck_assert_ptr_nonnull(mkdtemp(dir));
	qemu_arg(dir, &s, "-drive", drive, sizeof(drive));
	ck_assert_str_eq(drive, "id=root,file=/r.ext4,format=raw,if=none,snapshot=on,"
				"throttling.bps-total=209715200,throttling.iops-total=10000");
	s.disk_rate_limit = 0;
	qemu_arg(dir, &s, "-drive", drive, sizeof(drive));
	ck_assert_str_eq(drive, "id=root,file=/r.ext4,format=raw,if=none,snapshot=on,throttling.iops-total=10000");
	s.disk_iops_limit = 0;
	qemu_arg(dir, &s, "-drive", drive, sizeof(drive));
	ck_assert_str_eq(drive, "id=root,file=/r.ext4,format=raw,if=none,snapshot=on");
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* Issue 13, finding 3: kiln-vmm's vm.json carries the network and disk
 * limits as Firecracker's token buckets (100 ms refill), each disk with a
 * one-time burst for the boot and the checkout. */
START_TEST(microvm_limits)
{
	char dir[] = "/tmp/kiln-exec-unit-XXXXXX";
	struct vm_spec s = { .kernel = "/k", .rootfs = "/r.ext4", .workspace = "/w.ext4", .vcpus = 1,
			     .memory_mib = 256, .tap = "kt0", .rx_rate_limit = 104857600,
			     .tx_rate_limit = 1000, .disk_rate_limit = 209715200, .disk_iops_limit = 10000 };
	struct executor x;
	struct kiln_err e;
	json_t *cfg, *d;
	size_t i;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	s.run_dir = dir;
	executor_init(&x, &executor_microvm, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	cfg = json_load_file(x.config_path, 0, NULL);
	ck_assert_ptr_nonnull(cfg);
	d = json_object_get(cfg, "net");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(
				 json_array_get(d, 0), "rx_rate_limiter"), "bandwidth"), "size")), 10485760);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(
				 json_array_get(d, 0), "rx_rate_limiter"), "bandwidth"), "refill_time")), 100);
	/* a tiny rate still holds a full frame: 64 KiB per 65.5 s */
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(
				 json_array_get(d, 0), "tx_rate_limiter"), "bandwidth"), "size")), 65536);
	d = json_object_get(cfg, "drives");
	ck_assert_uint_eq(json_array_size(d), 2);
	for (i = 0; i < 2; i++) {
		json_t *l = json_object_get(json_array_get(d, i), "rate_limiter");
		json_t *bw = json_object_get(l, "bandwidth"), *ops = json_object_get(l, "ops");

		ck_assert_int_eq(json_integer_value(json_object_get(bw, "size")), 20971520);
		ck_assert_int_eq(json_integer_value(json_object_get(bw, "refill_time")), 100);
		ck_assert_int_eq(json_integer_value(json_object_get(bw, "one_time_burst")), 256 << 20);
		ck_assert_int_eq(json_integer_value(json_object_get(ops, "size")), 1000);
		ck_assert_int_eq(json_integer_value(json_object_get(ops, "refill_time")), 100);
		ck_assert_int_eq(json_integer_value(json_object_get(ops, "one_time_burst")), 20000);
	}
	json_decref(cfg);
	executor_cleanup(&x);
	/* No limits: no limiter objects. */
	s.rx_rate_limit = s.tx_rate_limit = s.disk_rate_limit = s.disk_iops_limit = 0;
	executor_init(&x, &executor_microvm, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	cfg = json_load_file(x.config_path, 0, NULL);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(cfg, "drives"), 0), "rate_limiter"));
	ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(cfg, "net"), 0), "rx_rate_limiter"));
	json_decref(cfg);
	executor_cleanup(&x);
	unlink(x.config_path);
	unlink(x.log_path);
	kiln_rm_rf(dir);
}
END_TEST

Suite *executor_suite(void)
{
	Suite *s = suite_create("executor");
	TCase *tc = tcase_create("shared");

	tcase_add_test(tc, cmdline_words);
	tcase_add_test(tc, late_workspace_backends);
	tcase_add_test(tc, network_limiter_backends);
	tcase_add_test(tc, spawn_holds_the_signal);
	tcase_add_test(tc, qemu_has_an_rtc);
	tcase_add_test(tc, console_pipe_has_a_ceiling);
	tcase_add_test(tc, qemu_console_goes_through_the_pipe);
	tcase_add_test(tc, tail_strips_escape_sequences);
	tcase_add_test(tc, qemu_throttles_disks);
	tcase_add_test(tc, microvm_limits);
	suite_add_tcase(s, tc);
	return s;
}
