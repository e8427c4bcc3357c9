/*
 * kiln-vmm: one KVM microVM per process.
 *
 * Acquire, then jail, then run: every file, socket and fd is opened and
 * guest memory is mapped first; then each thread installs its seccomp
 * filter; only then does the first KVM_RUN happen. The main thread becomes
 * the device thread (one epoll loop); each vCPU has its own thread.
 */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmm/acpi.h"
#include "vmm/jail.h"
#include "vmm/layout.h"
#include "vmm/loader.h"
#include "vmm/log.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/rng.h"
#include "vmm/virtio/vsock.h"
#include "vmm/vm.h"
#include "vmm/vmconfig.h"
#include "vmm/vmgenid.h"
#include "vmm/vmsnap.h"

#define KERNEL_MAX_BYTES (256u << 20)
#define INITRD_MAX_BYTES (1024u << 20)
#define SERIAL_FILE_LIMIT (64ull << 20)
#define SHUTDOWN_GRACE_S 5
#define LOADER_STACK_BYTES (64u << 10)

#ifdef VMM_NO_SECCOMP
#define PROG "kiln-vmm-debug"
#else
#define PROG "kiln-vmm"
#endif

static struct vm the_vm;

static int signal_fd = -1, grace_fd = -1;

/* Snapshots: what a save needs, set up before the jail. */
static struct {
	int dirfd;                       /* snapshot.save_to, -1 when none */
	const char *dir;
	bool resume;
	uint8_t machine[SNAP_DIGEST];
	struct vmsnap_host host;
} snap = { .dirfd = -1 };

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG " --config vm.json\n"
		"Run one KVM microVM described by vm.json until the guest powers off or\n"
		"reboots (exit 0) or something fails (non-zero, with a one-line reason).\n"
		"  -c, --config FILE  the VM description (see docs/vmm.md)\n"
		"  -h, --help         this text\n"
		"  -V, --version      print the version\n"
		"Signals: SIGTERM asks the guest to shut down (then stops after a grace\n"
		"period); SIGINT and SIGHUP stop at once; SIGUSR1 makes every drive take\n"
		"its image file's current size (not copy-on-write drives) and tells the\n"
		"guest, for an image filled in after start; SIGUSR2 saves a snapshot to\n"
		"vm.json's snapshot.save_to (then stops, unless resume_after_save).\n");
}

/* Map a whole file of at most max bytes read-only. The loader copies what
 * it needs straight from the page cache into guest RAM: no intermediate
 * buffer to fault in and fill, and of a vmlinux only the loadable segments
 * are ever read (which matters when the image sits on a slow filesystem).
 * Images are replaced by rename, never truncated in place; a file cut short
 * under us would end the process with SIGBUS before the guest starts. */
static uint8_t *map_file(const char *path, size_t max, size_t *len, int *fd_out, const char *what)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		vmm_die("%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		vmm_die("%s %s: not a regular file", what, path);
	if ((uint64_t)st.st_size > max || st.st_size == 0)
		vmm_die("%s %s: size %lld is outside 1..%zu bytes", what, path, (long long)st.st_size, max);
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		vmm_die("%s %s: mmap: %s", what, path, strerror(errno));
	*fd_out = fd;
	*len = (size_t)st.st_size;
	return p;
}

/* With KILN_VMM_TIMINGS set, where start-up time goes: microseconds since
 * main() at the end of each phase, in one line at the first KVM_RUN. */
struct phases {
	bool on;
	char line[512];
	size_t len;
};

static void phase(struct phases *ph, const struct vm *vm, const char *name)
{
	int n;

	if (!ph->on || ph->len >= sizeof(ph->line))
		return;
	n = snprintf(ph->line + ph->len, sizeof(ph->line) - ph->len, "%s%s %llu", ph->len ? ", " : "", name,
		     (unsigned long long)(mono_ns() - vm->t0_ns) / 1000);
	if (n > 0)
		ph->len += (size_t)n;
}

