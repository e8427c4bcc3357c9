#include "job/servicevm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/proto.h"
#include "job/jobspec.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/paths.h"

enum { SVC_BOOTING, SVC_RUNNING, SVC_ENDED };

#define SERVICEVM_POLL_MS 100

struct servicevm {
	struct job_service *svc;   /* set's: its ports may come from the image */
	const struct servicevm_host *h;
	struct jobnet net;
	struct executor x;
	char run_dir[PATH_MAX], log_path[PATH_MAX], rootfs[PATH_MAX];
	char label[SERVICE_ALIAS_MAX + 16];
	char *spec;
	int log_fd;                /* the thread's, appended to */
	size_t logged;             /* bytes written to the log */
	pthread_t th;
	bool started;
	atomic_int stop;
	atomic_int state;
	char err[300];             /* why it ended, set before SVC_ENDED */
	int shown_fd;              /* servicevm_pump's reader of the log, -1 */
	char part[1024];           /* a line not complete yet */
	size_t npart;
	bool up;                   /* a port answered */
	bool oci;                  /* img holds the OCI image it boots */
	struct ociimage img;
};

struct servicevm_set {
	struct job_services s;
	struct servicevm *v;
	size_t n;
	const struct servicevm_host *h;
	const struct job_payload *p;
	bool debug;                /* CI_DEBUG_SERVICES */
};

static void say(const struct servicevm_host *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct servicevm_host *h, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (h->notice)
		h->notice(h->arg, line);
}

static void warn_line(void *arg, const char *line)
{
	say(arg, "WARNING: %s", line);
}

/* The root filesystem service v boots: the one place an image kind plugs
 * in. A kiln image named like the service (its tag ignored: "tiny:latest"
 * is tiny), else an OCI image pulled as the job's own (job/ociimage.h):
 * the default kiln image then carries the agent into it, and the image's
 * ExposedPorts are the ports to wait for unless HEALTHCHECK_TCP_PORT set
 * them. A pull that fails is KILN_E_NOTFOUND: image_pull_failure. */
static enum kiln_rc resolve_image(const struct servicevm_set *set, struct servicevm *v, struct kiln_err *e)
{
	const struct servicevm_host *h = set->h;
	struct job_service *svc = v->svc;
	char name[128];
	struct manifest m;
	enum kiln_rc rc;
	size_t i;

	snprintf(name, sizeof(name), "%s", svc->name);
	if (strchr(name, '/') == NULL)
		name[strcspn(name, ":@")] = '\0';
	if (images_valid_name(name) && images_manifest(h->images, name, &m, NULL) == KILN_OK) {
		manifest_free(&m);
		return images_file(h->images, name, "rootfs.ext4", v->rootfs, sizeof(v->rootfs), e);
	}
	if (!h->oci || !h->default_image)
		return kiln_fail(e, KILN_E_NOTFOUND, "service %s: no such kiln image", svc->name);
	if ((rc = ociimage_prepare_ref(set->p, h->oci, svc->name, svc->pull_policy, &v->img, e))) {
		char why[sizeof(e->msg)];

		ociimage_free(&v->img);
		if (rc == KILN_E_NOMEM)
			return rc;
		snprintf(why, sizeof(why), "%s", e->msg);
		return kiln_fail(e, KILN_E_NOTFOUND, "service %s: %s", svc->name, why);
	}
	v->oci = true;
	if (!svc->n_ports)
		for (i = 0; i < v->img.n_ports && i < SERVICE_PORTS_MAX; i++)
			svc->ports[svc->n_ports++] = v->img.ports[i];
	say(h, "service %s: image %s", svc->name, v->img.digest);
	return images_file(h->images, h->default_image, "rootfs.ext4", v->rootfs, sizeof(v->rootfs), e);
}

/* Append what the service wrote to its log, up to SERVICEVM_LOG_MAX. */
static void log_append(struct servicevm *v, const void *buf, size_t n)
{
	if (v->logged >= SERVICEVM_LOG_MAX)
		return;
	if (n > SERVICEVM_LOG_MAX - v->logged)
		n = SERVICEVM_LOG_MAX - v->logged;
	if (write(v->log_fd, buf, n) == (ssize_t)n)
		v->logged += n;
}

