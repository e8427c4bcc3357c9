/* job_run's orchestration, driven with a fake VM backend: a child process
 * that speaks the agent protocol over a socketpair. No KVM, no QEMU: what is
 * checked is the order job_run does things in (the VM starts before the
 * workspace is built, the rescan comes after it and before the JOB frame),
 * the relaunch for an agent without late workspaces, and the clean-up. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "executors/executor.h"
#include "agent/proto.h"
#include "runner/config.h"
#include "job/job.h"
#include "job/payload.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define MAX_LAUNCHES 4

/* What the fake backend saw, per VM started. */
struct launch {
	bool late;           /* vm_spec.workspace_late */
	long long ws_size;   /* the workspace file's size when the VM started */
};

static struct launch g_launch[MAX_LAUNCHES];
static int g_starts, g_cleanups, g_rescans;
static int g_rescans_at_stream = -1; /* rescans done when the host took the channel */
static long long g_ws_size_at_rescan = -1;
static bool g_old_agent;          /* the fake agent lacks late-workspace */
/* What the fake agent does after the JOB frame: its job, a second HELLO
 * (then the job if it gets another JOB), or nothing until killed. */
static enum { AGENT_JOB, AGENT_HELLO_TWICE, AGENT_SILENT, AGENT_ESCAPES, AGENT_FLOOD, AGENT_HUGE_FRAME,
	       AGENT_UNKNOWN_FRAME } g_agent;
static size_t g_out_bytes;         /* all the output kiln passed on */
static int g_rescan_delay_ms;     /* the fake workspace rescan takes this long */
static int g_timeout_s;           /* the payload's timeout; 0: tiny.json's */
static int g_boot_ms;             /* job_opts.boot_timeout_ms */
static const struct host_facts *g_host; /* job_opts.host, and no fake backend; NULL: the fake */
static char g_dir[PATH_MAX], g_sha[41];
static char g_out[4096], g_notices[4096];

static long long file_size(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The guest's side: HELLO, wait for JOB, one OUTPUT, EXIT, power off. */
static void await_job(int fd, struct ap_reader *rd)
{
	const uint8_t *payload;
	char buf[4096];
	uint32_t len;
	uint8_t type;
	ssize_t n;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			_exit(3); /* the host hung up without a job */
		if (ap_reader_feed(rd, buf, (size_t)n))
			_exit(4);
		if (ap_reader_next(rd, &type, &payload, &len) == 1 && type == AP_JOB)
			return;
	}
}

static void fake_agent(int fd)
{
	struct ap_reader rd;
	char hello[160];

	snprintf(hello, sizeof(hello), "{\"version\":1,\"agent\":\"fake\",\"features\":[\"%s\"%s]}", AP_FEATURE_SHELL,
		 g_old_agent ? "" : ",\"" AP_FEATURE_LATE_WORKSPACE "\"");
	if (ap_send(fd, AP_HELLO, hello, (uint32_t)strlen(hello)) < 0)
		_exit(2);
	ap_reader_init(&rd);
	await_job(fd, &rd);
	if (g_agent == AGENT_SILENT)
		for (;;)
			pause();
	if (g_agent == AGENT_HELLO_TWICE) {
		if (ap_send(fd, AP_HELLO, hello, (uint32_t)strlen(hello)) < 0)
			_exit(2);
		await_job(fd, &rd);
	}
	ap_send(fd, AP_OUTPUT, "fake job ran\n", 13);
	if (g_agent == AGENT_FLOOD) {
		/* 64 MiB of output in the largest frames, as fast as the
		 * socket takes them: kiln passes it on, holding one frame. */
		static char big[AP_MAX_PAYLOAD];
		int i;

		memset(big, 'x', sizeof(big));
		for (i = 0; i < 64; i++)
			if (ap_send(fd, AP_OUTPUT, big, sizeof(big)) < 0)
				_exit(2);
	}
	if (g_agent == AGENT_HUGE_FRAME) {
		/* A header that claims 4 GiB: refused before anything is read
		 * into it, however much more the guest sends. */
		static const uint8_t hdr[AP_HEADER_SIZE] = { 0xff, 0xff, 0xff, 0xff, AP_OUTPUT, 0, 0, 0 };
		static char fill[65536];

		if (write(fd, hdr, sizeof(hdr)) < 0)
			_exit(2);
		while (write(fd, fill, sizeof(fill)) > 0)
			;
		_exit(0);
	}
	if (g_agent == AGENT_UNKNOWN_FRAME) {
		ap_send(fd, 0x7f, "?", 1);
		for (;;)
			pause();
	}
	if (g_agent == AGENT_ESCAPES) {
		static const char ex[] = "{\"exit_code\":1,\"failure_reason\":\"\\u001b]0;pwned\\u0007x\"}";

		ap_send(fd, AP_EXIT, ex, sizeof(ex) - 1);
		_exit(0);
	}
	ap_send(fd, AP_EXIT, "{\"exit_code\":0}", 15);
	_exit(0);
}

