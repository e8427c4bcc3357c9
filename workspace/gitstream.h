/* kiln's TCP stream for libgit2 (git://, http://, and the socket under
 * https:// and ssh://), registered in place of libgit2 1.5's own.
 *
 * Why: libgit2 1.5's socket has no timeout, so a server that stops sending
 * holds a fetch until TCP gives up; and it leaves Nagle and delayed ACKs on.
 * git daemon answers a negotiation in several small writes: the first goes
 * out, the rest wait under Nagle for an ACK that we delay by 40 ms, once per
 * round trip (44 of a 54 ms warm fetch on loopback). This stream sets
 * TCP_NODELAY (as curl does) and re-arms TCP_QUICKACK before each read, and
 * bounds connect, read and write by a per-thread deadline.
 *
 * libgit2 1.5's ssh transport reads the socket descriptor out of the stream
 * by assuming its own socket stream's layout; struct gitstream keeps that
 * layout first, and the descriptor stays in blocking mode for libssh2. */
#ifndef KILN_GITSTREAM_H
#define KILN_GITSTREAM_H

/* Register the stream with libgit2 (after git_libgit2_init). 0 or a libgit2
 * error code. */
int gitstream_register(void);

/* A new, unconnected stream to host:port (the TLS stream's socket). 0, or -1
 * with libgit2's error set. */
struct git_stream;
int gitstream_new(struct git_stream **out, const char *host, const char *port);

/* Bound every network wait of this thread's libgit2 calls until
 * gitstream_deadline_clear(): they fail with a message naming host, port and
 * limit_s once limit_s seconds (> 0) have passed from now. Without a deadline
 * a wait is bounded by GITSTREAM_IDLE_S of silence. */
void gitstream_deadline_set(unsigned limit_s);
void gitstream_deadline_clear(void);

#define GITSTREAM_IDLE_S 600

#endif
