#include "executors/executor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "executors/hosttsc.h"
#include "lib/clock.h"
#include "lib/paths.h"

#define CHILD_STACK_BYTES (256u << 10)

extern char **environ;

/* Every backend, in the order `auto` prefers them. */
static const struct executor_ops *const backends[] = { &executor_microvm, &executor_qemu };
#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

const struct executor_ops *executor_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_BACKENDS; i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

bool executor_known(const char *name)
{
	return !strcmp(name, "auto") || executor_find(name);
}

const char *executor_names(void)
{
	static char names[128];
	size_t i, len;

	if (names[0])
		return names;
	len = (size_t)snprintf(names, sizeof(names), "auto");
	for (i = 0; i < N_BACKENDS && len < sizeof(names); i++)
		len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
					i + 1 == N_BACKENDS ? " or " : ", ", backends[i]->name);
	return names;
}

static enum kiln_rc check(const struct executor_ops *ops, const struct host_facts *f, struct executor_choice *c,
			  struct kiln_err *e)
{
	memset(c, 0, sizeof(*c));
	c->ops = ops;
	c->accel = "kvm";
	return ops->check ? ops->check(f, c, e) : KILN_OK;
}

enum kiln_rc executor_pick(const char *want, const struct host_facts *f, struct executor_choice *c,
			   struct kiln_err *e)
{
	const struct executor_ops *ops;
	struct kiln_err ignored;
	size_t i;

	if (!strcmp(want, "auto")) {
		for (i = 0; i < N_BACKENDS; i++)
			if (check(backends[i], f, c, &ignored) == KILN_OK)
				return KILN_OK;
		memset(c, 0, sizeof(*c));
		return kiln_fail(e, KILN_E_NOTFOUND, "no executor can run VMs on this host (run: kiln doctor)");
	}
	if (!(ops = executor_find(want)))
		return kiln_fail(e, KILN_E_INVALID, "unknown executor '%s' (%s)", want, executor_names());
	return check(ops, f, c, e);
}

void executor_init(struct executor *x, const struct executor_ops *ops, const struct vm_spec *spec)
{
	memset(x, 0, sizeof(*x));
	x->ops = ops;
	x->spec = *spec;
	x->pid = -1;
	x->listen_fd = -1;
	x->chan_fd = -1;
	x->console_fd = -1;
	x->drain_pid = -1;
	x->tap_fd = -1;
	jail_init(&x->jail, spec->jail);
	snprintf(x->console_path, sizeof(x->console_path), "%s/console.log", spec->run_dir);
	snprintf(x->log_path, sizeof(x->log_path), "%s/vmm.log", spec->run_dir);
}

enum kiln_rc executor_cmdline(const struct vm_spec *s, const char *channel, char *buf, size_t size,
			      struct kiln_err *e)
{
	/* The agent's reboot must end the VM: kiln-vmm takes an i8042 reset
	 * (reboot=k); QEMU's microvm has no i8042, so it gets a triple fault
	 * (reboot=t) which -no-reboot turns into an exit. panic=-1 turns a
	 * guest panic into the same. Without KVM the guest has no kvm-clock:
	 * it gets the host TSC's rate (executors/hosttsc.h). Neither machine has
	 * PCI or more than one UART, and probing for them costs the boot about
	 * 250 port I/O exits, each a round trip through the VMM: pci=off and
	 * 8250.nr_uarts=1 skip that. A template's boot says so (kiln.template):
	 * its agent loads the steps' shell before the save. */
	bool qemu = !strcmp(channel, "virtio-console");
	bool tcg = qemu && s->accel && !strcmp(s->accel, "tcg");
	char tsc[48] = "";
	char *const *c;
	size_t len;

