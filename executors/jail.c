#include "executors/jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/paths.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CPU_PERIOD_US 100000
#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)

/* Host folders the VMM's libraries come from; as links where the host has
 * links (merged /usr), bound read-only where it has folders. */
static const char *const sys_dirs[] = { "/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", NULL };
static const char *const v1_controllers[] = { "memory", "cpu", "pids", NULL };

void jail_init(struct jail *j, bool on)
{
	memset(j, 0, sizeof(*j));
	j->on = on;
	j->slot_fd = -1;
}

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(text);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, len);
	if (close(fd) < 0 || n != (ssize_t)len)
		return -1;
	return 0;
}

/* A free uid slot: the first lock file under JAIL_SLOT_DIR nobody holds.
 * The lock goes with its holder, so a crashed kiln's slots come back. */
static enum kiln_rc claim_slot(struct jail *j, long uid_base, struct kiln_err *e)
{
	char path[PATH_MAX];
	int n;

	if (kiln_mkdir_p(JAIL_SLOT_DIR) < 0)
		return kiln_fail_errno(e, "jail: creating %s", JAIL_SLOT_DIR);
	for (n = 0; n < JAIL_SLOTS; n++) {
		int fd;

		snprintf(path, sizeof(path), "%s/%d", JAIL_SLOT_DIR, n);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return kiln_fail_errno(e, "jail: %s", path);
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			j->slot_fd = fd;
			j->uid = (uid_t)(uid_base + n);
			j->gid = (gid_t)(uid_base + n);
			return KILN_OK;
		}
		close(fd);
	}
	return kiln_fail(e, KILN_E_LIMIT, "jail: all %d uid slots under %s are taken", JAIL_SLOTS, JAIL_SLOT_DIR);
}

static int cgroup_version(void)
{
	char path[PATH_MAX];
	const char *const *c;

	if (access(CGROUP_ROOT "/cgroup.controllers", F_OK) == 0)
		return 2;
	for (c = v1_controllers; *c; c++) {
		snprintf(path, sizeof(path), "%s/%s/tasks", CGROUP_ROOT, *c);
		if (access(path, F_OK) < 0)
			return 0;
	}
	return 1;
}

/* Whether the v2 root offers memory, cpu and pids to its children. */
static bool v2_controllers(void)
{
	char buf[512] = "";
	int fd = open(CGROUP_ROOT "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, "memory") && strstr(buf, "cpu") && strstr(buf, "pids");
}

static enum kiln_rc cg_write(const char *dir, const char *file, const char *text, struct kiln_err *e)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (write_text(path, text) < 0)
		return kiln_fail_errno(e, "jail: writing \"%s\" to %s", text, path);
	return KILN_OK;
}

static enum kiln_rc cg_mkdir(struct jail *j, const char *path, struct kiln_err *e)
{
	if (mkdir(path, 0755) < 0)
		return kiln_fail_errno(e, "jail: creating cgroup %s", path);
	snprintf(j->cgroups[j->n_cgroups++], sizeof(j->cgroups[0]), "%s", path);
	return KILN_OK;
}

/* The VM's cgroup: v2 at /sys/fs/cgroup/kiln/<name>, else one per v1
 * controller at /sys/fs/cgroup/<controller>/kiln/<name>. */
static enum kiln_rc make_cgroup(struct jail *j, const char *name, const struct jail_limits *lim, struct kiln_err *e)
{
	char path[PATH_MAX], text[64];
	enum kiln_rc rc;
	int v = cgroup_version();

