#include "job/job.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "executors/executor.h"
#include "job/agentmsg.h"
#include "agent/proto.h"
#include "lib/clock.h"
#include "job/images.h"
#include "job/warmstart.h"
#include "executors/jobnet.h"
#include "job/jobspec.h"
#include "job/ociimage.h"
#include "job/servicevm.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "workspace/workspace.h"

#define BOOT_TIMEOUT_MS (180 * 1000)   /* TCG boots are slow; hardware takes well under a second */
#define STOP_TIMEOUT_MS (10 * 1000)
#define DISK_FULL_BYTES (16ULL << 20)  /* free space below which a disk counts as full */

struct job {
	const struct job_payload *p;
	const struct job_opts *o;
	struct job_result *r;
	char run_dir[PATH_MAX];
	int run_fd;                 /* run_dir, flock'ed while the job is ours */
	char ws_image[PATH_MAX];
	char kernel[PATH_MAX], initrd[PATH_MAX], rootfs[PATH_MAX], helper[PATH_MAX];
	char image[128];           /* the rootfs image's name */
	int image_fd[2];           /* the rootfs's and kernel's version folders, held (images_hold) */
	bool oci;                  /* the payload's image is an OCI image (job/ociimage.h) */
	struct ociimage oci_image;
	const char *accel;
	const struct executor_ops *backend;
	struct jobnet net;
	struct executor x;
	bool x_ready;
	char stage[80];            /* the open section, "" when none */
	size_t step_next;          /* the next step that may run */
	bool steps_failed;         /* an on_success step failed */
	double t_start;            /* job_run() began (monotonic s) */
	bool relaunch;             /* the agent cannot take a late workspace */
	/* Restoring from the template in tmpl_dir (job/warmstart.h); cold
	 * once one failed. */
	bool restoring, cold_only;
	bool restored_sent;        /* RESTORED went while the workspace was built */
	char tmpl_dir[PATH_MAX], tmpl_key[TEMPLATE_KEY_HEX];
	bool disks_checked;        /* note_full_disks ran */
	/* When the boot's steps ended (mono_s), for the debug log's line on
	 * where a job's start went; 0: not yet. */
	struct {
		double planned, spawned, workspace, connected, hello, job_sent, output;
	} tb;
	struct servicevm_host svc_host;
	struct ociimage_registry svc_regs[KILN_CONFIG_MAX_REGISTRIES];
	struct ociimage_opts svc_oci; /* the services' threads pull with it */
	struct servicevm_set *svcs; /* the job's service VMs, NULL: none */
};