static void log_say(struct servicevm *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_say(struct servicevm *v, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	if ((size_t)k > sizeof(line) - 2)
		k = (int)sizeof(line) - 2;
	line[k++] = '\n';
	log_append(v, line, (size_t)k);
}

/* Talk to the service's agent until it ends or the job stops it. */
static enum kiln_rc converse(struct servicevm *v, int fd, struct kiln_err *e)
{
	struct ap_reader rd;
	char buf[65536], *stamped = NULL;
	enum kiln_rc rc = KILN_OK;
	bool hello = false;

	ap_reader_init(&rd);
	while (!atomic_load(&v->stop)) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		const uint8_t *payload;
		uint32_t len;
		uint8_t type;
		int n = poll(&pfd, 1, 100), got;

		if (n < 0 && errno != EINTR) {
			rc = kiln_fail_errno(e, "poll");
			break;
		}
		if (n <= 0)
			continue;
		n = (int)read(fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		if (ap_reader_feed(&rd, buf, (size_t)n)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
			break;
		}
		while ((got = ap_reader_next(&rd, &type, &payload, &len)) == 1) {
			if (type == AP_HELLO && !hello) {
				hello = true;
				if ((rc = jobspec_stamp_clock(v->spec, &stamped, e)))
					goto out;
				if (ap_send(fd, AP_JOB, stamped, (uint32_t)strlen(stamped)) < 0) {
					rc = kiln_fail_errno(e, "sending the service's spec to its agent");
					goto out;
				}
				atomic_store(&v->state, SVC_RUNNING);
			} else if (type == AP_OUTPUT) {
				log_append(v, payload, len);
			} else if (type == AP_EXIT) {
				log_say(v, "kiln: the service's command ended");
			} else if (type != AP_STEP) {
				rc = kiln_fail(e, KILN_E_SYNTAX, "the service's agent sent an unexpected %s frame",
					       ap_type_name(type));
				goto out;
			}
		}
		if (got < 0) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "the service's agent broke the protocol");
			break;
		}
	}
out:
	free(stamped);
	ap_reader_free(&rd);
	return rc;
}

/* The thread that owns one service VM from boot to cleanup: the VMM dies
 * with it (PR_SET_PDEATHSIG is per thread). */
static void *service_thread(void *arg)
{
	struct servicevm *v = arg;
	struct kiln_err e = { 0 };
	enum kiln_rc rc;
	int64_t deadline;
	int fd = -1;

	if ((rc = v->x.ops->prepare(&v->x, &e)) || (rc = v->x.ops->start(&v->x, &e)))
		goto out;
	deadline = mono_ms() + v->h->boot_ms;
	/* In short rounds, so that a job ending meanwhile stops it at once. */
	while ((rc = v->x.ops->stream(&v->x, 200, &fd, &e)) == KILN_E_LIMIT && !atomic_load(&v->stop) &&
	       mono_ms() < deadline)
		;
	if (!rc)
		rc = converse(v, fd, &e);
out:
	if (rc && !atomic_load(&v->stop)) {
		snprintf(v->err, sizeof(v->err), "%s", e.msg);
		log_say(v, "kiln: service VM: %s", e.msg);
	}
	v->x.ops->cancel(&v->x);
	v->x.ops->cleanup(&v->x);
	atomic_store(&v->state, SVC_ENDED);
	return NULL;
}

static enum kiln_rc start_one(struct servicevm_set *set, size_t i, const char *hosts, struct kiln_err *e)
{
	struct servicevm *v = &set->v[i];
	const struct servicevm_host *h = set->h;
	struct vm_spec vs = { 0 };
	size_t k;
	int len;

	if (mkdir(v->run_dir, 0700) < 0)
		return kiln_fail_errno(e, "creating %s", v->run_dir);
	if ((v->log_fd = open(v->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600)) < 0)
		return kiln_fail_errno(e, "creating %s", v->log_path);
	(void)hosts;
	if (services_spec_build(set->p, v->svc, NULL, &v->spec, e) ||
	    (v->oci && ociimage_service_spec(&v->img, v->svc, &v->spec, e)))
		return e->rc;
	len = snprintf(v->label, sizeof(v->label), "[service:");
	for (k = 0; k < v->svc->n_aliases && len < (int)sizeof(v->label) - 2; k++)
		len += snprintf(v->label + len, sizeof(v->label) - (size_t)len, "%s%s", k ? "-" : "",
				v->svc->aliases[k]);
	snprintf(v->label + len, sizeof(v->label) - (size_t)len, "] ");
	vs.kernel = h->kernel;
	vs.initrd = h->initrd;
	vs.rootfs = v->rootfs;
	vs.image = v->oci ? v->img.rootfs : NULL;
	vs.vcpus = h->vcpus;
	vs.memory_mib = h->memory_mib;
	vs.tap = v->net.tap;
	vs.net_cmdline = v->net.cmdline;
	vs.run_dir = v->run_dir;
	vs.helper = h->helper;
	vs.accel = h->accel;
	vs.jail = h->jail;
	vs.jail_uid_base = h->jail_uid_base;
	executor_init(&v->x, h->backend, &vs);
	if (pthread_create(&v->th, NULL, service_thread, v)) {
		v->x.ops->cleanup(&v->x);
		return kiln_fail(e, KILN_E_NOMEM, "service %s: cannot start its thread", v->svc->name);
	}
	v->started = true;
	return KILN_OK;
}

