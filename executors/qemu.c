/* The qemu backend: QEMU's microvm machine (KVM when it can boot stock
 * guests, TCG otherwise) with the agent on a virtio-console port, since
 * QEMU offers vsock only through the host's vhost-vsock. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "executors/executor.h"

#define MAX_ARGS 64
#define QEMU_OVERLAY_MAX (2048ULL << 20) /* as kiln-vmm's VM_COW_LIMIT_MIB */

/* QEMU's own seccomp filter, inside the jail: no obsolete system calls,
 * no set*id, no fork or exec, no scheduler or affinity changes. */
#define QEMU_SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
/* Beyond guest RAM: QEMU's own heap and the page cache its image reads
 * are charged with, and under TCG its translation cache, which fills up
 * to 1 GiB (QEMU's default tb-size) before it is flushed. */
#define QEMU_OVERHEAD_MIB 256
#define QEMU_TCG_CACHE_MIB 1024
#define QEMU_PIDS 128 /* vCPUs, RCU, and a thread pool of up to 64 workers */

static enum kiln_rc qemu_prepare(struct executor *x, struct kiln_err *e)
{
	const struct vm_spec *s = &x->spec;
	bool tcg = strcmp(s->accel, "kvm") != 0;
	struct jail_limits lim = { (long long)(s->memory_mib + QEMU_OVERHEAD_MIB + (tcg ? QEMU_TCG_CACHE_MIB : 0)) << 20,
				   s->vcpus + 1, QEMU_PIDS };
	char path[PATH_MAX];
	enum kiln_rc rc;

	if ((rc = executor_jail(x, &lim, !tcg, e)))
		return rc;
	snprintf(path, sizeof(path), "%s/agent.sock", x->host_dir);
	return executor_listen(x, path, e);
}

/* The spec's disk limits as -drive throttling options ("" for none).
 * QEMU has no limiter for a tap netdev: runner/jobnet limits the tap. */
static void throttling(const struct vm_spec *s, char *buf, size_t size)
{
	int len = 0;

	buf[0] = '\0';
	if (s->disk_rate_limit > 0)
		len = snprintf(buf, size, ",throttling.bps-total=%ld", s->disk_rate_limit);
	if (s->disk_iops_limit > 0 && len >= 0 && (size_t)len < size)
		snprintf(buf + len, size - (size_t)len, ",throttling.iops-total=%ld", s->disk_iops_limit);
}

static enum kiln_rc qemu_start(struct executor *x, struct kiln_err *e)
{
	const struct vm_spec *s = &x->spec;
	const struct vm_view *v = &x->view;
	char cmdline[2048], machine[96], mem[16], smp[16], addfd[32], chardev[PATH_MAX + 32];
	char root[PATH_MAX + 200], ws[PATH_MAX + 200], img[PATH_MAX + 200], netdev[128], throttle[96];
	char *argv[MAX_ARGS];
	enum kiln_rc rc;
	struct stat st;
	int n = 0;

	if (strchr(v->rootfs, ',') || (v->workspace && strchr(v->workspace, ',')) ||
	    (v->image && strchr(v->image, ',')) || strchr(v->dir, ','))
		return kiln_fail(e, KILN_E_INVALID, "QEMU cannot take paths containing a comma");
	if ((rc = executor_cmdline(s, "virtio-console", cmdline, sizeof(cmdline), e)))
		return rc;
	/* The machine has a CMOS RTC. Without one every port reads 0xff, the
	 * RTC's "update in progress" bit never clears, and Linux polls it for
	 * a second or more at boot: for the wall clock under TCG (no
	 * kvm-clock), and in the rtc_cmos driver of kernels that have it
	 * (Debian's, 4 s in the sandbox with KVM). */
	snprintf(machine, sizeof(machine), "microvm,accel=%s,x-option-roms=off,rtc=on", s->accel);
	snprintf(mem, sizeof(mem), "%d", s->memory_mib);
	snprintf(smp, sizeof(smp), "%d", s->vcpus);
	/* QEMU's file chardev has no size limit: the console goes through a
	 * pipe that kiln copies with one (fd set 1 is that pipe; append=on,
	 * as QEMU's O_TRUNC is an ftruncate that a pipe refuses). */
	snprintf(addfd, sizeof(addfd), "fd=%d,set=1", EXECUTOR_CONSOLE_FD);
	snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s/agent.sock", v->dir);
	/* snapshot=on: a private temporary overlay in $TMPDIR; the image is
	 * never written. werror=report: a write that fails (the host's disk
	 * full) is an I/O error for the guest; QEMU's default stops the VM on
	 * ENOSPC, and the job would hang until its timeout. */
	throttling(s, throttle, sizeof(throttle));
	snprintf(root, sizeof(root), "id=root,file=%s,format=raw,if=none,snapshot=on,werror=report,rerror=report%s",
		 v->rootfs, throttle);

