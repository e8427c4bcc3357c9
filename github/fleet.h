/* The runner fleet of one `github:` entry: the records kiln keeps of its
 * just-in-time runners, and the reconciler that decides, from those
 * records, the VMs' liveness, GitHub's runner list and the queued demand,
 * what to spawn, delete and destroy.
 *
 * A record (id, name, VM, times, the job it took) is written to
 * STATE_DIR/github/ENTRY/NAME.json with write-then-rename BEFORE its VM
 * boots, so that a kiln killed at any point finds, on restart, every
 * runner it may have left on GitHub and every VM it may have left on the
 * host. The JIT blob is never part of a record.
 *
 * gh_plan is pure (no I/O, no clock): the daemon feeds it what it saw and
 * carries out the actions; tests feed it made-up states. */
#ifndef KILN_GHFLEET_H
#define KILN_GHFLEET_H

#include <stdbool.h>
#include <stddef.h>

#include "github/jit.h"
#include "lib/result.h"

#define GH_FLEET_MAX 1000 /* records per entry, as max_runners */
#define GH_VM_ID_MAX 64

struct gh_rec {
	long long id;                      /* GitHub's runner id */
	char name[GH_RUNNER_NAME_MAX];
	char vm[GH_VM_ID_MAX];             /* the job folder / VM id; "" before one is made */
	long long created;                 /* epoch s the record was written */
	long long job_id;                  /* the job it took, 0 while idle, -1 busy on an unknown one */
	char repo[2 * GH_NAME_MAX + 2];    /* the job's repository, "" while unknown */
};

/* What the daemon saw of a record this round. */
enum gh_vm_state { GH_VM_BOOTING, GH_VM_RUNNING, GH_VM_EXITED, GH_VM_NONE };

struct gh_seen {
	enum gh_vm_state vm;
	bool runner_busy;                  /* GitHub says busy, or a job was seen assigned to it */
};

enum gh_act_kind {
	GH_ACT_DELETE_RUNNER,   /* delete rec's runner (404 fine), then forget it */
	GH_ACT_DESTROY_VM,      /* kill rec's VM */
	GH_ACT_DELETE_ORPHAN,   /* a prefix-* runner on GitHub with no record: delete by id */
	GH_ACT_SPAWN,           /* n new runners */
};

struct gh_act {
	enum gh_act_kind kind;
	size_t rec;             /* index into recs (DELETE_RUNNER, DESTROY_VM) */
	long long runner_id;    /* DELETE_ORPHAN */
	int n;                  /* SPAWN */
	const char *why;        /* for the log: "runner exited", "idle 300 s"... */
};

struct gh_plan_in {
	const struct gh_rec *recs;
	const struct gh_seen *seen;        /* one per record */
	size_t n_recs;
	const struct gh_runner *listed;    /* GitHub's prefix-* runners; NULL: not listed this round */
	size_t n_listed;
	size_t queued;                     /* queued jobs whose labels are served */
	int warm_pool;
	int max_runners;                   /* 0: none */
	int free_slots;                    /* of the shared `concurrent` (lib/slots.h) */
	long long now;                     /* epoch s */
	int idle_timeout;                  /* s */
	int job_timeout;                   /* s a VM may live, 0: none */
};

/* Decide this round's actions into out (at most max; *n_out). Rules, in
 * order, per record: VM exited -> delete its runner; older than
 * job_timeout -> destroy its VM and delete its runner; never given a job
 * for idle_timeout -> delete its runner, then destroy its VM (deleting
 * first means GitHub cannot hand it a job while it dies). Offline listed
 * runners, not busy, without a record are deleted. Then spawn enough that idle live
 * runners cover the queued jobs plus the warm pool, bounded by
 * max_runners and free_slots. A runner just spawned counts as idle, so a
 * queued job seen twice is not served twice. */
void gh_plan(const struct gh_plan_in *in, struct gh_act *out, size_t max, size_t *n_out);

/* STATE_DIR/github/ENTRY into buf; ENTRY is the entry's name with
 * characters outside [A-Za-z0-9._-] as '_'. */
enum kiln_rc gh_rec_dir(const char *state_dir, const char *entry, char *buf, size_t size, struct kiln_err *e);

/* Write r as DIR/NAME.json (0600, write-then-rename; DIR made 0700). */
enum kiln_rc gh_rec_save(const char *dir, const struct gh_rec *r, struct kiln_err *e);

/* Remove DIR/NAME.json; a missing one is fine. */
enum kiln_rc gh_rec_remove(const char *dir, const char *name, struct kiln_err *e);

/* Every record in dir (a missing dir: none) into a malloc'd array *out,
 * *n; at most GH_FLEET_MAX. A record that does not parse is skipped with
 * a warning (it cannot name a runner we could act on). */
enum kiln_rc gh_rec_load_all(const char *dir, struct gh_rec **out, size_t *n, struct kiln_err *e);

#endif
