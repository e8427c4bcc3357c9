/* The executor layer's shared parts: the guest command line and how the
 * VMM process is started. */
#include <check.h>
#include <dirent.h>
#include <elf.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "executors/executor.h"
#include "lib/spawn.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(cmdline_words)
{
	struct vm_spec s = { .run_dir = "/tmp" };
	char buf[1024];

	ck_assert_int_eq(executor_cmdline(&s, "vsock", buf, sizeof(buf), NULL), KILN_OK);
	ck_assert_ptr_nonnull(strstr(buf, " reboot=k "));
	/* no probing for hardware neither machine has */
	ck_assert_ptr_nonnull(strstr(buf, " pci=off "));
	ck_assert_ptr_nonnull(strstr(buf, " 8250.nr_uarts=1 "));
	ck_assert_ptr_nonnull(strstr(buf, " kiln.channel=vsock"));
	ck_assert_ptr_null(strstr(buf, "kiln.workspace"));
	s.workspace_late = true;
	s.net_cmdline = "kiln.ip=10.0.0.2/30";
	ck_assert_int_eq(executor_cmdline(&s, "vsock", buf, sizeof(buf), NULL), KILN_OK);
	ck_assert_ptr_nonnull(strstr(buf, " kiln.channel=vsock kiln.workspace=late kiln.ip=10.0.0.2/30"));
	ck_assert_ptr_null(strstr(buf, "kiln.template"));
	s.snapshot_save_to = "/tmp/template.new";
	ck_assert_int_eq(executor_cmdline(&s, "vsock", buf, sizeof(buf), NULL), KILN_OK);
	ck_assert_ptr_nonnull(strstr(buf, " kiln.workspace=late kiln.template kiln.ip=10.0.0.2/30"));
	s.snapshot_save_to = NULL;
	s.workspace_late = false;
	s.accel = "tcg";
	ck_assert_int_eq(executor_cmdline(&s, "virtio-console", buf, sizeof(buf), NULL), KILN_OK);
	ck_assert_ptr_nonnull(strstr(buf, " reboot=t "));
	ck_assert_ptr_nonnull(strstr(buf, " tsc_early_khz="));
}
END_TEST

/* kiln boot's command follows `--`, quoted where it has spaces, in place
 * of the channel; what the kernel cannot carry is refused. */