	if (v == 2) {
		if (!v2_controllers())
			return kiln_fail(e, KILN_E_EXEC, "jail: the cgroup v2 root offers no memory, cpu and pids "
							 "controllers (see kiln doctor; jail: false runs VMs unjailed)");
		if (mkdir(CGROUP_ROOT "/kiln", 0755) < 0 && errno != EEXIST)
			return kiln_fail_errno(e, "jail: creating %s/kiln", CGROUP_ROOT);
		if ((rc = cg_write(CGROUP_ROOT, "cgroup.subtree_control", "+memory +cpu +pids", e)) ||
		    (rc = cg_write(CGROUP_ROOT "/kiln", "cgroup.subtree_control", "+memory +cpu +pids", e)))
			return rc;
		snprintf(path, sizeof(path), "%s/kiln/%s", CGROUP_ROOT, name);
		if ((rc = cg_mkdir(j, path, e)))
			return rc;
		snprintf(text, sizeof(text), "%lld", lim->memory_bytes);
		if ((rc = cg_write(path, "memory.max", text, e)))
			return rc;
		snprintf(text, sizeof(text), "%d %d", lim->cpus * CPU_PERIOD_US, CPU_PERIOD_US);
		if ((rc = cg_write(path, "cpu.max", text, e)))
			return rc;
		snprintf(text, sizeof(text), "%d", lim->pids);
		return cg_write(path, "pids.max", text, e);
	}
	if (v == 0)
		return kiln_fail(e, KILN_E_EXEC, "jail: this host has neither cgroup v2 nor v1 memory, cpu and pids "
						 "hierarchies under %s (see kiln doctor; jail: false runs VMs unjailed)",
				 CGROUP_ROOT);
	for (const char *const *c = v1_controllers; *c; c++) {
		snprintf(path, sizeof(path), "%s/%s/kiln", CGROUP_ROOT, *c);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return kiln_fail_errno(e, "jail: creating %s", path);
		snprintf(path, sizeof(path), "%s/%s/kiln/%s", CGROUP_ROOT, *c, name);
		if ((rc = cg_mkdir(j, path, e)))
			return rc;
		if (!strcmp(*c, "memory")) {
			snprintf(text, sizeof(text), "%lld", lim->memory_bytes);
			rc = cg_write(path, "memory.limit_in_bytes", text, e);
		} else if (!strcmp(*c, "cpu")) {
			snprintf(text, sizeof(text), "%d", lim->cpus * CPU_PERIOD_US);
			if (!(rc = cg_write(path, "cpu.cfs_period_us", "100000", e)))
				rc = cg_write(path, "cpu.cfs_quota_us", text, e);
		} else {
			snprintf(text, sizeof(text), "%d", lim->pids);
			rc = cg_write(path, "pids.max", text, e);
		}
		if (rc)
			return rc;
	}
	return KILN_OK;
}

enum kiln_rc jail_acquire(struct jail *j, const char *run_dir, long uid_base, const struct jail_limits *lim,
			  struct kiln_err *e)
{
	const char *name = strrchr(run_dir, '/') ? strrchr(run_dir, '/') + 1 : run_dir;
	enum kiln_rc rc;

	if (!j->on)
		return KILN_OK;
	if (geteuid() != 0)
		return kiln_fail(e, KILN_E_EXEC, "jail: kiln must run as root to jail its VMs (namespaces, cgroups, "
						 "uid switch); or set jail: false to run them unjailed as this user");
	if (uid_base <= 0 || uid_base + JAIL_SLOTS > 0x7fffffffL)
		return kiln_fail(e, KILN_E_INVALID, "jail: jail_uid_base %ld is outside 1..%ld", uid_base,
				 0x7fffffffL - JAIL_SLOTS);
	if ((rc = claim_slot(j, uid_base, e)))
		return rc;
	snprintf(j->mnt, sizeof(j->mnt), "%s/root", run_dir);
	snprintf(j->vm_dir, sizeof(j->vm_dir), "%s/vm", run_dir);
	/* They may be there from the job's first VM (a relaunch). */
	if ((mkdir(j->mnt, 0700) < 0 && errno != EEXIST) || (mkdir(j->vm_dir, 0700) < 0 && errno != EEXIST))
		return kiln_fail_errno(e, "jail: creating the VM's folders in %s", run_dir);
	if ((rc = jail_give(j, j->vm_dir, e)))
		return rc;
	return make_cgroup(j, name, lim, e);
}

const char *jail_expose(struct jail *j, const char *path, const char *name, enum jail_mode mode)
{
	struct jail_file *f;

	if (!j->on)
		return path;
	if (j->n_files == JAIL_MAX_FILES || strlen(path) >= sizeof(f->host) || strlen(name) + 2 > sizeof(f->inside))
		return NULL;
	f = &j->files[j->n_files++];
	snprintf(f->host, sizeof(f->host), "%s", path);
	snprintf(f->inside, sizeof(f->inside), "/%s", name);
	f->mode = mode;
	return f->inside;
}

enum kiln_rc jail_give(const struct jail *j, const char *path, struct kiln_err *e)
{
	if (j->on && chown(path, j->uid, j->gid) < 0)
		return kiln_fail_errno(e, "jail: handing %s to uid %u", path, (unsigned)j->uid);
	return KILN_OK;
}

