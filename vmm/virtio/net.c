#include "vmm/virtio/net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/ratelimit.h"

#define RXQ 0
#define TXQ 1

#define NET_BATCH 256            /* frames per pass before yielding the loop */
#define NET_MIN_FRAME (VIRTIO_NET_HDR_SIZE + 14)  /* header + Ethernet header */
#define NET_NUM_BUFFERS_OFF 10   /* num_buffers in virtio_net_hdr_v1 */

struct net_dev {
	struct virtio_dev *dev;      /* set by activate */
	bool active;                 /* activated and not reset */
	int tap_fd;
	bool tap_watched;            /* tap_fd is in dev->loop */
	uint32_t tap_events;         /* its interest there: EPOLLIN or 0 */
	bool tap_dead;               /* the tap went away: stop reading it */
	uint8_t mac[6];
	struct rate_limiter rx_rl, tx_rl;
	bool rx_timer_watched, tx_timer_watched;
	/* One received frame waiting for an rx buffer or for tokens. */
	bool rx_pending;
	bool rx_paid;                /* its tokens are taken */
	uint32_t rx_len;             /* header included */
	struct virtq_chain chain;    /* 4 KiB: kept off the loop thread's stack */
	/* +1: a read that fills it all was a frame too big to take. */
	uint8_t rx_frame[VIRTIO_NET_MAX_FRAME + 1];
};

static bool kick(struct virtio_dev *d, uint16_t q)
{
	uint64_t one = 1;

	return d->ioeventfd[q] >= 0 && write(d->ioeventfd[q], &one, sizeof(one)) == sizeof(one);
}

/* Driver-readable bytes [off, off + max) of the chain as an iovec; the
 * number of entries (at most VIRTQ_MAX_SIZE). */
static int chain_riov(const struct virtq_chain *ch, uint32_t off, uint32_t max, struct iovec *iov)
{
	int n = 0;
	uint16_t i;

	for (i = 0; i < ch->n && max; i++) {
		const struct virtq_seg *s = &ch->seg[i];
		uint32_t len;

		if (s->device_writes)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		len = s->len - off < max ? s->len - off : max;
		iov[n++] = (struct iovec){ .iov_base = s->addr + off, .iov_len = len };
		max -= len;
		off = 0;
	}
	return n;
}

/* Read interest on the tap follows the device: none while a frame waits
 * (level-triggered EPOLLIN would spin) or the device is not serving; a dead
 * tap leaves the loop altogether, as its EPOLLERR cannot be masked. */
static void tap_watch_update(struct net_dev *n)
{
	struct virtio_dev *d = n->dev;
	uint32_t want = n->rx_pending || !n->active || !virtio_live(d) ? 0 : EPOLLIN;

	if (!n->tap_watched)
		return;
	if (n->tap_dead) {
		ev_del(d->loop, n->tap_fd);
		n->tap_watched = false;
		return;
	}
	if (want != n->tap_events && ev_mod(d->loop, n->tap_fd, want) == 0)
		n->tap_events = want;
}

/* Take the next frame from the tap into rx_frame; false when there is
 * none (or the tap failed). Malformed frames are skipped. */
static bool tap_read_frame(struct net_dev *n)
{
	for (;;) {
		ssize_t r = read(n->tap_fd, n->rx_frame, sizeof(n->rx_frame));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				vmm_warn("net: reading the tap: %s; receive stopped", strerror(errno));
				n->tap_dead = true;
			}
			return false;
		}
		if (r < NET_MIN_FRAME || r > VIRTIO_NET_MAX_FRAME) {
			vmm_debug("net: dropping a %zd-byte frame from the tap", r);
			continue;
		}
		n->rx_len = (uint32_t)r;
		n->rx_pending = true;
		n->rx_paid = false;
		return true;
	}
}

/* Move frames from the tap into rx chains until one of them runs out, the
 * limiter throttles, or the batch is done. */
