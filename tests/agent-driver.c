/*
 * agent-driver: play the host's side of docs/agent-protocol.md against
 * `kiln-agent --serve-fd 3`, for tests/agent.sh.
 *
 *   agent-driver [-c TEXT [-g]] [-C TEXT] [-i|-I TEXT] [-e EVENTS] [-t SECONDS] AGENT JOBFILE
 *   agent-driver -u SOCKET [same options] JOBFILE
 *
 * Starts AGENT on one end of a socketpair, expects HELLO, sends JOBFILE's
 * bytes verbatim as the JOB frame (so a test can send broken JSON), then
 * prints every OUTPUT payload on stdout as it comes and, at the end, a line
 * "EXIT <exit_code> <failure_reason or ->" (or "NOEXIT" when the agent ended
 * without one).
 *   -c TEXT  send CANCEL once the log holds TEXT (-g: graceful)
 *   -C TEXT  close the host stream (shutdown for writing) once the log holds TEXT
 *   -i TEXT  send the agent SIGINT once the log holds TEXT (-I: SIGTERM)
 *   -e FILE  write "<ms since JOB> <FRAME> <detail>" for every frame, and
 *            "<ms> AGENT-EXIT <status>" at the end
 *   -t SECS  give up (kill the agent, exit 1) after this long; default 30
 *   -u PATH  instead of starting an agent, connect to the Unix socket PATH
 *            (retrying until -t runs out): a VMM's end of a guest's agent
 *            channel, for manual checks of a booted agent
 * The agent's stdin is a pipe the driver never writes nor closes, so a step
 * that read the agent's stdin would hang. Exit status 0 when the protocol
 * was followed (HELLO first, nothing after EXIT, the agent's exit status
 * equal to EXIT's code), 1 otherwise, with the reason on stderr.
 */
#include "agent/proto.h"
#include "lib/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG_KEEP (1u << 20)   /* log kept for -c/-C matching; more is printed, not kept */

struct opts {
	const char *cancel_on, *close_on, *sigint_on, *sigterm_on, *events, *agent, *jobfile, *unix_path;
	int graceful, timeout_s;
};

struct state {
	int sock;
	FILE *ev;
	long long t0;
	char *log;            /* the first LOG_KEEP bytes of output, NUL-terminated */
	size_t loglen;
	pid_t agent;          /* -1 with -u */
	int hello, exited, cancelled, closed, signalled, bad;
	int exit_code;
	char reason[64];
	int log_ends_nl;
};

static void event(struct state *s, const char *what, const char *detail)
{
	if (s->ev) {
		fprintf(s->ev, "%lld %s %s\n", mono_ms() - s->t0, what, detail);
		fflush(s->ev);
	}
}

static void protocol_error(struct state *s, const char *msg)
{
	fprintf(stderr, "agent-driver: %s\n", msg);
	s->bad = 1;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	int c;

	o->timeout_s = 30;
	while ((c = getopt(argc, argv, "c:gC:i:I:e:t:u:")) != -1) {
		switch (c) {
		case 'c': o->cancel_on = optarg; break;
		case 'g': o->graceful = 1; break;
		case 'C': o->close_on = optarg; break;
		case 'i': o->sigint_on = optarg; break;
		case 'I': o->sigterm_on = optarg; break;
		case 'e': o->events = optarg; break;
		case 't': o->timeout_s = atoi(optarg); break;
		case 'u': o->unix_path = optarg; break;
		default: return -1;
		}
	}
	if (argc - optind != (o->unix_path ? 1 : 2))
		return -1;
	o->agent = o->unix_path ? NULL : argv[optind];
	o->jobfile = argv[argc - 1];
	return 0;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

/* The agent on fd 3, its stdin a pipe that never ends. */
static pid_t spawn_agent(const char *agent, int fd, int *stdin_w)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[0], 0);
		dup2(fd, 3);
		execl(agent, agent, "--serve-fd", "3", (char *)NULL);
		perror(agent);
		_exit(127);
	}
	close(p[0]);
	*stdin_w = p[1];
	return pid;
}

