#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/sdnotify.h"
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

/* A datagram socket at dir/notify standing in for systemd's; its fd. */
static int notify_socket(const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(sd_notify_speaks_the_protocol)
{
	char dir[256], buf[8];
	int fd;

	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	ck_assert_int_eq(sd_notify_send("READY=1"), 0); /* not under systemd: nothing */
	ck_assert_int_eq(sd_notify_tick(false, 3000), 3000);
	snprintf(dir, sizeof(dir), "%s", test_tmpdir());
	fd = notify_socket(dir);
	ck_assert_int_eq(sd_notify_send("READY=1\nSTATUS=polling"), 0);
	expect_datagram(fd, "READY=1\nSTATUS=polling");

	/* A 10 s watchdog for this pid: a ping, and waits cut to 5 s. */
	setenv("WATCHDOG_USEC", "10000000", 1);
	snprintf(buf, sizeof(buf), "%d", (int)getpid());
	setenv("WATCHDOG_PID", buf, 1);
	ck_assert_int_eq(sd_notify_tick(false, 60000), 5000);
	expect_datagram(fd, "WATCHDOG=1");
	ck_assert_int_eq(sd_notify_tick(false, 100), 100);
	ck_assert_int_lt(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 0); /* not again within 2.5 s */
	ck_assert_int_eq(sd_notify_tick(true, 200), 200);
	expect_datagram(fd, "STOPPING=1\nSTATUS=no new jobs; waiting for the running ones");
	sd_notify_tick(true, 200);
	ck_assert_int_lt(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 0); /* STOPPING once */

	/* Another pid's watchdog is not ours. */
	setenv("WATCHDOG_PID", "1", 1);
	ck_assert_int_eq(sd_notify_tick(false, 60000), 60000);
	setenv("NOTIFY_SOCKET", "relative", 1);
	ck_assert_int_eq(sd_notify_send("READY=1"), -1);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	close(fd);
	test_sh("rm -rf '%s'", dir);
}
END_TEST

/* Lines to the journal carry their priority; elsewhere they do not. */
START_TEST(log_lines_carry_journal_priorities)
{
	char dir[256], path[300], js[64], *text;
	struct stat st;
	int saved = dup(2), fd;

	snprintf(dir, sizeof(dir), "%s", test_tmpdir());
	snprintf(path, sizeof(path), "%s/stderr", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(fstat(fd, &st), 0);
	fflush(stderr);
	dup2(fd, 2);
	unsetenv("JOURNAL_STREAM");
	log_warn("plain");
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	log_error("bad");
	log_info("fine");
	setenv("JOURNAL_STREAM", "1:2", 1); /* another stream: a child's stderr */
	log_info("elsewhere");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	unsetenv("JOURNAL_STREAM");
	text = read_text(path);
	ck_assert_str_eq(text, "kiln: warning: plain\n<3>kiln: error: bad\n<6>kiln: fine\nkiln: elsewhere\n");
	free(text);
	test_sh("rm -rf '%s'", dir);
}
END_TEST

Suite *install_suite(void)
{
	Suite *s = suite_create("install");
	TCase *tc = tcase_create("core");
	TCase *svc = tcase_create("service");

	tcase_add_test(tc, install_writes_enables_and_uninstall_removes);
	tcase_add_test(tc, foreign_units_are_left_alone);
	tcase_add_test(tc, bad_options_and_failures_are_named);
	suite_add_tcase(s, tc);
	tcase_add_test(svc, sd_notify_speaks_the_protocol);
	tcase_add_test(svc, log_lines_carry_journal_priorities);
	suite_add_tcase(s, svc);
	return s;
}