START_TEST(cmdline_command)
{
	char *const cmd[] = { "/bin/sh", "-c", "echo hi", "", NULL };
	char *const bad[] = { "/bin/sh", "-c", "echo \"hi\"", NULL };
	struct vm_spec s = { .run_dir = "/tmp", .command = cmd };
	struct kiln_err e = { 0 };
	char buf[1024];

	ck_assert_int_eq(executor_cmdline(&s, "vsock", buf, sizeof(buf), &e), KILN_OK);
	ck_assert_ptr_null(strstr(buf, "kiln.channel"));
	ck_assert_msg(strstr(buf, " init=/sbin/kiln-agent -- /bin/sh -c \"echo hi\" \"\"") != NULL, "%s", buf);
	ck_assert_int_eq(executor_cmdline(&s, "vsock", buf, 120, &e), KILN_E_LIMIT);
	s.command = bad;
	ck_assert_int_eq(executor_cmdline(&s, "vsock", buf, sizeof(buf), &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "command argument 2 holds a quote or control character");
}
END_TEST

/* Names come from the backends' table: "auto" and each backend's. */
START_TEST(find_by_name)
{
	ck_assert_ptr_eq(executor_find("microvm"), &executor_microvm);
	ck_assert_ptr_eq(executor_find("qemu"), &executor_qemu);
	ck_assert_ptr_null(executor_find("auto"));
	ck_assert_ptr_null(executor_find("docker"));
	ck_assert(executor_known("auto") && executor_known("microvm") && executor_known("qemu"));
	ck_assert(!executor_known("") && !executor_known("QEMU"));
	ck_assert_str_eq(executor_names(), "auto, microvm or qemu");
}
END_TEST

/* Picking from facts alone, no host probed: auto prefers kiln-vmm where
 * KVM boots stock kernels, QEMU (with KVM or TCG) otherwise; a named
 * backend the host lacks fails saying what is missing. */
START_TEST(pick_from_facts)
{
	struct host_facts f = { .kvm_dev = true, .kvm_rw = true, .flavour = KVM_FLAVOUR_SVM };
	struct executor_choice c;
	struct kiln_err e = { 0 };

	snprintf(f.vmm, sizeof(f.vmm), "/x/kiln-vmm");
	snprintf(f.qemu, sizeof(f.qemu), "/usr/bin/qemu-system-x86_64");
	ck_assert_int_eq(executor_pick("auto", &f, &c, &e), KILN_OK);
	ck_assert_ptr_eq(c.ops, &executor_microvm);
	ck_assert_str_eq(c.helper, "/x/kiln-vmm");
	ck_assert_str_eq(c.accel, "kvm");
	ck_assert_int_eq(executor_pick("qemu", &f, &c, &e), KILN_OK);
	ck_assert_ptr_eq(c.ops, &executor_qemu);
	ck_assert_str_eq(c.helper, "/usr/bin/qemu-system-x86_64");
	ck_assert_str_eq(c.accel, "kvm");

	/* PVM: only QEMU, under TCG; asking for microvm says why not. */
	f.flavour = KVM_FLAVOUR_PVM;
	ck_assert_int_eq(executor_pick("auto", &f, &c, &e), KILN_OK);
	ck_assert_ptr_eq(c.ops, &executor_qemu);
	ck_assert_str_eq(c.accel, "tcg");
	ck_assert_int_eq(executor_pick("microvm", &f, &c, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "PVM (kvm_pvm)") && strstr(e.msg, "--executor qemu"), "%s", e.msg);

	/* /dev/kvm not ours: no kiln-vmm, QEMU under TCG. */
	f.flavour = KVM_FLAVOUR_VMX;
	f.kvm_rw = false;
	ck_assert_int_eq(executor_pick("auto", &f, &c, &e), KILN_OK);
	ck_assert_str_eq(c.accel, "tcg");

	/* Nothing installed. */
	f.kvm_rw = true;
	f.vmm[0] = f.qemu[0] = '\0';
	ck_assert_int_eq(executor_pick("auto", &f, &c, &e), KILN_E_NOTFOUND);
	ck_assert_str_eq(e.msg, "no executor can run VMs on this host (run: kiln doctor)");
	ck_assert_int_eq(executor_pick("microvm", &f, &c, &e), KILN_E_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(e.msg, "kiln-vmm not found"));
	ck_assert_int_eq(executor_pick("qemu", &f, &c, &e), KILN_E_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(e.msg, "qemu-system-x86_64 not found"));
	ck_assert_int_eq(executor_pick("docker", &f, &c, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "unknown executor 'docker' (auto, microvm or qemu)");
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
	char *argv[] = { "/bin/sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x >&4 && echo wrote-all", NULL };
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
		   "case \"$*\" in *-add-fd*) echo 'Linux booted' >&4;; esac\n",
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
		addfd |= !strcmp(prev, "-add-fd") && !strcmp(line, "fd=4,set=1");
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
	ck_assert_str_eq(drive, "id=root,file=/r.ext4,format=raw,if=none,snapshot=on,werror=report,rerror=report,"
				"throttling.bps-total=209715200,throttling.iops-total=10000");
	s.disk_rate_limit = 0;
	qemu_arg(dir, &s, "-drive", drive, sizeof(drive));
	ck_assert_str_eq(drive, "id=root,file=/r.ext4,format=raw,if=none,snapshot=on,werror=report,rerror=report,"
				"throttling.iops-total=10000");
	s.disk_iops_limit = 0;
	qemu_arg(dir, &s, "-drive", drive, sizeof(drive));
	ck_assert_str_eq(drive, "id=root,file=/r.ext4,format=raw,if=none,snapshot=on,werror=report,rerror=report");
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

/* The value of field (e.g. "CapEff:") in /proc/pid/status, "" when none. */
static void status_field(pid_t pid, const char *field, char *buf, size_t size)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	buf[0] = '\0';
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field))) {
			snprintf(buf, size, "%s", line + strlen(field) + strspn(line + strlen(field), " \t"));
			buf[strcspn(buf, "\n")] = '\0';
		}
	fclose(f);
}

static bool same_ns(pid_t pid, const char *ns)
{
	char a[64], b[64], la[64] = "", lb[64] = "";

	snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns);
	snprintf(b, sizeof(b), "/proc/self/ns/%s", ns);
	ck_assert_int_gt(readlink(a, la, sizeof(la) - 1), 0);
	ck_assert_int_gt(readlink(b, lb, sizeof(lb) - 1), 0);
	return !strcmp(la, lb);
}

static void touch(const char *dir, const char *name, const char *text, mode_t mode)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* x's VMM runs as its slot's uid/gid, with no capability, no_new_privs,
 * in namespaces of its own. */
