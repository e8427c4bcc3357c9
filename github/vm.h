/* The reconciler's VM side (struct gh_vm_ops) for `kiln run`: each runner
 * is a job (job_run) on a thread of its own, whose script starts the
 * guest's `run.sh --jitconfig` as user `runner`, the JIT blob on its
 * standard input through a pipe. The blob reaches the guest
 * only in the job spec, over the host channel, as a masked variable; the
 * VM's output goes to kiln's log through a masker that knows it. */
#ifndef KILN_GHVM_H
#define KILN_GHVM_H

#include "github/round.h"
#include "runner/config.h"

struct gh_vms;

/* A VM side for entry g of cfg (both outlive it); NULL when out of memory.
 * stopped (may be NULL) is called from a VM's thread when its VM stops, so
 * that the reconciler reaps it and refills the warm pool at once. */
struct gh_vms *gh_vms_new(const struct kiln_config *cfg, const struct kiln_github_config *g, int job_timeout,
			  void (*stopped)(void));

/* The ops to put in a fleet, arg set to v. */
struct gh_vm_ops gh_vms_ops(struct gh_vms *v);

/* Kill every VM still running and wait for their threads; free v. */
void gh_vms_free(struct gh_vms *v);

#endif
