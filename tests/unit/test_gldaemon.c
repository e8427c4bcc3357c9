/* The poll loop of `kiln run` (gitlab/daemon): glrunner_run against a fake
 * GitLab and a fake job runner (glrunner_set_hooks), and once with the real
 * job path against the scripted server of testutil.h. A helper thread ends
 * the daemon with SIGTERM, as a service manager would; the test thread is
 * the daemon's main thread. Times are generous: the loop's own ticks are
 * whole seconds (check_interval). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gitlab/daemon.h"
#include "runner/config.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define MAX_JOBS 16

/* The fake GitLab and job runner, and what they saw. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	/* Set up by the test. */
	int jobs_left;            /* requests answered with a job, then ... */
	enum gl_poll otherwise;   /* ... this (GL_NO_JOB: a 204) */
	int job_ms;               /* how long a job runs */
	/* Seen. */
	int requests, jobs, done, running, max_running;
	int requests_at_stop;
	char token[64];
	long long ids[MAX_JOBS];
} fk;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static enum gl_poll fake_request(struct gl_client *c, const char *token, const char *system_id,
				 const char *executor, char last_update[128], char **payload, size_t *len,
				 struct kiln_err *e)
{
	enum gl_poll res = fk.otherwise;
	char text[64];

	(void)c;
	(void)system_id;
	(void)executor;
	(void)last_update;
	pthread_mutex_lock(&mu);
	fk.requests++;
	snprintf(fk.token, sizeof(fk.token), "%s", token);
	if (fk.jobs_left > 0) {
		fk.jobs_left--;
		snprintf(text, sizeof(text), "{\"id\": %d, \"token\": \"glcbt-%d\"}", 100 + fk.requests, fk.requests);
		*payload = strdup(text);
		*len = strlen(text);
		res = GL_JOB;
	}
	pthread_mutex_unlock(&mu);
	if (res == GL_NO_JOB)
		kiln_fail(e, KILN_E_NOTFOUND, "no job (204)");
	else if (res == GL_UNHEALTHY)
		kiln_fail(e, KILN_E_INVALID, "403 Forbidden");
	return res;
}

static void fake_job(const struct kiln_runner_config *rc, const char *payload, size_t len)
{
	long long id = 0;

	(void)rc;
	ck_assert_int_eq(sscanf(payload, "{\"id\": %lld", &id), 1);
	ck_assert_uint_gt(len, 0);
	pthread_mutex_lock(&mu);
	if (fk.jobs < MAX_JOBS)
		fk.ids[fk.jobs] = id;
	fk.jobs++;
	if (++fk.running > fk.max_running)
		fk.max_running = fk.running;
	pthread_mutex_unlock(&mu);
	usleep((useconds_t)fk.job_ms * 1000);
	pthread_mutex_lock(&mu);
	fk.running--;
	fk.done++;
	pthread_mutex_unlock(&mu);
}

static void *stopper(void *arg)
{
	int ms = *(int *)arg;

	usleep((useconds_t)ms * 1000);
	pthread_mutex_lock(&mu);
	fk.requests_at_stop = fk.requests;
	pthread_mutex_unlock(&mu);
	kill(getpid(), SIGTERM);
	return NULL;
}

/* Run the daemon with one runner at url (settings: its extra lines) and
 * the top-level lines top, with the fakes in hooks, until SIGTERM after
 * stop_ms; its exit status. */
static int run_daemon_at(const char *url, const struct glrunner_hooks *hooks, const char *top, const char *runner,
			 int stop_ms)
{
	char path[256], *d = test_tmpdir();
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	pthread_t th;
	sigset_t set;
	FILE *f;
	int rc;

	snprintf(path, sizeof(path), "%s/config.yml", d);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "state_dir: %s/state\nshutdown_timeout: 30\n%srunners:\n"
		   "  - name: fake\n    url: %s\n    token: glrt-fake\n%s",
		d, top, url, runner);
	fclose(f);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_load(&cfg, path, true, &e) == KILN_OK, "%s", e.msg);
	glrunner_set_hooks(hooks);
	/* The daemon takes its signals synchronously: no other thread may. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ck_assert_int_eq(pthread_create(&th, NULL, stopper, &stop_ms), 0);
	rc = glrunner_run(&cfg, path);
	pthread_join(th, NULL);
	test_sh("rm -rf '%s'", d);
	return rc;
}

/* The same against a GitLab that is not there, with a fake job runner. */
static int run_daemon(const char *top, const char *runner, int stop_ms)
{
	static const struct glrunner_hooks fakes = { .request = fake_request, .job = fake_job };

	return run_daemon_at("https://gitlab.invalid", &fakes, top, runner, stop_ms);
}

/* No job (204): the next request waits for the next tick instead of going
 * out at once. */
START_TEST(no_job_waits_for_the_next_tick)
{
	fk.otherwise = GL_NO_JOB;
	ck_assert_int_eq(run_daemon("check_interval: 1\n", "", 1500), 0);
	ck_assert_int_ge(fk.requests, 1);
	ck_assert_int_le(fk.requests, 3);
	ck_assert_int_eq(fk.jobs, 0);
	ck_assert_str_eq(fk.token, "glrt-fake");
}
END_TEST

/* A job that comes is handed to the job runner with its payload, and a
 * runner that had a job is asked again as soon as its slot frees, not at
 * the next tick (a minute away here). */