	if (tcg)
		snprintf(tsc, sizeof(tsc), " tsc_early_khz=%lu", hosttsc_khz());
	len = (size_t)snprintf(buf, size,
			       "console=ttyS0 8250.nr_uarts=1 pci=off reboot=%s panic=-1 quiet loglevel=3 root=/dev/vda rw "
			       "init=/sbin/kiln-agent%s%s%s%s%s%s%s",
			       qemu ? "t" : "k", s->command ? "" : " kiln.channel=", s->command ? "" : channel,
			       s->workspace_late ? " kiln.workspace=late" : "",
			       s->snapshot_save_to ? " kiln.template" : "", tsc,
			       s->net_cmdline && *s->net_cmdline ? " " : "", s->net_cmdline ? s->net_cmdline : "");
	/* The agent runs what follows `--`; the kernel splits it at spaces
	 * outside double quotes, and has no escapes. */
	if (s->command && len < size)
		len += (size_t)snprintf(buf + len, size - len, " --");
	for (c = s->command; c && *c && len < size; c++) {
		const char *p;
		bool quote = !**c;

		for (p = *c; *p; p++) {
			if (*p == '"' || (unsigned char)*p < 0x20)
				return kiln_fail(e, KILN_E_INVALID, "command argument %d holds a quote or control character",
						 (int)(c - s->command));
			if (*p == ' ')
				quote = true;
		}
		len += (size_t)snprintf(buf + len, size - len, quote ? " \"%s\"" : " %s", *c);
	}
	if (len >= size)
		return kiln_fail(e, KILN_E_LIMIT, "kernel command line longer than %zu bytes", size - 1);
	return KILN_OK;
}

