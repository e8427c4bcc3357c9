/* Running one job: from a payload to a finished VM. Prepares the workspace
 * and the network, boots a fresh VM through an executor, speaks the agent
 * protocol, enforces the timeout, handles cancel, and destroys everything
 * afterwards whatever happened. */
#ifndef KILN_JOB_H
#define KILN_JOB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "runner/config.h"
#include "job/payload.h"
#include "lib/result.h"

struct executor_ops;
struct host_facts;

enum job_cancel { JOB_RUN = 0, JOB_CANCEL_GRACEFUL = 1, JOB_CANCEL_NOW = 2 };

struct job_opts {
	const struct kiln_config *cfg;
	const char *executor;        /* auto, microvm, qemu; NULL: the config's */
	/* A backend to run the VM with instead of the one executor names
	 * (tests drive job_run with a fake VM). NULL: by executor. */
	const struct executor_ops *backend;
	/* This host's facts (executors/hostfacts.h), probed once by the
	 * caller at start-up, from which the executor is picked. NULL: job_run
	 * probes them itself, for every job. */
	const struct host_facts *host;
	const char *image;           /* rootfs image; NULL: the payload's image if built, else the default */
	const char *kernel;          /* kernel image; NULL: the config's */
	int vcpus, memory_mib;       /* 0: the config's */
	int network;                 /* -1: the config's, 0 off, 1 on */
	bool no_snapshot;            /* boot cold even where a template could serve */
	int boot_timeout_ms;         /* the guest's time to say HELLO, also part
				      * of the VM's hard cap (timeout plus this,
				      * from its start); 0: 180 s */
	/* The runner's settings for what the fields above do not name: rate
	 * limits and the network's allowed/denied networks. NULL: the
	 * config's defaults. */
	const struct kiln_vm_settings *vm;
	const char *dirty_dir;       /* overlay this working tree's changes on the checkout */
	const char *const *extra_dirs; /* folders laid over the project folder after the checkout */
	size_t n_extra_dirs;           /* and the dirty overlay, in order (ws_spec.extra_dirs) */
	/* The job log, as it arrives. */
	void (*output)(void *arg, const void *buf, size_t n);
	/* What kiln is doing (workspace, boot...), one line each. */
	void (*notice)(void *arg, const char *line);
	/* Stage boundaries, for the trace's section markers: (name, true) when
	 * a stage starts, (name, false) when it ends, never nested: get_sources
	 * (the workspace), prepare_executor (the VM's boot), then each step the
	 * agent runs, as step_<name> (after_script keeps its name). The step
	 * that runs next is predicted by the agent's rules (docs/agent-protocol.md).
	 * NULL: none. */
	void (*stage)(void *arg, const char *name, bool begin);
	/* Called once the VM has stopped, before its workspace image is
	 * removed: image is that ext4 image (the guest's /builds), project the
	 * project folder inside it ("group/project"), ok whether the job
	 * succeeded (exit code 0, no failure reason). Not called when the
	 * guest never said hello (nothing ran in it). The image may be read,
	 * not kept. NULL: none. */
	void (*finished)(void *arg, const char *image, const char *project, bool ok);
	/* Called on the job's thread once the guest said HELLO, before the
	 * job is sent to it: *spec_out (NULL: spec as it is) is the job spec
	 * with what exists only by then, added with jobspec_add_env
	 * (github/vm.c: the runner's JIT config, asked for while the VM
	 * booted). job_run wipes and frees *spec_out. A failure fails the job
	 * (runner_system_failure). NULL: none. */
	enum kiln_rc (*ready)(void *arg, const char *spec, char **spec_out, struct kiln_err *e);
	/* When the job fails, hold its VM and run an interactive shell in it
	 * (docs/agent-protocol.md, "Holding a failed job") on shell_in and
	 * shell_out, before the VM is destroyed: shell_in in raw mode while
	 * it runs when it is a terminal, the guest terminal's size following
	 * shell_out's, end of input typed as Ctrl-D. shell_hook(arg, true)
	 * comes before, (arg, false) after (to keep other output away). A job
	 * canceled or stopped at its timeout gets no shell, nor one whose
	 * image's agent lacks the feature (a notice says so). */
	bool shell;
	int shell_in, shell_out;
	void (*shell_hook)(void *arg, bool begin);
	void *arg;
	volatile sig_atomic_t *cancel; /* enum job_cancel, set from signal handlers */
};

struct job_result {
	int exit_code;               /* the job's; 1 when it failed without one */
	char failure_reason[48];     /* "" on success, else GitLab's failure reason */
	int after_script_exit;       /* after_script's exit code when it failed
				      * (the job keeps its result, as in
				      * gitlab-runner), else 0 */
	double prepare_s;            /* job start to workspace and network ready */
	double boot_s;               /* VMM start to the job starting in it: the
				      * agent's HELLO, and with a workspace built
				      * while the VM boots, that workspace */
	double run_s;                /* JOB sent to EXIT */
};

/* Run p to the end. Safe to call from several threads at once, each with
 * its own p, o and r. Returns KILN_OK when the job ran (whatever its exit
 * code: see r), or an error when it could not run (bad payload for kiln,
 * workspace or VM failure: r->failure_reason says which). */
enum kiln_rc job_run(const struct job_payload *p, const struct job_opts *o, struct job_result *r,
		     struct kiln_err *e);

/* kiln images warm: make the microvm template that a job run with o would
 * restore from (o's image, kernel, vCPUs, memory and network, or the
 * configuration's), now, without a job: a VM booted in a job folder until
 * its agent waits, saved (job/warmstart.h). A ready one is kept (*built
 * false); a failed build's record is dropped and the build tried again.
 * key16 gets the template's name, what gets the image and machine in
 * words. KILN_E_INVALID when the executor or image can have none. */
enum kiln_rc job_warm(const struct job_opts *o, bool *built, char key16[17], char *what, size_t what_size,
		      struct kiln_err *e);

/* Remove what killed kiln processes left: job folders in state_dir whose
 * owner is dead (their VMMs died with their parent) and that no process
 * holds (flock), and the taps and nft entries of dead owners' network
 * slots (host-global: jobnet_sweep). Safe beside another live kiln. */
void job_sweep(const char *state_dir);

#endif
