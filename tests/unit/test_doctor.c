#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/doctor.h"
#include "tests/unit/suites.h"

/* Probe a fixture tree with the images as given, judge, and print. */
static int run_fixture(const char *name, bool images, struct doctor_facts *f, struct doctor_report *r,
		       char *text, size_t size)
{
	struct host_facts host;
	char root[512];
	FILE *out;
	int status;

	snprintf(root, sizeof(root), "%s", fixture("doctor/"));
	strncat(root, name, sizeof(root) - strlen(root) - 1);
	setenv("PATH", "/usr/bin:/bin", 1);
	hostfacts_probe(root, "/usr/libexec/kiln", &host);
	doctor_facts_init(&host, f);
	f->have_kernel = f->have_rootfs = images;
	snprintf(f->images, sizeof(f->images), "%s", images ? "kernel, debian" : "");
	doctor_judge(f, r);
	out = fmemopen(text, size, "w");
	status = doctor_print(r, out);
	fclose(out);
	return status;
}

START_TEST(pvm_host_uses_qemu)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";

	ck_assert_int_eq(run_fixture("pvm", true, &f, &r, text, sizeof(text)), 0);
	ck_assert_int_eq(f.host.flavour, KVM_FLAVOUR_PVM);
	ck_assert(f.host.kvm_dev && f.host.tun && f.host.seccomp);
	ck_assert_int_eq(f.host.cgroup, 2);
	ck_assert(!r.stock_kernels_boot);
	ck_assert(!r.microvm_ok);
	ck_assert(r.qemu_ok);
	ck_assert_str_eq(r.executor, "qemu");
	ck_assert_str_eq(r.qemu_accel, "tcg");
	ck_assert_msg(strstr(text, "PVM (kvm_pvm)") && strstr(text, "KVM sandbox") &&
			      strstr(text, "kiln will use: qemu (TCG)"),
		      "report: %s", text);
}
END_TEST

START_TEST(svm_host_uses_microvm)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";

	ck_assert_int_eq(run_fixture("svm", true, &f, &r, text, sizeof(text)), 0);
	ck_assert_int_eq(f.host.flavour, KVM_FLAVOUR_SVM);
	ck_assert(r.stock_kernels_boot);
	ck_assert(r.microvm_ok);
	ck_assert_str_eq(r.executor, "microvm");
	ck_assert_str_eq(r.qemu_accel, "kvm");
	ck_assert_msg(strstr(text, "stock guest kernels can boot") != NULL, "report: %s", text);
}
END_TEST

START_TEST(svm_host_without_images_cannot_run)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";

	ck_assert_int_eq(run_fixture("svm", false, &f, &r, text, sizeof(text)), 1);
	ck_assert_ptr_null(r.executor);
	ck_assert_msg(strstr(text, "fix: kiln images build kernel") != NULL, "report: %s", text);
}
END_TEST

START_TEST(vmx_cpu_without_module)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";

	ck_assert_int_eq(run_fixture("vmx-unloaded", true, &f, &r, text, sizeof(text)), 0);
	ck_assert_int_eq(f.host.flavour, KVM_FLAVOUR_NONE);
	ck_assert(!f.host.kvm_dev && !f.host.tun && !f.host.seccomp);
	ck_assert_int_eq(f.host.cgroup, 1);
	ck_assert_str_eq(r.executor, "qemu");
	ck_assert_msg(strstr(text, "/dev/kvm is missing") && strstr(text, "fix: modprobe tun") &&
			      strstr(text, "cgroup v1"),
		      "report: %s", text);
}
END_TEST

START_TEST(bare_host_fails)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";
	int i;

	ck_assert_int_eq(run_fixture("bare", true, &f, &r, text, sizeof(text)), 1);
	ck_assert_ptr_null(r.executor);
	ck_assert_msg(strstr(text, "fix: apt-get install qemu-system-x86") != NULL, "report: %s", text);
	/* Every problem carries a fix. */
	for (i = 0; i < r.n; i++)
		if (r.checks[i].status != DOCTOR_OK)
			ck_assert_msg(r.checks[i].fix[0], "%s has no fix", r.checks[i].what);
}
END_TEST

START_TEST(hybrid_cgroups)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";

	run_fixture("hybrid", true, &f, &r, text, sizeof(text));
	ck_assert_int_eq(f.host.cgroup, 3);
	ck_assert_msg(strstr(text, "ok    cgroup v1 with v2 alongside") != NULL, "report: %s", text);
}
END_TEST

/* The jail's line for facts f (an SVM host with images), and the exit
 * status doctor_print gives. */
static int judge_jail_facts(struct doctor_facts *f, char *text, size_t size)
{
	struct doctor_report r;
	FILE *out;
	int status;

	doctor_judge(f, &r);
	out = fmemopen(text, size, "w");
	status = doctor_print(&r, out);
	fclose(out);
	return status;
}

/* A host that can jail says so; one that cannot fails (every job would),
 * naming what is missing and the opt-out; jail: false is a warning. */
START_TEST(jail_report)
{
	struct doctor_facts f;
	struct doctor_report r;
	char text[8192] = "";

	run_fixture("svm", true, &f, &r, text, sizeof(text));
	ck_assert_ptr_null(strstr(text, " jail:"));  /* not probed: no line */
	f.jail_probed = f.jail_wanted = f.jail_root = f.jail_ns = f.jail_controllers = true;
	f.jail_cgroup = 2;
	f.jail_uid_base = 900000;
	f.jail_uid_taken = -1;
	ck_assert_int_eq(judge_jail_facts(&f, text, sizeof(text)), 0);
	ck_assert_msg(strstr(text, "ok    jail: each VMM in its own mount, pid, ipc, uts and net namespaces, a cgroup v2"),
		      "report: %s", text);

	f.jail_ns = false;
	ck_assert_int_eq(judge_jail_facts(&f, text, sizeof(text)), 1);
	ck_assert_msg(strstr(text, "FAIL  jail: cannot jail VMMs here: new mount, pid, ipc, uts and network namespaces"),
		      "report: %s", text);
	ck_assert_ptr_nonnull(strstr(text, "or set jail: false"));
	ck_assert_ptr_nonnull(strstr(text, "kiln cannot run jobs"));

	f.jail_ns = true;
	f.jail_controllers = false;
	ck_assert_int_eq(judge_jail_facts(&f, text, sizeof(text)), 1);
	ck_assert_ptr_nonnull(strstr(text, "no memory, cpu and pids controllers"));

	f.jail_controllers = true;
	f.jail_uid_taken = 900007;
	ck_assert_int_eq(judge_jail_facts(&f, text, sizeof(text)), 1);
	ck_assert_ptr_nonnull(strstr(text, "uid/gid 900007 of the VM slots (900000..901023) belongs to someone"));

	f.jail_wanted = false;
	ck_assert_int_eq(judge_jail_facts(&f, text, sizeof(text)), 0);
	ck_assert_ptr_nonnull(strstr(text, "warn  jail: off (jail: false)"));
}
END_TEST

Suite *doctor_suite(void)
{
	Suite *s = suite_create("doctor");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, pvm_host_uses_qemu);
	tcase_add_test(tc, svm_host_uses_microvm);
	tcase_add_test(tc, svm_host_without_images_cannot_run);
	tcase_add_test(tc, vmx_cpu_without_module);
	tcase_add_test(tc, bare_host_fails);
	tcase_add_test(tc, hybrid_cgroups);
	tcase_add_test(tc, jail_report);
	suite_add_tcase(s, tc);
	return s;
}
