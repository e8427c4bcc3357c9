/* Per-job networking for job VMs: each job with network on gets a slot of
 * the pool 172.30.0.0/16, one /30 per slot (slot N: network 172.30.0.0 + 4N,
 * host/gateway .1, guest .2), a persistent tap `kt<N>` holding the host
 * address, and this slot's entries in kiln's own nftables table `inet kiln`:
 *
 *   - NAT: traffic from the pool leaving through a non-kiln interface is
 *     masqueraded;
 *   - forward: a job reaches the public internet only: replies come back
 *     (established/related); a job may only send from its own guest
 *     address, IPv4 only; no connection from a job may be DNATed (that
 *     would reach host services published through DNAT, such as container
 *     ports); job -> another job's interface is dropped; and the egress
 *     policy below decides on the destination;
 *   - input: everything from a kiln interface to the host itself is dropped
 *     (any host address, any family) except established/related replies.
 *
 * Egress policy, per job, in this order (the first match decides):
 *   1. its DNS server (n->dns, the host's) on port 53, UDP and TCP: allowed,
 *      whatever else says, so that name lookups work when the host's
 *      resolver sits on a private address (it often does: 10.x, 192.168.x);
 *   2. allowed_networks: allowed (punched through 3 and 4);
 *   3. denied_networks: dropped;
 *   4. the set @refused: dropped. It holds what is not the public internet:
 *      JOBNET_REFUSED (this network 0/8, RFC 1918 10/8, 172.16/12 (the
 *      pool too) and 192.168/16, CGNAT 100.64/10, loopback 127/8,
 *      link-local 169.254/16 with the cloud metadata service
 *      169.254.169.254, multicast 224/4, reserved 240/4 and broadcast);
 *   5. anything else: allowed (NATed).
 * The host's own addresses, whatever they are, never reach the forward
 * chain: they are input, dropped above. A DNS server on the host itself
 * (a loopback one is never handed to the guest) is therefore not reachable.
 * Steps 1-3 live in the job's own chain job_<tap> (after its tx limit,
 * when it has one: struct jobnet_policy), which the forward chain jumps to
 * through the verdict map @job_policy.
 *
 * The base chains match the named sets @job_ifs (interface names) and
 * @job_guests (interface . guest address); a job's state is exactly its
 * three set and map elements and its chain, so removing them removes the
 * job from the rules and nothing else. The base chains and @refused are
 * (re)written by every setup in the same atomic transaction and are inert
 * while the sets are empty; the table stays. No other table is ever
 * touched. Rules of other tables still apply: a host firewall whose forward
 * policy is drop must allow the pool.
 *
 * Slots are claimed in one folder for the whole host, jobnet_dir()
 * (/run/kiln/net), whatever each kiln's state_dir: taps, addresses and
 * nftables entries are global to the host, so two kiln processes with their
 * own state folders (a `kiln exec` beside a `kiln run`) must draw from one
 * pool. The file slot-<N>, created with O_EXCL, holds the owner's pid, its
 * start time and the job id. Claims, reclaims and removals hold an flock on
 * <dir>/lock, so concurrent kiln processes never share a slot and never
 * reclaim a live one. A slot whose owner is dead (or whose pid was reused by
 * another process) is stale: its leftovers are removed before it is used
 * again. /run is emptied at boot, as the taps and rules are.
 *
 * With the network off (jobnet_disabled) nothing is created and the guest
 * gets no kiln.ip on its command line: it comes up with loopback only.
 *
 * Interfaces named kt<N> and the table inet kiln belong to kiln: setup
 * replaces a leftover kt<N> and rewrites the table's base chains. The tap
 * is owned by root (no TUNSETOWNER): the VMM attaching to it needs
 * CAP_NET_ADMIN or must be handed an fd. The slot is held by the calling
 * process: it must outlive the job (or the slot turns stale, and the next
 * setup or sweep removes the job's network under it).
 *
 * Requires root (CAP_NET_ADMIN), /dev/net/tun, `ip` (iproute2) and `nft`;
 * `tc` (iproute2, sch_tbf) for an rx limit. */
#ifndef KILN_JOBNET_H
#define KILN_JOBNET_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/cidr.h"
#include "lib/result.h"

#define JOBNET_POOL "172.30.0.0/16"
#define JOBNET_POOL_BASE 0xac1e0000u /* 172.30.0.0, as a number */
#define JOBNET_PREFIX 30
#define JOBNET_SLOTS 16384u          /* /30s in the /16 */
#define JOBNET_JOB_ID_MAX 63         /* [A-Za-z0-9._-], 1..63 characters */
#define JOBNET_NFT_TABLE "inet kiln"
/* What a job may not reach unless allowed_networks says so (see above). */
#define JOBNET_REFUSED \
	"0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, " \
	"192.168.0.0/16, 224.0.0.0/4, 240.0.0.0/4"
#define JOBNET_DIR "/run/kiln/net"       /* the host's slot claims */
/* Names another claim folder instead of JOBNET_DIR: for the unit tests,
 * which must not touch the host's. Never set it in production: two kiln
 * processes with different values would share taps again. */
