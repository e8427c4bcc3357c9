#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner/install.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

/* A temporary root: a unit folder, and a systemctl that logs its
 * arguments one call a line (exit 1 when $root/fail exists). */
struct troot {
	char dir[256], units[300], systemctl[300], log[300], tpl[512];
	struct kiln_install_opts o;
};

static void troot_up(struct troot *t)
{
	static const char script[] = "#!/bin/sh\n"
				     "d=$(dirname \"$0\")\n"
				     "echo \"$*\" >>\"$d/systemctl.log\"\n"
				     "[ ! -e \"$d/fail\" ] || { echo 'Failed to enable unit' >&2; exit 1; }\n";

	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "%s", test_tmpdir());
	snprintf(t->units, sizeof(t->units), "%s/etc/systemd/system", t->dir);
	snprintf(t->systemctl, sizeof(t->systemctl), "%s/systemctl", t->dir);
	snprintf(t->log, sizeof(t->log), "%s/systemctl.log", t->dir);
	snprintf(t->tpl, sizeof(t->tpl), "%s", fixture("../../systemd/kiln.service.in"));
	test_write_file(t->systemctl, script, strlen(script), 0755);
	t->o = (struct kiln_install_opts){ .service = "kiln-ci",
					   .config = "/etc/kiln/ci.yml",
					   .working_dir = "/srv/kiln",
					   .kiln = "/opt/kiln/bin/kiln",
					   .shutdown_timeout = 30,
					   .template_path = t->tpl,
					   .unit_dir = t->units,
					   .systemctl = t->systemctl };
}

static void troot_down(struct troot *t)
{
	test_sh("rm -rf '%s'", t->dir);
}

/* test_read_file's bytes as a string. */
static char *read_text(const char *path)
{
	size_t n;
	char *s = test_read_file(path, &n);

	ck_assert_uint_lt(n, 1 << 20);
	s[n] = '\0';
	return s;
}

static char *unit_text(struct troot *t, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.service", t->units, name);
	return read_text(path);
}

START_TEST(install_writes_enables_and_uninstall_removes)
{
	struct troot t;
	struct kiln_err e = { 0 };
	char *unit, *log, path[512];

	troot_up(&t);
	ck_assert_msg(kiln_install(&t.o, &e) == KILN_OK, "%s", e.msg);
	unit = unit_text(&t, "kiln-ci");
	ck_assert_msg(!strncmp(unit, "# Written by kiln install", 25), "%s", unit);
	ck_assert_msg(strstr(unit, "\nExecStart=/opt/kiln/bin/kiln --config /etc/kiln/ci.yml run\n") &&
			      strstr(unit, "\nWorkingDirectory=/srv/kiln\n") && strstr(unit, "\nTimeoutStopSec=90s\n") &&
			      strstr(unit, "\nReadWritePaths=-/etc/kiln -/srv/kiln\n") && strstr(unit, "\nType=notify\n"),
		      "%s", unit);
	/* No --user: the User= line is left out, and no placeholder stays. */
	ck_assert_msg(!strstr(unit, "User=") && !strchr(unit, '@'), "%s", unit);
	free(unit);
	log = read_text(t.log);
	ck_assert_str_eq(log, "daemon-reload\nenable kiln-ci.service\n");
	free(log);

	/* Again, with a user: kiln replaces its own unit. */
	t.o.user = "ci";
	ck_assert_msg(kiln_install(&t.o, &e) == KILN_OK, "%s", e.msg);
	unit = unit_text(&t, "kiln-ci");
	ck_assert_msg(strstr(unit, "\nUser=ci\n"), "%s", unit);
	free(unit);

	unlink(t.log);
	ck_assert_msg(kiln_uninstall(&t.o, &e) == KILN_OK, "%s", e.msg);
	snprintf(path, sizeof(path), "%s/kiln-ci.service", t.units);
	ck_assert(access(path, F_OK) < 0);
	log = read_text(t.log);
	ck_assert_str_eq(log, "disable --now kiln-ci.service\ndaemon-reload\n");
	free(log);
	ck_assert_int_eq(kiln_uninstall(&t.o, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, "kiln-ci.service: no such unit"), "%s", e.msg);
	troot_down(&t);
}
END_TEST

START_TEST(foreign_units_are_left_alone)
{
	struct troot t;
	struct kiln_err e = { 0 };
	char path[512], *unit;

	troot_up(&t);
	test_sh("mkdir -p '%s'", t.units);
	snprintf(path, sizeof(path), "%s/kiln-ci.service", t.units);
	test_write_file(path, "[Service]\nExecStart=/bin/true\n", 30, 0644);
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "kiln install did not write it"), "%s", e.msg);
	ck_assert_int_eq(kiln_uninstall(&t.o, &e), KILN_E_INVALID);
	unit = read_text(path);
	ck_assert_str_eq(unit, "[Service]\nExecStart=/bin/true\n");
	free(unit);
	ck_assert(access(t.log, F_OK) < 0); /* systemctl never ran */
	troot_down(&t);
}
END_TEST

START_TEST(bad_options_and_failures_are_named)
{
	struct troot t;
	struct kiln_err e = { 0 };
	char path[512];

	troot_up(&t);
	t.o.service = "../evil";
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "--service '../evil'"), "%s", e.msg);
	t.o.service = "kiln";
	t.o.config = "relative.yml";
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "--config 'relative.yml': not an absolute path"), "%s", e.msg);
	t.o.config = "/etc/kiln/my config.yml";
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_INVALID);
	t.o.config = "/etc/kiln/%h.yml";
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_INVALID);
	t.o.config = "/etc/kiln/config.yml";
	t.o.user = "a b";
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_INVALID);
	t.o.user = NULL;
	t.o.template_path = "/nonexistent/kiln.service.in";
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_NOTFOUND);
	ck_assert_msg(strstr(e.msg, "/nonexistent/kiln.service.in"), "%s", e.msg);

	/* An unknown placeholder is the template's error, with its line. */
	snprintf(path, sizeof(path), "%s/bad.in", t.dir);
	test_write_file(path, "[Service]\nExecStart=@KILN@ @NOPE@\n", 34, 0644);
	t.o.template_path = path;
	ck_assert_int_eq(kiln_install(&t.o, &e), KILN_E_SYNTAX);
	ck_assert_msg(strstr(e.msg, "bad.in:2: unknown placeholder @NOPE@"), "%s", e.msg);

	/* systemctl failing: its message comes back. */
	t.o.template_path = t.tpl;
	test_sh("touch '%s/fail'", t.dir);
	ck_assert_int_ne(kiln_install(&t.o, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "Failed to enable unit"), "%s", e.msg);
	troot_down(&t);
}
END_TEST

Suite *install_suite(void)
{
	Suite *s = suite_create("install");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, install_writes_enables_and_uninstall_removes);
	tcase_add_test(tc, foreign_units_are_left_alone);
	tcase_add_test(tc, bad_options_and_failures_are_named);
	suite_add_tcase(s, tc);
	return s;
}
