/* A job's service VMs (issue #16): each service of the payload boots in a
 * microVM of its own, beside the job's, on a network slot linked to the
 * job's VM and to its sibling services (jobnet_setup_service,
 * jobnet_link_siblings: gitlab-runner's network per build, where services
 * reach each other by alias and the job as "build"). Images are pulled
 * while the job's own is and its workspace is built; the VMs boot while the
 * job's VM does. Its guest agent runs the service's command ("mode":
 * "service", job/services.h); its output goes to a log in the job's
 * folder. Before the job's script starts, servicevm_wait waits for each
 * service's TCP port as gitlab-runner's wait-for-service does, probed from
 * the moment the service's agent is up.
 *
 * What a service boots is "an image + a command + env": servicevm's
 * resolve_image turns the service's name into a root filesystem (a kiln
 * image: tiny, debian) and the spec holds argv and env. Any other name is
 * an OCI image (job/ociimage.h), pulled as the job's own image: its ext4
 * the VM's extra copy-on-write disk that the agent enters, its config's
 * Entrypoint/Cmd as docker merges them with the service's, its Env under
 * the service's variables and its ExposedPorts as the ports.
 *
 * Each VM runs under a thread of its own that spawned its VMM: the VMM dies
 * with that thread or with kiln (PR_SET_PDEATHSIG), its network slot's
 * claim is flock-held (the sweep removes it after a crash) and its folder
 * lies in the job's (job_sweep). */
#ifndef KILN_SERVICEVM_H
#define KILN_SERVICEVM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "executors/executor.h"
#include "executors/jobnet.h"
#include "job/images.h"
#include "job/ociimage.h"
#include "job/payload.h"
#include "job/services.h"
#include "lib/result.h"

/* Seconds instead of the configured wait (oci: wait_for_services_timeout),
 * for the tests only. */
#define SERVICEVM_WAIT_ENV "KILN_SERVICES_WAIT_S"
#define SERVICEVM_LOG_MAX (16u << 20) /* bytes of a service's log kept */
#define SERVICEVM_TAIL_LINES 20      /* shown when a service does not come up */

/* What every service VM of one job shares with the job's VM; it lives as
 * long as the set. */
struct servicevm_host {
	const struct executor_ops *backend;
	const char *helper, *accel;
	const char *kernel, *initrd;  /* the job's kernel */
	int vcpus, memory_mib;
	bool jail;
	long jail_uid_base;
	const char *run_dir;          /* the job's folder: service i gets <its name>.svc<i>/ */
	const struct images_ctx *images;
	const char *default_image;    /* the kiln image that carries the agent into an OCI image */
	const struct ociimage_opts *oci; /* pulls a service's OCI image; lives as long as the set */
	int boot_ms;                  /* how long an agent may take to connect */
	const struct jobnet *job_net; /* the job's network (enabled) */
	/* Called from the job's thread only (the set's threads queue). */
	void (*notice)(void *arg, const char *line);
	void (*output)(void *arg, const void *buf, size_t n);
	void *arg;
};

struct servicevm_set;

/* Parse p's services and start a thread for each (SERVICES_MAX at most)
 * that pulls its image at once, beside the job's own pull and workspace.
 * Once every image is there, each sets up its network, boots its VM and,
 * when its agent is up, probes its ports (wait-for-service) while the
 * job's VM still boots. With no services, *set is NULL. A job
 * with services and its network off is KILN_E_INVALID. The threads' notices
 * reach h->notice from the calling thread only, at each call below. */
enum kiln_rc servicevm_start(const struct job_payload *p, const struct servicevm_host *h,
			     struct servicevm_set **set, struct kiln_err *e);

/* Wait until every service's image is resolved (the job's VM boots only
 * then). A service image that is neither a kiln image nor an OCI image that
 * can be pulled fails the whole set before anything boots (KILN_E_NOTFOUND
 * and the like, e naming the service: image_pull_failure); KILN_E_LIMIT
 * when *cancel ends the wait. NULL set: KILN_OK. */
enum kiln_rc servicevm_pulled(struct servicevm_set *set, volatile sig_atomic_t *cancel, struct kiln_err *e);

/* At the job's HELLO: wait until every service's network is set up (then
 * *hosts gets the job VM's /etc/hosts lines, caller frees; NULL with no
 * set), then up to timeout_s (<= 0: not at all) for each service's first port (the first
 * port that accepts a connection from the host ends it); a service that
 * does not answer gets gitlab-runner's warning with its last log lines in
 * the job log, and the job goes on. Fails only when a service's network
 * could not be set up. Returns early when *cancel; a second call only
 * gives the hosts lines. */
enum kiln_rc servicevm_wait(struct servicevm_set *set, int timeout_s, volatile sig_atomic_t *cancel, char **hosts,
			    struct kiln_err *e);

/* CI_DEBUG_SERVICES: copy the services' new complete log lines into the
 * job log, each prefixed "[service:<aliases joined by ->] ". Cheap when
 * there is nothing new or the variable is off; NULL set is fine. */
void servicevm_pump(struct servicevm_set *set);

/* Stop every service VM, remove its network and free set (NULL is fine).
 * A thread still pulling is waited for; its pull ends at the next check of
 * the set's stop flag (a fraction of a second), not when it would finish. */
void servicevm_stop(struct servicevm_set *set);

#endif
