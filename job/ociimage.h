/* A job's `image:` that names no kiln image: an OCI image, pulled by the
 * job's pull policy with gitlab-runner's credential order, booted as a
 * second copy-on-write disk that kiln's agent enters (docs/images.md, "OCI
 * images"). Kept apart from job.c, which only asks these three questions. */
#ifndef KILN_JOB_OCIIMAGE_H
#define KILN_JOB_OCIIMAGE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "job/payload.h"
#include "lib/result.h"

#define OCIIMAGE_LABEL "kiln-oci"   /* the ext4 label oci/store gives an image */
#define OCIIMAGE_MAX_POLICIES 3
#define OCIIMAGE_WAIT_SERVICES_S 30 /* gitlab-runner's wait_for_services_timeout default */
#define OCIIMAGE_MAX_PORTS 20       /* ExposedPorts kept: gitlab-runner dials the lowest 20 */
#define OCIIMAGE_MAX_ENTRYPOINT 256 /* the agent's JOBSPEC_MAX_ARGV */

enum ociimage_policy { PULL_ALWAYS, PULL_IF_NOT_PRESENT, PULL_NEVER };

struct ociimage {
	char ref[600];           /* as the job named it */
	char rootfs[PATH_MAX];   /* the store's ext4 image */
	char digest[80];
	char user[256];          /* the image's User, "" for root */
	json_t *env;             /* the image's Env: [[name, value], ...] */
	json_t *entrypoint;      /* the image's Entrypoint and Cmd: arrays of */
	json_t *cmd;             /* strings, or NULL when the config has none */
	json_t *run_entrypoint;  /* what the job's steps run under (ociimage_prepare), or NULL */
	int ports[OCIIMAGE_MAX_PORTS]; /* its ExposedPorts' TCP ports, lowest first */
	size_t n_ports;
};

struct kiln_registry_mirror;
struct ociimage_registry {    /* one `registries:` entry of kiln's config */
	const char *host;
	const char *username, *password;
	const char *ca_file;
	bool insecure;
	const struct kiln_registry_mirror *mirrors; /* tried before host, in order */
	size_t n_mirrors;
};

struct ociimage_opts {
	const char *state_dir;
	/* The runner's allowed_pull_policies; none: the runner's default
	 * policy (always) is the only one allowed, as gitlab-runner has it. */
	enum ociimage_policy allowed[OCIIMAGE_MAX_POLICIES];
	size_t n_allowed;
	/* gitlab-runner's disable_entrypoint_overwrite: image:entrypoint and a
	 * service's entrypoint are ignored, with a warning; the image's own
	 * Entrypoint stays. */
	bool disable_entrypoint_overwrite;
	const struct ociimage_registry *registries;
	size_t n_registries;
	/* allowed_images, allowed_services (job/services.h
	 * services_image_allowed), services_limit (-1: none), the runner's
	 * own services, and the wait for services in seconds (<= 0: none). */
	const char *const *allowed_images, *const *allowed_services;
	size_t n_allowed_images, n_allowed_services;
	int services_limit;
	const json_t *services;
	int wait_services_s;
	void (*notice)(void *arg, const char *line);
	int (*canceled)(void *arg); /* nonzero ends a pull (oci/store.h); NULL: never */
	void *arg;
};

/* o from cfg's `oci:` section (state_dir, allowed_pull_policies,
 * registries; regs holds at most KILN_CONFIG_MAX_REGISTRIES entries and
 * must live as long as o). */
struct kiln_config;
void ociimage_opts_init(struct ociimage_opts *o, const struct kiln_config *cfg, struct ociimage_registry *regs);

/* The job's policies: image:pull_policy (a string or a list) intersected
 * with o's allowed ones, in the job's order; without one, the allowed
 * ones. An empty result or an unknown name is KILN_E_INVALID with
 * gitlab-runner's message. */
enum kiln_rc ociimage_policies(const struct job_payload *p, const struct ociimage_opts *o,
			       enum ociimage_policy out[OCIIMAGE_MAX_POLICIES], size_t *n, struct kiln_err *e);

/* Credentials for reference's registry host, in gitlab-runner's order: the
 * payload's credentials (type registry), the job's DOCKER_AUTH_CONFIG, then
 * o's registries. Sets *user and *pass (pointing into p or o, or into
 * buf for a decoded auth) or leaves them NULL; *reg gets o's entry for the
 * host (CA, insecure) or NULL. */
void ociimage_credentials(const struct job_payload *p, const struct ociimage_opts *o, const char *host,
			  const char **user, const char **pass, const struct ociimage_registry **reg, char *buf,
			  size_t size);

/* Pull (or find, by policy) the payload's image into the store and read
 * its config into *img. A failure says why in e; the job then fails with
 * image_pull_failure. img->run_entrypoint becomes what the steps run
 * under, as gitlab-runner's docker executor has it: image:entrypoint, else
 * the image's Entrypoint; [""] is none. */
enum kiln_rc ociimage_prepare(const struct job_payload *p, const struct ociimage_opts *o, struct ociimage *img,
			      struct kiln_err *e);

/* img->run_entrypoint from p's image:entrypoint (a list of strings) and
 * img's Entrypoint, as ociimage_prepare says, with a notice naming it. A
 * malformed one is KILN_E_INVALID naming it; a well-formed one is ignored,
 * with a warning, under o->disable_entrypoint_overwrite. */
enum kiln_rc ociimage_entrypoint(const struct job_payload *p, const struct ociimage_opts *o, struct ociimage *img,
				struct kiln_err *e);

/* The same for reference, any image the job names (a service's too), by
 * the policies pull_policy asks for (image:pull_policy, a service's
 * pull_policy: a string or a list; NULL: the runner's, as gitlab-runner
 * takes them per image) and with the credentials for reference's registry. */
enum kiln_rc ociimage_prepare_ref(const struct job_payload *p, const struct ociimage_opts *o, const char *reference,
				  json_t *pull_policy, struct ociimage *img, struct kiln_err *e);

/* Add the image to the job spec: "image": {label, user, entrypoint when
 * img->run_entrypoint} and the image's Env before the job's variables (the
 * job's win). */
enum kiln_rc ociimage_spec(const struct ociimage *img, char **spec, struct kiln_err *e);

/* A service's command in an OCI image, as docker merges a container's
 * config with its image's: entrypoint (the service's, else the image's
 * Entrypoint) then command (the service's, else the image's Cmd, which a
 * service's own entrypoint drops, as docker does). Sets the service spec's
 * "argv" to it, then adds the image as ociimage_spec does. No argv at all
 * is KILN_E_INVALID naming the service. */
struct job_service;
enum kiln_rc ociimage_service_spec(const struct ociimage *img, const struct job_service *svc, char **spec,
				   struct kiln_err *e);

/* Under o->disable_entrypoint_overwrite a service's entrypoint is
 * dropped (its command kept), with a warning, as gitlab-runner does: the
 * image's own runs. Any image kind; otherwise svc is left alone. */
void ociimage_service_entrypoint(const struct ociimage_opts *o, struct job_service *svc);

/* `kiln images pull REF`: pull with cfg's registries into the store. */
struct oci_image;
enum kiln_rc ociimage_pull_cli(const struct kiln_config *cfg, const char *reference, struct oci_image *out,
			       struct kiln_err *e);

void ociimage_free(struct ociimage *img);

#endif
