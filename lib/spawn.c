#include "lib/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* The first line of text, at most size-1 bytes, into buf. */
static const char *first_line(const char *text, char *buf, size_t size)
{
	size_t n = strcspn(text, "\n");

	while (n > 0 && (text[n - 1] == '\r' || text[n - 1] == ' '))
		n--;
	if (n >= size)
		n = size - 1;
	memcpy(buf, text, n);
	buf[n] = '\0';
	return buf;
}

/* argv joined by blanks into buf, cut short to fit. */
static const char *cmd_str(char *const argv[], char *buf, size_t size)
{
	size_t len = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; argv[i] && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? " " : "", argv[i]);
	return buf;
}

static void child_exec(char *const argv[], const struct kiln_spawn_io *io, int in_fd, int out_fd, int err_fd)
{
	int null_fd = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
	size_t i;

	if (null_fd >= 0)
		dup2(null_fd, 0);
	if (err_fd >= 0)
		dup2(err_fd, 2);
	if (out_fd >= 0 || (io->merge && err_fd >= 0))
		dup2(out_fd >= 0 ? out_fd : err_fd, 1);
	for (i = 0; io->env_add && io->env_add[i]; i++)
		putenv(io->env_add[i]);
	execvp(argv[0], argv);
	dprintf(2, "%scannot run %s: %s\n", err_fd >= 0 ? "" : "kiln: error: ", argv[0], strerror(errno));
	_exit(127);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Take what *fd has into buf (room for cap bytes, *len so far); past cap
 * it is read and dropped, and *over set. Closes *fd at end of file. */
static void drain(int *fd, char *buf, size_t cap, size_t *len, bool *over)
{
	char sink[4096];
	ssize_t r = *len < cap ? read(*fd, buf + *len, cap - *len) : read(*fd, sink, sizeof(sink));

	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0)
		close_fd(fd);
	else if (*len < cap)
		*len += (size_t)r;
	else
		*over = true;
}

/* Feed stdin and collect stdout and stderr together, until the child has
 * closed both and taken its input (or stopped reading it). stdin is a
 * socket written with MSG_NOSIGNAL, so that a child ending early cannot
 * SIGPIPE kiln. */
static enum kiln_rc pump(const struct kiln_spawn_io *io, int fds[3], char *out, size_t *out_len,
			 bool *out_over, size_t *err_len, struct kiln_err *e)
{
	size_t off = 0;
	bool err_over = false;

	if (fds[0] >= 0 && io->input_len == 0)
		close_fd(&fds[0]);
	while (fds[0] >= 0 || fds[1] >= 0 || fds[2] >= 0) {
		struct pollfd p[3] = { { fds[0], POLLOUT, 0 }, { fds[1], POLLIN, 0 }, { fds[2], POLLIN, 0 } };

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return kiln_fail_errno(e, "poll");
		}
		if (p[0].revents) {
			ssize_t w = send(fds[0], io->input + off, io->input_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w > 0)
				off += (size_t)w;
			else if (!(w < 0 && (errno == EINTR || errno == EAGAIN)))
				off = io->input_len; /* the reader is gone: its exit status tells */
			if (off >= io->input_len)
				close_fd(&fds[0]);
		}
		if (p[1].revents)
			drain(&fds[1], out, io->out_max, out_len, out_over);
		if (p[2].revents)
			drain(&fds[2], io->err, io->err_size - 1, err_len, &err_over);
	}
	return KILN_OK;
}

enum kiln_rc kiln_spawn_io(char *const argv[], const struct kiln_spawn_io *io, struct kiln_err *e)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, fds[3], status;
	char *buf = NULL, cmd[120], line[200];
	size_t len = 0, err_len = 0;
	bool over = false;
	enum kiln_rc rc = KILN_OK;
	pid_t pid;

	if (io->err && io->err_size)
		io->err[0] = '\0';
	if (io->out) {
		*io->out = NULL;
		if (!(buf = malloc(io->out_max + 1)))
			return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	if ((io->input && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0) ||
	    (io->out && pipe2(out, O_CLOEXEC) < 0) || (io->err && io->err_size && pipe2(err, O_CLOEXEC) < 0)) {
		rc = kiln_fail_errno(e, "%s: pipe", argv[0]);
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = kiln_fail_errno(e, "%s: fork", argv[0]);
		goto out;
	}
	if (pid == 0)
		child_exec(argv, io, in[1], out[1], err[1]);
	close_fd(&in[1]);
	close_fd(&out[1]);
	close_fd(&err[1]);
	fds[0] = in[0];
	fds[1] = out[0];
	fds[2] = err[0];
	if ((rc = pump(io, fds, buf, &len, &over, &err_len, e)))
		kill(pid, SIGKILL);
	in[0] = fds[0];
	out[0] = fds[1];
	err[0] = fds[2];
	if (io->err && io->err_size)
		io->err[err_len] = '\0';
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rc = kiln_fail_errno(e, "%s: waitpid", argv[0]);
			goto out;
		}
	}
	if (rc)
		goto out;
	if (over)
		rc = kiln_fail(e, KILN_E_LIMIT, "%s: output larger than %zu bytes", argv[0], io->out_max);
	else if (io->status)
		*io->status = status;
	else if (WIFSIGNALED(status))
		rc = kiln_fail(e, KILN_E_EXEC, "`%s`: killed by signal %d%s%s", cmd_str(argv, cmd, sizeof(cmd)),
			       WTERMSIG(status), err_len ? ": " : "",
			       err_len ? first_line(io->err, line, sizeof(line)) : "");
	else if (WEXITSTATUS(status) != 0)
		rc = kiln_fail(e, KILN_E_EXEC, "`%s`: exit status %d%s%s", cmd_str(argv, cmd, sizeof(cmd)),
			       WEXITSTATUS(status), err_len ? ": " : "",
			       err_len ? first_line(io->err, line, sizeof(line)) : "");
out:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	if (io->out && rc == KILN_OK) {
		buf[len] = '\0';
		*io->out = buf;
	} else {
		free(buf);
	}
	return rc;
}

enum kiln_rc kiln_spawn(char *const argv[], char *const env_add[], char **out, size_t max,
			struct kiln_err *e)
{
	struct kiln_spawn_io io = { .env_add = env_add, .out = out, .out_max = max };

	return kiln_spawn_io(argv, &io, e);
}
