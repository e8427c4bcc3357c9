/* The kiln command line's options, every verb's parsed here into the plain
 * structs that the code behind it takes (gitlab/commands.h,
 * localci/scheduler.h, and those below for the verbs main.c runs itself),
 * so that help texts and errors live in one place.
 *
 * Each opts_* function returns 0 when o is filled in, OPTS_HELP when it
 * printed a help text (exit 0), or EXIT_USAGE after printing the error
 * (runner/cli.h). argv[0] is the verb. */
#ifndef KILN_OPTIONS_H
#define KILN_OPTIONS_H

#include <stdbool.h>

#include "gitlab/commands.h"
#include "localci/scheduler.h"

#define OPTS_HELP (-1)

/* Before the verb: kiln [-c FILE] [--log-format F] [--debug] [-h] [-V]. */
struct global_opts {
	const char *config_path;   /* -c, NULL for the default */
	const char *log_format;    /* NULL: the configuration's */
	bool debug;
	int verb;                  /* argv index of the verb */
};
/* Also prints the help and the version (OPTS_HELP); default_config
 * is the configuration file the help names. */
int opts_global(int argc, char **argv, const char *default_config, struct global_opts *o);

/* What every verb takes after its name, as gitlab-runner's do: -c/--config
 * FILE (into g->config_path, over one before the verb) and -h/--help (the
 * verb's usage, OPTS_HELP). Takes them out of argv (argv[0] the verb,
 * *argc shrinks), up to a "--"; an option's value spelled "-c" or "--help"
 * is read as that option. */
int opts_verb(int *argc, char **argv, const char *default_config, struct global_opts *g);

/* kiln boot [--image I] [--kernel K] [--memory MIB] [--vcpus N] -- CMD.
 * Unset fields stay as the caller set them (the configuration's). */
struct boot_opts {
	const char *image, *kernel;
	int vcpus, memory_mib;
	char *const *command;      /* in argv, NULL-terminated */
};
int opts_boot(int argc, char **argv, struct boot_opts *o);

/* Whether exec's arguments ask for one payload (--job-file): the other
 * mode of kiln exec. */
bool opts_exec_is_job_file(int argc, char **argv);

/* kiln exec --job-file FILE [--executor E] [--image I] [--kernel K]
 * [--vcpus N] [--memory MIB] [--network|--no-network]; 0 and NULL: the
 * configuration's, network -1. */
struct job_file_opts {
	const char *job_file, *executor, *image, *kernel;
	int vcpus, memory_mib, network;
	bool no_snapshot;
};
int opts_exec_job_file(int argc, char **argv, struct job_file_opts *o);

/* kiln images warm NAME [--kernel K] [--vcpus N] [--memory MIB]
 * [--network|--no-network]: argv[0] is "warm". 0 and NULL: the
 * configuration's, network -1. */
struct warm_opts {
	const char *image, *kernel;
	int vcpus, memory_mib, network;
};
int opts_images_warm(int argc, char **argv, struct warm_opts *o);

/* kiln exec [OPTIONS] [JOB...]: the pipeline (localci/scheduler.h). */
int opts_exec(int argc, char **argv, struct pexec_opts *o);

int opts_register(int argc, char **argv, struct register_opts *o);
int opts_verify(int argc, char **argv, bool *del);
int opts_unregister(int argc, char **argv, struct unregister_opts *o);
int opts_replay(int argc, char **argv, struct replay_opts *o);

/* kiln install|uninstall [--service NAME] [--user U]
 * [--working-directory DIR] [--config FILE]: runner/install.h's
 * kiln_install_opts fields; unset ones stay NULL (the defaults). */
struct install_cli_opts {
	const char *service, *user, *working_dir, *config;
};
int opts_install(int argc, char **argv, struct install_cli_opts *o);

/* kiln status [--json]. */
int opts_status(int argc, char **argv, bool *json);

/* A verb with no arguments ("VERB takes no arguments, got 'X'"). */
int opts_none(int argc, char **argv);

#endif
