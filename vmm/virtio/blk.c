#include "vmm/virtio/blk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "vmm/cow.h"
#include "vmm/log.h"
#include "vmm/ratelimit.h"

#define SECTOR_SIZE 512ULL
/* Requests served per kick before yielding to the rest of the loop. */
#define BLK_BATCH 256

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

_Static_assert(sizeof(struct blk_req_hdr) == 16, "request header layout");

struct blk {
	struct cow_disk disk;
	uint64_t capacity;                /* in 512-byte sectors */
	bool read_only;
	char id[VIRTIO_BLK_ID_BYTES];     /* NUL-padded, not terminated at 20 */
	struct rate_limiter rl;
	bool rl_ready;                    /* rl_init() succeeded */
	struct evloop *timer_loop;        /* where rl.timer_fd is watched, or NULL */
	struct virtq_chain chain;         /* the request being served: 4 KiB, kept off the stack */
};

/* What serving one chain came to. */
enum blk_outcome { BLK_DONE, BLK_THROTTLED, BLK_NO_STATUS };

static uint64_t blk_features(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	uint64_t f = 1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE;

	if (b->read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	return f;
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct blk *b = d->priv;
	/* struct virtio_blk_config up to blk_size (5.2.4); later fields are
	 * for features not offered and read as zero. */
	uint8_t cfg[24] = { 0 };
	uint32_t seg_max = VIRTIO_BLK_QUEUE_SIZE - 2;  /* chain = header + data... + status */
	uint32_t blk_size = SECTOR_SIZE;
	uint32_t i;

	memcpy(cfg + 0, &b->capacity, 8);
	memcpy(cfg + 12, &seg_max, 4);
	memcpy(cfg + 20, &blk_size, 4);
	for (i = 0; i < len; i++)
		((uint8_t *)data)[i] = (uint64_t)off + i < sizeof(cfg) ? cfg[off + i] : 0;
}

/* Move len bytes between the disk at off and one direction of the chain
 * (the writable part for IN, the readable part for OUT), starting skip
 * bytes into it. Guest buffers are used in place: no bounce copy. */
static bool blk_transfer(struct blk *b, const struct virtq_chain *c, bool in, uint32_t skip, uint32_t len,
			 uint64_t off)
{
	uint16_t i;

	for (i = 0; i < c->n && len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint32_t n;
		ssize_t r;

		if (s->device_writes != in)
			continue;
		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		n = s->len - skip < len ? s->len - skip : len;
		if (in)
			r = cow_pread(&b->disk, s->addr + skip, n, off);
		else
			r = cow_pwrite(&b->disk, s->addr + skip, n, off);
		if (r != (ssize_t)n)
			return false;
		off += n;
		len -= n;
		skip = 0;
	}
	return len == 0;
}

/* IN or OUT of len bytes at sector: the status, with checks on the guest's
 * numbers first (5.2.6.1: whole sectors, inside the capacity). */
static uint8_t blk_rw(struct blk *b, const struct virtq_chain *c, bool in, uint32_t skip, uint32_t len,
		      uint64_t sector)
{
	uint64_t off;

	if (!in && b->read_only)
		return VIRTIO_BLK_S_IOERR;
	if (len % SECTOR_SIZE || sector > b->capacity || len / SECTOR_SIZE > b->capacity - sector)
		return VIRTIO_BLK_S_IOERR;
	off = sector * SECTOR_SIZE;  /* cannot overflow: sector <= capacity */
	return blk_transfer(b, c, in, skip, len, off) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

/* Serve one chain: header in the first 16 readable bytes, status in the
 * last writable byte (5.2.6). *used_len gets the bytes written. */
static enum blk_outcome blk_serve(struct blk *b, const struct virtq_chain *c, uint32_t *used_len)
{
	struct blk_req_hdr h;
	uint8_t status;
	uint32_t data_len = 0, n;
	uint64_t bytes = 0;

	if (c->writable == 0)
		return BLK_NO_STATUS;
	*used_len = 1;
	if (c->readable < sizeof(h)) {
		status = VIRTIO_BLK_S_IOERR;
		goto out;
	}
	virtq_chain_read(c, 0, &h, sizeof(h));
	if (h.type == VIRTIO_BLK_T_IN)
		bytes = data_len = c->writable - 1;
	else if (h.type == VIRTIO_BLK_T_OUT)
		bytes = data_len = c->readable - sizeof(h);
	if (b->rl.enabled && !rl_consume(&b->rl, bytes, mono_ns()))
		return BLK_THROTTLED;

	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		status = blk_rw(b, c, true, 0, data_len, h.sector);
		if (status == VIRTIO_BLK_S_OK)
			*used_len = data_len + 1;
		break;
	case VIRTIO_BLK_T_OUT:
		status = blk_rw(b, c, false, sizeof(h), data_len, h.sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = cow_flush(&b->disk) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID:
		/* Up to 20 bytes, NUL-padded when shorter (5.2.6). */
		n = c->writable - 1 < VIRTIO_BLK_ID_BYTES ? c->writable - 1 : VIRTIO_BLK_ID_BYTES;
		virtq_chain_write(c, 0, b->id, n);
		*used_len = n + 1;
		status = VIRTIO_BLK_S_OK;
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
out:
	virtq_chain_write(c, c->writable - 1, &status, 1);
	return BLK_DONE;
}

/* Serve the request queue until it is empty, throttled or broken. */
static void blk_process(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	struct virtq *q = &d->vq[0];
	bool pushed = false;
	unsigned served;

	/* Blocked: the limiter's timer will resume us, retrying now would
	 * only re-arm it. */
	if (b->rl.enabled && b->rl.blocked)
		return;
	for (served = 0;; served++) {
		enum virtq_result r;
		uint32_t len = 0;

		/* A guest that keeps the ring full must not starve the other
		 * devices on this loop: kick ourselves and come back later.
		 * Without an ioeventfd (a restore's first pass, MMIO kicks)
		 * stop all the same: reads may land on the ring itself, which
		 * a hostile guest keeps full for ever; the next kick goes on. */
		if (served == BLK_BATCH) {
			uint64_t one = 1;

			if (d->ioeventfd[0] >= 0 && write(d->ioeventfd[0], &one, sizeof(one)) != sizeof(one))
				vmm_debug("virtio-blk: re-kick: %s", strerror(errno));
			break;
		}
		r = virtq_pop(q, d->mem, &b->chain);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			virtio_needs_reset(d, "malformed request ring");
			break;
		}
		switch (blk_serve(b, &b->chain, &len)) {
		case BLK_THROTTLED:
			virtq_undo_pop(q);
			goto out;
		case BLK_NO_STATUS:
			virtio_needs_reset(d, "request without a writable status byte");
			goto out;
		case BLK_DONE:
			break;
		}
		if (!virtq_push(q, d->mem, b->chain.head, len)) {
			virtio_needs_reset(d, "used ring outside guest RAM");
			goto out;
		}
		pushed = true;
	}
out:
	if (pushed)
		virtio_notify_used(d, 0);
}

static void blk_queue_notify(struct virtio_dev *d, uint16_t q)
{
	if (q == 0)
		blk_process(d);
}

/* The limiter's timer fired: requests may be paid again. */
static void blk_timer(void *arg, uint32_t events)
{
	struct virtio_dev *d = arg;
	struct blk *b = d->priv;

	(void)events;
	pthread_mutex_lock(&d->lock);
	rl_timer_event(&b->rl);
	if (virtio_live(d) && d->vq[0].ready)
		blk_process(d);
	pthread_mutex_unlock(&d->lock);
}

static int blk_activate(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	int err;

	if (!b->rl.enabled || b->timer_loop)
		return 0;
	if (!d->loop)
		return -EINVAL;
	/* Watched once for the device's lifetime, not per activation: the
	 * loop's table is not safe to change from this (vCPU) thread while
	 * it dispatches, and blk_timer ignores a device that is not live. */
	err = ev_add(d->loop, b->rl.timer_fd, EPOLLIN, blk_timer, d);
	if (err < 0)
		return err;
	b->timer_loop = d->loop;
	return 0;
}

static void blk_reset(struct virtio_dev *d)
{
	/* Requests complete synchronously, so nothing is in flight; the
	 * timer stays watched (see blk_activate) and finds the device idle. */
	(void)d;
}

static void blk_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct blk *b = d->priv;
	int rc;

	rl_save(&b->rl, w);
	snap_put_u64(w, b->capacity);
	if ((rc = cow_save(&b->disk, w)) < 0 && !w->err)
		w->err = rc;
}

static int blk_restore(struct virtio_dev *d, struct snap_reader *r)
{
	struct blk *b = d->priv;
	uint64_t capacity;
	int rc;

	if (!rl_restore(&b->rl, r, mono_ns()))
		return -EINVAL;
	capacity = snap_get_u64(r);
	if ((rc = cow_restore(&b->disk, r)) < 0)
		return rc;
	/* The guest's capacity, which a grown plain disk keeps until the
	 * next rescan raises the configuration change (cow_restore). */
	if (capacity != cow_size(&b->disk) / SECTOR_SIZE)
		return -EINVAL;
	b->capacity = capacity;
	return 0;
}

const struct virtio_dev_ops virtio_blk_ops = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max = VIRTIO_BLK_QUEUE_SIZE,
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = NULL,  /* nothing writable without CONFIG_WCE */
	.activate = blk_activate,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.save = blk_save,
	.restore = blk_restore,
};

