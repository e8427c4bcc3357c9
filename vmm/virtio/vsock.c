#include "vmm/virtio/vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/ratelimit.h"
#include "vmm/virtio/vsock_proto.h"

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define VSOCK_NUM_QUEUES 3          /* rx, tx, event (a transport reset after a restore) */
#define VSOCK_EVENT_TRANSPORT_RESET 0   /* virtio 1.2, 5.10.6.7 */

#define VSOCK_KILLQ_SIZE 128        /* RSTs owed for packets that match no connection */
#define VSOCK_TIMEOUT_NS (2000ULL * 1000000ULL)  /* request, CONNECT line, shutdown */
#define VSOCK_BATCH 256             /* packets per queue pass before yielding the loop */
#define VSOCK_ACCEPT_BATCH 32
#define VSOCK_EP_BATCH 64
#define VSOCK_BACKLOG 128

enum vs_state {
	VS_FREE = 0,
	VS_LINE,         /* accepted host client; reading "CONNECT <port>\n" */
	VS_LOCAL_INIT,   /* host-initiated; REQUEST owed or sent, awaiting RESPONSE */
	VS_PEER_INIT,    /* guest-initiated; host socket connected, RESPONSE owed */
	VS_ESTABLISHED,
	VS_PEER_CLOSED,  /* the guest sent SHUTDOWN (flags in peer_shut) */
	VS_LOCAL_CLOSED, /* the host socket hit EOF; SHUTDOWN sent, awaiting RST */
	VS_KILLED,       /* host socket closed; RST owed, then the slot is freed */
};

/* Packets a connection owes the guest, produced in this order. */
enum {
	OWE_RST = 1,
	OWE_RESPONSE = 2,
	OWE_REQUEST = 4,
	OWE_RW = 8,              /* the host socket is readable */
	OWE_CREDIT_UPDATE = 16,  /* any packet carries it, so it goes last */
};

/* What an event on the private epoll set is about: kind in the top byte,
 * then the connection's slot, then its generation, so that an event for a
 * socket closed earlier in the same batch never reaches the slot's next
 * tenant. */
enum { EV_LISTEN = 1, EV_TIMER, EV_CONN };

struct vs_conn {
	enum vs_state state;
	int fd;                      /* host Unix socket, -1 once closed */
	uint32_t gen;
	uint32_t local_port;         /* host side */
	uint32_t peer_port;          /* guest side */
	unsigned owe;                /* OWE_* */
	uint32_t events;             /* epoll interest; 0 = not in the set */
	uint32_t peer_shut;          /* VSOCK_SHUTDOWN_* received */
	bool host_wr_shut;           /* shutdown(SHUT_WR) done after guest SEND shutdown */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t tx_cnt;             /* bytes sent to the guest */
	uint32_t fwd_cnt;            /* guest bytes written to the host socket */
	uint32_t last_fwd_cnt;       /* fwd_cnt as last told to the guest */
	uint64_t deadline_ns;        /* CLOCK_MONOTONIC; 0 = none */
	int rx_prev, rx_next;        /* place in the rx list, -1 at the ends */
	bool in_rx;
	/* Host-bound bytes the socket could not take yet: a ring of
	 * VSOCK_CONN_BUF bytes, allocated only while non-empty. The credit we
	 * advertise is exactly this space, so a guest that respects it never
	 * overflows it. */
	uint8_t *buf;
	uint32_t buf_head, buf_len;
	uint32_t line_len;
	char line[VSOCK_CONNECT_MAX];
};

struct vs_rst {
	uint32_t local_port, peer_port;
};

struct vsock_dev {
	struct virtio_dev *dev;      /* set by activate */
	bool active;                 /* activated and not reset */
	uint64_t guest_cid;
	char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t sock_dev;              /* the socket file we created, to unlink only it */
	ino_t sock_ino;
	bool bound;
	int listen_fd, ep_fd, timer_fd;
	bool listen_paused;          /* out of fds: not watching the listener */
	uint32_t last_host_port;
	uint32_t next_gen;
	int n_conns;
	int rx_head, rx_tail;        /* connections owing packets, FIFO */
	struct vs_rst killq[VSOCK_KILLQ_SIZE];
	unsigned kq_head, kq_len;
	uint64_t timer_at;           /* what the timer is armed for; 0 = disarmed */
	struct vs_conn conns[VSOCK_MAX_CONNS];
	struct virtq_chain chain;    /* 4 KiB: kept off the loop thread's stack */
	uint8_t scratch[VSOCK_MAX_PKT];
};

static uint64_t ev_tag(unsigned kind, unsigned slot, uint32_t gen)
{
	return (uint64_t)kind << 56 | (uint64_t)slot << 32 | gen;
}

