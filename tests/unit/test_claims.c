/* Two kiln processes on one host (a `kiln run` daemon and a developer's
 * `kiln exec`, issue 15 point 8): what one holds, the other's claims and
 * start-up sweep leave alone. A holder is told by its flock, not by the
 * pid it recorded, which means nothing across pid namespaces: the tests
 * make the recorded pid a dead one while another process (a fork) holds
 * the lock. No tool runs and no VM starts. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "executors/jobnet.h"
#include "job/job.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static char scratch[PATH_MAX - 64];

static void make_scratch(void)
{
	snprintf(scratch, sizeof(scratch), "%s/claims-test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
}

static void drop_scratch(void)
{
	unsetenv(JOBNET_DIR_ENV);
	kiln_rm_rf(scratch);
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

/* A child that runs fn(arg) (its claims), tells the parent, then holds
 * until the parent closes *stop. */
struct holder {
	pid_t pid;
	int stop;
};

static struct holder hold_in_child(void (*fn)(void *), void *arg)
{
	struct holder h;
	int ready[2], stop[2];
	char c;

	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(stop), 0);
	h.pid = fork();
	ck_assert_int_ge(h.pid, 0);
	if (h.pid == 0) {
		close(ready[0]);
		close(stop[1]);
		fn(arg);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		if (read(stop[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(stop[0]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	h.stop = stop[1];
	return h;
}

static void release(struct holder *h)
{
	int status;

	close(h->stop);
	ck_assert_int_eq(waitpid(h->pid, &status, 0), h->pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The recorded pid of the slot file at path becomes a dead one (the
 * holder's pid seen from another pid namespace); the lock stays. */
static void record_dead_pid(const char *path)
{
	char buf[128];
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	int len = snprintf(buf, sizeof(buf), "pid=%d\njob=daemon-7\n", (int)dead_pid());

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, (size_t)len), len);
	close(fd);
}

static void claim_held(void *arg)
{
	char *path = arg;
	unsigned slot;
	int fd;

	if (jobnet_claim(jobnet_dir(), "7", 16, NULL, NULL, &slot, path, PATH_MAX, &fd, NULL) || slot != 0)
		_exit(1);
	/* fd stays open (and locked) until the child exits */
}

static unsigned reclaimed[4];
static int n_reclaimed;

static void record_reclaim(unsigned slot, void *arg)
{
	(void)arg;
	if (n_reclaimed < 4)
		reclaimed[n_reclaimed] = slot;
	n_reclaimed++;
}

START_TEST(net_slot_held_by_another_process)
{
	static char path[PATH_MAX];
	char mine[PATH_MAX], net[PATH_MAX + 8];
	struct holder h;
	unsigned slot = 99;
	pid_t pid;
	int fd = -1;

	make_scratch();
	snprintf(net, sizeof(net), "%s/net", scratch);
	ck_assert_int_eq(setenv(JOBNET_DIR_ENV, net, 1), 0);
	/* The "daemon" (a child) holds slot 0; its slot file names a dead pid. */
	h = hold_in_child(claim_held, path);
	snprintf(path, sizeof(path), "%s/slot-0", net);
	record_dead_pid(path);
	ck_assert_int_eq(jobnet_slot_live(path, &pid, NULL, 0), 1);

	/* "kiln exec" claims beside it: the next slot, nothing reclaimed. */
	n_reclaimed = 0;
	ck_assert_int_eq(jobnet_claim(net, "7", 16, record_reclaim, NULL, &slot, mine, sizeof(mine), &fd, NULL),
			 KILN_OK);
	ck_assert_uint_eq(slot, 1);
	ck_assert_int_eq(n_reclaimed, 0);
	ck_assert_int_ge(fd, 0);
	/* ... and its sweep leaves both alone (nothing stale: no tool runs). */
	ck_assert_int_eq(jobnet_sweep(NULL), KILN_OK);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_int_eq(access(mine, F_OK), 0);
	/* Our own claim is held too: the daemon would see it live. */
	ck_assert_int_eq(jobnet_slot_live(mine, NULL, NULL, 0), 1);

	/* The daemon ends: its slot is stale, and reclaimed on the next claim. */
	release(&h);
	ck_assert_int_eq(jobnet_slot_live(path, NULL, NULL, 0), 0);
	ck_assert_int_eq(jobnet_claim(net, "8", 16, record_reclaim, NULL, &slot, path, sizeof(path), NULL, NULL),
			 KILN_OK);
	ck_assert_uint_eq(slot, 0);
	ck_assert_int_eq(n_reclaimed, 1);
	ck_assert_uint_eq(reclaimed[0], 0);
	close(fd);
	drop_scratch();
}
END_TEST

/* A job folder as job_run makes it: <id>.<pid>.XXXXXX, flock'ed. */
static void hold_job_folder(void *arg)
{
	const char *dir = arg;
	int fd;

	if (mkdir(dir, 0700) < 0 || (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    flock(fd, LOCK_EX) < 0)
		_exit(1);
}

START_TEST(sweep_leaves_held_job_folders)
{
	char held[PATH_MAX], stale[PATH_MAX], live[PATH_MAX], net[PATH_MAX + 8];
	struct holder h;
	pid_t dead = dead_pid();

	make_scratch();
	/* No network claims here: jobnet_sweep finds an empty folder. */
	snprintf(net, sizeof(net), "%s/net", scratch);
	ck_assert_int_eq(setenv(JOBNET_DIR_ENV, net, 1), 0);
	snprintf(held, sizeof(held), "%s/jobs", scratch);
	ck_assert_int_eq(kiln_mkdir_p(held), 0);
	/* Held by a live process whose pid we cannot see (recorded: dead). */
	snprintf(held, sizeof(held), "%s/jobs/7.%d.aaaaaa", scratch, (int)dead);
	h = hold_in_child(hold_job_folder, held);
	/* Left by a dead kiln: nobody holds it. */
	snprintf(stale, sizeof(stale), "%s/jobs/8.%d.bbbbbb", scratch, (int)dead);
	ck_assert_int_eq(mkdir(stale, 0700), 0);
	/* Of a live kiln (us) that took no lock (an older kiln): kept. */
	snprintf(live, sizeof(live), "%s/jobs/9.%d.cccccc", scratch, (int)getpid());
	ck_assert_int_eq(mkdir(live, 0700), 0);

	job_sweep(scratch);
	ck_assert_int_eq(access(held, F_OK), 0);
	ck_assert_int_eq(access(live, F_OK), 0);
	ck_assert_int_ne(access(stale, F_OK), 0);

	release(&h);
	job_sweep(scratch);
	ck_assert_int_ne(access(held, F_OK), 0);
	ck_assert_int_eq(access(live, F_OK), 0);
	drop_scratch();
}
END_TEST

Suite *claims_suite(void)
{
	Suite *s = suite_create("claims");
	TCase *tc = tcase_create("two processes");

	tcase_add_test(tc, net_slot_held_by_another_process);
	tcase_add_test(tc, sweep_leaves_held_job_folders);
	suite_add_tcase(s, tc);
	return s;
}
