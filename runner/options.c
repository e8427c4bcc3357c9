#include "runner/options.h"

#include "build-config.h"

#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executors/executor.h"
#include "runner/cli.h"

static void usage(FILE *out, const char *default_config)
{
	fprintf(out,
		"usage: kiln [-c FILE] [--log-format text|json] [--debug] COMMAND [ARGS]\n"
		"\n"
		"Run CI jobs, each in a fresh microVM.\n"
		"\n"
		"commands:\n"
		"  doctor                 check what this host offers and which executor kiln uses\n"
		"  images list            list built guest images and whether they are current\n"
		"  images build [-f] NAME...  build images from their recipes (cached by inputs);\n"
		"                         --runner-tarball FILE: github-runner's runner from FILE\n"
		"  images build [-f] --all  build every recipe whose inputs changed or whose Debian\n"
		"                         packages were updated since (the weekly timer's)\n"
		"  images path NAME FILE  print the path of one file of a built image\n"
		"  images pull REF        pull an OCI image into the store (oci: registries for auth)\n"
		"  images prune           drop least recently used OCI images down to oci.max_size_mib\n"
		"  images templates       list the microvm executor's VM templates\n"
		"  images warm NAME [--vcpus N] [--memory MIB] [--no-network]  build the template\n"
		"                         of NAME's machine now, not at its first job\n"
		"  config check           validate the configuration file\n"
		"  github status          the GitHub entries' queued jobs, runners and VMs\n"
		"  boot [OPTIONS] -- CMD  boot an image in a fresh VM and run CMD in it\n"
		"  exec --job-file FILE   run one GitLab job payload in a fresh VM, print its log,\n"
		"                         exit with its exit code (125: it could not run)\n"
		"  exec [OPTIONS] [JOB...]  run the .gitlab-ci.yml pipeline of the repository here,\n"
		"                         each job in a fresh VM (see kiln exec --help)\n"
		"  register --url URL --token TOKEN [-c FILE] [--name N] [--tls-ca-file F]\n"
		"                         add a GitLab runner to the configuration (glrt- tokens are\n"
		"                         verified, others are legacy registration tokens)\n"
		"  verify [--delete]      check every runner's token with GitLab\n"
		"  unregister --name N | --all   remove runners from GitLab and the configuration\n"
		"  list                   list the configured runners\n"
		"  run                    take jobs from GitLab and run each in a fresh VM\n"
		"  replay FILE|JOB_ID [--variable K=V]  run a received job's payload again\n"
		"  install [--service NAME] [--user U] [--working-directory DIR] [--config FILE]\n"
		"                         install and enable kiln as a systemd service (NAME.service)\n"
		"  uninstall [--service NAME]  stop, disable and remove that service\n"
		"  status [--json]        runners, jobs, VMs, images, cache and last errors of this host\n"
		"\n"
		"options:\n"
		"  -c, --config FILE      configuration file (default %s)\n"
		"      --log-format F     text or json\n"
		"      --debug            print debug messages\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n",
		default_config);
}

int opts_global(int argc, char **argv, const char *default_config, struct global_opts *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-format", required_argument, NULL, 'L' },
		{ "debug", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'L':
			if (strcmp(optarg, "text") && strcmp(optarg, "json"))
				return cli_usage_error("--log-format must be text or json, not '%s'", optarg);
			o->log_format = optarg;
			break;
		case 'D':
			o->debug = true;
			break;
		case 'h':
			usage(stdout, default_config);
			return OPTS_HELP;
		case 'V':
			printf("kiln %s\n", PACKAGE_VERSION);
			return OPTS_HELP;
		default:
			return cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("missing %s", "command");
	opterr = 1;
	o->verb = optind;
	return 0;
}

int opts_none(int argc, char **argv)
{
	if (argc > 1)
		return cli_usage_error("%s takes no arguments, got '%s'", argv[0], argv[1]);
	return 0;
}

/* A number in lo..hi for verb's option, or a usage error. */
static int number(const char *verb, const char *arg, long lo, long hi, int *out)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*end || !*arg || v < lo || v > hi)
		return verb ? cli_usage_error("%s: bad number '%s'", verb, arg) : EXIT_USAGE;
	*out = (int)v;
	return 0;
}

