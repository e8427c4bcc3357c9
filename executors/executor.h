/* The one interface through which a job's VM is run, free of GitLab
 * specifics: a backend prepares and starts a VM from a vm_spec, the runner
 * streams the agent protocol over the channel the guest opens, waits for
 * the VM to end, cancels it, and cleans up.
 *
 * Life cycle: prepare -> start -> stream -> wait -> cleanup; cancel at any
 * point after start. cleanup is always called and leaves nothing behind. */
#ifndef KILN_EXECUTOR_H
#define KILN_EXECUTOR_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "executors/hostfacts.h"
#include "executors/jail.h"
#include "lib/result.h"

/* What the VM is made of. Paths stay owned by the caller. */
struct vm_spec {
	const char *kernel;        /* bzImage, vmlinux or vmlinuz */
	const char *initrd;        /* NULL when the kernel needs none */
	const char *rootfs;        /* root image, used copy-on-write, never written */
	const char *workspace;     /* per-job ext4 image, writable; NULL for none */
	const char *image;         /* an OCI image's ext4 root, used copy-on-write
				    * like rootfs, never written; NULL for none */
	bool workspace_late;       /* the workspace file is empty at start and
				    * filled in while the guest boots; see
				    * executor_ops.disks_changed */
	int vcpus;
	int memory_mib;
	const char *tap;           /* host tap for eth0; NULL: no network */
	const char *net_cmdline;   /* the agent's network parameters (kiln.ip=...) */
	long rx_rate_limit;        /* bytes/s into the guest, 0 = none */
	long tx_rate_limit;        /* bytes/s out of the guest, 0 = none
				    * (both: only where ops->limits_net) */
	long disk_rate_limit;      /* bytes/s per disk, 0 = none */
	long disk_iops_limit;      /* requests/s per disk, 0 = none */
	const char *run_dir;       /* private folder for sockets, config, logs */
	const char *helper;        /* kiln-vmm or qemu-system-x86_64 */
	const char *accel;         /* qemu only: "kvm" or "tcg" */
	bool jail;                 /* run the VMM jailed (executors/jail.h) */
	long jail_uid_base;        /* its slot uids start here */
	/* Run this argv as the guest agent's command, its output on the
	 * console, instead of serving a job on the channel
	 * (executor_run_command); NULL: a job. */
	char *const *command;
	/* microvm (executors/template.h): restore from this template folder
	 * instead of booting, or boot and let SIGUSR2 save into this one.
	 * NULL: neither. */
	const char *snapshot_load;
	const char *snapshot_save_to;
};

/* The paths the VMM is given: host paths, or where the jail shows them. */
struct vm_view {
	const char *kernel, *initrd, *rootfs, *workspace, *image, *console, *helper;
	const char *config;        /* microvm: vm.json */
	const char *dir;           /* its writable folder: sockets, overlays */
	int tap_fd;                /* the tap as fd 3 in the VMM (jailed), else -1 */
};

struct executor;
struct executor_choice;

struct executor_ops {
	const char *name;
	/* Whether host f can run this backend: fills c's helper and accel, or
	 * fails saying what is missing and how to get it. NULL: it always can
	 * (test backends). */
	enum kiln_rc (*check)(const struct host_facts *f, struct executor_choice *c, struct kiln_err *e);
	/* The VMM applies rx/tx_rate_limit itself; false: the caller must
	 * (runner/jobnet does, on the tap). */
	bool limits_net;
	/* Write the VM's configuration into run_dir and open the socket the
	 * guest agent will reach. */
	enum kiln_rc (*prepare)(struct executor *x, struct kiln_err *e);
	/* Start the VMM process. */
	enum kiln_rc (*start)(struct executor *x, struct kiln_err *e);
	/* The VM's disk files changed size since start (the workspace was
	 * filled in): make the guest see their new sizes. NULL when the
	 * backend cannot, and then the workspace must be complete before
	 * start (workspace_late is not offered). */
	enum kiln_rc (*disks_changed)(struct executor *x, struct kiln_err *e);
	/* Wait up to timeout_ms for the agent's channel; *fd gets it (owned by
	 * the executor). Fails early when the VMM exits first. */
	enum kiln_rc (*stream)(struct executor *x, int timeout_ms, int *fd, struct kiln_err *e);
	/* Wait up to timeout_ms (-1: forever) for the VMM to end; *status gets
	 * its exit status (or 128 + signal). KILN_E_LIMIT on timeout. */
	enum kiln_rc (*wait)(struct executor *x, int timeout_ms, int *status, struct kiln_err *e);
	/* Stop the VM at once (SIGKILL); wait() then returns promptly. */
	void (*cancel)(struct executor *x);
	/* Kill what is left, close every fd, remove what prepare created. */
	void (*cleanup)(struct executor *x);
};

