/*
 * kiln: CI jobs in disposable microVMs. The command line: one function per
 * subcommand, each parsing its own options after the global ones.
 */
#include "build-config.h"

#include <limits.h>
#include <errno.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner/cli.h"
#include "runner/config.h"
#include "runner/options.h"
#include "runner/doctor.h"
#include "runner/install.h"
#include "runner/status.h"
#include "executors/executor.h"
#include "github/daemon.h"
#include "github/entry.h"
#include "gitlab/daemon.h"
#include "gitlab/commands.h"
#include "executors/template.h"
#include "job/images.h"
#include "job/ociimage.h"
#include "oci/store.h"
#include "job/job.h"
#include "job/payload.h"
#include "localci/scheduler.h"
#include "lib/log.h"
#include "job/manifest.h"
#include "lib/paths.h"
#include "lib/sha256.h"

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
	size_t i;
	int ret;

	if (opts_none(argc, argv))
		return EXIT_USAGE;
	images_ctx_init(&ictx, &c->cfg);
	hostfacts_probe("", kiln_libexec_dir(), &host);
	doctor_facts_init(&host, &facts);
	doctor_probe_images(&ictx, c->cfg.defaults.image, &facts);
	doctor_probe_jail(c->cfg.jail, c->cfg.jail_uid_base, &facts);
	doctor_probe_cache(&c->cfg, &facts);
	doctor_judge(&facts, &report);
	ret = doctor_print(&report, stdout);
	if (c->cfg.n_github)
		gh_global_init();
	for (i = 0; i < c->cfg.n_github; i++) { /* the credentials' permissions */
		struct gh_entry ent;
		struct kiln_err e = { 0 };

		if (gh_entry_open(&ent, &c->cfg.github[i], c->cfg.state_dir, &e)) {
			printf("FAIL  %s\n", e.msg);
			ret = 1;
		} else if (!gh_entry_doctor(&ent, stdout)) {
			ret = 1;
		}
		gh_entry_close(&ent);
	}
	return ret;
}

static void print_size(uint64_t bytes, char *buf, size_t size)
{
	if (bytes >= 1 << 20)
		snprintf(buf, size, "%.1f MiB", bytes / 1048576.0);
	else
		snprintf(buf, size, "%.1f KiB", bytes / 1024.0);
}

