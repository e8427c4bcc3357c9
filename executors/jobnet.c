#include "executors/jobnet.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/paths.h"
#include "lib/spawn.h"

#define SLOT_PREFIX "slot-"
#define RESOLV_CONF "/etc/resolv.conf"
/* systemd-resolved's upstream servers, for a host whose resolv.conf names
 * only its stub on 127.0.0.53 (which the guest cannot reach). */
#define RESOLVED_CONF "/run/systemd/resolve/resolv.conf"
#define IP_FORWARD "/proc/sys/net/ipv4/ip_forward"
/* Output kept from a helper program for error messages. */
#define CMD_OUT_MAX 1024
/* A setup's nft script: the base (about 2.5 KiB) and up to 2 x
 * KILN_MAX_NETWORKS rules of the job's policy (under 80 bytes each). */
#define JOBNET_SCRIPT_MAX 16384

/* The burst of a limit of rate bytes/s: a tenth of a second's worth, at
 * least 64 KiB so that one (offloaded) frame always fits. */
static long limit_burst(long rate)
{
	return rate / 10 < 65536 ? 65536 : rate / 10;
}

static bool valid_job_id(const char *id)
{
	size_t i;

	for (i = 0; id[i]; i++) {
		unsigned char c = (unsigned char)id[i];

		if (i >= JOBNET_JOB_ID_MAX || !(isalnum(c) || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return i > 0;
}

/* --- helper programs ------------------------------------------------------ */

/* Run argv with input (may be NULL: /dev/null) on stdin; its stdout and
 * stderr together are kept for the error message (the first CMD_OUT_MAX-1
 * bytes). Succeeds when it exits 0; otherwise e names the command, its
 * status and the first line it printed. */
static enum kiln_rc run_cmd(char *const argv[], const char *input, struct kiln_err *e)
{
	char out[CMD_OUT_MAX];
	struct kiln_spawn_io io = { .input = input, .input_len = input ? strlen(input) : 0,
				    .err = out, .err_size = sizeof(out), .merge = true };

	return kiln_spawn_io(argv, &io, e);
}

/* Write value into a /proc/sys file. */
static enum kiln_rc write_sysctl(const char *path, const char *value, struct kiln_err *e)
{
	size_t len = strlen(value);
	enum kiln_rc rc = KILN_OK;
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return kiln_fail_errno(e, "sysctl %s", path);
	if (write(fd, value, len) != (ssize_t)len)
		rc = kiln_fail_errno(e, "sysctl %s: writing %s", path, value);
	close(fd);
	return rc;
}

/* IPv4 forwarding on, unless it already is. */
static enum kiln_rc enable_forwarding(struct kiln_err *e)
{
	char v = '0';
	int fd = open(IP_FORWARD, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, &v, 1) != 1)
			v = '0';
		close(fd);
	}
	return v == '1' ? KILN_OK : write_sysctl(IP_FORWARD, "1", e);
}

/* --- links ------------------------------------------------------------------ */

static enum kiln_rc tap_create(const char *name, struct kiln_err *e)
{
	struct ifreq ifr;
	enum kiln_rc rc = KILN_OK;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return kiln_fail_errno(e, "tap %s: opening /dev/net/tun", name);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		rc = kiln_fail_errno(e, "tap %s: TUNSETIFF", name);
		goto out;
	}
	/* Outlives this fd, so that the VMM can attach to it by name. */
	if (ioctl(fd, TUNSETPERSIST, 1UL) < 0)
		rc = kiln_fail_errno(e, "tap %s: TUNSETPERSIST", name);
out:
	close(fd);
	return rc;
}

/* Test mode: a veth pair, its far end eth0 in the namespace netns. */
static enum kiln_rc veth_create(const char *name, const char *netns, struct kiln_err *e)
{
	char *argv[] = { "ip", "link", "add", (char *)name, "type", "veth", "peer", "name", "eth0",
			 "netns", (char *)netns, NULL };

	return run_cmd(argv, NULL, e);
}

static enum kiln_rc link_delete(const char *name, struct kiln_err *e)
{
	char *argv[] = { "ip", "link", "del", "dev", (char *)name, NULL };

	if (if_nametoindex(name) == 0)
		return KILN_OK;
	return run_cmd(argv, NULL, e);
}

static enum kiln_rc link_configure(const struct jobnet *n, struct kiln_err *e)
{
	char addr[32], path[128];
	char *add[] = { "ip", "addr", "add", addr, "dev", (char *)n->tap, NULL };
	char *up[] = { "ip", "link", "set", "dev", (char *)n->tap, "up", NULL };
	struct kiln_err ignored;
	enum kiln_rc rc;

	/* The job network is IPv4 only: no link-local address for the host
	 * side (best effort: IPv6 may be off altogether). */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", n->tap);
	if (access(path, F_OK) == 0 && write_sysctl(path, "1", &ignored) != KILN_OK)
		log_debug("%s", ignored.msg);
	snprintf(addr, sizeof(addr), "%s/%d", n->host_ip, n->prefix);
	if ((rc = run_cmd(add, NULL, e)) != KILN_OK)
		return rc;
	return run_cmd(up, NULL, e);
}