/* Connect to a listening Unix socket, retrying while it is not there yet. */
static int connect_unix(const char *path, int timeout_s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long long deadline = mono_ms() + (long long)timeout_s * 1000;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		if (mono_ms() >= deadline)
			return -1;
		usleep(100000);
	}
}

static void on_output(struct state *s, const struct opts *o, const uint8_t *p, uint32_t len)
{
	char detail[32];
	size_t keep = len;

	snprintf(detail, sizeof(detail), "%u", len);
	event(s, "OUTPUT", detail);
	fwrite(p, 1, len, stdout);
	fflush(stdout);
	if (len)
		s->log_ends_nl = p[len - 1] == '\n';
	if (s->loglen + keep > LOG_KEEP)
		keep = LOG_KEEP - s->loglen;
	memcpy(s->log + s->loglen, p, keep);
	s->loglen += keep;
	s->log[s->loglen] = '\0';
	if (o->cancel_on && !s->cancelled && strstr(s->log, o->cancel_on)) {
		const char *msg = o->graceful ? "{\"graceful\": true}" : "{\"graceful\": false}";

		s->cancelled = 1;
		event(s, "SEND", "CANCEL");
		if (ap_send(s->sock, AP_CANCEL, msg, (uint32_t)strlen(msg)) < 0)
			protocol_error(s, "cannot send CANCEL");
	}
	if (s->agent > 0 && !s->signalled) {
		int sig = o->sigint_on && strstr(s->log, o->sigint_on) ? SIGINT :
			  o->sigterm_on && strstr(s->log, o->sigterm_on) ? SIGTERM : 0;

		if (sig) {
			s->signalled = 1;
			event(s, "SEND", strsignal(sig));
			kill(s->agent, sig);
		}
	}
	if (o->close_on && !s->closed && strstr(s->log, o->close_on)) {
		s->closed = 1;
		event(s, "SEND", "CLOSE");
		shutdown(s->sock, SHUT_WR);
	}
}

static void on_exit_frame(struct state *s, const uint8_t *p, uint32_t len)
{
	json_t *o = json_loadb((const char *)p, len, 0, NULL);
	json_t *code = json_object_get(o, "exit_code");
	json_t *reason = json_object_get(o, "failure_reason");

	if (!json_is_integer(code) || (reason && !json_is_string(reason))) {
		protocol_error(s, "EXIT payload malformed");
	} else {
		s->exit_code = (int)json_integer_value(code);
		snprintf(s->reason, sizeof(s->reason), "%s", reason ? json_string_value(reason) : "-");
	}
	s->exited = 1;
	json_decref(o);
}

static void on_frame(struct state *s, const struct opts *o, uint8_t type, const uint8_t *p, uint32_t len)
{
	char detail[256];

	if (s->exited)
		protocol_error(s, "frame after EXIT");
	if (!s->hello && type != AP_HELLO)
		protocol_error(s, "first frame is not HELLO");
	switch (type) {
	case AP_HELLO:
		s->hello = 1;
		event(s, "HELLO", "");
		return;
	case AP_OUTPUT:
		on_output(s, o, p, len);
		return;
	case AP_STEP:
	case AP_EXIT:
		snprintf(detail, sizeof(detail), "%.*s", (int)(len < 200 ? len : 200), (const char *)p);
		event(s, ap_type_name(type), detail);
		if (type == AP_EXIT)
			on_exit_frame(s, p, len);
		return;
	default:
		protocol_error(s, "unexpected frame type from the agent");
	}
}

/* Read frames until the agent closes its end or the deadline passes.
 * 0 at EOF, -1 on timeout. */