static enum kiln_rc fake_prepare(struct executor *x, struct kiln_err *e)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return kiln_fail_errno(e, "socketpair");
	x->chan_fd = sv[0];
	x->listen_fd = sv[1]; /* the guest's end until start */
	return KILN_OK;
}

static enum kiln_rc fake_start(struct executor *x, struct kiln_err *e)
{
	pid_t pid;

	if (g_starts < MAX_LAUNCHES) {
		g_launch[g_starts].late = x->spec.workspace_late;
		g_launch[g_starts].ws_size = file_size(x->spec.workspace);
	}
	g_starts++;
	pid = fork();
	if (pid < 0)
		return kiln_fail_errno(e, "fork");
	if (pid == 0) {
		close(x->chan_fd);
		fake_agent(x->listen_fd);
	}
	close(x->listen_fd);
	x->listen_fd = -1;
	x->pid = pid;
	return KILN_OK;
}

static enum kiln_rc fake_disks_changed(struct executor *x, struct kiln_err *e)
{
	(void)e;
	if (g_rescan_delay_ms)
		poll(NULL, 0, g_rescan_delay_ms);
	g_rescans++;
	g_ws_size_at_rescan = file_size(x->spec.workspace);
	return KILN_OK;
}

static enum kiln_rc fake_stream(struct executor *x, int timeout_ms, int *fd, struct kiln_err *e)
{
	(void)timeout_ms;
	(void)e;
	g_rescans_at_stream = g_rescans;
	*fd = x->chan_fd;
	return KILN_OK;
}

static enum kiln_rc fake_wait(struct executor *x, int timeout_ms, int *status, struct kiln_err *e)
{
	int waited = 0, st;

	for (;;) {
		pid_t r = waitpid(x->pid, &st, WNOHANG);

		if (r == x->pid) {
			x->pid = -1;
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return KILN_OK;
		}
		if (r < 0)
			return kiln_fail_errno(e, "waitpid");
		if (timeout_ms >= 0 && waited >= timeout_ms)
			return kiln_fail(e, KILN_E_LIMIT, "the fake VM did not end");
		poll(NULL, 0, 5);
		waited += 5;
	}
}

static void fake_cancel(struct executor *x)
{
	if (x->pid > 0)
		kill(x->pid, SIGKILL);
}

static void fake_cleanup(struct executor *x)
{
	g_cleanups++;
	if (x->pid > 0) {
		kill(x->pid, SIGKILL);
		waitpid(x->pid, NULL, 0);
		x->pid = -1;
	}
	if (x->chan_fd >= 0)
		close(x->chan_fd);
	if (x->listen_fd >= 0)
		close(x->listen_fd);
	x->chan_fd = x->listen_fd = -1;
}

static const struct executor_ops fake_late = {
	.name = "fake", .prepare = fake_prepare, .start = fake_start, .disks_changed = fake_disks_changed,
	.stream = fake_stream, .wait = fake_wait, .cancel = fake_cancel, .cleanup = fake_cleanup,
};