#define JOBNET_DIR_ENV "KILN_NET_DIR"
/* Set to 1, setup makes a veth pair instead of a tap and moves its far end,
 * named eth0, into the existing network namespace named like the job id:
 * a stand-in guest for tests/jobnet.sh. Never set it in production. */
#define JOBNET_TEST_VETH_ENV "KILN_JOBNET_TEST_VETH"

/* What a job's network lets through, beyond the fixed rules above. */
struct jobnet_policy {
	struct kiln_cidrs allowed; /* egress policy step 2 */
	struct kiln_cidrs denied;  /* egress policy step 3 */
	/* Bytes/s into and out of the guest, 0: none. For a VMM without a
	 * limiter of its own (QEMU): rx shapes the tap's queue (tc tbf), tx
	 * polices in the job's chain (nft limit: over it, packets drop).
	 * Best effort: where the kernel lacks sch_tbf or nft_limit, setup
	 * warns and the job runs unlimited. */
	long rx_rate;
	long tx_rate;
};

struct jobnet {
	bool enabled;             /* false: no network, nothing to tear down */
	bool claimed;             /* slot_file is ours until teardown */
	int slot_fd;              /* slot_file, flock'ed while we hold it; -1 */
	bool veth;                /* test mode: tap is a veth (see above) */
	unsigned slot;
	pid_t owner;              /* pid recorded in slot_file */
	char job_id[JOBNET_JOB_ID_MAX + 1];
	char slot_file[PATH_MAX]; /* <jobnet_dir()>/slot-<N> */
	char tap[16];             /* kt<N>, fits IFNAMSIZ */
	char host_ip[16];         /* 172.30.x.y+1: the tap's address */
	char guest_ip[16];        /* 172.30.x.y+2 */
	char gateway[16];         /* = host_ip */
	int prefix;               /* 30 */
	char mac[18];             /* guest MAC, locally administered, from the slot */
	char dns[16];             /* first non-loopback IPv4 nameserver of the
				   * host's /etc/resolv.conf (or of
				   * systemd-resolved's upstreams); "" when there
				   * is none (then the guest gets no kiln.dns) */
	char cmdline[128];        /* "kiln.ip=G/30 kiln.gw=H kiln.dns=D" for the
				   * guest agent; "" with the network off */
	struct jobnet_policy policy; /* as setup was given it */
	char peer_tap[16];        /* a service's job VM tap (jobnet_setup_service), "" */
};

/* The host-global folder of slot claims: $KILN_NET_DIR when set (tests
 * only), else JOBNET_DIR. */
const char *jobnet_dir(void);

/* Give job_id a network: claim a free slot in jobnet_dir(), create
 * and configure its tap (persistent, so the VMM attaches to it by name:
 * IFF_TAP|IFF_NO_PI|IFF_VNET_HDR), enable IPv4 forwarding and add the slot
 * and its policy (NULL: the default policy, no limits) to the nftables
 * table and the tap, then fill n. On failure everything made so far is
 * removed again and e says which step failed. job_id must be 1..63 of
 * [A-Za-z0-9._-]. */
enum kiln_rc jobnet_setup(const char *job_id, const struct jobnet_policy *policy,
			  struct jobnet *n, struct kiln_err *e);

/* Fill n for a job whose network is off: enabled false, empty cmdline (no
 * kiln.ip for the guest), nothing created; jobnet_teardown on it does
 * nothing. */
void jobnet_disabled(struct jobnet *n);

/* Remove what setup made: the tap, this slot's nftables set elements and
 * the allocation file (only while it still names n's owner and job). Safe
 * to call twice, on a disabled or zeroed n, or after a failed setup;
 * problems are logged as warnings. */
void jobnet_teardown(struct jobnet *n);

/* At kiln start: for every allocation file in jobnet_dir() whose
 * owner is dead, remove its tap, its set elements and the file. Slots of
 * live processes are left alone. A missing folder is fine; fails only when
 * the folder cannot be read or locked. */
enum kiln_rc jobnet_sweep(struct kiln_err *e);

/* Find the slot that job_id holds in jobnet_dir() (the lowest, should
 * two kiln processes run jobs of the same id) and fill n as setup did
 * (owner = the recorded pid; a service's peer from its id), so that
 * another process can tear it down.
 * KILN_E_NOTFOUND when no slot names job_id. */
enum kiln_rc jobnet_lookup(const char *job_id, struct jobnet *n, struct kiln_err *e);

/* A network for service index of the job whose network is job (issue
 * #16): a slot of its own as jobnet_setup gives (NAT, the default egress
 * policy), plus the one exception to "no job reaches another job's
 * interface": the pair (job's tap, service's tap) in @job_peers, both ways,
 * so the job's VM and the service's VM reach each other through the host,
 * and nothing else of the host or of other jobs. The slot's job id,
 * "<job>.svc<index>.peer<job slot>", names the peer, so that teardown and
 * a sweep after a crash remove the pair with the slot. */