int opts_boot(int argc, char **argv, struct boot_opts *o)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'i': o->image = optarg; break;
		case 'k': o->kernel = optarg; break;
		case 'm':
			if (number("boot", optarg, 64, 65536, &o->memory_mib))
				return EXIT_USAGE;
			break;
		case 'n':
			if (number("boot", optarg, 1, 32, &o->vcpus))
				return EXIT_USAGE;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage_error("boot: missing the command to run, after %s", "--");
	o->command = argv + optind;
	return 0;
}

bool opts_exec_is_job_file(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return false;
		if (!strcmp(argv[i], "--job-file") || !strncmp(argv[i], "--job-file=", 11))
			return true;
	}
	return false;
}

int opts_exec_job_file(int argc, char **argv, struct job_file_opts *o)
{
	static const struct option opts[] = {
		{ "job-file", required_argument, NULL, 'j' },
		{ "executor", required_argument, NULL, 'x' },
		{ "image", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "network", no_argument, NULL, 'N' },
		{ "no-network", no_argument, NULL, 'O' },
		{ "no-snapshot", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	o->network = -1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'j': o->job_file = optarg; break;
		case 'x':
			if (!executor_known(optarg))
				return cli_usage_error("exec: --executor must be %s, not '%s'", executor_names(), optarg);
			o->executor = optarg;
			break;
		case 'i': o->image = optarg; break;
		case 'k': o->kernel = optarg; break;
		case 'N': o->network = 1; break;
		case 'O': o->network = 0; break;
		case 'S': o->no_snapshot = true; break;
		case 'n':
			if (number("exec", optarg, 1, 32, &o->vcpus))
				return EXIT_USAGE;
			break;
		case 'm':
			if (number("exec", optarg, 64, 65536, &o->memory_mib))
				return EXIT_USAGE;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (!o->job_file)
		return cli_usage_error("exec: missing --job-file FILE%s", "");
	if (optind < argc)
		return cli_usage_error("exec: unexpected argument '%s'", argv[optind]);
	return 0;
}

int opts_images_warm(int argc, char **argv, struct warm_opts *o)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "network", no_argument, NULL, 'N' },
		{ "no-network", no_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	memset(o, 0, sizeof(*o));
	o->network = -1;
	optind = 0; /* 0, not 1: glibc then reads the ordering ("" permutes) again */
	/* Options before or after NAME. */
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': o->kernel = optarg; break;
		case 'N': o->network = 1; break;
		case 'O': o->network = 0; break;
		case 'n':
			if (number("images warm", optarg, 1, 32, &o->vcpus))
				return EXIT_USAGE;
			break;
		case 'm':
			if (number("images warm", optarg, 64, 65536, &o->memory_mib))
				return EXIT_USAGE;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage_error("images warm: missing image %s", "NAME");
	o->image = argv[optind++];
	if (optind < argc)
		return cli_usage_error("images warm: unexpected argument '%s'", argv[optind]);
	return 0;
}

static void exec_usage(FILE *f)
{
	fprintf(f,
		"usage: kiln exec [OPTIONS] [JOB...]     run the repository's pipeline, each job in a fresh VM\n"
		"       kiln exec --job-file FILE [OPTIONS]  run one GitLab job payload\n"
		"\n"
		"  --cwd DIR            the repository (default: the current folder)\n"
		"  --file F             the pipeline file in it (default .gitlab-ci.yml)\n"
		"  --variable K=V       a pipeline variable (repeatable)\n"
		"  --concurrency N      jobs at once (default 1)\n"
		"  --needs              also run what the named jobs need\n"
		"  --manual JOB         let this manual job run (repeatable)\n"
		"  --dirty              lay uncommitted and untracked files over each checkout\n"
		"  --list               print the jobs, their stages and when; run nothing\n"
		"  --shell              on a failure, a shell in the failed job's VM\n"
		"  --executor auto|microvm|qemu, --image NAME, --kernel NAME, --vcpus N,\n"
		"  --memory MIB, --network, --no-network, --no-snapshot   as for --job-file\n");
}

static int exec_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exec_error(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = cli_usage_errorv("exec", fmt, ap);
	va_end(ap);
	return rc;
}

int opts_exec(int argc, char **argv, struct pexec_opts *o)
{
	static const struct option opts[] = {
		{ "cwd", required_argument, NULL, 'C' },
		{ "file", required_argument, NULL, 'f' },
		{ "variable", required_argument, NULL, 'v' },
		{ "concurrency", required_argument, NULL, 'j' },
		{ "needs", no_argument, NULL, 'N' },
		{ "manual", required_argument, NULL, 'M' },
		{ "dirty", no_argument, NULL, 'd' },
		{ "list", no_argument, NULL, 'l' },
		{ "shell", no_argument, NULL, 's' },
		{ "executor", required_argument, NULL, 'x' },
		{ "image", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "network", no_argument, NULL, 'W' },
		{ "no-network", no_argument, NULL, 'O' },
		{ "no-snapshot", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	memset(o, 0, sizeof(*o));
	o->network = -1;
	o->concurrency = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		int bad = 0;

		switch (opt) {
		case 'C': o->cwd = optarg; break;
		case 'f': o->file = optarg; break;
		case 'v':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return exec_error("--variable wants KEY=VALUE, not '%s'", optarg);
			if (o->n_variables == PIPEEXEC_MAX_ARGS)
				return exec_error("too many --variable options (%s)", "256 at most");
			o->variables[o->n_variables++] = optarg;
			break;
		case 'M':
			if (o->n_manual == PIPEEXEC_MAX_ARGS)
				return exec_error("too many --manual options (%s)", "256 at most");
			o->manual[o->n_manual++] = optarg;
			break;
		case 'N': o->needs = true; break;
		case 'd': o->dirty = true; break;
		case 'l': o->list = true; break;
		case 's': o->shell = true; break;
		case 'x':
			if (!executor_known(optarg))
				return exec_error("--executor must be %s, not '%s'", executor_names(), optarg);
			o->executor = optarg;
			break;
		case 'i': o->image = optarg; break;
		case 'k': o->kernel = optarg; break;
		case 'W': o->network = 1; break;
		case 'O': o->network = 0; break;
		case 'S': o->no_snapshot = true; break;
		case 'j': bad = number(NULL, optarg, 1, PIPEEXEC_MAX_CONCURRENCY, &o->concurrency); break;
		case 'n': bad = number(NULL, optarg, 1, 32, &o->vcpus); break;
		case 'm': bad = number(NULL, optarg, 64, 65536, &o->memory_mib); break;
		case 'h':
			exec_usage(stdout);
			return OPTS_HELP;
		default:
			return EXIT_USAGE;
		}
		if (bad)
			return exec_error("bad number '%s'", optarg);
	}
	for (; optind < argc; optind++) {
		if (o->n_selected == PIPEEXEC_MAX_ARGS)
			return exec_error("too many jobs named (%s)", "256 at most");
		o->selected[o->n_selected++] = argv[optind];
	}
	if (o->needs && !o->n_selected)
		return exec_error("--needs goes with the JOBs it is about%s", "");
	return 0;
}

/* A gitlab-runner boolean flag's value: none (true), true or false. */
static int boolean(const char *arg, int *out)
{
	if (!arg || !strcmp(arg, "true"))
		*out = 1;
	else if (!strcmp(arg, "false"))
		*out = 0;
	else
		return -1;
	return 0;
}

int opts_register(int argc, char **argv, struct register_opts *o)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "token", required_argument, NULL, 't' },
		{ "registration-token", required_argument, NULL, 't' },
		{ "config", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "tls-ca-file", required_argument, NULL, 'a' },
		{ "executor", required_argument, NULL, 'x' },
		{ "image", required_argument, NULL, 'i' },
		{ "tag-list", required_argument, NULL, 'T' },
		{ "run-untagged", optional_argument, NULL, 'U' },
		{ "locked", optional_argument, NULL, 'K' },
		{ "access-level", required_argument, NULL, 'A' },
		{ "maximum-timeout", required_argument, NULL, 'M' },
		{ "paused", optional_argument, NULL, 'P' },
		{ "maintenance-note", required_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	o->run_untagged = o->locked = o->paused = -1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': o->url = optarg; break;
		case 't': o->token = optarg; break;
		case 'c': o->config_path = optarg; break;
		case 'n': o->name = optarg; break;
		case 'a': o->tls_ca_file = optarg; break;
		case 'x':
			if (!executor_known(optarg))
				return cli_usage_error("register: --executor must be %s, not '%s'", executor_names(), optarg);
			o->executor = optarg;
			break;
		case 'i': o->image = optarg; break;
		case 'T': o->tag_list = optarg; break;
		case 'U':
			if (boolean(optarg, &o->run_untagged))
				return cli_usage_error("register: --run-untagged wants true or false, not '%s'", optarg);
			break;
		case 'K':
			if (boolean(optarg, &o->locked))
				return cli_usage_error("register: --locked wants true or false, not '%s'", optarg);
			break;
		case 'P':
			if (boolean(optarg, &o->paused))
				return cli_usage_error("register: --paused wants true or false, not '%s'", optarg);
			break;
		case 'A':
			if (strcmp(optarg, "not_protected") && strcmp(optarg, "ref_protected"))
				return cli_usage_error("register: --access-level must be not_protected or ref_protected, not '%s'",
						       optarg);
			o->access_level = optarg;
			break;
		case 'M':
			if (number("register", optarg, 1, INT_MAX, &o->maximum_timeout))
				return EXIT_USAGE;
			break;
		case 'N': o->maintenance_note = optarg; break;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return cli_usage_error("register: unexpected argument '%s'", argv[optind]);
	if (!o->url || !o->token)
		return cli_usage_error("register: --url URL and --token TOKEN are required%s", "");
	return 0;
}

int opts_verify(int argc, char **argv, bool *del)
{
	int i;

	*del = false;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--delete"))
			*del = true;
		else
			return cli_usage_error("verify: unexpected argument '%s'", argv[i]);
	}
	return 0;
}