/* Shape what the tap sends to the guest to rate bytes/s (tc's "bps" are
 * bytes): a token bucket queue, up to 100 ms of delay, then drops. */
static enum kiln_rc link_shape(const struct jobnet *n, long rate, struct kiln_err *e)
{
	char r[32], b[32];
	char *argv[] = { "tc", "qdisc", "replace", "dev", (char *)n->tap, "root", "tbf", "rate", r,
			 "burst", b, "latency", "100ms", NULL };

	snprintf(r, sizeof(r), "%ldbps", rate);
	snprintf(b, sizeof(b), "%ld", limit_burst(rate));
	return run_cmd(argv, NULL, e);
}

/* --- nftables ------------------------------------------------------------- */

static const char nft_decls[] =
	"add table inet kiln\n"
	"add set inet kiln job_ifs { type ifname; }\n"
	"add set inet kiln job_guests { type ifname . ipv4_addr; }\n"
	"add set inet kiln refused { type ipv4_addr; flags interval; }\n"
	"add set inet kiln job_peers { type ifname . ifname; }\n"
	"add map inet kiln job_policy { type ifname : verdict; }\n";

static const char nft_base[] =
	"add chain inet kiln input { type filter hook input priority filter; policy accept; }\n"
	"add chain inet kiln forward { type filter hook forward priority filter; policy accept; }\n"
	"add chain inet kiln postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
	"flush set inet kiln refused\n"
	"add element inet kiln refused { " JOBNET_REFUSED " }\n"
	"flush chain inet kiln input\n"
	"flush chain inet kiln forward\n"
	"flush chain inet kiln postrouting\n"
	/* Nothing from a job reaches the host itself, whatever the address. */
	"add rule inet kiln input iifname @job_ifs ct state established,related accept\n"
	"add rule inet kiln input iifname @job_ifs drop\n"
	/* IPv4 only, from the job's own address, not DNATed to a host
	 * service, not to another job; then the job's own policy (its DNS
	 * server, allowed and denied networks), then the public internet
	 * only. */
	"add rule inet kiln forward iifname @job_ifs meta nfproto != ipv4 drop\n"
	"add rule inet kiln forward iifname @job_ifs iifname . ip saddr != @job_guests drop\n"
	"add rule inet kiln forward iifname @job_ifs ct status dnat drop\n"
	/* A job and its services (jobnet_setup_service) reach each other. */
	"add rule inet kiln forward iifname . oifname @job_peers accept\n"
	"add rule inet kiln forward iifname @job_ifs oifname @job_ifs drop\n"
	"add rule inet kiln forward iifname @job_ifs iifname vmap @job_policy\n"
	"add rule inet kiln forward iifname @job_ifs ip daddr @refused drop\n"
	"add rule inet kiln forward iifname @job_ifs accept\n"
	"add rule inet kiln forward oifname @job_ifs ct state established,related accept\n"
	"add rule inet kiln forward oifname @job_ifs drop\n"
	"add rule inet kiln postrouting ip saddr " JOBNET_POOL " oifname != @job_ifs masquerade\n";

/* Append to buf (size bytes, *len used); false once it does not fit. */
static bool put(char *buf, size_t size, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static bool put(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*len >= size)
		return false;
	va_start(ap, fmt);
	r = vsnprintf(buf + *len, size - *len, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= size - *len) {
		*len = size;
		return false;
	}
	*len += (size_t)r;
	return true;
}

/* Rules "ip daddr NET verdict" in n's chain for each of list. */
static bool put_nets(char *buf, size_t size, size_t *len, const struct jobnet *n,
		     const struct kiln_cidrs *list, const char *verdict)
{
	char net[KILN_CIDR_STR_MAX];
	size_t i;

	for (i = 0; i < list->n && i < KILN_MAX_NETWORKS; i++) {
		kiln_cidr_str(&list->v[i], net, sizeof(net));
		if (!put(buf, size, len, "add rule inet kiln job_%s ip daddr %s %s\n", n->tap, net,
			 verdict))
			return false;
	}
	return true;
}

