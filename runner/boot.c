#include "runner/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executors/hosttsc.h"

#define AGENT_STATUS "kiln-agent: exit status "

/* Append s to the buffer, returning a pointer to the copy or NULL. */
static char *put(char **p, size_t *left, const char *s)
{
	size_t n = strlen(s) + 1;
	char *start = *p;

	if (n > *left)
		return NULL;
	memcpy(*p, s, n);
	*p += n;
	*left -= n;
	return start;
}

enum kiln_rc boot_qemu_argv(const struct boot_opts *o, char **argv, int max, char *buf, size_t size,
			    struct kiln_err *e)
{
	char cmdline[2048], tmp[4096], machine[64];
	const char *words[40];
	int n = 0, i;
	size_t len, left = size;
	char *p = buf;
	char *const *c;

	/* reboot=t: microvm has no i8042, a triple fault ends QEMU (-no-reboot);
	 * under TCG there is no kvm-clock: the host TSC's rate instead. */
	char tsc[48] = "";

	if (strcmp(o->accel, "kvm"))
		snprintf(tsc, sizeof(tsc), " tsc_early_khz=%lu", hosttsc_khz());
	len = (size_t)snprintf(cmdline, sizeof(cmdline),
			       "console=ttyS0 reboot=t panic=-1 quiet loglevel=1%s root=/dev/vda rw init=/sbin/kiln-agent --",
			       tsc);
	for (c = o->command; *c; c++) {
		const char *s;
		int quote = !**c;

		for (s = *c; *s; s++) {
			if (*s == '"' || (unsigned char)*s < 0x20)
				return kiln_fail(e, KILN_E_INVALID,
						 "command argument %d holds a quote or control character",
						 (int)(c - o->command));
			if (*s == ' ')
				quote = 1;
		}
		len += (size_t)snprintf(cmdline + len, len < sizeof(cmdline) ? sizeof(cmdline) - len : 0,
					quote ? " \"%s\"" : " %s", *c);
		if (len >= sizeof(cmdline))
			return kiln_fail(e, KILN_E_LIMIT, "kernel command line longer than %zu bytes",
					 sizeof(cmdline) - 1);
	}
	snprintf(machine, sizeof(machine), "microvm,accel=%s", o->accel);
	words[n++] = o->qemu;
	words[n++] = "-M";
	words[n++] = machine;
	words[n++] = "-cpu";
	words[n++] = strcmp(o->accel, "kvm") ? "max" : "host";
	words[n++] = "-nodefaults";
	words[n++] = "-no-user-config";
	words[n++] = "-nographic";
	words[n++] = "-no-reboot";
	words[n++] = "-serial";
	words[n++] = "stdio";
	words[n++] = "-kernel";
	words[n++] = o->kernel;
	if (o->initrd) {
		words[n++] = "-initrd";
		words[n++] = o->initrd;
	}
	words[n++] = "-append";
	words[n++] = cmdline;
	words[n++] = "-device";
	words[n++] = "virtio-blk-device,drive=root";
	words[n++] = "-device";
	words[n++] = "virtio-rng-device";
	if (n + 7 > max)
		return kiln_fail(e, KILN_E_LIMIT, "too many qemu arguments");
	for (i = 0; i < n; i++)
		if (!(argv[i] = put(&p, &left, words[i])))
			goto full;
	snprintf(tmp, sizeof(tmp), "%d", o->memory_mib);
	argv[n++] = "-m";
	if (!(argv[n++] = put(&p, &left, tmp)))
		goto full;
	snprintf(tmp, sizeof(tmp), "%d", o->vcpus);
	argv[n++] = "-smp";
	if (!(argv[n++] = put(&p, &left, tmp)))
		goto full;
	/* snapshot=on: writes go to a temporary overlay, the image is never
	 * modified and one image serves many VMs. */
	if (strchr(o->rootfs, ','))
		return kiln_fail(e, KILN_E_INVALID, "rootfs path '%s' contains a comma", o->rootfs);
	snprintf(tmp, sizeof(tmp), "id=root,file=%s,format=raw,if=none,snapshot=on", o->rootfs);
	argv[n++] = "-drive";
	if (!(argv[n++] = put(&p, &left, tmp)))
		goto full;
	argv[n] = NULL;
	return KILN_OK;
full:
	return kiln_fail(e, KILN_E_LIMIT, "qemu command line too long");
}

/* Forward the console to stdout as it comes, remembering the agent's
 * status line. Serial output ends lines with \r\n; drop the \r. */
static void pump(int fd, int *status)
{
	char buf[4096], line[256];
	size_t llen = 0;
	ssize_t n, i;

	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < n; i++) {
			char ch = buf[i];

			if (ch == '\r')
				continue;
			putchar(ch);
			if (ch == '\n') {
				line[llen] = '\0';
				if (!strncmp(line, AGENT_STATUS, strlen(AGENT_STATUS)))
					*status = atoi(line + strlen(AGENT_STATUS));
				llen = 0;
			} else if (llen < sizeof(line) - 1) {
				line[llen++] = ch;
			}
		}
		fflush(stdout);
	}
}

enum kiln_rc boot_run(const struct boot_opts *o, int *status, struct kiln_err *e)
{
	char *argv[64], buf[16384];
	int pipefd[2] = { -1, -1 }, wst;
	enum kiln_rc rc;
	pid_t pid;

	*status = -1;
	if ((rc = boot_qemu_argv(o, argv, 64, buf, sizeof(buf), e)))
		return rc;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return kiln_fail_errno(e, "pipe");
	pid = fork();
	if (pid < 0) {
		rc = kiln_fail_errno(e, "fork");
		goto out;
	}
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);

		if (null_fd >= 0)
			dup2(null_fd, 0);
		dup2(pipefd[1], 1);
		execv(argv[0], argv);
		fprintf(stderr, "kiln: error: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	pump(pipefd[0], status);
	while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
		rc = kiln_fail(e, KILN_E_EXEC, "%s ended abnormally (status %d)", argv[0], wst);
	else if (*status < 0)
		rc = kiln_fail(e, KILN_E_EXEC, "the guest ended without reporting an exit status");
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	return rc;
}
