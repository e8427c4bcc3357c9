/* What kiln-agent does because it is PID 1: mount the API filesystems, name
 * the host, reap every orphan, forward signals, and end the VM. Shaped after
 * tini: signals stay blocked in PID 1 and are taken synchronously. */
#ifndef KILN_AGENT_INIT_H
#define KILN_AGENT_INIT_H

#include <signal.h>
#include <sys/types.h>

/* The PATH every job and command starts with. */
#define INIT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Block every signal, saving the previous mask in *orig when orig is not
 * NULL: PID 1 has no default actions, so it takes signals one at a time
 * (sigtimedwait, signalfd) instead of in handlers. */
void init_block_signals(sigset_t *orig);

/* Mount /proc, /sys, /dev, /dev/pts, /dev/shm, /run and /tmp, set the
 * hostname from /etc/hostname (default "kiln"), turn ctrl-alt-del into a
 * SIGINT to PID 1, and set PATH and HOME for what runs next. Failures are reported, not fatal: some kernels and images
 * provide parts of it already. */
void init_setup(void);

/* Write Firecracker's boot-time marker (the VMM logs the time of this write
 * to guest physical 0xC0000000). Reported, not fatal, on failure. */
void init_boot_marker(void);

/* Reap every child that has ended, without blocking. Returns 1 and stores
 * its wait status in *status when `watch` was among them, 0 otherwise. */
int init_reap(pid_t watch, int *status);

/* The exit code a shell would report for a wait status: the exit status,
 * or 128 + the signal that killed it. */
int init_exit_code(int status);

/* Command mode: run argv (PATH lookup) in its own process group with stdin
 * /dev/null and the signal mask `orig`, forward every signal PID 1 receives
 * to that group, reap orphans, and return the command's exit code (127 when
 * it cannot run). Expects init_block_signals() to have run. */
int init_run_command(char **argv, const sigset_t *orig);

/* Sync and reboot; with reboot=k on the kernel command line the VMM takes
 * the reset as the end of the VM. Never returns. */
void init_power_off(void) __attribute__((noreturn));

/* Mount the ext4 disk labelled label on dir: 0 when mounted, 1 when no
 * disk has that label, -1 when mounting failed (said on the console). */
int init_mount_workspace(const char *label, const char *dir);

/* The same for a disk the host fills in after boot (kiln.workspace=late):
 * the disk is empty until the host has built the image and the VMM has
 * announced its new size, which the kernel takes asynchronously; wait up
 * to timeout_ms for the label to appear. 0 when mounted, -1 otherwise with
 * the reason in err. */
int init_mount_late_workspace(const char *label, const char *dir, int timeout_ms, char *err, size_t size);

#endif
