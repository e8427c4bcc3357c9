/*
 * kiln: CI jobs in disposable microVMs. The command line: one function per
 * subcommand, each parsing its own options after the global ones.
 */
#include "build-config.h"

#include <limits.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/cli.h"
#include "runner/config.h"
#include "runner/options.h"
#include "runner/doctor.h"
#include "executors/executor.h"
#include "gitlab/commands.h"
#include "executors/template.h"
#include "job/images.h"
#include "job/job.h"
#include "job/payload.h"
#include "localci/scheduler.h"
#include "lib/log.h"
#include "job/manifest.h"
#include "lib/paths.h"

struct cli {
	const char *config_path;  /* -c, NULL for the default */
	bool config_given;
	struct kiln_config cfg;
};

static int load_config(struct cli *c)
{
	struct kiln_err e = { 0 };
	const char *path = c->config_path ? c->config_path : kiln_config_default_path();

	if (kiln_config_defaults(&c->cfg, &e) ||
	    kiln_config_load(&c->cfg, path, c->config_given, &e)) {
		log_error("%s", e.msg);
		kiln_config_free(&c->cfg);
		return EXIT_FAIL;
	}
	if (!strcmp(c->cfg.log_format, "json"))
		kiln_log_set_json(1);
	return EXIT_OK;
}

static int cmd_doctor(struct cli *c, int argc, char **argv)
{
	struct host_facts host;
	struct doctor_facts facts;
	struct doctor_report report;
	struct images_ctx ictx;

	if (opts_none(argc, argv))
		return EXIT_USAGE;
	images_ctx_init(&ictx, &c->cfg);
	hostfacts_probe("", kiln_libexec_dir(), &host);
	doctor_facts_init(&host, &facts);
	doctor_probe_images(&ictx, c->cfg.defaults.image, &facts);
	doctor_probe_jail(c->cfg.jail, c->cfg.jail_uid_base, &facts);
	doctor_judge(&facts, &report);
	return doctor_print(&report, stdout);
}

static void print_size(uint64_t bytes, char *buf, size_t size)
{
	if (bytes >= 1 << 20)
		snprintf(buf, size, "%.1f MiB", bytes / 1048576.0);
	else
		snprintf(buf, size, "%.1f KiB", bytes / 1024.0);
}

