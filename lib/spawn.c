#include "lib/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int kiln_which(const char *root, const char *name, char *buf, size_t size)
{
	const char *path = getenv("PATH");
	const char *p, *end;

	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (p = path; *p; p = *end ? end + 1 : end) {
		int n;

		end = strchr(p, ':');
		if (!end)
			end = p + strlen(p);
		n = snprintf(buf, size, "%s%.*s/%s", root ? root : "", (int)(end - p), p, name);
		if (n > 0 && (size_t)n < size && access(buf, X_OK) == 0)
			return 1;
	}
	return 0;
}

static void child_exec(char *const argv[], char *const env_add[], int out_fd)
{
	int null_fd = open("/dev/null", O_RDONLY);
	size_t i;

	if (null_fd >= 0)
		dup2(null_fd, 0);
	if (out_fd >= 0)
		dup2(out_fd, 1);
	for (i = 0; env_add && env_add[i]; i++)
		putenv(env_add[i]);
	execvp(argv[0], argv);
	fprintf(stderr, "kiln: error: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

enum kiln_rc kiln_spawn(char *const argv[], char *const env_add[], char **out, size_t max,
			struct kiln_err *e)
{
	int pipefd[2] = { -1, -1 };
	char *buf = NULL;
	size_t len = 0;
	enum kiln_rc rc = KILN_OK;
	int status;
	pid_t pid;

	if (out) {
		*out = NULL;
		buf = malloc(max + 1);
		if (!buf)
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
		if (pipe2(pipefd, O_CLOEXEC) < 0) {
			rc = kiln_fail_errno(e, "%s: pipe", argv[0]);
			goto out;
		}
	}
	pid = fork();
	if (pid < 0) {
		rc = kiln_fail_errno(e, "%s: fork", argv[0]);
		goto out;
	}
	if (pid == 0)
		child_exec(argv, env_add, pipefd[1]);
	if (out) {
		close(pipefd[1]);
		pipefd[1] = -1;
		for (;;) {
			char sink[4096];
			ssize_t n = len < max ? read(pipefd[0], buf + len, max - len)
					      : read(pipefd[0], sink, sizeof(sink));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			if (len >= max)
				rc = kiln_fail(e, KILN_E_LIMIT, "%s: output larger than %zu bytes", argv[0], max);
			else
				len += (size_t)n;
		}
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rc = kiln_fail_errno(e, "%s: waitpid", argv[0]);
			goto out;
		}
	}
	if (rc)
		goto out;
	if (WIFSIGNALED(status))
		rc = kiln_fail(e, KILN_E_EXEC, "%s: killed by signal %d", argv[0], WTERMSIG(status));
	else if (WEXITSTATUS(status) != 0)
		rc = kiln_fail(e, KILN_E_EXEC, "%s: exit status %d", argv[0], WEXITSTATUS(status));
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (out && rc == KILN_OK) {
		buf[len] = '\0';
		*out = buf;
	} else {
		free(buf);
	}
	return rc;
}
