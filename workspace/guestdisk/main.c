/* kiln-diskread: the only code of kiln that parses a guest-written disk.
 * Started by workspace/guestdisk/diskread.c with the image on fd 3, a tar
 * stream to write on fd 1 and one line of complaint for fd 2, already in
 * its own namespaces with a private tmpfs mounted on --root. It jails
 * itself before it reads a byte of the image: chroot into that tmpfs, the
 * unprivileged --uid, no capabilities, no_new_privs, not dumpable, then a
 * seccomp allowlist. Exit 0 when the stream is complete, 3 past a ceiling,
 * 1 on anything else. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <seccomp.h>
#ifdef KILN_SANITIZERS
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

#include "workspace/artifacts.h"
#include "workspace/guestdisk/diskread.h"
#include "workspace/guestdisk/ext4walk.h"
#include "workspace/guestdisk/tarstream.h"
#include "lib/paths.h"

#define IMAGE_FD 3

static void complain(const struct kiln_err *e)
{
	fprintf(stderr, "%s\n", e->msg);
}

/* Every system call the reader makes once jailed; the rest kill it. */
static enum kiln_rc seccomp_enter(struct kiln_err *e)
{
	static const struct {
		int nr;
		const char *why;
	} allow[] = {
		{ SCMP_SYS(read), "the image (pread), the index copy" },
		{ SCMP_SYS(pread64), "the image, block by block (libext2fs through our fd I/O manager)" },
		{ SCMP_SYS(write), "the tar stream on fd 1, the complaint on fd 2, the index copy" },
		{ SCMP_SYS(openat), "the index copy in the private tmpfs (libgit2 reads it by name)" },
		{ SCMP_SYS(close), "" },
		{ SCMP_SYS(access), "libgit2 checks that the index exists" },
		{ SCMP_SYS(fstat), "libgit2 and stdio size their buffers" },
		{ SCMP_SYS(newfstatat), "the same through glibc's fstatat" },
		{ SCMP_SYS(lseek), "libgit2 and stdio" },
		{ SCMP_SYS(brk), "malloc" },
		{ SCMP_SYS(munmap), "malloc, libgit2's index map" },
		{ SCMP_SYS(mremap), "malloc" },
		{ SCMP_SYS(madvise), "malloc gives memory back" },
		{ SCMP_SYS(futex), "libgit2's and libarchive's locks" },
		{ SCMP_SYS(getrandom), "libgit2's hash seeds" },
		{ SCMP_SYS(clock_gettime), "time stamps, when the vDSO is not used" },
		{ SCMP_SYS(getpid), "libgit2's lock-file names" },
		{ SCMP_SYS(gettid), "" },
		{ SCMP_SYS(getuid), "libgit2 looks up the user at start" },
		{ SCMP_SYS(geteuid), "" },
		{ SCMP_SYS(rt_sigprocmask), "glibc around its locks" },
		{ SCMP_SYS(rt_sigreturn), "" },
		{ SCMP_SYS(exit), "" },
		{ SCMP_SYS(exit_group), "" },
	};
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	size_t i;
	int r = 0;

	if (!ctx)
		return kiln_fail(e, KILN_E_NOMEM, "seccomp_init failed");
	for (i = 0; i < sizeof(allow) / sizeof(allow[0]) && r == 0; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allow[i].nr, 0);
	/* Memory, never executable: nothing the guest wrote can become code. */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
#ifdef KILN_SANITIZERS
	/* Sanitizer builds only (configure --enable-sanitizers, CI): what a
	 * report does in here (it asks whether stderr is a terminal, looks
	 * for the binary to symbolize and finds none in the chroot). */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(open), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(readlink), 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sched_yield), 0);
#endif
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0)
		return kiln_fail(e, KILN_E_IO, "loading the seccomp filter: %s", strerror(-r));
	return KILN_OK;
}

/* chroot into root, the unprivileged uid, no capabilities or way back. */
static enum kiln_rc jail_enter(const char *root, uid_t uid, struct kiln_err *e)
{
#ifdef KILN_SANITIZERS
	/* Sanitizer builds: the leak check at exit needs ptrace, which the
	 * jail forbids (it would die of SIGSYS), so it runs here and not
	 * again; the jailed part goes unchecked for leaks. A report made in
	 * the chroot cannot open its log file: it goes to stderr, kiln's
	 * complaint channel. */
	__lsan_do_leak_check();
	__sanitizer_set_report_fd((void *)(intptr_t)STDERR_FILENO);
#endif
	if (chdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0)
		return kiln_fail_errno(e, "chroot into %s", root);
	/* Changing every uid from 0 clears every capability set. */
	if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
		return kiln_fail_errno(e, "changing to uid %u", (unsigned)uid);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return kiln_fail_errno(e, "prctl");
	return seccomp_enter(e);
}

