/* Booting a guest image and running one command in it, with its console
 * streamed to stdout: the smoke test of an image, used by the demo until the
 * job path exists. */
#ifndef KILN_BOOT_H
#define KILN_BOOT_H

#include "lib/result.h"

struct boot_opts {
	const char *kernel;    /* kernel image file (bzImage/vmlinuz) */
	const char *initrd;    /* initrd file or NULL */
	const char *rootfs;    /* ext4 root image, used copy-on-write */
	const char *qemu;      /* qemu-system-x86_64 path */
	const char *accel;     /* "kvm" or "tcg" */
	int vcpus;
	int memory_mib;
	char *const *command;  /* argv run by kiln-agent in the guest */
};

/* Build the QEMU command line into argv (at most max entries, NULL at the
 * end), with text storage in buf. Arguments containing '"' or control
 * characters cannot travel on a kernel command line and are refused. */
enum kiln_rc boot_qemu_argv(const struct boot_opts *o, char **argv, int max, char *buf, size_t size,
			    struct kiln_err *e);

/* Boot, stream the console, and put the guest command's exit status in
 * *status (from the agent's last line). */
enum kiln_rc boot_run(const struct boot_opts *o, int *status, struct kiln_err *e);

#endif