int jobnet_nft_script(const struct jobnet *n, bool add, char *buf, size_t size)
{
	const char *t = n->tap;
	size_t len = 0;
	bool ok;

	if (size)
		buf[0] = '\0';
	if (!add) /* add first: deleting a missing element or chain would fail */
		ok = put(buf, size, &len,
			 "# kiln: remove the network of slot %u\n%s"
			 "add chain inet kiln job_%s\n"
			 "add element inet kiln job_ifs { \"%s\" }\n"
			 "add element inet kiln job_guests { \"%s\" . %s }\n"
			 "add element inet kiln job_policy { \"%s\" : jump job_%s }\n"
			 "delete element inet kiln job_ifs { \"%s\" }\n"
			 "delete element inet kiln job_guests { \"%s\" . %s }\n"
			 "delete element inet kiln job_policy { \"%s\" }\n"
			 "flush chain inet kiln job_%s\n"
			 "delete chain inet kiln job_%s\n",
			 n->slot, nft_decls, t, t, t, n->guest_ip, t, t, t, t, n->guest_ip, t, t, t);
	else
		ok = put(buf, size, &len,
			 "# kiln: network of job %s, slot %u\n%s%s"
			 "add chain inet kiln job_%s\n"
			 "flush chain inet kiln job_%s\n",
			 n->job_id, n->slot, nft_decls, nft_base, t, t) &&
		     (!*n->dns ||
		      put(buf, size, &len,
			  "add rule inet kiln job_%s ip daddr %s udp dport 53 accept\n"
			  "add rule inet kiln job_%s ip daddr %s tcp dport 53 accept\n",
			  t, n->dns, t, n->dns)) &&
		     put_nets(buf, size, &len, n, &n->policy.allowed, "accept") &&
		     put_nets(buf, size, &len, n, &n->policy.denied, "drop") &&
		     put(buf, size, &len,
			 "add element inet kiln job_ifs { \"%s\" }\n"
			 "add element inet kiln job_guests { \"%s\" . %s }\n"
			 "add element inet kiln job_policy { \"%s\" : jump job_%s }\n",
			 t, t, n->guest_ip, t, t);
	return ok ? (int)len : -1;
}

int jobnet_nft_limit_script(const struct jobnet *n, char *buf, size_t size)
{
	int len = snprintf(buf, size,
			   "insert rule inet kiln job_%s limit rate over %ld bytes/second burst %ld bytes drop\n",
			   n->tap, n->policy.tx_rate, limit_burst(n->policy.tx_rate));

	return len < 0 || (size_t)len >= size ? -1 : len;
}

static enum kiln_rc nft_run(const char *script, struct kiln_err *e)
{
	char *argv[] = { "nft", "-f", "-", NULL };

	return run_cmd(argv, script, e);
}

/* Remove n's set elements; nothing to do when the sets do not exist. */
static enum kiln_rc nft_remove(const struct jobnet *n, struct kiln_err *e)
{
	char *list[] = { "nft", "list", "set", "inet", "kiln", "job_ifs", NULL };
	char script[2048];
	struct kiln_err ignored;

	if (run_cmd(list, NULL, &ignored) != KILN_OK)
		return KILN_OK;
	if (jobnet_nft_script(n, false, script, sizeof(script)) < 0)
		return kiln_fail(e, KILN_E_LIMIT, "nft script for %s too long", n->tap);
	return nft_run(script, e);
}

/* --- services: a job's service VMs and the job's VM reach each other ------ */

int jobnet_peer_script(const struct jobnet *n, bool add, char *buf, size_t size)
{
	const char *t = n->tap, *p = n->peer_tap;
	size_t len = 0;
	bool ok;

	if (size)
		buf[0] = '\0';
	if (!*p)
		return -1;
	if (add)
		ok = put(buf, size, &len,
			 "# kiln: slot %u reaches %s\n%s"
			 "add element inet kiln job_peers { \"%s\" . \"%s\", \"%s\" . \"%s\" }\n",
			 n->slot, p, nft_decls, t, p, p, t);
	else /* add first: deleting a missing element would fail */
		ok = put(buf, size, &len,
			 "# kiln: slot %u no longer reaches %s\n%s"
			 "add element inet kiln job_peers { \"%s\" . \"%s\", \"%s\" . \"%s\" }\n"
			 "delete element inet kiln job_peers { \"%s\" . \"%s\", \"%s\" . \"%s\" }\n",
			 n->slot, p, nft_decls, t, p, p, t, t, p, p, t);
	return ok ? (int)len : -1;
}

int jobnet_siblings_script(const struct jobnet *const *nets, size_t n, char *buf, size_t size)
{
	size_t len = 0, i, k, pairs = 0;

	if (size)
		buf[0] = '\0';
	if (!put(buf, size, &len, "# kiln: a job's services reach each other\n%s", nft_decls))
		return -1;
	for (i = 0; i < n; i++)
		for (k = i + 1; k < n; k++) {
			const char *a = nets[i]->tap, *b = nets[k]->tap;

			if (!nets[i]->enabled || !nets[k]->enabled)
				continue;
			if (!put(buf, size, &len, "add element inet kiln job_peers { \"%s\" . \"%s\", \"%s\" . \"%s\" }\n",
				 a, b, b, a))
				return -1;
			pairs++;
		}
	return pairs ? (int)len : 0;
}

enum kiln_rc jobnet_link_siblings(const struct jobnet *const *nets, size_t n, struct kiln_err *e)
{
	char *script;
	size_t size = 512 + n * n * 48;
	enum kiln_rc rc = KILN_OK;
	int len;

	if (n > JOBNET_SIBLINGS_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "%zu services: more than %d cannot be linked", n, JOBNET_SIBLINGS_MAX);
	if (!(script = malloc(size)))
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	if ((len = jobnet_siblings_script(nets, n, script, size)) < 0)
		rc = kiln_fail(e, KILN_E_LIMIT, "nft script for %zu services too long", n);
	else if (len > 0)
		rc = nft_run(script, e);
	free(script);
	return rc;
}

