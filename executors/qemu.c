/* The qemu backend: QEMU's microvm machine (KVM when it can boot stock
 * guests, TCG otherwise) with the agent on a virtio-console port, since
 * QEMU offers vsock only through the host's vhost-vsock. */
#include <stdio.h>
#include <string.h>

#include "executors/executor.h"

#define MAX_ARGS 64

static enum kiln_rc qemu_prepare(struct executor *x, struct kiln_err *e)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/agent.sock", x->spec.run_dir);
	return executor_listen(x, path, e);
}

static enum kiln_rc qemu_start(struct executor *x, struct kiln_err *e)
{
	const struct vm_spec *s = &x->spec;
	char cmdline[2048], machine[96], mem[16], smp[16], serial[PATH_MAX + 8], chardev[PATH_MAX + 32];
	char root[PATH_MAX + 128], ws[PATH_MAX + 128], netdev[128];
	char *argv[MAX_ARGS];
	int n = 0;

	if (strchr(s->rootfs, ',') || (s->workspace && strchr(s->workspace, ',')) || strchr(s->run_dir, ','))
		return kiln_fail(e, KILN_E_INVALID, "QEMU cannot take paths containing a comma");
	executor_cmdline(s, "virtio-console", cmdline, sizeof(cmdline));
	/* The machine has a CMOS RTC. Without one every port reads 0xff, the
	 * RTC's "update in progress" bit never clears, and Linux polls it for
	 * a second or more at boot: for the wall clock under TCG (no
	 * kvm-clock), and in the rtc_cmos driver of kernels that have it
	 * (Debian's, 4 s in the sandbox with KVM). */
	snprintf(machine, sizeof(machine), "microvm,accel=%s,x-option-roms=off,rtc=on", s->accel);
	snprintf(mem, sizeof(mem), "%d", s->memory_mib);
	snprintf(smp, sizeof(smp), "%d", s->vcpus);
	snprintf(serial, sizeof(serial), "file:%s", x->console_path);
	snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s", x->listen_path);
	/* snapshot=on: a private temporary overlay; the image is never written.
	 * werror=report: a write that fails (the host's disk full) is an I/O
	 * error for the guest; QEMU's default stops the VM on ENOSPC, and the
	 * job would hang until its timeout. */
	snprintf(root, sizeof(root), "id=root,file=%s,format=raw,if=none,snapshot=on,werror=report,rerror=report",
		 s->rootfs);

	argv[n++] = (char *)s->helper;
	argv[n++] = "-M";
	argv[n++] = machine;
	argv[n++] = "-cpu";
	argv[n++] = strcmp(s->accel, "kvm") ? "max" : "host";
	argv[n++] = "-m";
	argv[n++] = mem;
	argv[n++] = "-smp";
	argv[n++] = smp;
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-no-reboot";
	argv[n++] = "-serial";
	argv[n++] = serial;
	argv[n++] = "-kernel";
	argv[n++] = (char *)s->kernel;
	if (s->initrd) {
		argv[n++] = "-initrd";
		argv[n++] = (char *)s->initrd;
	}
	argv[n++] = "-append";
	argv[n++] = cmdline;
	argv[n++] = "-drive";
	argv[n++] = root;
	argv[n++] = "-device";
	argv[n++] = "virtio-blk-device,drive=root";
	if (s->workspace) {
		snprintf(ws, sizeof(ws), "id=ws,file=%s,format=raw,if=none,werror=report,rerror=report", s->workspace);
		argv[n++] = "-drive";
		argv[n++] = ws;
		argv[n++] = "-device";
		argv[n++] = "virtio-blk-device,drive=ws";
	}
	argv[n++] = "-chardev";
	argv[n++] = chardev;
	argv[n++] = "-device";
	argv[n++] = "virtio-serial-device";
	argv[n++] = "-device";
	argv[n++] = "virtserialport,chardev=agent,name=org.kiln.agent";
	argv[n++] = "-device";
	argv[n++] = "virtio-rng-device";
	if (s->tap) {
		snprintf(netdev, sizeof(netdev), "tap,id=n0,ifname=%s,script=no,downscript=no", s->tap);
		argv[n++] = "-netdev";
		argv[n++] = netdev;
		argv[n++] = "-device";
		argv[n++] = "virtio-net-device,netdev=n0";
	}
	argv[n] = NULL;
	return executor_spawn(x, argv, 0, e);
}

const struct executor_ops executor_qemu = {
	.name = "qemu",
	.prepare = qemu_prepare,
	.start = qemu_start,
	.stream = executor_stream,
	.wait = executor_wait,
	.cancel = executor_cancel,
	.cleanup = executor_cleanup,
};