enum kiln_rc executor_listen(struct executor *x, const char *path, struct kiln_err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		return kiln_fail(e, KILN_E_LIMIT, "socket path %s is too long", path);
	snprintf(x->listen_path, sizeof(x->listen_path), "%s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	x->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (x->listen_fd < 0)
		return kiln_fail_errno(e, "socket");
	unlink(path);
	if (bind(x->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(x->listen_fd, 1) < 0)
		return kiln_fail_errno(e, "listening on %s", path);
	/* Connecting takes write access to the socket file. */
	return jail_give(&x->jail, path, e);
}

/* The tap, opened here: the jailed VMM's network namespace has no tap to
 * open (only lo), and its host end keeps its addresses and rules. The
 * flags are those kiln-vmm and QEMU ask for themselves. */
static enum kiln_rc open_tap(struct executor *x, struct kiln_err *e)
{
	struct ifreq ifr = { 0 };

	if (strlen(x->spec.tap) >= IFNAMSIZ)
		return kiln_fail(e, KILN_E_INVALID, "tap name %s is too long", x->spec.tap);
	x->tap_fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (x->tap_fd < 0)
		return kiln_fail_errno(e, "/dev/net/tun");
	memcpy(ifr.ifr_name, x->spec.tap, strlen(x->spec.tap) + 1);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(x->tap_fd, TUNSETIFF, &ifr) < 0)
		return kiln_fail_errno(e, "attaching to tap %s", x->spec.tap);
	return KILN_OK;
}

enum kiln_rc executor_jail(struct executor *x, const struct jail_limits *lim, bool kvm, struct kiln_err *e)
{
	const struct vm_spec *s = &x->spec;
	struct vm_view *v = &x->view;
	const char *helper_name;
	enum kiln_rc rc;
	int fd;

	*v = (struct vm_view){ .kernel = s->kernel, .initrd = s->initrd, .rootfs = s->rootfs, .workspace = s->workspace,
			       .image = s->image,
			       .console = x->console_path, .helper = s->helper, .dir = s->run_dir, .tap_fd = -1 };
	snprintf(x->host_dir, sizeof(x->host_dir), "%s", s->run_dir);
	if (!x->jail.on)
		return KILN_OK;
	if (!s->helper)
		return kiln_fail(e, KILN_E_INVALID, "jail: no VMM to run");
	helper_name = strrchr(s->helper, '/') ? strrchr(s->helper, '/') + 1 : s->helper;
	x->jail.kvm = kvm;
	if ((rc = jail_acquire(&x->jail, s->run_dir, s->jail_uid_base, lim, e)))
		return rc;
	snprintf(x->host_dir, sizeof(x->host_dir), "%s", x->jail.vm_dir);
	v->dir = "/vm";
	/* The console file is kiln's, outside the jail's folder: the VMM
	 * writes it through the bind and cannot swap it for a link. */
	fd = open(x->console_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return kiln_fail_errno(e, "%s", x->console_path);
	close(fd);
	if ((rc = jail_give(&x->jail, x->console_path, e)) ||
	    (s->workspace && (rc = jail_give(&x->jail, s->workspace, e))))
		return rc;
	v->kernel = jail_expose(&x->jail, s->kernel, "kernel", JAIL_RO);
	v->initrd = s->initrd ? jail_expose(&x->jail, s->initrd, "initrd", JAIL_RO) : NULL;
	v->rootfs = jail_expose(&x->jail, s->rootfs, "rootfs", JAIL_RO);
	v->workspace = s->workspace ? jail_expose(&x->jail, s->workspace, "workspace", JAIL_RW) : NULL;
	v->image = s->image ? jail_expose(&x->jail, s->image, "image", JAIL_RO) : NULL;
	v->console = jail_expose(&x->jail, x->console_path, "console.log", JAIL_RW);
	/* Under /usr it is there already; elsewhere (a build tree) it is bound. */
	v->helper = !strncmp(s->helper, "/usr/", 5) ? s->helper : jail_expose(&x->jail, s->helper, helper_name, JAIL_EXEC);
	if (!v->kernel || (s->initrd && !v->initrd) || !v->rootfs || (s->workspace && !v->workspace) || (s->image && !v->image) ||
	    !v->console ||
	    !v->helper)
		return kiln_fail(e, KILN_E_LIMIT, "jail: too many files to expose");
	if (s->tap) {
		if ((rc = open_tap(x, e)))
			return rc;
		v->tap_fd = EXECUTOR_TAP_FD;
	}
	return KILN_OK;
}

struct child {
	struct executor *x;
	char *const *argv, *const *envp;
	int held_signal;
	int log_fd, alive_r, alive_w, err_w;
};

/* Between clone and exec: the child's standard fds, the jail, the VMM.
 * Failures go to err_w as one line. It runs on clone's own small stack,
 * which ASan would warn about at each call that does not return (exec,
 * _exit): not instrumented. */
__attribute__((no_sanitize("address"))) static int child_main(void *arg)
{
	struct child *c = arg;
	struct executor *x = c->x;
	struct pollfd p = { c->alive_r, POLLIN, 0 };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC), err_fd, tap_fd = -1, console_fd = -1;
	char msg[512];
	sigset_t none;

	/* The VM must not outlive kiln, even when kiln is SIGKILLed; alive
	 * hangs up when kiln died before that took hold (in a new pid
	 * namespace getppid() says 0, whoever the parent is). */
	close(c->alive_w);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (poll(&p, 1, 0) != 0)
		_exit(127);
	/* Out of the way of 0-3, which the VMM gets. */
	err_fd = fcntl(c->err_w, F_DUPFD_CLOEXEC, 10);
	if (x->tap_fd >= 0)
		tap_fd = fcntl(x->tap_fd, F_DUPFD_CLOEXEC, 10);
	if (x->console_fd >= 0)
		console_fd = fcntl(x->console_fd, F_DUPFD_CLOEXEC, 10);
	sigemptyset(&none);
	if (c->held_signal)
		sigaddset(&none, c->held_signal);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	if (null_fd < 0 || err_fd < 0 || (x->tap_fd >= 0 && tap_fd < 0) || (x->console_fd >= 0 && console_fd < 0)) {
		snprintf(msg, sizeof(msg), "starting the VMM: %s", strerror(errno));
		goto fail;
	}
	if (x->fsize_max) {
		/* Dying of SIGXFSZ must not leave a core of guest RAM. */
		struct rlimit rl = { x->fsize_max, x->fsize_max }, no_core = { 0, 0 };

		if (setrlimit(RLIMIT_FSIZE, &rl) < 0 || setrlimit(RLIMIT_CORE, &no_core) < 0) {
			snprintf(msg, sizeof(msg), "setrlimit: %s", strerror(errno));
			goto fail;
		}
	}
	if (jail_child(&x->jail, msg, sizeof(msg)) < 0)
		goto fail;
	/* Changing uid cleared the parent-death signal: again, and again the
	 * check that kiln is still there. */
	if (x->jail.on && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || poll(&p, 1, 0) != 0))
		_exit(127);
	if (dup2(null_fd, 0) < 0 || dup2(c->log_fd, 1) < 0 || dup2(c->log_fd, 2) < 0 ||
	    (tap_fd >= 0 && dup2(tap_fd, EXECUTOR_TAP_FD) < 0) ||
	    (console_fd >= 0 && dup2(console_fd, EXECUTOR_CONSOLE_FD) < 0)) {
		snprintf(msg, sizeof(msg), "dup2: %s", strerror(errno));
		goto fail;
	}
	execve(c->argv[0], c->argv, c->envp);
	snprintf(msg, sizeof(msg), "cannot run %s: %s", c->argv[0], strerror(errno));
fail:
	if (write(err_fd >= 0 ? err_fd : c->err_w, msg, strlen(msg)) < 0)
		_exit(126);
	_exit(127);
}