int jail_clone_flags(const struct jail *j)
{
	return j->on ? NS_FLAGS : 0;
}

void jail_release(struct jail *j)
{
	int i, tries;

	/* The VMM is reaped, but its threads may still be leaving the cgroup:
	 * rmdir says EBUSY until they have. */
	for (i = j->n_cgroups - 1; i >= 0; i--)
		for (tries = 0; rmdir(j->cgroups[i]) < 0 && errno == EBUSY && tries < 100; tries++)
			usleep(10000);
	j->n_cgroups = 0;
	if (j->slot_fd >= 0)
		close(j->slot_fd);
	j->slot_fd = -1;
}

void jail_sweep(void)
{
	static const char *const bases[] = { CGROUP_ROOT "/kiln", CGROUP_ROOT "/memory/kiln", CGROUP_ROOT "/cpu/kiln",
					     CGROUP_ROOT "/pids/kiln", NULL };
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int i;

	for (i = 0; bases[i]; i++) {
		if (!(d = opendir(bases[i])))
			continue;
		while ((de = readdir(d))) {
			long long id;
			int pid;

			if (sscanf(de->d_name, "%lld.%d.", &id, &pid) != 2 || pid <= 0 || kill(pid, 0) == 0 ||
			    errno != ESRCH)
				continue;
			snprintf(path, sizeof(path), "%s/%s", bases[i], de->d_name);
			rmdir(path);
		}
		closedir(d);
	}
}

/* --- in the child, between clone and exec ---------------------------------- */

static int failed(char *msg, size_t size, const char *what, const char *arg)
{
	snprintf(msg, size, "jail: %s%s%s: %s", what, arg ? " " : "", arg ? arg : "", strerror(errno));
	return -1;
}

/* Bind host path at inside (under the new root at mnt), then make the bind
 * read-only unless rw, never setuid or device-bearing, executable only
 * when exec. */
