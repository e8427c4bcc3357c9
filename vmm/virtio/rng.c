#include "vmm/virtio/rng.h"

#include <errno.h>
#include <sys/random.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"

/* Chains served per kick before yielding to the rest of the loop. */
#define RNG_BATCH 256

/* Fill up to len bytes of one segment; the bytes filled. Never blocks: an
 * unseeded pool (EAGAIN) just gives a short answer the driver can retry. */
static uint32_t fill(uint8_t *p, uint32_t len)
{
	uint32_t done = 0;

	while (done < len) {
		ssize_t n = getrandom(p + done, len - done, GRND_NONBLOCK);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (uint32_t)n;
	}
	return done;
}

/* Fill the chain's writable part from its start, at most
 * VIRTIO_RNG_MAX_CHAIN bytes; the bytes filled (contiguous). */
static uint32_t fill_chain(const struct virtq_chain *c)
{
	uint32_t total = 0;
	uint16_t i;

	for (i = 0; i < c->n && total < VIRTIO_RNG_MAX_CHAIN; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint32_t want, got;

		if (!s->device_writes)
			continue;
		want = s->len < VIRTIO_RNG_MAX_CHAIN - total ? s->len : VIRTIO_RNG_MAX_CHAIN - total;
		got = fill(s->addr, want);
		total += got;
		if (got < want)
			break;  /* the used length must cover only filled bytes */
	}
	return total;
}

static void rng_queue_notify(struct virtio_dev *d, uint16_t qi)
{
	struct virtq *q = &d->vq[0];
	struct virtq_chain c;  /* 4 KiB, on the event-loop thread's stack */
	bool pushed = false;
	unsigned served;

	if (qi != 0)
		return;
	for (served = 0;; served++) {
		enum virtq_result r;

		/* Don't let one guest starve the loop: kick ourselves and
		 * come back after the other watches had their turn. Without
		 * an ioeventfd (a restore's first pass, MMIO kicks) stop all
		 * the same: the filled buffers may be the ring itself, which
		 * a hostile guest keeps full for ever; the next kick goes on. */
		if (served == RNG_BATCH) {
			uint64_t one = 1;

			if (d->ioeventfd[0] >= 0 && write(d->ioeventfd[0], &one, sizeof(one)) != sizeof(one))
				vmm_debug("virtio-rng: re-kick: %s", strerror(errno));
			break;
		}
		r = virtq_pop(q, d->mem, &c);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			virtio_needs_reset(d, "malformed request ring");
			break;
		}
		if (!virtq_push(q, d->mem, c.head, fill_chain(&c))) {
			virtio_needs_reset(d, "used ring outside guest RAM");
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_notify_used(d, 0);
}

const struct virtio_dev_ops virtio_rng_ops = {
	.name = "rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max = VIRTIO_RNG_QUEUE_SIZE,
	/* No feature bits, no config space, nothing to start or stop: the
	 * transport treats the NULL ops as "nothing to do". */
	.features = NULL,
	.config_read = NULL,
	.config_write = NULL,
	.activate = NULL,
	.reset = NULL,
	.queue_notify = rng_queue_notify,
};

int virtio_rng_open(void **priv)
{
	*priv = NULL;
	return 0;
}

void virtio_rng_close(void *priv)
{
	(void)priv;
}
