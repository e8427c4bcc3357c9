#include "agent/step.h"
#include "agent/init.h"
#include "agent/script.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <grp.h>

/* gitlab-runner's shell detection order (shells/bash.go). */
static const char *const shells[] = { "/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash", "/usr/local/bin/sh",
				      "/usr/bin/sh", "/bin/sh", "/busybox/sh" };
static uid_t run_uid;
static gid_t run_gid;
static char *const *entrypoint;
static size_t n_entrypoint;

void step_run_as(uid_t uid, gid_t gid)
{
	run_uid = uid;
	run_gid = gid;
}

void step_entrypoint(char *const *argv, size_t n)
{
	entrypoint = argv;
	n_entrypoint = n;
}

/* prog as execvpe would find it, but on the PATH of env (the job's), not
 * the agent's: a name without '/' is looked up in each PATH folder, the
 * first executable wins. prog itself when nothing matches (exec then says
 * why). In the child only. */
static const char *find_program(const char *prog, char *const env[], char *buf, size_t size)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *p, *end;
	size_t i;

	if (strchr(prog, '/'))
		return prog;
	for (i = 0; env[i]; i++)
		if (!strncmp(env[i], "PATH=", 5))
			path = env[i] + 5;
	for (p = path; *p; p = *end ? end + 1 : end) {
		int n;

		end = strchrnul(p, ':');
		/* An empty PATH entry is the current folder, as for execvp. */
		n = end == p ? snprintf(buf, size, "./%s", prog) : snprintf(buf, size, "%.*s/%s", (int)(end - p), p, prog);
		if (n > 0 && (size_t)n < size && access(buf, X_OK) == 0)
			return buf;
	}
	return prog;
}

/* Set NAME=VALUE in env[0..*n), replacing an entry with the same NAME. The
 * vector has room for one more; entry is moved in (freed on failure). */
static int env_put(char **env, size_t *n, char *entry)
{
	size_t i, nlen;

	if (!entry)
		return -ENOMEM;
	nlen = strcspn(entry, "=") + 1;
	for (i = 0; i < *n; i++) {
		if (!strncmp(env[i], entry, nlen)) {
			free(env[i]);
			env[i] = entry;
			return 0;
		}
	}
	env[(*n)++] = entry;
	return 0;
}

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);

	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

/* step_env's vector with room for extra more entries. */
static char **env_build(const struct job_spec *spec, const char *job_status, size_t extra)
{
	char **env = calloc(spec->nenv + 4 + extra, sizeof(*env));
	size_t n = 0, i;
	int rc;

	if (!env)
		return NULL;
	rc = env_put(env, &n, strdup("PATH=" INIT_PATH));
	if (!rc)
		rc = env_put(env, &n, strdup("HOME=/root"));
	for (i = 0; !rc && i < spec->nenv; i++)
		rc = env_put(env, &n, strdup(spec->env[i]));
	if (!rc && job_status)
		rc = env_put(env, &n, concat("CI_JOB_STATUS=", job_status));
	if (rc)
		step_env_free(&env);
	return env;
}

char **step_env(const struct job_spec *spec, const char *job_status)
{
	return env_build(spec, job_status, 0);
}

char **step_env_exec(const struct job_spec *spec, const struct step_user *u)
{
	char **env = env_build(spec, NULL, 4);
	size_t n = 0;
	int rc = 0;

	if (!env || !u->name[0])
		return env;
	while (env[n])
		n++;
	rc = env_put(env, &n, concat("HOME=", u->home));
	if (!rc)
		rc = env_put(env, &n, concat("USER=", u->name));
	if (!rc)
		rc = env_put(env, &n, concat("LOGNAME=", u->name));
	if (!rc)
		rc = env_put(env, &n, strdup("SHELL=/bin/bash"));
	if (rc)
		step_env_free(&env);
	return env;
}

void step_env_free(char ***env)
{
	size_t i;

	if (!*env)
		return;
	for (i = 0; (*env)[i]; i++)
		free((*env)[i]);
	free(*env);
	*env = NULL;
}

int step_write_script(const char *path, char *const *script, size_t n)
{
	char *text = NULL;
	size_t len = 0, done = 0;
	int fd = -1, rc;

	rc = script_render((const char *const *)script, n, &text, &len);
	if (rc)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0700);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			goto out;
		}
		done += (size_t)w;
	}
	rc = close(fd) < 0 ? -errno : 0;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return rc;
}

int step_mkdir_parents(const char *dir, mode_t mode)
{
	char buf[PATH_MAX];
	size_t i, len = strlen(dir);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, dir, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = i < len ? '/' : '\0';
	}
	return 0;
}