int jobnet_service_id(const char *job_id, unsigned index, unsigned peer_slot, char *buf, size_t size)
{
	int len = snprintf(buf, size, "%s.svc%u.peer%u", job_id, index, peer_slot);

	return len < 0 || (size_t)len >= size || len > JOBNET_JOB_ID_MAX ? -1 : len;
}

bool jobnet_service_peer(const char *id, char *tap, size_t size)
{
	const char *p = strstr(id, ".peer");
	char *end;
	unsigned long slot;

	if (size)
		tap[0] = '\0';
	while (p && strstr(p + 1, ".peer"))
		p = strstr(p + 1, ".peer");
	if (!p || !isdigit((unsigned char)p[5]) || (p[5] == '0' && p[6]))
		return false;
	errno = 0;
	slot = strtoul(p + 5, &end, 10);
	if (errno || *end || slot >= JOBNET_SLOTS)
		return false;
	return snprintf(tap, size, "kt%lu", slot) < (int)size;
}

int jobnet_peers_forget_script(const char *listing, const char *tap, char *buf, size_t size)
{
	char want[20], a[16], b[16];
	const char *p = listing;
	size_t len = 0;
	int found = 0;

	if (size)
		buf[0] = '\0';
	snprintf(want, sizeof(want), "\"%s\"", tap);
	if (!put(buf, size, &len, "%s", nft_decls))
		return -1;
	/* Elements are written "\"ktA\" . \"ktB\"", one pair each. */
	while ((p = strchr(p, '"'))) {
		int n = 0;

		if (sscanf(p, "\"%15[a-z0-9]\" . \"%15[a-z0-9]\"%n", a, b, &n) == 2 && n > 0) {
			char pa[20], pb[20];

			snprintf(pa, sizeof(pa), "\"%s\"", a);
			snprintf(pb, sizeof(pb), "\"%s\"", b);
			if ((!strcmp(pa, want) || !strcmp(pb, want)) &&
			    !put(buf, size, &len, "delete element inet kiln job_peers { %s . %s }\n", pa, pb))
				return -1;
			found += !strcmp(pa, want) || !strcmp(pb, want);
			p += n;
		} else
			p++;
	}
	return found ? (int)len : 0;
}

static enum kiln_rc nft_run(const char *script, struct kiln_err *e);

/* A pair with tap that a crash left and an older sweep did not remove
 * (it knew no @job_peers) must not link the slot's next owner to anyone. */
static void peers_forget(const char *tap)
{
	char *argv[] = { "nft", "list", "set", "inet", "kiln", "job_peers", NULL };
	char *listing = NULL, script[8192]; /* a job pair and JOBNET_SIBLINGS_MAX siblings */
	struct kiln_err e;

	if (kiln_spawn(argv, NULL, &listing, 1u << 20, &e) == KILN_OK && listing &&
	    jobnet_peers_forget_script(listing, tap, script, sizeof(script)) > 0 && nft_run(script, &e) != KILN_OK)
		log_warn("network of %s: removing a stale link: %s", tap, e.msg);
	free(listing);
}

static enum kiln_rc peer_remove(const struct jobnet *n, struct kiln_err *e)
{
	char *list[] = { "nft", "list", "set", "inet", "kiln", "job_peers", NULL };
	char script[2048];
	struct kiln_err ignored;

	if (run_cmd(list, NULL, &ignored) != KILN_OK)
		return KILN_OK;
	if (jobnet_peer_script(n, false, script, sizeof(script)) < 0)
		return kiln_fail(e, KILN_E_LIMIT, "nft script for %s too long", n->tap);
	return nft_run(script, e);
}

/* Remove the tap and set elements of n (not the slot file); warnings only.
 * The interface goes first: while it exists it stays in the sets, so a VM
 * still attached never sends unfiltered. */
static void remove_net_state(const struct jobnet *n)
{
	struct kiln_err e;

	if (link_delete(n->tap, &e) != KILN_OK)
		log_warn("network of %s: deleting the interface: %s", n->tap, e.msg);
	if (nft_remove(n, &e) != KILN_OK)
		log_warn("network of %s: removing nftables elements: %s", n->tap, e.msg);
	if (n->peer_tap[0] && peer_remove(n, &e) != KILN_OK)
		log_warn("network of %s: removing its link to %s: %s", n->tap, n->peer_tap, e.msg);
	/* A service's links to its siblings (jobnet_link_siblings) name
	 * its tap too. */
	if (n->peer_tap[0])
		peers_forget(n->tap);
}

/* jobnet_reclaim_fn for setup and sweep: clear a stale slot's leftovers,
 * a service's link to its job's VM included (its job id names the peer). */