static void notice(const struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(const struct job *j, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (j->o->notice)
		j->o->notice(j->o->arg, line);
}

/* Section markers: at most one stage is open; beginning one ends the last. */
static void stage_end(struct job *j)
{
	if (j->stage[0] && j->o->stage)
		j->o->stage(j->o->arg, j->stage, false);
	j->stage[0] = '\0';
}

static void stage_begin(struct job *j, const char *name)
{
	stage_end(j);
	snprintf(j->stage, sizeof(j->stage), "%s", name);
	if (j->o->stage)
		j->o->stage(j->o->arg, j->stage, true);
}

/* Open the section of the step the agent runs next, by its rules: steps in
 * order, `when` against the failures so far; after a graceful cancel only
 * after_script. */
static void stage_next_step(struct job *j, bool graceful)
{
	stage_end(j);
	for (; j->step_next < j->p->n_steps; j->step_next++) {
		const struct job_step *s = &j->p->steps[j->step_next];
		bool after = !strcmp(s->name, "after_script");
		bool run = graceful			  ? after
			   : !strcmp(s->when, "always")	  ? true
			   : !strcmp(s->when, "on_failure") ? j->steps_failed
							    : !j->steps_failed;
		char name[80];

		if (!run)
			continue;
		snprintf(name, sizeof(name), "%s%s", after ? "" : "step_", s->name);
		stage_begin(j, name);
		return;
	}
}

/* The agent's STEP frame: the open step ended with its exit code. */
static void stage_step_ended(struct job *j, const uint8_t *payload, uint32_t len, bool graceful)
{
	if (j->step_next < j->p->n_steps) {
		const struct job_step *s = &j->p->steps[j->step_next];
		bool on_success = !*s->when || !strcmp(s->when, "on_success");
		int code = 0;
		bool got = agentmsg_step(payload, len, &code);

		if (on_success && !(got && code == 0))
			j->steps_failed = true;
		if (got && code && !strcmp(s->name, "after_script"))
			j->r->after_script_exit = code;
		j->step_next++;
	}
	stage_next_step(j, graceful);
}

static void fail_reason(struct job *j, const char *reason)
{
	if (!j->r->failure_reason[0])
		snprintf(j->r->failure_reason, sizeof(j->r->failure_reason), "%s", reason);
}

/* The free bytes of the disk holding dir when it is full (less than
 * DISK_FULL_BYTES free) and not the disk *seen; else -1. */
static long long disk_full(const char *dir, dev_t *seen)
{
	struct statvfs v;
	struct stat st;
	unsigned long long avail;

	if (stat(dir, &st) < 0 || statvfs(dir, &v) < 0 || st.st_dev == *seen)
		return -1;
	*seen = st.st_dev;
	avail = (unsigned long long)v.f_bavail * v.f_frsize;
	return avail < DISK_FULL_BYTES ? (long long)avail : -1;
}

/* After a failed job: a full disk is the likely cause. kiln's own writes
 * (the workspace image) failed with rc: e says which disk. The guest saw
 * it only as I/O errors (the executors report them to it rather than
 * stopping the VM): a notice says. The job folder holds the workspace
 * image and, for a jailed VMM, the copy-on-write overlays of the root disk
 * (its TMPDIR is its own folder there); unjailed, they live in $TMPDIR
 * (kiln-vmm: $KILN_VMM_TMPDIR first), nameless, and free their space when
 * the VM ends: converse checks at the agent's EXIT, while the VM still
 * runs. Once per job. */
static void note_full_disks(struct job *j, enum kiln_rc rc, struct kiln_err *e)
{
	const char *tmp = j->backend == &executor_microvm ? getenv("KILN_VMM_TMPDIR") : NULL;
	const char *state = j->o->cfg->state_dir;
	dev_t seen = (dev_t)-1;
	long long avail;

	if (j->disks_checked)
		return;
	j->disks_checked = true;
	if (!tmp || !*tmp)
		tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/var/tmp";
	if ((avail = disk_full(state, &seen)) >= 0) {
		size_t n = e ? strlen(e->msg) : 0;

		if (rc && e)
			snprintf(e->msg + n, sizeof(e->msg) - n, " (the disk holding %s is full: %lld KiB free)", state,
				 avail >> 10);
		else
			notice(j, "the disk holding %s (job folders: workspace images%s) is full: %lld KiB free; "
				  "the VM's writes to its disks may have failed", state,
			       j->x.jail.on ? ", root disk overlays" : "", avail >> 10);
	}
	if (!rc && j->x_ready && (avail = disk_full(tmp, &seen)) >= 0)
		notice(j, "the disk holding %s (copy-on-write overlays of the VM's root disk) is full: %lld KiB free; "
			  "the VM's writes to its root disk may have failed", tmp, avail >> 10);
}

/* The rootfs image for the job: --image, else the payload's image when a
 * kiln image of that name (or of its part before ':') is built, else the
 * default, which then carries the agent into the payload's image, an OCI
 * image (j->oci). */
static enum kiln_rc pick_images_once(struct job *j, const struct images_ctx *ictx, struct kiln_err *e)
{
	const struct kiln_vm_settings *d = j->o->vm ? j->o->vm : &j->o->cfg->defaults;
	const char *image = j->o->image, *kname = j->o->kernel ? j->o->kernel : d->kernel;
	struct manifest m;
	enum kiln_rc rc;

	if (!image && j->p->image) {
		const struct kiln_oci_config *oc = &j->o->cfg->oci;
		const char *internal[] = { d->image };
		char base[128];
		struct manifest probe;

		/* gitlab-runner's allowed_images; the runner's own default passes. */
		if ((rc = services_image_allowed(j->p->image, "images", (const char *const *)oc->allowed_images,
						 oc->n_allowed_images, internal, d->image ? 1 : 0, e)))
			return rc;

		snprintf(base, sizeof(base), "%s", j->p->image);
		base[strcspn(base, ":@")] = '\0';
		if (images_valid_name(j->p->image) && images_manifest(ictx, j->p->image, &probe, NULL) == KILN_OK) {
			image = j->p->image;
			manifest_free(&probe);
		} else if (images_valid_name(base) && images_manifest(ictx, base, &probe, NULL) == KILN_OK) {
			image = j->p->image[strlen(base)] ? NULL : j->p->image;
			image = image ? image : strdup(base); /* lives as long as the process; tiny */
			manifest_free(&probe);
		} else {
			/* An OCI image: kiln's default image carries the agent. */
			j->oci = true;
		}
	}
	if (!image)
		image = d->image;
	if ((rc = images_file(ictx, image, "rootfs.ext4", j->rootfs, sizeof(j->rootfs), e)))
		return rc;
	if ((rc = images_manifest(ictx, kname, &m, e)))
		return rc;
	/* The ELF vmlinux boots through PVH without decompressing: fastest. */
	if (manifest_find(&m, "vmlinux"))
		rc = images_file(ictx, kname, "vmlinux", j->kernel, sizeof(j->kernel), e);
	else if (manifest_find(&m, "bzImage"))
		rc = images_file(ictx, kname, "bzImage", j->kernel, sizeof(j->kernel), e);
	else
		rc = images_file(ictx, kname, "vmlinuz", j->kernel, sizeof(j->kernel), e);
	j->initrd[0] = '\0';
	if (!rc && manifest_find(&m, "initrd.img"))
		rc = images_file(ictx, kname, "initrd.img", j->initrd, sizeof(j->initrd), e);
	manifest_free(&m);
	snprintf(j->image, sizeof(j->image), "%s", image);
	notice(j, "image %s, kernel %s", image, kname);
	return rc;
}

/* pick_images_once, then hold the versions picked so that a rebuild
 * (kiln images build) does not remove them under the job; when one went
 * away between the two, pick again. */
static enum kiln_rc pick_images(struct job *j, const struct images_ctx *ictx, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	int tries;

	for (tries = 0; tries < 3; tries++) {
		if ((rc = pick_images_once(j, ictx, e)))
			return rc;
		if (!(rc = images_hold(j->rootfs, &j->image_fd[0], e)) &&
		    !(rc = images_hold(j->kernel, &j->image_fd[1], e)))
			return KILN_OK;
		if (j->image_fd[0] >= 0)
			close(j->image_fd[0]);
		j->image_fd[0] = -1;
		if (rc != KILN_E_NOTFOUND)
			return rc;
	}
	return rc;
}

/* The executor: the one asked for, or for `auto` kiln-vmm when this host's
 * KVM boots stock kernels, QEMU otherwise (said once per process). */
static enum kiln_rc pick_executor(struct job *j, struct kiln_err *e)
{
	static atomic_bool told;
	const char *want = j->o->executor ? j->o->executor : j->o->cfg->defaults.executor;
	struct executor_choice c;
	struct host_facts probed;
	const struct host_facts *f = j->o->host;
	enum kiln_rc rc;

	if (j->o->backend) {
		j->backend = j->o->backend;
		j->accel = "kvm";
		return KILN_OK;
	}
	if (!f) {
		hostfacts_probe("", kiln_libexec_dir(), &probed);
		f = &probed;
	}
	if ((rc = executor_pick(want, f, &c, e)))
		return rc;
	snprintf(j->helper, sizeof(j->helper), "%s", c.helper);
	j->backend = c.ops;
	j->accel = c.accel;
	if (!atomic_exchange(&told, true)) {
		log_info("executor: %s%s", j->backend->name,
			 j->backend == &executor_qemu ? (!strcmp(j->accel, "kvm") ? " (QEMU microvm, KVM)"
										 : " (QEMU microvm, TCG: no usable hardware KVM)")
						      : " (kiln-vmm, KVM)");
	}
	return KILN_OK;
}

static const char *payload_lookup(void *ctx, const char *key)
{
	return payload_var(ctx, key);
}

/* A job's workspace build: what it is made from, and, built on a thread
 * of its own, how it went. */
struct ws_build {
	char project[256];
	struct ws_spec ws;
	struct ws_gitopts git;
	bool started;  /* on its thread */
	pthread_t th;
	struct kiln_err e;
	enum kiln_rc rc;
};

/* b's spec from the payload and its GIT_* variables; a variable that is
 * wrong is the job's error (e). Says nothing in the log. */
static enum kiln_rc ws_setup(struct job *j, struct ws_build *b, struct kiln_err *e)
{
	enum kiln_rc rc;

	memset(b, 0, sizeof(*b));
	jobspec_project_path(j->p, b->project, sizeof(b->project));
	b->ws.state_dir = j->o->cfg->state_dir;
	b->ws.url = j->p->repo_url;
	b->ws.sha = j->p->sha;
	b->ws.ref = j->p->ref;
	b->ws.refspecs = j->p->refspecs;
	b->ws.n_refspecs = j->p->n_refspecs;
	b->ws.depth = j->p->depth;
	b->ws.project_path = b->project;
	b->ws.image_path = j->ws_image;
	b->ws.dirty_dir = j->o->dirty_dir;
	b->ws.extra_dirs = j->o->extra_dirs;
	b->ws.n_extra_dirs = j->o->n_extra_dirs;
	ws_gitopts_init(&b->git);
	if ((rc = ws_gitopts_read(&b->git, payload_lookup, (void *)j->p, e)))
		return rc;
	if (b->git.depth >= 0)
		b->ws.depth = (unsigned)b->git.depth;
	b->ws.git = &b->git;
	return KILN_OK;
}

/* The log's line for b, in the get_sources section (open). */
static void ws_announce(struct job *j, const struct ws_build *b)
{
	if (b->git.strategy == WSGIT_NONE || b->git.strategy == WSGIT_EMPTY)
		notice(j, "skipping Git repository setup (GIT_STRATEGY=%s): %s is empty",
		       b->git.strategy == WSGIT_NONE ? "none" : "empty", b->project);
	else
		notice(j, "preparing the workspace: %s at %.12s", b->project, j->p->sha);
}

static enum kiln_rc prepare_workspace(struct job *j, struct kiln_err *e)
{
	struct ws_build b;
	struct ws_result res = { 0 };
	enum kiln_rc rc;

	stage_begin(j, "get_sources");
	if ((rc = ws_setup(j, &b, e))) {
		stage_end(j);
		fail_reason(j, "script_failure");
		return rc;
	}
	ws_announce(j, &b);
	rc = ws_prepare(&b.ws, &res, e);
	stage_end(j);
	if (rc)
		fail_reason(j, "runner_system_failure");
	return rc;
}

static void send_size(int fd, uint8_t type, const struct winsize *ws, const char *term)
{
	char msg[160];
	int n = term ? snprintf(msg, sizeof(msg), "{\"rows\":%u,\"cols\":%u,\"term\":\"%s\"}", ws->ws_row, ws->ws_col, term)
		     : snprintf(msg, sizeof(msg), "{\"rows\":%u,\"cols\":%u}", ws->ws_row, ws->ws_col);

	ap_send(fd, type, msg, (uint32_t)n);
}

/* The shell in a held job's VM (job_opts.shell), on the stream fd whose
 * reader is rd, until the agent's STEP "shell", the end of the stream or
 * a hard cancel. */
static void shell_session(struct job *j, int fd, struct ap_reader *rd)
{
	const struct job_opts *o = j->o;
	struct winsize ws = { .ws_row = 24, .ws_col = 80 }, now;
	struct termios saved, raw;
	bool tty = isatty(o->shell_in), raw_on = false, in_eof = false, done = false;
	const char *term = getenv("TERM");
	char buf[16384], line[320];
	int code = -1, n;

	if (!term || !*term || strlen(term) > 40 || strpbrk(term, "\"\\"))
		term = "xterm";
	if (o->shell_hook)
		o->shell_hook(o->arg, true);
	ioctl(o->shell_out, TIOCGWINSZ, &ws);
	if (!ws.ws_row || !ws.ws_col)
		ws = (struct winsize){ .ws_row = 24, .ws_col = 80 };
	n = snprintf(line, sizeof(line),
		     "\r\n*** kiln: job '%.100s' failed: a shell in its VM (exit or Ctrl-D ends it, and the VM) ***\r\n",
		     j->p->job_name);
	kiln_write_all(o->shell_out, line, (size_t)n);
	if (tty && tcgetattr(o->shell_in, &saved) == 0) {
		raw = saved;
		cfmakeraw(&raw);
		raw_on = tcsetattr(o->shell_in, TCSANOW, &raw) == 0;
	}
	send_size(fd, AP_SHELL, &ws, term);
	while (!done) {
		struct pollfd p[2] = { { in_eof ? -1 : o->shell_in, POLLIN, 0 }, { fd, POLLIN, 0 } };
		const uint8_t *payload;
		uint32_t len;
		uint8_t type;

		if (o->cancel && *o->cancel == JOB_CANCEL_NOW)
			break;
		if (poll(p, 2, 250) < 0 && errno != EINTR)
			break;
		if (tty && ioctl(o->shell_out, TIOCGWINSZ, &now) == 0 && now.ws_row && now.ws_col &&
		    (now.ws_row != ws.ws_row || now.ws_col != ws.ws_col)) {
			ws = now;
			send_size(fd, AP_WINSIZE, &ws, NULL);
		}
		if (p[0].revents) {
			ssize_t r = read(o->shell_in, buf, sizeof(buf));

			if (r > 0) {
				ap_send(fd, AP_STDIN, buf, (uint32_t)r);
			} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
				in_eof = true;
				ap_send(fd, AP_STDIN, "\x04", 1); /* Ctrl-D */
			}
		}
		if (!p[1].revents)
			continue;
		n = (int)read(fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0 || ap_reader_feed(rd, buf, (size_t)n))
			break;
		while (!done && ap_reader_next(rd, &type, &payload, &len) == 1) {
			if (type == AP_OUTPUT) {
				kiln_write_all(o->shell_out, payload, len);
			} else if (type == AP_STEP) {
				agentmsg_step(payload, len, &code);
				done = true;
			}
		}
	}
	if (raw_on)
		tcsetattr(o->shell_in, TCSANOW, &saved);
	n = snprintf(line, sizeof(line), "\r\n*** kiln: the shell ended (exit status %d): the VM goes ***\r\n", code);
	kiln_write_all(o->shell_out, line, (size_t)n);
	if (o->shell_hook)
		o->shell_hook(o->arg, false);
}

