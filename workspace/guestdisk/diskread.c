#include "workspace/guestdisk/diskread.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/paths.h"

#define ERR_MAX 400
#define MAX_ARGS (16 + 4 * ARTIFACTS_MAX_PATTERNS)

/* In the forked child, before exec: only system calls (kiln may have other
 * threads, whose locks a fork copies held). A failure writes one line to
 * fd 2 and exits 126. */
static void child_fail(const char *what)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "%s: %s\n", what, strerror(errno));

	if (n > 0 && write(2, line, (size_t)n) < 0)
		_exit(126);
	_exit(126);
}

/* dup2 that also clears close-on-exec when src is already dst. */
static int move_fd(int src, int dst)
{
	return src == dst ? fcntl(dst, F_SETFD, 0) : dup2(src, dst);
}

static void child(int img, int out, int err, const char *jail, char *const argv[], unsigned time_s)
{
	/* uid=... makes the tmpfs's root the reader's own, and it holds no
	 * more than the git index needs. */
	static const char opts_fmt[] = "size=%llu,nr_inodes=16,mode=0700,uid=%d,gid=%d";
	struct rlimit as = { DISKREAD_MEMORY, DISKREAD_MEMORY }, cpu = { time_s, time_s },
		      nofile = { 16, 16 }, fsize = { DISKREAD_MAX_INDEX, DISKREAD_MAX_INDEX }, core = { 0, 0 };
	char opts[128];
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (move_fd(err, 2) < 0 || nul < 0 || move_fd(nul, 0) < 0 || move_fd(out, 1) < 0 || move_fd(img, 3) < 0)
		child_fail("kiln-diskread: setting up its fds");
	/* Nothing of kiln's open files but these four. */
	if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0)
		child_fail("kiln-diskread: close_range");
	/* Its own mounts, no network, no IPC with the host, its own name. */
	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
		child_fail("kiln-diskread: unshare (kiln must run as root)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail("kiln-diskread: making its mounts private");
	snprintf(opts, sizeof(opts), opts_fmt, (unsigned long long)DISKREAD_SCRATCH_BYTES, DISKREAD_UID, DISKREAD_UID);
	if (mount("kiln-diskread", jail, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
		child_fail("kiln-diskread: mounting its scratch tmpfs");
	/* A sanitizer's shadow memory is terabytes of address space. */
#if !defined(__SANITIZE_ADDRESS__)
	if (setrlimit(RLIMIT_AS, &as) < 0)
		child_fail("kiln-diskread: RLIMIT_AS");
#else
	(void)as;
#endif
	if (setrlimit(RLIMIT_CPU, &cpu) < 0 || setrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
	    setrlimit(RLIMIT_FSIZE, &fsize) < 0 || setrlimit(RLIMIT_CORE, &core) < 0)
		child_fail("kiln-diskread: setrlimit");
	execv(argv[0], argv);
	child_fail("kiln-diskread: exec");
}

/* The reader's one-line complaint, printable characters only. */
static void read_err(int fd, char *buf, size_t size)
{
	size_t len = 0, i, k = 0;
	ssize_t n;

	while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\n' && i + 1 == len)
			break;
		buf[k++] = isprint(c) ? (char)c : ' ';
	}
	buf[k] = '\0';
}

/* argv for kiln-diskread; strings point into r and the buffers. */
static enum kiln_rc build_argv(const struct diskread_req *r, char *helper, char *jail, char nums[4][32],
			       char *argv[], struct kiln_err *e)
{
	const struct artifacts_spec *a = r->a;
	size_t n = 0, i;

	if (a->n_paths > ARTIFACTS_MAX_PATTERNS || a->n_exclude > ARTIFACTS_MAX_PATTERNS)
		return kiln_fail(e, KILN_E_LIMIT, "artifacts: more than %d paths or exclude patterns",
				 ARTIFACTS_MAX_PATTERNS);
	snprintf(nums[0], 32, "%d", DISKREAD_UID);
	snprintf(nums[1], 32, "%llu", (unsigned long long)(r->max_bytes ? r->max_bytes : ARTIFACTS_MAX_BYTES));
	snprintf(nums[2], 32, "%u", r->max_files ? r->max_files : ARTIFACTS_MAX_FILES);
	argv[n++] = helper;
	argv[n++] = "--root";
	argv[n++] = jail;
	argv[n++] = "--uid";
	argv[n++] = nums[0];
	argv[n++] = "--max-bytes";
	argv[n++] = nums[1];
	argv[n++] = "--max-files";
	argv[n++] = nums[2];
	argv[n++] = "--project";
	argv[n++] = (char *)r->project;
	if (a->project_dir) {
		argv[n++] = "--project-dir";
		argv[n++] = (char *)a->project_dir;
	}
	if (a->untracked)
		argv[n++] = "--untracked";
	for (i = 0; i < a->n_paths; i++) {
		argv[n++] = "--path";
		argv[n++] = (char *)a->paths[i];
	}
	for (i = 0; i < a->n_exclude; i++) {
		argv[n++] = "--exclude";
		argv[n++] = (char *)a->exclude[i];
	}
	argv[n] = NULL;
	return KILN_OK;
}

enum kiln_rc diskread_extract(const struct diskread_req *r, const char *dest, struct tarin_stats *st,
			      struct kiln_err *e)
{
	char helper[PATH_MAX], jail[PATH_MAX], nums[4][32], why[ERR_MAX];
	unsigned time_s = r->time_s ? r->time_s : DISKREAD_TIME_S;
	struct tarin_limits lim = {
		.max_bytes = r->max_bytes ? r->max_bytes : ARTIFACTS_MAX_BYTES,
		.max_files = r->max_files ? r->max_files : ARTIFACTS_MAX_FILES,
		.deadline = mono_s() + time_s,
	};
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, img = -1, status = 0;
	char **argv = NULL;
	enum kiln_rc rc;
	pid_t pid = -1;

	memset(st, 0, sizeof(*st));
	jail[0] = '\0';
	if (!kiln_path_join(helper, sizeof(helper), kiln_libexec_dir(), "kiln-diskread") || access(helper, X_OK) < 0)
		return kiln_fail(e, KILN_E_NOTFOUND, "artifacts: %s/kiln-diskread not found: reinstall kiln",
				 kiln_libexec_dir());
	if (!(argv = calloc(MAX_ARGS, sizeof(*argv))))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	if (kiln_mkdir_p(r->tmp_dir) < 0) {
		rc = kiln_fail_errno(e, "artifacts: %s", r->tmp_dir);
		goto out;
	}
	/* The mount point: root's, and only the reader's namespace mounts on it. */
	if (snprintf(jail, sizeof(jail), "%s/diskread-XXXXXX", r->tmp_dir) >= (int)sizeof(jail) || !mkdtemp(jail)) {
		jail[0] = '\0';
		rc = kiln_fail_errno(e, "artifacts: a jail folder in %s", r->tmp_dir);
		goto out;
	}
	if ((rc = build_argv(r, helper, jail, nums, argv, e)))
		goto out;
	if ((img = open(r->image, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		rc = kiln_fail_errno(e, "artifacts: %s", r->image);
		goto out;
	}
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		rc = kiln_fail_errno(e, "artifacts: pipe");
		goto out;
	}
	if ((pid = fork()) < 0) {
		rc = kiln_fail_errno(e, "artifacts: fork");
		goto out;
	}
	if (pid == 0)
		child(img, out[1], err[1], jail, argv, time_s);
	close(out[1]);
	close(err[1]);
	out[1] = err[1] = -1;
	if (r->started)
		r->started(pid, r->started_arg);
	rc = tarin_extract(out[0], dest, &lim, st, e);
	/* A reader that is not done when kiln is (an error, the deadline) goes. */
	close(out[0]);
	out[0] = -1;
	if (rc)
		kill(pid, SIGKILL);
	read_err(err[0], why, sizeof(why));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pid = -1;
	/* The reader's own failure says more than the stream it cut short,
	 * unless it died of kiln's kill, or kiln failed on its own side
	 * (writing dest: the disk full): then the reader only saw its pipe
	 * close, and kiln's error is the one that says why. */
	if (rc == KILN_E_IO || rc == KILN_E_NOMEM)
		status = 0;
	if (WIFSIGNALED(status) && !(rc && WTERMSIG(status) == SIGKILL))
		rc = kiln_fail(e, KILN_E_EXEC, "artifacts: reading %s: kiln-diskread died of signal %d (%s)%s%s",
			       r->image, WTERMSIG(status), strsignal(WTERMSIG(status)), why[0] ? ": " : "", why);
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		rc = kiln_fail(e, WEXITSTATUS(status) == 3 ? KILN_E_LIMIT : KILN_E_SYNTAX, "artifacts: reading %s: %s",
			       r->image, why[0] ? why : "kiln-diskread failed");
out:
	if (pid > 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (img >= 0)
		close(img);
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
	if (err[0] >= 0)
		close(err[0]);
	if (err[1] >= 0)
		close(err[1]);
	/* Empty: the tmpfs was the reader's namespace's, never this one's. */
	if (jail[0])
		rmdir(jail);
	free(argv);
	return rc;
}

enum kiln_rc artifacts_collect(const char *image, const char *project, const struct artifacts_spec *a,
			       const char *tmp_dir, const char *dest, struct fstree_stats *st, struct kiln_err *e)
{
	struct diskread_req r = { .image = image, .project = project, .a = a, .tmp_dir = tmp_dir };
	struct tarin_stats ts = { 0 };
	enum kiln_rc rc;

	memset(st, 0, sizeof(*st));
	if (kiln_rm_rf(dest) < 0)
		return kiln_fail_errno(e, "artifacts: removing %s", dest);
	if (!a->n_paths && !a->untracked)
		return KILN_OK;
	rc = diskread_extract(&r, dest, &ts, e);
	st->files = ts.files;
	st->bytes = ts.bytes;
	/* Half an extraction is no artifact: nothing, or all of it. */
	if (rc || !ts.files)
		kiln_rm_rf(dest);
	return rc;
}