static void assert_jailed(const struct executor *x)
{
	const char *const nss[] = { "mnt", "pid", "net", "ipc", "uts", NULL };
	char buf[256];
	int i;

	status_field(x->pid, "Uid:", buf, sizeof(buf));
	ck_assert_uint_ge(strtoul(buf, NULL, 10), JAIL_UID_BASE_DEFAULT);
	ck_assert_uint_eq(strtoul(buf, NULL, 10), x->jail.uid);
	status_field(x->pid, "Gid:", buf, sizeof(buf));
	ck_assert_uint_eq(strtoul(buf, NULL, 10), x->jail.gid);
	status_field(x->pid, "Groups:", buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	status_field(x->pid, "CapEff:", buf, sizeof(buf));
	ck_assert_str_eq(buf, "0000000000000000");
	status_field(x->pid, "CapPrm:", buf, sizeof(buf));
	ck_assert_str_eq(buf, "0000000000000000");
	status_field(x->pid, "CapBnd:", buf, sizeof(buf));
	ck_assert_str_eq(buf, "0000000000000000");
	status_field(x->pid, "NoNewPrivs:", buf, sizeof(buf));
	ck_assert_str_eq(buf, "1");
	for (i = 0; nss[i]; i++)
		ck_assert_msg(!same_ns(x->pid, nss[i]), "the VMM shares kiln's %s namespace", nss[i]);
}

/* s: a jailed fake QEMU (the script qemu, in dir) with a kernel and a
 * root disk in dir, run from run (workspace: with a workspace disk too).
 * Free with fake_vm_free. */
static void fake_vm_spec(struct vm_spec *s, const char *dir, const char *run, char *helper, size_t hsize,
			 const char *qemu, bool workspace)
{
	char path[PATH_MAX];

	memset(s, 0, sizeof(*s));
	snprintf(helper, hsize, "%s/fake-qemu", dir);
	touch(dir, "fake-qemu", qemu, 0755);
	touch(dir, "k", "kernel", 0644);
	touch(dir, "r.ext4", "rootfs", 0644);
	snprintf(path, sizeof(path), "%s/k", dir);
	s->kernel = strdup(path);
	snprintf(path, sizeof(path), "%s/r.ext4", dir);
	s->rootfs = strdup(path);
	if (workspace) {
		touch(dir, "ws.ext4", "", 0644);
		snprintf(path, sizeof(path), "%s/ws.ext4", dir);
		s->workspace = strdup(path);
	}
	s->vcpus = 1;
	s->memory_mib = 256;
	s->run_dir = run;
	s->helper = helper;
	s->accel = "tcg";
	s->jail = true;
	s->jail_uid_base = JAIL_UID_BASE_DEFAULT;
}

static void fake_vm_free(struct vm_spec *s)
{
	free((char *)s->kernel);
	free((char *)s->rootfs);
	free((char *)s->workspace);
}

/* A jailed VMM (a fake QEMU: a script that leaves its argv in /vm and
 * sleeps) runs in its own namespaces, sees only its jail's root, runs as
 * its slot's uid with no capability and no_new_privs, in its cgroup; all
 * of it goes at cleanup. */
START_TEST(jailed_vmm)
{
	char dir[] = "/tmp/kiln-jail-unit-XXXXXX", run[PATH_MAX], helper[PATH_MAX], buf[256], path[PATH_MAX];
	const char *const wanted[] = { "usr", "dev", "vm", "kernel", "rootfs", "workspace", "console.log", "fake-qemu", NULL };
	struct vm_spec s = { 0 };
	struct jail_host h;
	struct executor x;
	struct kiln_err e;
	struct dirent *d;
	char cgroups[3][PATH_MAX];
	int i, n_cgroups, n_entries = 0;
	bool sandbox = false;
	FILE *f;
	DIR *root;

	jail_probe(&h);
	if (geteuid() != 0 || !h.namespaces || !h.controllers) {
		fprintf(stderr, "jailed_vmm: skipped: needs root, namespaces and cgroups (%s)\n", h.detail);
		return;
	}
	test_vm_lock();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* Named as job folders are (id.pid.x), so that two test runs at once
	 * never share a cgroup and jail_sweep takes what a killed one left. */
	snprintf(run, sizeof(run), "%s/1.%d.run", dir, (int)getpid());
	ck_assert_int_eq(mkdir(run, 0700), 0);
	fake_vm_spec(&s, dir, run, helper, sizeof(helper),
		     "#!/bin/sh\nprintf '%s\\n' \"$@\" > /vm/argv\nexec sleep 1000\n", true);
	executor_init(&x, &executor_qemu, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	ck_assert_int_eq(x.ops->start(&x, &e), KILN_OK);
	wait_exec(x.pid, "sleep");

	assert_jailed(&x);

	/* Its root: the jail's files and nothing of the host's but /usr. */
	snprintf(path, sizeof(path), "/proc/%d/root", (int)x.pid);
	root = opendir(path);
	ck_assert_ptr_nonnull(root);
	while ((d = readdir(root))) {
		bool known = !strcmp(d->d_name, ".") || !strcmp(d->d_name, "..");

		for (i = 0; wanted[i]; i++)
			known |= !strcmp(d->d_name, wanted[i]);
		/* the host's /lib, /bin... links into /usr */
		known |= !strncmp(d->d_name, "lib", 3) || !strcmp(d->d_name, "bin") || !strcmp(d->d_name, "sbin");
		ck_assert_msg(known, "the jail's root holds %s", d->d_name);
		n_entries++;
	}
	closedir(root);
	ck_assert_int_ge(n_entries, 2 + 8);
	snprintf(path, sizeof(path), "/proc/%d/root/kernel", (int)x.pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	ck_assert_str_eq(buf, "kernel");
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/root/dev/kvm", (int)x.pid);
	ck_assert_int_ne(access(path, F_OK), 0);  /* TCG needs no KVM */

	/* Its cgroup, named after the run folder. */
	ck_assert_int_gt(x.jail.n_cgroups, 0);
	n_cgroups = x.jail.n_cgroups;
	for (i = 0; i < n_cgroups; i++) {
		snprintf(cgroups[i], sizeof(cgroups[i]), "%s", x.jail.cgroups[i]);
		ck_assert_ptr_nonnull(strstr(cgroups[i], "/kiln/1."));
		snprintf(path, sizeof(path), "%s/cgroup.procs", cgroups[i]);
		f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
		ck_assert_int_eq(atoi(buf), x.pid);
		fclose(f);
	}

	/* The argv it got: paths inside the jail, and QEMU's own sandbox. */
	snprintf(path, sizeof(path), "%s/vm/argv", run);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(buf, sizeof(buf), f)) {
		sandbox |= !strncmp(buf, "-sandbox", 8);
		ck_assert_ptr_null(strstr(buf, dir));
	}
	fclose(f);
	ck_assert(sandbox);

	executor_cancel(&x);
	executor_cleanup(&x);
	ck_assert_int_eq(x.pid, -1);
	for (i = 0; i < n_cgroups; i++)
		ck_assert_int_ne(access(cgroups[i], F_OK), 0);
	ck_assert_int_eq(x.jail.slot_fd, -1);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
	fake_vm_free(&s);
}
END_TEST

static void *thread_nop(void *arg)
{
	return arg;
}

static volatile int churn_stop;

static void *thread_churn(void *arg)
{
	pthread_t t;

	while (!churn_stop)
		if (pthread_create(&t, NULL, thread_nop, NULL) == 0)
			pthread_join(t, NULL);
	return arg;
}

/* A jailed VMM starts while other threads of kiln come and go (a job's
 * workspace thread, the daemon's other jobs): the clone()d child drops
 * to its slot's ids without glibc's all-threads setxid, which in that
 * child waited for good on a thread being created at the clone. alarm()
 * turns such a wait into this test's failure. */
START_TEST(jailed_spawn_beside_new_threads)
{
	char dir[] = "/tmp/kiln-jail-unit-XXXXXX", run[PATH_MAX], helper[PATH_MAX], path[PATH_MAX];
	struct vm_spec s = { 0 };
	struct jail_host h;
	pthread_t churn;
	int i;

	jail_probe(&h);
	if (geteuid() != 0 || !h.namespaces || !h.controllers) {
		fprintf(stderr, "jailed_spawn_beside_new_threads: skipped: needs root, namespaces and cgroups (%s)\n",
			h.detail);
		return;
	}
	test_vm_lock();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	fake_vm_spec(&s, dir, run, helper, sizeof(helper), "#!/bin/sh\nexec sleep 1000\n", false);
	churn_stop = 0;
	ck_assert_int_eq(pthread_create(&churn, NULL, thread_churn, NULL), 0);
	alarm(60);
	for (i = 0; i < 20; i++) {
		struct executor x;
		struct kiln_err e;

		snprintf(run, sizeof(run), "%s/%d.%d.run", dir, i + 1, (int)getpid());
		ck_assert_int_eq(mkdir(run, 0700), 0);
		executor_init(&x, &executor_qemu, &s);
		ck_assert_msg(x.ops->prepare(&x, &e) == KILN_OK, "%s", e.msg);
		ck_assert_msg(x.ops->start(&x, &e) == KILN_OK, "%s", e.msg);
		wait_exec(x.pid, "sleep");
		assert_jailed(&x);
		executor_cancel(&x);
		executor_cleanup(&x);
	}
	alarm(0);
	churn_stop = 1;
	pthread_join(churn, NULL);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
	fake_vm_free(&s);
}
END_TEST

/* A guest of a few instructions: an ELF vmlinux with a Xen PVH note whose
 * entry is code, then "hlt; jmp .-1" (kvm_pvm runs it, as it cannot run a
 * stock kernel). */
static void tiny_guest(const char *path, const char *code, size_t len)
{
	uint8_t b[8192] = { 0 };
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;
	Elf64_Phdr *ph = (Elf64_Phdr *)(b + sizeof(*eh));
	uint32_t note[5] = { 4, 4, 18, 0, 0x1000000 };
	FILE *f;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_entry = 0x1000000;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 4096, .p_paddr = 0x1000000, .p_filesz = 4096,
			      .p_memsz = 4096 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 1024, .p_filesz = sizeof(note) };
	memcpy(&note[3], "Xen", 4);
	memcpy(b + 1024, note, sizeof(note));
	memcpy(b + 4096, code, len);
	memcpy(b + 4096 + len, "\xf4\xeb\xfd", 3);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(b, 1, sizeof(b), f), sizeof(b));
	fclose(f);
}

