#include "gitlab/commands.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runner/cli.h"
#include "gitlab/client.h"
#include "gitlab/registration.h"
#include "gitlab/daemon.h"
#include "job/job.h"
#include "gitlab/jobrecord.h"
#include "lib/log.h"
#include "gitlab/mask.h"
#include "lib/paths.h"
#include "job/payload.h"


/* The token as `kiln list` shows it: its prefix and first characters. */
static void short_token(const char *token, char *buf, size_t size)
{
	snprintf(buf, size, "%.*s...", strlen(token) > 12 ? 12 : (int)strlen(token) / 2, token);
}

int glcmd_register(struct kiln_config *cfg, const char *config_path, const struct register_opts *o)
{
	struct glc_runner gr = { .url = o->url, .token = o->token, .name = o->name, .tls_ca_file = o->tls_ca_file,
				 .executor = o->executor, .image = o->image };
	struct gl_client cl = { 0 };
	struct kiln_config own = { 0 };
	struct kiln_err e = { 0 };
	char sysid[GLC_SYSTEM_ID_SIZE], host[256], ca_abs[PATH_MAX], *new_token = NULL;
	const char *path = o->config_path ? o->config_path : config_path;
	long long id = 0;
	int ret = EXIT_FAIL;
	size_t i;

	/* As gitlab-runner: GitLab holds these for glrt- runners. */
	if (gl_is_auth_token(gr.token) && (o->tag_list || o->access_level || o->maintenance_note ||
					   o->run_untagged >= 0 || o->locked >= 0 || o->paused >= 0 ||
					   o->maximum_timeout)) {
		log_error("register: --tag-list, --run-untagged, --locked, --access-level, --maximum-timeout, "
			  "--paused and --maintenance-note are set in GitLab for a runner authentication "
			  "token (glrt-): register without them");
		goto out;
	}
	/* The file kiln reads is the one -c names after the command, if any. */
	if (path != config_path) {
		if (kiln_config_defaults(&own, &e) || kiln_config_load(&own, path, false, &e)) {
			log_error("%s", e.msg);
			goto out;
		}
		cfg = &own;
	}
	for (i = 0; i < cfg->n_runners; i++)
		if (!strcmp(cfg->runners[i].token, gr.token) && !strcmp(cfg->runners[i].url, gr.url)) {
			log_error("%s: runner %s already has this token", path, cfg->runners[i].name);
			goto out;
		}
	if (!gr.name) {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "kiln");
		host[sizeof(host) - 1] = '\0';
		gr.name = host;
	}
	if (gr.tls_ca_file && gr.tls_ca_file[0] != '/' && realpath(gr.tls_ca_file, ca_abs))
		gr.tls_ca_file = ca_abs;
	if (glc_system_id(path, sysid, &e) || gl_client_init(&cl, gr.url, gr.tls_ca_file, &e)) {
		log_error("%s", e.msg);
		goto out;
	}
	gl_global_init();
	gr.token_obtained_at = (long long)time(NULL);
	if (gl_is_auth_token(gr.token)) {
		if (gl_verify(&cl, gr.token, sysid, gr.executor, &id, &gr.token_expires_at, &e)) {
			log_error("register: %s", e.msg);
			goto out;
		}
	} else {
		/* gitlab-runner's defaults: locked, untagged jobs only without tags. */
		struct gl_register_params rp = {
			.description = gr.name, .executor = gr.executor, .tag_list = o->tag_list,
			.access_level = o->access_level, .maintenance_note = o->maintenance_note,
			.run_untagged = o->run_untagged >= 0 ? o->run_untagged : !o->tag_list || !*o->tag_list,
			.locked = o->locked != 0, .paused = o->paused > 0, .maximum_timeout = o->maximum_timeout,
		};

		if (gl_register(&cl, gr.token, &rp, &new_token, &id, &gr.token_expires_at, &e)) {
			log_error("register: %s", e.msg);
			goto out;
		}
		gr.token = new_token;
	}
	if (glc_config_add(path, &gr, &e)) {
		log_error("register: %s", e.msg);
		/* Undo a legacy registration: nothing would know its token. */
		if (new_token && gl_unregister(&cl, new_token, sysid, &e))
			log_warn("register: undoing the registration: %s", e.msg);
		goto out;
	}
	printf("registered runner %s (id %lld, system ID %s) in %s\n", gr.name, id, sysid, path);
	ret = EXIT_OK;
