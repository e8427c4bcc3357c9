#include "agent/shell.h"
#include "agent/init.h"
#include "agent/log.h"
#include "lib/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BASH "/bin/bash"
#define SH "/bin/sh"
#define HOST_CHUNK 16384
#define DRAIN_MAX_MS 2000            /* output after the shell exited, at most */
#define SHELL_TYPEAHEAD 65536        /* typed before the shell started, at most */
#define SHELL_STEP_127 "{\"step\":\"shell\",\"exit_code\":127}"

struct session {
	struct shell_io *io;
	int master;               /* -1 once it reads EOF or EIO */
	pid_t pid;                /* the shell, leader of its session */
	int exited, status;
	long long exited_at;
	int host_gone;
	long long hangup_at;      /* when SIGKILL follows the SIGHUP; 0: none */
};

static void json_winsize(const uint8_t *payload, uint32_t len, struct winsize *ws, const char **term,
			 char *term_buf, size_t term_size)
{
	json_t *o = json_loadb((const char *)payload, len, 0, NULL);
	json_t *r = json_object_get(o, "rows"), *c = json_object_get(o, "cols"), *t = json_object_get(o, "term");

	if (json_is_integer(r) && json_integer_value(r) > 0 && json_integer_value(r) < 10000)
		ws->ws_row = (unsigned short)json_integer_value(r);
	if (json_is_integer(c) && json_integer_value(c) > 0 && json_integer_value(c) < 10000)
		ws->ws_col = (unsigned short)json_integer_value(c);
	if (term && json_is_string(t) && strlen(json_string_value(t)) < term_size &&
	    strspn(json_string_value(t), "abcdefghijklmnopqrstuvwxyz0123456789-+.") == strlen(json_string_value(t))) {
		snprintf(term_buf, term_size, "%s", json_string_value(t));
		*term = term_buf;
	}
	json_decref(o);
}

/* The shell's environment: env without TERM and PS1, then ours. */
static char **shell_env(char *const env[], const char *term, char *term_kv, size_t size)
{
	size_t n = 0, i, k = 0;
	char **v;

	while (env[n])
		n++;
	v = calloc(n + 3, sizeof(*v));
	if (!v)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(env[i], "TERM=", 5) && strncmp(env[i], "PS1=", 4))
			v[k++] = env[i];
	snprintf(term_kv, size, "TERM=%s", term);
	v[k++] = term_kv;
	v[k++] = "PS1=(kiln: failed job) \\w \\$ ";
	return v;
}

static pid_t spawn_shell(const char *workdir, char **env, const struct winsize *ws, int *master)
{
	char slave[128];
	pid_t pid;
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (m < 0)
		return -errno;
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, slave, sizeof(slave)) != 0) {
		int err = errno;
		close(m);
		return -err;
	}
	ioctl(m, TIOCSWINSZ, ws);
	pid = fork();
	if (pid < 0) {
		int err = errno;
		close(m);
		return -err;
	}
	if (pid == 0) {
		sigset_t none;
		int s, i;

		sigemptyset(&none);
		for (i = 1; i < NSIG; i++)
			signal(i, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		s = open(slave, O_RDWR);
		if (s < 0)
			_exit(126);
		ioctl(s, TIOCSCTTY, 0);
		dup2(s, 0);
		dup2(s, 1);
		dup2(s, 2);
		if (s > 2)
			close(s);
		if (chdir(workdir) < 0)
			fprintf(stderr, "kiln-agent: %s: %s\n", workdir, strerror(errno));
		if (access(BASH, X_OK) == 0)
			execve(BASH, (char *[]){ "bash", "--noprofile", "--norc", "-i", NULL }, env);
		execve(SH, (char *[]){ "sh", "-i", NULL }, env);
		fprintf(stderr, "kiln-agent: cannot run a shell: %s\n", strerror(errno));
		_exit(127);
	}
	*master = m;
	return pid;
}

static void hang_up(struct session *s)
{
	if (s->exited || s->hangup_at)
		return;
	kill(-s->pid, SIGHUP);
	kill(s->pid, SIGHUP);
	s->hangup_at = mono_ms() + SHELL_HANGUP_GRACE_MS;
}

static void send_or_lose(struct session *s, uint8_t type, const void *p, size_t n)
{
	if (s->host_gone)
		return;
	if (ap_send(s->io->host, type, p, (uint32_t)n) < 0) {
		s->host_gone = 1;
		hang_up(s);
	}
}

/* One frame from the host while the shell runs. */
static void take(struct session *s, uint8_t type, const uint8_t *payload, uint32_t len)
{
	struct winsize ws = { 0 };
	size_t done = 0;

	switch (type) {
	case AP_STDIN:
		while (s->master >= 0 && done < len) {
			ssize_t w = write(s->master, payload + done, len - done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				break;
			done += (size_t)w;
		}
		return;
	case AP_WINSIZE:
		if (s->master >= 0 && ioctl(s->master, TIOCGWINSZ, &ws) == 0) {
			json_winsize(payload, len, &ws, NULL, NULL, 0);
			ioctl(s->master, TIOCSWINSZ, &ws);
		}
		return;
	case AP_CANCEL:
		hang_up(s);
		return;
	default:
		say("shell: ignoring a %s frame from the host", ap_type_name(type));
	}
}

/* Read from the host; 0, or -1 once it is gone. */
static int pump_host(struct shell_io *io, void (*fn)(void *, uint8_t, const uint8_t *, uint32_t), void *arg)
{
	uint8_t buf[HOST_CHUNK], type;
	const uint8_t *payload;
	uint32_t len;
	ssize_t n = read(io->host, buf, sizeof(buf));
	int rc;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0 || ap_reader_feed(io->rd, buf, (size_t)n) < 0)
		return -1;
	while ((rc = ap_reader_next(io->rd, &type, &payload, &len)) > 0)
		fn(arg, type, payload, len);
	return rc < 0 ? -1 : 0;
}

