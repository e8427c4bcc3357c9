/* kiln's configuration file (YAML, /etc/kiln/config.yml by default).
 * Unknown keys and values of the wrong type are errors that name the file,
 * the line and the key. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "cache/store.h"
#include "lib/cidr.h"
#include "lib/result.h"

#define KILN_CONFIG_MAX_RUNNERS 64
#define KILN_GITHUB_MAX_LABELS 100 /* GitHub refuses more on a runner */

/* Default limits of a job's network and disks: about a 1 Gbit/s link
 * each way, and a fast SSD's share (Firecracker's own limiter tests use
 * 100 MiB/s and 1000 ops/s): enough for a build, not enough for one job to
 * starve the host's other jobs. kiln-vmm lets a disk's first requests
 * (boot, checkout) through at full speed: executors/microvm.c. */
#define KILN_NET_RATE_DEFAULT 104857600L  /* 100 MiB/s */
#define KILN_DISK_RATE_DEFAULT 209715200L /* 200 MiB/s */
#define KILN_DISK_IOPS_DEFAULT 10000L

/* Settings a job VM gets; global `defaults` and each runner may set them.
 * A runner starts from `defaults`; a key it sets replaces the default,
 * lists included. */
struct kiln_vm_settings {
	char *executor;       /* auto, microvm or qemu */
	char *image;          /* rootfs image name */
	char *kernel;         /* kernel image name */
	int vcpus;            /* 1..32 */
	int memory_mib;       /* 64..65536 */
	bool network;         /* give the job a NATed tap */
	bool snapshots;       /* microvm: restore jobs from templates (executors/template.h); default on */
	long rx_rate_limit;   /* bytes/s into the guest, 0 = none */
	long tx_rate_limit;   /* bytes/s out of the guest, 0 = none */
	long disk_rate_limit; /* bytes/s per disk, reads and writes, 0 = none */
	long disk_iops_limit; /* requests/s per disk, 0 = none */
	/* Egress (executors/jobnet.h): networks a job may reach although the
	 * default policy refuses them (private, link-local...), and networks
	 * refused on top of that policy; allowed wins over denied. */
	struct kiln_cidrs allowed_networks;
	struct kiln_cidrs denied_networks;
};

struct kiln_runner_config {
	char *name;
	char *url;
	char *token;
	char *tls_ca_file;       /* trusted besides the system's CAs; else <config dir>/certs/<host>.crt */
	char *tls_cert_file;     /* client certificate and key, both or neither; else */
	char *tls_key_file;      /* <config dir>/certs/<host>.auth.crt and .auth.key */
	char *cache_dir;
	int limit;               /* concurrent jobs of this runner, 0 = global only */
	int request_concurrency; /* parallel job requests, 1.. */
	int output_limit;        /* KiB of job log kept, 0: GitLab's default (4096) */
	long token_obtained_at;  /* seconds since the epoch; 0: unknown */
	long token_expires_at;   /* seconds since the epoch; 0: never expires */
	struct kiln_vm_settings vm;
	struct kiln_cache_config cache; /* `cache:`; else the one in `defaults` */
};

#define KILN_CONFIG_MAX_REGISTRIES 64
#define KILN_CONFIG_MAX_MIRRORS 8
#define KILN_CONFIG_MAX_ALLOWED 64     /* allowed_images / allowed_services patterns */
#define KILN_CONFIG_MAX_SERVICES 16    /* oci: services: (job/services.h SERVICES_MAX) */

/* A registry mirror: "host[:port]" as written without its scheme. */
struct kiln_registry_mirror {
	char *host;
	bool insecure;           /* written http://: plain http */
};

/* One entry of `oci: registries:` (docs/images.md, "OCI images"). */
struct kiln_registry_config {
	char *host;              /* "ghcr.io", "127.0.0.1:5000"; docker.io for Docker Hub */
	char *username, *password; /* given, or read from docker_config */
	char *docker_config;     /* docker's config.json the credentials come from, or NULL */
	char *tls_ca_file;       /* extra CA bundle */
	bool insecure;           /* plain http */
	/* Pulls of host's images try these first, in order, then host itself
	 * (dockerd's registry-mirrors for docker.io). */
	struct kiln_registry_mirror *mirrors;
	size_t n_mirrors;
};