/* Whether every thread of pid shows Seccomp: 2; *tasks gets their count. */
static bool all_filtered(pid_t pid, int *tasks)
{
	char path[128], line[256];
	struct dirent *d;
	int filtered = 0;
	DIR *dir;
	FILE *f;

	*tasks = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(dir = opendir(path)))
		return false;
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		(*tasks)++;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, d->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		while (fgets(line, sizeof(line), f))
			filtered += !strcmp(line, "Seccomp:\t2\n");
		fclose(f);
	}
	closedir(dir);
	return *tasks > 0 && filtered == *tasks;
}

/* How many network interfaces pid's network namespace has. */
static int net_devices(pid_t pid)
{
	char path[64], line[512];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/net/dev", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		n += strchr(line, ':') != NULL;  /* past the two header lines */
	fclose(f);
	return n;
}

/* helper (kiln-vmm, or QEMU under TCG), jailed by backend ops, running a
 * guest that halts: past its seccomp filter in every thread (so past
 * acquiring its files, memory, devices and, for QEMU, its connection to
 * the agent socket from inside the jail), as the slot's uid, with no
 * capabilities, no_new_privs, namespaces of its own and nothing of the
 * host's in its root but /usr. All gone at cleanup, and a second VM in
 * the same run folder (a relaunch) is jailed the same. */