/* The boot allowance: job_opts.boot_timeout_ms, else BOOT_TIMEOUT_MS. */
static int boot_ms(const struct job *j)
{
	return j->o->boot_timeout_ms > 0 ? j->o->boot_timeout_ms : BOOT_TIMEOUT_MS;
}

/* Stop at the hard cap: the guest ran past everything it was given. */
static void cap_reached(struct job *j, bool exited)
{
	char line[200];
	int k = snprintf(line, sizeof(line),
			 "\r\nERROR: Job failed: the VM ran longer than its cap of %d seconds "
			 "(the job's timeout plus %d s to boot)\r\n",
			 j->p->timeout + boot_ms(j) / 1000, boot_ms(j) / 1000);

	if (!exited) {
		j->o->output(j->o->arg, line, (size_t)k);
		fail_reason(j, "job_execution_timeout");
	}
	j->x.ops->cancel(&j->x);
}

static enum kiln_rc send_restored(struct job *j, int fd, struct kiln_err *e);

/* Where the start of j went, ms since job_run began, in the debug log. */
static void debug_boot_times(const struct job *j)
{
	double t = j->t_start;

	log_debug("job %lld: %s boot, ms since the job began: VM planned %.0f, kiln-vmm started %.0f, workspace "
		  "handed over %.0f, agent connected %.0f, HELLO %.0f, JOB sent %.0f, first output %.0f",
		  j->p->id, j->restoring ? "restored" : "cold", (j->tb.planned - t) * 1000,
		  (j->tb.spawned - t) * 1000, j->tb.workspace ? (j->tb.workspace - t) * 1000 : 0,
		  (j->tb.connected - t) * 1000, (j->tb.hello - t) * 1000, (j->tb.job_sent - t) * 1000,
		  (j->tb.output - t) * 1000);
}

/* Read frames until the agent's EXIT and the end of the stream, the
 * deadline, the hard cap, or a cancel. t_boot is when the VM started
 * (boot_s counts from it, and the hard cap: the job's timeout plus the boot
 * allowance, whatever the guest says or when), t_limit when the HELLO wait
 * began. A second HELLO is a protocol error: it would start the job again. */
static enum kiln_rc converse(struct job *j, int fd, const char *spec, double t_boot, double t_limit,
			     struct kiln_err *e)
{
	struct ap_reader rd;
	struct agent_hello said;
	bool hello = false, exited = false, cancel_sent = false, shell_ok = false;
	double t_run = 0, deadline = 0, cap = t_boot + boot_ms(j) / 1000.0 + j->p->timeout;
	enum kiln_rc rc = KILN_OK;
	char buf[65536], *stamped = NULL, *hosts = NULL, *with = NULL, *late = NULL;