enum kiln_rc executor_spawn(struct executor *x, char *const argv[], int held_signal, struct kiln_err *e)
{
	/* A jailed VMM gets no environment of kiln's: only where to put
	 * temporary files, and kiln-vmm's timing switch when set. */
	const char *timings = getenv("KILN_VMM_TIMINGS");
	char timings_env[64];
	char *jail_env[] = { "PATH=/usr/bin:/bin", "TMPDIR=/vm", "KILN_VMM_TMPDIR=/vm", timings_env, NULL };
	struct child c = { x, argv, x->jail.on ? jail_env : environ, held_signal, -1, -1, -1, -1 };
	int alive[2] = { -1, -1 }, err[2] = { -1, -1 };
	char msg[512];
	char *stack = NULL;
	ssize_t n, got = 0;
	enum kiln_rc rc = KILN_OK;

	snprintf(timings_env, sizeof(timings_env), "KILN_VMM_TIMINGS=%s", timings ? timings : "");
	if (!timings)
		jail_env[3] = NULL;
	c.log_fd = open(x->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c.log_fd < 0)
		return kiln_fail_errno(e, "%s", x->log_path);
	if (pipe2(alive, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || !(stack = malloc(CHILD_STACK_BYTES))) {
		rc = kiln_fail_errno(e, "starting the VMM");
		goto out;
	}
	c.alive_r = alive[0];
	c.alive_w = alive[1];
	c.err_w = err[1];
	x->pid = clone(child_main, stack + CHILD_STACK_BYTES, jail_clone_flags(&x->jail) | SIGCHLD, &c);
	if (x->pid < 0) {
		rc = kiln_fail_errno(e, "clone");
		goto out;
	}
	/* The error pipe closes at exec; a line on it is why there was none. */
	close(err[1]);
	err[1] = -1;
	while ((n = read(err[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			got += n;
	if (got > 0) {
		msg[got] = '\0';
		while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
			;
		x->pid = -1;
		rc = kiln_fail(e, KILN_E_EXEC, "%s", msg);
	}
out:
	/* The VMM's now (or nobody's): the drain sees EOF when it ends. */
	if (x->console_fd >= 0)
		close(x->console_fd);
	x->console_fd = -1;
	free(stack);
	close(c.log_fd);
	for (int i = 0; i < 2; i++) {
		if (alive[i] >= 0)
			close(alive[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	return rc;
}

/* The console drain's body, in a forked child of a threaded process:
 * async-signal-safe calls only. */
static void drain(int in, const char *path, unsigned long long max)
{
	static const char msg[] = "\n[kiln: console output limit reached, dropping the rest]\n";
	unsigned long long kept = 0;
	char buf[65536];
	int out;

	/* Keep nothing else open: another job's pipe held here would never
	 * see its EOF. */
	if (dup2(in, 0) < 0 || close_range(1, ~0U, 0) < 0)
		_exit(1);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf)), w;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);
		if (out < 0 || kept >= max)
			continue;
		if ((unsigned long long)n > max - kept)
			n = (ssize_t)(max - kept);
		w = write(out, buf, (size_t)n);
		kept = w == n ? kept + (unsigned long long)n : max;
		if (kept >= max) {
			w = write(out, msg, sizeof(msg) - 1);
			(void)w;
		}
	}
}

enum kiln_rc executor_console_pipe(struct executor *x, unsigned long long max, struct kiln_err *e)
{
	pid_t parent = getpid();
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return kiln_fail_errno(e, "pipe");
	/* Above the fds the VMM's process gets, so no dup2 there clobbers it. */
	if (p[1] <= EXECUTOR_CONSOLE_FD) {
		int fd = fcntl(p[1], F_DUPFD_CLOEXEC, EXECUTOR_CONSOLE_FD + 1);

		close(p[1]);
		if (fd < 0) {
			close(p[0]);
			return kiln_fail_errno(e, "pipe");
		}
		p[1] = fd;
	}
	x->drain_pid = fork();
	if (x->drain_pid < 0) {
		close(p[0]);
		close(p[1]);
		return kiln_fail_errno(e, "fork");
	}
	if (x->drain_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		drain(p[0], x->console_path, max);
	}
	close(p[0]);
	x->console_fd = p[1];
	return KILN_OK;
}

/* Reap the VMM if it ended; true when it is gone. */
static bool reap(struct executor *x, bool block)
{
	int st;
	pid_t r;

	if (x->pid < 0)
		return true;
	do
		r = waitpid(x->pid, &st, block ? 0 : WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	x->status = r < 0 ? 255 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	x->pid = -1;
	return true;
}

enum kiln_rc executor_stream(struct executor *x, int timeout_ms, int *fd, struct kiln_err *e)
{
	long long deadline = mono_ms() + timeout_ms;

	*fd = -1;
	while (x->chan_fd < 0) {
		struct pollfd p = { x->listen_fd, POLLIN, 0 };
		int n = poll(&p, 1, 100);

		if (n < 0 && errno != EINTR)
			return kiln_fail_errno(e, "poll");
		if (n > 0) {
			x->chan_fd = accept4(x->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (x->chan_fd < 0 && errno != EINTR && errno != EAGAIN)
				return kiln_fail_errno(e, "accepting the agent's connection");
			continue;
		}
		if (reap(x, false)) {
			char tail[600];
			executor_tail(x, tail, sizeof(tail));
			return kiln_fail(e, KILN_E_EXEC, "the VM ended (status %d) before its agent connected: %s",
					 x->status, tail);
		}
		if (mono_ms() > deadline) {
			char tail[600];
			executor_tail(x, tail, sizeof(tail));
			return kiln_fail(e, KILN_E_LIMIT, "the guest agent did not connect within %d s: %s",
					 timeout_ms / 1000, tail);
		}
	}
	*fd = x->chan_fd;
	return KILN_OK;
}

enum kiln_rc executor_wait(struct executor *x, int timeout_ms, int *status, struct kiln_err *e)
{
	long long deadline = mono_ms() + timeout_ms;

	for (;;) {
		if (reap(x, false)) {
			*status = x->status;
			return KILN_OK;
		}
		if (timeout_ms >= 0 && mono_ms() >= deadline)
			return kiln_fail(e, KILN_E_LIMIT, "the VM did not stop within %d ms", timeout_ms);
		usleep(10000);
	}
}

#define AGENT_STATUS "kiln-agent: exit status "

/* Where executor_run_command is in the console file. */
struct console_tail {
	int fd;              /* the console file, -1 until it exists */
	char line[256];      /* the current line's start */
	size_t llen;
	int status;          /* from the agent's status line, -1 */
};

/* Copy what the console file grew by to out without the serial line's
 * \r, noting the agent's status line. */
static void tail_console(const struct executor *x, struct console_tail *t, int out)
{
	char buf[4096], put[4096];
	ssize_t n, i;
	size_t m;

	if (t->fd < 0 && (t->fd = open(x->console_path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	while ((n = read(t->fd, buf, sizeof(buf))) > 0) {
		for (m = 0, i = 0; i < n; i++) {
			char ch = buf[i];

			if (ch == '\r')
				continue;
			put[m++] = ch;
			if (ch == '\n') {
				t->line[t->llen] = '\0';
				if (!strncmp(t->line, AGENT_STATUS, strlen(AGENT_STATUS)))
					t->status = atoi(t->line + strlen(AGENT_STATUS));
				t->llen = 0;
			} else if (t->llen < sizeof(t->line) - 1) {
				t->line[t->llen++] = ch;
			}
		}
		if (kiln_write_all(out, put, m) < 0)
			break;
	}
}

enum kiln_rc executor_run_command(const struct executor_ops *ops, const struct vm_spec *spec, int out_fd,
				  int *status, struct kiln_err *e)
{
	struct console_tail t = { .fd = -1, .status = -1 };
	struct executor x;
	struct kiln_err waited = { 0 };
	enum kiln_rc rc;
	int vmm_status = -1;

	*status = -1;
	if (!spec->command || !spec->command[0])
		return kiln_fail(e, KILN_E_INVALID, "no command to run in the VM");
	executor_init(&x, ops, spec);
	if ((rc = ops->prepare(&x, e)) || (rc = ops->start(&x, e)))
		goto out;
	while ((rc = ops->wait(&x, 100, &vmm_status, &waited)) == KILN_E_LIMIT)
		tail_console(&x, &t, out_fd);
	if (rc)
		*e = waited;
out:
	/* cleanup reaps QEMU's console copier: the file is complete after. */
	ops->cleanup(&x);
	tail_console(&x, &t, out_fd);
	if (t.fd >= 0)
		close(t.fd);
	*status = t.status;
	if (!rc && vmm_status != 0)
		rc = kiln_fail(e, KILN_E_EXEC, "%s ended abnormally (status %d)", spec->helper, vmm_status);
	else if (!rc && t.status < 0)
		rc = kiln_fail(e, KILN_E_EXEC, "the guest ended without reporting an exit status");
	return rc;
}

void executor_cancel(struct executor *x)
{
	if (x->pid > 0)
		kill(x->pid, SIGKILL);
}

void executor_cleanup(struct executor *x)
{
	int waited;

	if (x->pid > 0) {
		kill(x->pid, SIGKILL);
		reap(x, true);
	}
	if (x->console_fd >= 0)
		close(x->console_fd);
	x->console_fd = -1;
	/* The drain ends at its pipe's EOF, the VMM gone; a child forked
	 * elsewhere in kiln may hold the pipe a moment longer. */
	for (waited = 0; x->drain_pid > 0; waited += 10) {
		pid_t r = waitpid(x->drain_pid, NULL, waited < 2000 ? WNOHANG : 0);

		if (r == x->drain_pid || (r < 0 && errno != EINTR))
			x->drain_pid = -1;
		else if (r == 0 && waited + 10 >= 2000)
			kill(x->drain_pid, SIGKILL);
		else if (r == 0)
			usleep(10000);
	}
	if (x->chan_fd >= 0)
		close(x->chan_fd);
	if (x->listen_fd >= 0)
		close(x->listen_fd);
	x->chan_fd = x->listen_fd = -1;
	if (x->listen_path[0])
		unlink(x->listen_path);
	if (x->vsock_path[0])
		unlink(x->vsock_path);
	if (x->config_path[0])
		unlink(x->config_path);
	if (x->tap_fd >= 0)
		close(x->tap_fd);
	x->tap_fd = -1;
	/* After the reap: the cgroup is empty now. */
	jail_release(&x->jail);
}

/* Make guest-written text safe in a one-line message, in place: escape
 * sequences (CSI, OSC and the like, which would drive the terminal or
 * GitLab's log renderer) removed, line breaks and tabs made one space, other
 * control bytes dropped and bytes outside ASCII made '?' (no 8-bit C1
 * controls), NULs dropped. A sequence cut off at the end goes too. */
static void strip_controls(char *s, size_t n)
{
	unsigned char *r = (unsigned char *)s, *w = r, *end = r + n;

	*end = '\0'; /* s holds n + 1 bytes; the loops below stop at a NUL */
	while (r < end) {
		unsigned char c = *r++;

		if (c == 0x1b) {
			if (*r == '[') { /* CSI: parameters, then a final byte 0x40-0x7e */
				for (r++; *r && (*r < 0x40 || *r > 0x7e); r++)
					;
				if (*r)
					r++;
			} else if (*r == ']' || *r == 'P' || *r == '_' || *r == '^' || *r == 'X') {
				/* OSC, DCS...: up to BEL or ST (ESC \) */
				for (r++; *r && *r != 0x07 && !(*r == 0x1b && r[1] == '\\'); r++)
					;
				r += *r == 0x07 ? 1 : *r ? 2 : 0;
			} else if (*r) {
				r++; /* a two-byte sequence */
			}
		} else if (c == '\n' || c == '\r' || c == '\t') {
			if (w == (unsigned char *)s || w[-1] != ' ')
				*w++ = ' ';
		} else if (c >= 0x80) {
			*w++ = '?';
		} else if (c >= 0x20 && c != 0x7f) {
			*w++ = c;
		}
	}
	*w = '\0';
}

/* The last bytes of a file (at most max - 1) as one line, made safe to
 * print (strip_controls). */
static void tail_file(const char *path, char *buf, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end;
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > (off_t)(max - 1))
		lseek(fd, end - (off_t)(max - 1), SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, max - 1);
	close(fd);
	if (n <= 0) {
		buf[0] = '\0';
		return;
	}
	strip_controls(buf, (size_t)n);
	n = (ssize_t)strlen(buf);
	while (n > 0 && buf[n - 1] == ' ')
		buf[--n] = '\0';
}

void executor_tail(const struct executor *x, char *buf, size_t max)
{
	char a[300], b[300];

	tail_file(x->log_path, a, sizeof(a) < max / 2 ? sizeof(a) : max / 2);
	tail_file(x->console_path, b, sizeof(b) < max / 2 ? sizeof(b) : max / 2);
	snprintf(buf, max, "vmm log: [%s] console: [%s]", a[0] ? a : "empty", b[0] ? b : "empty");
}
