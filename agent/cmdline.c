#include "agent/cmdline.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int cmdline_read(char *buf, size_t size)
{
	int fd = -1, rc = 0;
	ssize_t n;

	buf[0] = '\0';
	fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	n = read(fd, buf, size - 1);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	buf[n] = '\0';
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Calls fn on each word of cmdline before a lone "--" until fn returns
 * non-zero, and returns that. Words are spans of s, not NUL-terminated. */
static int each_word(const char *s, int (*fn)(const char *w, size_t n, void *ctx), void *ctx)
{
	static const char sep[] = " \t\n";
	int rc = 0;

	while (!rc) {
		size_t n;

		s += strspn(s, sep);
		n = strcspn(s, sep);
		if (!n || (n == 2 && !strncmp(s, "--", 2)))
			break;
		rc = fn(s, n, ctx);
		s += n;
	}
	return rc;
}

struct lookup {
	const char *key;
	char *val;
	size_t size;
};

static int match_key(const char *w, size_t n, void *ctx)
{
	struct lookup *l = ctx;
	size_t klen = strlen(l->key), vlen;

	if (n <= klen || strncmp(w, l->key, klen) || w[klen] != '=')
		return 0;
	vlen = n - klen - 1;
	if (vlen >= l->size)
		return -ENAMETOOLONG;
	memcpy(l->val, w + klen + 1, vlen);
	l->val[vlen] = '\0';
	return 1;
}

int cmdline_get(const char *cmdline, const char *key, char *val, size_t size)
{
	struct lookup l = { key, val, size };

	val[0] = '\0';
	return each_word(cmdline, match_key, &l);
}

static int match_word(const char *w, size_t n, void *ctx)
{
	const char *word = ctx;

	return strlen(word) == n && !strncmp(w, word, n);
}

int cmdline_has(const char *cmdline, const char *word)
{
	return each_word(cmdline, match_word, (void *)word);
}
