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
#define SERVICEVM_NOTES_MAX (64u << 10) /* bytes of notices the threads queue */

struct servicevm_set;

struct servicevm {
	struct servicevm_set *set;
	size_t index;
	struct job_service *svc;   /* set's: its ports may come from the image */
	const struct servicevm_host *h;
	struct jobnet net;         /* the thread's until it is joined */
	struct executor x;
	bool x_ready;              /* x was initialized: cleanup is due */
	char run_dir[PATH_MAX], log_path[PATH_MAX], rootfs[PATH_MAX];
	char label[SERVICE_ALIAS_MAX + 16];
	char *spec;
	int log_fd;                /* the thread's, appended to */
	size_t logged;             /* bytes written to the log */
	pthread_t th;
	bool started;
	atomic_int state;
	atomic_int up;             /* a port answered (or there is none to wait for) */
	char err[300];             /* why it ended, set before SVC_ENDED */
	int shown_fd;              /* servicevm_pump's reader of the log, -1 */
	char part[1024];           /* a line not complete yet */
	size_t npart;
	size_t next_port;          /* the port the next probe tries */
	bool oci;                  /* img holds the OCI image it boots */
	struct ociimage img;
};

/* The threads meet twice: once every image is resolved (the last one lets
 * them go on: nothing boots while a pull may still fail), and once every
 * network is set up (the last one links the siblings and writes the hosts
 * lines every VM gets). mu guards what follows it, cv signals each change. */
struct servicevm_set {
	struct job_services s;
	struct servicevm *v;
	size_t n;
	const struct servicevm_host *h;
	const struct job_payload *p;
	bool debug;                /* CI_DEBUG_SERVICES */
	bool waited;               /* servicevm_wait ran its course */
	atomic_int stop;           /* the job is over: every thread ends */
	atomic_int probing_over;   /* no more port probes */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t pulled;             /* images resolved, failed ones too */
	enum kiln_rc pull_rc;      /* the first failure, its message in pull_err */
	char pull_err[sizeof(((struct kiln_err *)0)->msg)];
	bool go;                   /* every image is there: boot */
	size_t nets_done;          /* networks set up or failed */
	enum kiln_rc net_rc;       /* the first failure, its message in net_err */
	char net_err[sizeof(((struct kiln_err *)0)->msg)];
	char *job_hosts;           /* the job VM's lines, once nets_done == n */
	char *svc_hosts;           /* a service VM's: the same and the job as "build" */
	char *notes;               /* queued notices, NUL-separated (servicevm_drain) */
	size_t notes_len;
	bool notes_lost;
};

/* Notices go through a queue: the job's output is the job thread's alone,
 * which drains it (servicevm_drain) at every call into this file. */
static void note(struct servicevm_set *set, const char *line)
{
	size_t len = strlen(line) + 1;
	char *grown;

	pthread_mutex_lock(&set->mu);
	if (set->notes_len + len > SERVICEVM_NOTES_MAX ||
	    !(grown = realloc(set->notes, set->notes_len + len))) {
		set->notes_lost = true;
	} else {
		memcpy(grown + set->notes_len, line, len);
		set->notes = grown;
		set->notes_len += len;
	}
	pthread_mutex_unlock(&set->mu);
}

static void say(struct servicevm_set *set, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct servicevm_set *set, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	note(set, line);
}

static void warn_line(void *arg, const char *line)
{
	say(arg, "WARNING: %s", line);
}

static void oci_line(void *arg, const char *line)
{
	note(arg, line);
}

/* The queued notices to h->notice, in order (the job's thread only). */
static void servicevm_drain(struct servicevm_set *set)
{
	char *notes;
	size_t len, at;
	bool lost;

	pthread_mutex_lock(&set->mu);
	notes = set->notes;
	len = set->notes_len;
	lost = set->notes_lost;
	set->notes = NULL;
	set->notes_len = 0;
	set->notes_lost = false;
	pthread_mutex_unlock(&set->mu);
	for (at = 0; at < len; at += strlen(notes + at) + 1)
		if (set->h->notice)
			set->h->notice(set->h->arg, notes + at);
	if (lost && set->h->notice)
		set->h->notice(set->h->arg, "services: some notices were dropped (too many)");
	free(notes);
}

/* The job is over (canceled, failed): a pull in flight ends. */
static int pull_canceled(void *arg)
{
	struct servicevm_set *set = arg;

	return atomic_load(&set->stop);
}

