#include "agent/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/imageuser.h"
#include "agent/init.h"
#include "agent/log.h"
#include "agent/step.h"

#define IMAGE_ROOT "/oci"
#define IMAGE_ETC_MAX (1u << 20)   /* passwd, group, resolv.conf: read at most this much */

/* The first IMAGE_ETC_MAX bytes of path as a new string, or NULL. */
static char *slurp(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t n;
	size_t len = 0;

	if (fd < 0)
		return NULL;
	buf = malloc(IMAGE_ETC_MAX + 1);
	while (buf && len < IMAGE_ETC_MAX && (n = read(fd, buf + len, IMAGE_ETC_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* Replace path (never following a symlink there) with text. */
static void put(const char *path, const char *text)
{
	int fd;

	if (!text)
		return;
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, text, strlen(text)) < 0)
		say("writing %s: %s", path, strerror(errno));
	close(fd);
}

/* Bind src on IMAGE_ROOT/dst, creating the mount point. */
static int bind(const char *src, const char *dst, char *err, size_t size)
{
	char path[256];
	struct stat st;

	/* mount(2) follows a symlink: an image's /dev -> / would lead the bind
	 * out of it. The job's copy gets a plain folder instead. */
	snprintf(path, sizeof(path), IMAGE_ROOT "%s", dst);
	if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
		unlink(path);
	mkdir(path, 0755);
	if (mount(src, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
		snprintf(err, size, "binding %s into the image: %s", src, strerror(errno));
		return -1;
	}
	return 0;
}

int image_enter(const struct job_spec *spec, char *err, size_t size)
{
	char *resolv, *hosts, *hostname, *passwd, *group;
	uid_t uid;
	gid_t gid;
	int rc;

	rc = init_mount_workspace(spec->image_label, IMAGE_ROOT);
	if (rc) {
		snprintf(err, size, "the image's disk (label %s) %s", spec->image_label,
			 rc > 0 ? "is not there" : "cannot be mounted");
		return -1;
	}
	if (bind("/dev", "/dev", err, size) < 0 || bind("/proc", "/proc", err, size) < 0 ||
	    bind("/sys", "/sys", err, size) < 0 || bind("/builds", "/builds", err, size) < 0)
		return -1;
	resolv = slurp("/etc/resolv.conf");
	hosts = slurp("/etc/hosts");
	hostname = slurp("/etc/hostname");
	if (chroot(IMAGE_ROOT) < 0 || chdir("/") < 0) {
		snprintf(err, size, "entering the image: %s", strerror(errno));
		free(resolv);
		free(hosts);
		free(hostname);
		return -1;
	}
	mkdir("/tmp", 01777);
	mkdir("/etc", 0755);
	put("/etc/resolv.conf", resolv);
	put("/etc/hosts", hosts);
	put("/etc/hostname", hostname);
	free(resolv);
	free(hosts);
	free(hostname);
	passwd = slurp("/etc/passwd");
	group = slurp("/etc/group");
	rc = image_resolve_user(spec->image_user, passwd, group, &uid, &gid, err, size);
	free(passwd);
	free(group);
	if (rc < 0)
		return -1;
	step_run_as(uid, gid);
	step_entrypoint(spec->image_entrypoint, spec->image_nentrypoint);
	return 0;
}

/* Append text to path (created 0644 if missing, never through a symlink). */
static int append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : (size_t)n == strlen(text) ? 0 : -EIO;
}

int image_exec_user(const struct job_spec *spec, struct step_user *u, char *err, size_t size)
{
	char *passwd = NULL, *group = NULL, line[512];
	uid_t uid;
	gid_t gid;
	int rc = -1;

	memset(u, 0, sizeof(*u));
	if (!spec->exec_user)
		return 0;
	passwd = slurp("/etc/passwd");
	if (spec->exec_add_user && passwd_home(passwd, spec->exec_user, line, sizeof(line)) < 0) {
		unsigned long id = passwd_free_id(passwd);
		int e;

		if (strlen(spec->workdir) > 200) {
			snprintf(err, size, "adding user %s: its home %s is too long", spec->exec_user, spec->workdir);
			goto out;
		}
		/* A line of its own even when the file lacks its last newline. */
		snprintf(line, sizeof(line), "%s%s:x:%lu:%lu::%s:/bin/bash\n",
			 passwd && *passwd && passwd[strlen(passwd) - 1] != '\n' ? "\n" : "", spec->exec_user, id, id,
			 spec->workdir);
		if ((e = append("/etc/passwd", line)) < 0) {
			snprintf(err, size, "adding user %s to /etc/passwd: %s", spec->exec_user, strerror(-e));
			goto out;
		}
		group = slurp("/etc/group");
		snprintf(line, sizeof(line), "%s%s:x:%lu:\n",
			 group && *group && group[strlen(group) - 1] != '\n' ? "\n" : "", spec->exec_user, id);
		if ((e = append("/etc/group", line)) < 0) {
			snprintf(err, size, "adding group %s to /etc/group: %s", spec->exec_user, strerror(-e));
			goto out;
		}
		free(passwd);
		free(group);
		passwd = slurp("/etc/passwd");
		group = NULL;
	}
	if (!group)
		group = slurp("/etc/group");
	if (image_resolve_user(spec->exec_user, passwd, group, &uid, &gid, err, size) < 0)
		goto out;
	if (passwd_home(passwd, spec->exec_user, u->home, sizeof(u->home)) < 0 || !u->home[0])
		snprintf(u->home, sizeof(u->home), "/");
	u->uid = uid;
	u->gid = gid;
	u->ngroups = group ? group_ids_of(group, spec->exec_user, u->groups, STEP_MAX_GROUPS) : 0;
	snprintf(u->name, sizeof(u->name), "%s", spec->exec_user);
	rc = 0;
out:
	free(passwd);
	free(group);
	return rc;
}