struct executor {
	const struct executor_ops *ops;
	struct vm_spec spec;
	pid_t pid;                 /* VMM process, -1 before start and after wait */
	int status;                /* its exit status once reaped */
	int listen_fd;             /* where the guest's channel arrives, -1 */
	int chan_fd;               /* the accepted channel, -1 */
	char listen_path[PATH_MAX];
	char vsock_path[PATH_MAX]; /* microvm: kiln-vmm's vsock socket */
	char config_path[PATH_MAX];
	char console_path[PATH_MAX];
	char log_path[PATH_MAX];   /* the VMM's own stderr */
	int console_fd;            /* executor_console_pipe's write end until spawn, -1 */
	pid_t drain_pid;           /* its copying process, -1 */
	unsigned long long fsize_max; /* RLIMIT_FSIZE for the VM's process, 0: none */
	char host_dir[PATH_MAX];   /* the folder view.dir is on the host */
	struct jail jail;
	struct vm_view view;
	int tap_fd;                /* jailed: the tap, opened by kiln, -1 */
};

/* The most of a guest's console that a console file keeps (kiln-vmm's
 * own serial limit is the same). */
#define EXECUTOR_CONSOLE_MAX (64ULL << 20)
/* The fd number a jailed VMM finds its tap on. */
#define EXECUTOR_TAP_FD 3
/* The fd the VM's process finds the console pipe on (executor_console_pipe). */
#define EXECUTOR_CONSOLE_FD 4

extern const struct executor_ops executor_microvm;
extern const struct executor_ops executor_qemu;

/* A backend picked for a host, with what it runs. */
struct executor_choice {
	const struct executor_ops *ops;
	char helper[PATH_MAX];     /* kiln-vmm or qemu-system-x86_64 */
	const char *accel;         /* "kvm" or "tcg" */
};

/* The backend called name, NULL for none ("auto" is none either). */
const struct executor_ops *executor_find(const char *name);

/* Whether name is something to ask executor_pick for: "auto" or a backend. */
bool executor_known(const char *name);

/* The names executor_known takes, for messages: "auto, microvm or qemu". */
const char *executor_names(void);

/* The backend want names on host f, or for "auto" the first that f can
 * run, in the order of preference (kiln-vmm where KVM boots stock kernels,
 * else QEMU). Fails naming what is missing; KILN_E_INVALID for a name
 * that is no backend. */
enum kiln_rc executor_pick(const char *want, const struct host_facts *f, struct executor_choice *c,
			   struct kiln_err *e);

/* Set up x for backend ops and spec; fds start at -1. */
void executor_init(struct executor *x, const struct executor_ops *ops, const struct vm_spec *spec);

/* The last lines (at most max bytes) of the guest console and VMM log, for
 * error messages; buf is always NUL-terminated. */
void executor_tail(const struct executor *x, char *buf, size_t max);

/* The guest kernel command line both backends share, plus channel words;
 * with s->command, that command after `--` instead of the channel. A
 * command argument that cannot travel on a kernel command line (a quote
 * or control character) or a line past size fails. */
enum kiln_rc executor_cmdline(const struct vm_spec *s, const char *channel, char *buf, size_t size,
			      struct kiln_err *e);

/* Boot spec (spec->command set) with backend ops and run the command to
 * the VM's end: the guest's console copied to out_fd as it comes (serial
 * line ends made \n), *status the command's exit status from the agent's
 * last line (-1 when there was none). Fails when the VM could not start,
 * ended abnormally or without that line. Everything is cleaned up. */
enum kiln_rc executor_run_command(const struct executor_ops *ops, const struct vm_spec *spec, int out_fd,
				  int *status, struct kiln_err *e);

/* Shared implementations used by the backends' ops tables. */
/* Jail the VM (when spec.jail) with lim and, when kvm, /dev/kvm: claim its
 * slot and cgroup, expose its files, open its tap; fills x->view either
 * way. The first thing each backend's prepare does. */
enum kiln_rc executor_jail(struct executor *x, const struct jail_limits *lim, bool kvm, struct kiln_err *e);
enum kiln_rc executor_listen(struct executor *x, const char *path, struct kiln_err *e);
/* Start argv[0] as the VM's process; held_signal (0: none) starts blocked
 * in it, for a VMM that takes that signal through a signalfd and must not
 * die of one sent before it is ready. With x->fsize_max set, no file the
 * process writes grows past it (RLIMIT_FSIZE), and it dumps no core. */
enum kiln_rc executor_spawn(struct executor *x, char *const argv[], int held_signal, struct kiln_err *e);
/* For a VMM that writes the guest's console to a file without a limit
 * (QEMU): make the console a pipe, which the next executor_spawn hands the
 * VMM as EXECUTOR_CONSOLE_FD, and which a child process copies into
 * console_path up to max bytes, then a line saying so; the rest is read
 * and dropped, so the VM never blocks on it. cleanup reaps that process. */
enum kiln_rc executor_console_pipe(struct executor *x, unsigned long long max, struct kiln_err *e);
enum kiln_rc executor_stream(struct executor *x, int timeout_ms, int *fd, struct kiln_err *e);
enum kiln_rc executor_wait(struct executor *x, int timeout_ms, int *status, struct kiln_err *e);
void executor_cancel(struct executor *x);
void executor_cleanup(struct executor *x);

#endif