/* The root filesystem service v boots: the one place an image kind plugs
 * in. A kiln image named like the service (its tag ignored: "tiny:latest"
 * is tiny), else an OCI image pulled as the job's own (job/ociimage.h):
 * the default kiln image then carries the agent into it, and the image's
 * ExposedPorts are the ports to wait for unless HEALTHCHECK_TCP_PORT set
 * them. A pull that fails is KILN_E_NOTFOUND: image_pull_failure. */
static enum kiln_rc resolve_image(struct servicevm_set *set, struct servicevm *v, struct kiln_err *e)
{
	const struct servicevm_host *h = set->h;
	struct job_service *svc = v->svc;
	struct ociimage_opts oo;
	char name[128];
	struct manifest m;
	enum kiln_rc rc;
	size_t i;

	if (h->oci) {
		oo = *h->oci;
		oo.notice = oci_line; /* from this thread: queued */
		oo.canceled = pull_canceled;
		oo.arg = set;
		ociimage_service_entrypoint(&oo, svc);
	}
	snprintf(name, sizeof(name), "%s", svc->name);
	if (strchr(name, '/') == NULL)
		name[strcspn(name, ":@")] = '\0';
	if (images_valid_name(name) && images_manifest(h->images, name, &m, NULL) == KILN_OK) {
		manifest_free(&m);
		return images_file(h->images, name, "rootfs.ext4", v->rootfs, sizeof(v->rootfs), e);
	}
	if (!h->oci || !h->default_image)
		return kiln_fail(e, KILN_E_NOTFOUND, "service %s: no such kiln image", svc->name);
	if ((rc = ociimage_prepare_ref(set->p, &oo, svc->name, svc->pull_policy, &v->img, e))) {
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
	say(set, "service %s: image %s", svc->name, v->img.digest);
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

/* One probe of wait-for-service, from the service's thread while the job's
 * VM still boots: the next of its ports, until one answers or the job's
 * wait is over. gitlab-runner's helper dials each second, which would add
 * up to a second to a job start for a VM that is up in a fraction of one. */
static void probe(struct servicevm *v)
{
	if (atomic_load(&v->up) || atomic_load(&v->set->probing_over) || !v->svc->n_ports)
		return;
	if (port_open(v->net.guest_ip, v->svc->ports[v->next_port], SERVICEVM_POLL_MS))
		atomic_store(&v->up, 1);
	v->next_port = (v->next_port + 1) % v->svc->n_ports;
}

/* Wait on set->cv for at most SERVICEVM_POLL_MS (set->mu held). */
static void wait_a_moment(struct servicevm_set *set)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += SERVICEVM_POLL_MS * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&set->cv, &set->mu, &ts);
}

/* Wait until every service's network is set up (or the job ends): the
 * hosts lines name them all. */
static bool hosts_ready(struct servicevm_set *set)
{
	bool ready;

	pthread_mutex_lock(&set->mu);
	while (!(ready = set->nets_done == set->n) && !atomic_load(&set->stop))
		wait_a_moment(set);
	ready = ready && set->svc_hosts; /* none when a network failed */
	pthread_mutex_unlock(&set->mu);
	return ready;
}

/* The spec with the hosts lines of the job's network (every service by
 * its aliases, the job as "build"), stamped with the clock. */
static enum kiln_rc final_spec(struct servicevm *v, char **out, struct kiln_err *e)
{
	char *with = NULL;
	enum kiln_rc rc;

	if ((rc = services_spec_add_hosts(v->spec, v->set->svc_hosts, &with, e)))
		return rc;
	rc = jobspec_stamp_clock(with, out, e);
	free(with);
	return rc;
}

/* Talk to the service's agent until it ends or the job stops it; probe its
 * ports meanwhile. */
static enum kiln_rc converse(struct servicevm *v, int fd, struct kiln_err *e)
{
	struct ap_reader rd;
	char buf[65536], *stamped = NULL;
	enum kiln_rc rc = KILN_OK;
	bool hello = false;
	int64_t next_probe = 0;

	ap_reader_init(&rd);
	while (!atomic_load(&v->set->stop)) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		const uint8_t *payload;
		uint32_t len;
		uint8_t type;
		int n, got;

		if (hello && mono_ms() >= next_probe) {
			next_probe = mono_ms() + SERVICEVM_POLL_MS;
			probe(v);
		}
		n = poll(&pfd, 1, SERVICEVM_POLL_MS / 2);
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
				/* Its siblings' addresses: they are set up while
				 * it boots, in a moment. */
				if (!hosts_ready(v->set))
					goto out;
				if ((rc = final_spec(v, &stamped, e)))
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

/* The hosts lines of every service (once all networks are set up): the
 * job's, and the services' with the job as "build" (gitlab-runner's
 * network per build). Under set->mu, by the thread that finished last. */
static enum kiln_rc write_hosts(struct servicevm_set *set, struct kiln_err *e)
{
	const char **addrs = calloc(set->n, sizeof(*addrs));
	const struct jobnet **nets = calloc(set->n, sizeof(*nets));
	enum kiln_rc rc;
	size_t i, len;