	ap_reader_init(&rd);
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int n = poll(&pfd, 1, 50);
		const uint8_t *payload;
		uint32_t len;
		uint8_t type;
		int got;

		if (j->o->cancel && *j->o->cancel == JOB_CANCEL_NOW) {
			notice(j, "canceled: stopping the VM");
			j->x.ops->cancel(&j->x);
			fail_reason(j, "canceled");
			break;
		}
		if (j->o->cancel && *j->o->cancel == JOB_CANCEL_GRACEFUL && hello && !cancel_sent) {
			static const char msg[] = "{\"graceful\":true}";
			notice(j, "canceling: the script stops, after_script still runs");
			ap_send(fd, AP_CANCEL, msg, sizeof(msg) - 1);
			cancel_sent = true;
			fail_reason(j, "canceled");
		}
		if (mono_s() > cap) {
			cap_reached(j, exited);
			break;
		}
		if (hello && mono_s() > deadline) {
			char line[160];
			int k = snprintf(line, sizeof(line),
					 "\r\nERROR: Job failed: execution took longer than %d seconds\r\n", j->p->timeout);

			/* After EXIT the job is over: the VM just has to go. */
			if (!exited) {
				j->o->output(j->o->arg, line, (size_t)k);
				fail_reason(j, "job_execution_timeout");
			}
			j->x.ops->cancel(&j->x);
			break;
		}
		if (!hello && (mono_s() - t_limit) * 1000 > boot_ms(j)) {
			rc = kiln_fail(e, KILN_E_LIMIT, "the guest agent did not say hello within %d s", boot_ms(j) / 1000);
			break;
		}
		if (n < 0 && errno != EINTR) {
			rc = kiln_fail_errno(e, "poll");
			break;
		}
		servicevm_pump(j->svcs);
		if (n <= 0)
			continue;
		n = (int)read(fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break; /* the agent powered off */
		if (ap_reader_feed(&rd, buf, (size_t)n)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			break;
		}
		while ((got = ap_reader_next(&rd, &type, &payload, &len)) == 1) {
			switch (type) {
			case AP_HELLO:
				if (hello) {
					rc = kiln_fail(e, KILN_E_SYNTAX, "the agent said HELLO twice (a protocol error)");
					goto out;
				}
				if (!agentmsg_hello(payload, len, &said)) {
					rc = kiln_fail(e, KILN_E_SYNTAX, "the agent's HELLO is not a JSON object");
					goto out;
				}
				/* An agent from before late workspaces looked for the
				 * disk at boot, found it empty and will not look again. */
				if (j->x.spec.workspace_late && !said.late_workspace) {
					j->relaunch = true;
					goto out;
				}
				/* An older agent would run the job in kiln's image. */
				if (j->oci && !said.oci_image) {
					notice(j, "image %s has a kiln-agent that cannot enter an OCI image "
						  "(rebuild it with this kiln: kiln images build %s)", j->image, j->image);
					fail_reason(j, "runner_system_failure");
					rc = kiln_fail(e, KILN_E_INVALID, "kiln image %s cannot carry an OCI image", j->image);
					goto out;
				}
				/* An older agent would run the script without the entrypoint. */
				if (j->oci && j->oci_image.run_entrypoint && !said.entrypoint) {
					notice(j, "image %s has a kiln-agent that cannot run an image's entrypoint "
						  "(rebuild it with this kiln: kiln images build %s)", j->image, j->image);
					fail_reason(j, "runner_system_failure");
					rc = kiln_fail(e, KILN_E_INVALID, "kiln image %s cannot run an OCI entrypoint",
						       j->image);
					goto out;
				}
				hello = true;
				j->tb.hello = mono_s();
				shell_ok = said.shell;
				j->r->boot_s = mono_s() - t_boot;
				if (j->restoring) {
					notice(j, "boot: restored from template %.16s in %.0f ms",
					       strrchr(j->tmpl_dir, '/') + 1, j->r->boot_s * 1000);
					if (!j->restored_sent && (rc = send_restored(j, fd, e)))
						goto out;
				}
				notice(j, "guest ready after %.1f s: running the job", j->r->boot_s);
				if ((rc = servicevm_wait(j->svcs, j->svc_oci.wait_services_s, j->o->cancel, &hosts, e)) ||
				    (hosts && hosts[0] && (rc = services_spec_add_hosts(spec, hosts, &with, e))))
					goto out;
				if (j->o->ready && (rc = j->o->ready(j->o->arg, with ? with : spec, &late, e))) {
					fail_reason(j, "runner_system_failure");
					goto out;
				}
				stage_next_step(j, false);
				if ((rc = jobspec_stamp_clock(late ? late : with ? with : spec, &stamped, e)))
					goto out;
				if (ap_send(fd, AP_JOB, stamped, (uint32_t)strlen(stamped)) < 0) {
					rc = kiln_fail_errno(e, "sending the job to the agent");
					goto out;
				}
				free(stamped);
				stamped = NULL;
				t_run = j->tb.job_sent = mono_s();
				deadline = t_run + j->p->timeout;
				break;
			case AP_OUTPUT:
				if (!j->tb.output) {
					j->tb.output = mono_s();
					debug_boot_times(j);
				}
				j->o->output(j->o->arg, payload, len);
				break;
			case AP_STEP:
				stage_step_ended(j, payload, len, cancel_sent);
				break;
			case AP_EXIT: {
				char why[AGENTMSG_REASON_MAX];

				if (!agentmsg_exit(payload, len, &j->r->exit_code, why)) {
					rc = kiln_fail(e, KILN_E_SYNTAX, "the agent's EXIT frame has no exit_code");
					goto out;
				}
				/* A reason is a word (GitLab's); anything else from the
				 * guest (escape sequences...) is not repeated. */
				if (why[0])
					fail_reason(j, why);
				j->r->run_s = mono_s() - t_run;
				exited = true;
				if (j->r->exit_code || j->r->failure_reason[0])
					note_full_disks(j, KILN_OK, NULL);
				/* The agent holds a failed job for the shell asked for. */
				if (j->o->shell && !cancel_sent && (j->r->exit_code || j->r->failure_reason[0]) &&
				    strcmp(j->r->failure_reason, "canceled")) {
					if (shell_ok) {
						/* The shell lasts as long as the user at
						 * the terminal wants: the cap waits. */
						shell_session(j, fd, &rd);
						deadline = mono_s() + STOP_TIMEOUT_MS / 1000.0;
						cap = deadline;
					} else
						notice(j, "no shell: this image's kiln-agent cannot hold a job "
							  "(rebuild the image with this kiln: kiln images build NAME)");
				}
				break;
			}
			default:
				rc = kiln_fail(e, KILN_E_SYNTAX, "the agent sent an unexpected %s frame", ap_type_name(type));
				goto out;
			}
		}
		if (got < 0) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "the agent broke the protocol (%s)", strerror(-got));
			break;
		}
	}