static void reclaim_slot(unsigned slot, void *arg)
{
	char path[PATH_MAX], job[JOBNET_JOB_ID_MAX + 1];
	struct jobnet stale;
	pid_t pid;

	(void)arg;
	memset(&stale, 0, sizeof(stale));
	if (jobnet_addrs(slot, &stale, NULL) != KILN_OK)
		return;
	snprintf(path, sizeof(path), "%s/" SLOT_PREFIX "%u", jobnet_dir(), slot);
	jobnet_slot_live(path, &pid, job, sizeof(job));
	jobnet_service_peer(job, stale.peer_tap, sizeof(stale.peer_tap));
	remove_net_state(&stale);
}

/* --- slots ------------------------------------------------------------------ */

/* State and start time (clock ticks after boot) of pid from /proc; 0 when
 * unknown. */
static unsigned long long proc_start(pid_t pid, char *state)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t r;
	int fd, field;

	*state = '?';
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return 0;
	buf[r] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold anything */
	if (!p || p[1] != ' ')
		return 0;
	p += 2;
	*state = *p;
	/* Field 3 is the state; the start time is field 22. */
	for (field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p)
		start = strtoull(p, NULL, 10);
	return start;
}

int jobnet_slot_live(const char *path, pid_t *pid, char *job, size_t size)
{
	char buf[256], *line, *save = NULL, state;
	unsigned long long start = 0, now;
	long owner = 0;
	ssize_t r;
	/* The holder's flock says live across pid namespaces, where the pid
	 * below means nothing; the pid is for claims made without one. */
	int held = kiln_path_held(path), fd = open(path, O_RDONLY | O_CLOEXEC);

	if (pid)
		*pid = 0;
	if (job && size)
		*job = '\0';
	if (fd < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return held;
	buf[r] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "pid=", 4) == 0)
			owner = strtol(line + 4, NULL, 10);
		else if (strncmp(line, "start=", 6) == 0)
			start = strtoull(line + 6, NULL, 10);
		else if (strncmp(line, "job=", 4) == 0 && job && size)
			snprintf(job, size, "%s", line + 4);
	}
	if (pid && owner > 0 && owner <= 0x3fffffff)
		*pid = (pid_t)owner;
	if (held)
		return 1;
	if (owner <= 0 || owner > 0x3fffffff)
		return 0;
	if (kill((pid_t)owner, 0) < 0 && errno == ESRCH)
		return 0;
	now = proc_start((pid_t)owner, &state);
	if (state == 'Z' || state == 'X')
		return 0; /* exited, not yet reaped */
	if (start && now && start != now)
		return 0; /* the pid now belongs to another process */
	return 1;
}

static enum kiln_rc lock_dir(const char *dir, int *fd, struct kiln_err *e)
{
	char path[PATH_MAX];

	if (!kiln_path_join(path, sizeof(path), dir, "lock"))
		return kiln_fail(e, KILN_E_LIMIT, "path %s/lock too long", dir);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0)
		return kiln_fail_errno(e, "network lock %s", path);
	while (flock(*fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			enum kiln_rc rc = kiln_fail_errno(e, "network lock %s: flock", path);

			close(*fd);
			*fd = -1;
			return rc;
		}
	}
	return KILN_OK;
}

static enum kiln_rc write_claim(int fd, const char *path, const char *job_id, struct kiln_err *e)
{
	char buf[160], state;
	pid_t self = getpid();
	int len = snprintf(buf, sizeof(buf), "pid=%d\nstart=%llu\njob=%s\n", (int)self,
			   proc_start(self, &state), job_id);

	if (len < 0 || (size_t)len >= sizeof(buf) || write(fd, buf, (size_t)len) != len)
		return kiln_fail_errno(e, "slot file %s: write", path);
	return KILN_OK;
}

enum kiln_rc jobnet_claim(const char *dir, const char *job_id, unsigned nslots,
			  jobnet_reclaim_fn reclaim, void *arg, unsigned *slot, char *path,
			  size_t size, int *hold, struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	int lock = -1, fd = -1;
	unsigned i;

	if (hold)
		*hold = -1;
	if (!valid_job_id(job_id))
		return kiln_fail(e, KILN_E_INVALID,
				 "job id '%.80s': must be 1..%d of A-Z a-z 0-9 . _ -", job_id,
				 JOBNET_JOB_ID_MAX);
	if (nslots == 0 || nslots > JOBNET_SLOTS)
		return kiln_fail(e, KILN_E_INVALID, "%u network slots: must be 1..%u", nslots,
				 JOBNET_SLOTS);
	if (kiln_mkdir_p(dir) < 0)
		return kiln_fail_errno(e, "network state folder %s", dir);
	if ((rc = lock_dir(dir, &lock, e)) != KILN_OK)
		goto out;
	for (i = 0; i < nslots; i++) {
		int len = snprintf(path, size, "%s/" SLOT_PREFIX "%u", dir, i);

		if (len < 0 || (size_t)len >= size) {
			rc = kiln_fail(e, KILN_E_LIMIT, "path %s/" SLOT_PREFIX "%u too long", dir, i);
			goto out;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno == EEXIST) {
			pid_t pid;
			char job[JOBNET_JOB_ID_MAX + 1];

			if (jobnet_slot_live(path, &pid, job, sizeof(job)))
				continue;
			log_info("network slot %u: reclaiming it from job %s (pid %d has ended)", i,
				 *job ? job : "?", (int)pid);
			if (reclaim)
				reclaim(i, arg);
			if (unlink(path) < 0 && errno != ENOENT) {
				rc = kiln_fail_errno(e, "stale slot file %s: unlink", path);
				goto out;
			}
			fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		}
		if (fd < 0) {
			rc = kiln_fail_errno(e, "slot file %s", path);
			goto out;
		}
		/* New and ours under the folder's lock: the flock cannot wait. */
		if ((hold && flock(fd, LOCK_EX | LOCK_NB) < 0 && (rc = kiln_fail_errno(e, "slot file %s: flock", path))) ||
		    (rc = write_claim(fd, path, job_id, e)) != KILN_OK) {
			unlink(path);
			goto out;
		}
		*slot = i;
		if (hold) {
			*hold = fd;
			fd = -1;
		}
		goto out;
	}
	rc = kiln_fail(e, KILN_E_LIMIT, "all %u network slots in %s are in use", nslots, dir);
out:
	if (fd >= 0)
		close(fd);
	if (lock >= 0)
		close(lock);
	return rc;
}