static unsigned slot_of(const struct vsock_dev *v, const struct vs_conn *c)
{
	return (unsigned)(c - v->conns);
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Device-writable bytes [off, off + max) of the chain as an iovec; the
 * number of entries (at most VIRTQ_MAX_SIZE). */
static int chain_wiov(const struct virtq_chain *ch, uint32_t off, uint32_t max, struct iovec *iov)
{
	int n = 0;
	uint16_t i;

	for (i = 0; i < ch->n && max; i++) {
		const struct virtq_seg *s = &ch->seg[i];
		uint32_t len;

		if (!s->device_writes)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		len = min_u32(s->len - off, max);
		iov[n++] = (struct iovec){ .iov_base = s->addr + off, .iov_len = len };
		max -= len;
		off = 0;
	}
	return n;
}

/* Have the loop call queue_notify(q) again soon: the fairness valve of the
 * batch limits. False when there is no ioeventfd (no KVM, as in tests). */
static bool kick(struct virtio_dev *d, uint16_t q)
{
	uint64_t one = 1;

	return d->ioeventfd[q] >= 0 && write(d->ioeventfd[q], &one, sizeof(one)) == sizeof(one);
}

/* --- timer ------------------------------------------------------------ */

static void timer_arm(struct vsock_dev *v, uint64_t at_ns)
{
	struct itimerspec its = { 0 };

	/* it_value 0 disarms; an absolute time in the past fires at once. */
	its.it_value.tv_sec = (time_t)(at_ns / 1000000000ULL);
	its.it_value.tv_nsec = (long)(at_ns % 1000000000ULL);
	if (at_ns && !its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;
	if (timerfd_settime(v->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		vmm_debug("vsock: timerfd_settime: %s", strerror(errno));
	v->timer_at = at_ns;
}

static void conn_deadline(struct vsock_dev *v, struct vs_conn *c, uint64_t at_ns)
{
	c->deadline_ns = at_ns;
	if (!v->timer_at || at_ns < v->timer_at)
		timer_arm(v, at_ns);
}

/* --- connection table and rx list --------------------------------------- */

static void rx_unlink(struct vsock_dev *v, struct vs_conn *c)
{
	if (!c->in_rx)
		return;
	if (c->rx_prev >= 0)
		v->conns[c->rx_prev].rx_next = c->rx_next;
	else
		v->rx_head = c->rx_next;
	if (c->rx_next >= 0)
		v->conns[c->rx_next].rx_prev = c->rx_prev;
	else
		v->rx_tail = c->rx_prev;
	c->in_rx = false;
	c->rx_prev = c->rx_next = -1;
}

static void rx_enqueue(struct vsock_dev *v, struct vs_conn *c)
{
	int i = (int)slot_of(v, c);

	if (c->in_rx || !c->owe)
		return;
	c->in_rx = true;
	c->rx_next = -1;
	c->rx_prev = v->rx_tail;
	if (v->rx_tail >= 0)
		v->conns[v->rx_tail].rx_next = i;
	else
		v->rx_head = i;
	v->rx_tail = i;
}

static void killq_push(struct vsock_dev *v, uint32_t local_port, uint32_t peer_port)
{
	/* Full means a guest spraying stray packets; the ones it misses an
	 * RST for were nonsense anyway. */
	if (v->kq_len == VSOCK_KILLQ_SIZE) {
		vmm_debug("vsock: RST queue full, dropping RST to port %u", peer_port);
		return;
	}
	v->killq[(v->kq_head + v->kq_len) % VSOCK_KILLQ_SIZE] = (struct vs_rst){ local_port, peer_port };
	v->kq_len++;
}

static void listen_watch(struct vsock_dev *v, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = ev_tag(EV_LISTEN, 0, 0) };

	if (on == !v->listen_paused)
		return;
	if (epoll_ctl(v->ep_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, v->listen_fd, &ev) == 0)
		v->listen_paused = !on;
}

static struct vs_conn *conn_alloc(struct vsock_dev *v)
{
	int i;

	if (v->n_conns >= VSOCK_MAX_CONNS)
		return NULL;
	for (i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vs_conn *c = &v->conns[i];

		if (c->state != VS_FREE)
			continue;
		*c = (struct vs_conn){ .fd = -1, .gen = ++v->next_gen, .rx_prev = -1, .rx_next = -1 };
		v->n_conns++;
		return c;
	}
	return NULL;
}

/* Close the host side: out of the epoll set, socket and buffer gone. */
static void conn_close_host(struct vsock_dev *v, struct vs_conn *c)
{
	if (c->fd >= 0) {
		if (c->events)
			epoll_ctl(v->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->events = 0;
	free(c->buf);
	c->buf = NULL;
	c->buf_head = c->buf_len = 0;
}

static void conn_free(struct vsock_dev *v, struct vs_conn *c)
{
	rx_unlink(v, c);
	conn_close_host(v, c);
	*c = (struct vs_conn){ .state = VS_FREE, .fd = -1, .rx_prev = -1, .rx_next = -1 };
	v->n_conns--;
	/* A slot and an fd came free: accepting may work again. */
	if (v->listen_paused)
		listen_watch(v, true);
}

/* Tear the connection down with an RST to the guest; one the guest never
 * heard of just goes. */
static void conn_kill(struct vsock_dev *v, struct vs_conn *c)
{
	if (c->state == VS_LINE || (c->state == VS_LOCAL_INIT && (c->owe & OWE_REQUEST))) {
		conn_free(v, c);
		return;
	}
	conn_close_host(v, c);
	c->state = VS_KILLED;
	c->owe = OWE_RST;
	c->deadline_ns = 0;
	rx_enqueue(v, c);
}

static struct vs_conn *conn_find(struct vsock_dev *v, uint32_t local_port, uint32_t peer_port)
{
	int i, seen = 0;

	for (i = 0; i < VSOCK_MAX_CONNS && seen < v->n_conns; i++) {
		struct vs_conn *c = &v->conns[i];

		if (c->state == VS_FREE)
			continue;
		seen++;
		if (c->state != VS_LINE && c->local_port == local_port && c->peer_port == peer_port)
			return c;
	}
	return NULL;
}

static bool host_port_used(struct vsock_dev *v, uint32_t port)
{
	int i;

	for (i = 0; i < VSOCK_MAX_CONNS; i++)
		if (v->conns[i].state != VS_FREE && v->conns[i].state != VS_LINE &&
		    v->conns[i].local_port == port)
			return true;
	return false;
}

/* Next free host port; terminates since 2^30 ports outnumber the table. */
static uint32_t host_port_alloc(struct vsock_dev *v)
{
	do
		v->last_host_port = vsock_next_host_port(v->last_host_port);
	while (host_port_used(v, v->last_host_port));
	return v->last_host_port;
}

/* The epoll interest the connection's state calls for. */
static uint32_t conn_wanted(const struct vs_conn *c)
{
	uint32_t ev = 0;

	switch (c->state) {
	case VS_LINE:
		return EPOLLIN;
	case VS_ESTABLISHED:
	case VS_PEER_CLOSED:
		/* Not while a read is already owed (the data waits for an rx
		 * buffer; level-triggered IN would spin) nor without credit. */
		if (!(c->peer_shut & VSOCK_SHUTDOWN_RCV) && !(c->owe & OWE_RW) &&
		    vsock_peer_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt) > 0)
			ev |= EPOLLIN;
		/* fall through */
	case VS_LOCAL_CLOSED:
		if (c->buf_len)
			ev |= EPOLLOUT;
		break;
	default:
		break;
	}
	return ev;
}

/* Bring epoll interest and rx scheduling in line with the state. A socket
 * with no interest leaves the set: else a hang-up, which epoll always
 * reports, would spin the loop. */
static void conn_refresh(struct vsock_dev *v, struct vs_conn *c)
{
	uint32_t want = c->fd >= 0 ? conn_wanted(c) : 0;
	struct epoll_event ev = { .events = want, .data.u64 = ev_tag(EV_CONN, slot_of(v, c), c->gen) };

	if (c->state == VS_FREE)
		return;
	if (want != c->events) {
		int op = !c->events ? EPOLL_CTL_ADD : !want ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;

		if (epoll_ctl(v->ep_fd, op, c->fd, &ev) < 0) {
			vmm_debug("vsock: epoll_ctl: %s", strerror(errno));
			conn_kill(v, c);
			return;
		}
		c->events = want;
	}
	rx_enqueue(v, c);
}

/* --- host socket I/O ---------------------------------------------------- */

static int buf_append(struct vs_conn *c, const uint8_t *p, uint32_t n)
{
	uint32_t tail, first;

	/* Only a guest ignoring our credit gets here with too much. */
	if (n > VSOCK_CONN_BUF - c->buf_len)
		return -ENOBUFS;
	if (!c->buf) {
		c->buf = malloc(VSOCK_CONN_BUF);
		if (!c->buf)
			return -ENOMEM;
		c->buf_head = 0;
	}
	tail = (c->buf_head + c->buf_len) % VSOCK_CONN_BUF;
	first = min_u32(n, VSOCK_CONN_BUF - tail);
	memcpy(c->buf + tail, p, first);
	memcpy(c->buf, p + first, n - first);
	c->buf_len += n;
	return 0;
}

/* Write what the buffer holds; 0 (possibly with some left) or -errno. */
static int conn_flush(struct vs_conn *c)
{
	while (c->buf_len) {
		uint32_t chunk = min_u32(c->buf_len, VSOCK_CONN_BUF - c->buf_head);
		ssize_t n = send(c->fd, c->buf + c->buf_head, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->buf_head = (c->buf_head + (uint32_t)n) % VSOCK_CONN_BUF;
		c->buf_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (!c->buf_len) {
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	return 0;
}

/* Forward len payload bytes of a guest RW packet to the host socket,
 * buffering what it cannot take now. 0 or -errno. */
static int conn_send_host(struct vsock_dev *v, struct vs_conn *c, const struct virtq_chain *ch, uint32_t len)
{
	uint32_t done = 0;

	/* Copy once, so that what we write is what we checked; the guest may
	 * be rewriting the buffer. */
	len = virtq_chain_read(ch, VSOCK_HDR_SIZE, v->scratch, len);
	if (!c->buf_len) {
		/* Nothing queued, so no ordering to keep: try the socket. */
		ssize_t n;

		do
			n = send(c->fd, v->scratch, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		done = n > 0 ? (uint32_t)n : 0;
		c->fwd_cnt += done;
	}
	return done < len ? buf_append(c, v->scratch + done, len - done) : 0;
}

/* After a guest SHUTDOWN or a drained buffer: true when that finished the
 * connection (killed; c must not be used). */
static bool conn_after_shutdown(struct vsock_dev *v, struct vs_conn *c)
{
	const uint32_t both = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;

	if (c->state != VS_PEER_CLOSED)
		return false;
	if ((c->peer_shut & both) == both) {
		/* The guest waits for our RST; flush what it sent first, for
		 * at most the shutdown timeout. */
		if (!c->buf_len) {
			conn_kill(v, c);
			return true;
		}
		if (!c->deadline_ns)
			conn_deadline(v, c, mono_ns() + VSOCK_TIMEOUT_NS);
		return false;
	}
	/* Half-close: pass the guest's EOF on once its data is out. */
	if ((c->peer_shut & VSOCK_SHUTDOWN_SEND) && !c->buf_len && !c->host_wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	return false;
}

/* --- host events -------------------------------------------------------- */

static void vs_accept(struct vsock_dev *v)
{
	int i;

	for (i = 0; i < VSOCK_ACCEPT_BATCH; i++) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vs_conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* Out of fds: the client stays in the backlog and the
				 * listener stays readable; stop watching it until a
				 * connection goes, rather than spin. */
				vmm_warn("vsock: accept: %s", strerror(errno));
				listen_watch(v, false);
			}
			return;
		}
		c = conn_alloc(v);
		if (!c) {
			vmm_debug("vsock: %d connections, refusing a host client", VSOCK_MAX_CONNS);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = VS_LINE;
		conn_deadline(v, c, mono_ns() + VSOCK_TIMEOUT_NS);
		conn_refresh(v, c);
	}
}

/* Read the request line one byte at a time: nothing past '\n' may be
 * consumed, it is stream data for the guest. */
static void conn_read_line(struct vsock_dev *v, struct vs_conn *c)
{
	uint32_t port = 0;
	int r = 0;

	while (r == 0) {
		char ch;
		ssize_t n = read(c->fd, &ch, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_free(v, c);
			return;
		}
		c->line[c->line_len++] = ch;
		r = vsock_parse_connect(c->line, c->line_len, &port);
	}
	if (r < 0) {
		vmm_debug("vsock: bad CONNECT line from a host client");
		conn_free(v, c);
		return;
	}
	c->peer_port = port;
	c->local_port = host_port_alloc(v);
	c->state = VS_LOCAL_INIT;
	c->owe = OWE_REQUEST;
	c->deadline_ns = 0;  /* the request timeout starts when it is sent */
	conn_refresh(v, c);
}

static void conn_event(struct vsock_dev *v, struct vs_conn *c, uint32_t events)
{
	bool hup = events & (EPOLLHUP | EPOLLERR);

	if (c->state == VS_LINE) {
		conn_read_line(v, c);
		return;
	}
	if ((events & EPOLLOUT) || (hup && c->buf_len)) {
		if (conn_flush(c) < 0) {
			conn_kill(v, c);
			return;
		}
		if (conn_after_shutdown(v, c))
			return;
		if (vsock_credit_update_due(c->fwd_cnt, c->last_fwd_cnt))
			c->owe |= OWE_CREDIT_UPDATE;
	}
	if ((events & EPOLLIN) || (hup && (c->events & EPOLLIN))) {
		/* The read (and the EOF a hang-up ends in) happens when the
		 * guest has a buffer for it. */
		c->owe |= OWE_RW;
	} else if (hup) {
		/* Hung up while we were not reading: nothing can move any more. */
		conn_kill(v, c);
		return;
	}
	conn_refresh(v, c);
}

static void vs_timer(struct vsock_dev *v)
{
	uint64_t expirations, now = mono_ns(), next = 0;
	ssize_t r = read(v->timer_fd, &expirations, sizeof(expirations));
	int i;

	(void)r;  /* EAGAIN: spurious, the sweep below is harmless */
	v->timer_at = 0;
	for (i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vs_conn *c = &v->conns[i];

		if (c->state == VS_FREE || !c->deadline_ns)
			continue;
		if (c->deadline_ns > now) {
			if (!next || c->deadline_ns < next)
				next = c->deadline_ns;
			continue;
		}
		c->deadline_ns = 0;
		vmm_debug("vsock: connection %u -> %u timed out", c->local_port, c->peer_port);
		conn_kill(v, c);
	}
	timer_arm(v, next);
}

/* --- guest rx: packets to the guest ------------------------------------- */

/* The data (or EOF, or credit request) part of conn_rx: the op to send or
 * 0 for none, with h->len / h->flags set. */
static uint16_t conn_rx_data(struct vsock_dev *v, struct vs_conn *c, const struct virtq_chain *ch, struct vsock_hdr *h)
{
	struct iovec iov[VIRTQ_MAX_SIZE];
	uint32_t credit, max;
	ssize_t n;

	if ((c->state != VS_ESTABLISHED && c->state != VS_PEER_CLOSED) ||
	    (c->peer_shut & VSOCK_SHUTDOWN_RCV)) {
		c->owe &= ~OWE_RW;
		return 0;
	}
	credit = vsock_peer_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt);
	if (!credit) {
		/* Ask, and stop reading until the answer (conn_wanted). */
		c->owe &= ~OWE_RW;
		return VSOCK_OP_CREDIT_REQUEST;
	}
	max = min_u32(min_u32(credit, ch->writable - VSOCK_HDR_SIZE), VSOCK_MAX_PKT);
	if (!max)
		return VSOCK_OP_CREDIT_UPDATE;  /* a header-only buffer: use it up, read later */
	do
		n = readv(c->fd, iov, chain_wiov(ch, VSOCK_HDR_SIZE, max, iov));
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->owe &= ~OWE_RW;
		return 0;
	}
	if (n < 0) {
		vmm_debug("vsock: read from host socket: %s", strerror(errno));
		conn_close_host(v, c);
		c->state = VS_KILLED;
		c->owe = OWE_RST;
		return VSOCK_OP_RST;
	}
	if (n == 0) {
		/* The host closed: like Firecracker, a full shutdown (we can
		 * tell EOF from a half-close only by writing). */
		c->owe &= ~OWE_RW;
		c->state = VS_LOCAL_CLOSED;
		h->flags = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
		conn_deadline(v, c, mono_ns() + VSOCK_TIMEOUT_NS);
		return VSOCK_OP_SHUTDOWN;
	}
	/* More may be waiting: OWE_RW stays until a read would block. */
	h->len = (uint32_t)n;
	c->tx_cnt += (uint32_t)n;
	return VSOCK_OP_RW;
}

/* Build the next packet c owes into the chain (writable >= header); its
 * length, or 0 when c owed nothing after all. */
static uint32_t conn_rx(struct vsock_dev *v, struct vs_conn *c, const struct virtq_chain *ch)
{
	struct vsock_hdr h = {
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->guest_cid,
		.src_port = c->local_port,
		.dst_port = c->peer_port,
		.type = VSOCK_TYPE_STREAM,
		.buf_alloc = VSOCK_CONN_BUF,
	};
	uint8_t raw[VSOCK_HDR_SIZE];

	rx_unlink(v, c);
	if (c->owe & OWE_RST) {
		h.op = VSOCK_OP_RST;
	} else if (c->owe & OWE_RESPONSE) {
		c->owe &= ~OWE_RESPONSE;
		c->state = VS_ESTABLISHED;
		h.op = VSOCK_OP_RESPONSE;
	} else if (c->owe & OWE_REQUEST) {
		c->owe &= ~OWE_REQUEST;
		conn_deadline(v, c, mono_ns() + VSOCK_TIMEOUT_NS);
		h.op = VSOCK_OP_REQUEST;
	} else if (c->owe & OWE_RW) {
		h.op = conn_rx_data(v, c, ch, &h);
	}
	if (!h.op && (c->owe & OWE_CREDIT_UPDATE))
		h.op = VSOCK_OP_CREDIT_UPDATE;
	if (!h.op) {
		conn_refresh(v, c);
		return 0;
	}
	/* Every packet carries our fwd_cnt: a separate update is moot. */
	c->owe &= ~OWE_CREDIT_UPDATE;
	c->last_fwd_cnt = c->fwd_cnt;
	h.fwd_cnt = c->fwd_cnt;
	vsock_hdr_encode(raw, &h);
	virtq_chain_write(ch, 0, raw, sizeof(raw));
	if (h.op == VSOCK_OP_RST)
		conn_free(v, c);
	else
		conn_refresh(v, c);
	return VSOCK_HDR_SIZE + h.len;
}

static uint32_t killq_rx(struct vsock_dev *v, const struct virtq_chain *ch)
{
	struct vs_rst r = v->killq[v->kq_head];
	struct vsock_hdr h = {
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->guest_cid,
		.src_port = r.local_port,
		.dst_port = r.peer_port,
		.type = VSOCK_TYPE_STREAM,
		.op = VSOCK_OP_RST,
	};
	uint8_t raw[VSOCK_HDR_SIZE];

	v->kq_head = (v->kq_head + 1) % VSOCK_KILLQ_SIZE;
	v->kq_len--;
	vsock_hdr_encode(raw, &h);
	virtq_chain_write(ch, 0, raw, sizeof(raw));
	return VSOCK_HDR_SIZE;
}

/* Fill guest rx buffers with what the kill queue and the connections owe. */
static void vs_rx_fill(struct vsock_dev *v)
{
	struct virtio_dev *d = v->dev;
	struct virtq *q = &d->vq[RXQ];
	struct virtq_chain *ch = &v->chain;
	bool pushed = false;
	unsigned served;

	if (!q->ready || !virtio_live(d))
		return;
	for (served = 0; v->kq_len || v->rx_head >= 0; served++) {
		enum virtq_result r;
		uint32_t len = 0;

		if (served == VSOCK_BATCH) {
			(void)kick(d, RXQ); /* none without an ioeventfd: the next kick goes on */
			break;
		}
		r = virtq_pop(q, d->mem, ch);
		if (r == VIRTQ_EMPTY)
			break;  /* the guest's rx notify brings us back */
		if (r == VIRTQ_BROKEN) {
			virtio_needs_reset(d, "malformed rx ring");
			return;
		}
		if (ch->writable < VSOCK_HDR_SIZE) {
			/* Cannot hold a header: hand it back unused. */
		} else if (v->kq_len) {
			len = killq_rx(v, ch);
		} else {
			len = conn_rx(v, &v->conns[v->rx_head], ch);
			if (!len) {
				virtq_undo_pop(q);
				continue;
			}
		}
		if (!virtq_push(q, d->mem, ch->head, len)) {
			virtio_needs_reset(d, "rx used ring outside guest RAM");
			return;
		}
		pushed = true;
	}
	if (pushed)
		virtio_notify_used(d, RXQ);
}

/* --- guest tx: packets from the guest ----------------------------------- */

/* A guest connect to (host, P): connect to "<uds_path>_<P>"; RST if that
 * fails or the table is full. */
static void peer_request(struct vsock_dev *v, const struct vsock_hdr *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vs_conn *c;
	int fd = -1, n;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->uds_path, h->dst_port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || v->n_conns >= VSOCK_MAX_CONNS)
		goto refuse;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto refuse;
	/* A Unix connect completes at once or fails (EAGAIN: backlog full);
	 * it never goes EINPROGRESS. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto refuse;
	c = conn_alloc(v);
	if (!c)
		goto refuse;
	c->fd = fd;
	c->state = VS_PEER_INIT;
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->owe = OWE_RESPONSE;
	conn_refresh(v, c);
	return;

refuse:
	vmm_debug("vsock: guest connect to port %u refused", h->dst_port);
	if (fd >= 0)
		close(fd);
	killq_push(v, h->dst_port, h->src_port);
}

/* A packet for an existing connection. */
static void conn_tx(struct vsock_dev *v, struct vs_conn *c, const struct vsock_hdr *h, const struct virtq_chain *ch)
{
	char ok[24];
	int n;

	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VSOCK_OP_RW:
		if (c->state != VS_ESTABLISHED &&
		    !(c->state == VS_PEER_CLOSED && !(c->peer_shut & VSOCK_SHUTDOWN_SEND)))
			break;  /* nowhere to deliver it (as Firecracker: dropped) */
		if (!h->len)
			break;
		if (conn_send_host(v, c, ch, h->len) < 0) {
			conn_kill(v, c);
			return;
		}
		if (vsock_credit_update_due(c->fwd_cnt, c->last_fwd_cnt))
			c->owe |= OWE_CREDIT_UPDATE;
		break;
	case VSOCK_OP_RESPONSE:
		if (c->state != VS_LOCAL_INIT || (c->owe & OWE_REQUEST))
			break;
		c->state = VS_ESTABLISHED;
		c->deadline_ns = 0;
		/* A fresh socket takes a dozen bytes; if not, something is
		 * badly wrong with the client. */
		n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
		if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
			conn_kill(v, c);
			return;
		}
		break;
	case VSOCK_OP_SHUTDOWN:
		if (c->state != VS_ESTABLISHED && c->state != VS_PEER_CLOSED)
			break;
		c->state = VS_PEER_CLOSED;
		c->peer_shut |= h->flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		if (conn_after_shutdown(v, c))
			return;
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;  /* the credit fields, taken above, were the news */
	case VSOCK_OP_CREDIT_REQUEST:
		if (c->state == VS_ESTABLISHED || c->state == VS_PEER_CLOSED || c->state == VS_PEER_INIT)
			c->owe |= OWE_CREDIT_UPDATE;
		break;
	default:
		vmm_debug("vsock: dropping op %u for %u -> %u", h->op, h->src_port, h->dst_port);
		break;
	}
	conn_refresh(v, c);
}

static void tx_packet(struct vsock_dev *v, const struct virtq_chain *ch)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_hdr h;
	struct vs_conn *c;

	if (ch->readable < VSOCK_HDR_SIZE) {
		vmm_debug("vsock: tx chain too short for a header");
		return;
	}
	virtq_chain_read(ch, 0, raw, sizeof(raw));
	vsock_hdr_decode(&h, raw);
	/* Not from our guest, or not to us: nothing we route. */
	if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
		vmm_debug("vsock: dropping packet %llu -> %llu", (unsigned long long)h.src_cid,
			  (unsigned long long)h.dst_cid);
		return;
	}
	c = conn_find(v, h.dst_port, h.src_port);
	if (h.type != VSOCK_TYPE_STREAM || h.len > VSOCK_MAX_PKT ||
	    h.len > ch->readable - VSOCK_HDR_SIZE) {
		vmm_debug("vsock: bad packet (type %u, len %u) for %u -> %u", h.type, h.len,
			  h.src_port, h.dst_port);
		/* Never answer an RST with an RST: two such peers would ping-pong. */
		if (c && h.op == VSOCK_OP_RST)
			conn_free(v, c);
		else if (c)
			conn_kill(v, c);
		else if (h.op != VSOCK_OP_RST)
			killq_push(v, h.dst_port, h.src_port);
		return;
	}
	if (!c) {
		if (h.op == VSOCK_OP_REQUEST)
			peer_request(v, &h);
		else if (h.op != VSOCK_OP_RST)
			killq_push(v, h.dst_port, h.src_port);
		return;
	}
	if (h.op == VSOCK_OP_RST) {
		conn_free(v, c);
		return;
	}
	conn_tx(v, c, &h, ch);
}

static void vs_tx(struct vsock_dev *v)
{
	struct virtio_dev *d = v->dev;
	struct virtq *q = &d->vq[TXQ];
	struct virtq_chain *ch = &v->chain;
	bool pushed = false;
	unsigned served;

	for (served = 0;; served++) {
		enum virtq_result r;

		if (served == VSOCK_BATCH) {
			(void)kick(d, TXQ); /* none without an ioeventfd: the next kick goes on */
			break;
		}
		r = virtq_pop(q, d->mem, ch);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			virtio_needs_reset(d, "malformed tx ring");
			return;
		}
		tx_packet(v, ch);
		if (!virtq_push(q, d->mem, ch->head, 0)) {
			virtio_needs_reset(d, "tx used ring outside guest RAM");
			return;
		}
		pushed = true;
	}
	if (pushed)
		virtio_notify_used(d, TXQ);
	/* Replies (RESPONSE, RST, credit) may be owed now. */
	vs_rx_fill(v);
}