static void jailed_guest(const struct executor_ops *ops, const char *helper, const char *accel, const char *tap)
{
	char dir[] = "/tmp/kiln-jail-unit-XXXXXX", run[PATH_MAX], path[PATH_MAX], tail[600];
	struct vm_spec s = { 0 };
	struct executor x;
	struct kiln_err e;
	struct stat st;
	int tasks = 0;
	bool kvm = !accel || !strcmp(accel, "kvm");

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* Named as job folders are (id.pid.x), so that two test runs at once
	 * never share a cgroup and jail_sweep takes what a killed one left. */
	snprintf(run, sizeof(run), "%s/1.%d.run", dir, (int)getpid());
	ck_assert_int_eq(mkdir(run, 0700), 0);
	snprintf(path, sizeof(path), "%s/vmlinux", dir);
	tiny_guest(path, "", 0);
	s.kernel = strdup(path);
	touch(dir, "r.ext4", "", 0644);
	ck_assert_int_eq(truncate(strcat(strcpy(path, dir), "/r.ext4"), 1 << 20), 0);
	s.rootfs = strdup(path);
	s.vcpus = 1;
	s.memory_mib = 64;
	s.run_dir = run;
	s.helper = helper;
	s.accel = accel;
	s.jail = true;
	s.jail_uid_base = JAIL_UID_BASE_DEFAULT;
	s.tap = tap;
	/* Twice in one run folder, as a job that relaunches its VM does. */
	for (int pass = 0; pass < 2; pass++) {
		executor_init(&x, ops, &s);
		ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
		ck_assert_int_eq(x.ops->start(&x, &e), KILN_OK);
		while (!all_filtered(x.pid, &tasks)) {
			int status;

			if (executor_wait(&x, 0, &status, &e) == KILN_OK) {
				executor_tail(&x, tail, sizeof(tail));
				ck_abort_msg("%s ended (%d) before it was filtered: %s", helper, status, tail);
			}
		}
		ck_assert_int_ge(tasks, 2);  /* at least a device thread and a vCPU */
		assert_jailed(&x);
		snprintf(path, sizeof(path), "/proc/%d/root/dev/kvm", (int)x.pid);
		if (kvm) {
			ck_assert_int_eq(stat(path, &st), 0);
			ck_assert(S_ISCHR(st.st_mode) && st.st_uid == x.jail.uid);
		} else {
			ck_assert_int_ne(access(path, F_OK), 0);
		}
		snprintf(path, sizeof(path), "/proc/%d/root/etc", (int)x.pid);
		ck_assert_int_ne(access(path, F_OK), 0);
		snprintf(path, sizeof(path), "/proc/%d/root/proc", (int)x.pid);
		ck_assert_int_ne(access(path, F_OK), 0);
		if (tap) {
			/* Its tap came as fd 3: its own netns has only lo. */
			char link[64] = "";

			ck_assert_int_eq(net_devices(x.pid), 1);
			snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)x.pid, EXECUTOR_TAP_FD);
			ck_assert_int_gt(readlink(path, link, sizeof(link) - 1), 0);
			ck_assert_str_eq(link, "/dev/net/tun");
		}
		if (ops == &executor_microvm) {
			/* kiln-vmm bound its vsock socket in /vm, which is <run>/vm here. */
			snprintf(path, sizeof(path), "%s/vm/v.sock", run);
			ck_assert_int_eq(stat(path, &st), 0);
			ck_assert(S_ISSOCK(st.st_mode) && st.st_uid == x.jail.uid);
			/* The drive rescan reaches it, though it is init of its pid
			 * namespace: SIGUSR1 is blocked for its signalfd, not ignored. */
			ck_assert_int_eq(x.ops->disks_changed(&x, &e), KILN_OK);
			ck_assert_int_eq(executor_wait(&x, 200, &tasks, &e), KILN_E_LIMIT);
		} else {
			/* QEMU is connected to the agent's socket. */
			ck_assert_int_eq(executor_stream(&x, 10000, &tasks, &e), KILN_OK);
		}

		executor_cancel(&x);
		executor_cleanup(&x);
		ck_assert_int_eq(x.pid, -1);
		ck_assert_int_eq(x.jail.n_cgroups, 0);
	}
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
	free((char *)s.kernel);
	free((char *)s.rootfs);
}