/* stdin that reads as empty: /dev/null, or where the image lacks it the
 * read end of a pipe whose write end is already closed. */
static void stdin_null(void)
{
	int fd = open("/dev/null", O_RDONLY), p[2];

	if (fd < 0 && pipe(p) == 0) {
		close(p[1]);
		fd = p[0];
	}
	if (fd > 0) {
		dup2(fd, 0);
		close(fd);
	}
}

/* In a step's child, before anything of its own: a session and process
 * group of its own, default signals, stdin in (-1: empty), stdout and
 * stderr out, no other descriptor, cwd workdir (created with parents).
 * Exits 1 when the workdir cannot be entered. */
static void child_setup(const char *workdir, int in, int out)
{
	sigset_t none;
	int sig, rc, fd;

	setsid();
	/* PID 1 blocks and ignores things a job must not inherit. */
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (in >= 0) {
		dup2(in, 0);
		fcntl(0, F_SETFD, 0);
	} else {
		stdin_null();
	}
	dup2(out, 1);
	dup2(out, 2);
	/* dup2 onto itself keeps close-on-exec; clear it either way. */
	fcntl(1, F_SETFD, 0);
	fcntl(2, F_SETFD, 0);
	/* Nothing else of the agent's (the host stream above all) reaches the
	 * job, close-on-exec or not. */
	if (close_range(3, ~0u, 0) < 0) {
		for (fd = 3; fd < 1024; fd++)
			close(fd);
	}
	rc = step_mkdir_parents(workdir, 0755);
	if (rc < 0 || chdir(workdir) < 0) {
		dprintf(2, "kiln-agent: workdir %s: %s\n", workdir, strerror(rc < 0 ? -rc : errno));
		_exit(1);
	}
}

/* The shell a step runs in: the first of shells[] that is there. */
static const char *pick_shell(void)
{
	size_t i;

	for (i = 0; i < sizeof(shells) / sizeof(shells[0]); i++)
		if (access(shells[i], X_OK) == 0)
			return shells[i];
	return NULL;
}

void step_warm(void)
{
	char *const env[] = { "PATH=" INIT_PATH, NULL };
	const char *shell = pick_shell();
	pid_t pid;
	int i, fd;

	if (!shell)
		return;
	pid = fork();
	if (pid == 0) {
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || chdir("/") < 0)
			_exit(126);
		close_range(3, ~0u, 0);
		execve(shell, (char *const[]){ (char *)shell, "-c", ":", NULL }, env);
		_exit(127);
	}
	/* `:` ends at once; a shell that does not is not waited for long. */
	for (i = 0; pid > 0 && i < STEP_WARM_WAIT_MS / 10; i++) {
		if (waitpid(pid, NULL, WNOHANG) != 0)
			return;
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* In the child: everything between fork and exec. Never returns. */
static void __attribute__((noreturn)) child(const char *script_path, const char *workdir, char *const env[], int xtrace,
					   int out)
{
	/* xtrace: CI_DEBUG_TRACE, gitlab-runner's `set -o xtrace`. */
	const char *bash[] = { NULL, "--noprofile", "--norc", "-eo", "pipefail", xtrace ? "-x" : script_path,
			       xtrace ? script_path : NULL, NULL };
	const char *sh[] = { NULL, xtrace ? "-ex" : "-e", script_path, NULL };
	const char *shell = NULL, **argv, **ep, *prog;
	char prog_buf[PATH_MAX];
	size_t i;

	child_setup(workdir, -1, out);
	shell = pick_shell();
	if (!shell) {
		dprintf(2, "kiln-agent: shell not found: the image has none of bash or sh in /usr/local/bin, "
			   "/usr/bin, /bin or /busybox\n");
		_exit(1);
	}
	/* The image's user (an OCI image job): it owns its script. */
	if (run_uid || run_gid) {
		char dir[4096], *slash;

		snprintf(dir, sizeof(dir), "%s", script_path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir)
			*slash = '\0';
		if (chown(dir, run_uid, run_gid) < 0 || chown(script_path, run_uid, run_gid) < 0 ||
		    chown(workdir, run_uid, run_gid) < 0 || setgroups(0, NULL) < 0 || setgid(run_gid) < 0 ||
		    setuid(run_uid) < 0) {
			dprintf(2, "kiln-agent: running as %u:%u: %s\n", (unsigned)run_uid, (unsigned)run_gid,
				strerror(errno));
			_exit(1);
		}
	}
	bash[0] = sh[0] = shell;
	argv = strstr(shell, "bash") ? bash : sh;
	if (n_entrypoint) {
		/* docker's container: Entrypoint with the shell as its Cmd, so an
		 * image's entrypoint script sets things up and then execs "$@". */
		for (i = 0; argv[i]; i++)
			;
		ep = calloc(n_entrypoint + i + 1, sizeof(*ep));
		if (!ep)
			_exit(1);
		memcpy(ep, entrypoint, n_entrypoint * sizeof(*ep));
		memcpy(ep + n_entrypoint, argv, (i + 1) * sizeof(*ep));
		prog = find_program(ep[0], env, prog_buf, sizeof(prog_buf));
		execve(prog, (char *const *)ep, env);
		dprintf(2, "kiln-agent: cannot run the image's entrypoint %s: %s\n", ep[0], strerror(errno));
		_exit(127);
	}
	execve(shell, (char *const *)argv, env);
	dprintf(2, "kiln-agent: cannot run the shell %s: %s\n", shell, strerror(errno));
	_exit(127);
}

static void __attribute__((noreturn)) exec_child(const struct job_spec *spec, char *const env[],
						 const struct step_user *u, int in, int out);

/* What a step's child runs: a shell step's or an exec step's, never returning. */
struct child_call {
	const char *script_path, *workdir;   /* a shell step */
	char *const *env;
	int xtrace;
	const struct job_spec *spec;         /* an exec step */
	const struct step_user *u;
	int in;
};

/* Fork c's child with its output on a new pipe: its pid, *out_fd the
 * read end (non-blocking, close-on-exec); or -errno with *out_fd -1. */
static pid_t spawn(const struct child_call *c, int *out_fd)
{
	int p[2] = { -1, -1 };
	pid_t pid;

	*out_fd = -1;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		pid = -errno;
		close(p[0]);
		p[0] = -1;
		goto out;
	}
	if (pid == 0 && c->spec)
		exec_child(c->spec, c->env, c->u, c->in, p[1]);
	if (pid == 0)
		child(c->script_path, c->workdir, c->env, c->xtrace, p[1]);
	/* Non-blocking: the job loop drains it until EAGAIN, then polls. */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*out_fd = p[0];
out:
	close(p[1]);
	return pid;
}

