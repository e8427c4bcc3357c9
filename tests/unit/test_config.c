#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/config.h"
#include "tests/unit/suites.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	buf = calloc(1, 1 << 16);
	*len = fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	return buf;
}

/* Golden files: each NAME.yml is parsed and the result ("ok" or the error
 * line) must equal NAME.expect. */
static const char *const golden[] = {
	"full", "empty", "unknown-key", "bad-int", "range", "bad-enum", "syntax",
	"missing-token", "not-a-list", "bad-bool", "nested", "duplicate-key",
	"bad-network", "network-not-list", "too-many-networks",
	"github", "github-auth", "github-url", "github-labels", "github-unknown",
};

START_TEST(golden_files)
{
	const char *name = golden[_i];
	char yml[64], exp[64], got[600];
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	size_t len, elen;
	char *text, *expect;

	snprintf(yml, sizeof(yml), "config/%s.yml", name);
	snprintf(exp, sizeof(exp), "config/%s.expect", name);
	text = slurp(fixture(yml), &len);
	expect = slurp(fixture(exp), &elen);
	expect[strcspn(expect, "\n")] = '\0';
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	snprintf(yml, sizeof(yml), "%s.yml", name);
	if (kiln_config_parse(&cfg, yml, text, len, &e) == KILN_OK)
		snprintf(got, sizeof(got), "ok");
	else
		snprintf(got, sizeof(got), "%s", e.msg);
	ck_assert_str_eq(got, expect);
	kiln_config_free(&cfg);
	free(text);
	free(expect);
}
END_TEST

START_TEST(full_values)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	size_t len;
	char *text = slurp(fixture("config/full.yml"), &len);

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_parse(&cfg, "full.yml", text, len, &e), KILN_OK);
	ck_assert_str_eq(cfg.state_dir, "/srv/kiln");
	ck_assert_str_eq(cfg.images_dir, "/srv/kiln-images");
	ck_assert_str_eq(cfg.log_format, "json");
	ck_assert_str_eq(cfg.listen_address, "127.0.0.1:9252");
	ck_assert_int_eq(cfg.concurrent, 4);
	ck_assert_int_eq(cfg.check_interval, 5);
	ck_assert_int_eq(cfg.shutdown_timeout, 60);
	ck_assert_uint_eq(cfg.n_runners, 2);
	ck_assert_str_eq(cfg.runners[0].name, "build-farm-1");
	ck_assert_str_eq(cfg.runners[0].vm.executor, "microvm");
	ck_assert_int_eq(cfg.runners[0].vm.vcpus, 2);
	ck_assert_int_eq(cfg.runners[0].vm.memory_mib, 2048);
	ck_assert_int_eq(cfg.runners[0].limit, 2);
	ck_assert_int_eq(cfg.runners[0].vm.rx_rate_limit, 10485760);
	ck_assert_int_eq(cfg.runners[0].vm.disk_rate_limit, 0);
	ck_assert_int_eq(cfg.runners[0].vm.disk_iops_limit, 500);
	ck_assert_uint_eq(cfg.runners[0].vm.allowed_networks.n, 2);
	ck_assert_uint_eq(cfg.runners[0].vm.allowed_networks.v[0].addr, 0x0a140000u);
	ck_assert_uint_eq(cfg.runners[0].vm.allowed_networks.v[0].prefix, 16);
	ck_assert_uint_eq(cfg.runners[0].vm.allowed_networks.v[1].addr, 0xc0a8010au);
	ck_assert_uint_eq(cfg.runners[0].vm.allowed_networks.v[1].prefix, 32);
	/* inherited from defaults where the runner says nothing */
	ck_assert_int_eq(cfg.runners[0].vm.tx_rate_limit, 1048576);
	ck_assert_uint_eq(cfg.runners[0].vm.denied_networks.n, 1);
	ck_assert_uint_eq(cfg.runners[0].vm.denied_networks.v[0].addr, 0xc6336400u);
	ck_assert_uint_eq(cfg.runners[0].vm.denied_networks.v[0].prefix, 24);
	ck_assert_uint_eq(cfg.runners[1].vm.allowed_networks.n, 0);
	ck_assert_int_eq(cfg.runners[1].vm.disk_iops_limit, KILN_DISK_IOPS_DEFAULT);
	/* `defaults` comes after `runners` in the file yet is inherited. */
	ck_assert_str_eq(cfg.runners[0].vm.image, "tiny");
	ck_assert(!cfg.runners[0].vm.network);
	ck_assert_str_eq(cfg.runners[1].name, "https://gitlab.example.org");
	ck_assert_int_eq(cfg.runners[1].vm.vcpus, 3);
	ck_assert_str_eq(cfg.runners[1].vm.kernel, "debian-kernel");
	ck_assert_int_eq(cfg.runners[1].request_concurrency, 1);
	kiln_config_free(&cfg);
	free(text);
}
END_TEST

/* A `github:` entry beside a runner: its keys, its defaults, labels
 * deduplicated without regard to case, and `defaults` inherited except the
 * image. */
