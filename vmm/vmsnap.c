#include "vmm/vmsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/sha256.h"
#include "vmm/log.h"
#include "vmm/virtio/mmio.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define GUEST_PAGE 4096
#define XSAVE_MAX (64u << 10)   /* far above any CPU's XSAVE area today */
#define GUEST_HUGE_PAGE (2u << 20)

static int fail(char *err, size_t errlen, int rc, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(-rc));
	return rc;
}

int vmsnap_host_probe(struct vm *vm, struct vmsnap_host *h, char *err, size_t errlen)
{
	struct {
		struct kvm_msr_list l;
		uint32_t idx[VMSNAP_MAX_MSRS];
	} ml = { .l.nmsrs = VMSNAP_MAX_MSRS };
	struct kvm_cpuid2 *cpuid = NULL;
	uint8_t *sig = NULL;
	size_t sig_len;
	int nent = 128, size, rc = 0;

	memset(h, 0, sizeof(*h));
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &ml) < 0)
		return fail(err, errlen, -errno, "KVM_GET_MSR_INDEX_LIST");
	h->n_msrs = ml.l.nmsrs < VMSNAP_MAX_MSRS ? ml.l.nmsrs : VMSNAP_MAX_MSRS;
	memcpy(h->msrs, ml.l.indices, h->n_msrs * sizeof(uint32_t));
	h->xsave_size = sizeof(struct kvm_xsave);
#ifdef KVM_CAP_XSAVE2
	size = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (size > 0 && (unsigned)size <= XSAVE_MAX && (unsigned)size >= sizeof(struct kvm_xsave)) {
		h->xsave_size = (uint32_t)size;
		h->xsave2 = true;
	}
#else
	(void)size;
#endif
	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid)
			return fail(err, errlen, -ENOMEM, "host CPUID");
		cpuid->nent = (uint32_t)nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		rc = -errno;
		free(cpuid);
		cpuid = NULL;
		if (rc != -E2BIG || nent > 4096)
			return fail(err, errlen, rc, "KVM_GET_SUPPORTED_CPUID");
		nent *= 2;
	}
	/* The signature: every CPUID leaf KVM offers and the XSAVE size,
	 * less what names the host CPU that ran this ioctl (its APIC IDs),
	 * which differs from call to call and never reaches the guest (vm.c
	 * sets the vCPU's own). */
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function == 1)
			e->ebx &= 0x00ffffffu;
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = 0;
		else if (e->function == 0x8000001e)
			e->eax = e->ebx = e->ecx = 0;
	}
	sig_len = cpuid->nent * sizeof(struct kvm_cpuid_entry2) + 4;
	if (!(sig = malloc(sig_len))) {
		rc = fail(err, errlen, -ENOMEM, "host CPUID");
		goto out;
	}
	memcpy(sig, cpuid->entries, sig_len - 4);
	memcpy(sig + sig_len - 4, &h->xsave_size, 4);
	sha256_buf(sig, sig_len, h->cpu);
	rc = 0;
out:
	free(sig);
	free(cpuid);
	return rc;
}

/* --- vCPUs --------------------------------------------------------------- */

struct msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[VMSNAP_MAX_MSRS];
};

/* Every MSR of the host's list that this vCPU gives back; KVM_GET_MSRS
 * stops at the first one it refuses, which is skipped. */
static int get_msrs(struct vcpu *c, const struct vmsnap_host *h, struct msr_buf *out)
{
	static struct msr_buf q; /* main thread only; 16 KiB off the stack */
	uint32_t start = 0, i;
	int got;

	out->hdr.nmsrs = 0;
	while (start < h->n_msrs) {
		q.hdr.nmsrs = h->n_msrs - start;
		for (i = 0; i < q.hdr.nmsrs; i++)
			q.e[i] = (struct kvm_msr_entry){ .index = h->msrs[start + i] };
		got = ioctl(c->fd, KVM_GET_MSRS, &q);
		if (got < 0)
			return -errno;
		memcpy(&out->e[out->hdr.nmsrs], q.e, (size_t)got * sizeof(q.e[0]));
		out->hdr.nmsrs += (uint32_t)got;
		start += (uint32_t)got + 1;
	}
	return 0;
}