out:
	free(new_token);
	gl_client_free(&cl);
	kiln_config_free(&own);
	return ret;
}

int glcmd_verify(struct kiln_config *cfg, const char *config_path, bool del)
{
	bool *drop = NULL, any = false;
	char sysid[GLC_SYSTEM_ID_SIZE];
	struct kiln_err e = { 0 };
	int ret = EXIT_OK;
	size_t i;

	if (!cfg->n_runners) {
		printf("%s: no runners\n", config_path);
		return EXIT_OK;
	}
	if (glc_system_id(config_path, sysid, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	gl_global_init();
	drop = calloc(cfg->n_runners, sizeof(*drop));
	if (!drop)
		return EXIT_FAIL;
	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *r = &cfg->runners[i];
		struct gl_client cl;
		long long id = 0;
		enum kiln_rc rc = gl_client_init(&cl, r->url, r->tls_ca_file, &e);

		if (!rc)
			rc = gl_client_tls(&cl, r->tls_cert_file, r->tls_key_file, &e);
		if (!rc)
			rc = gl_verify(&cl, r->token, sysid, r->vm.executor, &id, NULL, &e);
		gl_client_free(&cl);
		if (!rc) {
			printf("runner %s: %s: valid (id %lld)\n", r->name, r->url, id);
			continue;
		}
		printf("runner %s: %s: %s\n", r->name, r->url, e.msg);
		ret = EXIT_FAIL;
		if (rc == KILN_E_INVALID && del)
			any = drop[i] = true;
	}
	if (any) {
		if (glc_config_remove(config_path, drop, cfg->n_runners, &e)) {
			log_error("verify --delete: %s", e.msg);
		} else {
			for (i = 0; i < cfg->n_runners; i++)
				if (drop[i])
					printf("runner %s: removed from %s\n", cfg->runners[i].name, config_path);
			ret = EXIT_OK;
		}
	}
	free(drop);
	return ret;
}

int glcmd_unregister(struct kiln_config *cfg, const char *config_path, const struct unregister_opts *o)
{
	const char *name = o->name;
	bool all = o->all, *drop, any = false;
	char sysid[GLC_SYSTEM_ID_SIZE];
	struct kiln_err e = { 0 };
	int ret = EXIT_OK;
	size_t i;

	if (glc_system_id(config_path, sysid, &e)) {
		log_error("%s", e.msg);
		return EXIT_FAIL;
	}
	gl_global_init();
	if (!(drop = calloc(cfg->n_runners + 1, sizeof(*drop))))
		return EXIT_FAIL;
	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *r = &cfg->runners[i];
		struct gl_client cl;
		enum kiln_rc rc;

		if (!all && strcmp(r->name, name))
			continue;
		rc = gl_client_init(&cl, r->url, r->tls_ca_file, &e);
		if (!rc)
			rc = gl_client_tls(&cl, r->tls_cert_file, r->tls_key_file, &e);
		if (!rc)
			rc = gl_unregister(&cl, r->token, sysid, &e);
		gl_client_free(&cl);
		if (rc == KILN_OK || rc == KILN_E_NOTFOUND) {
			if (rc)
				log_warn("runner %s: %s", r->name, e.msg);
			printf("runner %s: unregistered\n", r->name);
			any = drop[i] = true;
		} else {
			log_error("runner %s: %s (kept in %s)", r->name, e.msg, config_path);
			ret = EXIT_FAIL;
		}
	}
	if (name && !any && ret == EXIT_OK) {
		log_error("%s has no runner named '%s'", config_path, name);
		ret = EXIT_FAIL;
	}
	if (any && glc_config_remove(config_path, drop, cfg->n_runners, &e)) {
		log_error("unregister: %s", e.msg);
		ret = EXIT_FAIL;
	}
	free(drop);
	return ret;
}

int glcmd_list(struct kiln_config *cfg, const char *config_path)
{
	char tok[32];
	size_t i;

	printf("%s: %zu runner%s\n", config_path, cfg->n_runners, cfg->n_runners == 1 ? "" : "s");
	for (i = 0; i < cfg->n_runners; i++) {
		const struct kiln_runner_config *r = &cfg->runners[i];

		short_token(r->token, tok, sizeof(tok));
		printf("%-20s executor=%s token=%s url=%s\n", r->name, r->vm.executor, tok, r->url);
	}
	return EXIT_OK;
}

/* --- replay ------------------------------------------------------------------- */

static volatile sig_atomic_t replay_cancel;

