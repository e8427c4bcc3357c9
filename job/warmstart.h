/* Which boot a job gets: a restore from its machine's template
 * (executors/template.h) or a cold boot, and why, for the job's log:
 * "boot: restored from template X in N ms" or "boot: cold (REASON)". */
#ifndef KILN_WARMSTART_H
#define KILN_WARMSTART_H

#include <limits.h>
#include <stdbool.h>

#include "executors/executor.h"
#include "executors/template.h"
#include "job/images.h"

struct warm_want {
	const char *backend;      /* the executor's name */
	bool snapshots;           /* `snapshots:` of the settings */
	bool no_snapshot;         /* --no-snapshot */
	const char *image, *kernel; /* image names */
	int vcpus, memory_mib;
	bool net;
	const char *templates_dir; /* the templates' folder (kiln_config_templates_dir) */
};

struct warm_plan {
	bool restore;             /* dir holds a ready template of key */
	bool buildable;           /* none there yet, or a stale or broken one */
	char key[TEMPLATE_KEY_HEX];
	char dir[PATH_MAX];
	struct template_inputs in;  /* pointing into the two below */
	char image_sha[65], kernel_sha[65], agent_sha[65];
	char kernel_name[128];    /* the kernel image's name, for template.json */
	char reason[320];         /* why cold, when !restore */
};

/* The sha256 of the agent at path into hex, through the cache file
 * agent.sha256 in templates_dir (NULL: none), which holds it with the
 * file's identity (device, inode, size, mtime and ctime to the
 * nanosecond), as git's index trusts a file it has hashed: 1.2 MiB hashed
 * per job was 25 ms of a restored job's start in the KVM sandbox. A cache
 * that does not match is replaced, one that cannot be written is not
 * used. KILN_OK, or the error of reading path. */
enum kiln_rc warmstart_agent_sha(const char *path, const char *templates_dir, char hex[65], struct kiln_err *e);

/* Fill p for w. Never fails: what stops a restore (options, executor, a
 * missing manifest, no or a stale template) becomes p->reason. */
void warmstart_plan(const struct images_ctx *ictx, const struct warm_want *w, struct warm_plan *p);

/* What warmstart_build did. */
enum warm_built {
	WARM_BUSY,   /* another process builds it now: nothing done */
	WARM_FOUND,  /* another process built it meanwhile: plan->dir is ready */
	WARM_BUILT,  /* built it; on failure, marked failed (template_mark_failed) */
};

/* Build the template plan names (first use), under its build lock
 * (template_build_lock), unless another process builds it or has: boot
 * base's machine in run_dir (made and removed here) with an empty late
 * workspace, wait up to boot_ms for the agent's HELLO, have kiln-vmm save
 * it (SIGUSR2: it then exits 0), seal it, mark it ready and rename it into
 * plan->dir; then prune the templates it replaces (template_prune). A
 * build that fails is marked failed in plan->dir. */
enum kiln_rc warmstart_build(const struct executor_ops *ops, const struct vm_spec *base, const struct warm_plan *plan,
			     const char *run_dir, int boot_ms, const char *image_name, enum warm_built *got,
			     struct kiln_err *e);

#endif