/* `oci:`: the image store and how jobs pull. */
struct kiln_oci_config {
	long max_size_mib;                 /* `kiln images prune` cap; 0: 20 GiB */
	char *allowed_pull_policies[3];    /* NULL-padded; none: always only */
	bool disable_entrypoint_overwrite; /* a job's or service's entrypoint is ignored */
	struct kiln_registry_config *registries;
	size_t n_registries;
	/* gitlab-runner's [runners.docker] allowed_images and allowed_services:
	 * globs a job's image: and services: must match; none: any. */
	char **allowed_images, **allowed_services;
	size_t n_allowed_images, n_allowed_services;
	int services_limit;                /* services a job may have; -1: no limit */
	int wait_for_services_timeout;     /* s; 0: the default (30), -1: no waiting */
	/* [[runners.docker.services]]: started with every job, before its
	 * own, as a payload's services: list (name, alias, command,
	 * entrypoint, variables); NULL: none. */
	struct json_t *services;
};

/* One `github:` entry (docs/github.md): a repository or organization whose
 * queued jobs kiln serves with a just-in-time runner per job, each in a
 * fresh VM. Auth is a PAT (`token`) or a GitHub App (`app_id` and
 * `private_key_file`, `installation_id` looked up when 0). */
struct kiln_github_config {
	char *name;
	char *url;               /* https://github.com/ORG or .../OWNER/REPO */
	char *api_url;           /* NULL: derived from url (github/client.h gh_scope_parse) */
	char *token;
	long app_id;             /* 0: no App */
	char *private_key_file;
	long installation_id;    /* 0: looked up */
	char **labels;           /* runs-on labels served, compared case-insensitively */
	size_t n_labels;
	long runner_group_id;    /* 1: the default group */
	char *name_prefix;       /* runners are PREFIX-<12 hex>; default "kiln-<name>" */
	int warm_pool;           /* idle runner VMs kept ready */
	int max_runners;         /* 0: only `concurrent` bounds them */
	int idle_timeout;        /* s a runner may wait for a job before it is reaped */
	int poll_interval;       /* s between reconciler rounds (30) */
	char *tls_ca_file;
	char *webhook_secret;    /* NULL: webhooks refused */
	struct kiln_vm_settings vm; /* from `defaults`, image github-runner unless set */
};

struct kiln_config {
	char *path;              /* file it came from, NULL for built-in defaults */
	char *state_dir;
	char *cache_dir;
	char *images_dir;
	char *templates_dir;     /* microvm templates (executors/template.h); NULL: STATE/templates */
	char *log_format;        /* text or json */
	char *listen_address;    /* host:port for /metrics, NULL = off */
	int concurrent;
	int check_interval;      /* seconds */
	int shutdown_timeout;    /* seconds */
	bool jail;               /* jail every VMM (executors/jail.h); false runs them as root, unjailed */
	long jail_uid_base;      /* VM slot n runs as uid/gid jail_uid_base + n */
	struct kiln_vm_settings defaults;
	struct kiln_cache_config default_cache; /* `defaults: cache:` */
	struct kiln_runner_config *runners;
	size_t n_runners;
	struct kiln_oci_config oci;
	struct kiln_github_config *github; /* `github:` */
	size_t n_github;
};

/* The file kiln reads when -c is not given: $KILN_CONFIG, else
 * /etc/kiln/config.yml for root, else ~/.config/kiln/config.yml. */
const char *kiln_config_default_path(void);

/* Fill cfg with built-in defaults (then overridden by $KILN_STATE_DIR,
 * $KILN_CACHE_DIR, $KILN_IMAGES_DIR and $KILN_TEMPLATES_DIR). */
enum kiln_rc kiln_config_defaults(struct kiln_config *cfg, struct kiln_err *e);

/* The folder of the microvm executor's templates into buf: templates_dir,
 * else STATE/templates. Apart from the jobs' data (a cache, like images:
 * rebuilt when missing, pruned when their inputs change). */
const char *kiln_config_templates_dir(const struct kiln_config *cfg, char *buf, size_t size);

/* Load path over the defaults. When must_exist is false a missing file
 * leaves the defaults. On failure e names FILE:LINE and the key. */
enum kiln_rc kiln_config_load(struct kiln_config *cfg, const char *path, bool must_exist,
			      struct kiln_err *e);

/* Parse YAML text (name is used in messages) over the defaults in cfg. */
enum kiln_rc kiln_config_parse(struct kiln_config *cfg, const char *name, const char *text,
			       size_t len, struct kiln_err *e);

/* Free everything cfg owns and zero it. */
void kiln_config_free(struct kiln_config *cfg);

#endif