static void take_cb(void *arg, uint8_t type, const uint8_t *payload, uint32_t len)
{
	take(arg, type, payload, len);
}

/* What the hold is waiting for, and what came with SHELL before the shell
 * could take it. */
struct wait {
	int shell, cancel;
	struct winsize ws;
	const char *term;
	char term_buf[64];
	char typed[SHELL_TYPEAHEAD];
	size_t n_typed;
};

static void wait_cb(void *arg, uint8_t type, const uint8_t *payload, uint32_t len)
{
	struct wait *w = arg;

	if (type == AP_SHELL && !w->shell) {
		w->shell = 1;
		json_winsize(payload, len, &w->ws, &w->term, w->term_buf, sizeof(w->term_buf));
	} else if (type == AP_CANCEL) {
		w->cancel = 1;
	} else if (type == AP_STDIN && w->shell && w->n_typed + len <= sizeof(w->typed)) {
		memcpy(w->typed + w->n_typed, payload, len);
		w->n_typed += len;
	} else if (type == AP_WINSIZE && w->shell) {
		json_winsize(payload, len, &w->ws, NULL, NULL, 0);
	} else {
		say("held job: ignoring a %s frame from the host", ap_type_name(type));
	}
}

static void drain_signals(struct session *s)
{
	struct signalfd_siginfo si;

	while (read(s->io->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	if (!s->exited && init_reap(s->pid, &s->status)) {
		s->exited = 1;
		s->exited_at = mono_ms();
	}
}

int shell_hold(struct shell_io *io, const struct job_spec *spec, char *const env[])
{
	struct wait w = { .ws = { .ws_row = 24, .ws_col = 80 }, .term = "xterm" };
	struct session s = { .io = io, .master = -1, .pid = -1 };
	char term_kv[80], **senv = NULL, out[SHELL_OUTPUT_CHUNK];
	const uint8_t *payload;
	uint32_t len;
	uint8_t type;
	int rc, code = -1;

	/* Frames that came with the last read. */
	while ((rc = ap_reader_next(io->rd, &type, &payload, &len)) > 0)
		wait_cb(&w, type, payload, len);
	if (rc < 0)
		return -1;
	while (!w.shell && !w.cancel) {
		struct pollfd p = { io->host, POLLIN, 0 };

		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return -1;
		if (p.revents && pump_host(io, wait_cb, &w) < 0)
			return -1;
	}
	if (w.cancel)
		return -1;
	senv = shell_env(env, w.term, term_kv, sizeof(term_kv));
	s.pid = senv ? spawn_shell(spec->workdir, senv, &w.ws, &s.master) : -ENOMEM;
	free(senv);
	if (s.pid < 0) {
		int n = snprintf(out, sizeof(out), "kiln-agent: cannot open a shell: %s\r\n", strerror((int)-s.pid));

		send_or_lose(&s, AP_OUTPUT, out, (size_t)n);
		send_or_lose(&s, AP_STEP, SHELL_STEP_127, strlen(SHELL_STEP_127));
		return -1;
	}
	say("shell: started (pid %d, %ux%u)", (int)s.pid, w.ws.ws_col, w.ws.ws_row);
	if (w.n_typed)
		take(&s, AP_STDIN, (const uint8_t *)w.typed, (uint32_t)w.n_typed);
	/* Until the shell has exited and its terminal has nothing more. */
	while (!s.exited || s.master >= 0) {
		struct pollfd p[3] = {
			{ .fd = io->sigfd, .events = POLLIN },
			{ .fd = s.host_gone ? -1 : io->host, .events = POLLIN },
			{ .fd = s.master, .events = POLLIN },
		};
		long long left = s.hangup_at ? s.hangup_at - mono_ms() : -1;

		if (s.hangup_at && left <= 0 && !s.exited) {
			kill(-s.pid, SIGKILL);
			kill(s.pid, SIGKILL);
			s.hangup_at = 0;
		}
		/* After the exit, a quiet terminal is a drained one; a chatty
		 * straggler gets DRAIN_MAX_MS. */
		if (s.exited && mono_ms() - s.exited_at > DRAIN_MAX_MS)
			break;
		if (poll(p, 3, s.exited ? 200 : left < 0 ? 1000 : (int)left) == 0 && s.exited)
			break;
		if (p[0].revents)
			drain_signals(&s);
		if (p[1].revents && pump_host(io, take_cb, &s) < 0) {
			s.host_gone = 1;
			hang_up(&s);
		}
		if (p[2].revents) {
			ssize_t n = read(s.master, out, sizeof(out));

			if (n > 0) {
				send_or_lose(&s, AP_OUTPUT, out, (size_t)n);
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(s.master);
				s.master = -1; /* EIO: the shell and all it started closed the terminal */
			}
		}
		if (!s.exited)
			drain_signals(&s);
	}
	if (s.master >= 0)
		close(s.master);
	kill(-s.pid, SIGKILL);
	code = init_exit_code(s.status);
	say("shell: exit status %d", code);
	{
		json_t *o = json_pack("{s:s, s:i}", "step", "shell", "exit_code", code);
		char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

		if (text)
			send_or_lose(&s, AP_STEP, text, strlen(text));
		free(text);
		json_decref(o);
	}
	return code;
}
