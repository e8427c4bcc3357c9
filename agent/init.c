#include "agent/init.h"
#include "agent/log.h"
#include "lib/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BOOT_MARKER_ADDR 0xC0000000UL
#define BOOT_MARKER_MAGIC 123

void init_block_signals(sigset_t *orig)
{
	sigset_t all;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, orig);
}

static void mount_api_filesystems(void)
{
	static const struct {
		const char *src, *dst, *type;
		unsigned long flags;
		const char *data;
		mode_t mode;
	} m[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555 },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555 },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755 },
		{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666", 0755 },
		{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777 },
		{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755 },
		{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777 },
	};
	size_t i;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		mkdir(m[i].dst, m[i].mode);
		if (mount(m[i].src, m[i].dst, m[i].type, m[i].flags, m[i].data) < 0 && errno != EBUSY)
			say("mount %s: %s", m[i].dst, strerror(errno));
	}
	if (access("/dev/ptmx", F_OK) < 0 && symlink("pts/ptmx", "/dev/ptmx") < 0)
		say("symlink /dev/ptmx: %s", strerror(errno));
}

static void set_hostname(void)
{
	char name[65] = "kiln";
	FILE *f = fopen("/etc/hostname", "re");

	if (f) {
		if (fgets(name, sizeof(name), f))
			name[strcspn(name, "\r\n")] = '\0';
		fclose(f);
	}
	if (!name[0])
		strcpy(name, "kiln");
	if (sethostname(name, strlen(name)) < 0)
		say("sethostname: %s", strerror(errno));
}

void init_setup(void)
{
	mount_api_filesystems();
	set_hostname();
	/* Ctrl-alt-del (a VMM's "ACPI-less" shutdown request) then reaches PID
	 * 1 as SIGINT instead of resetting the machine on the spot. */
	if (reboot(RB_DISABLE_CAD) < 0)
		say("reboot(RB_DISABLE_CAD): %s", strerror(errno));
	setenv("PATH", INIT_PATH, 1);
	setenv("HOME", "/root", 1);
}

void init_boot_marker(void)
{
	volatile unsigned char *p;
	int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);

	if (fd < 0) {
		say("boot marker: /dev/mem: %s", strerror(errno));
		return;
	}
	p = mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, BOOT_MARKER_ADDR);
	if (p != MAP_FAILED) {
		*p = BOOT_MARKER_MAGIC;
		munmap((void *)p, 4096);
	} else {
		say("boot marker: mmap: %s", strerror(errno));
	}
	close(fd);
}

int init_reap(pid_t watch, int *status)
{
	int found = 0, st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == watch) {
			*status = st;
			found = 1;
		}
	}
	return found;
}

int init_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

static pid_t spawn(char **argv, const sigset_t *orig)
{
	pid_t pid = fork();

	if (pid < 0) {
		say("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open("/dev/null", O_RDONLY);

		/* Own process group, so a forwarded signal reaches the whole job. */
		setpgid(0, 0);
		sigprocmask(SIG_SETMASK, orig, NULL);
		if (fd > 0) {
			dup2(fd, 0);
			close(fd);
		}
		execvp(argv[0], argv);
		say("cannot run %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	/* Also here: whichever of parent and child runs first, the group exists
	 * before the parent signals it. */
	setpgid(pid, pid);
	return pid;
}

int init_run_command(char **argv, const sigset_t *orig)
{
	struct timespec tick = { 1, 0 };
	sigset_t all;
	pid_t child = spawn(argv, orig);
	int status;

	if (child < 0)
		return 127;
	sigfillset(&all);
	for (;;) {
		siginfo_t si;
		/* The 1 s tick also catches a SIGCHLD merged with another. */
		int sig = sigtimedwait(&all, &si, &tick);

		if (sig > 0 && sig != SIGCHLD && kill(-child, sig) < 0 && errno != ESRCH)
			say("forwarding signal %d: %s", sig, strerror(errno));
		if (init_reap(child, &status))
			return init_exit_code(status);
	}
}

void init_power_off(void)
{
	sync();
	/* reboot=k on the kernel command line turns this into an i8042 reset,
	 * which the VMM takes as the end of the VM. */
	reboot(RB_AUTOBOOT);
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* The ext4 volume name of dev ("" when it is not ext4). */
static void ext4_label(const char *dev, char label[17])
{
	unsigned char sb[136];
	int fd = open(dev, O_RDONLY | O_CLOEXEC);

	label[0] = '\0';
	if (fd < 0)
		return;
	if (pread(fd, sb, sizeof(sb), 1024) == (ssize_t)sizeof(sb) && sb[56] == 0x53 && sb[57] == 0xef) {
		memcpy(label, sb + 120, 16);
		label[16] = '\0';
	}
	close(fd);
}

static void flush_buffers(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (ioctl(fd, BLKFLSBUF, 0) < 0)
		say("BLKFLSBUF %s: %s", dev, strerror(errno));
	close(fd);
}

int init_mount_workspace(const char *label, const char *dir)
{
	char dev[32], name[17];
	char c;

	/* Found by label, not by position: QEMU and kiln-vmm enumerate
	 * virtio-mmio disks in different orders. */
	for (c = 'a'; c <= 'z'; c++) {
		snprintf(dev, sizeof(dev), "/dev/vd%c", c);
		if (access(dev, F_OK) < 0)
			continue;
		ext4_label(dev, name);
		if (strcmp(name, label))
			continue;
		mkdir(dir, 0755);
		/* Drop what the page cache holds of the disk: for a late
		 * workspace nothing may be read from before it was complete. */
		flush_buffers(dev);
		if (mount(dev, dir, "ext4", MS_NOATIME, NULL) < 0) {
			say("mounting the workspace %s on %s: %s", dev, dir, strerror(errno));
			return -1;
		}
		return 0;
	}
	return 1;
}

int init_mount_late_workspace(const char *label, const char *dir, int timeout_ms, char *err, size_t size)
{
	const struct timespec pause_ts = { 0, 2 * 1000 * 1000 };
	int64_t t0 = mono_ms();
	int rc;

	for (;;) {
		rc = init_mount_workspace(label, dir);
		if (rc == 0)
			return 0;
		if (rc < 0) {
			snprintf(err, size, "mounting the workspace (label %s) on %s failed", label, dir);
			return -1;
		}
		if (mono_ms() - t0 >= timeout_ms) {
			snprintf(err, size, "the workspace disk (label %s) did not appear within %d ms", label,
				 timeout_ms);
			return -1;
		}
		nanosleep(&pause_ts, NULL);
	}
}
