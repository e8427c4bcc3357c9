/* kiln-vmm's seccomp filters, negative and positive: each forbidden
 * system call kills the process with SIGSYS; what the VMM needs passes.
 * Every probe runs in a child that installs the filter on itself. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/jail.h"

static char sock_path[64]; /* the one buffer unlink is pinned to */
static char other_path[64];

enum probe {
	P_KILL_SELF, P_KILL_OTHER, P_TGKILL_OTHER, P_MMAP_RW, P_MMAP_EXEC, P_UNLINK_SOCK, P_UNLINK_OTHER,
	P_SOCKET_UNIX, P_SOCKET_INET, P_SOCKET_DGRAM, P_OPEN,
};

static void probe(enum probe p)
{
	void *m;
	int fd;

	switch (p) {
	case P_KILL_SELF: _exit(kill(getpid(), 0) == 0 ? 0 : 1);
	case P_KILL_OTHER: _exit(kill(getppid(), 0) == 0 ? 0 : 1);
	case P_TGKILL_OTHER: _exit(syscall(SYS_tgkill, getppid(), getppid(), 0) == 0 ? 0 : 1);
	case P_MMAP_RW:
		m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		_exit(m != MAP_FAILED ? 0 : 1);
	case P_MMAP_EXEC:
		m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		_exit(m != MAP_FAILED ? 0 : 1);
	case P_UNLINK_SOCK: _exit(unlink(sock_path) == 0 ? 0 : 1);
	case P_UNLINK_OTHER: _exit(unlink(other_path) == 0 ? 0 : 1);
	case P_SOCKET_UNIX: _exit(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) >= 0 ? 0 : 1);
	case P_SOCKET_INET: _exit(socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 1);
	case P_SOCKET_DGRAM: _exit(socket(AF_UNIX, SOCK_DGRAM, 0) >= 0 ? 0 : 1);
	case P_OPEN:
		/* For writing: sanitizer builds let a report open files read-only. */
		fd = open("/etc/hostname", O_WRONLY | O_APPEND);
		_exit(fd >= 0 ? 0 : 1);
	}
	_exit(2);
}

/* How a child that jails itself as kind and then tries p ends: its exit
 * status, or 128 + the signal. */
static int jailed(enum jail_kind kind, enum probe p)
{
	int st;
	pid_t pid;

	snprintf(sock_path, sizeof(sock_path), "/tmp/kiln-jail-unit-%d.sock", (int)getpid());
	snprintf(other_path, sizeof(other_path), "/tmp/kiln-jail-unit-%d.other", (int)getpid());
	close(open(sock_path, O_WRONLY | O_CREAT, 0600));
	close(open(other_path, O_WRONLY | O_CREAT, 0600));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (jail_enter(kind, sock_path) < 0)
			_exit(3);
		probe(p);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	unlink(sock_path);
	unlink(other_path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

START_TEST(forbidden_calls_die_with_sigsys)
{
	const enum probe vmm_bad[] = { P_KILL_OTHER, P_TGKILL_OTHER, P_MMAP_EXEC, P_UNLINK_OTHER,
				       P_SOCKET_INET, P_SOCKET_DGRAM, P_OPEN };
	const enum probe vcpu_bad[] = { P_KILL_SELF, P_MMAP_EXEC, P_UNLINK_SOCK, P_SOCKET_UNIX, P_OPEN };
	size_t i;

	for (i = 0; i < sizeof(vmm_bad) / sizeof(vmm_bad[0]); i++)
		ck_assert_msg(jailed(JAIL_VMM, vmm_bad[i]) == 128 + SIGSYS, "device thread: probe %d passed",
			      (int)vmm_bad[i]);
	for (i = 0; i < sizeof(vcpu_bad) / sizeof(vcpu_bad[0]); i++)
		ck_assert_msg(jailed(JAIL_VCPU, vcpu_bad[i]) == 128 + SIGSYS, "vCPU thread: probe %d passed",
			      (int)vcpu_bad[i]);
}
END_TEST

START_TEST(needed_calls_pass)
{
	const enum probe vmm_ok[] = { P_KILL_SELF, P_MMAP_RW, P_UNLINK_SOCK, P_SOCKET_UNIX };
	size_t i;

	for (i = 0; i < sizeof(vmm_ok) / sizeof(vmm_ok[0]); i++)
		ck_assert_msg(jailed(JAIL_VMM, vmm_ok[i]) == 0, "device thread: probe %d failed", (int)vmm_ok[i]);
	ck_assert_int_eq(jailed(JAIL_VCPU, P_MMAP_RW), 0);
}
END_TEST

static int gate[2];

static void *vcpu_like(void *arg)
{
	char c;

	(void)arg;
	if (jail_enter(JAIL_VCPU, NULL) < 0)
		_exit(3);
	if (read(gate[0], &c, 1) < 0)
		_exit(4);
	return NULL;
}

/* As kiln-vmm runs: every thread filtered (Seccomp: 2 in each task's
 * status), the device thread and a vCPU-like one. */
START_TEST(every_thread_is_filtered)
{
	char path[128], line[256];
	int st, tasks = 0, filtered = 0;
	pthread_t t;
	struct dirent *d;
	DIR *dir;
	FILE *f;
	pid_t pid;

	ck_assert_int_eq(pipe(gate), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;

		if (pthread_create(&t, NULL, vcpu_like, NULL) || jail_enter(JAIL_VMM, NULL) < 0)
			_exit(3);
		if (read(gate[0], &c, 1) < 0)
			_exit(4);
		_exit(0);
	}
	/* Each thread reports filtered once it installed its filter: wait for
	 * both, then count. */
	do {
		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		dir = opendir(path);
		ck_assert_ptr_nonnull(dir);
		tasks = filtered = 0;
		while ((d = readdir(dir))) {
			if (d->d_name[0] == '.')
				continue;
			tasks++;
			snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, d->d_name);
			f = fopen(path, "r");
			if (!f)
				continue;
			while (fgets(line, sizeof(line), f))
				if (!strcmp(line, "Seccomp:\t2\n"))
					filtered++;
			fclose(f);
		}
		closedir(dir);
	} while (filtered < 2 && waitpid(pid, &st, WNOHANG) == 0);
	ck_assert_int_eq(tasks, 2);
	ck_assert_int_eq(filtered, 2);
	ck_assert_int_eq(write(gate[1], "xx", 2), 2);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(gate[0]);
	close(gate[1]);
}
END_TEST

Suite *jail_suite(void)
{
	Suite *s = suite_create("jail");
	TCase *tc = tcase_create("seccomp");

	tcase_add_test(tc, forbidden_calls_die_with_sigsys);
	tcase_add_test(tc, needed_calls_pass);
	tcase_add_test(tc, every_thread_is_filtered);
	suite_add_tcase(s, tc);
	return s;
}