/* The OCI store's images after kiln's own (docs/images.md, "OCI images"). */
static int oci_list(const struct kiln_config *cfg)
{
	struct kiln_err e = { 0 };
	struct oci_image *v;
	size_t n, i;

	if (oci_images_list(cfg->state_dir, &v, &n, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	printf("\n%-50s %-20s %-10s %s\n", "OCI IMAGE", "DIGEST", "SIZE", "LAST USED");
	for (i = n; i-- > 0;) {
		char size[32], used[32];
		struct tm tm;

		print_size(v[i].size, size, sizeof(size));
		gmtime_r(&v[i].last_used, &tm);
		strftime(used, sizeof(used), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%-50s %-20.19s %-10s %s\n", v[i].ref, v[i].digest, size, used);
	}
	free(v);
	return EXIT_OK;
}

/* The microvm templates (executors/template.h), with blank, after a blank
 * line when there is a folder of them. */
static int templates_list(const struct kiln_config *cfg, bool blank)
{
	struct kiln_err e = { 0 };
	char root[PATH_MAX];

	if (access(kiln_config_templates_dir(cfg, root, sizeof(root)), F_OK) == 0 && blank)
		printf("\n");
	if (template_list(root, stdout, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int images_list(struct images_ctx *ictx, const struct kiln_config *cfg)
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
		char size[32], took[32], sha[65], *lines = NULL, why[300] = "stale (";
		const char *status;

		if (images_manifest(ictx, names[i], &m, &e)) {
			printf("%-14s %-8s %-10s %-20s %-8s %s\n", names[i], "-", "-", "-", "-",
			       e.rc == KILN_E_NOTFOUND ? "not built" : e.msg);
			free(names[i]);
			continue;
		}
		if (images_inputs(ictx, names[i], &lines, sha, &e))
			status = "inputs unknown";
		else if (strcmp(sha, m.inputs_sha256))
			status = "stale (inputs changed)";
		else if (images_debian_stale(&m, NULL, why + 7, sizeof(why) - 8) == 1)
			status = strcat(why, ")"); /* "stale (Debian has ...)" */
		else
			status = "current";
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
	if (oci_list(cfg) != EXIT_OK)
		return EXIT_FAIL;
	return templates_list(cfg, true) == EXIT_OK ? ret : EXIT_FAIL;
}

/* images build --all: every recipe, each rebuilt when its inputs changed
 * (images_build) or Debian published packages since it was built
 * (images_debian_stale), or always with force. Goes on past a failure. */
static int images_build_all(struct images_ctx *ictx, bool force)
{
	struct kiln_err e = { 0 };
	char **names, why[300];
	size_t n, i;
	int ret = EXIT_OK;

	if (images_recipes(ictx, &names, &n, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	for (i = 0; i < n; i++) {
		struct manifest m;
		bool again = force, rebuilt;

		if (!again && images_manifest(ictx, names[i], &m, NULL) == KILN_OK) {
			if (images_debian_stale(&m, NULL, why, sizeof(why)) == 1) {
				log_info("image %s: %s: rebuilding it", names[i], why);
				again = true;
			}
			manifest_free(&m);
		}
		if (images_build(ictx, names[i], again, &rebuilt, &e)) {
			log_error("%s", e.msg);
			ret = EXIT_FAIL;
		} else if (!rebuilt) {
			log_info("image %s is current", names[i]);
		}
		free(names[i]);
	}
	free(names);
	return ret;
}

static void exec_notice(void *arg, const char *line);

/* kiln images warm NAME: the template a job of NAME's machine restores
 * from, built now (job_warm). */
static int images_warm(struct cli *c, int argc, char **argv)
{
	struct warm_opts wo;
	struct job_opts o = { .cfg = &c->cfg, .notice = exec_notice };
	struct kiln_err e = { 0 };
	char key[17], what[256] = "";
	bool built;

	if (opts_images_warm(argc, argv, &wo))
		return EXIT_USAGE;
	o.image = wo.image;
	o.kernel = wo.kernel;
	o.vcpus = wo.vcpus;
	o.memory_mib = wo.memory_mib;
	o.network = wo.network;
	signal(SIGPIPE, SIG_IGN);
	job_sweep(c->cfg.state_dir);
	if (job_warm(&o, &built, key, what, sizeof(what), &e)) {
		log_error("images warm %s: %s", wo.image, e.msg);
		return EXIT_FAIL;
	}
	log_info("template %s (%s): %s", key, what, built ? "built" : "current");
	if (!c->cfg.defaults.snapshots)
		log_info("note: defaults: has `snapshots: false`: jobs restore from templates only where a "
			 "runner sets `snapshots: true`");
	return EXIT_OK;
}

static int cmd_images(struct cli *c, int argc, char **argv)
{
	struct images_ctx ictx;
	struct kiln_err e = { 0 };

	images_ctx_init(&ictx, &c->cfg);
	if (argc < 2)
		return cli_usage_error("%s: missing subcommand (list, build, path, pull, prune, templates, warm)", "images");
	if (!strcmp(argv[1], "list")) {
		if (argc > 2)
			return cli_usage_error("images list takes no arguments, got '%s'", argv[2]);
		return images_list(&ictx, &c->cfg);
	}
	if (!strcmp(argv[1], "build")) {
		bool force = false, all = false, rebuilt;
		char tarball[PATH_MAX];
		struct stat st;
		int i, names = 0;

		/* Options anywhere among the names; names are argv's other words. */
		for (i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--force")) {
				force = true;
			} else if (!strcmp(argv[i], "--all")) {
				all = true;
			} else if (!strcmp(argv[i], "--runner-tarball")) {
				/* github-runner's runner from a file instead of GitHub's
				 * release (no internet; a pinned build of one's own). */
				if (i + 1 >= argc)
					return cli_usage_error("images build: --runner-tarball needs a %s", "FILE");
				if (!realpath(argv[++i], tarball) || stat(tarball, &st) < 0) {
					log_error("images build: --runner-tarball %s: %s", argv[i], strerror(errno));
					return EXIT_FAIL;
				}
				if (!S_ISREG(st.st_mode)) {
					log_error("images build: --runner-tarball %s: not a regular file", argv[i]);
					return EXIT_FAIL;
				}
				ictx.runner_tarball = tarball;
			} else if (argv[i][0] == '-') {
				return cli_usage_error("images build: unknown option '%s'", argv[i]);
			} else {
				names++;
			}
		}
		if (all && names)
			return cli_usage_error("images build --all takes no names, got %d", names);
		if (all)
			return images_build_all(&ictx, force);
		if (!names)
			return cli_usage_error("images build: missing image %s", "NAME");
		for (i = 2; i < argc; i++) {
			if (argv[i][0] == '-') {
				i += !strcmp(argv[i], "--runner-tarball");
				continue;
			}
			if (images_build(&ictx, argv[i], force, &rebuilt, &e)) {
				log_error("%s", e.msg);
				return EXIT_FAIL;
			}
			if (!rebuilt)
				log_info("image %s is current", argv[i]);
		}
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "pull")) {
		struct oci_image img;

		if (argc != 3)
			return cli_usage_error("images pull: expected one %s", "REFERENCE");
		if (ociimage_pull_cli(&c->cfg, argv[2], &img, &e)) {
			log_error("%s", e.msg);
			return EXIT_FAIL;
		}
		printf("%s %s %s\n", img.ref, img.digest, img.rootfs);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "prune")) {
		uint64_t freed = 0, cap = (uint64_t)(c->cfg.oci.max_size_mib ? c->cfg.oci.max_size_mib : 20480) << 20;
		char size[32];

		if (argc > 2)
			return cli_usage_error("images prune takes no arguments, got '%s'", argv[2]);
		if (oci_images_prune(c->cfg.state_dir, cap, &freed, &e)) {
			log_error("%s", e.msg);
			return EXIT_FAIL;
		}
		print_size(freed, size, sizeof(size));
		log_info("pruned the OCI image store to %ld MiB: %s freed", (long)(cap >> 20), size);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "templates")) {
		if (argc > 2)
			return cli_usage_error("images templates takes no arguments, got '%s'", argv[2]);
		return templates_list(&c->cfg, false);
	}
	if (!strcmp(argv[1], "warm"))
		return images_warm(c, argc - 1, argv + 1);
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
	printf("%s: ok (%zu runner%s, executor %s, snapshots %s, images in %s)\n",
	       c->cfg.path ? c->cfg.path : "built-in defaults", c->cfg.n_runners,
	       c->cfg.n_runners == 1 ? "" : "s", c->cfg.defaults.executor, c->cfg.defaults.snapshots ? "on" : "off",
	       c->cfg.images_dir);
	for (i = 0; i < c->cfg.n_runners; i++)
		printf("  runner %s: %s, executor %s, image %s, snapshots %s\n", c->cfg.runners[i].name,
		       c->cfg.runners[i].url, c->cfg.runners[i].vm.executor, c->cfg.runners[i].vm.image,
		       c->cfg.runners[i].vm.snapshots ? "on" : "off");
	for (i = 0; i < c->cfg.n_github; i++) {
		const struct kiln_github_config *g = &c->cfg.github[i];

		printf("  github %s: %s, %s auth, %zu label%s, warm pool %d, image %s\n", g->name, g->url,
		       g->app_id ? "app" : "token", g->n_labels, g->n_labels == 1 ? "" : "s", g->warm_pool, g->vm.image);
	}
	return EXIT_OK;
}

/* kiln github status: each `github:` entry's demand, runners and VMs. */
static int cmd_github(struct cli *c, int argc, char **argv)
{
	int ret = EXIT_OK;
	size_t i;

	if (argc != 2 || strcmp(argv[1], "status"))
		return cli_usage_error("github: expected 'github status'%s", "");
	if (!c->cfg.n_github) {
		printf("no github: entries in %s\n", c->cfg.path ? c->cfg.path : "the configuration");
		return EXIT_OK;
	}
	gh_global_init();
	for (i = 0; i < c->cfg.n_github; i++) {
		struct gh_entry ent;
		struct kiln_err e = { 0 };

		if (gh_entry_open(&ent, &c->cfg.github[i], c->cfg.state_dir, &e) ||
		    gh_entry_status(&ent, (long long)time(NULL), stdout, &e)) {
			log_error("%s", e.msg);
			ret = EXIT_FAIL;
		}
		gh_entry_close(&ent);
	}
	return ret;
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
	if (opts_none(argc, argv))
		return EXIT_USAGE;
	glrunner_set_service(gh_daemon_start, gh_daemon_stop); /* the github: entries */
	return glcmd_run(&c->cfg, config_path(c));
}

static int cmd_replay(struct cli *c, int argc, char **argv)
{
	static struct replay_opts o; /* 2 KiB of variables */

	return opts_replay(argc, argv, &o) ? EXIT_USAGE : glcmd_replay(&c->cfg, &o);
}

/* install/uninstall: runner/install.h; the unit's config is --config, else
 * the global -c, else the default, made absolute for systemd. */
static int install_verb(struct cli *c, int argc, char **argv, bool install)
{
	struct install_cli_opts io = { 0 };
	struct kiln_install_opts o = { 0 };
	struct kiln_err e = { 0 };
	char *abs = NULL;
	int ret;

	if ((ret = opts_install(argc, argv, &io)))
		return ret == OPTS_HELP ? EXIT_OK : ret;
	o.service = io.service;
	o.user = io.user;
	o.working_dir = io.working_dir;
	o.config = io.config ? io.config : config_path(c);
	if (o.config[0] != '/' && (abs = realpath(o.config, NULL)))
		o.config = abs;
	o.shutdown_timeout = c->cfg.shutdown_timeout;
	ret = install ? kiln_install(&o, &e) : kiln_uninstall(&o, &e);
	if (ret)
		log_error("%s: %s", argv[0], e.msg);
	else
		log_info("%s: %s.service %s", argv[0], o.service ? o.service : "kiln",
			 install ? "installed and enabled (systemctl start it)" : "removed");
	free(abs);
	return ret ? EXIT_FAIL : EXIT_OK;
}

static int cmd_install(struct cli *c, int argc, char **argv)
{
	return install_verb(c, argc, argv, true);
}

static int cmd_uninstall(struct cli *c, int argc, char **argv)
{
	return install_verb(c, argc, argv, false);
}

static int cmd_status(struct cli *c, int argc, char **argv)
{
	bool json = false;
	json_t *doc;

	if (opts_status(argc, argv, &json))
		return EXIT_USAGE;
	if (!(doc = status_collect(&c->cfg, NULL))) {
		log_error("status: out of memory");
		return EXIT_FAIL;
	}
	status_print(doc, json, stdout);
	json_decref(doc);
	return EXIT_OK;
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
	struct host_facts host;
	int ret;

	/* Before any payload, as in a daemon (lib/sha256.h). */
	sha256_warm();
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
	/* Once, as the daemon and the pipeline scheduler do at start. */
	hostfacts_probe("", kiln_libexec_dir(), &host);
	o.host = &host;
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
		{ "github", cmd_github },
		{ "boot", cmd_boot },
		{ "exec", cmd_exec },
		{ "register", cmd_register },
		{ "verify", cmd_verify },
		{ "unregister", cmd_unregister },
		{ "list", cmd_list },
		{ "run", cmd_run },
		{ "replay", cmd_replay },
		{ "install", cmd_install },
		{ "uninstall", cmd_uninstall },
		{ "status", cmd_status },
	};
	struct global_opts g = { 0 };
	struct cli c = { 0 };
	size_t i;
	int ret, vargc;

	if ((ret = opts_global(argc, argv, kiln_config_default_path(), &g)))
		return ret == OPTS_HELP ? EXIT_OK : ret;
	if (g.debug)
		kiln_log_set_level(KILN_LOG_DEBUG);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[g.verb], cmds[i].name))
			continue;
		/* -c FILE and --help after the verb too, before the file is read. */
		vargc = argc - g.verb;
		if ((ret = opts_verb(&vargc, argv + g.verb, kiln_config_default_path(), &g)))
			return ret == OPTS_HELP ? EXIT_OK : ret;
		c.config_path = g.config_path;
		c.config_given = g.config_path != NULL;
		if (!strcmp(cmds[i].name, "register"))
			c.config_given = false; /* register may create the file */
		if ((ret = load_config(&c)))
			return ret;
		if (g.log_format)
			kiln_log_set_json(!strcmp(g.log_format, "json"));
		ret = cmds[i].fn(&c, vargc, argv + g.verb);
		kiln_config_free(&c.cfg);
		return ret;
	}
	return cli_usage_error("unknown command '%s'", argv[g.verb]);
}