/* The kernel and initrd are read into guest RAM on a thread of their own
 * while this one creates the VM, its devices and vCPUs: the copy takes
 * several milliseconds and needs none of them. The thread ends before
 * the jail, and touches nothing but guest RAM and its own fds. */
struct image_load {
	const struct guest_mem *mem;
	const uint8_t *kernel, *initrd;
	size_t klen, ilen;
	int kernel_fd, initrd_fd;
	struct boot_info bi;
	int rc;
	bool initrd_failed; /* else the kernel, when rc != 0 */
	char err[256];
};

static void *load_images(void *arg)
{
	struct image_load *l = arg;
	int rc;

	l->rc = loader_load_kernel(l->mem, l->kernel, l->klen, l->kernel_fd, &l->bi, l->err, sizeof(l->err));
	if (l->rc || !l->initrd)
		return NULL;
	rc = loader_load_initrd(l->mem, l->initrd, l->ilen, l->initrd_fd, loader_initrd_max(l->kernel, l->klen),
				&l->bi);
	if (rc) {
		snprintf(l->err, sizeof(l->err), "%s",
			 rc == -EIO ? "reading it failed" : "does not fit in guest memory after the kernel");
		l->rc = rc;
		l->initrd_failed = true;
	}
	return NULL;
}

static void serial_irq(void *arg) { vm_irq_pulse(arg, LAYOUT_SERIAL_IRQ); }
static void kbd_irq(void *arg) { vm_irq_pulse(arg, LAYOUT_I8042_IRQ); }
static void kbd_reset(void *arg) { vm_request_exit(arg, 0, "guest rebooted"); }

static void on_exit_fd(void *arg, uint32_t events)
{
	struct vm *vm = arg;
	uint64_t v;
	ssize_t n = read(vm->exit_fd, &v, sizeof(v));

	(void)n;
	(void)events;
	ev_stop(&vm->loop);
}

static void on_grace(void *arg, uint32_t events)
{
	(void)events;
	vm_request_exit(arg, 1, "guest did not shut down within the grace period after SIGTERM");
}

/* SIGUSR1: the host filled in or resized a drive's image after start (kiln
 * builds the job's workspace while the guest boots); every drive takes its
 * file's size again and the driver hears of each change. */
static void rescan_drives(struct vm *vm)
{
	int i, rc;

	for (i = 0; i < vm->n_virtio; i++) {
		if (vm->virtio[i].ops != &virtio_blk_ops)
			continue;
		rc = virtio_blk_rescan(&vm->virtio[i]);
		if (rc < 0)
			vmm_warn("rescanning the drive at %#llx: %s", (unsigned long long)vm->virtio[i].mmio_base,
				 strerror(-rc));
		else if (rc > 0)
			vmm_debug("drive at %#llx: new size taken", (unsigned long long)vm->virtio[i].mmio_base);
	}
}

/* SIGUSR2: pause, save, then stop or go on. */
static void save_snapshot(struct vm *vm)
{
	char err[512];
	uint64_t t0 = mono_ns();
	int rc;

	if (snap.dirfd < 0) {
		vmm_warn("SIGUSR2: no snapshot.save_to in the VM description; nothing saved");
		return;
	}
	if ((rc = vm_pause(vm)) < 0)
		return;
	rc = vmsnap_save(vm, &snap.host, snap.dirfd, snap.machine, err, sizeof(err));
	if (rc < 0) {
		vmm_warn("saving a snapshot to %s: %s", snap.dir, err);
		vm_resume(vm);
		return;
	}
	vmm_log("snapshot saved to %s in %llu ms", snap.dir, (unsigned long long)(mono_ns() - t0) / 1000000);
	if (snap.resume)
		vm_resume(vm);
	else
		vm_request_exit(vm, 0, "snapshot saved");
}