out:
	if (late) {
		explicit_bzero(late, strlen(late));
		free(late);
	}
	free(stamped);
	free(hosts);
	free(with);
	stage_end(j);
	ap_reader_free(&rd);
	/* A guest that broke the protocol gets no grace to power off. */
	if (rc)
		j->x.ops->cancel(&j->x);
	if (!rc && !exited && !j->r->failure_reason[0] && !j->relaunch) {
		char tail[600];
		executor_tail(&j->x, tail, sizeof(tail));
		rc = kiln_fail(e, KILN_E_EXEC, "the VM ended before the job finished: %s", tail);
	}
	if (rc)
		fail_reason(j, "runner_system_failure");
	return rc;
}

/* The empty workspace file a VM starts with when its workspace is built
 * while it boots (vm_spec.workspace_late). */
static enum kiln_rc create_late_workspace(struct job *j, struct kiln_err *e)
{
	int fd;

	fd = open(j->ws_image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		fail_reason(j, "runner_system_failure");
		return kiln_fail_errno(e, "creating %s", j->ws_image);
	}
	close(fd);
	return KILN_OK;
}

/* Pick the boot the job gets (job/warmstart.h): a restore from a ready
 * template sets vs->snapshot_load, a cold boot says why in the log. */
static void boot_kind(struct job *j, struct vm_spec *vs, const struct kiln_vm_settings *d)
{
	struct images_ctx ictx;
	char troot[PATH_MAX];
	struct warm_want w = { .backend = j->backend->name, .snapshots = d->snapshots,
			       .no_snapshot = j->o->no_snapshot, .image = j->image,
			       .kernel = j->o->kernel ? j->o->kernel : d->kernel, .vcpus = vs->vcpus,
			       .memory_mib = vs->memory_mib, .net = vs->tap != NULL,
			       .templates_dir = kiln_config_templates_dir(j->o->cfg, troot, sizeof(troot)) };
	struct warm_plan plan;

	images_ctx_init(&ictx, j->o->cfg);
	warmstart_plan(&ictx, &w, &plan);
	/* Templates are of the default image's machine without a third drive:
	 * restored, kiln-vmm would refuse the machine and the template would
	 * be thrown away for every job after. */
	if (vs->image && (plan.restore || plan.buildable)) {
		plan.restore = plan.buildable = false;
		snprintf(plan.reason, sizeof(plan.reason), "a job in an OCI image has a drive no template has");
	}
	/* First use: build it, once per job (a build that fails is marked
	 * failed: later jobs boot cold until an input changes); a job that
	 * finds another building it boots cold. */
	if (plan.buildable && !j->cold_only && vs->workspace_late && !vs->command) {
		struct kiln_err be = { 0 };
		enum warm_built got;
		double tb = mono_s();
		char tdir[PATH_MAX];

		snprintf(tdir, sizeof(tdir), "%s/template", j->run_dir);
		if (warmstart_build(j->backend, vs, &plan, tdir, boot_ms(j), j->image, &got, &be)) {
			notice(j, "boot: cold (building template %.16s failed: %s)", plan.key, be.msg);
			j->cold_only = true;
			return;
		}
		if (got == WARM_BUSY)
			snprintf(plan.reason, sizeof(plan.reason), "template %.16s: another job is building it", plan.key);
		else if (got == WARM_BUILT)
			notice(j, "boot: template %.16s built in %.1f s", plan.key, mono_s() - tb);
		plan.restore = got != WARM_BUSY;
	}
	/* A template's agent waits for a late workspace: so must the job. */
	if (plan.restore && !vs->workspace_late && !j->cold_only)
		snprintf(plan.reason, sizeof(plan.reason), "the workspace is not handed over after start");
	j->restoring = plan.restore && vs->workspace_late && !j->cold_only;
	if (!j->restoring) {
		notice(j, "boot: cold (%s)", j->cold_only ? "the template failed to restore" : plan.reason);
		return;
	}
	snprintf(j->tmpl_dir, sizeof(j->tmpl_dir), "%s", plan.dir);
	snprintf(j->tmpl_key, sizeof(j->tmpl_key), "%s", plan.key);
	vs->snapshot_load = j->tmpl_dir;
}

/* The RESTORED frame: the job's own entropy, names and network. */
static enum kiln_rc send_restored(struct job *j, int fd, struct kiln_err *e)
{
	char ip[24];
	char *text;
	int rc;

	snprintf(ip, sizeof(ip), "%s/%d", j->net.guest_ip, j->net.prefix);
	text = template_restored_json(j->image, j->net.enabled ? j->net.mac : NULL, j->net.enabled ? ip : NULL,
				      j->net.enabled ? j->net.gateway : NULL,
				      j->net.enabled && j->net.dns[0] ? j->net.dns : NULL, e);
	if (!text)
		return e->rc ? e->rc : KILN_E_NOMEM;
	rc = ap_send(fd, AP_RESTORED, text, (uint32_t)strlen(text));
	explicit_bzero(text, strlen(text));
	free(text);
	return rc < 0 ? kiln_fail(e, KILN_E_IO, "sending RESTORED to the agent: %s", strerror(-rc)) : KILN_OK;
}

/* With late set, the workspace is built while the guest boots: the VM
 * starts with an empty workspace disk, and once the image is complete the
 * backend makes the guest see its size (executor_ops.disks_changed). The
 * agent, told so on its command line, mounts the disk at boot when it is
 * already there, else once the JOB frame (sent only after the rescan) is
 * in. A warm job's workspace then costs nothing on top of the boot. */
static enum kiln_rc run_vm(struct job *j, const char *spec, bool late, struct kiln_err *e);

/* A restore that never reached HELLO (kiln-vmm refused the snapshot, the
 * agent did not come back): the template is thrown away and marked failed,
 * so later jobs boot cold instead of failing on it again until an input
 * changes, and this job boots cold. */
static enum kiln_rc cold_again(struct job *j, const char *spec, bool late, struct kiln_err *e)
{
	struct kiln_err gone = { 0 };
	char why[600];

	snprintf(why, sizeof(why), "restore failed: %s", e->msg);
	notice(j, "boot: template %s failed to restore (%s): thrown away", strrchr(j->tmpl_dir, '/') + 1, e->msg);
	if (template_discard(j->tmpl_dir, &gone) || template_mark_failed(j->tmpl_dir, j->tmpl_key, why, &gone))
		notice(j, "%s", gone.msg);
	j->x.ops->cleanup(&j->x); /* kills and reaps the VM */
	j->x_ready = false;
	j->restoring = false;
	j->cold_only = true;
	j->r->failure_reason[0] = '\0';
	return run_vm(j, spec, late, e);
}

/* The machine of j's VM into vs, before the boot is picked. */
static void vm_spec_of(struct job *j, bool late, struct vm_spec *vs)
{
	const struct kiln_vm_settings *d = j->o->vm ? j->o->vm : &j->o->cfg->defaults;

	memset(vs, 0, sizeof(*vs));
	vs->kernel = j->kernel;
	vs->initrd = j->initrd[0] ? j->initrd : NULL;
	vs->rootfs = j->rootfs;
	vs->workspace = j->ws_image;
	vs->image = j->oci ? j->oci_image.rootfs : NULL;
	vs->workspace_late = late;
	vs->vcpus = j->o->vcpus ? j->o->vcpus : d->vcpus;
	vs->memory_mib = j->o->memory_mib ? j->o->memory_mib : d->memory_mib;
	vs->tap = j->net.enabled ? j->net.tap : NULL;
	vs->net_cmdline = j->net.enabled ? j->net.cmdline : NULL;
	vs->rx_rate_limit = d->rx_rate_limit;
	vs->tx_rate_limit = d->tx_rate_limit;
	vs->disk_rate_limit = d->disk_rate_limit;
	vs->disk_iops_limit = d->disk_iops_limit;
	vs->run_dir = j->run_dir;
	vs->helper = j->helper;
	vs->accel = j->accel;
	vs->jail = j->o->cfg->jail;
	vs->jail_uid_base = j->o->cfg->jail_uid_base;
}

