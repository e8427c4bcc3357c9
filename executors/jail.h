/* The jailer: every VMM (kiln-vmm or QEMU) runs as Firecracker's does.
 *
 * Acquire, then jail, then run. kiln (root) claims a uid slot, makes the
 * VM's cgroup and lists the host files the VMM may see (acquire); the
 * child, between clone and exec, is already in new mount, pid, ipc, uts
 * and network namespaces, joins the cgroup, builds a private tmpfs root
 * holding only those files and a few device nodes, pivots into it, drops
 * every capability, becomes the slot's uid/gid and sets no_new_privs
 * (jail); then it execs the VMM, which installs its own seccomp filter
 * (run). Nothing of it is mounted on the host: the root lives in the
 * VMM's mount namespace and goes with it.
 *
 * What the VMM sees, and nothing else:
 *   /usr (and /lib, /lib64... as on the host)  read-only: its libraries
 *   /<name>       each exposed file, read-only or read-write (jail_expose)
 *   /vm           <run_dir>/vm, the slot uid's: sockets, temporary overlays
 *   /dev/null, /dev/urandom, and /dev/kvm when it needs KVM
 * Its network namespace holds only lo: a tap reaches it as an open fd. */
#ifndef KILN_JAIL_H
#define KILN_JAIL_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "lib/result.h"

#define JAIL_UID_BASE_DEFAULT 900000L /* slot n runs as uid/gid base + n */
#define JAIL_SLOTS 1024               /* VMs jailed at once on one host */
#define JAIL_MAX_FILES 12
#define JAIL_SLOT_DIR "/run/kiln/jail"

enum jail_mode { JAIL_RO, JAIL_RW, JAIL_EXEC };

struct jail_file {
	char host[PATH_MAX];
	char inside[64];      /* "/name" */
	enum jail_mode mode;
};

struct jail {
	bool on;
	uid_t uid;
	gid_t gid;
	int slot_fd;          /* the claimed slot's lock, -1 */
	bool kvm;             /* give it /dev/kvm */
	char mnt[PATH_MAX];   /* <run_dir>/root: where its tmpfs root is mounted */
	char vm_dir[PATH_MAX];/* <run_dir>/vm, seen as /vm */
	struct jail_file files[JAIL_MAX_FILES];
	int n_files;
	char cgroups[3][PATH_MAX]; /* made by jail_acquire, removed by jail_release */
	int n_cgroups;
};

/* Limits of the VM's cgroup. */
struct jail_limits {
	long long memory_bytes;
	int cpus;             /* CPU time of this many CPUs */
	int pids;             /* threads and processes */
};

/* Off: nothing happens, and jail_expose hands back host paths. */
void jail_init(struct jail *j, bool on);

/* Claim a uid slot (a lock under JAIL_SLOT_DIR, held until release), make
 * <run_dir>/vm and <run_dir>/root and the cgroup with lim. Errors name
 * what the host lacks. */
enum kiln_rc jail_acquire(struct jail *j, const char *run_dir, long uid_base, const struct jail_limits *lim,
			  struct kiln_err *e);

/* The path the VMM will see host file path under: "/name" in the jail (the
 * file bound there read-only, read-write, or read-only and executable),
 * path itself when the jail is off. NULL when the table is full. */
const char *jail_expose(struct jail *j, const char *path, const char *name, enum jail_mode mode);

/* Hand path (made by kiln in <run_dir>/vm or exposed rw) to the slot's uid. */
enum kiln_rc jail_give(const struct jail *j, const char *path, struct kiln_err *e);

/* The clone flags of the jail's namespaces (0 when off). */
int jail_clone_flags(const struct jail *j);

/* In the child, as root, after clone: build the root, pivot, drop. 0, or
 * -1 with a one-line reason in msg. Async-signal-safe enough for the
 * child of a multithreaded process: no malloc, no stdio. */
int jail_child(const struct jail *j, char *msg, size_t size);

/* Remove the cgroup (once the VMM is reaped) and give the slot back. */
void jail_release(struct jail *j);

/* Remove the cgroups a kiln that died left (named after its run folders,
 * "<job>.<kiln pid>.XXXXXX", with that pid gone). Their VMMs died with
 * it (PR_SET_PDEATHSIG), so they are empty. */
void jail_sweep(void);

/* What the host offers the jail, for kiln doctor: a line per fact. */
struct jail_host {
	bool namespaces;      /* new mount/pid/ipc/uts/net namespaces can be made */
	int cgroup;           /* 0 none usable, 1 v1, 2 v2 */
	bool controllers;     /* memory, cpu and pids are all there */
	char detail[200];
};
void jail_probe(struct jail_host *h);

#endif