/* A persistent tap named name in a network namespace of this test's own
 * (nothing of it reaches the host's, and it goes with the namespace). */
static bool private_tap(const char *name)
{
	struct ifreq ifr = { 0 };
	int fd;

	if (unshare(CLONE_NEWNET) < 0 || (fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0)
		return false;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	ck_assert_int_eq(ioctl(fd, TUNSETIFF, &ifr), 0);
	ck_assert_int_eq(ioctl(fd, TUNSETPERSIST, 1), 0);
	close(fd);
	return true;
}

static bool can_jail(void)
{
	struct jail_host h;

	jail_probe(&h);
	if (geteuid() != 0 || !h.namespaces || !h.controllers) {
		fprintf(stderr, "jail tests skipped: need root, namespaces and cgroups (%s)\n", h.detail);
		return false;
	}
	test_vm_lock();
	return true;
}

START_TEST(jailed_kiln_vmm)
{
	const char *libexec = getenv("KILN_LIBEXEC_DIR");
	char vmm[PATH_MAX], path[PATH_MAX];

	snprintf(vmm, sizeof(vmm), "%s/kiln-vmm", libexec ? libexec : ".");
	if (!can_jail() || access(vmm, X_OK) || access("/dev/kvm", R_OK | W_OK)) {
		fprintf(stderr, "jailed_kiln_vmm: skipped: needs /dev/kvm and %s\n", vmm);
		return;
	}
	ck_assert_ptr_nonnull(realpath(vmm, path));
	jailed_guest(&executor_microvm, path, NULL, NULL);
	if (private_tap("kjt0"))
		jailed_guest(&executor_microvm, path, NULL, "kjt0");
}
END_TEST

/* The jailed kiln-vmm's way out: a guest that resets through the i8042
 * ("mov al, 0xfe; out 0x64, al") ends it with status 0, its devices
 * closed under its filters (no SIGSYS) and its socket file removed. */
START_TEST(jailed_kiln_vmm_exits_cleanly)
{
	const char *libexec = getenv("KILN_LIBEXEC_DIR");
	char dir[] = "/tmp/kiln-jail-unit-XXXXXX", vmm[PATH_MAX], helper[PATH_MAX], path[PATH_MAX], tail[600];
	struct vm_spec s = { 0 };
	struct executor x;
	struct kiln_err e;
	int status;

	snprintf(vmm, sizeof(vmm), "%s/kiln-vmm", libexec ? libexec : ".");
	if (!can_jail() || access(vmm, X_OK) || access("/dev/kvm", R_OK | W_OK))
		return;
	ck_assert_ptr_nonnull(realpath(vmm, helper));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vmlinux", dir);
	tiny_guest(path, "\xb0\xfe\xe6\x64", 4);
	s.kernel = strdup(path);
	touch(dir, "r.ext4", "", 0644);
	ck_assert_int_eq(truncate(strcat(strcpy(path, dir), "/r.ext4"), 1 << 20), 0);
	s.rootfs = strdup(path);
	s.vcpus = 1;
	s.memory_mib = 64;
	s.run_dir = dir;
	s.helper = helper;
	s.jail = true;
	s.jail_uid_base = JAIL_UID_BASE_DEFAULT;
	executor_init(&x, &executor_microvm, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	ck_assert_int_eq(x.ops->start(&x, &e), KILN_OK);
	ck_assert_int_eq(executor_wait(&x, 20000, &status, &e), KILN_OK);
	executor_tail(&x, tail, sizeof(tail));
	ck_assert_msg(status == 0, "kiln-vmm ended with %d: %s", status, tail);
	ck_assert_int_ne(access(x.vsock_path, F_OK), 0);
	executor_cleanup(&x);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
	free((char *)s.kernel);
	free((char *)s.rootfs);
}
END_TEST

START_TEST(jailed_qemu)
{
	char qemu[PATH_MAX];

	if (!can_jail() || !kiln_which(NULL, "qemu-system-x86_64", qemu, sizeof(qemu))) {
		fprintf(stderr, "jailed_qemu: skipped: needs qemu-system-x86_64\n");
		return;
	}
	jailed_guest(&executor_qemu, qemu, "tcg", NULL);
	if (private_tap("kjt0"))
		jailed_guest(&executor_qemu, qemu, "tcg", "kjt0");
}
END_TEST

/* A jail that cannot be built fails start with its reason, at once, and
 * leaves nothing. */
START_TEST(jail_failure_is_one_line)
{
	char dir[] = "/tmp/kiln-jail-unit-XXXXXX", path[PATH_MAX];
	struct vm_spec s = { 0 };
	struct jail_host h;
	struct executor x;
	struct kiln_err e;

	jail_probe(&h);
	if (geteuid() != 0 || !h.namespaces || !h.controllers)
		return;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	s.kernel = "/nonexistent/kernel";
	s.rootfs = "/bin/sh";
	s.vcpus = 1;
	s.memory_mib = 256;
	s.run_dir = dir;
	s.helper = "/bin/sh";
	s.accel = "tcg";
	s.jail = true;
	s.jail_uid_base = JAIL_UID_BASE_DEFAULT;
	executor_init(&x, &executor_qemu, &s);
	ck_assert_int_eq(x.ops->prepare(&x, &e), KILN_OK);
	ck_assert_int_eq(x.ops->start(&x, &e), KILN_E_EXEC);
	ck_assert_ptr_nonnull(strstr(e.msg, "jail: stat /nonexistent/kernel"));
	ck_assert_ptr_null(strchr(e.msg, '\n'));
	ck_assert_int_eq(x.pid, -1);
	executor_cleanup(&x);
	ck_assert_int_eq(x.jail.n_cgroups, 0);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
}
END_TEST

/* A jailed VMM dies with kiln, SIGKILL included, though its uid switch
 * cleared the parent-death signal it started with. */
START_TEST(jailed_vmm_dies_with_kiln)
{
	const char *libexec = getenv("KILN_LIBEXEC_DIR");
	char dir[] = "/tmp/kiln-jail-unit-XXXXXX", path[PATH_MAX], vmm_path[PATH_MAX], helper[PATH_MAX];
	struct vm_spec s = { 0 };
	struct executor x;
	struct kiln_err e;
	int pipefd[2];
	pid_t kiln, vmm = -1;

	/* kiln-vmm, which nothing but a signal ends while its guest halts. */
	snprintf(vmm_path, sizeof(vmm_path), "%s/kiln-vmm", libexec ? libexec : ".");
	if (!can_jail() || access(vmm_path, X_OK) || access("/dev/kvm", R_OK | W_OK))
		return;
	ck_assert_ptr_nonnull(realpath(vmm_path, helper));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vmlinux", dir);
	tiny_guest(path, "", 0);
	s.kernel = strdup(path);
	touch(dir, "r.ext4", "", 0644);
	ck_assert_int_eq(truncate(strcat(strcpy(path, dir), "/r.ext4"), 1 << 20), 0);
	s.rootfs = strdup(path);
	s.vcpus = 1;
	s.memory_mib = 64;
	s.run_dir = dir;
	s.helper = helper;
	s.jail = true;
	s.jail_uid_base = JAIL_UID_BASE_DEFAULT;
	ck_assert_int_eq(pipe(pipefd), 0);
	kiln = fork();
	ck_assert_int_ge(kiln, 0);
	if (kiln == 0) {
		executor_init(&x, &executor_microvm, &s);
		if (x.ops->prepare(&x, &e) || x.ops->start(&x, &e))
			_exit(1);
		if (write(pipefd[1], &x.pid, sizeof(x.pid)) != sizeof(x.pid))
			_exit(1);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(pipefd[0], &vmm, sizeof(vmm)), sizeof(vmm));
	ck_assert_int_gt(vmm, 0);
	ck_assert_int_eq(kill(kiln, SIGKILL), 0);
	ck_assert_int_eq(waitpid(kiln, NULL, 0), kiln);
	/* Gone (reaped by whoever inherited it), or a zombie on its way. */
	for (;;) {
		char state[256] = "";

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)vmm);
		FILE *f = fopen(path, "r");
		if (!f)
			break;
		if (!fgets(state, sizeof(state), f))
			state[0] = '\0';
		fclose(f);
		if (strstr(state, ") Z ") || strstr(state, ") X "))
			break;
	}
	jail_sweep();
	/* The sweep takes only kiln's own job folders' cgroups (<job>.<pid>.<x>):
	 * this test's, named after its folder, go here. */
	snprintf(path, sizeof(path),
		 "for d in /sys/fs/cgroup/kiln/%1$s /sys/fs/cgroup/*/kiln/%1$s; do [ -d \"$d\" ] || continue;"
		 " for i in $(seq 50); do rmdir \"$d\" 2>/dev/null && break; sleep 0.1; done; ! [ -d \"$d\" ] || exit 1;"
		 " done; rm -rf %2$s",
		 strrchr(dir, '/') + 1, dir);
	ck_assert_int_eq(system(path), 0);
	free((char *)s.kernel);
	free((char *)s.rootfs);
}
END_TEST

