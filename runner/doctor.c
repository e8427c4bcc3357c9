#include "runner/doctor.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executors/executor.h"
#include "executors/jail.h"
#include "job/images.h"
#include "job/manifest.h"
#include "runner/config.h"

void doctor_facts_init(const struct host_facts *host, struct doctor_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->host = *host;
}

void doctor_probe_jail(bool wanted, long uid_base, struct doctor_facts *f)
{
	struct jail_host h;
	long u;

	jail_probe(&h);
	f->jail_probed = true;
	f->jail_wanted = wanted;
	f->jail_root = geteuid() == 0;
	f->jail_ns = h.namespaces;
	f->jail_cgroup = h.cgroup;
	f->jail_controllers = h.controllers;
	f->jail_uid_base = uid_base;
	f->jail_uid_taken = -1;
	for (u = uid_base; u < uid_base + JAIL_SLOTS && f->jail_uid_taken < 0; u++)
		if (getpwuid((uid_t)u) || getgrgid((gid_t)u))
			f->jail_uid_taken = u;
}

void doctor_probe_images(const struct images_ctx *ctx, const char *default_image, struct doctor_facts *f)
{
	char **names = NULL;
	size_t n = 0, i;

	f->images[0] = '\0';
	if (images_recipes(ctx, &names, &n, NULL))
		return;
	for (i = 0; i < n; i++) {
		struct manifest m;
		size_t len = strlen(f->images);

		if (images_manifest(ctx, names[i], &m, NULL) == KILN_OK) {
			snprintf(f->images + len, sizeof(f->images) - len, "%s%s", len ? ", " : "", names[i]);
			if (!strcmp(m.kind, "kernel"))
				f->have_kernel = true;
			if (!strcmp(names[i], default_image))
				f->have_rootfs = true;
			manifest_free(&m);
		}
		free(names[i]);
	}
	free(names);
}

/* One store: counted, and its failure (the first) or bucket noted. */
static void probe_store(const struct kiln_cache_config *cc, const char *who, struct doctor_facts *f)
{
	struct cache_store s = { .cfg = cc };
	char why[256];
	size_t len = strlen(f->cache_detail);

	if (!cc->type || strcmp(cc->type, "s3"))
		return;
	f->cache_s3++;
	if (cache_store_check(&s, why, sizeof(why))) {
		if (!f->cache_failed)
			snprintf(f->cache_detail + len, sizeof(f->cache_detail) - len, "%s%s/%s", len ? ", " : "",
				 cc->s3.server_address, cc->s3.bucket_name);
		return;
	}
	if (!f->cache_failed++)
		snprintf(f->cache_detail, sizeof(f->cache_detail), "%s: %s", who, why);
}

void doctor_probe_cache(const struct kiln_config *cfg, struct doctor_facts *f)
{
	size_t i;

	f->cache_s3 = f->cache_failed = 0;
	f->cache_detail[0] = '\0';
	probe_store(&cfg->default_cache, "defaults.cache", f);
	for (i = 0; i < cfg->n_runners; i++) {
		char who[96];

		snprintf(who, sizeof(who), "runners[%zu].cache", i);
		probe_store(&cfg->runners[i].cache, who, f);
	}
}

static struct doctor_check *add(struct doctor_report *r, const char *what, enum doctor_status st,
				const char *detail, const char *fix)
{
	struct doctor_check *c = &r->checks[r->n++];

	c->what = what;
	c->status = st;
	snprintf(c->detail, sizeof(c->detail), "%s", detail);
	snprintf(c->fix, sizeof(c->fix), "%s", fix ? fix : "");
	return c;
}

