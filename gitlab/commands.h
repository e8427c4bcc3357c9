/* The GitLab commands of the kiln command line:
 *
 *   register --url URL --token TOKEN [-c FILE] [--name N] [--tls-ca-file F]
 *            [--executor E] [--image I] [--tag-list T] [--run-untagged[=B]]
 *            [--locked[=B]] [--access-level L] [--maximum-timeout S]
 *            [--paused[=B]] [--maintenance-note N]
 *       glrt- tokens are verified, others are legacy registration tokens
 *       exchanged through POST /runners; the runner is appended to the
 *       configuration file and the system_id kept beside it
 *   verify [--delete]        verify every runner; --delete drops refused ones
 *   unregister --name N | --all
 *   list                     the runners, without network
 *   run                      the runner daemon (gitlab/daemon.h)
 *   replay FILE|JOB_ID [--variable K=V]... [--executor E]
 *       run a saved payload (<state_dir>/payloads/<id>.json) again
 */
#ifndef KILN_GLCMD_H
#define KILN_GLCMD_H

#include <stdbool.h>
#include <stddef.h>

#include "runner/config.h"

#define GLCMD_MAX_REPLAY_VARS 256

/* Each command takes cfg, loaded from config_path, and its options as
 * runner/options.c parsed them, and returns the exit status. */

struct register_opts {
	const char *url, *token;   /* required */
	const char *config_path;   /* -c after the verb: the file to add to; NULL: config_path */
	const char *name;          /* NULL: the host's name */
	const char *tls_ca_file, *executor, *image;
	/* Legacy registration tokens only, as gitlab-runner's flags; a glrt-
	 * runner has these set in GitLab. NULL, 0 and -1: unset. */
	const char *tag_list, *access_level, *maintenance_note;
	int run_untagged, locked, paused;  /* -1, or 0/1 */
	int maximum_timeout;
};
/* cfg may come from a missing file here: register creates it. */
int glcmd_register(struct kiln_config *cfg, const char *config_path, const struct register_opts *o);

/* del: drop the runners GitLab refuses from the configuration. */
int glcmd_verify(struct kiln_config *cfg, const char *config_path, bool del);

struct unregister_opts {
	const char *name;          /* this runner, or */
	bool all;                  /* every one */
};
int glcmd_unregister(struct kiln_config *cfg, const char *config_path, const struct unregister_opts *o);

int glcmd_list(struct kiln_config *cfg, const char *config_path);

/* The runner daemon (gitlab/daemon.h). */
int glcmd_run(struct kiln_config *cfg, const char *config_path);

struct replay_opts {
	const char *what;          /* a payload file or a job id */
	const char *vars[GLCMD_MAX_REPLAY_VARS]; /* KEY=VALUE, set in the payload */
	size_t n_vars;
	const char *executor;      /* NULL: the configuration's */
};
int glcmd_replay(struct kiln_config *cfg, const struct replay_opts *o);

#endif