/* --- device ops ------------------------------------------------------- */

/* The private epoll set is readable: dispatch its events. */
static void vs_ep_event(void *arg, uint32_t events)
{
	struct vsock_dev *v = arg;
	struct virtio_dev *d = v->dev;
	struct epoll_event evs[VSOCK_EP_BATCH];
	int n, i;

	(void)events;
	pthread_mutex_lock(&d->lock);
	/* Reset may have won the lock while we waited for it. */
	if (!v->active || !virtio_live(d))
		goto out;
	n = epoll_wait(v->ep_fd, evs, VSOCK_EP_BATCH, 0);
	for (i = 0; i < n && v->active && virtio_live(d); i++) {
		uint64_t t = evs[i].data.u64;
		unsigned kind = (unsigned)(t >> 56), slot = (unsigned)(t >> 32) & 0xffff;
		struct vs_conn *c;

		switch (kind) {
		case EV_LISTEN:
			vs_accept(v);
			break;
		case EV_TIMER:
			vs_timer(v);
			break;
		case EV_CONN:
			if (slot >= VSOCK_MAX_CONNS)
				break;
			c = &v->conns[slot];
			if (c->state != VS_FREE && c->gen == (uint32_t)t)
				conn_event(v, c, evs[i].events);
			break;
		}
	}
	if (v->active)
		vs_rx_fill(v);
out:
	pthread_mutex_unlock(&d->lock);
}