	if (!addrs || !nets) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	/* A service without a network is not named ("0.0.0.0" is no one). */
	for (i = 0; i < set->n; i++) {
		addrs[i] = set->v[i].net.enabled ? set->v[i].net.guest_ip : "0.0.0.0";
		nets[i] = &set->v[i].net;
	}
	if ((rc = jobnet_link_siblings(nets, set->n, e)) || (rc = services_hosts(&set->s, addrs, &set->job_hosts, e)))
		goto out;
	len = strlen(set->job_hosts) + strlen(set->h->job_net->guest_ip) + 16;
	if (!(set->svc_hosts = malloc(len))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto out;
	}
	snprintf(set->svc_hosts, len, "%s%s build\n", set->job_hosts, set->h->job_net->guest_ip);
out:
	free(addrs);
	free(nets);
	return rc;
}

/* This thread's network is set up (rc 0) or failed (e says why). */
static void net_done(struct servicevm *v, enum kiln_rc rc, struct kiln_err *e)
{
	struct servicevm_set *set = v->set;

	pthread_mutex_lock(&set->mu);
	if (rc && !set->net_rc) {
		set->net_rc = rc;
		snprintf(set->net_err, sizeof(set->net_err), "service %s: %s", v->svc->name, e->msg);
	}
	if (++set->nets_done == set->n && !set->net_rc && (rc = write_hosts(set, e))) {
		set->net_rc = rc;
		snprintf(set->net_err, sizeof(set->net_err), "services: %s", e->msg);
	}
	/* Without hosts lines no VM gets its spec: their threads end. */
	if (set->nets_done == set->n && set->net_rc)
		atomic_store(&set->stop, 1);
	pthread_cond_broadcast(&set->cv);
	pthread_mutex_unlock(&set->mu);
}

/* The service's spec and VM, on its network. */
static enum kiln_rc vm_init(struct servicevm *v, struct kiln_err *e)
{
	const struct servicevm_host *h = v->h;
	struct vm_spec vs = { 0 };

	if (services_spec_build(v->set->p, v->svc, NULL, &v->spec, e) ||
	    (v->oci && ociimage_service_spec(&v->img, v->svc, &v->spec, e)))
		return e->rc;
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
	v->x_ready = true;
	return KILN_OK;
}

/* The thread that owns one service from its pull to its VM's cleanup: the
 * VMM dies with it (PR_SET_PDEATHSIG is per thread). */
static void *service_thread(void *arg)
{
	struct servicevm *v = arg;
	struct servicevm_set *set = v->set;
	struct jobnet_policy policy = { 0 };
	struct kiln_err e = { 0 };
	enum kiln_rc rc;
	int64_t deadline;
	int fd = -1;

	/* Every service's image at once, beside the job's own. */
	rc = resolve_image(set, v, &e);
	if (!rc && !v->svc->n_ports)
		atomic_store(&v->up, 1); /* nothing to wait for */
	pthread_mutex_lock(&set->mu);
	if (rc && !set->pull_rc) {
		set->pull_rc = rc;
		snprintf(set->pull_err, sizeof(set->pull_err), "%s", e.msg);
	}
	/* The last one lets them all boot, unless one failed: then the job
	 * fails before anything boots. */
	if (++set->pulled == set->n && !set->pull_rc)
		set->go = true;
	pthread_cond_broadcast(&set->cv);
	while (!set->go && !set->pull_rc && !atomic_load(&set->stop))
		pthread_cond_wait(&set->cv, &set->mu);
	pthread_mutex_unlock(&set->mu);
	if (rc || !set->go) {
		rc = KILN_OK; /* the job says why */
		goto out;
	}
	if (!atomic_load(&set->stop))
		rc = jobnet_setup_service(v->h->job_net, (unsigned)v->index, &policy, &v->net, &e);
	net_done(v, rc, &e);
	if (rc || atomic_load(&set->stop) || (rc = vm_init(v, &e)))
		goto out;
	say(set, "service %s: booting (%s, as %s)", v->svc->name, v->net.guest_ip, v->svc->aliases[0]);
	if ((rc = v->x.ops->prepare(&v->x, &e)) || (rc = v->x.ops->start(&v->x, &e)))
		goto out;
	deadline = mono_ms() + v->h->boot_ms;
	/* In short rounds, so that a job ending meanwhile stops it at once. */
	while ((rc = v->x.ops->stream(&v->x, 200, &fd, &e)) == KILN_E_LIMIT && !atomic_load(&set->stop) &&
	       mono_ms() < deadline)
		;
	if (!rc)
		rc = converse(v, fd, &e);
out:
	if (rc && !atomic_load(&set->stop)) {
		snprintf(v->err, sizeof(v->err), "%s", e.msg);
		log_say(v, "kiln: service VM: %s", e.msg);
	}
	if (v->x_ready) {
		v->x.ops->cancel(&v->x);
		v->x.ops->cleanup(&v->x);
	}
	atomic_store(&v->state, SVC_ENDED);
	return NULL;
}

enum kiln_rc servicevm_start(const struct job_payload *p, const struct servicevm_host *h,
			     struct servicevm_set **out, struct kiln_err *e)
{
	struct servicevm_set *set = NULL;
	struct services_rules rules;
	enum kiln_rc rc;
	size_t i, k;
	int len;