static int save_vcpu(struct vcpu *c, const struct vmsnap_host *h, struct snap_writer *w)
{
	static struct msr_buf msrs;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	void *xsave = calloc(1, h->xsave_size);
	unsigned long xsave_req = KVM_GET_XSAVE;
	uint32_t i;
	int rc = 0;

	if (!xsave)
		return -ENOMEM;
#ifdef KVM_GET_XSAVE2
	if (h->xsave2)
		xsave_req = KVM_GET_XSAVE2;
#endif
	if (ioctl(c->fd, KVM_GET_MP_STATE, &mp) < 0 || ioctl(c->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0 || ioctl(c->fd, xsave_req, xsave) < 0 ||
	    ioctl(c->fd, KVM_GET_XCRS, &xcrs) < 0 || ioctl(c->fd, KVM_GET_DEBUGREGS, &dbg) < 0 ||
	    ioctl(c->fd, KVM_GET_LAPIC, &lapic) < 0 || ioctl(c->fd, KVM_GET_VCPU_EVENTS, &events) < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = get_msrs(c, h, &msrs)) < 0)
		goto out;
	snap_section(w, SNAP_SEC_VCPU, (uint32_t)c->index);
	snap_put_blob(w, &mp, sizeof(mp));
	snap_put_blob(w, &regs, sizeof(regs));
	snap_put_blob(w, &sregs, sizeof(sregs));
	snap_put_blob(w, xsave, h->xsave_size);
	snap_put_blob(w, &xcrs, sizeof(xcrs));
	snap_put_blob(w, &dbg, sizeof(dbg));
	snap_put_blob(w, &lapic, sizeof(lapic));
	snap_put_blob(w, &events, sizeof(events));
	snap_put_u32(w, msrs.hdr.nmsrs);
	for (i = 0; i < msrs.hdr.nmsrs; i++) {
		snap_put_u32(w, msrs.e[i].index);
		snap_put_u64(w, msrs.e[i].data);
	}
out:
	free(xsave);
	return rc;
}

static bool host_has_msr(const struct vmsnap_host *h, uint32_t index)
{
	uint32_t i;

	for (i = 0; i < h->n_msrs; i++)
		if (h->msrs[i] == index)
			return true;
	return false;
}

/* KVM_SET_MSRS stops at the first MSR it refuses: one the host lists and
 * gave back at the save but will not take (the CPU signature matched, so
 * this is KVM's own policy, e.g. a read-only one) is skipped and said,
 * and the rest are set. Returns how many were skipped, or -1 with errno. */
static int set_msrs(struct vcpu *c, struct msr_buf *m)
{
	static struct msr_buf q;
	uint32_t start = 0, n = m->hdr.nmsrs;
	int got, skipped = 0;

	while (start < n) {
		q.hdr.nmsrs = n - start;
		memcpy(q.e, &m->e[start], q.hdr.nmsrs * sizeof(q.e[0]));
		got = ioctl(c->fd, KVM_SET_MSRS, &q);
		if (got < 0)
			return -1;
		start += (uint32_t)got;
		if (start < n) {
			vmm_warn("vCPU %d: KVM_SET_MSRS refused MSR %#x (value %#llx); left as it was", c->index,
				 m->e[start].index, (unsigned long long)m->e[start].data);
			skipped++;
			start++;
		}
	}
	return skipped;
}