static void on_output(void *arg, const void *buf, size_t n)
{
	size_t have = strlen(g_out);

	g_out_bytes += n;

	(void)arg;
	if (have + n < sizeof(g_out)) {
		memcpy(g_out + have, buf, n);
		g_out[have + n] = '\0';
	}
}

static void on_notice(void *arg, const char *line)
{
	(void)arg;
	if (strlen(g_notices) + strlen(line) + 2 < sizeof(g_notices)) {
		strcat(g_notices, line);
		strcat(g_notices, "\n");
	}
}

static void write_manifest(const char *name, const char *kind, const char *file)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/images/%s", g_dir, name);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/images/%s/%s", g_dir, name, file);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/images/%s/manifest.json", g_dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"name\":\"%s\",\"kind\":\"%s\",\"built\":\"2026-01-01T00:00:00Z\",\"build_seconds\":0,"
		   "\"inputs_sha256\":\"%064d\",\"inputs\":[],\"files\":[{\"name\":\"%s\",\"size\":0,"
		   "\"sha256\":\"%064d\"}]}\n", name, kind, 0, file, 0);
	fclose(f);
}

static void fixture_up(void)
{
	char path[PATH_MAX + 64];
	FILE *p;

	snprintf(g_dir, sizeof(g_dir), "/tmp/kiln-job-unit-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(g_dir));
	ck_assert_int_eq(test_sh("cd %s && git init -q -b main repo && cd repo && echo hi > README && git add README && "
				 "git -c user.name=t -c user.email=t@t commit -q -m one", g_dir), 0);
	snprintf(path, sizeof(path), "git -C %s/repo rev-parse HEAD", g_dir);
	p = popen(path, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(fgets(g_sha, sizeof(g_sha), p));
	pclose(p);
	snprintf(path, sizeof(path), "%s/images", g_dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	write_manifest("img", "rootfs", "rootfs.ext4");
	write_manifest("kern", "kernel", "vmlinux");
	memset(g_launch, 0, sizeof(g_launch));
	g_starts = g_cleanups = g_rescans = 0;
	g_ws_size_at_rescan = -1;
	g_rescans_at_stream = -1;
	g_out[0] = g_notices[0] = '\0';
	g_out_bytes = 0;
	g_agent = AGENT_JOB;
	g_rescan_delay_ms = g_timeout_s = g_boot_ms = 0;
	g_host = NULL;
}

static void fixture_down(void)
{
	test_sh("rm -rf %s", g_dir);
}

/* Run examples/tiny.json against the fixture's repository with the fake
 * backend; returns job_run's result. */
static enum kiln_rc run_fake_job(struct job_result *r, struct kiln_err *e)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX], yaml[PATH_MAX * 3], *text;
	struct kiln_config cfg;
	struct job_payload p;
	struct job_opts o = { 0 };
	json_t *root, *git;
	enum kiln_rc rc;

	snprintf(path, sizeof(path), "%s/examples/tiny.json", top ? top : ".");
	root = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(root);
	git = json_object_get(root, "git_info");
	snprintf(path, sizeof(path), "%s/repo", g_dir);
	json_object_set_new(git, "repo_url", json_string(path));
	json_object_set_new(git, "sha", json_string(g_sha));
	json_object_set_new(root, "image", json_pack("{s:s}", "name", "img"));
	if (g_timeout_s)
		json_object_set_new(root, "runner_info", json_pack("{s:i}", "timeout", g_timeout_s));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	ck_assert_msg(payload_parse(text, strlen(text), &p, e) == KILN_OK, "%s", e->msg);
	free(text);
	snprintf(yaml, sizeof(yaml),
		 "state_dir: %s/state\nimages_dir: %s/images\ncache_dir: %s/cache\n"
		 "defaults:\n  image: img\n  kernel: kern\n  network: false\n", g_dir, g_dir, g_dir);
	ck_assert_int_eq(kiln_config_defaults(&cfg, e), KILN_OK);
	ck_assert_msg(kiln_config_parse(&cfg, "test", yaml, strlen(yaml), e) == KILN_OK, "%s", e->msg);
	o.cfg = &cfg;
	o.backend = g_host ? NULL : &fake_late;
	o.host = g_host;
	o.network = 0;
	o.output = on_output;
	o.notice = on_notice;
	o.boot_timeout_ms = g_boot_ms;
	rc = job_run(&p, &o, r, e);
	payload_free(&p);
	kiln_config_free(&cfg);
	return rc;
}

static int entries(const char *dir)
{
	char cmd[PATH_MAX + 64];
	int n = -1;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
	p = popen(cmd, "r");
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	return n;
}

/* Run the job with the fake agent, old or current; it must succeed, leave
 * its output, and leave no job folder behind. */
static void run_fake_job_ok(bool old_agent)
{
	struct job_result r;
	struct kiln_err e = { 0 };
	char jobs[PATH_MAX + 16];

	g_old_agent = old_agent;
	ck_assert_msg(run_fake_job(&r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(r.exit_code, 0);
	ck_assert_str_eq(r.failure_reason, "");
	ck_assert_ptr_nonnull(strstr(g_out, "fake job ran"));
	ck_assert_int_ge(g_cleanups, g_starts);
	snprintf(jobs, sizeof(jobs), "%s/state/jobs", g_dir);
	ck_assert_int_eq(entries(jobs), 0);
}

/* The executor comes from the facts the caller probed once, not from
 * probing this host again: a host with neither VMM runs no job. */
START_TEST(executor_from_the_callers_facts)
{
	struct host_facts none = { 0 };
	struct job_result r;
	struct kiln_err e = { 0 };

	g_host = &none;
	ck_assert_int_eq(run_fake_job(&r, &e), KILN_E_NOTFOUND);
	ck_assert_str_eq(e.msg, "no executor can run VMs on this host (run: kiln doctor)");
	ck_assert_str_eq(r.failure_reason, "runner_system_failure");
	ck_assert_int_eq(g_starts, 0);
}
END_TEST

/* The VM starts with an empty workspace file, which is complete at the
 * rescan, and the JOB frame comes after that; the job runs once. */
START_TEST(late_workspace_order)
{
	run_fake_job_ok(false);
	ck_assert_int_eq(g_starts, 1);
	ck_assert(g_launch[0].late);
	ck_assert_int_eq(g_launch[0].ws_size, 0);
	ck_assert_int_eq(g_rescans, 1);
	ck_assert_int_gt(g_ws_size_at_rescan, 0);
	ck_assert_int_eq(g_rescans_at_stream, 1);
	ck_assert_ptr_null(strstr(g_notices, "booting again"));
}
END_TEST

/* An agent from an older image: the first VM goes, a second one starts
 * with the workspace complete, and the job runs there. */
START_TEST(old_agent_gets_a_second_vm)
{
	run_fake_job_ok(true);
	ck_assert_int_eq(g_starts, 2);
	ck_assert(g_launch[0].late);
	ck_assert(!g_launch[1].late);
	ck_assert_int_gt(g_launch[1].ws_size, 0);
	ck_assert_ptr_nonnull(strstr(g_notices, "booting again"));
	ck_assert_ptr_nonnull(strstr(g_notices, "kiln images build img"));
}
END_TEST

/* A second HELLO would start the job again (and re-arm its deadline, so
 * that a guest saying HELLO often never timed out): a protocol error that
 * fails the job and stops the VM, whose job never runs twice. */
START_TEST(second_hello_fails_the_job)
{
	struct job_result r;
	struct kiln_err e = { 0 };

	g_agent = AGENT_HELLO_TWICE;
	ck_assert_int_eq(run_fake_job(&r, &e), KILN_E_SYNTAX);
	ck_assert_ptr_nonnull(strstr(e.msg, "HELLO twice"));
	ck_assert_str_eq(r.failure_reason, "runner_system_failure");
	ck_assert_ptr_null(strstr(g_out, "fake job ran"));
	ck_assert_int_eq(g_cleanups, g_starts);
}
END_TEST

/* The hard cap counts from the VM's start, not from the HELLO: here the
 * workspace takes 2.5 s while the guest waits, so the cap (1 s timeout +
 * 1 s boot allowance) is over before its HELLO is read and the job never
 * starts; the script's deadline alone would have let it run to 3.5 s. */
START_TEST(hard_cap_counts_from_the_vm_start)
{
	struct job_result r;
	struct kiln_err e = { 0 };

	g_agent = AGENT_SILENT;
	g_timeout_s = 1;
	g_boot_ms = 1000;
	g_rescan_delay_ms = 2500;
	ck_assert_msg(run_fake_job(&r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(r.failure_reason, "job_execution_timeout");
	ck_assert_msg(strstr(g_out, "ran longer than its cap of 2 seconds"), "%s", g_out);
	ck_assert_ptr_null(strstr(g_notices, "running the job"));
	ck_assert_int_eq(g_cleanups, g_starts);
}
END_TEST

/* The agent's failure reason is a word or is not taken: no escape
 * sequence from the guest reaches kiln's messages through it. */
START_TEST(failure_reason_is_a_word)
{
	struct job_result r;
	struct kiln_err e = { 0 };

	g_agent = AGENT_ESCAPES;
	ck_assert_msg(run_fake_job(&r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_str_eq(r.failure_reason, "script_failure");
}
END_TEST

/* A guest that floods the agent channel: 64 MiB of output frames reach
 * the job's log whole, and the job ends as the agent says. */
START_TEST(flooded_channel_is_passed_on)
{
	struct job_result r;
	struct kiln_err e = { 0 };

	g_agent = AGENT_FLOOD;
	ck_assert_msg(run_fake_job(&r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(r.exit_code, 0);
	ck_assert_uint_eq(g_out_bytes, 13 + 64 * (size_t)AP_MAX_PAYLOAD);
	ck_assert_int_eq(g_cleanups, g_starts);
}
END_TEST

/* A frame header claiming more than AP_MAX_PAYLOAD, and a frame of a type
 * kiln does not know: protocol errors that fail the job with a system
 * failure and stop the VM, whatever the guest goes on sending. */
START_TEST(broken_frames_fail_the_job)
{
	struct job_result r;
	struct kiln_err e = { 0 };

	g_agent = AGENT_HUGE_FRAME;
	ck_assert_int_eq(run_fake_job(&r, &e), KILN_E_SYNTAX);
	ck_assert_msg(strstr(e.msg, "broke the protocol"), "%s", e.msg);
	ck_assert_str_eq(r.failure_reason, "runner_system_failure");
	ck_assert_int_eq(g_cleanups, g_starts);

	fixture_down();
	fixture_up();
	g_agent = AGENT_UNKNOWN_FRAME;
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(run_fake_job(&r, &e), KILN_E_SYNTAX);
	ck_assert_msg(strstr(e.msg, "broke the protocol"), "%s", e.msg);
	ck_assert_str_eq(r.failure_reason, "runner_system_failure");
	ck_assert_int_eq(g_cleanups, g_starts);
}
END_TEST

Suite *job_suite(void)
{
	Suite *s = suite_create("job");
	TCase *tc = tcase_create("fake backend");

	tcase_add_checked_fixture(tc, fixture_up, fixture_down);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, executor_from_the_callers_facts);
	tcase_add_test(tc, late_workspace_order);
	tcase_add_test(tc, old_agent_gets_a_second_vm);
	tcase_add_test(tc, second_hello_fails_the_job);
	tcase_add_test(tc, hard_cap_counts_from_the_vm_start);
	tcase_add_test(tc, failure_reason_is_a_word);
	tcase_add_test(tc, flooded_channel_is_passed_on);
	tcase_add_test(tc, broken_frames_fail_the_job);
	suite_add_tcase(s, tc);
	return s;
}
