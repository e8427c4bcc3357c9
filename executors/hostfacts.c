#include "executors/hostfacts.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/spawn.h"

static bool exists(const char *root, const char *path)
{
	char buf[PATH_MAX];
	struct stat st;

	snprintf(buf, sizeof(buf), "%s%s", root, path);
	return stat(buf, &st) == 0;
}

/* Whether the first "flags" line of cpuinfo lists flag. */
static bool cpu_flag(const char *root, const char *flag)
{
	char path[PATH_MAX], line[8192];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/proc/cpuinfo", root);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *tok, *save = NULL;

		if (strncmp(line, "flags", 5) != 0)
			continue;
		for (tok = strtok_r(strchr(line, ':') ? strchr(line, ':') + 1 : line, " \t\n", &save); tok;
		     tok = strtok_r(NULL, " \t\n", &save))
			if (!strcmp(tok, flag))
				found = true;
		break;
	}
	fclose(f);
	return found;
}

const char *hostfacts_flavour_name(enum kvm_flavour fl)
{
	switch (fl) {
	case KVM_FLAVOUR_NONE: return "none";
	case KVM_FLAVOUR_VMX: return "VMX (kvm_intel)";
	case KVM_FLAVOUR_SVM: return "SVM (kvm_amd)";
	case KVM_FLAVOUR_PVM: return "PVM (kvm_pvm)";
	case KVM_FLAVOUR_UNKNOWN: return "unknown";
	}
	return "unknown";
}

bool hostfacts_stock_kernels(const struct host_facts *f)
{
	return f->kvm_dev && f->kvm_rw && (f->flavour == KVM_FLAVOUR_VMX || f->flavour == KVM_FLAVOUR_SVM);
}

void hostfacts_probe(const char *root, const char *libexec_dir, struct host_facts *f)
{
	char path[PATH_MAX];

	memset(f, 0, sizeof(*f));
	f->kvm_dev = exists(root, "/dev/kvm");
	if (f->kvm_dev) {
		if (!*root) {
			int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
			f->kvm_rw = fd >= 0;
			if (fd >= 0)
				close(fd);
		} else {
			snprintf(path, sizeof(path), "%s/dev/kvm", root);
			f->kvm_rw = access(path, R_OK | W_OK) == 0;
		}
	}
	/* PVM replaces the hardware module, so it wins when loaded. */
	if (exists(root, "/sys/module/kvm_pvm"))
		f->flavour = KVM_FLAVOUR_PVM;
	else if (exists(root, "/sys/module/kvm_intel") && cpu_flag(root, "vmx"))
		f->flavour = KVM_FLAVOUR_VMX;
	else if (exists(root, "/sys/module/kvm_amd") && cpu_flag(root, "svm"))
		f->flavour = KVM_FLAVOUR_SVM;
	else if (f->kvm_dev)
		f->flavour = KVM_FLAVOUR_UNKNOWN;
	f->tun = exists(root, "/dev/net/tun");
	if (exists(root, "/sys/fs/cgroup/cgroup.controllers"))
		f->cgroup = 2;
	else if (exists(root, "/sys/fs/cgroup/unified/cgroup.controllers"))
		f->cgroup = 3;
	else if (exists(root, "/sys/fs/cgroup/memory") || exists(root, "/sys/fs/cgroup/cpu"))
		f->cgroup = 1;
	f->seccomp = exists(root, "/proc/sys/kernel/seccomp/actions_avail");
	if (!kiln_which(root, "qemu-system-x86_64", f->qemu, sizeof(f->qemu)))
		f->qemu[0] = '\0';
	snprintf(path, sizeof(path), "%s%s/kiln-vmm", root, libexec_dir);
	if (access(path, X_OK) == 0)
		snprintf(f->vmm, sizeof(f->vmm), "%s", path);
}
