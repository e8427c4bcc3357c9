/* `kiln doctor`: what the host offers and which executor kiln will use.
 * Probing (reading the host) is apart from judging (turning facts into
 * checks), so the judging can be tested on fixture trees. */
#ifndef KILN_DOCTOR_H
#define KILN_DOCTOR_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#include "executors/hostfacts.h"

struct doctor_facts {
	struct host_facts host;   /* what the executors need (hostfacts_probe) */
	bool have_kernel;         /* a guest kernel image is built */
	bool have_rootfs;         /* the default rootfs image is built */
	char images[256];         /* names of built images, comma separated */
	/* The jail's (doctor_probe_jail; all false when not probed). */
	bool jail_probed;
	bool jail_wanted;         /* the configuration's jail: */
	bool jail_root;           /* kiln runs as root */
	bool jail_ns;             /* new mount, pid, ipc, uts, net namespaces work */
	int jail_cgroup;          /* 0 none usable, 1 v1, 2 v2 */
	bool jail_controllers;    /* with memory, cpu and pids */
	long jail_uid_base;
	long jail_uid_taken;      /* a uid or gid of the slot range with an owner, -1 */
	/* The S3 cache stores (doctor_probe_cache; 0 when none is configured). */
	int cache_s3;             /* stores checked */
	int cache_failed;         /* of them, those whose bucket did not answer */
	char cache_detail[320];   /* the first failure, or the buckets checked */
};

enum doctor_status { DOCTOR_OK, DOCTOR_WARN, DOCTOR_FAIL };

#define DOCTOR_MAX_CHECKS 17

struct doctor_check {
	const char *what;
	enum doctor_status status;
	char detail[320];
	char fix[320];            /* one-line fix, "" when none is needed */
};

struct doctor_report {
	struct doctor_check checks[DOCTOR_MAX_CHECKS];
	int n;
	bool stock_kernels_boot;  /* KVM can run unmodified guest kernels */
	bool microvm_ok;          /* kiln-vmm can run jobs */
	bool qemu_ok;             /* QEMU can run jobs */
	const char *qemu_accel;   /* "kvm" or "tcg" */
	const char *executor;     /* what `auto` picks, NULL when nothing can */
};

/* Start f from the host's facts (hostfacts_probe, taken by value), with
 * nothing known of images and jail yet. */
void doctor_facts_init(const struct host_facts *host, struct doctor_facts *f);

/* Note which images are built: names of built images and whether a kernel
 * and the default rootfs are among them. */
struct images_ctx;
void doctor_probe_images(const struct images_ctx *ctx, const char *default_image, struct doctor_facts *f);

/* What the host allows the jail (executors/jail.h), for a configuration
 * with jail set as wanted and slot uids from uid_base. Makes namespaces in
 * a child, so only `kiln doctor` asks. */
void doctor_probe_jail(bool wanted, long uid_base, struct doctor_facts *f);

/* HEAD the bucket of every S3 cache store of the configuration (defaults
 * and each runner's own) with its credentials: a network request, so only
 * `kiln doctor` asks. */
struct kiln_config;
void doctor_probe_cache(const struct kiln_config *cfg, struct doctor_facts *f);

/* Turn facts into checks, each problem with its fix, and pick executors
 * (executor_pick on the host facts, with the images and jail besides). */
void doctor_judge(const struct doctor_facts *f, struct doctor_report *r);

/* Print the report; returns the exit status: 0 when some executor can run
 * jobs, 1 otherwise. */
int doctor_print(const struct doctor_report *r, FILE *out);

#endif