static void on_replay_signal(int sig)
{
	replay_cancel = (sig == SIGTERM && replay_cancel == JOB_RUN) ? JOB_CANCEL_GRACEFUL : JOB_CANCEL_NOW;
}

static void write_stdout(void *arg, const void *buf, size_t n)
{
	(void)arg;
	kiln_write_all(1, buf, n);
}

static void replay_output(void *arg, const void *buf, size_t n)
{
	mask_write(arg, buf, n);
}

static void replay_notice(void *arg, const char *line)
{
	log_info("%s", line);
}

/* Set variable key to value in doc's variables (added when missing). */
static enum kiln_rc set_variable(json_t *doc, const char *kv, struct kiln_err *e)
{
	const char *eq = strchr(kv, '=');
	json_t *vars = json_object_get(doc, "variables"), *v;
	char key[256];
	size_t i;

	if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key))
		return kiln_fail(e, KILN_E_INVALID, "--variable '%s': expected KEY=VALUE", kv);
	snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
	if (!json_is_array(vars)) {
		vars = json_array();
		json_object_set_new(doc, "variables", vars);
	}
	json_array_foreach(vars, i, v)
		if (json_is_string(json_object_get(v, "key")) && !strcmp(json_string_value(json_object_get(v, "key")), key)) {
			json_object_set_new(v, "value", json_string(eq + 1));
			return KILN_OK;
		}
	if (json_array_append_new(vars, json_pack("{s:s, s:s, s:b}", "key", key, "value", eq + 1, "public", 1)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	return KILN_OK;
}

int glcmd_replay(struct kiln_config *cfg, const struct replay_opts *ro)
{
	struct job_opts o = { .cfg = cfg, .executor = ro->executor, .network = -1, .notice = replay_notice,
			      .cancel = &replay_cancel };
	const char *what = ro->what;
	struct sigaction sa = { .sa_handler = on_replay_signal };
	struct job_payload p = { 0 };
	struct job_result r;
	struct kiln_err e = { 0 };
	struct mask m;
	char path[PATH_MAX], *text = NULL;
	json_error_t jerr;
	json_t *doc = NULL;
	size_t i;
	int ret = EXIT_FAIL;
	bool parsed = false;

	if (access(what, F_OK) == 0 || strspn(what, "0123456789") != strlen(what))
		snprintf(path, sizeof(path), "%s", what);
	else
		jobrec_payload_path(cfg->state_dir, strtoll(what, NULL, 10), path, sizeof(path));
	if (!(doc = json_load_file(path, 0, &jerr))) {
		log_error("%s: %s", path, jerr.text);
		return EXIT_USAGE;
	}
	for (i = 0; i < ro->n_vars; i++)
		if (set_variable(doc, ro->vars[i], &e)) {
			json_decref(doc);
			return cli_usage_error("replay: %s", e.msg);
		}
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!text || payload_parse(text, strlen(text), &p, &e)) {
		log_error("%s: %s", path, text ? e.msg : "out of memory");
		free(text);
		return EXIT_USAGE;
	}
	parsed = true;
	/* What the replay prints is masked like the job's log was. */
	mask_init(&m, write_stdout, NULL);
	for (i = 0; i < p.n_vars; i++)
		if (p.vars[i].masked && strcmp(p.vars[i].value, JOBREC_SCRUBBED))
			mask_add_secret(&m, p.vars[i].value, NULL);
	o.output = replay_output;
	o.arg = &m;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (glrunner_git_trust(cfg, &e))
		log_warn("%s", e.msg);
	job_sweep(cfg->state_dir);
	log_info("replaying job %lld from %s", p.id, path);
	if (job_run(&p, &o, &r, &e)) {
		mask_flush(&m);
		log_error("job %lld could not run: %s", p.id, e.msg);
		ret = 125;
		goto out;
	}
	mask_flush(&m);
	if (r.failure_reason[0])
		log_info("job failed: %s, exit code %d", r.failure_reason, r.exit_code);
	else
		log_info("job succeeded (boot %.1f s, run %.1f s)", r.boot_s, r.run_s);
	ret = r.exit_code == 0 && r.failure_reason[0] ? 1 : r.exit_code;
out:
	mask_free(&m);
	if (parsed)
		payload_free(&p);
	free(text);
	return ret;
}

int glcmd_run(struct kiln_config *cfg, const char *config_path)
{
	return glrunner_run(cfg, config_path);
}