static int bind(const char *mnt, const char *host, const char *inside, bool rw, bool exec, char *msg, size_t size)
{
	char target[PATH_MAX];
	unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (rw ? 0 : MS_RDONLY) | (exec ? 0 : MS_NOEXEC);
	struct stat st;
	int fd;

	snprintf(target, sizeof(target), "%s%s", mnt, inside);
	if (stat(host, &st) < 0)
		return failed(msg, size, "stat", host);
	if (S_ISDIR(st.st_mode)) {
		if (mkdir(target, 0755) < 0)
			return failed(msg, size, "mkdir", inside);
	} else {
		if ((fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
			return failed(msg, size, "creating", inside);
		close(fd);
	}
	if (mount(host, target, NULL, MS_BIND | MS_REC, NULL) < 0)
		return failed(msg, size, "binding", host);
	if (mount(NULL, target, NULL, flags, NULL) < 0)
		return failed(msg, size, "remounting", inside);
	return 0;
}

/* A device node like the host's, for uid/gid with mode. */
static int node(const char *mnt, const char *dev, mode_t mode, uid_t uid, gid_t gid, char *msg, size_t size)
{
	char target[PATH_MAX];
	struct stat st;

	snprintf(target, sizeof(target), "%s%s", mnt, dev);
	if (stat(dev, &st) < 0 || !S_ISCHR(st.st_mode))
		return failed(msg, size, "no character device", dev);
	if (mknod(target, S_IFCHR | mode, st.st_rdev) < 0 || chmod(target, mode) < 0 || chown(target, uid, gid) < 0)
		return failed(msg, size, "mknod", dev);
	return 0;
}

static int build_root(const struct jail *j, char *msg, size_t size)
{
	char target[PATH_MAX], link[PATH_MAX];
	int i;

	if (mount("kiln-jail", j->mnt, "tmpfs", MS_NOSUID, "mode=0755,size=64k,nr_inodes=256") < 0)
		return failed(msg, size, "mounting a tmpfs on", j->mnt);
	for (i = 0; sys_dirs[i]; i++) {
		struct stat st;
		ssize_t n;

		if (lstat(sys_dirs[i], &st) < 0)
			continue;
		snprintf(target, sizeof(target), "%s%s", j->mnt, sys_dirs[i]);
		if (S_ISLNK(st.st_mode)) {
			if ((n = readlink(sys_dirs[i], link, sizeof(link) - 1)) < 0)
				return failed(msg, size, "readlink", sys_dirs[i]);
			link[n] = '\0';
			if (symlink(link, target) < 0)
				return failed(msg, size, "symlink", sys_dirs[i]);
		} else if (S_ISDIR(st.st_mode) && bind(j->mnt, sys_dirs[i], sys_dirs[i], false, true, msg, size) < 0) {
			return -1;
		}
	}
	for (i = 0; i < j->n_files; i++)
		if (bind(j->mnt, j->files[i].host, j->files[i].inside, j->files[i].mode == JAIL_RW,
			 j->files[i].mode == JAIL_EXEC, msg, size) < 0)
			return -1;
	if (bind(j->mnt, j->vm_dir, "/vm", true, false, msg, size) < 0)
		return -1;
	snprintf(target, sizeof(target), "%s/dev", j->mnt);
	if (mkdir(target, 0755) < 0)
		return failed(msg, size, "mkdir", "/dev");
	if (node(j->mnt, "/dev/null", 0666, 0, 0, msg, size) < 0 || node(j->mnt, "/dev/urandom", 0444, 0, 0, msg, size) < 0)
		return -1;
	if (j->kvm && node(j->mnt, "/dev/kvm", 0600, j->uid, j->gid, msg, size) < 0)
		return -1;
	return 0;
}

/* Drop every capability for good: the bounding set first (that needs
 * CAP_SETPCAP), then the ids (which clears the rest), then say so. */
static int drop(const struct jail *j, char *msg, size_t size)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	int c;

	for (c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return failed(msg, size, "dropping capabilities", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return failed(msg, size, "clearing ambient capabilities", NULL);
	/* Raw syscalls, not glibc's wrappers: in a threaded process those
	 * signal every thread of glibc's list and wait for each, and this
	 * child of clone() has the list but not the threads. One that was
	 * being created at the clone (or the list's lock, held then) made
	 * the child wait for good. The kernel sets this thread's ids, and
	 * this thread is the whole child. */
	if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, j->gid, j->gid, j->gid) < 0 ||
	    syscall(SYS_setresuid, j->uid, j->uid, j->uid) < 0)
		return failed(msg, size, "switching to the slot's uid/gid", NULL);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return failed(msg, size, "capset", NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return failed(msg, size, "no_new_privs", NULL);
	return 0;
}

int jail_child(const struct jail *j, char *msg, size_t size)
{
	char path[PATH_MAX];
	int i;

	if (!j->on)
		return 0;
	/* "0" is the writer itself, whatever its pid in which namespace. */
	for (i = 0; i < j->n_cgroups; i++) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", j->cgroups[i]);
		if (write_text(path, "0") < 0)
			return failed(msg, size, "joining cgroup", j->cgroups[i]);
	}
	/* Nothing done below may show on the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return failed(msg, size, "making mounts private", NULL);
	if (build_root(j, msg, size) < 0)
		return -1;
	if (chdir(j->mnt) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		return failed(msg, size, "pivot_root into", j->mnt);
	/* The old root is stacked under the new one: detach it. */
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		return failed(msg, size, "detaching the old root", NULL);
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, NULL) < 0)
		return failed(msg, size, "making the root read-only", NULL);
	if (sethostname("kiln-vm", 7) < 0)
		return failed(msg, size, "sethostname", NULL);
	return drop(j, msg, size);
}

/* --- kiln doctor ------------------------------------------------------------ */

void jail_probe(struct jail_host *h)
{
	pid_t pid;
	int st = 0;

	memset(h, 0, sizeof(*h));
	pid = fork();
	if (pid == 0)
		_exit(unshare(NS_FLAGS) < 0 ? 1 : 0);
	if (pid > 0 && waitpid(pid, &st, 0) == pid)
		h->namespaces = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	h->cgroup = cgroup_version();
	h->controllers = h->cgroup == 1 || (h->cgroup == 2 && v2_controllers());
	snprintf(h->detail, sizeof(h->detail), "namespaces (mount, pid, ipc, uts, net): %s; cgroup: %s%s",
		 h->namespaces ? "yes" : "no", h->cgroup == 2 ? "v2" : h->cgroup == 1 ? "v1" : "none",
		 h->cgroup == 2 && !h->controllers ? " without memory, cpu and pids" : "");
}