static void *ws_build_thread(void *arg)
{
	struct ws_build *w = arg;
	struct ws_result res;

	w->rc = ws_prepare(&w->ws, &res, &w->e);
	return NULL;
}

/* A late workspace (handed over after the VM starts), built from before
 * the boot is even picked: the template lookup, kiln-vmm's spawn and the
 * restore or boot overlap it from the start. Nothing is said until
 * ws_join or restore_meanwhile; a set-up that fails is left to them (and
 * prepare_workspace, which says why). kiln-vmm sees the drive's size at
 * the template's save (empty) until the rescan, so the file may grow
 * under it. */
static void ws_start_early(struct job *j, struct ws_build *w)
{
	struct kiln_err e = { 0 };

	if (ws_setup(j, w, &e))
		memset(w, 0, sizeof(*w));
	else
		w->started = pthread_create(&w->th, NULL, ws_build_thread, w) == 0;
}

/* The early build w waited for, its get_sources section (opened by the
 * caller, its line said) closed. */
static enum kiln_rc ws_finish(struct job *j, struct ws_build *w, struct kiln_err *e)
{
	pthread_join(w->th, NULL);
	w->started = false;
	stage_end(j);
	if (w->rc) {
		fail_reason(j, "runner_system_failure");
		*e = w->e;
	}
	return w->rc;
}

/* The early build w waited for, in the get_sources section and with its
 * line, as prepare_workspace would have said them; not started, it is
 * prepare_workspace here. */
static enum kiln_rc ws_join(struct job *j, struct ws_build *w, struct kiln_err *e)
{
	if (!w->started)
		return prepare_workspace(j, e);
	stage_begin(j, "get_sources");
	ws_announce(j, w);
	return ws_finish(j, w, e);
}

/* The build w, if started, stopped being waited on: the VM did not start. */
static void ws_abandon(struct ws_build *w)
{
	if (w->started)
		pthread_join(w->th, NULL);
	w->started = false;
}

/* A restored VM's agent comes back without waiting for the workspace:
 * while the early build w runs, take the agent's stream and send
 * RESTORED, so that the guest takes its new identity meanwhile and only
 * JOB waits for the workspace. A build that did not start (its set-up
 * failed) is prepare_workspace after that, which says why. KILN_OK with
 * the stream in *fd; a stream that failed leaves *fd -1 and its error in
 * *se, a workspace that failed returns its error in e. */
static enum kiln_rc restore_meanwhile(struct job *j, struct ws_build *w, int *fd, enum kiln_rc *src,
				      struct kiln_err *se, struct kiln_err *e)
{
	if (w->started) {
		stage_begin(j, "get_sources");
		ws_announce(j, w);
	}
	/* The guest's restore, not the workspace, is what the agent waits on:
	 * its boot allowance counts from now. */
	*src = j->x.ops->stream(&j->x, boot_ms(j), fd, se);
	if (!*src) {
		j->tb.connected = mono_s();
		*src = send_restored(j, *fd, se);
		j->restored_sent = !*src;
	}
	return w->started ? ws_finish(j, w, e) : prepare_workspace(j, e);
}

static enum kiln_rc run_vm(struct job *j, const char *spec, bool late, struct kiln_err *e)
{
	struct vm_spec vs;
	struct ws_build w = { 0 };
	const struct kiln_vm_settings *d = j->o->vm ? j->o->vm : &j->o->cfg->defaults;
	enum kiln_rc rc, src = KILN_OK;
	struct kiln_err se = { 0 };
	int fd = -1, status;
	double t0 = mono_s(), t_limit = 0;

	vm_spec_of(j, late, &vs);
	if (late)
		ws_start_early(j, &w);
	boot_kind(j, &vs, d);
	t0 = mono_s(); /* a template built just now is not this VM's boot */
	j->tb.planned = t0;
	executor_init(&j->x, j->backend, &vs);
	j->x_ready = true;
	stage_begin(j, "prepare_executor");
	notice(j, "booting a fresh VM (%s, %d vCPU, %d MiB)", j->backend->name, vs.vcpus, vs.memory_mib);
	if ((rc = j->x.ops->prepare(&j->x, e)) || (rc = j->x.ops->start(&j->x, e))) {
		ws_abandon(&w);
		stage_end(j);
		fail_reason(j, "runner_system_failure");
		return rc;
	}
	j->tb.spawned = mono_s();
	/* Restoring too: kiln-vmm gives the guest the workspace drive's size
	 * at the save (empty) until the rescan, however far the file has
	 * grown meanwhile, so the workspace is built while the VM restores
	 * and the agent comes back. */
	j->restored_sent = false;
	if (late) {
		if (j->restoring) {
			t_limit = mono_s();
			rc = restore_meanwhile(j, &w, &fd, &src, &se, e);
		} else {
			rc = ws_join(j, &w, e);
		}
		/* On failure the VM goes with the executor's cleanup; a restore
		 * whose stream failed boots cold below, with the workspace ready. */
		if (rc || (!src && (rc = j->x.ops->disks_changed(&j->x, e)))) {
			fail_reason(j, "runner_system_failure");
			return rc;
		}
		j->r->prepare_s = mono_s() - j->t_start;
		j->tb.workspace = mono_s();
	}
	/* The boot limit counts from when the guest could go on: a long clone
	 * is not the guest's delay (its HELLO waits in the socket meanwhile). */
	if (!t_limit)
		t_limit = mono_s();
	if (fd < 0 && !src && !(src = j->x.ops->stream(&j->x, boot_ms(j), &fd, &se)))
		j->tb.connected = mono_s();
	if ((rc = src)) {
		*e = se;
		stage_end(j);
		if (j->restoring)
			return cold_again(j, spec, false, e);
		fail_reason(j, "runner_system_failure");
		return rc;
	}
	rc = converse(j, fd, spec, t0, t_limit, e);
	if (rc && j->restoring && j->r->boot_s == 0)
		return cold_again(j, spec, false, e);
	if (!rc && j->relaunch) {
		notice(j, "image %s has a kiln-agent that cannot take a workspace after boot: booting again "
			  "with it ready (rebuild the image with this kiln: kiln images build %s)", j->image, j->image);
		j->x.ops->cleanup(&j->x);  /* kills and reaps the VM */
		j->x_ready = false;
		j->relaunch = false;
		return run_vm(j, spec, false, e);
	}
	/* The agent reboots the VM after EXIT; give it a moment, then insist. */
	if (j->x.ops->wait(&j->x, STOP_TIMEOUT_MS, &status, NULL)) {
		j->x.ops->cancel(&j->x);
		j->x.ops->wait(&j->x, -1, &status, NULL);
	}
	return rc;
}