/* A dead kiln's VM cgroups go at the next sweep; a live kiln's stay. */
START_TEST(sweep_removes_dead_kilns_cgroups)
{
	char dead[PATH_MAX], live[PATH_MAX], name[64];
	const char *base = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "/sys/fs/cgroup/kiln"
										   : "/sys/fs/cgroup/pids/kiln";
	pid_t pid;

	if (!can_jail())
		return;
	pid = fork();
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	mkdir(base, 0755);
	snprintf(name, sizeof(name), "7.%d.AbCdEf", (int)pid);
	snprintf(dead, sizeof(dead), "%s/%s", base, name);
	snprintf(live, sizeof(live), "%s/7.%d.AbCdEf", base, (int)getpid());
	ck_assert_int_eq(mkdir(dead, 0755), 0);
	ck_assert_int_eq(mkdir(live, 0755), 0);
	jail_sweep();
	ck_assert_int_ne(access(dead, F_OK), 0);
	ck_assert_int_eq(access(live, F_OK), 0);
	ck_assert_int_eq(rmdir(live), 0);
}
END_TEST

Suite *executor_suite(void)
{
	Suite *s = suite_create("executor");
	TCase *tc = tcase_create("shared");

	tcase_add_test(tc, cmdline_words);
	tcase_add_test(tc, cmdline_command);
	tcase_add_test(tc, find_by_name);
	tcase_add_test(tc, pick_from_facts);
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
	/* These take the host-wide VM test lock, which a VM shell test of
	 * make -j check may hold for minutes: the wait is not the test's. */
	tc = tcase_create("jailed");
	tcase_set_timeout(tc, 1800);
	tcase_add_test(tc, jailed_vmm);
	tcase_add_test(tc, jailed_spawn_beside_new_threads);
	tcase_add_test(tc, jail_failure_is_one_line);
	tcase_add_test(tc, jailed_kiln_vmm);
	tcase_add_test(tc, jailed_kiln_vmm_exits_cleanly);
	tcase_add_test(tc, jailed_qemu);
	tcase_add_test(tc, sweep_removes_dead_kilns_cgroups);
	tcase_add_test(tc, jailed_vmm_dies_with_kiln);
	suite_add_tcase(s, tc);
	return s;
}