static void net_rx(struct net_dev *n)
{
	struct virtio_dev *d = n->dev;
	struct virtq *q = &d->vq[RXQ];
	bool pushed = false;
	unsigned frames;

	for (frames = 0; frames < NET_BATCH && q->ready && virtio_live(d); frames++) {
		enum virtq_result r;

		if (!n->rx_pending && (n->tap_dead || !tap_read_frame(n)))
			break;
		if (!n->rx_paid) {
			/* Throttled: the frame waits, the limiter's timer resumes us. */
			if (!rl_consume(&n->rx_rl, n->rx_len - VIRTIO_NET_HDR_SIZE, mono_ns()))
				break;
			n->rx_paid = true;
		}
		r = virtq_pop(q, d->mem, &n->chain);
		if (r == VIRTQ_EMPTY)
			break;  /* the guest's rx notify resumes us */
		if (r == VIRTQ_BROKEN) {
			virtio_needs_reset(d, "malformed rx ring");
			break;
		}
		n->rx_pending = false;
		if (n->chain.writable < n->rx_len) {
			/* Without MRG_RXBUF a frame must fit one chain: drop the
			 * frame and keep the buffer for the next one. */
			vmm_debug("net: %u-byte frame, %u-byte rx buffer: dropped", n->rx_len,
				  n->chain.writable);
			virtq_undo_pop(q);
			continue;
		}
		/* No offloads were negotiated: flags and GSO fields must be zero
		 * (the tap may mark frames DATA_VALID), num_buffers is 1. */
		memset(n->rx_frame, 0, VIRTIO_NET_HDR_SIZE);
		n->rx_frame[NET_NUM_BUFFERS_OFF] = 1;
		virtq_chain_write(&n->chain, 0, n->rx_frame, n->rx_len);
		if (!virtq_push(q, d->mem, n->chain.head, n->rx_len)) {
			virtio_needs_reset(d, "rx used ring outside guest RAM");
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_notify_used(d, RXQ);
	tap_watch_update(n);
}

/* Send what the guest queued, one frame per chain. */
static void net_tx(struct net_dev *n)
{
	static const uint8_t zero_hdr[VIRTIO_NET_HDR_SIZE];
	struct virtio_dev *d = n->dev;
	struct virtq *q = &d->vq[TXQ];
	struct iovec iov[1 + VIRTQ_MAX_SIZE];
	bool pushed = false;
	unsigned served;

	if (!q->ready)
		return;
	for (served = 0;; served++) {
		enum virtq_result r;
		uint32_t len;

		if (served == NET_BATCH) {
			(void)kick(d, TXQ); /* none without an ioeventfd: the next kick goes on */
			break;
		}
		r = virtq_pop(q, d->mem, &n->chain);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			virtio_needs_reset(d, "malformed tx ring");
			return;
		}
		len = n->chain.readable;
		if (len < NET_MIN_FRAME || len > VIRTIO_NET_MAX_FRAME) {
			vmm_debug("net: dropping a %u-byte tx chain", len);
		} else if (!rl_consume(&n->tx_rl, len - VIRTIO_NET_HDR_SIZE, mono_ns())) {
			/* Back in the ring; the limiter's timer resumes us. */
			virtq_undo_pop(q);
			break;
		} else {
			/* Our own zeroed header in place of the guest's: it cannot
			 * change under us, and no offload was negotiated. The frame
			 * itself goes straight from guest memory. */
			int niov = 1 + chain_riov(&n->chain, VIRTIO_NET_HDR_SIZE,
						  len - VIRTIO_NET_HDR_SIZE, iov + 1);
			ssize_t w;

			iov[0] = (struct iovec){ .iov_base = (void *)zero_hdr, .iov_len = sizeof(zero_hdr) };
			do
				w = writev(n->tap_fd, iov, niov);
			while (w < 0 && errno == EINTR);
			/* A full tap queue or a downed link drops the frame, as
			 * a NIC would. */
			if (w < 0)
				vmm_debug("net: tap write: %s", strerror(errno));
		}
		if (!virtq_push(q, d->mem, n->chain.head, 0)) {
			virtio_needs_reset(d, "tx used ring outside guest RAM");
			return;
		}
		pushed = true;
	}
	if (pushed)
		virtio_notify_used(d, TXQ);
}

/* --- event-loop callbacks: not under d->lock, so they take it --------- */

static void net_tap_event(void *arg, uint32_t events)
{
	struct net_dev *n = arg;

	pthread_mutex_lock(&n->dev->lock);
	if (events & (EPOLLERR | EPOLLHUP)) {
		/* The interface was deleted under us. */
		if (!n->tap_dead)
			vmm_warn("net: the tap went away; receive stopped");
		n->tap_dead = true;
	}
	if (n->active && virtio_live(n->dev) && !n->tap_dead)
		net_rx(n);
	tap_watch_update(n);
	pthread_mutex_unlock(&n->dev->lock);
}

static void net_rx_timer(void *arg, uint32_t events)
{
	struct net_dev *n = arg;

	(void)events;
	pthread_mutex_lock(&n->dev->lock);
	rl_timer_event(&n->rx_rl);
	if (n->active && virtio_live(n->dev))
		net_rx(n);
	pthread_mutex_unlock(&n->dev->lock);
}

static void net_tx_timer(void *arg, uint32_t events)
{
	struct net_dev *n = arg;

	(void)events;
	pthread_mutex_lock(&n->dev->lock);
	rl_timer_event(&n->tx_rl);
	if (n->active && virtio_live(n->dev))
		net_tx(n);
	pthread_mutex_unlock(&n->dev->lock);
}

/* --- device ops ------------------------------------------------------- */

static uint64_t net_features(struct virtio_dev *d)
{
	(void)d;
	return 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS;
}

static void net_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct net_dev *n = d->priv;
	uint8_t cfg[8];  /* mac[6], status (le16) */

	memcpy(cfg, n->mac, 6);
	cfg[6] = VIRTIO_NET_S_LINK_UP;
	cfg[7] = 0;
	memset(data, 0, len);
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, len < sizeof(cfg) - off ? len : sizeof(cfg) - off);
}