/* The jail's line: what each VMM runs in, or what keeps it from that. */
static void judge_jail(const struct doctor_facts *f, struct doctor_report *r)
{
	char buf[320];

	if (!f->jail_probed)
		return;
	if (!f->jail_wanted) {
		add(r, "jail", DOCTOR_WARN, "jail: off (jail: false): VMMs run as root with the host's view",
		    "remove jail: false from the configuration");
		return;
	}
	if (!f->jail_root || !f->jail_ns || !f->jail_controllers) {
		snprintf(buf, sizeof(buf), "jail: cannot jail VMMs here: %s",
			 !f->jail_root ? "kiln is not root"
			 : !f->jail_ns ? "new mount, pid, ipc, uts and network namespaces cannot be made"
			 : f->jail_cgroup == 2 ? "the cgroup v2 root offers no memory, cpu and pids controllers"
					       : "no cgroup v1 memory, cpu and pids hierarchies or cgroup v2");
		add(r, "jail", DOCTOR_FAIL, buf,
		    !f->jail_root ? "run kiln as root, or set jail: false (VMMs then run unjailed)"
		    : !f->jail_ns ? "use a kernel with CONFIG_NAMESPACES (and no sysctl forbidding them), or set jail: false"
				  : "mount cgroup2 with those controllers (or v1 hierarchies), or set jail: false");
		return;
	}
	if (f->jail_uid_taken >= 0) {
		snprintf(buf, sizeof(buf), "jail: uid/gid %ld of the VM slots (%ld..%ld) belongs to someone", f->jail_uid_taken,
			 f->jail_uid_base, f->jail_uid_base + JAIL_SLOTS - 1);
		add(r, "jail", DOCTOR_FAIL, buf, "set jail_uid_base to the start of a free range of 1024 ids");
		return;
	}
	snprintf(buf, sizeof(buf),
		 "jail: each VMM in its own mount, pid, ipc, uts and net namespaces, a cgroup %s (memory, cpu, pids), "
		 "uid %ld+slot, no capabilities, no_new_privs, seccomp",
		 f->jail_cgroup == 2 ? "v2" : "v1", f->jail_uid_base);
	add(r, "jail", DOCTOR_OK, buf, NULL);
}

