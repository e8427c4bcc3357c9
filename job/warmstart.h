/* Which boot a job gets: a restore from its machine's template
 * (executors/template.h) or a cold boot, and why, for the job's log:
 * "boot: restored from template X in N ms" or "boot: cold (REASON)". */
#ifndef KILN_WARMSTART_H
#define KILN_WARMSTART_H

#include <limits.h>
#include <stdbool.h>

#include "executors/template.h"
#include "job/images.h"

struct warm_want {
	const char *backend;      /* the executor's name */
	bool snapshots;           /* `snapshots:` of the settings */
	bool no_snapshot;         /* --no-snapshot */
	const char *image, *kernel; /* image names */
	int vcpus, memory_mib;
	bool net;
	const char *state_dir;    /* templates live in STATE/templates */
};

struct warm_plan {
	bool restore;             /* dir holds a ready template of key */
	bool buildable;           /* none there yet, or a stale or broken one */
	char key[TEMPLATE_KEY_HEX];
	char dir[PATH_MAX];
	struct template_inputs in;  /* pointing into the two below */
	char image_sha[65], kernel_sha[65], agent_sha[65];
	char reason[320];         /* why cold, when !restore */
};

/* Fill p for w. Never fails: what stops a restore (options, executor, a
 * missing manifest, no or a stale template) becomes p->reason. */
void warmstart_plan(const struct images_ctx *ictx, const struct warm_want *w, struct warm_plan *p);

#endif
