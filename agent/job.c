#include "build-config.h"

#include "agent/job.h"
#include "agent/image.h"
#include "agent/init.h"
#include "agent/jobspec.h"
#include "agent/log.h"
#include "agent/shell.h"
#include "agent/step.h"
#include "agent/proto.h"
#include "agent/restore.h"
#include "lib/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How far the guest's clock may be from the host's before it is set. */
#define CLOCK_SLACK_S 0.1

#define HOST_READ_CHUNK 16384
#define POLL_MAX_MS 60000
#define FAIL_SYSTEM "runner_system_failure"

enum cancel {
	CANCEL_NONE,
	CANCEL_GRACEFUL,   /* stop the step; after_script still runs */
	CANCEL_HARD,       /* stop the step; nothing more runs */
};

enum stop {
	STOP_NONE,
	STOP_TIMEOUT,
	STOP_CANCEL,
};

/* The step in progress. */
struct run {
	const struct job_step *step;
	pid_t pid;              /* also its process group */
	int out;                /* read end of its output pipe; -1 once drained */
	int exited, status;     /* wait status, once the shell is reaped */
	long long deadline;     /* when its timeout hits (monotonic ms) */
	long long kill_at;      /* when SIGKILL is due; 0 when not */
	long long exited_at;    /* when the shell was reaped */
	long long quiet_from;   /* exit or last output after it, for the drain */
	enum stop stop;
};

struct job {
	int host;               /* the host stream (not ours to close) */
	int sigfd;
	int host_eof;           /* no more reading: EOF, error or protocol error */
	int host_dead;          /* no more writing */
	struct ap_reader rd;
	uint8_t *job_json;      /* the JOB payload, once it came */
	size_t job_len;
	struct job_spec spec;
	char tmpdir[PATH_MAX];  /* the step scripts; "" until created */
	pid_t *groups;          /* each started step's group, for the last kill */
	size_t ngroups;
	struct run *run;        /* NULL between steps */
	enum cancel cancel;
	int reopened;           /* times the host stream was opened again */
	char lost_why[96];      /* why it was lost, said once it is open again */
	int failed;             /* an on_success step failed */
	int exit_code;
	const char *reason;     /* failure_reason, NULL on success */
};

/* --- sending ------------------------------------------------------------ */

static void request_cancel(struct job *j, int graceful);

/* Send one frame unless the host is gone. A failed write means it is: the
 * job is then cancelled hard. */
static void send_frame(struct job *j, uint8_t type, const void *payload, size_t len)
{
	int rc;

	if (j->host_dead)
		return;
	rc = ap_send(j->host, type, payload, (uint32_t)len);
	if (rc < 0) {
		say("sending %s: %s", ap_type_name(type), strerror(-rc));
		j->host_dead = j->host_eof = 1;
		request_cancel(j, 0);
	}
}

/* Send a JSON frame and drop the reference to obj. */
static void send_json(struct job *j, uint8_t type, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	if (text)
		send_frame(j, type, text, strlen(text));
	else
		say("cannot encode %s", ap_type_name(type));
	free(text);
	json_decref(obj);
}