/* Undo what activate watched. */
static void net_unwatch(struct net_dev *n)
{
	struct evloop *loop = n->dev->loop;

	if (n->tap_watched)
		ev_del(loop, n->tap_fd);
	if (n->rx_timer_watched)
		ev_del(loop, n->rx_rl.timer_fd);
	if (n->tx_timer_watched)
		ev_del(loop, n->tx_rl.timer_fd);
	n->tap_watched = n->rx_timer_watched = n->tx_timer_watched = false;
}

static int net_activate(struct virtio_dev *d)
{
	struct net_dev *n = d->priv;
	int err = 0;

	n->dev = d;
	if (!n->tap_dead) {
		err = ev_add(d->loop, n->tap_fd, EPOLLIN, net_tap_event, n);
		if (err < 0)
			goto fail;
		n->tap_watched = true;
		n->tap_events = EPOLLIN;
	}
	/* An expired timer left unread across a reset is still readable, so
	 * a limiter blocked then unblocks as soon as it is watched again. */
	if (n->rx_rl.timer_fd >= 0) {
		err = ev_add(d->loop, n->rx_rl.timer_fd, EPOLLIN, net_rx_timer, n);
		if (err < 0)
			goto fail;
		n->rx_timer_watched = true;
	}
	if (n->tx_rl.timer_fd >= 0) {
		err = ev_add(d->loop, n->tx_rl.timer_fd, EPOLLIN, net_tx_timer, n);
		if (err < 0)
			goto fail;
		n->tx_timer_watched = true;
	}
	n->active = true;
	return 0;

fail:
	net_unwatch(n);
	return err;
}

static void net_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct net_dev *n = d->priv;

	if (!n->active)
		return;
	if (q == RXQ)
		net_rx(n);  /* new buffers: deliver the waiting frame, read again */
	else if (q == TXQ)
		net_tx(n);
}

static void net_reset(struct virtio_dev *d)
{
	struct net_dev *n = d->priv;

	if (n->dev)
		net_unwatch(n);
	n->active = false;
	n->rx_pending = false;
	n->rx_paid = false;
}

static void net_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct net_dev *n = d->priv;

	/* A frame waiting in the device is dropped, as on a wire. */
	rl_save(&n->rx_rl, w);
	rl_save(&n->tx_rl, w);
}

static int net_restore(struct virtio_dev *d, struct snap_reader *r)
{
	struct net_dev *n = d->priv;
	uint64_t now = mono_ns();

	return rl_restore(&n->rx_rl, r, now) && rl_restore(&n->tx_rl, r, now) ? 0 : -EINVAL;
}

const struct virtio_dev_ops virtio_net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max = VIRTIO_NET_QUEUE_SIZE,
	.features = net_features,
	.config_read = net_config_read,
	.config_write = NULL,  /* the MAC is read-only without CTRL_MAC_ADDR */
	.activate = net_activate,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.save = net_save,
	.restore = net_restore,
};

