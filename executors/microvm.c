/* The microvm backend: kiln-vmm with the agent on vsock. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "executors/executor.h"
#include "lib/paths.h"

#define GUEST_CID 3
#define AGENT_PORT 1024
/* Beyond guest RAM: kiln-vmm's queues, buffers and the page cache its
 * image reads are charged with. */
#define VMM_OVERHEAD_MIB 256
#define VMM_THREADS 4 /* the device thread, the loader, slack for glibc */

/* A disk's first bytes and requests go through at full speed (a one-time
 * burst that never refills): the boot and the checkout are not the load
 * the limit is for. */
#define DISK_BURST_BYTES (256L << 20)
#define DISK_BURST_OPS 20000L

/* Firecracker's token bucket for rate units/s: refill every 100 ms. The
 * bucket holds at least min_size so that a single frame or request never
 * waits on the oversized-request path. */
static json_t *bucket(long rate, long min_size, long burst)
{
	long size = rate / 10 < min_size ? min_size : rate / 10;
	long refill = (long)((double)size * 1000.0 / (double)rate);
	json_t *b = json_pack("{s:I, s:I}", "size", (json_int_t)size, "refill_time",
			      (json_int_t)(refill > 0 ? refill : 1));

	if (b && burst > 0)
		json_object_set_new(b, "one_time_burst", json_integer((json_int_t)burst));
	return b;
}

/* A network limiter of rate bytes/s. */
static json_t *limiter(long rate)
{
	return json_pack("{s:o}", "bandwidth", bucket(rate, 65536, 0));
}

/* A disk limiter of rate bytes/s and iops requests/s (either 0: none);
 * NULL when both are 0. */
static json_t *disk_limiter(long rate, long iops)
{
	json_t *l;

	if (rate <= 0 && iops <= 0)
		return NULL;
	l = json_object();
	if (l && rate > 0)
		json_object_set_new(l, "bandwidth", bucket(rate, 65536, DISK_BURST_BYTES));
	if (l && iops > 0)
		json_object_set_new(l, "ops", bucket(iops, 1, DISK_BURST_OPS));
	return l;
}

/* {id, path, cow} with the spec's disk limiter. */
static json_t *drive(const struct vm_spec *s, const char *id, const char *path, bool cow)
{
	json_t *d = json_pack("{s:s, s:s, s:b}", "id", id, "path", path, "cow", cow);
	json_t *l = disk_limiter(s->disk_rate_limit, s->disk_iops_limit);

	if (d && l)
		json_object_set_new(d, "rate_limiter", l);
	return d;
}

static enum kiln_rc microvm_prepare(struct executor *x, struct kiln_err *e)
{
	const struct vm_spec *s = &x->spec;
	const struct vm_view *v = &x->view;
	struct jail_limits lim = { (long long)(s->memory_mib + VMM_OVERHEAD_MIB) << 20, s->vcpus + 1,
				   s->vcpus + VMM_THREADS };
	char cmdline[2048], agent_sock[4200], uds[PATH_MAX];
	json_t *cfg, *drives, *net;
	enum kiln_rc rc;

	if ((rc = executor_jail(x, &lim, true, e)))
		return rc;
	if ((rc = executor_cmdline(s, "vsock", cmdline, sizeof(cmdline), e)))
		return rc;
	snprintf(x->vsock_path, sizeof(x->vsock_path), "%s/v.sock", x->host_dir);
	snprintf(uds, sizeof(uds), "%s/v.sock", v->dir);
	snprintf(x->config_path, sizeof(x->config_path), "%s/vm.json", s->run_dir);
	snprintf(agent_sock, sizeof(agent_sock), "%s_%d", x->vsock_path, AGENT_PORT);
	/* The guest's connection to CID 2 port 1024 arrives here. */
	if ((rc = executor_listen(x, agent_sock, e)))
		return rc;

