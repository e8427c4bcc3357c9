/* A job's services: (issue #16), read from the payload as gitlab-runner's
 * docker executor reads them: the aliases a job reaches each service by,
 * the port kiln waits for, the /etc/hosts lines the job's VM gets and the
 * spec the guest agent of a service VM runs ("mode": "service"). The VMs
 * and their network are the executor's; nothing here boots anything. */
#ifndef KILN_SERVICES_H
#define KILN_SERVICES_H

#include <stddef.h>

#include "job/payload.h"
#include "lib/result.h"

#define SERVICES_MAX 16          /* per job; gitlab-runner has no default cap */
#define SERVICE_ALIASES_MAX 16   /* per service */
#define SERVICE_ALIAS_MAX 256    /* bytes with the NUL */
#define SERVICE_PORTS_MAX 20     /* gitlab-runner waits for the lowest 20 */

struct job_service {
	size_t index;               /* position in the payload's services[] */
	const char *name;           /* the image reference as written */
	const char **entrypoint;    /* NULL: the image's own */
	size_t n_entrypoint;
	const char **command;       /* NULL: the image's own */
	size_t n_command;
	json_t *pull_policy;        /* its own pull_policy (in the payload), NULL: the runner's */
	char *aliases[SERVICE_ALIASES_MAX];
	size_t n_aliases;
	struct job_var *vars;       /* the service's variables (point into the payload) */
	size_t n_vars;
	int ports[SERVICE_PORTS_MAX]; /* TCP ports to wait for, lowest first */
	size_t n_ports;
};

struct job_services {
	struct job_service *v;      /* only services with at least one free alias */
	size_t n;
};

/* gitlab-runner's names for an image reference: the name without tag,
 * digest or the registry's :port, '/' as "__", then (when different) '/'
 * as "-". Writes up to 2 NUL-terminated names into out and returns how
 * many; 0 when the reference leaves no name or a name does not fit. */
size_t service_name_aliases(const char *ref, char out[2][SERVICE_ALIAS_MAX]);

/* The runner's say over a job's services (its `oci:` section). */
struct services_rules {
	const json_t *runner;          /* [[runners.docker.services]], payload format, first; NULL: none */
	const char *const *allowed;    /* allowed_services globs; none: any */
	size_t n_allowed;
	int limit;                     /* services_limit; -1: none */
};

/* Whether image (as the job names it) may run: it matches one of the n
 * glob patterns (lib/glob.h, `**` across '/'), equals one of the n_internal
 * names the runner itself configured, or n is 0, as gitlab-runner's
 * VerifyAllowedImage has it. Otherwise KILN_E_INVALID naming image and
 * the list: what is "images" or "services" (the key allowed_WHAT). */
enum kiln_rc services_image_allowed(const char *image, const char *what, const char *const *patterns, size_t n,
				    const char *const *internal, size_t n_internal, struct kiln_err *e);

/* The services of payload p, after the runner's own (r->runner; r may be
 * NULL). A job's service whose name r->allowed refuses, or more services
 * than r->limit in all, is KILN_E_INVALID, as gitlab-runner fails such a
 * job before anything starts. An alias another service took is skipped
 * and reported through warn (one line, may be NULL); a service left with
 * no alias is never started, as gitlab-runner does. A malformed entry is
 * an error naming "payload: services[i]: field". */
enum kiln_rc services_parse(const struct job_payload *p, const struct services_rules *r, struct job_services *out,
			    void (*warn)(void *arg, const char *line), void *warn_arg, struct kiln_err *e);
void services_free(struct job_services *s);

/* The /etc/hosts lines for the job's VM: "ADDR alias..." per service,
 * addrs[i] the IPv4 address of s->v[i] (caller frees *text). */
enum kiln_rc services_hosts(const struct job_services *s, const char *const *addrs, char **text,
			    struct kiln_err *e);

/* The agent's spec for service svc of job p: {"mode":"service", "argv",
 * "env", "hosts"}. argv is the service's entrypoint then its command, or
 * empty for the image's own (the launcher fills it from the image: a kiln
 * image's has none, an OCI image's config has Entrypoint and Cmd). env is
 * the job's public variables then the service's, each expanded against
 * the job's variables (gitlab-runner's GetServiceVariables). Caller frees
 * *json. */
enum kiln_rc services_spec_build(const struct job_payload *p, const struct job_service *svc, const char *hosts,
				 char **json, struct kiln_err *e);

/* hosts ("" or lines from services_hosts) as the job spec's "hosts" field:
 * the agent appends it to the job VM's /etc/hosts before the first step.
 * Caller frees *out. */
enum kiln_rc services_spec_add_hosts(const char *spec, const char *hosts, char **out, struct kiln_err *e);

#endif