static int restore_vcpu(struct vcpu *c, const struct vmsnap_host *h, struct snap_reader *r, char *err,
			size_t errlen)
{
	static struct msr_buf msrs;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	void *xsave = calloc(1, h->xsave_size);
	uint64_t tsc = 0;
	uint32_t i, n;
	const char *what = NULL;
	int rc = 0, set;

	if (!xsave)
		return fail(err, errlen, -ENOMEM, "restoring a vCPU");
	snap_get_blob(r, &mp, sizeof(mp));
	snap_get_blob(r, &regs, sizeof(regs));
	snap_get_blob(r, &sregs, sizeof(sregs));
	snap_get_blob(r, xsave, h->xsave_size);
	snap_get_blob(r, &xcrs, sizeof(xcrs));
	snap_get_blob(r, &dbg, sizeof(dbg));
	snap_get_blob(r, &lapic, sizeof(lapic));
	snap_get_blob(r, &events, sizeof(events));
	n = snap_get_u32(r);
	if (n > h->n_msrs)
		r->bad = true;
	for (i = 0; i < n && !r->bad; i++) {
		msrs.e[i] = (struct kvm_msr_entry){ .index = snap_get_u32(r) };
		msrs.e[i].data = snap_get_u64(r);
		if (!host_has_msr(h, msrs.e[i].index)) {
			snprintf(err, errlen, "vCPU %d: MSR %#x is not one this host saves", c->index, msrs.e[i].index);
			rc = -EINVAL;
			goto out;
		}
		if (msrs.e[i].index == MSR_IA32_TSC)
			tsc = msrs.e[i].data;
	}
	if (!snap_rd_done(r)) {
		snprintf(err, errlen, "vCPU %d: truncated or overlong state", c->index);
		rc = -EINVAL;
		goto out;
	}
	/* A TSC deadline of 0 is a disarmed timer that the guest will arm
	 * again only from its own interrupt: arm it at once instead, as
	 * Firecracker does, or the restored guest's timer never fires. */
	for (i = 0; i < n; i++)
		if (msrs.e[i].index == MSR_IA32_TSC_DEADLINE && !msrs.e[i].data)
			msrs.e[i].data = tsc;
	msrs.hdr.nmsrs = n;
	/* The order Firecracker uses: LAPIC before the MSRs (the TSC deadline
	 * needs the LAPIC in deadline mode), events last. */
	if (ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0)
		what = "KVM_SET_MP_STATE";
	else if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0)
		what = "KVM_SET_REGS";
	else if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0)
		what = "KVM_SET_SREGS";
	else if (ioctl(c->fd, KVM_SET_XSAVE, xsave) < 0)
		what = "KVM_SET_XSAVE";
	else if (ioctl(c->fd, KVM_SET_XCRS, &xcrs) < 0)
		what = "KVM_SET_XCRS";
	else if (ioctl(c->fd, KVM_SET_DEBUGREGS, &dbg) < 0)
		what = "KVM_SET_DEBUGREGS";
	else if (ioctl(c->fd, KVM_SET_LAPIC, &lapic) < 0)
		what = "KVM_SET_LAPIC";
	else if ((set = set_msrs(c, &msrs)) < 0)
		what = "KVM_SET_MSRS";
	else if (ioctl(c->fd, KVM_SET_VCPU_EVENTS, &events) < 0)
		what = "KVM_SET_VCPU_EVENTS";
	if (what) {
		rc = -errno;
		snprintf(err, errlen, "vCPU %d: %s: %s", c->index, what, strerror(errno));
	}
out:
	free(xsave);
	return rc;
}

/* --- the VM, legacy devices ------------------------------------------------ */

static int save_vm(struct vm *vm, struct snap_writer *w)
{
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	int i;

	for (i = 0; i < 3; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = (uint32_t)i; /* PIC master, PIC slave, IOAPIC */
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip[i]) < 0)
			return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0 || ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return -errno;
	snap_section(w, SNAP_SEC_VM, 0);
	for (i = 0; i < 3; i++)
		snap_put_blob(w, &chip[i], sizeof(chip[i]));
	snap_put_blob(w, &pit, sizeof(pit));
	snap_put_blob(w, &clock, sizeof(clock));
	return 0;
}

