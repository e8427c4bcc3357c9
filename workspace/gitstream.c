#include "lib/clock.h"
#include "workspace/gitstream.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <git2/sys/stream.h>

/* The first members are libgit2 1.5's git_socket_stream: its ssh transport
 * takes the descriptor from there (see gitstream.h). */
struct gitstream {
	git_stream parent;
	char *host;
	char *port;
	int s;
};

static _Thread_local long deadline_ms; /* CLOCK_MONOTONIC ms; 0: none */
static _Thread_local unsigned deadline_limit_s;

void gitstream_deadline_set(unsigned limit_s)
{
	deadline_limit_s = limit_s;
	deadline_ms = limit_s ? mono_ms() + (long)limit_s * 1000 : 0;
}

void gitstream_deadline_clear(void)
{
	deadline_ms = 0;
	deadline_limit_s = 0;
}

/* Wait until fd is ready for events, within the thread's deadline or, without
 * one, GITSTREAM_IDLE_S. 0 when ready, -1 with libgit2's error set. */
static int wait_fd(struct gitstream *st, short events, const char *what)
{
	long end = deadline_ms ? deadline_ms : mono_ms() + GITSTREAM_IDLE_S * 1000L;

	for (;;) {
		struct pollfd p = { .fd = st->s, .events = events };
		long left = end - mono_ms();
		int r;

		if (left <= 0) {
			if (deadline_ms)
				git_error_set(GIT_ERROR_NET, "%s %s:%s: over the time limit of %u s", what,
					      st->host, st->port, deadline_limit_s);
			else
				git_error_set(GIT_ERROR_NET, "%s %s:%s: nothing for %d s", what, st->host,
					      st->port, GITSTREAM_IDLE_S);
			return -1;
		}
		r = poll(&p, 1, left > 3600000 ? 3600000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR) {
			git_error_set(GIT_ERROR_NET, "%s %s:%s: poll: %s", what, st->host, st->port, strerror(errno));
			return -1;
		}
	}
}

/* connect() a non-blocking socket within the limits; the socket returns to
 * blocking mode for libssh2. 0 or -1 with errno set (ETIMEDOUT on a limit). */
static int connect_one(struct gitstream *st, const struct addrinfo *ai)
{
	int one = 1, err = 0;
	socklen_t len = sizeof(err);

	st->s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (st->s < 0)
		return -1;
	if (connect(st->s, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			goto fail;
		if (wait_fd(st, POLLOUT, "connecting to") < 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(st->s, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			goto fail;
		if (err) {
			errno = err;
			goto fail;
		}
	}
	if (fcntl(st->s, F_SETFL, fcntl(st->s, F_GETFL) & ~O_NONBLOCK) < 0)
		goto fail;
	/* Our pkt-lines go out at once rather than waiting for an ACK. */
	setsockopt(st->s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
fail:
	err = errno;
	close(st->s);
	st->s = -1;
	errno = err;
	return -1;
}

static int gs_connect(git_stream *stream)
{
	struct gitstream *st = (struct gitstream *)stream;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	int r, err = 0;

	r = getaddrinfo(st->host, st->port, &hints, &res);
	if (r) {
		git_error_set(GIT_ERROR_NET, "cannot resolve %s: %s", st->host, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		git_error_clear();
		if (connect_one(st, ai) == 0)
			break;
		err = errno;
		if (err == ETIMEDOUT && git_error_last())
			break; /* the limit is spent: no time for the next address */
	}
	freeaddrinfo(res);
	if (st->s >= 0)
		return 0;
	if (!git_error_last())
		git_error_set(GIT_ERROR_NET, "cannot connect to %s:%s: %s", st->host, st->port,
			      strerror(err ? err : ECONNREFUSED));
	return -1;
}

static ssize_t gs_read(git_stream *stream, void *data, size_t len)
{
	struct gitstream *st = (struct gitstream *)stream;
	int one = 1;

	for (;;) {
		ssize_t r;

		/* ACK what came at once: a server that wrote its answer in
		 * pieces sends the rest only after that ACK (Nagle). */
		setsockopt(st->s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		r = recv(st->s, data, len, MSG_DONTWAIT);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			git_error_set(GIT_ERROR_NET, "reading from %s:%s: %s", st->host, st->port, strerror(errno));
			return -1;
		}
		if (wait_fd(st, POLLIN, "waiting for") < 0)
			return -1;
	}
}

static ssize_t gs_write(git_stream *stream, const char *data, size_t len, int flags)
{
	struct gitstream *st = (struct gitstream *)stream;

	(void)flags;
	for (;;) {
		ssize_t r = send(st->s, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			git_error_set(GIT_ERROR_NET, "writing to %s:%s: %s", st->host, st->port, strerror(errno));
			return -1;
		}
		if (wait_fd(st, POLLOUT, "sending to") < 0)
			return -1;
	}
}

static int gs_close(git_stream *stream)
{
	struct gitstream *st = (struct gitstream *)stream;

	if (st->s >= 0)
		close(st->s);
	st->s = -1;
	return 0;
}

static void gs_free(git_stream *stream)
{
	struct gitstream *st = (struct gitstream *)stream;

	if (!st)
		return;
	gs_close(stream);
	free(st->host);
	free(st->port);
	free(st);
}

static int gs_new(git_stream **out, const char *host, const char *port)
{
	struct gitstream *st = calloc(1, sizeof(*st));

	*out = NULL;
	if (!st || !host || !port || !(st->host = strdup(host)) || !(st->port = strdup(port))) {
		if (st) {
			free(st->host);
			free(st);
		}
		git_error_set_oom();
		return -1;
	}
	st->s = -1;
	st->parent.version = GIT_STREAM_VERSION;
	st->parent.connect = gs_connect;
	st->parent.read = gs_read;
	st->parent.write = gs_write;
	st->parent.close = gs_close;
	st->parent.free = gs_free;
	*out = &st->parent;
	return 0;
}

int gitstream_new(git_stream **out, const char *host, const char *port)
{
	return gs_new(out, host, port);
}

int gitstream_register(void)
{
	static git_stream_registration reg = { GIT_STREAM_VERSION, gs_new, NULL };

	return git_stream_register(GIT_STREAM_STANDARD, &reg);
}