static int converse(struct state *s, const struct opts *o, const char *job, size_t joblen)
{
	struct ap_reader rd;
	long long deadline = mono_ms() + (long long)o->timeout_s * 1000;
	int sent = 0, rc = 0;

	ap_reader_init(&rd);
	for (;;) {
		struct pollfd p = { .fd = s->sock, .events = POLLIN };
		uint8_t buf[65536], type;
		const uint8_t *payload;
		uint32_t len;
		ssize_t n;
		int r;

		if (s->hello && !sent) {
			s->t0 = mono_ms();
			event(s, "SEND", "JOB");
			if (ap_send(s->sock, AP_JOB, job, (uint32_t)joblen) < 0)
				protocol_error(s, "cannot send JOB");
			sent = 1;
		}
		if (mono_ms() >= deadline) {
			rc = -1;
			break;
		}
		if (poll(&p, 1, (int)(deadline - mono_ms())) <= 0)
			continue;
		n = read(s->sock, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (ap_reader_feed(&rd, buf, (size_t)n) < 0)
			break;
		while ((r = ap_reader_next(&rd, &type, &payload, &len)) > 0)
			on_frame(s, o, type, payload, len);
		if (r < 0) {
			protocol_error(s, "malformed frame from the agent");
			break;
		}
	}
	ap_reader_free(&rd);
	return rc;
}

/* The final line, on a line of its own. */
static void report(struct state *s)
{
	if (s->loglen && !s->log_ends_nl)
		putchar('\n');
	if (s->exited)
		printf("EXIT %d %s\n", s->exit_code, s->reason);
	else
		printf("NOEXIT\n");
	if (!s->hello)
		protocol_error(s, "no HELLO");
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct state s = { .sock = -1, .exit_code = -1, .agent = -1 };
	int sv[2] = { -1, -1 }, stdin_w = -1, status = 0, rc = 1;
	size_t joblen = 0;
	char *job = NULL, detail[32];
	pid_t pid = -1;

	if (parse_opts(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: agent-driver [-c TEXT [-g]] [-C TEXT] [-i|-I TEXT] [-e EVENTS] [-t SECONDS] {AGENT | -u SOCKET} JOBFILE\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	s.log = malloc(LOG_KEEP + 1);
	job = slurp(o.jobfile, &joblen);
	if (!s.log || !job) {
		fprintf(stderr, "agent-driver: %s: %s\n", o.jobfile, strerror(errno));
		goto out;
	}
	s.log[0] = '\0';
	if (o.events && !(s.ev = fopen(o.events, "w"))) {
		fprintf(stderr, "agent-driver: %s: %s\n", o.events, strerror(errno));
		goto out;
	}
	if (o.unix_path) {
		s.t0 = mono_ms();
		s.sock = connect_unix(o.unix_path, o.timeout_s);
		if (s.sock < 0) {
			fprintf(stderr, "agent-driver: %s: %s\n", o.unix_path, strerror(errno));
			goto out;
		}
		if (converse(&s, &o, job, joblen) < 0)
			protocol_error(&s, "timed out");
		report(&s);
		rc = s.bad;
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		perror("agent-driver: socketpair");
		goto out;
	}
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	s.t0 = mono_ms();
	pid = spawn_agent(o.agent, sv[1], &stdin_w);
	close(sv[1]);
	sv[1] = -1;
	if (pid < 0) {
		perror("agent-driver: fork");
		goto out;
	}
	s.sock = sv[0];
	s.agent = pid;
	if (converse(&s, &o, job, joblen) < 0) {
		fprintf(stderr, "agent-driver: timed out after %d s; killing the agent\n", o.timeout_s);
		kill(pid, SIGKILL);
		s.bad = 1;
	}
	waitpid(pid, &status, 0);
	snprintf(detail, sizeof(detail), "%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	event(&s, "AGENT-EXIT", detail);
	pid = -1;
	report(&s);
	if (s.exited && (!WIFEXITED(status) || WEXITSTATUS(status) != (s.exit_code & 0xff)))
		protocol_error(&s, "the agent's exit status differs from EXIT's exit_code");
	rc = s.bad;
out:
	if (s.sock >= 0 && s.sock != sv[0])
		close(s.sock);
	if (sv[0] >= 0)
		close(sv[0]);
	if (stdin_w >= 0)
		close(stdin_w);
	if (s.ev)
		fclose(s.ev);
	free(s.log);
	free(job);
	return rc;
}
