/* The GitLab commands of the kiln command line:
 *
 *   register --url URL --token TOKEN [-c FILE] [--name N] [--tls-ca-file F]
 *            [--executor E] [--image I]
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

#include "runner/config.h"

/* Whether name is one of the commands above. */
bool glcmd_is(const char *name);

/* Run the command argv[0] with its arguments; cfg was loaded from
 * config_path (a missing file is allowed for register). Returns the exit
 * status. */
int glcmd_main(struct kiln_config *cfg, const char *config_path, int argc, char **argv);

#endif