	drives = json_array();
	json_array_append_new(drives, drive(s, "root", v->rootfs, true));
	if (v->workspace)
		json_array_append_new(drives, drive(s, "workspace", v->workspace, false));
	if (v->image)
		json_array_append_new(drives, drive(s, "image", v->image, true));
	net = json_array();
	if (s->tap) {
		json_t *n = json_pack("{s:s, s:s}", "id", "eth0", "tap", s->tap);
		/* Jailed, the tap comes open: kiln-vmm's netns has none. */
		if (v->tap_fd >= 0)
			json_object_set_new(n, "tap_fd", json_integer(v->tap_fd));
		if (s->rx_rate_limit > 0)
			json_object_set_new(n, "rx_rate_limiter", limiter(s->rx_rate_limit));
		if (s->tx_rate_limit > 0)
			json_object_set_new(n, "tx_rate_limiter", limiter(s->tx_rate_limit));
		json_array_append_new(net, n);
	}
	cfg = json_pack("{s:{s:s, s:s}, s:{s:i, s:i}, s:o, s:o, s:{s:i, s:s}, s:{s:s}, s:b}",
			"boot", "kernel", v->kernel, "cmdline", cmdline,
			"machine", "vcpus", s->vcpus, "mem_mib", s->memory_mib,
			"drives", drives, "net", net,
			"vsock", "guest_cid", GUEST_CID, "uds_path", uds,
			"serial", "output", v->console, "entropy", 1);
	if (!cfg)
		return kiln_fail(e, KILN_E_NOMEM, "building vm.json failed");
	if (v->initrd)
		json_object_set_new(json_object_get(cfg, "boot"), "initrd", json_string(v->initrd));
	if (s->snapshot_load || s->snapshot_save_to) {
		const char *dir = s->snapshot_load ? s->snapshot_load : s->snapshot_save_to;
		const char *seen = jail_expose(&x->jail, dir, "snapshot", s->snapshot_load ? JAIL_RO : JAIL_RW);

		if (!seen) {
			json_decref(cfg);
			return kiln_fail(e, KILN_E_LIMIT, "jail: too many files to expose");
		}
		json_object_set_new(cfg, "snapshot",
				    json_pack("{s:s}", s->snapshot_load ? "load" : "save_to", seen));
		/* A jailed kiln-vmm saves as its slot's uid. */
		if (s->snapshot_save_to && (rc = jail_give(&x->jail, s->snapshot_save_to, e))) {
			json_decref(cfg);
			return rc;
		}
	}
	if (json_dump_file(cfg, x->config_path, JSON_INDENT(1)) < 0) {
		json_decref(cfg);
		return kiln_fail_errno(e, "writing %s", x->config_path);
	}
	json_decref(cfg);
	/* The jailed kiln-vmm reads it from the jail's root. */
	if (!(x->view.config = jail_expose(&x->jail, x->config_path, "vm.json", JAIL_RO)))
		return kiln_fail(e, KILN_E_LIMIT, "jail: too many files to expose");
	return KILN_OK;
}

static enum kiln_rc microvm_start(struct executor *x, struct kiln_err *e)
{
	char *argv[] = { (char *)x->view.helper, "--config", (char *)x->view.config, NULL };

	/* SIGUSR1 asks kiln-vmm to rescan its drives; one sent while it is
	 * still starting must wait for its signalfd, not end it. */
	return executor_spawn(x, argv, SIGUSR1, e);
}

/* kiln-vmm takes each drive's new size on SIGUSR1 and raises the
 * configuration-change interrupt: Firecracker's drive rescan. */
static enum kiln_rc microvm_disks_changed(struct executor *x, struct kiln_err *e)
{
	if (x->pid <= 0 || kill(x->pid, SIGUSR1) < 0)
		return kiln_fail(e, KILN_E_EXEC, "kiln-vmm is not running: cannot hand it the workspace");
	return KILN_OK;
}

/* kiln-vmm, and a KVM that boots the stock kernels the images carry. */
static enum kiln_rc microvm_check(const struct host_facts *f, struct executor_choice *c, struct kiln_err *e)
{
	if (!f->vmm[0])
		return kiln_fail(e, KILN_E_NOTFOUND, "kiln-vmm not found in %s", kiln_libexec_dir());
	if (!hostfacts_stock_kernels(f))
		return kiln_fail(e, KILN_E_INVALID, "the microvm executor needs a KVM that boots stock kernels; "
						  "this host has %s (use --executor qemu)",
				 hostfacts_flavour_name(f->flavour));
	snprintf(c->helper, sizeof(c->helper), "%s", f->vmm);
	c->accel = "kvm";
	return KILN_OK;
}

const struct executor_ops executor_microvm = {
	.name = "microvm",
	.check = microvm_check,
	.limits_net = true,
	.prepare = microvm_prepare,
	.start = microvm_start,
	.disks_changed = microvm_disks_changed,
	.stream = executor_stream,
	.wait = executor_wait,
	.cancel = executor_cancel,
	.cleanup = executor_cleanup,
};