/* One line of the agent's own into the job log (and on the console). */
static void job_log(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_log(struct job *j, const char *fmt, ...)
{
	char line[1024];
	size_t n;
	va_list ap;

	/* Leave room for the newline that makes it a log line. */
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	say("%s", line);
	n = strlen(line);
	line[n++] = '\n';
	send_frame(j, AP_OUTPUT, line, n);
}

/* --- stopping steps ----------------------------------------------------- */

/* Signal the step's whole group. The child may not have called setsid()
 * yet; the shell alone is better than nothing then. */
static void kill_group(pid_t pid, int sig)
{
	if (kill(-pid, sig) < 0 && errno == ESRCH)
		kill(pid, sig);
}

/* SIGTERM the running step now, SIGKILL it grace_ms later (or sooner if a
 * kill is already due sooner). The first reason to stop it is kept. */
static void stop_run(struct run *r, enum stop why, int grace_ms)
{
	long long at = mono_ms() + grace_ms;

	if (r->exited)
		return;
	kill_group(r->pid, SIGTERM);
	if (r->stop == STOP_NONE)
		r->stop = why;
	if (!r->kill_at || at < r->kill_at)
		r->kill_at = at;
}

static void request_cancel(struct job *j, int graceful)
{
	enum cancel want = graceful ? CANCEL_GRACEFUL : CANCEL_HARD;

	if (want <= j->cancel)
		return;
	j->cancel = want;
	if (!j->run)
		return;
	/* A graceful cancel lets after_script finish: that is what it is for. */
	if (graceful && jobspec_is_after_script(j->run->step))
		return;
	stop_run(j->run, STOP_CANCEL, graceful ? JOB_KILL_GRACE_MS : JOB_KILL_GRACE_HARD_MS);
}

/* --- input: host frames and signals ------------------------------------- */

static job_reopen_fn reopen_fn;

/* Whether a lost stream is opened again (reopen_host): before any job. */
static int may_reopen(const struct job *j)
{
	return reopen_fn && !j->job_json && j->reopened < JOB_REOPEN_MAX;
}

/* The host closed the stream or broke the protocol: nothing more goes to
 * it either. (On a virtio-console port a write would block until the host
 * reconnects, so even EXIT is not attempted.) A stream that is opened
 * again (a restored VM's, after the transport reset) is said after its
 * new HELLO: the console is slow, and this is a restore's critical path. */
static void host_lost(struct job *j, const char *why)
{
	if (may_reopen(j))
		snprintf(j->lost_why, sizeof(j->lost_why), "%s", why);
	else
		say("host stream: %s; cancelling the job", why);
	j->host_eof = j->host_dead = 1;
	request_cancel(j, 0);
}

static void take_cancel(struct job *j, const uint8_t *payload, uint32_t len)
{
	json_t *o = json_loadb((const char *)payload, len, 0, NULL);
	json_t *g = json_object_get(o, "graceful");

	/* A CANCEL that cannot be read still means stop; the safe reading is
	 * the hard one. */
	request_cancel(j, json_is_true(g));
	json_decref(o);
}

/* A restored VM's new identity: a bad one is said, and the job still runs
 * (the host logs that it sent one). */
static void take_restored(const uint8_t *payload, uint32_t len)
{
	struct restore_msg m;
	char err[256];

	if (restore_parse(payload, len, &m, err, sizeof(err)) < 0)
		say("bad RESTORED frame: %s", err);
	else
		restore_apply(&m);
	explicit_bzero(&m, sizeof(m));
}

static void take_frame(struct job *j, uint8_t type, const uint8_t *payload, uint32_t len)
{
	switch (type) {
	case AP_JOB:
		if (j->job_json) {
			say("ignoring a second JOB frame");
			return;
		}
		j->job_json = malloc(len ? len : 1);
		if (!j->job_json) {
			host_lost(j, "out of memory for the JOB frame");
			return;
		}
		memcpy(j->job_json, payload, len);
		j->job_len = len;
		return;
	case AP_CANCEL:
		take_cancel(j, payload, len);
		return;
	case AP_RESTORED:
		take_restored(payload, len);
		return;
	default:
		say("ignoring a %s frame from the host", ap_type_name(type));
	}
}

static void pump_host(struct job *j)
{
	uint8_t buf[HOST_READ_CHUNK], type;
	const uint8_t *payload;
	uint32_t len;
	ssize_t n = read(j->host, buf, sizeof(buf));
	int rc;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		host_lost(j, n ? strerror(errno) : "closed");
		return;
	}
	rc = ap_reader_feed(&j->rd, buf, (size_t)n);
	while (!rc && (rc = ap_reader_next(&j->rd, &type, &payload, &len)) > 0) {
		take_frame(j, type, payload, len);
		rc = 0;
	}
	/* The stream cannot be resynchronised after a bad frame. */
	if (rc < 0)
		host_lost(j, strerror(-rc));
}

