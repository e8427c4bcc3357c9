#include "agent/script.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/vec.h"

/* Bold green, then reset: the exact sequences gitlab-runner emits, written
 * as printf(1) octal escapes so both bash and a busybox sh expand them. */
#define ECHO_FMT "printf '\\033[32;1m$ %s\\033[0;m\\n' "
#define COLLAPSED " # collapsed multi-line command"
#define WS " \t\r\n\v\f"

struct sbuf {
	char *p;
	size_t len, cap;
	int err;   /* first failure; later appends do nothing */
};

static void put(struct sbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (n > SCRIPT_MAX - b->len - 1) {
		b->err = -E2BIG;
		return;
	}
	if (VEC_GROW(b->p, b->cap, b->len, n + 1, SCRIPT_MAX)) {
		b->err = -ENOMEM;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct sbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* s[0..n) as one single-quoted shell word: inside single quotes nothing is
 * special except the quote itself, which is closed, escaped and reopened. */
static void put_quoted(struct sbuf *b, const char *s, size_t n)
{
	size_t i, start = 0;

	put(b, "'", 1);
	for (i = 0; i < n; i++) {
		if (s[i] != '\'')
			continue;
		put(b, s + start, i - start);
		puts_(b, "'\\''");
		start = i + 1;
	}
	put(b, s + start, n - start);
	put(b, "'", 1);
}

/* The echo line and the command itself, for one trimmed command. */
static void put_command(struct sbuf *b, const char *cmd, size_t n)
{
	const char *nl = memchr(cmd, '\n', n);

	if (!n) {
		/* gitlab-runner prints an empty line for an empty command. */
		puts_(b, "echo\n\n");
		return;
	}
	puts_(b, ECHO_FMT);
	if (nl) {
		size_t first = (size_t)(nl - cmd);
		char *line = NULL;

		/* Quote first line and marker together: one printf argument. */
		line = malloc(first + sizeof(COLLAPSED));
		if (!line) {
			b->err = b->err ? b->err : -ENOMEM;
			return;
		}
		memcpy(line, cmd, first);
		memcpy(line + first, COLLAPSED, sizeof(COLLAPSED));
		put_quoted(b, line, first + sizeof(COLLAPSED) - 1);
		free(line);
	} else {
		put_quoted(b, cmd, n);
	}
	put(b, "\n", 1);
	put(b, cmd, n);
	put(b, "\n", 1);
}

int script_render(const char *const *cmds, size_t n, char **out, size_t *outlen)
{
	struct sbuf b = { 0 };
	size_t i;

	/* Start from an allocated, empty string so n == 0 still yields one. */
	put(&b, "", 0);
	for (i = 0; i < n && !b.err; i++) {
		const char *c = cmds[i];
		size_t len;

		c += strspn(c, WS);
		len = strlen(c);
		while (len && strchr(WS, c[len - 1]))
			len--;
		put_command(&b, c, len);
	}
	if (b.err) {
		free(b.p);
		return b.err;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}