static uint64_t vs_features(struct virtio_dev *d)
{
	(void)d;
	return 0;  /* stream only: no SEQPACKET */
}

static void vs_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct vsock_dev *v = d->priv;
	uint8_t cfg[8];
	unsigned i;

	for (i = 0; i < sizeof(cfg); i++)
		cfg[i] = (uint8_t)(v->guest_cid >> (8 * i));
	memset(data, 0, len);
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, min_u32(len, (uint32_t)sizeof(cfg) - off));
}

static int vs_activate(struct virtio_dev *d)
{
	struct vsock_dev *v = d->priv;
	int err;

	v->dev = d;
	err = ev_add(d->loop, v->ep_fd, EPOLLIN, vs_ep_event, v);
	if (err < 0)
		return err;
	v->active = true;
	return 0;
}

static void vs_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct vsock_dev *v = d->priv;

	if (!v->active)
		return;
	if (q == TXQ)
		vs_tx(v);
	else if (q == RXQ)
		vs_rx_fill(v);
	/* The event queue holds buffers for transport resets, sent by
	 * vs_restored only. */
}

/* Restored onto a new host: every connection the guest had is gone (none
 * were saved), so tell the driver to drop them all; it then re-reads the
 * CID, and listeners stay (virtio 1.2, 5.10.6.7). */