static void oci_notice(void *arg, const char *line)
{
	notice(arg, "%s", line);
}

/* A cancel, graceful or not, ends a pull: no script has run yet. */
static int oci_canceled(void *arg)
{
	const struct job *j = arg;

	return j->o->cancel && *j->o->cancel;
}

/* The payload's OCI image, pulled by its policy into the store; the spec
 * then tells the agent to enter it. */
static enum kiln_rc pull_oci_image(struct job *j, char **spec, struct kiln_err *e)
{
	struct ociimage_registry regs[KILN_CONFIG_MAX_REGISTRIES];
	struct ociimage_opts oo;
	enum kiln_rc rc;

	ociimage_opts_init(&oo, j->o->cfg, regs);
	oo.notice = oci_notice;
	oo.canceled = oci_canceled;
	oo.arg = j;

	stage_begin(j, "prepare_executor");
	if ((rc = ociimage_prepare(j->p, &oo, &j->oci_image, e)) || (rc = ociimage_spec(&j->oci_image, spec, e))) {
		if (oci_canceled(j)) {
			notice(j, "canceled while image %s was pulled", j->p->image);
			fail_reason(j, "canceled");
		} else {
			notice(j, "image %s: %s", j->p->image, e ? e->msg : "cannot be pulled");
			fail_reason(j, rc == KILN_E_NOMEM ? "runner_system_failure" : "image_pull_failure");
		}
	} else {
		notice(j, "image %s (%s) on kiln's agent", j->p->image, j->oci_image.digest);
	}
	stage_end(j);
	return rc;
}

/* Ask the agent to hold the job when it fails (job_opts.shell). */
static enum kiln_rc spec_hold(char **spec, struct kiln_err *e)
{
	json_t *o = json_loads(*spec, 0, NULL);
	char *text;

	if (!o || json_object_set_new(o, "hold_on_failure", json_true()) || !(text = json_dumps(o, JSON_COMPACT))) {
		json_decref(o);
		return kiln_fail(e, KILN_E_NOMEM, "job spec: out of memory");
	}
	json_decref(o);
	free(*spec);
	*spec = text;
	return KILN_OK;
}

static void svc_notice(void *arg, const char *line)
{
	notice(arg, "%s", line);
}

static void svc_output(void *arg, const void *buf, size_t n)
{
	const struct job *j = arg;

	j->o->output(j->o->arg, buf, n);
}

/* The job's services (job/servicevm.h): their images pulled from now on,
 * beside the job's own; servicevm_pulled lets them boot. */
static enum kiln_rc start_services(struct job *j, const struct images_ctx *ictx, struct kiln_err *e)
{
	const struct kiln_vm_settings *d = j->o->vm ? j->o->vm : &j->o->cfg->defaults;
	struct servicevm_host *h = &j->svc_host;
	enum kiln_rc rc;

	ociimage_opts_init(&j->svc_oci, j->o->cfg, j->svc_regs);
	*h = (struct servicevm_host){ .backend = j->backend, .helper = j->helper, .accel = j->accel,
				      .kernel = j->kernel, .initrd = j->initrd[0] ? j->initrd : NULL,
				      .vcpus = 1, .memory_mib = j->o->memory_mib ? j->o->memory_mib : d->memory_mib, .jail = j->o->cfg->jail,
				      .jail_uid_base = j->o->cfg->jail_uid_base, .run_dir = j->run_dir,
				      .images = ictx, .default_image = d->image, .oci = &j->svc_oci,
				      .boot_ms = boot_ms(j), .job_net = &j->net,
				      .notice = svc_notice, .output = svc_output, .arg = j };
	if ((rc = servicevm_start(j->p, h, &j->svcs, e)))
		fail_reason(j, "runner_system_failure");
	return rc;
}

/* Every service's image is there (the job fails with image_pull_failure
 * otherwise, before anything boots): the services boot. */
static enum kiln_rc services_pulled(struct job *j, struct kiln_err *e)
{
	enum kiln_rc rc = servicevm_pulled(j->svcs, j->o->cancel, e);

	if (rc == KILN_E_LIMIT) {
		fail_reason(j, "canceled");
	} else if (rc) {
		notice(j, "%s", e->msg);
		fail_reason(j, rc == KILN_E_NOMEM ? "runner_system_failure" : "image_pull_failure");
	}
	return rc;
}

/* The job's folder STATE/jobs/ID.PID.XXXXXX in j->run_dir (empty again
 * when it could not be made), held by j->run_fd's lock, which says so in
 * any pid namespace: another kiln's sweep (a `kiln exec` beside a `kiln
 * run`) leaves a held folder alone. */
static enum kiln_rc make_run_dir(struct job *j, const char *state_dir, long long id, struct kiln_err *e)
{
	char jobs_dir[PATH_MAX];