static void pump_signals(struct job *j)
{
	struct signalfd_siginfo si;
	int status;

	while (read(j->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
		case SIGPIPE:   /* a write to a gone host: send_frame handles it */
			break;
		case SIGINT:    /* ctrl-alt-del from the kernel */
			request_cancel(j, 1);
			break;
		default:
			/* Forwarded, as tini does; before a job came there is
			 * nothing to forward to, and a SIGTERM ends the wait. */
			if (j->run && !j->run->exited)
				kill_group(j->run->pid, (int)si.ssi_signo);
			else if (!j->job_json && si.ssi_signo == SIGTERM)
				request_cancel(j, 0);
		}
	}
	/* Reap after every wakeup: SIGCHLDs merge, orphans come and go. */
	if (init_reap(j->run ? j->run->pid : 0, &status) && j->run) {
		j->run->exited = 1;
		j->run->status = status;
		j->run->exited_at = j->run->quiet_from = mono_ms();
	}
}

static void pump_output(struct job *j, struct run *r)
{
	char buf[JOB_OUTPUT_CHUNK];
	ssize_t n = read(r->out, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		send_frame(j, AP_OUTPUT, buf, (size_t)n);
		if (r->exited)
			r->quiet_from = mono_ms();
		return;
	}
	close(r->out);
	r->out = -1;
}

/* Wait up to timeout_ms (-1: no limit) for anything and handle it. */
static void pump(struct job *j, int timeout_ms)
{
	struct pollfd p[3] = {
		{ .fd = j->sigfd, .events = POLLIN },
		{ .fd = j->host_eof ? -1 : j->host, .events = POLLIN },
		{ .fd = j->run ? j->run->out : -1, .events = POLLIN },
	};

	if (poll(p, 3, timeout_ms) < 0) {
		if (errno != EINTR)
			say("poll: %s", strerror(errno));
		return;
	}
	if (p[0].revents)
		pump_signals(j);
	if (p[1].revents)
		pump_host(j);
	if (p[2].revents && j->run && j->run->out >= 0)
		pump_output(j, j->run);
}

/* --- running a step ----------------------------------------------------- */

