#include "vmm/virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/log.h"

/* Status bits the driver may set; NEEDS_RESET belongs to the device. */
#define DRIVER_STATUS_BITS \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

/* A guest that breaks its rings over and over must not flood the log. */
#define NEEDS_RESET_WARNINGS 16

static void raise_irq(struct virtio_dev *d, uint32_t why)
{
	uint64_t one = 1;

	d->isr |= why;
	/* EAGAIN means the counter is saturated: already pending. */
	if (d->irqfd >= 0 && write(d->irqfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vmm_debug("virtio-%s: irqfd write: %s", d->ops->name, strerror(errno));
}

void virtio_notify_used(struct virtio_dev *d, uint16_t q)
{
	if (q >= d->ops->num_queues)
		return;
	if (virtq_should_notify(&d->vq[q], d->mem))
		raise_irq(d, VIRTIO_INT_USED);
}

void virtio_needs_reset(struct virtio_dev *d, const char *why)
{
	static unsigned warned;
	unsigned n;

	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	n = __atomic_fetch_add(&warned, 1, __ATOMIC_RELAXED);
	if (n < NEEDS_RESET_WARNINGS)
		vmm_warn("virtio-%s at %#llx: %s; device needs reset%s", d->ops->name,
			 (unsigned long long)d->mmio_base, why,
			 n + 1 == NEEDS_RESET_WARNINGS ? " (further such warnings suppressed)" : "");
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* 2.1.2: the driver learns about it through a config change
	 * notification, which only makes sense once it is running. */
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(d, VIRTIO_INT_CONFIG);
}

void virtio_config_changed(struct virtio_dev *d)
{
	d->config_generation++;
	/* Not before DRIVER_OK: until the guest has set up its interrupt
	 * controllers, a legacy GSI can reach the CPU through the 8259 that a
	 * hardware-reduced ACPI kernel never programs, as an exception vector
	 * (seen: a rescan early in boot rebooted the guest). A driver that
	 * read the old config before DRIVER_OK hears of it then (start). */
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(d, VIRTIO_INT_CONFIG);
	else
		d->config_pending = true;
}

static uint64_t offered_features(struct virtio_dev *d)
{
	uint64_t f = d->ops->features ? d->ops->features(d) : 0;

	return f | (1ULL << VIRTIO_F_VERSION_1);
}

static void reset_dev(struct virtio_dev *d)
{
	if (d->ops->reset)
		d->ops->reset(d);
	d->status = 0;
	d->isr = 0;
	d->config_pending = false;
	d->device_features_sel = 0;
	d->driver_features_sel = 0;
	d->driver_features = 0;
	d->queue_sel = 0;
	memset(d->vq, 0, sizeof(d->vq));
	/* config_generation keeps counting: a driver comparing it across a
	 * reset must not see a stale value come back. */
}

/* A ready queue the device may serve: programmed within bounds. */
static bool queue_ok(struct virtio_dev *d, unsigned q)
{
	return d->vq[q].size <= d->ops->queue_max && virtq_valid(&d->vq[q], d->mem);
}

/* The driver set DRIVER_OK: check what it programmed, then start. */
static void start(struct virtio_dev *d)
{
	unsigned q;
	int err;

	if (!(d->status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_needs_reset(d, "DRIVER_OK without FEATURES_OK");
		return;
	}
	for (q = 0; q < d->ops->num_queues; q++) {
		if (d->vq[q].ready && !queue_ok(d, q)) {
			virtio_needs_reset(d, "queue set up outside guest RAM or with a bad size");
			return;
		}
	}
	err = d->ops->activate ? d->ops->activate(d) : 0;
	if (err < 0) {
		virtio_needs_reset(d, "activation failed");
		return;
	}
	if (d->config_pending) {
		d->config_pending = false;
		raise_irq(d, VIRTIO_INT_CONFIG);
	}
}

static void write_status(struct virtio_dev *d, uint32_t val)
{
	uint32_t set;

	if (val == 0) {
		reset_dev(d);
		return;
	}
	/* The driver only ever adds bits until it resets (3.1.1). */
	set = val & DRIVER_STATUS_BITS & ~d->status;
	if (set & VIRTIO_STATUS_FEATURES_OK) {
		uint64_t f = d->driver_features;

		/* Refused by leaving the bit clear; the driver reads it back
		 * and gives up (3.1.1 step 6). */
		if ((f & ~offered_features(d)) || !(f & (1ULL << VIRTIO_F_VERSION_1)))
			set &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	d->status |= set;
	if (set & VIRTIO_STATUS_DRIVER_OK)
		start(d);
}

static void write_queue_ready(struct virtio_dev *d, struct virtq *q, uint32_t val)
{
	if (!(val & 1)) {
		q->ready = false;
		return;
	}
	if (q->ready)
		return;
	/* A freshly enabled ring starts from index 0 on both sides. */
	q->ready = true;
	q->last_avail = 0;
	q->used_idx = 0;
	/* Enabled after DRIVER_OK: check it now, as start() would have. */
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !queue_ok(d, (unsigned)(q - d->vq)))
		virtio_needs_reset(d, "queue set up outside guest RAM or with a bad size");
}

static void set_lo(uint64_t *v, uint32_t lo) { *v = (*v & ~0xffffffffULL) | lo; }
static void set_hi(uint64_t *v, uint32_t hi) { *v = (*v & 0xffffffffULL) | (uint64_t)hi << 32; }

static void notify(struct virtio_dev *d, uint32_t q)
{
	if (q < d->ops->num_queues && d->vq[q].ready && virtio_live(d) && d->ops->queue_notify)
		d->ops->queue_notify(d, (uint16_t)q);
}

static uint32_t reg_read(struct virtio_dev *d, uint64_t off)
{
	bool has_q = d->queue_sel < d->ops->num_queues;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION_REG:
		return VIRTIO_MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (d->device_features_sel > 1)
			return 0;
		return (uint32_t)(offered_features(d) >> (32 * d->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		/* 0 tells the driver the queue does not exist. */
		return has_q ? d->ops->queue_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return has_q ? d->vq[d->queue_sel].ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return d->isr;
	case VIRTIO_MMIO_STATUS:
		return d->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_generation;
	default:
		return 0;  /* write-only or reserved */
	}
}

static void reg_write(struct virtio_dev *d, uint64_t off, uint32_t val)
{
	struct virtq *q = d->queue_sel < d->ops->num_queues ? &d->vq[d->queue_sel] : NULL;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->device_features_sel = val;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		/* Frozen once negotiated (3.1.1). */
		if (d->status & VIRTIO_STATUS_FEATURES_OK)
			return;
		if (d->driver_features_sel == 0)
			set_lo(&d->driver_features, val);
		else if (d->driver_features_sel == 1)
			set_hi(&d->driver_features, val);
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->driver_features_sel = val;
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = val;
		return;
	case VIRTIO_MMIO_QUEUE_READY:
		if (q)
			write_queue_ready(d, q, val);
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		notify(d, val);
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		d->isr &= ~val;
		return;
	case VIRTIO_MMIO_STATUS:
		write_status(d, val);
		return;
	}

	/* The rest programs the selected queue, allowed only while it is
	 * not ready (4.2.2.2). */
	if (!q || q->ready)
		return;
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		/* Out of range becomes 0, which never validates. */
		q->size = val <= d->ops->queue_max ? (uint16_t)val : 0;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		set_lo(&q->desc_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		set_hi(&q->desc_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
		set_lo(&q->avail_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		set_hi(&q->avail_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
		set_lo(&q->used_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		set_hi(&q->used_gpa, val);
		break;
	}
}

void virtio_mmio_access(struct virtio_dev *d, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	if (len == 0 || len > 8)
		return;
	if (!is_write)
		memset(data, 0, len);
	if (offset >= VIRTIO_MMIO_SIZE)
		return;

	pthread_mutex_lock(&d->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint32_t off = (uint32_t)(offset - VIRTIO_MMIO_CONFIG);

		if (len != 1 && len != 2 && len != 4 && len != 8)
			goto out;
		if (is_write && d->ops->config_write)
			d->ops->config_write(d, off, data, len);
		else if (!is_write && d->ops->config_read)
			d->ops->config_read(d, off, data, len);
	} else if (len == 4) {
		uint32_t v;

		if (is_write) {
			memcpy(&v, data, 4);
			reg_write(d, offset, v);
		} else {
			v = reg_read(d, offset);
			memcpy(data, &v, 4);
		}
	}
out:
	pthread_mutex_unlock(&d->lock);
}

int virtio_mmio_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		     const struct guest_mem *mem, struct evloop *loop, uint64_t base, uint32_t gsi)
{
	int i, err;

	memset(d, 0, sizeof(*d));
	d->irqfd = -1;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->ioeventfd[i] = -1;
	if (ops->num_queues > VIRTIO_MAX_QUEUES || ops->queue_max > VIRTQ_MAX_SIZE)
		return -EINVAL;
	d->ops = ops;
	d->priv = priv;
	d->mem = mem;
	d->loop = loop;
	d->mmio_base = base;
	d->gsi = gsi;
	err = pthread_mutex_init(&d->lock, NULL);
	return -err;
}

/* A kick on queue q's ioeventfd, on the event-loop thread. */
static void ioevent(struct virtio_dev *d, uint16_t q)
{
	uint64_t n;

	/* Drain before serving: a kick that lands after this read makes the
	 * fd readable again, so none is lost. EAGAIN is a spurious wakeup,
	 * and serving an empty queue costs little. */
	if (read(d->ioeventfd[q], &n, sizeof(n)) < 0 && errno != EAGAIN)
		vmm_debug("virtio-%s: ioeventfd read: %s", d->ops->name, strerror(errno));
	pthread_mutex_lock(&d->lock);
	notify(d, q);
	pthread_mutex_unlock(&d->lock);
}

/* The loop passes one pointer, so the queue index lives in the function. */
static void ioevent0(void *arg, uint32_t ev) { (void)ev; ioevent(arg, 0); }
static void ioevent1(void *arg, uint32_t ev) { (void)ev; ioevent(arg, 1); }
static void ioevent2(void *arg, uint32_t ev) { (void)ev; ioevent(arg, 2); }
static void ioevent3(void *arg, uint32_t ev) { (void)ev; ioevent(arg, 3); }

_Static_assert(VIRTIO_MAX_QUEUES == 4, "one ioevent callback per queue");
static const ev_fn ioevent_fns[VIRTIO_MAX_QUEUES] = { ioevent0, ioevent1, ioevent2, ioevent3 };

static int ioeventfd_ctl(struct virtio_dev *d, int vm_fd, unsigned q, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = q,
		.addr = d->mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY,
		.len = 4,
		.fd = d->ioeventfd[q],
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int virtio_mmio_attach_kvm(struct virtio_dev *d, int vm_fd)
{
	struct kvm_irqfd irq = { .gsi = d->gsi };
	bool irq_assigned = false, assigned[VIRTIO_MAX_QUEUES] = { false };
	bool watched[VIRTIO_MAX_QUEUES] = { false };
	unsigned q;
	int err;

	if (!d->loop)
		return -EINVAL;
	d->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irqfd < 0) {
		err = -errno;
		goto fail;
	}
	irq.fd = (uint32_t)d->irqfd;
	if (ioctl(vm_fd, KVM_IRQFD, &irq) < 0) {
		err = -errno;
		goto fail;
	}
	irq_assigned = true;

	for (q = 0; q < d->ops->num_queues; q++) {
		d->ioeventfd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->ioeventfd[q] < 0) {
			err = -errno;
			goto fail;
		}
		err = ioeventfd_ctl(d, vm_fd, q, true);
		if (err < 0)
			goto fail;
		assigned[q] = true;
		err = ev_add(d->loop, d->ioeventfd[q], EPOLLIN, ioevent_fns[q], d);
		if (err < 0)
			goto fail;
		watched[q] = true;
	}
	return 0;

fail:
	for (q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (watched[q])
			ev_del(d->loop, d->ioeventfd[q]);
		if (assigned[q])
			ioeventfd_ctl(d, vm_fd, q, false);
		if (d->ioeventfd[q] >= 0)
			close(d->ioeventfd[q]);
		d->ioeventfd[q] = -1;
	}
	if (irq_assigned) {
		irq.flags = KVM_IRQFD_FLAG_DEASSIGN;
		ioctl(vm_fd, KVM_IRQFD, &irq);
	}
	if (d->irqfd >= 0)
		close(d->irqfd);
	d->irqfd = -1;
	return err;
}

void virtio_mmio_detach(struct virtio_dev *d)
{
	int q;

	pthread_mutex_lock(&d->lock);
	reset_dev(d);
	pthread_mutex_unlock(&d->lock);
	for (q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (d->ioeventfd[q] < 0)
			continue;
		if (d->loop)
			ev_del(d->loop, d->ioeventfd[q]);
		close(d->ioeventfd[q]);
		d->ioeventfd[q] = -1;
	}
	if (d->irqfd >= 0)
		close(d->irqfd);
	d->irqfd = -1;
	pthread_mutex_destroy(&d->lock);
}

/* Bumped whenever the layout below changes (and SNAP_VERSION with it). */
#define TRANSPORT_STATE_QUEUES VIRTIO_MAX_QUEUES

void virtio_mmio_save(struct virtio_dev *d, struct snap_writer *w)
{
	unsigned q;

	pthread_mutex_lock(&d->lock);
	snap_put_u32(w, d->ops->device_id);
	snap_put_u32(w, d->status);
	snap_put_u32(w, d->isr);
	snap_put_u32(w, d->device_features_sel);
	snap_put_u32(w, d->driver_features_sel);
	snap_put_u64(w, d->driver_features);
	snap_put_u32(w, d->queue_sel);
	snap_put_u32(w, d->config_generation);
	snap_put_u32(w, d->config_pending);
	snap_put_u32(w, TRANSPORT_STATE_QUEUES);
	for (q = 0; q < TRANSPORT_STATE_QUEUES; q++) {
		const struct virtq *vq = &d->vq[q];

		snap_put_u32(w, vq->size);
		snap_put_u32(w, vq->ready);
		snap_put_u64(w, vq->desc_gpa);
		snap_put_u64(w, vq->avail_gpa);
		snap_put_u64(w, vq->used_gpa);
		snap_put_u32(w, vq->last_avail);
		snap_put_u32(w, vq->used_idx);
	}
	if (d->ops->save)
		d->ops->save(d, w);
	pthread_mutex_unlock(&d->lock);
}

int virtio_mmio_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen)
{
	const char *why = NULL;
	uint32_t id, v, nq;
	unsigned q;
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	id = snap_get_u32(r);
	d->status = snap_get_u32(r);
	d->isr = snap_get_u32(r) & (VIRTIO_INT_USED | VIRTIO_INT_CONFIG);
	d->device_features_sel = snap_get_u32(r);
	d->driver_features_sel = snap_get_u32(r);
	d->driver_features = snap_get_u64(r);
	d->queue_sel = snap_get_u32(r);
	d->config_generation = snap_get_u32(r);
	d->config_pending = snap_get_u32(r) != 0;
	nq = snap_get_u32(r);
	if (id != d->ops->device_id) {
		why = "another kind of device in this slot";
		goto out;
	}
	if (nq != TRANSPORT_STATE_QUEUES || (d->status & ~(DRIVER_STATUS_BITS | VIRTIO_STATUS_NEEDS_RESET))) {
		why = "bad transport state";
		goto out;
	}
	if (d->driver_features & ~offered_features(d)) {
		why = "features this device does not offer";
		goto out;
	}
	for (q = 0; q < TRANSPORT_STATE_QUEUES; q++) {
		struct virtq *vq = &d->vq[q];

		v = snap_get_u32(r);
		vq->size = (uint16_t)v;
		vq->ready = snap_get_u32(r) != 0;
		vq->desc_gpa = snap_get_u64(r);
		vq->avail_gpa = snap_get_u64(r);
		vq->used_gpa = snap_get_u64(r);
		vq->last_avail = (uint16_t)snap_get_u32(r);
		vq->used_idx = (uint16_t)snap_get_u32(r);
		if (v > d->ops->queue_max || (vq->ready && q >= d->ops->num_queues)) {
			why = "a queue larger than the device's or one it does not have";
			goto out;
		}
	}
	if (d->ops->restore && !r->bad && (rc = d->ops->restore(d, r)) < 0) {
		why = "bad device state";
		goto out;
	}
	if (!snap_rd_done(r)) {
		why = "truncated or overlong state";
		goto out;
	}
	if (virtio_live(d)) {
		for (q = 0; q < d->ops->num_queues; q++) {
			if (d->vq[q].ready && !queue_ok(d, q)) {
				why = "a live queue outside guest RAM or with a bad size";
				goto out;
			}
		}
		rc = d->ops->activate ? d->ops->activate(d) : 0;
		if (rc < 0) {
			snprintf(err, errlen, "virtio-%s: activating: %s", d->ops->name, strerror(-rc));
			goto out_unlock;
		}
		if (d->ops->restored)
			d->ops->restored(d);
		/* A kick the guest made just before the save may have sat in an
		 * ioeventfd the saving loop never read; the guest will not kick
		 * again for a request it already posted, so serve every live
		 * queue once (a request served twice cannot happen: last_avail
		 * was saved with the ring). */
		for (q = 0; q < d->ops->num_queues; q++) {
			uint16_t before = d->vq[q].last_avail;

			notify(d, q);
			if (d->vq[q].last_avail != before)
				vmm_log("virtio-%s: queue %u: served %u request(s) posted before the save", d->ops->name,
					q, (unsigned)(uint16_t)(d->vq[q].last_avail - before));
		}
	}
out:
	if (why) {
		snprintf(err, errlen, "virtio-%s: %s", d->ops->name, why);
		rc = -EINVAL;
		/* Leave nothing half-restored behind: the caller gives up. */
	}
out_unlock:
	pthread_mutex_unlock(&d->lock);
	return rc < 0 ? rc : 0;
}