pid_t step_spawn(const char *script_path, const char *workdir, char *const env[], int xtrace, int *out_fd)
{
	struct child_call c = { .script_path = script_path, .workdir = workdir, .env = env, .xtrace = xtrace, .in = -1 };

	return spawn(&c, out_fd);
}

/* In the exec step's child: everything between fork and exec. */
static void __attribute__((noreturn)) exec_child(const struct job_spec *spec, char *const env[],
						 const struct step_user *u, int in, int out)
{
	char prog_buf[PATH_MAX];
	const char *prog;

	child_setup(spec->workdir, in, out);
	/* Groups, then gid, then uid: each needs the privilege the next drops.
	 * setpriv --init-groups did this when a shell started run.sh. */
	if (u->name[0] && (setgroups(u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)) {
		dprintf(2, "kiln-agent: running as %s (%u:%u): %s\n", u->name, (unsigned)u->uid, (unsigned)u->gid,
			strerror(errno));
		_exit(1);
	}
	prog = find_program(spec->exec_argv[0], env, prog_buf, sizeof(prog_buf));
	execve(prog, spec->exec_argv, env);
	dprintf(2, "kiln-agent: cannot run %s: %s\n", spec->exec_argv[0], strerror(errno));
	_exit(127);
}

pid_t step_spawn_exec(const struct job_spec *spec, char *const env[], const struct step_user *u, int *out_fd)
{
	struct child_call c = { .spec = spec, .env = env, .u = u, .in = -1 };
	int in[2] = { -1, -1 };
	pid_t pid;

	*out_fd = -1;
	if (spec->exec_stdin) {
		ssize_t n;

		if (pipe2(in, O_CLOEXEC | O_NONBLOCK) < 0)
			return -errno;
		/* Non-blocking: a pipe smaller than its default (a tuned
		 * pipe-user-pages limit) fails here instead of hanging PID 1. */
		n = spec->exec_stdin_len ? write(in[1], spec->exec_stdin, spec->exec_stdin_len) : 0;
		if (n < 0 || (size_t)n != spec->exec_stdin_len) {
			pid = n < 0 ? -errno : -E2BIG;
			goto out;
		}
		close(in[1]);
		in[1] = -1;
		fcntl(in[0], F_SETFL, 0);
		c.in = in[0];
	}
	pid = spawn(&c, out_fd);
out:
	if (in[0] >= 0)
		close(in[0]);
	if (in[1] >= 0)
		close(in[1]);
	return pid;
}