int virtio_blk_open(void **priv, const struct vm_drive_cfg *cfg, const char *tmp_dir, uint64_t now_ns)
{
	struct blk *b;
	int err;

	*priv = NULL;
	if (!cfg->path)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->disk.base_fd = b->disk.overlay_fd = -1;
	b->rl.timer_fd = -1;
	if (!tmp_dir || !*tmp_dir)
		tmp_dir = getenv("TMPDIR");
	/* Not /tmp: that is often tmpfs, and overlays can grow large. */
	if (!tmp_dir || !*tmp_dir)
		tmp_dir = "/var/tmp";

	err = cow_open(&b->disk, cfg->path, cfg->cow, cfg->read_only, tmp_dir);
	if (err < 0)
		goto fail;
	cow_limit(&b->disk, cfg->cow_limit_mib << 20);
	err = rl_init(&b->rl, cfg->has_rate_limiter ? &cfg->rate_limiter : NULL, now_ns);
	if (err < 0)
		goto fail;
	b->rl_ready = true;
	b->read_only = cfg->read_only;
	b->capacity = cow_size(&b->disk) / SECTOR_SIZE;
	memcpy(b->id, cfg->id, strnlen(cfg->id, sizeof(b->id)));
	*priv = b;
	return 0;

fail:
	virtio_blk_close(b);
	return err;
}

int virtio_blk_rescan(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	int rc;

	pthread_mutex_lock(&d->lock);
	rc = cow_rescan(&b->disk);
	if (rc > 0) {
		/* Requests are checked against capacity, so a shrunk image
		 * cannot be read past its end either. */
		b->capacity = cow_size(&b->disk) / SECTOR_SIZE;
		virtio_config_changed(d);
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void virtio_blk_close(void *priv)
{
	struct blk *b = priv;

	if (!b)
		return;
	if (b->timer_loop)
		ev_del(b->timer_loop, b->rl.timer_fd);
	if (b->rl_ready)
		rl_close(&b->rl);
	cow_close(&b->disk);
	free(b);
}
