/* Registration (gitlab/registration): the system_id and the configuration
 * file rewritten on register/unregister. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runner/config.h"
#include "gitlab/registration.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(system_id)
{
	char id[GLC_SYSTEM_ID_SIZE], again[GLC_SYSTEM_ID_SIZE], path[128], cmd[160];
	struct kiln_err e = { 0 };
	char *d = test_tmpdir();
	FILE *f;

	/* HMAC-SHA256(key machine-id, "gitlab-runner"), first 12 hex digits. */
	glc_system_id_from_machine_id("0123456789abcdef0123456789abcdef", id);
	ck_assert_str_eq(id, "s_ee3af03959fe");
	ck_assert(glc_system_id_valid(id));
	ck_assert(glc_system_id_valid("r_AbC123xyz789"));
	ck_assert(!glc_system_id_valid("s_ee3af03959f"));
	ck_assert(!glc_system_id_valid("x_ee3af03959fe"));
	ck_assert(!glc_system_id_valid("s_ee3af03959fe0"));
	ck_assert(!glc_system_id_valid("s_ee3af0395-fe"));

	/* Kept beside the configuration, the same on every call. */
	snprintf(path, sizeof(path), "%s/sub/config.yml", d);
	ck_assert_msg(glc_system_id(path, id, &e) == KILN_OK, "%s", e.msg);
	ck_assert(glc_system_id_valid(id));
	ck_assert_int_eq(glc_system_id(path, again, &e), KILN_OK);
	ck_assert_str_eq(id, again);
	snprintf(path, sizeof(path), "%s/sub/.runner_system_id", d);
	f = fopen(path, "w");
	fputs("r_0123456789ab\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/sub/config.yml", d);
	ck_assert_int_eq(glc_system_id(path, id, &e), KILN_OK);
	ck_assert_str_eq(id, "r_0123456789ab");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(config_rewrite)
{
	static const char orig[] = "# a comment\nconcurrent: 3\ncheck_interval: 7\ndefaults:\n  memory_mib: 1024\n"
				   "runners:\n  - name: one\n    url: https://a.example\n    token: glrt-one\n"
				   "    limit: 2\n";
	struct glc_runner two = { .name = "two", .url = "https://b.example", .token = "glrt-two",
				  .tls_ca_file = "/etc/ca.pem", .executor = "qemu" };
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	char path[128], cmd[160], *d = test_tmpdir();
	bool drop[2] = { true, false };
	struct stat st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.yml", d);
	f = fopen(path, "w");
	fputs(orig, f);
	fclose(f);
	ck_assert_msg(glc_config_add(path, &two, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_load(&cfg, path, true, &e) == KILN_OK, "%s", e.msg);
	/* Everything else kept. */
	ck_assert_int_eq(cfg.concurrent, 3);
	ck_assert_int_eq(cfg.check_interval, 7);
	ck_assert_int_eq(cfg.defaults.memory_mib, 1024);
	ck_assert_uint_eq(cfg.n_runners, 2);
	ck_assert_str_eq(cfg.runners[0].name, "one");
	ck_assert_int_eq(cfg.runners[0].limit, 2);
	ck_assert_str_eq(cfg.runners[1].token, "glrt-two");
	ck_assert_str_eq(cfg.runners[1].tls_ca_file, "/etc/ca.pem");
	ck_assert_str_eq(cfg.runners[1].vm.executor, "qemu");
	ck_assert_int_eq(cfg.runners[1].vm.memory_mib, 1024);
	kiln_config_free(&cfg);

	/* A renewed token: the runner keeps its other keys and gains the times;
	 * a token no runner has is not found. */
	ck_assert_msg(glc_config_set_token(path, "https://a.example", "glrt-one", "glrt-one-b", 1000, 5000, &e) ==
			      KILN_OK,
		      "%s", e.msg);
	ck_assert_int_eq(glc_config_set_token(path, "https://a.example", "glrt-one", "x", 1, 2, &e), KILN_E_NOTFOUND);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_load(&cfg, path, true, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(cfg.runners[0].token, "glrt-one-b");
	ck_assert_int_eq(cfg.runners[0].token_obtained_at, 1000);
	ck_assert_int_eq(cfg.runners[0].token_expires_at, 5000);
	ck_assert_int_eq(cfg.runners[0].limit, 2);
	ck_assert_str_eq(cfg.runners[1].token, "glrt-two");
	ck_assert_int_eq(cfg.runners[1].token_expires_at, 0);
	kiln_config_free(&cfg);
	/* Renewed again to a token that never expires: the times go. */
	ck_assert_int_eq(glc_config_set_token(path, "https://a.example", "glrt-one-b", "glrt-one", 2000, 0, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, path, true, &e), KILN_OK);
	ck_assert_str_eq(cfg.runners[0].token, "glrt-one");
	ck_assert_int_eq(cfg.runners[0].token_obtained_at, 2000);
	ck_assert_int_eq(cfg.runners[0].token_expires_at, 0);
	kiln_config_free(&cfg);

	ck_assert_msg(glc_config_remove(path, drop, 2, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, path, true, &e), KILN_OK);
	ck_assert_uint_eq(cfg.n_runners, 1);
	ck_assert_str_eq(cfg.runners[0].name, "two");
	ck_assert_int_eq(cfg.concurrent, 3);
	kiln_config_free(&cfg);

	/* A new file. */
	snprintf(path, sizeof(path), "%s/new/config.yml", d);
	ck_assert_msg(glc_config_add(path, &two, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_load(&cfg, path, true, &e), KILN_OK);
	ck_assert_uint_eq(cfg.n_runners, 1);
	kiln_config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *glregister_suite(void)
{
	Suite *s = suite_create("glregister");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, system_id);
	tcase_add_test(tc, config_rewrite);
	suite_add_tcase(s, tc);
	return s;
}