void doctor_judge(const struct doctor_facts *df, struct doctor_report *r)
{
	const struct host_facts *f = &df->host;
	struct executor_choice choice;
	struct kiln_err ignored;
	char buf[320];
	bool hw = f->flavour == KVM_FLAVOUR_VMX || f->flavour == KVM_FLAVOUR_SVM;
	/* A jail that cannot be built fails every job: none can run. */
	bool jail_ok = !df->jail_probed || !df->jail_wanted ||
		       (df->jail_root && df->jail_ns && df->jail_controllers && df->jail_uid_taken < 0);
	bool images_ok = df->have_kernel && df->have_rootfs;

	memset(r, 0, sizeof(*r));
	r->stock_kernels_boot = hostfacts_stock_kernels(f);

	if (!f->kvm_dev) {
		add(r, "kvm", DOCTOR_WARN, "/dev/kvm is missing: no hardware virtualisation",
		    "enable VT-x/AMD-V (or nested virtualisation) and load kvm_intel or kvm_amd; until then jobs run under QEMU TCG");
	} else if (!f->kvm_rw) {
		add(r, "kvm", DOCTOR_WARN, "/dev/kvm exists but cannot be opened read-write",
		    "run kiln as root or add its user to the 'kvm' group");
	} else if (hw) {
		snprintf(buf, sizeof(buf), "/dev/kvm: %s; stock guest kernels can boot",
			 hostfacts_flavour_name(f->flavour));
		add(r, "kvm", DOCTOR_OK, buf, NULL);
	} else if (f->flavour == KVM_FLAVOUR_PVM) {
		add(r, "kvm", DOCTOR_WARN,
		    "/dev/kvm: PVM (kvm_pvm): only PVM-patched guest kernels boot, stock kernels spin in KVM_RUN",
		    "stock kernels need the KVM sandbox (tests/kvm-sandbox) or the qemu executor (TCG); kiln uses qemu here");
	} else {
		add(r, "kvm", DOCTOR_WARN, "/dev/kvm: no kvm_intel, kvm_amd or kvm_pvm module with a matching CPU flag",
		    "load kvm_intel or kvm_amd (modprobe kvm_amd) on a CPU with vmx or svm");
	}
	add(r, "tun", f->tun ? DOCTOR_OK : DOCTOR_WARN,
	    f->tun ? "/dev/net/tun: present (job networking)" : "/dev/net/tun is missing: jobs get no network",
	    f->tun ? NULL : "modprobe tun");
	if (f->cgroup == 2)
		add(r, "cgroup", DOCTOR_OK, "cgroup v2 (unified)", NULL);
	else if (f->cgroup == 3)
		add(r, "cgroup", DOCTOR_OK, "cgroup v1 with v2 alongside (hybrid): fine for jobs", NULL);
	else if (f->cgroup == 1)
		add(r, "cgroup", DOCTOR_WARN, "cgroup v1 only: KVM_CREATE_VM can be slow under v1",
		    "boot with systemd.unified_cgroup_hierarchy=1");
	else
		add(r, "cgroup", DOCTOR_WARN, "no cgroup filesystem at /sys/fs/cgroup",
		    "mount -t cgroup2 none /sys/fs/cgroup");
	add(r, "seccomp", f->seccomp ? DOCTOR_OK : DOCTOR_WARN,
	    f->seccomp ? "seccomp filters: available (kiln-vmm jails itself)"
		       : "seccomp filters unavailable: kiln-vmm cannot jail itself",
	    f->seccomp ? NULL : "use a kernel built with CONFIG_SECCOMP_FILTER");
	if (f->qemu[0]) {
		snprintf(buf, sizeof(buf), "qemu: %s", f->qemu);
		add(r, "qemu", DOCTOR_OK, buf, NULL);
	} else {
		add(r, "qemu", DOCTOR_WARN, "qemu-system-x86_64 not found: no qemu executor",
		    "apt-get install qemu-system-x86");
	}
	if (f->vmm[0]) {
		snprintf(buf, sizeof(buf), "kiln-vmm: %s", f->vmm);
		add(r, "kiln-vmm", DOCTOR_OK, buf, NULL);
	} else {
		add(r, "kiln-vmm", DOCTOR_WARN, "kiln-vmm not found: no microvm executor",
		    "build and install kiln (make install), or set KILN_LIBEXEC_DIR");
	}
	if (images_ok) {
		snprintf(buf, sizeof(buf), "images: %s", df->images);
		add(r, "images", DOCTOR_OK, buf, NULL);
	} else {
		snprintf(buf, sizeof(buf), "images: %s%s", df->images[0] ? df->images : "none built",
			 !df->have_kernel ? "; no guest kernel" : "; no default rootfs");
		add(r, "images", DOCTOR_FAIL, buf, "kiln images build kernel && kiln images build debian");
	}

	judge_jail(df, r);
	/* A store that does not answer is a warning: jobs fall back to the
	 * local cache (cache/store.h). */
	if (df->cache_failed) {
		snprintf(buf, sizeof(buf), "S3 cache: %s", df->cache_detail);
		add(r, "cache", DOCTOR_WARN, buf,
		    "check server_address, bucket_name and the credentials in the cache: section");
	} else if (df->cache_s3) {
		snprintf(buf, sizeof(buf), "S3 cache: bucket reachable (%s)", df->cache_detail);
		add(r, "cache", DOCTOR_OK, buf, NULL);
	}

	r->microvm_ok = jail_ok && images_ok && executor_pick("microvm", f, &choice, &ignored) == KILN_OK;
	r->qemu_ok = jail_ok && images_ok && executor_pick("qemu", f, &choice, &ignored) == KILN_OK;
	r->qemu_accel = r->stock_kernels_boot ? "kvm" : "tcg";
	r->executor = NULL;
	if (jail_ok && images_ok && executor_pick("auto", f, &choice, &ignored) == KILN_OK)
		r->executor = choice.ops->name;
}

int doctor_print(const struct doctor_report *r, FILE *out)
{
	static const char *const tags[] = { "ok  ", "warn", "FAIL" };
	int i;

	for (i = 0; i < r->n; i++) {
		const struct doctor_check *c = &r->checks[i];

		fprintf(out, "%s  %s\n", tags[c->status], c->detail);
		if (c->fix[0])
			fprintf(out, "      fix: %s\n", c->fix);
	}
	fprintf(out, "executors: microvm %s, qemu %s\n", r->microvm_ok ? "yes" : "no",
		r->qemu_ok ? (r->stock_kernels_boot ? "yes (KVM)" : "yes (TCG)") : "no");
	if (!r->executor) {
		fprintf(out, "kiln cannot run jobs on this host: fix the problems above\n");
		return 1;
	}
	fprintf(out, "kiln will use: %s%s\n", r->executor,
		!strcmp(r->executor, "qemu") ? (r->stock_kernels_boot ? " (KVM)" : " (TCG)") : "");
	return 0;
}