/* --- pure parts ------------------------------------------------------------ */

static void ip4_str(unsigned long a, char *buf, size_t size)
{
	snprintf(buf, size, "%lu.%lu.%lu.%lu", (a >> 24) & 255, (a >> 16) & 255, (a >> 8) & 255,
		 a & 255);
}

enum kiln_rc jobnet_addrs(unsigned slot, struct jobnet *n, struct kiln_err *e)
{
	unsigned long net = JOBNET_POOL_BASE + 4ul * slot;

	if (slot >= JOBNET_SLOTS)
		return kiln_fail(e, KILN_E_INVALID, "network slot %u: must be below %u", slot,
				 JOBNET_SLOTS);
	n->slot = slot;
	snprintf(n->tap, sizeof(n->tap), "kt%u", slot);
	ip4_str(net + 1, n->host_ip, sizeof(n->host_ip));
	ip4_str(net + 2, n->guest_ip, sizeof(n->guest_ip));
	memcpy(n->gateway, n->host_ip, sizeof(n->gateway));
	n->prefix = JOBNET_PREFIX;
	snprintf(n->mac, sizeof(n->mac), "06:00:ac:1e:%02lx:%02lx", ((net + 2) >> 8) & 255,
		 (net + 2) & 255);
	return KILN_OK;
}

