#include "lib/atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "lib/paths.h"

enum kiln_rc kiln_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
			       struct kiln_err *e)
{
	char tmp[PATH_MAX];
	enum kiln_rc rc = KILN_OK;
	int fd, closed;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
		return kiln_fail(e, KILN_E_LIMIT, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode ? mode : 0666);
	if (fd < 0)
		return kiln_fail_errno(e, "creating %s", tmp);
	if (kiln_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		rc = kiln_fail_errno(e, "writing %s", tmp);
		goto out;
	}
	closed = close(fd);
	fd = -1;
	if (closed < 0)
		rc = kiln_fail_errno(e, "writing %s", tmp);
	else if (rename(tmp, path) < 0)
		rc = kiln_fail_errno(e, "replacing %s", path);
out:
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	return rc;
}
