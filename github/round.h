/* One reconciler round of a `github:` entry (every 30 s, at start, and
 * when a webhook arrives): read the demand and GitHub's prefix-* runners,
 * ask the VMs how they are, gh_plan, and carry the plan out. The VM side
 * is a seam (struct gh_vm_ops) so that the daemon boots real VMs and the
 * tests count calls. */
#ifndef KILN_GHROUND_H
#define KILN_GHROUND_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "github/client.h"
#include "github/demand.h"
#include "github/fleet.h"
#include "lib/result.h"

#define GH_CANDS_MAX 32

struct gh_vm_ops {
	/* Boot a runner VM for rec and hand it the blob over the host channel
	 * (never a command line or a file outside the VM); set rec->vm. NULL:
	 * no VM side, nothing is spawned. */
	enum kiln_rc (*boot)(void *arg, struct gh_rec *rec, const char *blob, size_t len, struct kiln_err *e);
	/* How rec's VM is; GH_VM_NONE for an empty or unknown rec->vm. */
	enum gh_vm_state (*state)(void *arg, const struct gh_rec *rec);
	/* Kill and clean rec's VM; a VM already gone is fine. */
	void (*destroy)(void *arg, const struct gh_rec *rec);
	/* Called with the blob as soon as it arrives (the log masker). */
	void (*mask)(void *arg, const char *secret, size_t len);
	void *arg;
	/* Boot a VM for the runner called name before GitHub is asked for
	 * its JIT config, so that the two overlap: its guest waits for the
	 * blob, which boot (rec->vm set to name) hands it; destroy (the same
	 * rec->vm) ends it when there will be none. NULL: boot does it all. */
	enum kiln_rc (*start)(void *arg, const char *name, struct kiln_err *e);
};

struct gh_fleet {
	const char *entry;          /* the entry's name, for logs */
	char dir[PATH_MAX];         /* gh_rec_dir */
	struct gh_client *c;
	struct gh_scope scope;
	bool installation;          /* App auth: an org's repositories come from the installation */
	const struct gh_labels *labels;
	const char *prefix;
	long long runner_group_id;
	int warm_pool, max_runners, idle_timeout, job_timeout;
	struct gh_vm_ops ops;

	struct gh_rec *recs;        /* live records, the slots they hold taken (lib/slots.h) */
	size_t n_recs;
	/* Queued jobs seen lately: where a runner that stopped before any
	 * round saw it busy finds the job it ran. */
	struct gh_taken cands[GH_CANDS_MAX];
	size_t n_cands;
	/* for `kiln github status` and /metrics */
	size_t queued;              /* matching queued jobs at the last poll */
	unsigned long created, deleted, spawn_failures;
	unsigned long jobs_succeeded, jobs_failed; /* results read back from GitHub */
};

/* Load dir's records (after a restart: each one's VM is asked and, gone,
 * reaped at the next round); each takes a slot. */
enum kiln_rc gh_fleet_open(struct gh_fleet *f, struct kiln_err *e);

/* One round at now (epoch s). Errors of single runners are logged and the
 * round goes on. A runner seen on an in-progress job has that job in its
 * record; when it is retired after running one, the job's conclusion is
 * read from GET /repos/{o}/{r}/actions/jobs/{id} (never from run.sh's
 * exit status) and logged: "job ID of REPO on runner NAME: CONCLUSION"; an error reading the demand or the runner list ends the
 * round with it (nothing is spawned on a stale view). */
enum kiln_rc gh_fleet_round(struct gh_fleet *f, long long now, struct kiln_err *e);

/* Free the records (not the VMs, which outlive kiln by design: the next
 * start adopts or reaps them) and give their slots back. */
void gh_fleet_close(struct gh_fleet *f);

#endif