/* a.b.c.d with each part 0..255, nothing else. */
static bool parse_ip4(const char *s, unsigned long *addr)
{
	unsigned long a = 0;
	int parts;

	for (parts = 0; parts < 4; parts++) {
		unsigned long v = 0;
		int digits = 0;

		while (isdigit((unsigned char)*s) && digits < 4) {
			v = v * 10 + (unsigned long)(*s++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
		a = a << 8 | v;
		if (parts < 3 && *s++ != '.')
			return false;
	}
	if (*s)
		return false;
	*addr = a;
	return true;
}

int jobnet_parse_resolv(const char *text, char *out, size_t size)
{
	const char *p = text;

	if (size)
		*out = '\0';
	while (*p) {
		size_t len = strcspn(p, "\n");
		char line[256], *word, *save = NULL;

		if (len < sizeof(line)) {
			memcpy(line, p, len);
			line[len] = '\0';
			word = strtok_r(line, " \t\r", &save);
			if (word && strcmp(word, "nameserver") == 0) {
				char *value = strtok_r(NULL, " \t\r", &save);
				unsigned long a;

				if (value && parse_ip4(value, &a) && (a >> 24) != 127 && a != 0 &&
				    strlen(value) < size) {
					snprintf(out, size, "%s", value);
					return 1;
				}
			}
		} /* longer lines are no nameserver line */
		p += len;
		if (*p == '\n')
			p++;
	}
	return 0;
}

void jobnet_fill_cmdline(struct jobnet *n)
{
	if (!n->enabled) {
		n->cmdline[0] = '\0';
		return;
	}
	snprintf(n->cmdline, sizeof(n->cmdline), "kiln.ip=%s/%d kiln.gw=%s%s%s", n->guest_ip, n->prefix,
		 n->gateway, *n->dns ? " kiln.dns=" : "", n->dns);
}

int jobnet_read_dns(const char *const *paths, char *out, size_t size)
{
	char buf[16384];
	int i;

	if (size)
		*out = '\0';
	for (i = 0; paths[i]; i++) {
		ssize_t r;
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			continue;
		r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[r > 0 ? r : 0] = '\0';
		if (jobnet_parse_resolv(buf, out, size))
			return i;
	}
	return -1;
}

/* The host's DNS server for the guest into n->dns ("" when none). */
static void fill_dns(struct jobnet *n)
{
	static const char *const paths[] = { RESOLV_CONF, RESOLVED_CONF, NULL };

	if (jobnet_read_dns(paths, n->dns, sizeof(n->dns)) < 0)
		log_warn("neither %s nor %s names an IPv4 nameserver outside 127.0.0.0/8; the job VM "
			 "gets no DNS server", RESOLV_CONF, RESOLVED_CONF);
}

/* --- the job's network ------------------------------------------------------ */

void jobnet_disabled(struct jobnet *n)
{
	memset(n, 0, sizeof(*n));
	n->owner = -1;
	n->slot_fd = -1;
	jobnet_fill_cmdline(n);
}

const char *jobnet_dir(void)
{
	const char *v = getenv(JOBNET_DIR_ENV);

	return v && *v ? v : JOBNET_DIR;
}

/* n's rate limits, each best effort: a host without sch_tbf or nft_limit
 * (a minimal kernel) runs the job unlimited, and the log says so. Before
 * the VM starts, so nothing passes unlimited meanwhile. */
static void apply_limits(const struct jobnet *n)
{
	char script[256];
	struct kiln_err e;

	if (n->policy.rx_rate > 0 && link_shape(n, n->policy.rx_rate, &e) != KILN_OK)
		log_warn("job %s: traffic into the guest is not rate limited: %s", n->job_id, e.msg);
	if (n->policy.tx_rate > 0 && jobnet_nft_limit_script(n, script, sizeof(script)) > 0 &&
	    nft_run(script, &e) != KILN_OK)
		log_warn("job %s: traffic out of the guest is not rate limited: %s", n->job_id, e.msg);
}

enum kiln_rc jobnet_setup(const char *job_id, const struct jobnet_policy *policy,
			  struct jobnet *n, struct kiln_err *e)
{
	const char *dir = jobnet_dir();
	char script[JOBNET_SCRIPT_MAX];
	const char *veth = getenv(JOBNET_TEST_VETH_ENV);
	struct kiln_err local;
	enum kiln_rc rc;

	if (!e)
		e = &local;
	jobnet_disabled(n);
	rc = jobnet_claim(dir, job_id, JOBNET_SLOTS, reclaim_slot, NULL, &n->slot, n->slot_file,
			  sizeof(n->slot_file), &n->slot_fd, e);
	if (rc != KILN_OK)
		return rc;
	n->enabled = n->claimed = true;
	n->owner = getpid();
	n->veth = veth && strcmp(veth, "1") == 0;
	snprintf(n->job_id, sizeof(n->job_id), "%s", job_id);
	if (policy)
		n->policy = *policy;
	if ((rc = jobnet_addrs(n->slot, n, e)) != KILN_OK)
		goto out;
	fill_dns(n);
	jobnet_fill_cmdline(n);

	/* A leftover of the same name (the slot file was lost) goes first. */
	if ((rc = link_delete(n->tap, e)) != KILN_OK)
		goto out;
	rc = n->veth ? veth_create(n->tap, n->job_id, e) : tap_create(n->tap, e);
	if (rc != KILN_OK)
		goto out;
	if ((rc = link_configure(n, e)) != KILN_OK || (rc = enable_forwarding(e)) != KILN_OK)
		goto out;
	if (jobnet_nft_script(n, true, script, sizeof(script)) < 0) {
		rc = kiln_fail(e, KILN_E_LIMIT, "nft script for %s too long", n->tap);
		goto out;
	}
	if ((rc = nft_run(script, e)) != KILN_OK)
		goto out;
	peers_forget(n->tap);
	apply_limits(n);
	log_info("job %s: network %s, guest %s/%d via %s, dns %s", n->job_id, n->tap, n->guest_ip,
		 n->prefix, n->gateway, *n->dns ? n->dns : "none");
out:
	if (rc != KILN_OK) {
		struct kiln_err saved = *e;

		jobnet_teardown(n);
		*e = saved;
	}
	return rc;
}

void jobnet_teardown(struct jobnet *n)
{
	struct kiln_err e;
	char dir[PATH_MAX], job[JOBNET_JOB_ID_MAX + 1], *slash;
	pid_t pid;
	int lock = -1;

	if (!n->enabled)
		return;
	remove_net_state(n);
	if (!n->claimed)
		goto out;
	snprintf(dir, sizeof(dir), "%s", n->slot_file);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (lock_dir(dir, &lock, &e) != KILN_OK) {
		log_warn("network of job %s: %s; slot file %s stays (jobnet_sweep removes it)",
			 n->job_id, e.msg, n->slot_file);
		goto out;
	}
	jobnet_slot_live(n->slot_file, &pid, job, sizeof(job));
	if (pid != n->owner || strcmp(job, n->job_id) != 0)
		log_warn("network of job %s: slot file %s now names job %s (pid %d); left alone",
			 n->job_id, n->slot_file, *job ? job : "?", (int)pid);
	else if (unlink(n->slot_file) < 0 && errno != ENOENT)
		log_warn("network of job %s: removing %s: %s", n->job_id, n->slot_file, strerror(errno));
out:
	if (lock >= 0)
		close(lock);
	if (n->slot_fd >= 0)
		close(n->slot_fd);
	n->slot_fd = -1;
	n->enabled = n->claimed = false;
	n->cmdline[0] = '\0';
}

/* The slot number of a directory entry named slot-<N>; -1 for others. */
static long slot_of(const char *name)
{
	char *end;
	unsigned long v;

	if (strncmp(name, SLOT_PREFIX, strlen(SLOT_PREFIX)) != 0)
		return -1;
	name += strlen(SLOT_PREFIX);
	if (!isdigit((unsigned char)*name) || (name[0] == '0' && name[1]))
		return -1;
	errno = 0;
	v = strtoul(name, &end, 10);
	if (errno || *end || v >= JOBNET_SLOTS)
		return -1;
	return (long)v;
}

enum kiln_rc jobnet_sweep(struct kiln_err *e)
{
	const char *dir = jobnet_dir();
	char path[PATH_MAX], job[JOBNET_JOB_ID_MAX + 1];
	enum kiln_rc rc = KILN_OK;
	struct dirent *d;
	DIR *dp = NULL;
	int lock = -1;
	pid_t pid;

	if (access(dir, F_OK) < 0 && errno == ENOENT)
		return KILN_OK;
	if ((rc = lock_dir(dir, &lock, e)) != KILN_OK)
		goto out;
	dp = opendir(dir);
	if (!dp) {
		rc = kiln_fail_errno(e, "network state folder %s", dir);
		goto out;
	}
	while ((d = readdir(dp)) != NULL) {
		long slot = slot_of(d->d_name);

		if (slot < 0 || !kiln_path_join(path, sizeof(path), dir, d->d_name))
			continue;
		if (jobnet_slot_live(path, &pid, job, sizeof(job)))
			continue;
		log_info("network slot %ld: removing what job %s (pid %d, ended) left", slot,
			 *job ? job : "?", (int)pid);
		reclaim_slot((unsigned)slot, NULL);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("network slot %ld: removing %s: %s", slot, path, strerror(errno));
	}
out:
	if (dp)
		closedir(dp);
	if (lock >= 0)
		close(lock);
	return rc;
}

enum kiln_rc jobnet_lookup(const char *job_id, struct jobnet *n, struct kiln_err *e)
{
	const char *dir = jobnet_dir();
	char path[PATH_MAX], job[JOBNET_JOB_ID_MAX + 1];
	struct dirent *d;
	long best = -1;
	DIR *dp;
	pid_t pid, best_pid = 0;

	jobnet_disabled(n);
	dp = opendir(dir);
	if (!dp && errno != ENOENT)
		return kiln_fail_errno(e, "network state folder %s", dir);
	while (dp && (d = readdir(dp)) != NULL) {
		long slot = slot_of(d->d_name);

		if (slot < 0 || (best >= 0 && slot > best) ||
		    !kiln_path_join(path, sizeof(path), dir, d->d_name))
			continue;
		jobnet_slot_live(path, &pid, job, sizeof(job));
		if (strcmp(job, job_id) == 0) {
			best = slot;
			best_pid = pid;
		}
	}
	if (dp)
		closedir(dp);
	if (best < 0)
		return kiln_fail(e, KILN_E_NOTFOUND, "job %s holds no network slot in %s", job_id, dir);
	n->enabled = n->claimed = true;
	n->owner = best_pid;
	snprintf(n->job_id, sizeof(n->job_id), "%s", job_id);
	snprintf(n->slot_file, sizeof(n->slot_file), "%s/" SLOT_PREFIX "%ld", dir, best);
	jobnet_addrs((unsigned)best, n, NULL);
	jobnet_service_peer(job_id, n->peer_tap, sizeof(n->peer_tap));
	fill_dns(n);
	jobnet_fill_cmdline(n);
	return KILN_OK;
}

enum kiln_rc jobnet_setup_service(const struct jobnet *job, unsigned index, const struct jobnet_policy *policy,
				  struct jobnet *n, struct kiln_err *e)
{
	char id[JOBNET_JOB_ID_MAX + 1], script[2048];
	enum kiln_rc rc;

	if (!job->enabled)
		return kiln_fail(e, KILN_E_INVALID, "services need the job's network, which is off");
	if (jobnet_service_id(job->job_id, index, job->slot, id, sizeof(id)) < 0)
		return kiln_fail(e, KILN_E_LIMIT, "job id %s: too long for a service's network", job->job_id);
	if ((rc = jobnet_setup(id, policy, n, e)))
		return rc;
	snprintf(n->peer_tap, sizeof(n->peer_tap), "%s", job->tap);
	if (jobnet_peer_script(n, true, script, sizeof(script)) < 0)
		rc = kiln_fail(e, KILN_E_LIMIT, "nft script for %s too long", n->tap);
	else
		rc = nft_run(script, e);
	if (rc) {
		struct kiln_err saved = *e;

		jobnet_teardown(n);
		*e = saved;
	}
	return rc;
}