static void vs_restored(struct virtio_dev *d)
{
	struct vsock_dev *v = d->priv;
	struct virtq *q = &d->vq[EVQ];
	uint8_t ev[4] = { VSOCK_EVENT_TRANSPORT_RESET, 0, 0, 0 };
	enum virtq_result r;

	if (!q->ready)
		return;
	r = virtq_pop(q, d->mem, &v->chain);
	if (r == VIRTQ_BROKEN) {
		virtio_needs_reset(d, "malformed event ring");
		return;
	}
	if (r == VIRTQ_EMPTY || v->chain.writable < sizeof(ev)) {
		vmm_warn("virtio-vsock: no event buffer for the transport reset after restore");
		return;
	}
	virtq_chain_write(&v->chain, 0, ev, sizeof(ev));
	if (!virtq_push(q, d->mem, v->chain.head, sizeof(ev))) {
		virtio_needs_reset(d, "event used ring outside guest RAM");
		return;
	}
	virtio_notify_used(d, EVQ);
}

static void vs_reset(struct virtio_dev *d)
{
	struct vsock_dev *v = d->priv;
	int i;

	if (v->active)
		ev_del(d->loop, v->ep_fd);
	v->active = false;
	/* The guest's sockets are gone with its driver: close the host ends. */
	for (i = 0; i < VSOCK_MAX_CONNS; i++)
		if (v->conns[i].state != VS_FREE)
			conn_free(v, &v->conns[i]);
	v->rx_head = v->rx_tail = -1;
	v->kq_head = v->kq_len = 0;
	timer_arm(v, 0);
	listen_watch(v, true);
}