static void on_signal(void *arg, uint32_t events)
{
	struct vm *vm = arg;
	struct signalfd_siginfo si;
	struct itimerspec its = { .it_value = { SHUTDOWN_GRACE_S, 0 } };

	(void)events;
	if (read(signal_fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGTERM) {
		/* Ask the guest politely (Ctrl-Alt-Del), then stop regardless. */
		i8042_ctrl_alt_del(&vm->kbd);
		timerfd_settime(grace_fd, 0, &its, NULL);
		vmm_log("SIGTERM: asked the guest to shut down, stopping in %d s", SHUTDOWN_GRACE_S);
		return;
	}
	if (si.ssi_signo == SIGUSR1) {
		rescan_drives(vm);
		return;
	}
	if (si.ssi_signo == SIGUSR2) {
		save_snapshot(vm);
		return;
	}
	vm_request_exit(vm, 1, si.ssi_signo == SIGINT ? "interrupted (SIGINT)" : "terminated");
}

/* Announce a virtio-mmio device on the command line. Words after " -- "
 * belong to init, so the entry goes before them. */
static void cmdline_add_device(char *cmdline, size_t size, uint64_t base, uint32_t gsi)
{
	char entry[64], *dashes = strstr(cmdline, " -- ");
	size_t len = strlen(cmdline), n;

	if (!dashes && len >= 3 && !strcmp(cmdline + len - 3, " --"))
		dashes = cmdline + len - 3;
	n = (size_t)snprintf(entry, sizeof(entry), " virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)base, gsi);
	if (len + n >= size)
		return; /* caught later: the command line is checked against its limit */
	if (!dashes) {
		memcpy(cmdline + len, entry, n + 1);
		return;
	}
	memmove(dashes + n, dashes, strlen(dashes) + 1);
	memcpy(dashes, entry, n);
}

static int add_virtio(struct vm *vm, const struct virtio_dev_ops *ops, void *priv, void (*close_fn)(void *),
		      struct acpi_mmio_dev *acpi, char *cmdline, size_t cmdsize)
{
	int i = vm->n_virtio, rc;
	uint64_t base = LAYOUT_MMIO_BASE + (uint64_t)i * LAYOUT_MMIO_SIZE;
	uint32_t gsi = LAYOUT_FIRST_GSI + (uint32_t)i;
	if (i == VM_MAX_VIRTIO)
		return -ENOSPC;
	rc = virtio_mmio_init(&vm->virtio[i], ops, priv, &vm->mem, &vm->loop, base, gsi);
	if (rc)
		return rc;
	rc = virtio_mmio_attach_kvm(&vm->virtio[i], vm->vm_fd);
	if (rc)
		return rc;
	vm->virtio_close[i] = close_fn;
	acpi[i] = (struct acpi_mmio_dev){ base, LAYOUT_MMIO_SIZE, gsi };
	cmdline_add_device(cmdline, cmdsize, base, gsi);
	vm->n_virtio++;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm *vm = &the_vm;
	struct vm_config cfg;
	struct acpi_mmio_dev acpi[VM_MAX_VIRTIO];
	char err[512], cmdline[VM_CMDLINE_MAX + 64];
	const char *config = NULL, *tmp_dir, *vsock_path = NULL;
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t klen = 0, ilen = 0;
	int opt, i, rc, serial_fd = -1;
	sigset_t sigs;
	uint64_t t_run;
	struct phases ph = { 0 };
	int kernel_fd = -1, initrd_fd = -1;
	struct image_load load;
	pthread_t loader;
	pthread_attr_t attr;
	uint8_t *snap_buf = NULL;
	struct snap_file *snap_file = NULL;

	vm->t0_ns = mono_ns();
	/* A SIGUSR1 (drive rescan) sent while we start up waits for the event
	 * loop instead of ending the process; kiln also starts us with it held. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf(PROG " %s\n", PACKAGE_VERSION); return 0;
		default:
			fprintf(stderr, PROG ": error: unknown option '%s' (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (!config || optind != argc) {
		fprintf(stderr, PROG ": error: %s (see --help)\n",
			config ? "unexpected argument" : "missing --config FILE");
		return 2;
	}
#ifdef VMM_NO_SECCOMP
	vmm_warn("this is the debug build: it runs WITHOUT the seccomp jail");
#endif
	ph.on = getenv("KILN_VMM_TIMINGS") != NULL;
	if (vm_config_load(&cfg, config, err, sizeof(err)))
		vmm_die("%s", err);
	phase(&ph, vm, "config");

	if (cfg.snapshot_load || cfg.snapshot_save_to)
		vm_config_machine_digest(&cfg, snap.machine);
	if (cfg.snapshot_save_to) {
		snap.dir = cfg.snapshot_save_to;
		snap.resume = cfg.snapshot_resume;
		snap.dirfd = open(snap.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (snap.dirfd < 0)
			vmm_die("snapshot.save_to %s: %s", snap.dir, strerror(errno));
	}

	/* Acquire: files, KVM, memory, devices. */
	if (!cfg.snapshot_load) {
		kernel = map_file(cfg.kernel, KERNEL_MAX_BYTES, &klen, &kernel_fd, "kernel");
		if (cfg.initrd)
			initrd = map_file(cfg.initrd, INITRD_MAX_BYTES, &ilen, &initrd_fd, "initrd");
	}
	phase(&ph, vm, "files");
	vm->kvm_fd = vm->vm_fd = vm->exit_fd = -1;
	vm->n_vcpus = cfg.vcpus;
#ifndef VMM_NO_SECCOMP
	vm->jail = true;
#endif
	if (cfg.snapshot_load && !cfg.snapshot_copy) {
		/* Restore: the guest's RAM is the memory file, mapped privately. */
		if (vmsnap_map_memory(vm, cfg.snapshot_load, cfg.mem_mib << 20, err, sizeof(err)))
			vmm_die("snapshot.load: %s", err);
	} else if (cfg.snapshot_load) {
		if (vm_map_memory(vm, cfg.mem_mib, err, sizeof(err)) ||
		    vmsnap_copy_memory(vm, cfg.snapshot_load, err, sizeof(err)))
			vmm_die("snapshot.load: %s", err);
	} else {
		if (vm_map_memory(vm, cfg.mem_mib, err, sizeof(err)))
			vmm_die("%s", err);
		load = (struct image_load){ .mem = &vm->mem, .kernel = kernel, .klen = klen, .kernel_fd = kernel_fd,
					    .initrd = initrd, .ilen = ilen, .initrd_fd = initrd_fd };
		/* A small stack: the default 8 MiB one is 2 MiB aligned, and where THP
		 * is "always" it becomes a 2 MiB page of memory overhead. */
		if (pthread_attr_init(&attr) || pthread_attr_setstacksize(&attr, LOADER_STACK_BYTES) ||
		    pthread_create(&loader, &attr, load_images, &load))
			vmm_die("creating the kernel loader thread failed");
		pthread_attr_destroy(&attr);
	}
	if (vm_create(vm, err, sizeof(err)))
		vmm_die("%s", err);
	if (cfg.snapshot_load || cfg.snapshot_save_to) {
		if (vmsnap_host_probe(vm, &snap.host, err, sizeof(err)))
			vmm_die("snapshot: %s", err);
	}
	if (cfg.snapshot_load) {
		/* Refuse a wrong file before any device is made. */
		if (!(snap_file = calloc(1, sizeof(*snap_file))))
			vmm_die("snapshot.load: out of memory");
		if (vmsnap_load_file(cfg.snapshot_load, &snap.host, snap.machine, &snap_buf, snap_file, err,
				     sizeof(err)))
			vmm_die("snapshot.load: %s", err);
	}
	phase(&ph, vm, "vm");
	if ((rc = ev_init(&vm->loop)))
		vmm_die("epoll: %s", strerror(-rc));

	if (cfg.serial == VM_SERIAL_STDOUT) {
		serial_fd = 1;
	} else if (cfg.serial == VM_SERIAL_FILE) {
		serial_fd = open(cfg.serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
		if (serial_fd < 0)
			vmm_die("serial.output %s: %s", cfg.serial_path, strerror(errno));
	}
	serial_init(&vm->serial, serial_fd, cfg.serial == VM_SERIAL_FILE ? SERIAL_FILE_LIMIT : UINT64_MAX,
		    serial_irq, vm);
	i8042_init(&vm->kbd, kbd_reset, kbd_irq, vm);

	snprintf(cmdline, sizeof(cmdline), "%s", cfg.cmdline);
	tmp_dir = getenv("KILN_VMM_TMPDIR");
	if (!tmp_dir)
		tmp_dir = getenv("TMPDIR");
	if (!tmp_dir)
		tmp_dir = "/var/tmp";
	for (i = 0; i < cfg.n_drives; i++) {
		void *priv;
		if ((rc = virtio_blk_open(&priv, &cfg.drives[i], tmp_dir, mono_ns())))
			vmm_die("drives[%d] (%s): %s: %s", i, cfg.drives[i].id, cfg.drives[i].path, strerror(-rc));
		if ((rc = add_virtio(vm, &virtio_blk_ops, priv, virtio_blk_close, acpi, cmdline, sizeof(cmdline))))
			vmm_die("drives[%d]: attaching: %s", i, strerror(-rc));
	}
	for (i = 0; i < cfg.n_nets; i++) {
		void *priv;
		if ((rc = virtio_net_open(&priv, &cfg.nets[i], mono_ns())))
			vmm_die("net[%d] (%s): tap %s: %s", i, cfg.nets[i].id, cfg.nets[i].tap, strerror(-rc));
		if ((rc = add_virtio(vm, &virtio_net_ops, priv, virtio_net_close, acpi, cmdline, sizeof(cmdline))))
			vmm_die("net[%d]: attaching: %s", i, strerror(-rc));
	}
	if (cfg.vsock.present) {
		void *priv;
		if ((rc = virtio_vsock_open(&priv, &cfg.vsock)))
			vmm_die("vsock: %s: %s", cfg.vsock.uds_path, strerror(-rc));
		vsock_path = virtio_vsock_path(priv);
		if ((rc = add_virtio(vm, &virtio_vsock_ops, priv, virtio_vsock_close, acpi, cmdline, sizeof(cmdline))))
			vmm_die("vsock: attaching: %s", strerror(-rc));
	}
	if (cfg.entropy) {
		void *priv;
		if ((rc = virtio_rng_open(&priv)))
			vmm_die("entropy: %s", strerror(-rc));
		if ((rc = add_virtio(vm, &virtio_rng_ops, priv, virtio_rng_close, acpi, cmdline, sizeof(cmdline))))
			vmm_die("entropy: attaching: %s", strerror(-rc));
	}
	phase(&ph, vm, "devices");
	for (i = 0; i < cfg.vcpus; i++)
		if (vm_create_vcpu(vm, i, err, sizeof(err)))
			vmm_die("%s", err);
	phase(&ph, vm, "vcpus");
	if (cfg.snapshot_load) {
		if (vmsnap_restore_state(vm, &snap.host, snap_file, err, sizeof(err)))
			vmm_die("snapshot.load %s: %s", cfg.snapshot_load, err);
		/* A new machine: a new generation ID before any vCPU runs, then
		 * the event (pending in the restored IOAPIC until a vCPU runs)
		 * on which the guest re-reads it and reseeds its CRNG. */
		if ((rc = vmgenid_fresh(&vm->mem, NULL)))
			vmm_die("snapshot.load: a new VM generation ID: %s", strerror(-rc));
		vm_irq_pulse(vm, LAYOUT_GED_GSI);
		vmm_debug("a new VM generation ID, announced on GSI %u", LAYOUT_GED_GSI);
		free(snap_buf);
		free(snap_file);
		phase(&ph, vm, "restore");
		goto signals;
	}
	if (pthread_join(loader, NULL))
		vmm_die("joining the kernel loader thread failed");
	if (load.rc)
		vmm_die("%s %s: %s", load.initrd_failed ? "initrd" : "kernel", load.initrd_failed ? cfg.initrd : cfg.kernel,
			load.err);
	phase(&ph, vm, "kernel");
	close(kernel_fd);
	kernel_fd = -1;
	if (initrd) {
		munmap(initrd, ilen);
		close(initrd_fd);
		initrd_fd = -1;
	}
	if (loader_write_boot_params(&vm->mem, kernel, klen, cmdline, &load.bi, err, sizeof(err)))
		vmm_die("%s", err);
	munmap(kernel, klen);
	if (acpi_build(&vm->mem, cfg.vcpus, acpi, vm->n_virtio) || mptable_build(&vm->mem, cfg.vcpus))
		vmm_die("firmware tables do not fit below 1 MiB");
	if ((rc = vmgenid_fresh(&vm->mem, NULL)))
		vmm_die("the VM generation ID: %s", strerror(-rc));
	if (vm_set_boot_regs(vm, &load.bi, err, sizeof(err)))
		vmm_die("%s", err);

signals:
	/* Signals arrive through a signalfd on the device thread only. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	grace_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (signal_fd < 0 || grace_fd < 0)
		vmm_die("signalfd/timerfd: %s", strerror(errno));
	if (ev_add(&vm->loop, signal_fd, EPOLLIN, on_signal, vm) || ev_add(&vm->loop, grace_fd, EPOLLIN, on_grace, vm) ||
	    ev_add(&vm->loop, vm->exit_fd, EPOLLIN, on_exit_fd, vm))
		vmm_die("registering control fds with epoll failed");

	/* Jail: vCPU threads install their own filter, then wait at the
	 * barrier until this thread has installed the device filter. */
	phase(&ph, vm, "boot");
	if ((rc = vm_start_vcpus(vm)))
		vmm_die("starting the vCPU threads failed: %s", strerror(-rc));
#ifndef VMM_NO_SECCOMP
	jail_allow_snapshots(snap.dirfd);
	if ((rc = jail_enter(JAIL_VMM, vsock_path)))
		vmm_die("installing the seccomp filter failed: %s", strerror(-rc));
#else
	(void)vsock_path;
#endif
	phase(&ph, vm, "jail");
	t_run = mono_ns();
	if (ph.on) {
		/* The absolute time lets a caller that spawned kiln-vmm through
		 * others (kiln exec) place the first KVM_RUN on its own clock. */
		vmm_log("process start to first KVM_RUN: %llu us (CLOCK_MONOTONIC %llu.%06llu s)",
			(unsigned long long)(t_run - vm->t0_ns) / 1000, (unsigned long long)(t_run / 1000000000ULL),
			(unsigned long long)(t_run % 1000000000ULL) / 1000);
		vmm_log("start-up phases, us since main(): %s", ph.line);
	}
	pthread_barrier_wait(&vm->start);

	rc = ev_run(&vm->loop);
	if (rc)
		vm_request_exit(vm, 1, "event loop failed");
	vm_shutdown(vm);
	fflush(stdout);
	if (ph.on) {
		uint64_t n[VCPU_EXIT_KINDS];

		vm_exit_counts(vm, n);
		vmm_log("exits to user space: serial %llu, other port I/O %llu, virtio-mmio %llu, other MMIO %llu",
			(unsigned long long)n[VCPU_EXIT_SERIAL], (unsigned long long)n[VCPU_EXIT_PIO_OTHER],
			(unsigned long long)n[VCPU_EXIT_VIRTIO], (unsigned long long)n[VCPU_EXIT_MMIO_OTHER]);
	}
	if (atomic_load(&vm->exit_code) != 0)
		vmm_log("error: %s", vm->exit_reason);
	else
		vmm_debug("%s", vm->exit_reason);
	vm_config_free(&cfg);
	/* Every thread is joined; exiting releases KVM, memory and every fd at
	 * once, and _exit skips atexit handlers the jail may not allow (a
	 * sanitizer's leak check at exit needs ptrace). */
	_exit(atomic_load(&vm->exit_code));
}