START_TEST(github_values)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	const struct kiln_github_config *g;
	size_t len;
	char *text = slurp(fixture("config/github.yml"), &len);

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_parse(&cfg, "github.yml", text, len, &e), KILN_OK);
	ck_assert_uint_eq(cfg.n_runners, 1);
	ck_assert_uint_eq(cfg.n_github, 2);
	g = &cfg.github[0];
	ck_assert_str_eq(g->name, "acme");
	ck_assert_str_eq(g->url, "https://github.com/acme");
	ck_assert_str_eq(g->api_url, "https://api.github.com");
	ck_assert_ptr_null(g->token);
	ck_assert_int_eq(g->app_id, 12345);
	ck_assert_str_eq(g->private_key_file, "/etc/kiln/app.pem");
	ck_assert_int_eq(g->installation_id, 678);
	ck_assert_uint_eq(g->n_labels, 3);
	ck_assert_str_eq(g->labels[0], "self-hosted");
	ck_assert_str_eq(g->labels[1], "Linux");
	ck_assert_str_eq(g->labels[2], "kiln");
	ck_assert_int_eq(g->runner_group_id, 3);
	ck_assert_str_eq(g->name_prefix, "kiln-acme");
	ck_assert_int_eq(g->warm_pool, 1);
	ck_assert_int_eq(g->max_runners, 4);
	ck_assert_int_eq(g->idle_timeout, 120);
	ck_assert_int_eq(g->poll_interval, 10);
	ck_assert_str_eq(g->tls_ca_file, "/etc/kiln/ghe.pem");
	ck_assert_str_eq(g->webhook_secret, "s3cret");
	ck_assert_int_eq(g->vm.memory_mib, 4096);
	ck_assert_int_eq(g->vm.vcpus, 2);
	ck_assert_str_eq(g->vm.image, "github-runner");
	g = &cfg.github[1];
	ck_assert_str_eq(g->name, "ghe.example.com/owner/repo");
	ck_assert_str_eq(g->token, "ghp_abc");
	ck_assert_int_eq(g->runner_group_id, 1);
	ck_assert_int_eq(g->idle_timeout, 300);
	ck_assert_int_eq(g->poll_interval, 30);
	ck_assert_int_eq(g->warm_pool, 0);
	ck_assert_str_eq(g->name_prefix, "kiln");
	ck_assert_uint_eq(g->n_labels, 3);
	ck_assert_str_eq(g->labels[2], "x64");
	kiln_config_free(&cfg);
	free(text);
}
END_TEST

START_TEST(defaults_and_env)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	setenv("KILN_STATE_DIR", "/x/state", 1);
	unsetenv("KILN_IMAGES_DIR");
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_str_eq(cfg.state_dir, "/x/state");
	ck_assert_str_eq(cfg.images_dir, "/x/state/images");
	ck_assert_str_eq(cfg.defaults.executor, "auto");
	ck_assert_str_eq(cfg.defaults.image, "debian");
	ck_assert_int_eq(cfg.defaults.vcpus, 1);
	ck_assert(cfg.defaults.network);
	/* Jobs restore from templates unless told not to (issue 18). */
	ck_assert(cfg.defaults.snapshots);
	/* Limits on by default (issue 13, finding 3); no extra networks. */
	ck_assert_int_eq(cfg.defaults.rx_rate_limit, 104857600);
	ck_assert_int_eq(cfg.defaults.tx_rate_limit, 104857600);
	ck_assert_int_eq(cfg.defaults.disk_rate_limit, 209715200);
	ck_assert_int_eq(cfg.defaults.disk_iops_limit, 10000);
	ck_assert_uint_eq(cfg.defaults.allowed_networks.n, 0);
	ck_assert_uint_eq(cfg.defaults.denied_networks.n, 0);
	ck_assert(cfg.jail);
	ck_assert_int_eq(cfg.jail_uid_base, 900000);
	kiln_config_free(&cfg);
	unsetenv("KILN_STATE_DIR");
}
END_TEST

/* The jail is on unless the file says jail: false; its uid range is checked. */
START_TEST(jail_keys)
{
	const char *off = "jail: false\njail_uid_base: 70000\n", *bad = "jail_uid_base: 0\n";
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_parse(&cfg, "off.yml", off, strlen(off), &e), KILN_OK);
	ck_assert(!cfg.jail);
	ck_assert_int_eq(cfg.jail_uid_base, 70000);
	kiln_config_free(&cfg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_ne(kiln_config_parse(&cfg, "bad.yml", bad, strlen(bad), &e), KILN_OK);
	ck_assert_ptr_nonnull(strstr(e.msg, "jail_uid_base"));
	kiln_config_free(&cfg);
}
END_TEST

/* snapshots: on unless defaults: or a runner says false; a runner that
 * sets nothing follows defaults:. */
START_TEST(snapshots_key)
{
	const char *text = "defaults:\n  snapshots: false\nrunners:\n"
			   "  - {name: a, url: https://gl.example, token: t}\n"
			   "  - {name: b, url: https://gl.example, token: t, snapshots: true}\n";
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_parse(&cfg, "s.yml", text, strlen(text), &e), KILN_OK);
	ck_assert(!cfg.defaults.snapshots);
	ck_assert_uint_eq(cfg.n_runners, 2);
	ck_assert(!cfg.runners[0].vm.snapshots);
	ck_assert(cfg.runners[1].vm.snapshots);
	kiln_config_free(&cfg);
}
END_TEST

START_TEST(missing_file)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, "/nonexistent/kiln.yml", false, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, "/nonexistent/kiln.yml", true, &e), KILN_E_IO);
	ck_assert_str_eq(e.msg, "config /nonexistent/kiln.yml: No such file or directory");
	kiln_config_free(&cfg);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, golden_files, 0, (int)(sizeof(golden) / sizeof(golden[0])));
	tcase_add_test(tc, full_values);
	tcase_add_test(tc, github_values);
	tcase_add_test(tc, defaults_and_env);
	tcase_add_test(tc, jail_keys);
	tcase_add_test(tc, snapshots_key);
	tcase_add_test(tc, missing_file);
	suite_add_tcase(s, tc);
	return s;
}
