/*
 * kiln-agent: the guest's PID 1.
 *
 * Picks a mode and hands over:
 *  - job mode, when the kernel command line names a host stream
 *    (kiln.channel=vsock|virtio-console): the protocol of
 *    docs/agent-protocol.md, in job.c;
 *  - command mode otherwise: run the words after `--` on the kernel command
 *    line, like tini (image smoke tests), in init.c.
 * Either way, as PID 1 it first mounts, names the host and brings up the
 * network, and at the end syncs and reboots, which ends the VM.
 *
 * `--serve-fd FD` (not in --help: it is for tests) runs job mode on an
 * inherited stream without any PID-1 duty and exits with the job's code.
 */
#include "build-config.h"

#include "agent/channel.h"
#include "agent/cmdline.h"
#include "agent/init.h"
#include "agent/job.h"
#include "agent/log.h"
#include "agent/net.h"
#include "agent/step.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a late workspace may take to appear after the JOB frame. */
#define LATE_WORKSPACE_WAIT_MS 10000

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kiln-agent [--] COMMAND [ARG...]\n"
		"The guest's PID 1: mounts, reaps, forwards signals, and then either serves\n"
		"a job from the host (kernel command line kiln.channel=vsock|virtio-console)\n"
		"or runs COMMAND, reports its exit status and powers the VM off. The kernel\n"
		"passes COMMAND as the words after `--` on its command line.\n"
		"  --help     this text\n"
		"  --version  print the version\n");
}

/* The FD of --serve-fd: a decimal number naming an open descriptor. */
static int parse_fd(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX || fcntl((int)v, F_GETFD) < 0)
		return -1;
	return (int)v;
}

/* The workspace disk of kiln.workspace=late: filled in by the host while
 * the guest boots, complete once the JOB frame is here. */
static int mount_late_workspace(char *err, size_t size)
{
	return init_mount_late_workspace("kiln-ws", "/builds", LATE_WORKSPACE_WAIT_MS, err, size);
}

/* vsock again, after a transport reset (a restored VM). */
static int reopen_vsock(void)
{
	return channel_open("vsock", CHANNEL_TIMEOUT_MS);
}

/* Job mode on the stream the command line names. */
static int serve_channel(const char *kind, bool late_workspace)
{
	int fd = channel_open(kind, CHANNEL_TIMEOUT_MS), code;

	if (fd < 0)
		return 1;
	if (!strcmp(kind, "vsock"))
		job_reopen_with(reopen_vsock);
	code = job_serve(fd, late_workspace ? mount_late_workspace : NULL);
	close(fd);
	fd = -1;
	return code;
}

/* PID 1: set the machine up, run the job or the command, end the VM. */
static void __attribute__((noreturn)) run_as_init(char **cmd)
{
	char cmdline[CMDLINE_MAX], kind[32], ws[16];
	bool late;
	sigset_t orig;
	int code, found, rc;

	init_block_signals(&orig);
	init_setup();
	rc = cmdline_read(cmdline, sizeof(cmdline));
	if (rc < 0)
		say("cannot read /proc/cmdline: %s", strerror(-rc));
	if (cmdline_has(cmdline, "kiln.boot_marker"))
		init_boot_marker();
	net_setup(cmdline);
	found = cmdline_get(cmdline, "kiln.channel", kind, sizeof(kind));
	late = cmdline_get(cmdline, "kiln.workspace", ws, sizeof(ws)) > 0 && !strcmp(ws, "late");
	/* A late workspace disk stays empty until its image is complete, so
	 * finding it now is safe; usually the host is done before the guest
	 * gets here. Otherwise it is mounted once the JOB frame is in. */
	if (found > 0) {
		rc = init_mount_workspace("kiln-ws", "/builds");
		if (rc < 0)
			found = -1;
		late = late && rc == 1;
	}
	/* A template's boot (kiln.template): what every job's first step
	 * loads is loaded once here, and saved with the template. */
	if (found > 0 && cmdline_has(cmdline, "kiln.template"))
		step_warm();
	if (found) {
		code = found > 0 ? serve_channel(kind, late) : 1;
	} else if (!cmd[0]) {
		say("no kiln.channel and no command after `--` on the kernel command line");
		code = 2;
	} else {
		code = init_run_command(cmd, &orig);
		fflush(stdout);
	}
	say("exit status %d", code);
	init_power_off();
}

int main(int argc, char **argv)
{
	sigset_t orig;
	int first = 1, fd, code;

	if (argc > 1 && !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--version")) {
		printf("kiln-agent %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--serve-fd")) {
		fd = argc == 3 ? parse_fd(argv[2]) : -1;
		if (fd < 0) {
			fprintf(stderr, "kiln-agent: --serve-fd wants one open file descriptor\n");
			return 2;
		}
		init_block_signals(NULL);
		return job_serve(fd, NULL);
	}
	if (argc > 1 && !strcmp(argv[1], "--"))
		first = 2;
	if (argc > first && argv[first][0] == '-' && argv[first][1] == '-') {
		fprintf(stderr, "kiln-agent: unknown option '%s' (see --help)\n", argv[first]);
		return 2;
	}
	if (getpid() == 1)
		run_as_init(argv + first);
	if (argc <= first) {
		fprintf(stderr, "kiln-agent: no command given (see --help)\n");
		return 2;
	}
	init_block_signals(&orig);
	code = init_run_command(argv + first, &orig);
	fflush(stdout);
	say("exit status %d", code);
	return code;
}