const struct virtio_dev_ops virtio_vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = VSOCK_NUM_QUEUES,
	.queue_max = VIRTIO_VSOCK_QUEUE_SIZE,
	.features = vs_features,
	.config_read = vs_config_read,
	.config_write = NULL,  /* the CID is read-only */
	.activate = vs_activate,
	.queue_notify = vs_queue_notify,
	.reset = vs_reset,
	.restored = vs_restored,
};

/* Remove a socket file left by a dead VMM; refuse a live one or anything
 * that is not a socket. 0 or -errno. */
static int clear_stale(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, err = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	strcpy(sa.sun_path, path);  /* length checked by the caller */
	/* Connected, or a full backlog (EAGAIN): somebody is listening. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN)
		err = -EADDRINUSE;
	else if (unlink(path) < 0 && errno != ENOENT)
		err = -errno;
	close(fd);
	return err;
}

/* Bind and listen on v->uds_path, and set up the private epoll set with
 * the listener and the timer in it. 0 or -errno. */
static int vs_listen(struct vsock_dev *v)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN };
	struct stat st;

	strcpy(sa.sun_path, v->uds_path);  /* length checked by the caller */
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->listen_fd < 0 || bind(v->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	v->bound = true;
	if (lstat(v->uds_path, &st) == 0) {
		v->sock_dev = st.st_dev;
		v->sock_ino = st.st_ino;
	}
	if (listen(v->listen_fd, VSOCK_BACKLOG) < 0)
		return -errno;
	v->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (v->ep_fd < 0)
		return -errno;
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (v->timer_fd < 0)
		return -errno;
	ev.data.u64 = ev_tag(EV_LISTEN, 0, 0);
	if (epoll_ctl(v->ep_fd, EPOLL_CTL_ADD, v->listen_fd, &ev) < 0)
		return -errno;
	ev.data.u64 = ev_tag(EV_TIMER, 0, 0);
	if (epoll_ctl(v->ep_fd, EPOLL_CTL_ADD, v->timer_fd, &ev) < 0)
		return -errno;
	return 0;
}

