/* The JOB frame's payload (docs/agent-protocol.md, "Job spec"), parsed and
 * checked in full before anything runs, so a bad spec fails with one message
 * naming the field instead of half-running. */
#ifndef KILN_AGENT_JOBSPEC_H
#define KILN_AGENT_JOBSPEC_H

#include <stddef.h>
#include <sys/types.h>

/* Ceilings on a spec's lists; the frame is at most 1 MiB anyway. */
#define JOBSPEC_MAX_STEPS 64
#define JOBSPEC_MAX_ENV 4096
#define JOBSPEC_MAX_FILES 1024
#define JOBSPEC_MAX_TIMEOUT (30 * 24 * 3600)   /* seconds */
#define JOBSPEC_DEFAULT_TIMEOUT 3600

enum job_when {
	WHEN_ON_SUCCESS,   /* only while every earlier on_success step succeeded */
	WHEN_ON_FAILURE,   /* only once an on_success step failed */
	WHEN_ALWAYS,
};

struct job_file {
	char *path;      /* absolute */
	char *content;   /* may hold NUL bytes: content_len counts them */
	size_t content_len;
	mode_t mode;     /* permission bits, default 0600 */
};

struct job_step {
	char *name;
	char **script;   /* nscript commands */
	size_t nscript;
	unsigned timeout;   /* seconds, 1..JOBSPEC_MAX_TIMEOUT */
	enum job_when when;
};

struct job_spec {
	char *workdir;   /* absolute */
	char **env;      /* "NAME=VALUE", in spec order (later entries win) */
	size_t nenv;
	struct job_file *files;
	size_t nfiles;
	struct job_step *steps;   /* at least one */
	size_t nsteps;
	int hold_on_failure;      /* keep the VM for a shell when the job failed */
	int debug_trace;          /* CI_DEBUG_TRACE: the steps' shell traces each command */
	int service;              /* "mode": "service": steps is one step running argv */
	int exec;                 /* "mode": "exec": steps is one step, exec_argv */
	char *hosts;              /* lines for /etc/hosts (the job's services), or NULL */
	int has_clock;            /* the host's wall clock came with the job */
	long long clock_sec;      /* CLOCK_REALTIME on the host when it sent the job */
	long clock_nsec;
	/* An OCI image job (docs/images.md): the image's disk, found by its
	 * ext4 label, becomes the steps' root; NULL: kiln's own image. */
	char *image_label;
	char *image_user;         /* the image's User, "" or NULL: root */
	/* The entrypoint each step's shell runs under, as docker runs a
	 * container's Entrypoint with its Cmd: NULL-terminated, or NULL. */
	char **image_entrypoint;
	size_t image_nentrypoint;
	/* "mode": "exec" (issue #17: GitHub's run.sh): the one step execs
	 * exec_argv (NULL-terminated) itself, no shell in between, as
	 * exec_user (NULL: root; with exec_add_user, added to the image's
	 * passwd and group, at home in workdir, when it has no entry), its
	 * standard input the exec_stdin_len bytes of exec_stdin (NULL:
	 * /dev/null), which the agent wipes once they are in the pipe. */
	char **exec_argv;
	size_t exec_argc;
	char *exec_user;
	int exec_add_user;
	char *exec_stdin;
	size_t exec_stdin_len;
};

#define JOBSPEC_MAX_ARGV 256
#define JOBSPEC_MAX_HOSTS (64u << 10)   /* bytes of /etc/hosts lines */
#define JOBSPEC_MAX_STDIN (64u << 10)   /* an exec step's stdin: one pipe's default capacity */

/* Parse and check json[0..len). Required: workdir (absolute path) and steps
 * (1..JOBSPEC_MAX_STEPS objects, each with a non-empty name and a script
 * array of strings). Optional: env ([name, value] string pairs), files
 * ({path, content, mode}), a step's timeout (default
 * JOBSPEC_DEFAULT_TIMEOUT) and when (default on_success), hold_on_failure
 * and debug_trace (booleans, default false), clock ({sec, nsec}: the host's
 * wall clock when it sent the job), image ({label, user, entrypoint}: run
 * the steps chrooted into that disk as that user, each step's shell
 * command given as arguments to entrypoint, 0..JOBSPEC_MAX_ARGV strings,
 * when it has any), hosts (a string of /etc/hosts
 * lines, at most JOBSPEC_MAX_HOSTS bytes). "mode": "service" (issue #16)
 * runs a job's service instead: argv (1..JOBSPEC_MAX_ARGV strings) is
 * required, workdir is optional ("/") and steps is not read; the spec gets
 * one step, "service", that execs argv under the step timeout's ceiling.
 * "mode": "exec" (issue #17) execs argv (1..JOBSPEC_MAX_ARGV strings)
 * without a shell: workdir is required, steps is not read, and the spec
 * gets one step, "exec"; optional user (a passwd name, user_name_ok),
 * add_user (boolean) and stdin (a string of at most JOBSPEC_MAX_STDIN
 * bytes).
 * Unknown members are ignored, so a
 * newer host can add some. On success returns 0 and fills *spec (free it with jobspec_free). On failure returns -EINVAL (bad
 * spec) or -ENOMEM, leaves *spec empty, and writes one line without a
 * newline to err, naming the field: "steps[1].timeout: must be an integer
 * in 1..2592000". */
int jobspec_parse(const void *json, size_t len, struct job_spec *spec, char *err, size_t errsz);

/* Free what jobspec_parse allocated and zero *spec; safe on a zeroed spec. */
void jobspec_free(struct job_spec *spec);

/* Whether the step is an after_script step (it gets CI_JOB_STATUS and still
 * runs after a graceful cancel). */
int jobspec_is_after_script(const struct job_step *step);

#endif