	snprintf(jobs_dir, sizeof(jobs_dir), "%s/jobs", state_dir);
	if (kiln_mkdir_p(jobs_dir) < 0)
		return kiln_fail_errno(e, "creating %s", jobs_dir);
	snprintf(j->run_dir, sizeof(j->run_dir), "%s/%lld.%d.XXXXXX", jobs_dir, id, (int)getpid());
	if (!mkdtemp(j->run_dir)) {
		j->run_dir[0] = '\0';
		return kiln_fail_errno(e, "creating a job folder in %s", jobs_dir);
	}
	if ((j->run_fd = open(j->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || flock(j->run_fd, LOCK_EX) < 0)
		return kiln_fail_errno(e, "locking the job folder %s", j->run_dir);
	return KILN_OK;
}

enum kiln_rc job_run(const struct job_payload *p, const struct job_opts *o, struct job_result *r,
		     struct kiln_err *e)
{
	struct job j = { .p = p, .o = o, .r = r, .run_fd = -1, .image_fd = { -1, -1 } };
	struct images_ctx ictx;
	char job_id[64], *spec = NULL;
	enum kiln_rc rc;
	bool want_net = o->network < 0 ? o->cfg->defaults.network : o->network;
	double t0 = mono_s();
	bool late;

	j.t_start = t0;
	/* Where the job began on the clock other processes read too: a bench
	 * times from the payload, as a daemon gets it, not from kiln's start. */
	if (getenv("KILN_TIMINGS"))
		fprintf(stderr, "kiln: timings: job %lld: payload ready at CLOCK_MONOTONIC %.6f s\n", p->id, t0);
	memset(r, 0, sizeof(*r));
	r->exit_code = 1;
	jobnet_disabled(&j.net);
	images_ctx_init(&ictx, o->cfg);
	if ((rc = jobspec_build(p, &spec, e)) || (o->shell && (rc = spec_hold(&spec, e))) || (rc = pick_executor(&j, e)) ||
	    (rc = pick_images(&j, &ictx, e))) {
		fail_reason(&j, "runner_system_failure");
		goto out;
	}
	/* A private folder per job; its name carries our pid so that a later
	 * kiln can tell it was abandoned. */
	if ((rc = make_run_dir(&j, o->cfg->state_dir, p->id, e)))
		goto out;
	if (want_net) {
		snprintf(job_id, sizeof(job_id), "%lld", p->id);
		const struct kiln_vm_settings *vm = o->vm ? o->vm : &o->cfg->defaults;
		struct jobnet_policy policy = { .allowed = vm->allowed_networks,
						.denied = vm->denied_networks };

		/* A VMM without a limiter of its own gets one on its tap. */
		if (!j.backend->limits_net) {
			policy.rx_rate = vm->rx_rate_limit;
			policy.tx_rate = vm->tx_rate_limit;
		}
		if ((rc = jobnet_setup(job_id, &policy, &j.net, e))) {
			fail_reason(&j, "runner_system_failure");
			goto out;
		}
		notice(&j, "network: %s, guest %s", j.net.tap, j.net.guest_ip);
	} else {
		notice(&j, "network: off");
	}
	/* The services' images are pulled from now on, beside the job's own
	 * and its workspace. */
	if ((rc = start_services(&j, &ictx, e)))
		goto out;
	/* A pull that fails is the job's failure (image_pull_failure), not
	 * kiln's: the log says why. */
	if (j.oci && pull_oci_image(&j, &spec, e))
		goto out;
	snprintf(j.ws_image, sizeof(j.ws_image), "%s/workspace.ext4", j.run_dir);
	/* A backend that can hand the guest a disk filled in after start
	 * boots while the workspace is built. */
	late = j.backend->disks_changed != NULL;
	if ((rc = late ? create_late_workspace(&j, e) : prepare_workspace(&j, e)))
		goto out;
	/* As for the job's own image: a service image that cannot be had
	 * fails the job, not kiln. */
	if (services_pulled(&j, e)) {
		rc = KILN_OK;
		goto out;
	}
	r->prepare_s = mono_s() - t0;
	if (o->cancel && *o->cancel) {
		fail_reason(&j, "canceled");
		goto out;
	}
	rc = run_vm(&j, spec, late, e);
	if (o->finished && j.x_ready && r->boot_s > 0) {
		char project[256];

		jobspec_project_path(p, project, sizeof(project));
		o->finished(o->arg, j.ws_image, project, !rc && r->exit_code == 0 && !r->failure_reason[0]);
	}
out:
	if (rc || r->exit_code || r->failure_reason[0])
		note_full_disks(&j, rc, e);
	if (j.x_ready)
		j.x.ops->cleanup(&j.x);
	servicevm_stop(j.svcs);
	jobnet_teardown(&j.net);
	if (j.run_dir[0])
		kiln_rm_rf(j.run_dir);
	if (j.run_fd >= 0)
		close(j.run_fd);
	if (j.image_fd[0] >= 0)
		close(j.image_fd[0]);
	if (j.image_fd[1] >= 0)
		close(j.image_fd[1]);
	free(spec);
	ociimage_free(&j.oci_image);
	if (!rc && !r->failure_reason[0] && r->exit_code != 0)
		fail_reason(&j, "script_failure");
	if (!r->failure_reason[0] && r->exit_code == 0)
		r->failure_reason[0] = '\0';
	return rc;
}

enum kiln_rc job_warm(const struct job_opts *o, bool *built, char key16[17], char *what, size_t what_size,
		      struct kiln_err *e)
{
	struct job_payload p = { .id = 0 };
	struct job_result r = { 0 };
	struct job j = { .p = &p, .o = o, .r = &r, .run_fd = -1, .image_fd = { -1, -1 } };
	const struct kiln_vm_settings *d = o->vm ? o->vm : &o->cfg->defaults;
	bool want_net = o->network < 0 ? d->network : o->network;
	struct images_ctx ictx;
	struct warm_plan plan;
	struct warm_want w;
	struct vm_spec vs;
	enum warm_built got;
	char tdir[PATH_MAX], troot[PATH_MAX];
	enum kiln_rc rc;
	double t0 = mono_s();

	*built = false;
	key16[0] = '\0';
	jobnet_disabled(&j.net);
	images_ctx_init(&ictx, o->cfg);
	if ((rc = pick_executor(&j, e)) || (rc = pick_images(&j, &ictx, e)))
		goto out;
	if ((rc = make_run_dir(&j, o->cfg->state_dir, 0, e)))
		goto out;
	/* A template with a network interface serves the jobs that have one:
	 * it boots with a tap as they do. */
	if (want_net) {
		struct jobnet_policy policy = { .allowed = d->allowed_networks, .denied = d->denied_networks };

		if ((rc = jobnet_setup("warm", &policy, &j.net, e)))
			goto out;
	}
	snprintf(j.ws_image, sizeof(j.ws_image), "%s/workspace.ext4", j.run_dir);
	vm_spec_of(&j, true, &vs);
	w = (struct warm_want){ .backend = j.backend->name, .snapshots = true, .image = j.image,
				.kernel = o->kernel ? o->kernel : d->kernel, .vcpus = vs.vcpus,
				.memory_mib = vs.memory_mib, .net = vs.tap != NULL,
				.templates_dir = kiln_config_templates_dir(o->cfg, troot, sizeof(troot)) };
	snprintf(what, what_size, "image %s, %d vCPU, %d MiB, network %s", j.image, vs.vcpus, vs.memory_mib,
		 vs.tap ? "on" : "off");
	warmstart_plan(&ictx, &w, &plan);
	if (!j.backend->disks_changed || !plan.key[0]) {
		rc = kiln_fail(e, KILN_E_INVALID, "no template for %s: %s", what,
			       plan.reason[0] ? plan.reason : "the executor cannot hand over a workspace after start");
		goto out;
	}
	snprintf(key16, 17, "%.16s", plan.key);
	if (plan.restore)
		goto out;
	/* Asked for by name: a build that failed before is tried again. */
	if (!plan.buildable && (rc = template_discard(plan.dir, e)))
		goto out;
	snprintf(tdir, sizeof(tdir), "%s/template", j.run_dir);
	if ((rc = warmstart_build(j.backend, &vs, &plan, tdir, boot_ms(&j), j.image, &got, e)))
		goto out;
	if (got == WARM_BUSY) {
		rc = kiln_fail(e, KILN_E_LIMIT, "template %.16s: another kiln is building it now", plan.key);
		goto out;
	}
	*built = got == WARM_BUILT;
	if (*built)
		notice(&j, "template %.16s built in %.1f s", plan.key, mono_s() - t0);
out:
	jobnet_teardown(&j.net);
	if (j.run_dir[0])
		kiln_rm_rf(j.run_dir);
	if (j.run_fd >= 0)
		close(j.run_fd);
	if (j.image_fd[0] >= 0)
		close(j.image_fd[0]);
	if (j.image_fd[1] >= 0)
		close(j.image_fd[1]);
	return rc;
}

static bool pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

void job_sweep(const char *state_dir)
{
	char dir[PATH_MAX], path[PATH_MAX * 2];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/jobs", state_dir);
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d))) {
			long long id;
			int pid;

			if (sscanf(de->d_name, "%lld.%d.", &id, &pid) != 2 || pid_alive(pid))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			/* Its pid may be of another pid namespace: the lock says. */
			if (kiln_path_held(path))
				continue;
			log_info("removing what an interrupted kiln (pid %d) left of job %lld", pid, id);
			kiln_rm_rf(path);
		}
		closedir(d);
	}
	jobnet_sweep(NULL);
	jail_sweep();
}