/* Attach n->tap_fd to the named tap. 0 or -errno. */
static int tap_open(struct net_dev *n, const char *name, int given_fd)
{
	struct ifreq ifr = { 0 };
	unsigned int features = 0;
	int hdr_size = VIRTIO_NET_HDR_SIZE;

	if (given_fd >= 0) {
		/* Attached by the jailer, whose netns this tap is in: it must be
		 * the tap named, with the flags we would have asked for. */
		n->tap_fd = given_fd;
		if (fcntl(given_fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(given_fd, F_SETFL, O_NONBLOCK) < 0 ||
		    ioctl(given_fd, TUNGETIFF, &ifr) < 0)
			return -errno;
		if (strcmp(ifr.ifr_name, name) || (ifr.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)) !=
							   (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
			return -EINVAL;
	} else {
		n->tap_fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (n->tap_fd < 0 || ioctl(n->tap_fd, TUNGETFEATURES, &features) < 0)
			return -errno;
		if (!(features & IFF_VNET_HDR))
			return -EOPNOTSUPP;
		strcpy(ifr.ifr_name, name);  /* length checked by the caller */
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
		if (ioctl(n->tap_fd, TUNSETIFF, &ifr) < 0)
			return -errno;
	}
	if (ioctl(n->tap_fd, TUNSETVNETHDRSZ, &hdr_size) < 0 ||
	    /* No offloads: the host hands us finished, checksummed frames,
	     * whatever an earlier user of a persistent tap had set. */
	    ioctl(n->tap_fd, TUNSETOFFLOAD, 0UL) < 0)
		return -errno;
	return 0;
}

/* The device over n->tap_fd, already open: MAC and rate limiters from
 * cfg. On failure n is freed (its fd closed). */
static int net_setup(void **priv, struct net_dev *n, const struct vm_net_cfg *cfg, uint64_t now_ns)
{
	int err;

	if (cfg->has_mac) {
		memcpy(n->mac, cfg->mac, sizeof(n->mac));
	} else {
		if (getrandom(n->mac, sizeof(n->mac), 0) != sizeof(n->mac)) {
			err = -EIO;
			goto fail;
		}
		/* Locally administered, unicast. */
		n->mac[0] = (uint8_t)((n->mac[0] & 0xfe) | 0x02);
	}
	err = rl_init(&n->rx_rl, cfg->has_rx_rate_limiter ? &cfg->rx_rate_limiter : NULL, now_ns);
	if (err == 0)
		err = rl_init(&n->tx_rl, cfg->has_tx_rate_limiter ? &cfg->tx_rate_limiter : NULL, now_ns);
	if (err < 0)
		goto fail;
	*priv = n;
	return 0;

fail:
	virtio_net_close(n);
	return err;
}

static struct net_dev *net_alloc(void)
{
	struct net_dev *n = calloc(1, sizeof(*n));

	if (n)
		n->tap_fd = n->rx_rl.timer_fd = n->tx_rl.timer_fd = -1;
	return n;
}

int virtio_net_open(void **priv, const struct vm_net_cfg *cfg, uint64_t now_ns)
{
	struct net_dev *n;
	int err;

	*priv = NULL;
	if (!cfg->tap || !cfg->tap[0] || strlen(cfg->tap) >= IFNAMSIZ)
		return -EINVAL;
	n = net_alloc();
	if (!n)
		return -ENOMEM;
	err = tap_open(n, cfg->tap, cfg->has_tap_fd ? cfg->tap_fd : -1);
	if (err < 0) {
		virtio_net_close(n);
		return err;
	}
	return net_setup(priv, n, cfg, now_ns);
}

int virtio_net_open_fd(void **priv, int fd, const struct vm_net_cfg *cfg, uint64_t now_ns)
{
	struct net_dev *n;

	*priv = NULL;
	n = net_alloc();
	if (!n) {
		close(fd);
		return -ENOMEM;
	}
	n->tap_fd = fd;
	return net_setup(priv, n, cfg, now_ns);
}

void virtio_net_close(void *priv)
{
	struct net_dev *n = priv;

	if (!n)
		return;
	rl_close(&n->rx_rl);
	rl_close(&n->tx_rl);
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	free(n);
}