	*out = NULL;
	if (!(set = calloc(1, sizeof(*set))))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	set->h = h;
	set->p = p;
	set->debug = payload_var_true(p, "CI_DEBUG_SERVICES");
	pthread_mutex_init(&set->mu, NULL);
	pthread_cond_init(&set->cv, NULL);
	if (h->oci)
		rules = (struct services_rules){ h->oci->services, h->oci->allowed_services, h->oci->n_allowed_services,
						 h->oci->services_limit };
	rc = services_parse(p, h->oci ? &rules : NULL, &set->s, warn_line, set, e);
	servicevm_drain(set);
	if (rc)
		goto fail;
	if (!set->s.n) {
		servicevm_stop(set);
		return KILN_OK;
	}
	if (!h->job_net || !h->job_net->enabled) {
		rc = kiln_fail(e, KILN_E_INVALID, "this job has services: but its network is off (network: false)");
		goto fail;
	}
	if (!(set->v = calloc(set->s.n, sizeof(*set->v)))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
		goto fail;
	}
	for (i = 0; i < set->s.n; i++) {
		struct servicevm *v = &set->v[i];

		v->set = set;
		v->index = i;
		v->svc = &set->s.v[i];
		v->h = h;
		v->log_fd = v->shown_fd = -1;
		jobnet_disabled(&v->net);
		/* Named after the job's folder: the jail names the VM's cgroup
		 * after it, and its sweep knows "<job>.<pid>." names. */
		snprintf(v->run_dir, sizeof(v->run_dir), "%s/%s.svc%zu", h->run_dir,
			 strrchr(h->run_dir, '/') ? strrchr(h->run_dir, '/') + 1 : h->run_dir, i);
		snprintf(v->log_path, sizeof(v->log_path), "%s/service-%zu.log", h->run_dir, i);
		len = snprintf(v->label, sizeof(v->label), "[service:");
		for (k = 0; k < v->svc->n_aliases && len < (int)sizeof(v->label) - 2; k++)
			len += snprintf(v->label + len, sizeof(v->label) - (size_t)len, "%s%s", k ? "-" : "",
					v->svc->aliases[k]);
		snprintf(v->label + len, sizeof(v->label) - (size_t)len, "] ");
	}
	for (i = 0; i < set->s.n; i++) {
		struct servicevm *v = &set->v[i];

		if (mkdir(v->run_dir, 0700) < 0) {
			rc = kiln_fail_errno(e, "creating %s", v->run_dir);
			goto fail;
		}
		if ((v->log_fd = open(v->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600)) < 0) {
			rc = kiln_fail_errno(e, "creating %s", v->log_path);
			goto fail;
		}
	}
	/* One thread a service (SERVICES_MAX at most), each pulling its image
	 * now: the job's thread meanwhile pulls the job's and builds its
	 * workspace. */
	set->n = set->s.n;
	for (i = 0; i < set->n; i++) {
		struct servicevm *v = &set->v[i];

		/* servicevm_stop joins the threads started so far. */
		if (pthread_create(&v->th, NULL, service_thread, v)) {
			rc = kiln_fail(e, KILN_E_NOMEM, "service %s: cannot start its thread", v->svc->name);
			goto fail;
		}
		v->started = true;
	}
	*out = set;
	return KILN_OK;
fail:
	servicevm_stop(set);
	return rc;
}

enum kiln_rc servicevm_pulled(struct servicevm_set *set, volatile sig_atomic_t *cancel, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;

	if (!set)
		return KILN_OK;
	pthread_mutex_lock(&set->mu);
	while (set->pulled < set->n && !(cancel && *cancel)) {
		pthread_mutex_unlock(&set->mu);
		servicevm_drain(set);
		pthread_mutex_lock(&set->mu);
		if (set->pulled < set->n)
			wait_a_moment(set);
	}
	if (set->pulled < set->n)
		rc = kiln_fail(e, KILN_E_LIMIT, "canceled while the services' images were pulled");
	else if (set->pull_rc)
		rc = kiln_fail(e, set->pull_rc, "%s", set->pull_err);
	pthread_mutex_unlock(&set->mu);
	servicevm_drain(set);
	return rc;
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

enum kiln_rc servicevm_wait(struct servicevm_set *set, int timeout_s, volatile sig_atomic_t *cancel, char **hosts,
			    struct kiln_err *e)
{
	const char *env = getenv(SERVICEVM_WAIT_ENV);
	enum kiln_rc rc = KILN_OK;
	int64_t deadline;
	size_t i, pending;
	bool ready;

	*hosts = NULL;
	if (!set)
		return KILN_OK;
	/* The networks first: set up while the job's VM booted. */
	pthread_mutex_lock(&set->mu);
	while (!(ready = set->nets_done == set->n) && !set->net_rc && !(cancel && *cancel)) {
		pthread_mutex_unlock(&set->mu);
		servicevm_drain(set);
		pthread_mutex_lock(&set->mu);
		if (set->nets_done < set->n && !set->net_rc)
			wait_a_moment(set);
	}
	if (set->net_rc)
		rc = kiln_fail(e, set->net_rc, "%s", set->net_err);
	else if (ready && !(*hosts = strdup(set->job_hosts)))
		rc = kiln_fail(e, KILN_E_NOMEM, "out of memory");
	pthread_mutex_unlock(&set->mu);
	servicevm_drain(set);
	if (rc || !ready || set->waited)
		return rc;
	if (env && *env)
		timeout_s = atoi(env);
	set->waited = true;
	if (timeout_s <= 0) {
		atomic_store(&set->probing_over, 1);
		return KILN_OK;
	}
	deadline = mono_ms() + (int64_t)timeout_s * 1000;
	for (i = 0; i < set->n && !set->v[i].svc->n_ports; i++)
		;
	if (i < set->n)
		say(set, "waiting for services to be up and running (timeout %d seconds)...", timeout_s);
	/* The services' threads probe their ports: only the script waits. */
	for (;;) {
		servicevm_pump(set);
		for (i = 0, pending = 0; i < set->n; i++)
			if (!atomic_load(&set->v[i].up) && atomic_load(&set->v[i].state) != SVC_ENDED)
				pending++;
		if (!pending || mono_ms() >= deadline || (cancel && *cancel))
			break;
		usleep(SERVICEVM_POLL_MS * 1000 / 4);
	}
	atomic_store(&set->probing_over, 1);
	for (i = 0; i < set->n; i++) {
		struct servicevm *v = &set->v[i];
		char why[400];

		if (atomic_load(&v->up))
			continue;
		if (atomic_load(&v->state) == SVC_ENDED)
			snprintf(why, sizeof(why), "service \"%s\" ended: %s", v->svc->aliases[0],
				 v->err[0] ? v->err : "its command exited");
		else
			snprintf(why, sizeof(why), "service \"%s-wait-for-service\" timeout", v->svc->aliases[0]);
		warn_down(v, why);
	}
	return KILN_OK;
}

void servicevm_pump(struct servicevm_set *set)
{
	size_t i;

	if (!set)
		return;
	servicevm_drain(set);
	if (!set->debug)
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
	pthread_mutex_lock(&set->mu);
	atomic_store(&set->stop, 1);
	pthread_cond_broadcast(&set->cv);
	pthread_mutex_unlock(&set->mu);
	/* A thread still pulling sees stop and ends its pull (pull_canceled). */
	for (i = 0; i < set->n; i++)
		if (set->v[i].started)
			pthread_join(set->v[i].th, NULL);
	servicevm_drain(set);
	for (i = 0; set->v && i < set->s.n; i++) {
		struct servicevm *v = &set->v[i];

		jobnet_teardown(&v->net);
		if (v->log_fd >= 0)
			close(v->log_fd);
		if (v->shown_fd >= 0)
			close(v->shown_fd);
		free(v->spec);
		ociimage_free(&v->img);
	}
	free(set->v);
	free(set->job_hosts);
	free(set->svc_hosts);
	free(set->notes);
	services_free(&set->s);
	pthread_cond_destroy(&set->cv);
	pthread_mutex_destroy(&set->mu);
	free(set);
}