static long long earliest(long long a, long long b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

/* Act on whatever is due at `now`; returns the next moment something will
 * be (0: nothing timed pending). */
static long long tick(struct run *r, long long now)
{
	long long next = 0;

	if (!r->exited && r->stop == STOP_NONE) {
		if (now >= r->deadline)
			stop_run(r, STOP_TIMEOUT, JOB_KILL_GRACE_MS);
		else
			next = r->deadline;
	}
	if (!r->exited && r->kill_at) {
		if (now >= r->kill_at) {
			kill_group(r->pid, SIGKILL);
			r->kill_at = 0;
		} else {
			next = earliest(next, r->kill_at);
		}
	}
	if (r->exited && r->out >= 0) {
		/* Silence ends the drain; so does a straggler that never stops. */
		if (now - r->quiet_from >= JOB_DRAIN_QUIET_MS || now - r->exited_at >= JOB_DRAIN_MAX_MS) {
			close(r->out);
			r->out = -1;
		} else {
			next = earliest(next, r->quiet_from + JOB_DRAIN_QUIET_MS);
			next = earliest(next, r->exited_at + JOB_DRAIN_MAX_MS);
		}
	}
	return next;
}

/* Supervise r until its shell is reaped and its output drained. */
static void supervise(struct job *j, struct run *r)
{
	for (;;) {
		long long now = mono_ms(), next = tick(r, now);

		if (r->exited && r->out < 0)
			break;
		/* Capped: a 30-day timeout in ms does not fit poll's int. */
		pump(j, !next ? -1 : next - now > POLL_MAX_MS ? POLL_MAX_MS : (int)(next - now));
	}
	/* Whatever a stopped step left behind goes with it. */
	if (r->stop != STOP_NONE)
		kill_group(r->pid, SIGKILL);
}

static const char *job_status(const struct job *j)
{
	return j->cancel != CANCEL_NONE ? "canceled" : j->failed ? "failed" : "success";
}

/* Run one step to its end. Returns its exit code, or -1 when it could not
 * start (already reported in the log). */
static int run_step(struct job *j, size_t idx, enum stop *stopped)
{
	const struct job_step *step = &j->spec.steps[idx];
	struct run r = { .step = step, .out = -1 };
	char script[PATH_MAX + 32];
	char **env = NULL;
	int rc, code = -1;

	*stopped = STOP_NONE;
	script[0] = '\0';
	if (j->spec.exec) {
		struct step_user u;
		char err[512];

		if (image_exec_user(&j->spec, &u, err, sizeof(err)) < 0) {
			job_log(j, "kiln-agent: %s: %s", step->name, err);
			goto out;
		}
		env = step_env_exec(&j->spec, &u);
		r.pid = env ? step_spawn_exec(&j->spec, env, &u, &r.out) : -ENOMEM;
		/* The stdin is in the pipe (or the step failed): no copy stays. */
		if (j->spec.exec_stdin)
			explicit_bzero(j->spec.exec_stdin, j->spec.exec_stdin_len);
		if (r.pid < 0) {
			job_log(j, "kiln-agent: %s: cannot start %s: %s", step->name, j->spec.exec_argv[0],
				strerror(-r.pid));
			goto out;
		}
		goto started;
	}
	snprintf(script, sizeof(script), "%s/step-%zu.sh", j->tmpdir, idx);
	rc = step_write_script(script, step->script, step->nscript);
	if (rc < 0) {
		job_log(j, "kiln-agent: %s: cannot write the script: %s", step->name, strerror(-rc));
		goto out;
	}
	env = step_env(&j->spec, jobspec_is_after_script(step) ? job_status(j) : NULL);
	if (!env) {
		job_log(j, "kiln-agent: %s: out of memory", step->name);
		goto out;
	}
	r.pid = step_spawn(script, j->spec.workdir, env, j->spec.debug_trace, &r.out);
	if (r.pid < 0) {
		job_log(j, "kiln-agent: %s: cannot start: %s", step->name, strerror(-r.pid));
		goto out;
	}
started:
	j->groups[j->ngroups++] = r.pid;
	r.deadline = mono_ms() + (long long)step->timeout * 1000;
	j->run = &r;
	supervise(j, &r);
	j->run = NULL;
	code = init_exit_code(r.status);
	*stopped = r.stop;
out:
	if (r.out >= 0)
		close(r.out);
	r.out = -1;
	step_env_free(&env);
	if (script[0])
		unlink(script);
	return code;
}

/* Whether a step runs, given how the job went so far. */
static int should_run(const struct job *j, const struct job_step *step)
{
	if (j->cancel == CANCEL_HARD)
		return 0;
	if (j->cancel == CANCEL_GRACEFUL)
		return jobspec_is_after_script(step);
	switch (step->when) {
	case WHEN_ON_SUCCESS:
		return !j->failed;
	case WHEN_ON_FAILURE:
		return j->failed;
	case WHEN_ALWAYS:
		return 1;
	}
	return 0;
}

static void run_steps(struct job *j)
{
	size_t i;

	for (i = 0; i < j->spec.nsteps; i++) {
		const struct job_step *step = &j->spec.steps[i];
		enum stop stopped;
		int code;

		if (!should_run(j, step))
			continue;
		code = run_step(j, i, &stopped);
		if (code >= 0)
			send_json(j, AP_STEP, json_pack("{s:s, s:i}", "step", step->name, "exit_code", code));
		/* Only on_success steps decide the job's result. */
		if (step->when != WHEN_ON_SUCCESS || j->failed || (code == 0 && stopped != STOP_TIMEOUT))
			continue;
		j->failed = 1;
		j->exit_code = code < 0 ? 1 : code;
		j->reason = code < 0 ? FAIL_SYSTEM : stopped == STOP_TIMEOUT ? "job_execution_timeout" : "script_failure";
	}
}

/* --- the job's files and scratch space ---------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_file(const struct job_file *f)
{
	char dir[PATH_MAX];
	char *slash;
	int fd = -1, rc = 0;

	snprintf(dir, sizeof(dir), "%s", f->path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		rc = step_mkdir_parents(dir, 0700);
		if (rc < 0)
			goto out;
	}
	fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, f->mode);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/* fchmod: the mode is the spec's, whatever the umask or an old file. */
	rc = fchmod(fd, f->mode) < 0 ? -errno : write_all(fd, f->content, f->content_len);
	if (rc)
		goto out;
	rc = close(fd) < 0 ? -errno : 0;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int write_files(struct job *j)
{
	size_t i;

	for (i = 0; i < j->spec.nfiles; i++) {
		int rc = write_file(&j->spec.files[i]);

		if (rc < 0) {
			job_log(j, "kiln-agent: files[%zu]: %s: %s", i, j->spec.files[i].path, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int make_tmpdir(struct job *j)
{
	const char *base = getenv("TMPDIR");

	snprintf(j->tmpdir, sizeof(j->tmpdir), "%s/kiln-agent.XXXXXX", base && base[0] ? base : "/tmp");
	if (!mkdtemp(j->tmpdir)) {
		job_log(j, "kiln-agent: %s: %s", j->tmpdir, strerror(errno));
		j->tmpdir[0] = '\0';
		return -1;
	}
	return 0;
}

/* --- the session -------------------------------------------------------- */

static void fail_system(struct job *j)
{
	j->failed = 1;
	j->exit_code = 1;
	j->reason = FAIL_SYSTEM;
}

/* The job's services by alias (issue #16): appended to /etc/hosts, which
 * only the guest's PID 1 owns; an agent serving a host (--serve-fd, the
 * tests) leaves the host's alone. */
static int write_hosts(struct job *j)
{
	int fd;

	if (!j->spec.hosts || !j->spec.hosts[0] || getpid() != 1)
		return 0;
	fd = open("/etc/hosts", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, j->spec.hosts, strlen(j->spec.hosts)) < 0) {
		job_log(j, "kiln-agent: /etc/hosts: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

void job_reopen_with(job_reopen_fn fn)
{
	reopen_fn = fn;
}

static void send_hello(struct job *j);

/* The stream was lost before any job: open it again in place (the caller
 * owns the fd number) and say HELLO on it. 0, or -1 to give up. */
static int reopen_host(struct job *j)
{
	long long t0 = mono_ms();
	int fd;

	if (!may_reopen(j))
		return -1;
	j->reopened++;
	fd = reopen_fn();
	if (fd < 0) {
		say("host stream: %s; cancelling the job", j->lost_why);
		return -1;
	}
	if (dup3(fd, j->host, O_CLOEXEC) < 0) {
		say("host stream: dup3: %s", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	ap_reader_free(&j->rd);
	ap_reader_init(&j->rd);
	j->host_eof = j->host_dead = 0;
	j->cancel = CANCEL_NONE;
	send_hello(j);
	say("host stream: %s; open again in %lld ms", j->lost_why, mono_ms() - t0);
	return 0;
}

/* Wait for the JOB frame, then parse it. 0 when there is a job to run. */
static int receive_job(struct job *j)
{
	char err[512];

	for (;;) {
		while (!j->job_json && !j->host_eof && j->cancel == CANCEL_NONE)
			pump(j, -1);
		if (j->job_json || !j->host_eof || reopen_host(j) < 0)
			break;
	}
	if (!j->job_json)
		return -1;
	if (jobspec_parse(j->job_json, j->job_len, &j->spec, err, sizeof(err)) < 0) {
		job_log(j, "kiln-agent: bad job: %s", err);
		fail_system(j);
		return -1;
	}
	/* Parsed: the frame's copy of the job's secrets (masked variables, an
	 * exec step's stdin) goes; the buffer stays, meaning "the job came". */
	explicit_bzero(j->job_json, j->job_len);
	/* The guest has no kvmclock under TCG and the RTC counts whole
	 * seconds: the host's clock makes timestamps, TLS validity checks and
	 * make's mtimes agree with the host's. A guest with kvmclock is right
	 * already: stepping the clock interrupts every CPU (clock_was_set),
	 * which is not done for nothing. */
	if (j->spec.has_clock) {
		struct timespec ts = { .tv_sec = (time_t)j->spec.clock_sec, .tv_nsec = j->spec.clock_nsec }, now;
		double off;

		clock_gettime(CLOCK_REALTIME, &now);
		off = (double)(now.tv_sec - ts.tv_sec) + (double)(now.tv_nsec - ts.tv_nsec) / 1e9;
		if ((off > CLOCK_SLACK_S || off < -CLOCK_SLACK_S) && clock_settime(CLOCK_REALTIME, &ts) < 0)
			say("cannot set the clock: %s", strerror(errno));
	}
	j->groups = calloc(j->spec.nsteps, sizeof(*j->groups));
	if (!j->groups) {
		job_log(j, "kiln-agent: out of memory");
		fail_system(j);
		return -1;
	}
	return 0;
}

static void send_hello(struct job *j)
{
	send_json(j, AP_HELLO, json_pack("{s:i, s:s, s:[s, s, s, s]}", "version", AP_VERSION, "agent",
					 "kiln-agent " PACKAGE_VERSION, "features", AP_FEATURE_SHELL,
					 AP_FEATURE_LATE_WORKSPACE, AP_FEATURE_OCI_IMAGE, AP_FEATURE_ENTRYPOINT));
}

static void send_exit(struct job *j)
{
	json_t *o = json_pack("{s:i}", "exit_code", j->exit_code);

	if (o && j->reason)
		json_object_set_new(o, "failure_reason", json_string(j->reason));
	send_json(j, AP_EXIT, o);
}

static int open_sigfd(void)
{
	sigset_t all;

	sigfillset(&all);
	return signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void job_cleanup(struct job *j)
{
	size_t i;

	/* In a VM the power-off ends everything; on a host (--serve-fd) this is
	 * what stops a job's stragglers. */
	for (i = 0; i < j->ngroups; i++)
		kill(-j->groups[i], SIGKILL);
	if (j->tmpdir[0])
		rmdir(j->tmpdir);
	if (j->sigfd >= 0)
		close(j->sigfd);
	j->sigfd = -1;
	free(j->groups);
	free(j->job_json);
	jobspec_free(&j->spec);
	ap_reader_free(&j->rd);
}

int job_serve(int host_fd, job_ready_fn ready)
{
	struct job j = { .host = host_fd, .sigfd = -1 };
	char err[256];

	ap_reader_init(&j.rd);
	/* The stream is the agent's alone: no step may inherit it and keep it
	 * open (an inherited --serve-fd comes without close-on-exec). */
	fcntl(host_fd, F_SETFD, FD_CLOEXEC);
	/* Orphans of a step are ours to reap, PID 1 or not. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	j.sigfd = open_sigfd();
	if (j.sigfd < 0) {
		say("signalfd: %s", strerror(errno));
		fail_system(&j);
		goto out;
	}
	send_hello(&j);
	if (receive_job(&j) < 0)
		goto out;
	if (ready && ready(err, sizeof(err)) < 0) {
		job_log(&j, "kiln-agent: %s", err);
		fail_system(&j);
		goto out;
	}
	/* Before the image is entered: it takes the hosts file with it. */
	if (write_hosts(&j) < 0) {
		fail_system(&j);
		goto out;
	}
	if (j.spec.image_label && image_enter(&j.spec, err, sizeof(err)) < 0) {
		job_log(&j, "kiln-agent: image: %s", err);
		fail_system(&j);
		goto out;
	}
	if (make_tmpdir(&j) < 0 || write_files(&j) < 0) {
		fail_system(&j);
		goto out;
	}
	run_steps(&j);
out:
	if (j.cancel != CANCEL_NONE)
		j.reason = "canceled";
	send_exit(&j);
	/* A failed job the host wants to look into: hold it for a shell. */
	if (j.spec.hold_on_failure && j.failed && j.cancel == CANCEL_NONE && !j.host_dead && !j.host_eof) {
		struct shell_io io = { j.host, j.sigfd, &j.rd };
		char **env = step_env(&j.spec, "failed");

		if (env)
			shell_hold(&io, &j.spec, env);
		step_env_free(&env);
	}
	job_cleanup(&j);
	return j.exit_code & 0xff;
}