	argv[n++] = (char *)v->helper;
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
	argv[n++] = "-add-fd";
	argv[n++] = addfd;
	argv[n++] = "-chardev";
	argv[n++] = "file,id=console,path=/dev/fdset/1,append=on";
	argv[n++] = "-serial";
	argv[n++] = "chardev:console";
	argv[n++] = "-kernel";
	argv[n++] = (char *)v->kernel;
	if (v->initrd) {
		argv[n++] = "-initrd";
		argv[n++] = (char *)v->initrd;
	}
	argv[n++] = "-append";
	argv[n++] = cmdline;
	argv[n++] = "-drive";
	argv[n++] = root;
	argv[n++] = "-device";
	argv[n++] = "virtio-blk-device,drive=root";
	if (v->workspace) {
		snprintf(ws, sizeof(ws), "id=ws,file=%s,format=raw,if=none,werror=report,rerror=report%s", v->workspace,
			 throttle);
		argv[n++] = "-drive";
		argv[n++] = ws;
		argv[n++] = "-device";
		argv[n++] = "virtio-blk-device,drive=ws";
	}
	if (v->image) {
		/* An OCI image's root: copy-on-write as the root disk is. */
		snprintf(img, sizeof(img), "id=img,file=%s,format=raw,if=none,snapshot=on,werror=report,rerror=report%s",
			 v->image, throttle);
		argv[n++] = "-drive";
		argv[n++] = img;
		argv[n++] = "-device";
		argv[n++] = "virtio-blk-device,drive=img";
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
		if (v->tap_fd >= 0)
			snprintf(netdev, sizeof(netdev), "tap,id=n0,fd=%d", v->tap_fd);
		else
			snprintf(netdev, sizeof(netdev), "tap,id=n0,ifname=%s,script=no,downscript=no", s->tap);
		argv[n++] = "-netdev";
		argv[n++] = netdev;
		argv[n++] = "-device";
		argv[n++] = "virtio-net-device,netdev=n0";
	}
	if (x->jail.on) {
		argv[n++] = "-sandbox";
		argv[n++] = QEMU_SANDBOX;
	}
	argv[n] = NULL;
	/* snapshot=on's overlay is a qcow2 file QEMU writes in /var/tmp with
	 * no cap of its own: no file QEMU writes grows past the workspace
	 * image (written in place) or kiln-vmm's overlay cap, whichever is
	 * larger. Past it QEMU dies of SIGXFSZ and the job fails. */
	x->fsize_max = QEMU_OVERLAY_MAX;
	if (s->workspace && stat(s->workspace, &st) == 0 && (unsigned long long)st.st_size > x->fsize_max)
		x->fsize_max = (unsigned long long)st.st_size;
	if ((rc = executor_console_pipe(x, EXECUTOR_CONSOLE_MAX, e)))
		return rc;
	return executor_spawn(x, argv, 0, e);
}

/* QEMU runs anywhere: with KVM where it boots stock kernels, else TCG. */
static enum kiln_rc qemu_check(const struct host_facts *f, struct executor_choice *c, struct kiln_err *e)
{
	if (!f->qemu[0])
		return kiln_fail(e, KILN_E_NOTFOUND, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)");
	snprintf(c->helper, sizeof(c->helper), "%s", f->qemu);
	c->accel = hostfacts_stock_kernels(f) ? "kvm" : "tcg";
	return KILN_OK;
}

const struct executor_ops executor_qemu = {
	.name = "qemu",
	.check = qemu_check,
	.prepare = qemu_prepare,
	.start = qemu_start,
	.stream = executor_stream,
	.wait = executor_wait,
	.cancel = executor_cancel,
	.cleanup = executor_cleanup,
};