static int images_list(struct images_ctx *ictx)
{
	struct kiln_err e = { 0 };
	char **names;
	size_t n, i, j;
	int ret = EXIT_OK;

	if (images_recipes(ictx, &names, &n, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	printf("%-14s %-8s %-10s %-20s %-8s %s\n", "NAME", "KIND", "SIZE", "BUILT", "TOOK", "STATUS");
	for (i = 0; i < n; i++) {
		struct manifest m;
		char size[32], took[32], sha[65], *lines = NULL;
		const char *status;

		if (images_manifest(ictx, names[i], &m, &e)) {
			printf("%-14s %-8s %-10s %-20s %-8s %s\n", names[i], "-", "-", "-", "-",
			       e.rc == KILN_E_NOTFOUND ? "not built" : e.msg);
			free(names[i]);
			continue;
		}
		if (images_inputs(ictx, names[i], &lines, sha, &e))
			status = "inputs unknown";
		else
			status = strcmp(sha, m.inputs_sha256) ? "stale (inputs changed)" : "current";
		print_size(manifest_size(&m), size, sizeof(size));
		snprintf(took, sizeof(took), "%.1fs", m.build_seconds);
		printf("%-14s %-8s %-10s %-20s %-8s %s\n", m.name, m.kind, size, m.built, took, status);
		for (j = 0; j < m.n_files; j++)
			printf("    file  %-14s %12llu  sha256:%s\n", m.files[j].name,
			       (unsigned long long)m.files[j].size, m.files[j].sha256);
		for (j = 0; j < m.n_inputs; j++)
			printf("    input %s\n", m.inputs[j]);
		free(lines);
		manifest_free(&m);
		free(names[i]);
	}
	free(names);
	return ret;
}

static int cmd_images(struct cli *c, int argc, char **argv)
{
	struct images_ctx ictx;
	struct kiln_err e = { 0 };

	images_ctx_init(&ictx, &c->cfg);
	if (argc < 2)
		return cli_usage_error("%s: missing subcommand (list, build, path, templates)", "images");
	if (!strcmp(argv[1], "list")) {
		if (argc > 2)
			return cli_usage_error("images list takes no arguments, got '%s'", argv[2]);
		return images_list(&ictx);
	}
	if (!strcmp(argv[1], "build")) {
		bool force = false, rebuilt;
		int i = 2;

		if (i < argc && (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--force"))) {
			force = true;
			i++;
		}
		if (i >= argc)
			return cli_usage_error("images build: missing image %s", "NAME");
		for (; i < argc; i++) {
			if (argv[i][0] == '-')
				return cli_usage_error("images build: unknown option '%s'", argv[i]);
			if (images_build(&ictx, argv[i], force, &rebuilt, &e)) {
				log_error("%s", e.msg);
				return EXIT_FAIL;
			}
			if (!rebuilt)
				log_info("image %s is current", argv[i]);
		}
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "templates")) {
		if (argc > 2)
			return cli_usage_error("images templates takes no arguments, got '%s'", argv[2]);
		if (template_list(c->cfg.state_dir, stdout, &e)) {
			log_error("%s", e.msg);
			return EXIT_FAIL;
		}
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "path")) {
		char path[PATH_MAX];

		if (argc != 4)
			return cli_usage_error("images path: expected NAME FILE%s", "");
		if (images_file(&ictx, argv[2], argv[3], path, sizeof(path), &e)) {
			log_error("%s", e.msg);
			return EXIT_FAIL;
		}
		printf("%s\n", path);
		return EXIT_OK;
	}
	return cli_usage_error("images: unknown subcommand '%s'", argv[1]);
}

static int cmd_config(struct cli *c, int argc, char **argv)
{
	size_t i;

	if (argc != 2 || strcmp(argv[1], "check"))
		return cli_usage_error("config: expected 'config check'%s", "");
	/* load_config already validated it; say what was read. */
	printf("%s: ok (%zu runner%s, executor %s, images in %s)\n",
	       c->cfg.path ? c->cfg.path : "built-in defaults", c->cfg.n_runners,
	       c->cfg.n_runners == 1 ? "" : "s", c->cfg.defaults.executor, c->cfg.images_dir);
	for (i = 0; i < c->cfg.n_runners; i++)
		printf("  runner %s: %s, executor %s, image %s\n", c->cfg.runners[i].name, c->cfg.runners[i].url,
		       c->cfg.runners[i].vm.executor, c->cfg.runners[i].vm.image);
	return EXIT_OK;
}

static int cmd_boot(struct cli *c, int argc, char **argv)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], rootfs[PATH_MAX], run_dir[] = "/tmp/kiln-boot-XXXXXX";
	struct boot_opts bo = { .image = c->cfg.defaults.image, .kernel = c->cfg.defaults.kernel,
				.vcpus = c->cfg.defaults.vcpus, .memory_mib = c->cfg.defaults.memory_mib };
	const char *image, *kname;
	struct host_facts host;
	struct executor_choice choice;
	struct images_ctx ictx;
	struct vm_spec s = { 0 };
	struct kiln_err e = { 0 };
	struct manifest km;
	int status;

	if (opts_boot(argc, argv, &bo))
		return EXIT_USAGE;
	image = bo.image;
	kname = bo.kernel;
	s.vcpus = bo.vcpus;
	s.memory_mib = bo.memory_mib;
	s.command = bo.command;

	images_ctx_init(&ictx, &c->cfg);
	if (images_manifest(&ictx, kname, &km, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	if (images_file(&ictx, kname, manifest_find(&km, "bzImage") ? "bzImage" : "vmlinuz", kernel,
			sizeof(kernel), &e) ||
	    (manifest_find(&km, "initrd.img") &&
	     images_file(&ictx, kname, "initrd.img", initrd, sizeof(initrd), &e)) ||
	    images_file(&ictx, image, "rootfs.ext4", rootfs, sizeof(rootfs), &e)) {
		manifest_free(&km);
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	s.initrd = manifest_find(&km, "initrd.img") ? initrd : NULL;
	manifest_free(&km);
	s.kernel = kernel;
	s.rootfs = rootfs;

	hostfacts_probe("", kiln_libexec_dir(), &host);
	if (executor_pick(c->cfg.defaults.executor, &host, &choice, &e)) {
		log_error("cannot boot a VM here: %s", e.msg);
		return EXIT_FAIL;
	}
	s.helper = choice.helper;
	s.accel = choice.accel;
	if (!mkdtemp(run_dir)) {
		log_error("cannot make a folder for the VM in /tmp: %s", strerror(errno));
		return EXIT_FAIL;
	}
	s.run_dir = run_dir;
	log_info("booting image %s with kernel %s in a fresh VM: %s, %d vCPU, %d MiB", image, kname,
		 choice.ops != &executor_qemu ? "kiln-vmm (KVM)"
		 : strcmp(s.accel, "kvm")     ? "QEMU microvm (TCG, no usable hardware KVM)"
					      : "QEMU microvm (KVM)",
		 s.vcpus, s.memory_mib);
	fflush(stdout);
	if (executor_run_command(choice.ops, &s, 1, &status, &e)) {
		kiln_rm_rf(run_dir);
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	kiln_rm_rf(run_dir);
	return status;
}

static volatile sig_atomic_t job_cancel;

static void on_cancel_signal(int sig)
{
	/* SIGTERM asks politely (after_script still runs); SIGINT, or a second
	 * signal, stops the VM at once. */
	job_cancel = (sig == SIGTERM && job_cancel == JOB_RUN) ? JOB_CANCEL_GRACEFUL : JOB_CANCEL_NOW;
}

static void exec_output(void *arg, const void *buf, size_t n)
{
	(void)arg;
	kiln_write_all(1, buf, n);
}

static void exec_notice(void *arg, const char *line)
{
	(void)arg;
	log_info("%s", line);
}

/* register, verify, unregister, list, run, replay: gitlab/commands.h. */
static const char *config_path(const struct cli *c)
{
	return c->config_path ? c->config_path : kiln_config_default_path();
}

static int cmd_register(struct cli *c, int argc, char **argv)
{
	struct register_opts o = { 0 };

	return opts_register(argc, argv, &o) ? EXIT_USAGE : glcmd_register(&c->cfg, config_path(c), &o);
}

static int cmd_verify(struct cli *c, int argc, char **argv)
{
	bool del;

	return opts_verify(argc, argv, &del) ? EXIT_USAGE : glcmd_verify(&c->cfg, config_path(c), del);
}

static int cmd_unregister(struct cli *c, int argc, char **argv)
{
	struct unregister_opts o = { 0 };

	return opts_unregister(argc, argv, &o) ? EXIT_USAGE : glcmd_unregister(&c->cfg, config_path(c), &o);
}

static int cmd_list(struct cli *c, int argc, char **argv)
{
	return opts_none(argc, argv) ? EXIT_USAGE : glcmd_list(&c->cfg, config_path(c));
}

static int cmd_run(struct cli *c, int argc, char **argv)
{
	return opts_none(argc, argv) ? EXIT_USAGE : glcmd_run(&c->cfg, config_path(c));
}

static int cmd_replay(struct cli *c, int argc, char **argv)
{
	static struct replay_opts o; /* 2 KiB of variables */

	return opts_replay(argc, argv, &o) ? EXIT_USAGE : glcmd_replay(&c->cfg, &o);
}

static int cmd_exec(struct cli *c, int argc, char **argv)
{
	static struct pexec_opts po; /* 6 KiB of names */
	struct job_file_opts jo = { 0 };
	struct job_opts o = { .cfg = &c->cfg, .output = exec_output, .notice = exec_notice, .cancel = &job_cancel };
	const char *job_file;
	struct job_payload p;
	struct job_result r;
	struct kiln_err e = { 0 };
	struct sigaction sa = { .sa_handler = on_cancel_signal };
	int ret;

	/* Without --job-file: the repository's pipeline (localci/scheduler.h). */
	if (!opts_exec_is_job_file(argc, argv)) {
		if ((ret = opts_exec(argc, argv, &po)))
			return ret == OPTS_HELP ? EXIT_OK : ret;
		return pipeexec_run(&c->cfg, &po);
	}
	if (opts_exec_job_file(argc, argv, &jo))
		return EXIT_USAGE;
	job_file = jo.job_file;
	o.executor = jo.executor;
	o.image = jo.image;
	o.kernel = jo.kernel;
	o.vcpus = jo.vcpus;
	o.memory_mib = jo.memory_mib;
	o.network = jo.network;
	o.no_snapshot = jo.no_snapshot;
	if (payload_load(job_file, &p, &e)) {
		log_error("%s", e.msg);
		return EXIT_USAGE;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	job_sweep(c->cfg.state_dir);
	if (job_run(&p, &o, &r, &e)) {
		payload_free(&p);
		log_error("job %s could not run: %s", job_file, e.msg);
		return 125;
	}
	payload_free(&p);
	if (r.failure_reason[0])
		log_info("job failed: %s, exit code %d", r.failure_reason, r.exit_code);
	else
		log_info("job succeeded (boot %.1f s, run %.1f s)", r.boot_s, r.run_s);
	if (r.exit_code == 0 && r.failure_reason[0])
		return 1;
	return r.exit_code;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *, int, char **);
	} cmds[] = {
		{ "doctor", cmd_doctor },
		{ "images", cmd_images },
		{ "config", cmd_config },
		{ "boot", cmd_boot },
		{ "exec", cmd_exec },
		{ "register", cmd_register },
		{ "verify", cmd_verify },
		{ "unregister", cmd_unregister },
		{ "list", cmd_list },
		{ "run", cmd_run },
		{ "replay", cmd_replay },
	};
	struct global_opts g = { 0 };
	struct cli c = { 0 };
	size_t i;
	int ret;

	if ((ret = opts_global(argc, argv, kiln_config_default_path(), &g)))
		return ret == OPTS_HELP ? EXIT_OK : ret;
	c.config_path = g.config_path;
	c.config_given = g.config_path != NULL;
	if (g.debug)
		kiln_log_set_level(KILN_LOG_DEBUG);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[g.verb], cmds[i].name))
			continue;
		if (!strcmp(cmds[i].name, "register"))
			c.config_given = false; /* register may create the file */
		if ((ret = load_config(&c)))
			return ret;
		if (g.log_format)
			kiln_log_set_json(!strcmp(g.log_format, "json"));
		ret = cmds[i].fn(&c, argc - g.verb, argv + g.verb);
		kiln_config_free(&c.cfg);
		return ret;
	}
	return cli_usage_error("unknown command '%s'", argv[g.verb]);
}