int opts_unregister(int argc, char **argv, struct unregister_opts *o)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "all", no_argument, NULL, 'A' },
		{ "all-runners", no_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (opt == 'n')
			o->name = optarg;
		else if (opt == 'A')
			o->all = true;
		else
			return EXIT_USAGE;
	}
	if (optind < argc)
		return cli_usage_error("unregister: unexpected argument '%s'", argv[optind]);
	if (!o->name == !o->all)
		return cli_usage_error("unregister: give --name NAME or --all%s", "");
	return 0;
}

int opts_install(int argc, char **argv, struct install_cli_opts *o)
{
	static const struct option opts[] = {
		{ "service", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "working-directory", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': o->service = optarg; break;
		case 'u': o->user = optarg; break;
		case 'd': o->working_dir = optarg; break;
		case 'c': o->config = optarg; break;
		case 'h':
			printf("usage: kiln %s [--service NAME] [--user USER] [--working-directory DIR]\n"
			       "       [--config FILE]\n\n"
			       "install: write /etc/systemd/system/NAME.service (default kiln) that runs\n"
			       "`kiln --config FILE run`, then daemon-reload and enable it (start it with\n"
			       "`systemctl start NAME`). uninstall: stop and disable NAME.service and remove\n"
			       "the unit that kiln install wrote.\n", argv[0]);
			return OPTS_HELP;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return cli_usage_error("%s: unexpected argument '%s'", argv[0], argv[optind]);
	return 0;
}

int opts_status(int argc, char **argv, bool *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (opt != 'j')
			return EXIT_USAGE;
		*json = true;
	}
	if (optind < argc)
		return cli_usage_error("status: unexpected argument '%s'", argv[optind]);
	return 0;
}

int opts_replay(int argc, char **argv, struct replay_opts *o)
{
	static const struct option opts[] = {
		{ "variable", required_argument, NULL, 'v' },
		{ "executor", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	/* Options may follow the payload: getopt permutes (optind 0 makes
	 * glibc forget the "+" of the global options). */
	optind = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			if (o->n_vars >= GLCMD_MAX_REPLAY_VARS)
				return cli_usage_error("replay: more than %d --variable", GLCMD_MAX_REPLAY_VARS);
			o->vars[o->n_vars++] = optarg;
			break;
		case 'x':
			if (!executor_known(optarg))
				return cli_usage_error("replay: --executor must be %s, not '%s'", executor_names(), optarg);
			o->executor = optarg;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1)
		return cli_usage_error("replay: expected one FILE or JOB_ID%s", "");
	o->what = argv[optind];
	return 0;
}

/* Each verb's --help: its line of the global usage, spelled out. A verb
 * not listed answers with the global usage. */
static const struct {
	const char *verb, *text;
} verb_usage[] = {
	{ "doctor", "usage: kiln doctor [-c FILE]\n"
		    "  check what this host offers and which executor kiln uses\n" },
	{ "images", "usage: kiln images list | build [-f] NAME... | path NAME FILE | templates\n"
		    "       kiln images warm NAME [--kernel K] [--vcpus N] [--memory MIB] [--network|--no-network]\n"
		    "  list, build (cached by inputs) or locate the guest images; list or build\n"
		    "  the microvm executor's templates\n" },
	{ "config", "usage: kiln config check [-c FILE]\n"
		    "  validate the configuration file and say what it holds\n" },
	{ "boot", "usage: kiln boot [-c FILE] [--image I] [--kernel K] [--memory MIB] [--vcpus N] -- CMD\n"
		  "  boot an image in a fresh VM and run CMD in it\n" },
	{ "register", "usage: kiln register --url URL --token TOKEN [-c FILE] [OPTIONS]\n"
		      "  add a GitLab runner to the configuration (glrt- tokens are verified,\n"
		      "  others are legacy registration tokens)\n"
		      "\n"
		      "  --name N               the runner's name (default: the host's name)\n"
		      "  --tls-ca-file F        CA certificates for GitLab, added to the system's\n"
		      "  --executor E, --image I   the runner's executor and image\n"
		      "legacy registration tokens only (glrt- runners are set up in GitLab):\n"
		      "  --tag-list T1,T2       the runner's tags\n"
		      "  --run-untagged[=BOOL]  also take untagged jobs (default: when no tags)\n"
		      "  --locked[=BOOL]        lock the runner to its project (default true)\n"
		      "  --access-level L       not_protected or ref_protected\n"
		      "  --maximum-timeout S    the longest a job may run, in seconds\n"
		      "  --paused[=BOOL]        register the runner paused\n"
		      "  --maintenance-note N   a free-form note for the runner's maintainers\n" },
	{ "verify", "usage: kiln verify [-c FILE] [--delete]\n"
		    "  check every runner's token with GitLab; --delete drops those refused\n" },
	{ "unregister", "usage: kiln unregister [-c FILE] --name N | --all\n"
			"  remove runners from GitLab and the configuration\n" },
	{ "list", "usage: kiln list [-c FILE]\n"
		  "  list the configured runners\n" },
	{ "run", "usage: kiln run [-c FILE]\n"
		 "  take jobs from GitLab and run each in a fresh VM (SIGHUP reloads the\n"
		 "  configuration, SIGTERM stops after the running jobs, SIGQUIT at once)\n" },
	{ "replay", "usage: kiln replay [-c FILE] FILE|JOB_ID [--variable K=V] [--executor E]\n"
		    "  run a received job's payload again\n" },
};

int opts_verb(int *argc, char **argv, const char *default_config, struct global_opts *g)
{
	int i, j;
	size_t k;

	for (i = j = 1; i < *argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			/* boot's command and all after it are the verb's own */
			while (i < *argc)
				argv[j++] = argv[i++];
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			if (!strcmp(argv[0], "exec")) {
				exec_usage(stdout);
				return OPTS_HELP;
			}
			for (k = 0; k < sizeof(verb_usage) / sizeof(verb_usage[0]); k++)
				if (!strcmp(argv[0], verb_usage[k].verb)) {
					fputs(verb_usage[k].text, stdout);
					return OPTS_HELP;
				}
			usage(stdout, default_config);
			return OPTS_HELP;
		}
		if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			if (i + 1 == *argc)
				return cli_usage_error("%s: %s wants a FILE", argv[0], a);
			g->config_path = argv[++i];
		} else if (!strncmp(a, "--config=", 9)) {
			g->config_path = a + 9;
		} else if (!strncmp(a, "-c", 2)) {
			g->config_path = a + 2;
		} else {
			argv[j++] = argv[i];
		}
	}
	argv[j] = NULL;
	*argc = j;
	return 0;
}