START_TEST(jobs_run_and_the_slot_is_fed_at_once)
{
	fk.jobs_left = 3;
	fk.otherwise = GL_NO_JOB;
	fk.job_ms = 50;
	ck_assert_int_eq(run_daemon("check_interval: 60\nconcurrent: 1\n", "", 800), 0);
	ck_assert_int_eq(fk.jobs, 3);
	ck_assert_int_eq(fk.done, 3);
	ck_assert_int_eq(fk.max_running, 1);
	ck_assert_int_eq(fk.requests, 4);  /* three jobs, then a 204 */
	ck_assert_int_eq(fk.ids[0], 101);
	ck_assert_int_eq(fk.ids[1], 102);
	ck_assert_int_eq(fk.ids[2], 103);
}
END_TEST

/* Never more jobs at once than `concurrent` (_i = 0) or the runner's
 * `limit` (_i = 1), however many GitLab has. */
START_TEST(concurrency_limits_hold)
{
	static const char *const top[] = { "check_interval: 60\nconcurrent: 2\n", "check_interval: 60\nconcurrent: 4\n" };
	static const char *const runner[] = { "", "    limit: 1\n" };
	static const int want[] = { 2, 1 };

	fk.jobs_left = 8;
	fk.otherwise = GL_NO_JOB;
	fk.job_ms = 150;
	ck_assert_int_eq(run_daemon(top[_i], runner[_i], 900), 0);
	ck_assert_int_eq(fk.max_running, want[_i]);
	ck_assert_int_ge(fk.jobs, want[_i] + 1);
	ck_assert_int_eq(fk.done, fk.jobs);
}
END_TEST

/* SIGTERM: no request goes out after it, and the running job finishes
 * before glrunner_run returns. */
START_TEST(shutdown_stops_polling_and_waits_for_jobs)
{
	double t0 = now_s();

	fk.jobs_left = 1;
	fk.otherwise = GL_NO_JOB;
	fk.job_ms = 700;
	ck_assert_int_eq(run_daemon("check_interval: 60\nconcurrent: 1\n", "", 200), 0);
	ck_assert_int_eq(fk.requests, 1);
	ck_assert_int_eq(fk.requests_at_stop, 1);
	ck_assert_int_eq(fk.done, 1);
	ck_assert_int_eq(fk.running, 0);
	ck_assert(now_s() - t0 >= 0.6);
}
END_TEST

/* A job that came goes through the real job path against a scripted
 * GitLab: acknowledged (PUT state=running), its log sent (PATCH trace),
 * finished with the final update. The payload has no steps kiln can run,
 * so the job fails as a system failure without a VM. */
START_TEST(job_is_acknowledged_logged_and_finished)
{
	static const struct glrunner_hooks real_job = { .request = fake_request };
	static struct srv s;
	char url[64];
	size_t i, last;
	bool patched = false;

	srv_start(&s);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
	fk.jobs_left = 1;
	fk.otherwise = GL_NO_JOB;
	ck_assert_int_eq(run_daemon_at(url, &real_job, "check_interval: 60\nconcurrent: 1\n", "", 1500), 0);
	ck_assert_uint_ge(s.n_req, 3);
	ck_assert_str_eq(s.method[0], "PUT");
	ck_assert_str_eq(s.path[0], "/api/v4/jobs/101");
	ck_assert_ptr_nonnull(strstr(s.body[0], "running"));
	ck_assert(s.job_token[0]);
	for (i = 1; i < s.n_req; i++)
		patched |= !strcmp(s.method[i], "PATCH") && !strcmp(s.path[i], "/api/v4/jobs/101/trace");
	ck_assert(patched);
	last = s.n_req - 1;
	ck_assert_str_eq(s.method[last], "PUT");
	ck_assert_str_eq(s.path[last], "/api/v4/jobs/101");
	ck_assert_msg(strstr(s.body[last], "failed") && strstr(s.body[last], "runner_system_failure"), "%s",
		      s.body[last]);
	ck_assert_ptr_nonnull(s.stored);
	s.stored[s.stored_len] = '\0';
	ck_assert_msg(strstr(s.stored, "Running with kiln") && strstr(s.stored, "system failure"), "%s", s.stored);
	srv_stop(&s);
}
END_TEST

/* Three 403 replies in a row pause the runner: no fourth request. */
START_TEST(unhealthy_runner_is_paused)
{
	fk.otherwise = GL_UNHEALTHY;
	ck_assert_int_eq(run_daemon("check_interval: 1\n", "", 3000), 0);
	ck_assert_int_eq(fk.requests, 3);
}
END_TEST

/* Each test starts from a clean fake (they share it when CK_FORK=no). */
static void fake_reset(void)
{
	memset(&fk, 0, sizeof(fk));
}

Suite *gldaemon_suite(void)
{
	Suite *s = suite_create("gldaemon");
	TCase *tc = tcase_create("poll");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fake_reset, NULL);
	tcase_add_test(tc, no_job_waits_for_the_next_tick);
	tcase_add_test(tc, jobs_run_and_the_slot_is_fed_at_once);
	tcase_add_loop_test(tc, concurrency_limits_hold, 0, 2);
	tcase_add_test(tc, shutdown_stops_polling_and_waits_for_jobs);
	tcase_add_test(tc, job_is_acknowledged_logged_and_finished);
	tcase_add_test(tc, unhealthy_runner_is_paused);
	suite_add_tcase(s, tc);
	return s;
}