int virtio_vsock_open(void **priv, const struct vm_vsock_cfg *cfg)
{
	struct vsock_dev *v;
	int err, i;

	*priv = NULL;
	/* 0-2 are reserved or the host; UINT32_MAX is VMADDR_CID_ANY. */
	if (cfg->guest_cid < 3 || cfg->guest_cid == UINT32_MAX || !cfg->uds_path || !cfg->uds_path[0])
		return -EINVAL;
	if (strlen(cfg->uds_path) >= sizeof(v->uds_path))
		return -ENAMETOOLONG;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->listen_fd = v->ep_fd = v->timer_fd = -1;
	v->rx_head = v->rx_tail = -1;
	v->guest_cid = cfg->guest_cid;
	v->last_host_port = VSOCK_HOST_PORT_FIRST - 1;
	for (i = 0; i < VSOCK_MAX_CONNS; i++)
		v->conns[i] = (struct vs_conn){ .state = VS_FREE, .fd = -1, .rx_prev = -1, .rx_next = -1 };
	strcpy(v->uds_path, cfg->uds_path);

	err = clear_stale(v->uds_path);
	if (err == 0)
		err = vs_listen(v);
	if (err < 0)
		goto fail;
	*priv = v;
	return 0;

fail:
	virtio_vsock_close(v);
	return err;
}

const char *virtio_vsock_path(const void *priv)
{
	return ((const struct vsock_dev *)priv)->uds_path;
}

void virtio_vsock_close(void *priv)
{
	struct vsock_dev *v = priv;
	struct stat st;
	int i;

	if (!v)
		return;
	for (i = 0; i < VSOCK_MAX_CONNS; i++) {
		if (v->conns[i].fd >= 0)
			close(v->conns[i].fd);
		free(v->conns[i].buf);
	}
	if (v->ep_fd >= 0)
		close(v->ep_fd);
	if (v->timer_fd >= 0)
		close(v->timer_fd);
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	/* Only the file we made: another VMM may have taken the path since. */
	if (v->bound && lstat(v->uds_path, &st) == 0 && st.st_dev == v->sock_dev &&
	    st.st_ino == v->sock_ino)
		unlink(v->uds_path);
	free(v);
}
