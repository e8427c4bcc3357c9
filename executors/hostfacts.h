/* What this host offers the executors: KVM and its flavour, QEMU, kiln-vmm,
 * and the kernel features a VM's surroundings use. Read once (at start-up:
 * opening /dev/kvm and searching PATH is not free) and passed on; judging
 * the facts is for executor_pick (executors/executor.h) and `kiln doctor`. */
#ifndef KILN_HOSTFACTS_H
#define KILN_HOSTFACTS_H

#include <limits.h>
#include <stdbool.h>

enum kvm_flavour { KVM_FLAVOUR_NONE, KVM_FLAVOUR_VMX, KVM_FLAVOUR_SVM, KVM_FLAVOUR_PVM, KVM_FLAVOUR_UNKNOWN };

struct host_facts {
	bool kvm_dev;             /* /dev/kvm exists */
	bool kvm_rw;              /* and opens read-write */
	enum kvm_flavour flavour; /* which KVM module backs it */
	bool tun;                 /* /dev/net/tun exists */
	int cgroup;               /* 0 none, 1 v1, 2 v2, 3 hybrid */
	bool seccomp;             /* seccomp filters available */
	char qemu[PATH_MAX];      /* qemu-system-x86_64, "" when missing */
	char vmm[PATH_MAX];       /* kiln-vmm, "" when missing */
};

/* Read the host's facts, with every path under root ("" for the real host;
 * a fixture tree in tests) and kiln-vmm looked for in libexec_dir. Device
 * opening is only tried when root is "". */
void hostfacts_probe(const char *root, const char *libexec_dir, struct host_facts *f);

/* Whether KVM here runs unmodified guest kernels (VMX or SVM, usable). */
bool hostfacts_stock_kernels(const struct host_facts *f);

/* "VMX (kvm_intel)" and the like, for messages. */
const char *hostfacts_flavour_name(enum kvm_flavour fl);

#endif