static int restore_vm(struct vm *vm, struct snap_reader *r, char *err, size_t errlen)
{
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	const char *what = NULL;
	int i;

	for (i = 0; i < 3; i++)
		snap_get_blob(r, &chip[i], sizeof(chip[i]));
	snap_get_blob(r, &pit, sizeof(pit));
	snap_get_blob(r, &clock, sizeof(clock));
	if (!snap_rd_done(r) || chip[0].chip_id != 0 || chip[1].chip_id != 1 || chip[2].chip_id != 2) {
		snprintf(err, errlen, "VM state: truncated, overlong or out of order");
		return -EINVAL;
	}
	/* The clock goes on from the moment of the save; only the value is
	 * taken (SET_CLOCK refuses the flags GET_CLOCK reports). */
	memset(&clock.flags, 0, sizeof(clock) - offsetof(struct kvm_clock_data, flags));
	for (i = 0; i < 3 && !what; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0)
			what = "KVM_SET_IRQCHIP";
	if (!what && ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		what = "KVM_SET_PIT2";
	if (!what && ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		what = "KVM_SET_CLOCK";
	if (what) {
		snprintf(err, errlen, "VM state: %s: %s", what, strerror(errno));
		return -errno;
	}
	return 0;
}

static void save_serial(struct serial *s, struct snap_writer *w)
{
	uint8_t b[8];

	pthread_mutex_lock(&s->lock);
	b[0] = s->ier, b[1] = s->lcr, b[2] = s->mcr, b[3] = s->scr;
	b[4] = s->dll, b[5] = s->dlm, b[6] = s->fcr, b[7] = s->thre_pending;
	pthread_mutex_unlock(&s->lock);
	snap_section(w, SNAP_SEC_SERIAL, 0);
	snap_put_blob(w, b, sizeof(b));
}

static bool restore_serial(struct serial *s, struct snap_reader *r)
{
	uint8_t b[8];

	snap_get_blob(r, b, sizeof(b));
	if (!snap_rd_done(r) || b[7] > 1)
		return false;
	pthread_mutex_lock(&s->lock);
	s->ier = b[0], s->lcr = b[1], s->mcr = b[2], s->scr = b[3];
	s->dll = b[4], s->dlm = b[5], s->fcr = b[6], s->thre_pending = b[7];
	pthread_mutex_unlock(&s->lock);
	return true;
}

static void save_i8042(struct i8042 *k, struct snap_writer *w)
{
	pthread_mutex_lock(&k->lock);
	snap_section(w, SNAP_SEC_I8042, 0);
	snap_put_u32(w, k->cmd_byte);
	snap_put_u32(w, k->pending_cmd);
	snap_put_u32(w, k->out_head);
	snap_put_u32(w, k->out_len);
	snap_put_blob(w, k->outbuf, sizeof(k->outbuf));
	pthread_mutex_unlock(&k->lock);
}

static bool restore_i8042(struct i8042 *k, struct snap_reader *r)
{
	uint32_t cmd = snap_get_u32(r), pending = snap_get_u32(r), head = snap_get_u32(r), len = snap_get_u32(r);
	uint8_t out[sizeof(k->outbuf)];

	snap_get_blob(r, out, sizeof(out));
	if (!snap_rd_done(r) || cmd > 0xff || pending > 0xff || head >= sizeof(out) || len > sizeof(out))
		return false;
	pthread_mutex_lock(&k->lock);
	k->cmd_byte = (uint8_t)cmd;
	k->pending_cmd = (uint8_t)pending;
	k->out_head = head;
	k->out_len = len;
	memcpy(k->outbuf, out, sizeof(out));
	pthread_mutex_unlock(&k->lock);
	return true;
}

/* --- the whole machine ------------------------------------------------------ */

int vmsnap_save_state(struct vm *vm, const struct vmsnap_host *h, struct snap_writer *w, char *err, size_t errlen)
{
	int i, rc;

	if ((rc = save_vm(vm, w)) < 0)
		return fail(err, errlen, rc, "saving the VM's irqchip, PIT and clock");
	for (i = 0; i < vm->n_vcpus; i++) {
		if ((rc = save_vcpu(&vm->vcpus[i], h, w)) < 0) {
			snprintf(err, errlen, "saving vCPU %d: %s", i, strerror(-rc));
			return rc;
		}
	}
	save_serial(&vm->serial, w);
	save_i8042(&vm->kbd, w);
	for (i = 0; i < vm->n_virtio; i++) {
		snap_section(w, SNAP_SEC_VIRTIO, (uint32_t)i);
		virtio_mmio_save(&vm->virtio[i], w);
	}
	if (w->err)
		return fail(err, errlen, w->err, "saving device state");
	return 0;
}

int vmsnap_restore_state(struct vm *vm, const struct vmsnap_host *h, const struct snap_file *f, char *err,
			 size_t errlen)
{
	struct snap_reader r;
	char why[256];
	int i, rc;

	if (f->h.mem_bytes != vm->mem_bytes) {
		snprintf(err, errlen, "taken of a guest with %llu MiB, this one has %llu MiB",
			 (unsigned long long)(f->h.mem_bytes >> 20), (unsigned long long)(vm->mem_bytes >> 20));
		return -ESTALE;
	}
	if (!snap_find(f, SNAP_SEC_VM, 0, &r)) {
		snprintf(err, errlen, "no VM state section");
		return -EINVAL;
	}
	if ((rc = restore_vm(vm, &r, err, errlen)) < 0)
		return rc;
	for (i = 0; i < vm->n_vcpus; i++) {
		if (!snap_find(f, SNAP_SEC_VCPU, (uint32_t)i, &r)) {
			snprintf(err, errlen, "no state for vCPU %d", i);
			return -EINVAL;
		}
		if ((rc = restore_vcpu(&vm->vcpus[i], h, &r, err, errlen)) < 0)
			return rc;
	}
	if (!snap_find(f, SNAP_SEC_SERIAL, 0, &r) || !restore_serial(&vm->serial, &r)) {
		snprintf(err, errlen, "serial port state: missing or bad");
		return -EINVAL;
	}
	if (!snap_find(f, SNAP_SEC_I8042, 0, &r) || !restore_i8042(&vm->kbd, &r)) {
		snprintf(err, errlen, "i8042 state: missing or bad");
		return -EINVAL;
	}
	for (i = 0; i < vm->n_virtio; i++) {
		if (!snap_find(f, SNAP_SEC_VIRTIO, (uint32_t)i, &r)) {
			snprintf(err, errlen, "no state for virtio device %d", i);
			return -EINVAL;
		}
		if ((rc = virtio_mmio_restore(&vm->virtio[i], &r, why, sizeof(why))) < 0) {
			snprintf(err, errlen, "virtio device %d: %s", i, why);
			return rc;
		}
	}
	if (snap_find(f, SNAP_SEC_VIRTIO, (uint32_t)vm->n_virtio, &r)) {
		snprintf(err, errlen, "more virtio devices than this machine has");
		return -ESTALE;
	}
	return 0;
}

/* Guest RAM into fd, leaving all-zero pages as holes: the file is as
 * sparse as the guest's memory is unused, and such pages map as zero. */
static int write_memory(const struct vm *vm, int fd)
{
	const uint8_t *m = vm->mem.host;
	uint64_t off = 0, run = 0, total = vm->mem_bytes;

	if (ftruncate(fd, (off_t)total) < 0)
		return -errno;
	while (off < total) {
		const uint64_t *p = (const uint64_t *)(const void *)(m + off);
		bool zero = true;
		size_t i;

		for (i = 0; i < GUEST_PAGE / 8; i++) {
			if (p[i]) {
				zero = false;
				break;
			}
		}
		if (!zero) {
			run += GUEST_PAGE;
			off += GUEST_PAGE;
			if (off < total)
				continue;
		}
		/* Write the run of non-zero pages that ends here. */
		while (run) {
			uint64_t at = off - run;
			size_t chunk = run > (64u << 20) ? (64u << 20) : (size_t)run;
			ssize_t n = pwrite(fd, m + at, chunk, (off_t)at);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			run -= (uint64_t)n;
		}
		if (zero)
			off += GUEST_PAGE;
	}
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int write_file(int dirfd, const char *tmp, const char *name, const void *data, size_t len,
		      const struct vm *vm)
{
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = 0;
	const uint8_t *p = data;

	if (fd < 0)
		return -errno;
	if (vm) {
		rc = write_memory(vm, fd);
	} else {
		while (len && !rc) {
			ssize_t n = write(fd, p, len);

			if (n <= 0)
				rc = n < 0 ? -errno : -EIO;
			else
				p += n, len -= (size_t)n;
		}
		if (!rc && fdatasync(fd) < 0)
			rc = -errno;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name) < 0)
		rc = -errno;
	return rc;
}

int vmsnap_save(struct vm *vm, const struct vmsnap_host *h, int dirfd, const uint8_t machine[SNAP_DIGEST],
		char *err, size_t errlen)
{
	struct snap_writer w;
	struct snap_header hdr = { .version = SNAP_VERSION, .mem_bytes = vm->mem_bytes };
	int rc;

	memcpy(hdr.machine, machine, SNAP_DIGEST);
	memcpy(hdr.cpu, h->cpu, SNAP_DIGEST);
	snap_writer_init(&w);
	if ((rc = vmsnap_save_state(vm, h, &w, err, errlen)) < 0)
		goto out;
	if ((rc = snap_finish(&w, &hdr)) < 0) {
		fail(err, errlen, rc, rc == -E2BIG ? "the state is larger than the state file's ceiling" : "state");
		goto out;
	}
	/* Memory first: a "state" file present means its memory is too. */
	if ((rc = write_file(dirfd, SNAP_MEM_FILE ".tmp", SNAP_MEM_FILE, NULL, 0, vm)) < 0) {
		fail(err, errlen, rc, "writing " SNAP_MEM_FILE);
		goto out;
	}
	if ((rc = write_file(dirfd, SNAP_STATE_FILE ".tmp", SNAP_STATE_FILE, w.buf, w.len, NULL)) < 0)
		fail(err, errlen, rc, "writing " SNAP_STATE_FILE);
out:
	snap_writer_free(&w);
	return rc;
}

int vmsnap_load_file(const char *dir, const struct vmsnap_host *h, const uint8_t machine[SNAP_DIGEST],
		     uint8_t **buf, struct snap_file *f, char *err, size_t errlen)
{
	char path[4096], why[256];
	struct stat st;
	size_t got = 0;
	int fd, rc = 0;

	*buf = NULL;
	snprintf(path, sizeof(path), "%s/" SNAP_STATE_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SNAP_MAX_BYTES) {
		snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path, SNAP_MAX_BYTES);
		rc = -EINVAL;
		goto out;
	}
	if (!(*buf = malloc((size_t)st.st_size + 1))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);

		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if ((rc = snap_parse(f, *buf, got, machine, h->cpu, why, sizeof(why))) < 0)
		snprintf(err, errlen, "%s: %s", path, why);
out:
	close(fd);
	if (rc) {
		free(*buf);
		*buf = NULL;
	}
	return rc;
}

int vmsnap_copy_memory(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	char path[4096];
	struct stat st;
	off_t data, hole = 0;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/" SNAP_MEM_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != vm->mem_bytes) {
		snprintf(err, errlen, "%s: not a regular file of the guest's %llu bytes (truncated?)", path,
			 (unsigned long long)vm->mem_bytes);
		rc = -EINVAL;
		goto out;
	}
	/* Only the file's data: its holes are the guest's zero pages, and
	 * fresh anonymous memory reads as zeros already. */
	while ((data = lseek(fd, hole, SEEK_DATA)) >= 0) {
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > st.st_size)
			hole = st.st_size;
		while (data < hole) {
			ssize_t n = pread(fd, vm->mem.host + data, (size_t)(hole - data), data);

			if (n <= 0) {
				rc = n < 0 ? -errno : -EIO;
				snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "shorter than it was");
				goto out;
			}
			data += n;
		}
	}
	if (errno != ENXIO) {
		rc = -errno;
		snprintf(err, errlen, "%s: SEEK_DATA: %s", path, strerror(errno));
	}