enum kiln_rc servicevm_start(const struct job_payload *p, const struct servicevm_host *h,
			     struct servicevm_set **out, char **hosts, struct kiln_err *e)
{
	struct servicevm_set *set = NULL;
	const char **addrs = NULL;
	enum kiln_rc rc;
	size_t i;

	*out = NULL;
	*hosts = NULL;
	if (!(set = calloc(1, sizeof(*set)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto fail;
	}
	set->h = h;
	set->p = p;
	set->debug = payload_var_true(p, "CI_DEBUG_SERVICES");
	if ((rc = services_parse(p, &set->s, warn_line, (void *)h, e)))
		goto fail;
	if (!set->s.n) {
		free(set);
		*hosts = strdup("");
		return *hosts ? KILN_OK : kiln_fail(e, KILN_E_NOMEM, "out of memory");
	}
	if (!h->job_net || !h->job_net->enabled) {
		rc = kiln_fail(e, KILN_E_INVALID, "this job has services: but its network is off (network: false)");
		goto fail;
	}
	set->v = calloc(set->s.n, sizeof(*set->v));
	addrs = calloc(set->s.n, sizeof(*addrs));
	if (!set->v || !addrs) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto fail;
	}
	/* Every image first: a missing one fails the job before anything boots. */
	for (i = 0; i < set->s.n; i++) {
		struct servicevm *v = &set->v[i];

		v->svc = &set->s.v[i];
		v->h = h;
		v->log_fd = v->shown_fd = -1;
		jobnet_disabled(&v->net);
		/* Named after the job's folder: the jail names the VM's cgroup
		 * after it, and its sweep knows "<job>.<pid>." names. */
		snprintf(v->run_dir, sizeof(v->run_dir), "%s/%s.svc%zu", h->run_dir,
			 strrchr(h->run_dir, '/') ? strrchr(h->run_dir, '/') + 1 : h->run_dir, i);
		snprintf(v->log_path, sizeof(v->log_path), "%s/service-%zu.log", h->run_dir, i);
		set->n = i + 1; /* servicevm_stop frees what resolve_image pulled */
		if ((rc = resolve_image(set, v, e)))
			goto fail;
	}
	set->n = set->s.n;
	for (i = 0; i < set->n; i++) {
		struct jobnet_policy policy = { 0 };

		if ((rc = jobnet_setup_service(h->job_net, (unsigned)i, &policy, &set->v[i].net, e)))
			goto fail;
		addrs[i] = set->v[i].net.guest_ip;
	}
	if ((rc = services_hosts(&set->s, addrs, hosts, e)))
		goto fail;
	for (i = 0; i < set->n; i++) {
		if ((rc = start_one(set, i, *hosts, e)))
			goto fail;
		say(h, "service %s: booting (%s, as %s)", set->s.v[i].name, set->v[i].net.guest_ip,
		    set->s.v[i].aliases[0]);
	}
	free(addrs);
	*out = set;
	return KILN_OK;
fail:
	free(addrs);
	free(*hosts);
	*hosts = NULL;
	servicevm_stop(set);
	return rc;
}

/* Whether port on addr accepts a TCP connection within timeout_ms. */
static bool port_open(const char *addr, int port, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct pollfd pfd;
	socklen_t sl = sizeof(int);
	int fd, err = -1;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return false;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		err = 0;
	else if (errno == EINPROGRESS) {
		pfd = (struct pollfd){ fd, POLLOUT, 0 };
		if (poll(&pfd, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
			err = -1;
	}
	close(fd);
	return err == 0;
}

/* The last lines of v's log (at most SERVICEVM_TAIL_LINES, 4 KiB) to the job log. */
static void show_tail(struct servicevm *v)
{
	char buf[4096];
	int fd = open(v->log_path, O_RDONLY | O_CLOEXEC);
	off_t end, from;
	ssize_t n;
	size_t lines = 0;
	char *p;

	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (p = buf + n; p > buf; p--)
		if (p[-1] == '\n' && p != buf + n && ++lines > SERVICEVM_TAIL_LINES)
			break;
	v->h->output(v->h->arg, p, strlen(p));
	if (buf[n - 1] != '\n')
		v->h->output(v->h->arg, "\n", 1);
}

static void warn_down(struct servicevm *v, const char *why)
{
	char line[1024];
	int k;

	k = snprintf(line, sizeof(line),
		     "\n\033[0;33m*** WARNING:\033[0;m Service %s probably didn't start properly.\n\n"
		     "Health check error:\n%s\n\nService container logs:\n",
		     v->svc->name, why);
	v->h->output(v->h->arg, line, (size_t)(k < (int)sizeof(line) ? k : (int)sizeof(line) - 1));
	show_tail(v);
	v->h->output(v->h->arg, "\n\033[0;33m*********\033[0;m\n\n", 28);
}

void servicevm_wait(struct servicevm_set *set, int timeout_s, volatile sig_atomic_t *cancel)
{
	int64_t deadline;
	size_t i, pending = 0;

	const char *env = getenv(SERVICEVM_WAIT_ENV);

	if (env && *env)
		timeout_s = atoi(env);
	if (!set || timeout_s <= 0)
		return;
	deadline = mono_ms() + (int64_t)timeout_s * 1000;
	for (i = 0; i < set->n; i++) {
		if (set->v[i].svc->n_ports)
			pending++;
		else
			set->v[i].up = true; /* nothing to wait for */
	}
	if (pending)
		say(set->h, "waiting for services to be up and running (timeout %d seconds)...", timeout_s);
	/* Each pending service's ports, every SERVICEVM_POLL_MS: gitlab-runner's
	 * helper dials each second, which would add up to a second to every
	 * job start for a VM that is up in a fraction of one. */
	while (pending && mono_ms() < deadline && !(cancel && *cancel)) {
		int64_t round = mono_ms();

		for (i = 0; i < set->n; i++) {
			struct servicevm *v = &set->v[i];
			size_t k;

			if (v->up || atomic_load(&v->state) == SVC_ENDED)
				continue;
			for (k = 0; k < v->svc->n_ports && !v->up; k++)
				v->up = port_open(v->net.guest_ip, v->svc->ports[k], SERVICEVM_POLL_MS);
			if (v->up)
				pending--;
		}
		servicevm_pump(set);
		if (pending && mono_ms() - round < SERVICEVM_POLL_MS)
			usleep((useconds_t)(SERVICEVM_POLL_MS - (mono_ms() - round)) * 1000);
		/* A service whose VM ended will not come up. */
		pending = 0;
		for (i = 0; i < set->n; i++)
			if (!set->v[i].up && atomic_load(&set->v[i].state) != SVC_ENDED)
				pending++;
	}
	for (i = 0; i < set->n; i++) {
		struct servicevm *v = &set->v[i];
		char why[400];

		if (v->up)
			continue;
		if (atomic_load(&v->state) == SVC_ENDED)
			snprintf(why, sizeof(why), "service \"%s\" ended: %s", v->svc->aliases[0],
				 v->err[0] ? v->err : "its command exited");
		else
			snprintf(why, sizeof(why), "service \"%s-wait-for-service\" timeout", v->svc->aliases[0]);
		warn_down(v, why);
	}
}

void servicevm_pump(struct servicevm_set *set)
{
	size_t i;

	if (!set || !set->debug)
		return;
	for (i = 0; i < set->n; i++) {
		struct servicevm *v = &set->v[i];
		char buf[4096];
		ssize_t n;

		if (v->shown_fd < 0 && (v->shown_fd = open(v->log_path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		while ((n = read(v->shown_fd, buf, sizeof(buf))) > 0) {
			ssize_t k;

			for (k = 0; k < n; k++) {
				if (v->npart < sizeof(v->part) - 1 && buf[k] != '\n')
					v->part[v->npart++] = buf[k];
				if (buf[k] != '\n' && v->npart < sizeof(v->part) - 1)
					continue;
				/* A whole line (or a long one cut): prefixed, grey. */
				v->h->output(v->h->arg, "\033[0;90m", 7);
				v->h->output(v->h->arg, v->label, strlen(v->label));
				v->h->output(v->h->arg, "\033[0;m", 5);
				v->h->output(v->h->arg, v->part, v->npart);
				v->h->output(v->h->arg, "\n", 1);
				v->npart = 0;
			}
		}
	}
}

void servicevm_stop(struct servicevm_set *set)
{
	size_t i;

	if (!set)
		return;
	for (i = 0; i < set->n; i++)
		atomic_store(&set->v[i].stop, 1);
	for (i = 0; i < set->n; i++) {
		struct servicevm *v = &set->v[i];

		if (v->started)
			pthread_join(v->th, NULL);
		jobnet_teardown(&v->net);
		if (v->log_fd >= 0)
			close(v->log_fd);
		if (v->shown_fd >= 0)
			close(v->shown_fd);
		free(v->spec);
		ociimage_free(&v->img);
	}
	free(set->v);
	services_free(&set->s);
	free(set);
}