enum kiln_rc jobnet_setup_service(const struct jobnet *job, unsigned index, const struct jobnet_policy *policy,
				  struct jobnet *n, struct kiln_err *e);

/* Let the services of one job reach each other, as on gitlab-runner's
 * network per build: every pair of nets[0..n) (service networks from
 * jobnet_setup_service of the same job; disabled ones are skipped) in
 * @job_peers, both ways, in one transaction. Nothing else changes: another
 * job's VMs stay out of reach. Teardown and the sweep of a service's slot
 * remove every pair that names its tap. */
#define JOBNET_SIBLINGS_MAX 16 /* services per job (SERVICES_MAX) */
enum kiln_rc jobnet_link_siblings(const struct jobnet *const *nets, size_t n, struct kiln_err *e);

/* --- The pure parts, exposed for the unit tests. --- */

/* The nft script jobnet_link_siblings runs: its length, 0 when there is no
 * pair (fewer than two enabled nets), -1 when it does not fit in size. */
int jobnet_siblings_script(const struct jobnet *const *nets, size_t n, char *buf, size_t size);

/* The nft script that adds (add) or removes n's pair with n->peer_tap in
 * @job_peers. Returns the length, or -1 when it does not fit or n has no
 * peer. */
int jobnet_peer_script(const struct jobnet *n, bool add, char *buf, size_t size);

/* The nft script that deletes every @job_peers element naming tap, from
 * listing (`nft list set inet kiln job_peers`): its length, 0 when there
 * is none, -1 when it does not fit. Setup runs it for each new slot. */
int jobnet_peers_forget_script(const char *listing, const char *tap, char *buf, size_t size);

/* A service's slot job id into buf: "<job_id>.svc<index>.peer<peer_slot>".
 * The length, or -1 past size or JOBNET_JOB_ID_MAX. */
int jobnet_service_id(const char *job_id, unsigned index, unsigned peer_slot, char *buf, size_t size);

/* The peer's tap ("kt<N>") named by a service's slot job id into tap; false
 * (tap "") for any other id. */
bool jobnet_service_peer(const char *id, char *tap, size_t size);

/* Called for a stale slot before it is reused (under the lock). */
typedef void (*jobnet_reclaim_fn)(unsigned slot, void *arg);

/* Claim the lowest free slot below nslots (1..JOBNET_SLOTS) in <dir>/ (the
 * net folder itself, created when missing) for job_id, calling reclaim (if
 * not NULL) on a stale slot before taking it over. Sets *slot and writes
 * the file's path into path (size bytes). With hold, *hold gets the slot
 * file open and flock'ed: the claim is live while it is open, whatever
 * the pid it records says (another pid namespace, a reused pid); close it
 * after removing the file. KILN_E_LIMIT when all are live. */
enum kiln_rc jobnet_claim(const char *dir, const char *job_id, unsigned nslots,
			  jobnet_reclaim_fn reclaim, void *arg, unsigned *slot, char *path,
			  size_t size, int *hold, struct kiln_err *e);

/* Whether the slot file at path is live: flock'ed by its holder, or
 * (a claim without a lock) naming a live owner; *pid and job (size bytes,
 * may be NULL) get what it records. An unlocked unreadable or malformed
 * file is stale (0). */
int jobnet_slot_live(const char *path, pid_t *pid, char *job, size_t size);

/* Fill n's slot, tap, addresses, prefix, gateway and mac for slot
 * (< JOBNET_SLOTS); KILN_E_INVALID otherwise. */
enum kiln_rc jobnet_addrs(unsigned slot, struct jobnet *n, struct kiln_err *e);

/* The first nameserver of resolv.conf text that is IPv4 and not loopback
 * (127/8) or 0.0.0.0, into out (size bytes); 1 when found, else 0 and out
 * is "". Comments (# or ;) and other keywords are skipped. */
int jobnet_parse_resolv(const char *text, char *out, size_t size);

/* The first nameserver jobnet_parse_resolv finds in the files paths
 * (NULL-terminated), tried in order, into out: the index of the file it
 * came from, or -1 (out "") when none names one. Setup tries
 * /etc/resolv.conf, then systemd-resolved's upstream list. */
int jobnet_read_dns(const char *const *paths, char *out, size_t size);

/* The guest's kernel command line fragment for n (fills n->cmdline). */
void jobnet_fill_cmdline(struct jobnet *n);

/* The nft script (for `nft -f -`) that creates table, sets and base chains
 * and adds n's chain (its DNS server, allowed and denied networks) and
 * elements (add = true), or removes n's elements and chain (add = false;
 * the table must exist). Returns the length, or -1 when it does not fit in
 * size. */
int jobnet_nft_script(const struct jobnet *n, bool add, char *buf, size_t size);

/* The nft command that puts n's tx limit first in its chain (run after
 * the script above, alone, so that a kernel without nft_limit fails only
 * it). Returns the length, or -1 when it does not fit in size. */
int jobnet_nft_limit_script(const struct jobnet *n, char *buf, size_t size);

#endif