struct want {
	const struct artifacts_spec *a;
	const struct artifacts_tracked *tracked;
};

static bool want(void *arg, const char *rel, bool folder)
{
	const struct want *w = arg;

	if (folder)
		return artifacts_may_hold(w->a, rel);
	return artifacts_wanted(w->a, w->tracked, rel);
}

/* The checkout's git index, copied from the image into the tmpfs so that
 * libgit2 can read it; none when the checkout has none. */
static enum kiln_rc load_tracked(struct ext4walk *w, const char *project, struct artifacts_tracked *t,
				 struct kiln_err *e)
{
	char path[PATH_MAX], *buf = NULL;
	enum kiln_rc rc;
	size_t len = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/.git/index", project);
	rc = ext4walk_read_file(w, path, DISKREAD_MAX_INDEX, &buf, &len, e);
	if (rc == KILN_E_NOTFOUND)
		return KILN_OK;
	if (rc)
		return rc;
	fd = open("/index", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || kiln_write_all(fd, buf, len) < 0) {
		rc = kiln_fail_errno(e, "copying the git index");
		if (fd >= 0)
			close(fd);
		free(buf);
		return rc;
	}
	close(fd);
	free(buf);
	return artifacts_tracked_load(t, "/index", e);
}

static int usage(void)
{
	fprintf(stderr, "kiln-diskread is started by kiln, not by hand\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *paths[ARTIFACTS_MAX_PATTERNS], *excl[ARTIFACTS_MAX_PATTERNS];
	struct artifacts_spec a = { .paths = paths, .exclude = excl };
	struct artifacts_tracked tracked = { 0 };
	struct ext4walk_limits lim = { ARTIFACTS_MAX_BYTES, ARTIFACTS_MAX_FILES, DISKREAD_MAX_VISITS };
	const char *root = NULL, *project = NULL;
	struct want wa = { &a, &tracked };
	struct ext4walk *w = NULL;
	struct tarout *t = NULL;
	struct ext4walk_sink sink;
	struct kiln_err e = { 0 };
	enum kiln_rc rc;
	long uid = -1;
	int i;

	for (i = 1; i + 1 < argc || (i < argc && !strcmp(argv[i], "--untracked")); i++) {
		const char *k = argv[i];

		if (!strcmp(k, "--untracked")) {
			a.untracked = true;
			continue;
		}
		if (!strcmp(k, "--root"))
			root = argv[++i];
		else if (!strcmp(k, "--uid"))
			uid = strtol(argv[++i], NULL, 10);
		else if (!strcmp(k, "--project"))
			project = argv[++i];
		else if (!strcmp(k, "--project-dir"))
			a.project_dir = argv[++i];
		else if (!strcmp(k, "--max-bytes"))
			lim.max_bytes = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(k, "--max-files"))
			lim.max_files = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(k, "--path") && a.n_paths < ARTIFACTS_MAX_PATTERNS)
			paths[a.n_paths++] = argv[++i];
		else if (!strcmp(k, "--exclude") && a.n_exclude < ARTIFACTS_MAX_PATTERNS)
			excl[a.n_exclude++] = argv[++i];
		else
			return usage();
	}
	if (i != argc || !root || !project || uid <= 0)
		return usage();
	if ((rc = jail_enter(root, (uid_t)uid, &e)))
		goto out;
	if ((rc = ext4walk_open(&w, IMAGE_FD, &e)))
		goto out;
	if (a.untracked && (rc = load_tracked(w, project, &tracked, &e)))
		goto out;
	if ((rc = tarout_open(&t, 1, &e)))
		goto out;
	sink = tarout_sink(t, want, &wa);
	rc = ext4walk_tree(w, project, &lim, &sink, &e);
	/* No project folder: nothing was made, so nothing is an artifact. */
	if (rc == KILN_E_NOTFOUND)
		rc = KILN_OK;
	if (!rc)
		rc = tarout_close(t, &e);
	else
		tarout_close(t, NULL);
out:
	ext4walk_close(w);
	artifacts_tracked_free(&tracked);
	if (rc)
		complain(&e);
	return rc == KILN_OK ? 0 : rc == KILN_E_LIMIT ? 3 : 1;
}
