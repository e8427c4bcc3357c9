/*
 * kiln-agent: the guest's PID 1.
 *
 * Does what an init must (mount the API filesystems, set the hostname, reap
 * orphans, forward signals, exit with the child's status or 128 + signal)
 * and then runs the job command: the arguments the kernel passed after `--`
 * on its command line. When the command ends it reports the status on the
 * console, syncs and reboots, which ends the VM (reboot=k / -no-reboot).
 */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BOOT_MARKER_ADDR 0xC0000000UL
#define BOOT_MARKER_MAGIC 123

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("kiln-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kiln-agent [--] COMMAND [ARG...]\n"
		"The guest's PID 1: mounts, reaps, forwards signals, runs COMMAND, then\n"
		"reports its exit status and powers the VM off. The kernel passes COMMAND\n"
		"as the words after `--` on its command line.\n"
		"  --help     this text\n"
		"  --version  print the version\n");
}

/* Mount what a job expects; failures are reported, not fatal, since some
 * images or kernels mount parts of it already. */
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
	if (access("/dev/ptmx", F_OK) < 0)
		symlink("pts/ptmx", "/dev/ptmx");
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

/* Whether the kernel command line holds the word `word`. */
static int cmdline_has(const char *word)
{
	char buf[4096], *tok, *save = NULL;
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
		if (!strcmp(tok, word))
			return 1;
	return 0;
}

/* Firecracker's boot-time marker: the VMM logs the time of this write. */
static void boot_marker(void)
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

static pid_t spawn(char **argv, const sigset_t *orig)
{
	pid_t pid = fork();

	if (pid < 0) {
		say("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open("/dev/null", O_RDONLY);

		/* Own process group, so a signal reaches the whole job. */
		setpgid(0, 0);
		sigprocmask(SIG_SETMASK, orig, NULL);
		if (fd >= 0 && fd != 0) {
			dup2(fd, 0);
			close(fd);
		}
		execvp(argv[0], argv);
		say("cannot run %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

/* Wait for the child, forwarding signals to its group and reaping orphans;
 * returns its exit code (128 + signal when killed). */
static int supervise(pid_t child, const sigset_t *all)
{
	struct timespec tick = { 1, 0 };
	int code = -1;

	while (code < 0) {
		siginfo_t si;
		int sig = sigtimedwait(all, &si, &tick);
		pid_t pid;
		int status;

		if (sig > 0 && sig != SIGCHLD) {
			if (kill(-child, sig) < 0 && errno != ESRCH)
				say("forwarding signal %d: %s", sig, strerror(errno));
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid != child)
				continue;
			code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
	}
	return code;
}

static void power_off(void)
{
	sync();
	/* reboot=k on the kernel command line turns this into an i8042 reset,
	 * which the VMM takes as the end of the VM. */
	reboot(RB_AUTOBOOT);
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	sigset_t all, orig;
	pid_t child;
	int code, first = 1;

	if (argc > 1 && !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--version")) {
		printf("kiln-agent %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--"))
		first = 2;
	if (argc > first && argv[first][0] == '-' && argv[first][1] == '-') {
		fprintf(stderr, "kiln-agent: unknown option '%s' (see --help)\n", argv[first]);
		return 2;
	}
	if (argc <= first) {
		fprintf(stderr, "kiln-agent: no command given (see --help)\n");
		if (getpid() == 1)
			power_off();
		return 2;
	}

	if (getpid() == 1) {
		mount_api_filesystems();
		set_hostname();
		setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
		setenv("HOME", "/root", 1);
		if (cmdline_has("kiln.boot_marker"))
			boot_marker();
	}

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &orig);
	child = spawn(argv + first, &orig);
	code = child < 0 ? 127 : supervise(child, &all);
	fflush(stdout);
	say("exit status %d", code);
	if (getpid() == 1)
		power_off();
	return code;
}