out:
	close(fd);
	return rc;
}

/* Holes of the memory file shorter than this are mapped from the file with
 * the data around them: at most mem_bytes / MAP_MIN_HOLE_DIV + 1 file
 * mappings, far below vm.max_map_count (65530 by default). */
#define MAP_MIN_HOLE (64u << 10)
#define MAP_MIN_HOLE_DIV 4096u

/* Map [start, end) of fd over guest memory at base: private, so guest
 * writes never reach the file. */
static int map_extent(uintptr_t base, int fd, uint64_t start, uint64_t end)
{
	void *p = mmap((void *)(base + start), end - start, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)start);

	return p == MAP_FAILED ? -errno : 0;
}

int vmsnap_map_memory(struct vm *vm, const char *dir, uint64_t mem_bytes, char *err, size_t errlen)
{
	char path[4096];
	struct stat st;
	size_t span = mem_bytes + GUEST_HUGE_PAGE;
	uint64_t min_hole = mem_bytes / MAP_MIN_HOLE_DIV, s = 0, e = 0;
	uint8_t *raw = MAP_FAILED;
	uintptr_t base = 0;
	off_t data, hole = 0;
	int fd, rc = 0;

	if (min_hole < MAP_MIN_HOLE)
		min_hole = MAP_MIN_HOLE;
	snprintf(path, sizeof(path), "%s/" SNAP_MEM_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != mem_bytes) {
		snprintf(err, errlen, "%s: not a regular file of the guest's %llu bytes (truncated?)", path,
			 (unsigned long long)mem_bytes);
		rc = -EINVAL;
		goto out;
	}
	/* The same 2 MiB alignment as vm_map_memory. Anonymous memory
	 * first: the file's holes (the guest's zero pages) stay anonymous, so
	 * a page the guest first writes there costs one page. Mapped from
	 * the file, it would cost two: the file's page, which a fault in a
	 * hole allocates (on tmpfs, where it cannot be reclaimed, in the VM's
	 * cgroup), and the private copy; a guest filling its page cache then
	 * ran into its cgroup's limit. */
	raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		rc = fail(err, errlen, -errno, "reserving guest memory");
		goto out;
	}
	base = ((uintptr_t)raw + GUEST_HUGE_PAGE - 1) & ~(uintptr_t)(GUEST_HUGE_PAGE - 1);
	if (mmap((void *)base, mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
		 -1, 0) == MAP_FAILED) {
		rc = fail(err, errlen, -errno, "reserving guest memory");
		goto out;
	}
	/* Then the file's data extents over it, page-aligned, the short holes
	 * between them included. */
	while ((data = lseek(fd, hole, SEEK_DATA)) >= 0) {
		uint64_t d = (uint64_t)data & ~(uint64_t)(GUEST_PAGE - 1), h;

		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > st.st_size)
			hole = st.st_size;
		h = ((uint64_t)hole + GUEST_PAGE - 1) & ~(uint64_t)(GUEST_PAGE - 1);
		if (h > mem_bytes)
			h = mem_bytes;
		if (e > s && d <= e + min_hole) {
			e = h;
		} else {
			if (e > s && (rc = map_extent(base, fd, s, e)) < 0) {
				fail(err, errlen, rc, "mapping the memory file");
				goto out;
			}
			s = d;
			e = h;
		}
		if (hole >= st.st_size)
			break;
	}
	if (data < 0 && errno != ENXIO) {
		rc = fail(err, errlen, -errno, "SEEK_DATA in the memory file");
		goto out;
	}
	if (e > s && (rc = map_extent(base, fd, s, e)) < 0) {
		fail(err, errlen, rc, "mapping the memory file");
		goto out;
	}
	if (base > (uintptr_t)raw)
		munmap(raw, base - (uintptr_t)raw);
	if ((uintptr_t)raw + span > base + mem_bytes)
		munmap((void *)(base + mem_bytes), (uintptr_t)raw + span - (base + mem_bytes));
	raw = MAP_FAILED;
	vm->mem_bytes = mem_bytes;
	gm_layout(&vm->mem, mem_bytes);
	vm->mem.host = (uint8_t *)base;
	madvise(vm->mem.host, mem_bytes, MADV_DONTDUMP);
out:
	if (raw != MAP_FAILED)
		munmap(raw, span);
	close(fd);
	return rc;
}
