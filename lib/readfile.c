#include "lib/readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Without a size to go by (a pipe, /proc), the buffer starts here and doubles. */
#define READ_FILE_FIRST 4096

int kiln_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	size_t cap = READ_FILE_FIRST, n = 0;
	char *b = NULL, *nb;
	struct stat st;
	int fd, rc = 0;

	*buf = NULL;
	*len = 0;
	if (max > SIZE_MAX / 2)
		max = SIZE_MAX / 2;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* The size from fstat is a hint (the file may change under us): room
	 * for one byte more, whose read tells that the end was reached. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
		cap = (unsigned long long)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
	else if (cap > max + 1)
		cap = max + 1;
	if (!(b = malloc(cap + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			if (cap > max) {
				rc = -EFBIG;
				goto out;
			}
			cap = cap > max / 2 ? max + 1 : cap * 2;
			if (!(nb = realloc(b, cap + 1))) {
				rc = -ENOMEM;
				goto out;
			}
			b = nb;
		}
		r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	b = NULL;
out:
	free(b);
	close(fd);
	return rc;
}
