/* The pure parts of runner/jobnet: slot claims in a scratch folder,
 * address arithmetic, the nft script and resolv.conf parsing. Nothing here
 * touches the host's network (tests/jobnet.sh does, inside the sandbox). */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executors/jobnet.h"
#include "lib/paths.h"
#include "tests/unit/suites.h"

static char scratch[PATH_MAX];

/* The net folder inside the scratch folder. */
static const char *net(void)
{
	static char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s/net", scratch);
	return buf;
}

/* A scratch folder whose net/ stands for the host's claim folder. */
static void make_scratch(void)
{
	snprintf(scratch, sizeof(scratch), "%s/jobnet-test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
	ck_assert_int_eq(setenv(JOBNET_DIR_ENV, net(), 1), 0);
}

static void drop_scratch(void)
{
	unsetenv(JOBNET_DIR_ENV);
	kiln_rm_rf(scratch);
}

static void write_slot(unsigned slot, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	kiln_mkdir_p(net());
	snprintf(path, sizeof(path), "%s/slot-%u", net(), slot);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t r;

	ck_assert_int_ge(fd, 0);
	r = read(fd, buf, size - 1);
	close(fd);
	ck_assert_int_ge(r, 0);
	buf[r] = '\0';
}

/* A pid that was alive and is gone (reaped). */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

static unsigned reclaimed[8];
static int n_reclaimed;

static void record_reclaim(unsigned slot, void *arg)
{
	ck_assert_ptr_eq(arg, &n_reclaimed);
	if (n_reclaimed < 8)
		reclaimed[n_reclaimed++] = slot;
}

START_TEST(addrs_of_slots)
{
	struct jobnet n;
	struct kiln_err e = { 0 };

	memset(&n, 0, sizeof(n));
	ck_assert_int_eq(jobnet_addrs(0, &n, &e), KILN_OK);
	ck_assert_str_eq(n.tap, "kt0");
	ck_assert_str_eq(n.host_ip, "172.30.0.1");
	ck_assert_str_eq(n.guest_ip, "172.30.0.2");
	ck_assert_str_eq(n.gateway, "172.30.0.1");
	ck_assert_int_eq(n.prefix, 30);
	ck_assert_str_eq(n.mac, "06:00:ac:1e:00:02");

	ck_assert_int_eq(jobnet_addrs(3, &n, &e), KILN_OK);
	ck_assert_str_eq(n.tap, "kt3");
	ck_assert_str_eq(n.host_ip, "172.30.0.13");
	ck_assert_str_eq(n.guest_ip, "172.30.0.14");

	ck_assert_int_eq(jobnet_addrs(64, &n, &e), KILN_OK);
	ck_assert_str_eq(n.host_ip, "172.30.1.1");
	ck_assert_str_eq(n.guest_ip, "172.30.1.2");
	ck_assert_str_eq(n.mac, "06:00:ac:1e:01:02");

	ck_assert_int_eq(jobnet_addrs(JOBNET_SLOTS - 1, &n, &e), KILN_OK);
	ck_assert_str_eq(n.tap, "kt16383");
	ck_assert_str_eq(n.host_ip, "172.30.255.253");
	ck_assert_str_eq(n.guest_ip, "172.30.255.254");
	ck_assert_str_eq(n.mac, "06:00:ac:1e:ff:fe");
	ck_assert_uint_eq(n.slot, JOBNET_SLOTS - 1);

	ck_assert_int_eq(jobnet_addrs(JOBNET_SLOTS, &n, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "network slot 16384: must be below 16384");
}
END_TEST

START_TEST(cmdline)
{
	struct jobnet n;

	jobnet_disabled(&n);
	ck_assert(!n.enabled);
	ck_assert_str_eq(n.cmdline, "");
	jobnet_teardown(&n); /* nothing to do, nothing touched */

	ck_assert_int_eq(jobnet_addrs(3, &n, NULL), KILN_OK);
	n.enabled = true;
	snprintf(n.dns, sizeof(n.dns), "10.0.0.53");
	jobnet_fill_cmdline(&n);
	ck_assert_str_eq(n.cmdline, "kiln.ip=172.30.0.14/30 kiln.gw=172.30.0.13 kiln.dns=10.0.0.53");
	n.dns[0] = '\0';
	jobnet_fill_cmdline(&n);
	ck_assert_str_eq(n.cmdline, "kiln.ip=172.30.0.14/30 kiln.gw=172.30.0.13");
}
END_TEST

START_TEST(nft_script_golden)
{
	static const char want_add[] =
		"# kiln: network of job 1234, slot 3\n"
		"add table inet kiln\n"
		"add set inet kiln job_ifs { type ifname; }\n"
		"add set inet kiln job_guests { type ifname . ipv4_addr; }\n"
		"add set inet kiln refused { type ipv4_addr; flags interval; }\n"
		"add set inet kiln job_peers { type ifname . ifname; }\n"
		"add map inet kiln job_policy { type ifname : verdict; }\n"
		"add chain inet kiln input { type filter hook input priority filter; policy accept; }\n"
		"add chain inet kiln forward { type filter hook forward priority filter; policy accept; }\n"
		"add chain inet kiln postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
		"flush set inet kiln refused\n"
		"add element inet kiln refused { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, "
		"169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/4, 240.0.0.0/4 }\n"
		"flush chain inet kiln input\n"
		"flush chain inet kiln forward\n"
		"flush chain inet kiln postrouting\n"
		"add rule inet kiln input iifname @job_ifs ct state established,related accept\n"
		"add rule inet kiln input iifname @job_ifs drop\n"
		"add rule inet kiln forward iifname @job_ifs meta nfproto != ipv4 drop\n"
		"add rule inet kiln forward iifname @job_ifs iifname . ip saddr != @job_guests drop\n"
		"add rule inet kiln forward iifname @job_ifs ct status dnat drop\n"
		"add rule inet kiln forward iifname . oifname @job_peers accept\n"
		"add rule inet kiln forward iifname @job_ifs oifname @job_ifs drop\n"
		"add rule inet kiln forward iifname @job_ifs iifname vmap @job_policy\n"
		"add rule inet kiln forward iifname @job_ifs ip daddr @refused drop\n"
		"add rule inet kiln forward iifname @job_ifs accept\n"
		"add rule inet kiln forward oifname @job_ifs ct state established,related accept\n"
		"add rule inet kiln forward oifname @job_ifs drop\n"
		"add rule inet kiln postrouting ip saddr 172.30.0.0/16 oifname != @job_ifs masquerade\n"
		"add chain inet kiln job_kt3\n"
		"flush chain inet kiln job_kt3\n";
	static const char want_policy[] =
		"add rule inet kiln job_kt3 ip daddr 10.0.0.53 udp dport 53 accept\n"
		"add rule inet kiln job_kt3 ip daddr 10.0.0.53 tcp dport 53 accept\n"
		"add rule inet kiln job_kt3 ip daddr 192.168.5.0/24 accept\n"
		"add rule inet kiln job_kt3 ip daddr 10.9.9.9/32 accept\n"
		"add rule inet kiln job_kt3 ip daddr 0.0.0.0/0 drop\n";
	static const char want_elements[] =
		"add element inet kiln job_ifs { \"kt3\" }\n"
		"add element inet kiln job_guests { \"kt3\" . 172.30.0.14 }\n"
		"add element inet kiln job_policy { \"kt3\" : jump job_kt3 }\n";
	static const char want_del[] =
		"# kiln: remove the network of slot 3\n"
		"add table inet kiln\n"
		"add set inet kiln job_ifs { type ifname; }\n"
		"add set inet kiln job_guests { type ifname . ipv4_addr; }\n"
		"add set inet kiln refused { type ipv4_addr; flags interval; }\n"
		"add set inet kiln job_peers { type ifname . ifname; }\n"
		"add map inet kiln job_policy { type ifname : verdict; }\n"
		"add chain inet kiln job_kt3\n"
		"add element inet kiln job_ifs { \"kt3\" }\n"
		"add element inet kiln job_guests { \"kt3\" . 172.30.0.14 }\n"
		"add element inet kiln job_policy { \"kt3\" : jump job_kt3 }\n"
		"delete element inet kiln job_ifs { \"kt3\" }\n"
		"delete element inet kiln job_guests { \"kt3\" . 172.30.0.14 }\n"
		"delete element inet kiln job_policy { \"kt3\" }\n"
		"flush chain inet kiln job_kt3\n"
		"delete chain inet kiln job_kt3\n";
	static const char *const allowed[] = { "192.168.5.0/24", "10.9.9.9" };
	struct jobnet n;
	char buf[16384], want[8192];
	const char *why;
	size_t i;

	/* No DNS server, no policy: the default list alone. */
	memset(&n, 0, sizeof(n));
	ck_assert_int_eq(jobnet_addrs(3, &n, NULL), KILN_OK);
	snprintf(n.job_id, sizeof(n.job_id), "1234");
	snprintf(want, sizeof(want), "%s%s", want_add, want_elements);
	ck_assert_int_eq(jobnet_nft_script(&n, true, buf, sizeof(buf)), (int)strlen(want));
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(jobnet_nft_script(&n, false, buf, sizeof(buf)), (int)strlen(want_del));
	ck_assert_str_eq(buf, want_del);

	/* Its DNS server first, then allowed, then denied (all else); the
	 * limits are not part of it. */
	snprintf(n.dns, sizeof(n.dns), "10.0.0.53");
	n.policy.tx_rate = 104857600;
	n.policy.rx_rate = 1;
	for (i = 0; i < 2; i++)
		ck_assert(kiln_cidr_parse(allowed[i], &n.policy.allowed.v[n.policy.allowed.n++], &why));
	ck_assert(kiln_cidr_parse("0.0.0.0/0", &n.policy.denied.v[n.policy.denied.n++], &why));
	snprintf(want, sizeof(want), "%s%s%s", want_add, want_policy, want_elements);
	ck_assert_int_eq(jobnet_nft_script(&n, true, buf, sizeof(buf)), (int)strlen(want));
	ck_assert_str_eq(buf, want);
	/* The policy never changes what removal does. */
	ck_assert_int_eq(jobnet_nft_script(&n, false, buf, sizeof(buf)), (int)strlen(want_del));

	/* Too small a buffer: -1, never a cut script. */
	ck_assert_int_eq(jobnet_nft_script(&n, true, buf, 100), -1);
	ck_assert_int_eq(jobnet_nft_script(&n, true, buf, strlen(want)), -1);
	ck_assert_int_eq(jobnet_nft_script(&n, false, buf, strlen(want_del)), -1);

	/* The longest policy fits the buffer jobnet_setup uses (16 KiB). */
	n.policy.allowed.n = n.policy.denied.n = KILN_MAX_NETWORKS;
	for (i = 0; i < KILN_MAX_NETWORKS; i++)
		n.policy.allowed.v[i] = n.policy.denied.v[i] = (struct kiln_cidr){ 0xfffffffeu, 31 };
	ck_assert_int_eq(jobnet_addrs(JOBNET_SLOTS - 1, &n, NULL), KILN_OK);
	snprintf(n.dns, sizeof(n.dns), "255.255.255.255");
	ck_assert_int_gt(jobnet_nft_script(&n, true, buf, sizeof(buf)), 0);

	/* The tx limit goes first in the chain, alone (a kernel without
	 * nft_limit must fail only it); a small rate still lets a 64 KiB
	 * frame through. */
	ck_assert_int_eq(jobnet_addrs(3, &n, NULL), KILN_OK);
	n.policy.tx_rate = 104857600;
	ck_assert_int_gt(jobnet_nft_limit_script(&n, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "insert rule inet kiln job_kt3 limit rate over 104857600 bytes/second burst "
			      "10485760 bytes drop\n");
	n.policy.tx_rate = 1000;
	ck_assert_int_gt(jobnet_nft_limit_script(&n, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "insert rule inet kiln job_kt3 limit rate over 1000 bytes/second burst 65536 bytes drop\n");
	n.policy.tx_rate = LONG_MAX;
	ck_assert_int_gt(jobnet_nft_limit_script(&n, buf, sizeof(buf)), 0);
	ck_assert_int_eq(jobnet_nft_limit_script(&n, buf, 40), -1);
}
END_TEST

/* The allowed_networks/denied_networks syntax: IPv4, host bits clear. */
START_TEST(cidr_parse)
{
	static const struct {
		const char *in, *out; /* out: the canonical text, or the reason */
	} cases[] = {
		{ "10.0.0.0/8", "10.0.0.0/8" },
		{ "169.254.169.254", "169.254.169.254/32" },
		{ "0.0.0.0/0", "0.0.0.0/0" },
		{ "192.168.1.128/25", "192.168.1.128/25" },
		{ "203.0.113.7/32", "203.0.113.7/32" },
		{ "10.0.0.1/8", "host bits are set after the prefix length (write the network's first address)" },
		{ "10.0.0.0/33", "the prefix length must be 0..32" },
		{ "10.0.0.0/", "the prefix length must be 0..32" },
		{ "10.0.0.0/8x", "the prefix length must be 0..32" },
		{ "10.0.0.0/0008", "the prefix length must be 0..32" },
		{ "fd00::/8", "IPv6 is not supported: the job network is IPv4 only" },
		{ "256.0.0.0/8", "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)" },
		{ "10.0.0/8", "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)" },
		{ "10.0.0.0 /8", "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)" },
		{ "", "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)" },
		{ "lan", "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kiln_cidr c;
		const char *why = NULL;
		char buf[KILN_CIDR_STR_MAX];

		if (kiln_cidr_parse(cases[i].in, &c, &why)) {
			kiln_cidr_str(&c, buf, sizeof(buf));
			ck_assert_msg(strcmp(buf, cases[i].out) == 0, "'%s' -> '%s'", cases[i].in, buf);
		} else {
			ck_assert_msg(strcmp(why, cases[i].out) == 0, "'%s': %s", cases[i].in, why);
		}
	}
}
END_TEST

START_TEST(resolv_conf)
{
	char dns[16];

	ck_assert_int_eq(jobnet_parse_resolv("nameserver 10.255.255.53\n", dns, sizeof(dns)), 1);
	ck_assert_str_eq(dns, "10.255.255.53");
	/* loopback (systemd-resolved, dnsmasq), comments, IPv6 and junk are skipped */
	ck_assert_int_eq(jobnet_parse_resolv("# generated\n"
					     "; nameserver 9.9.9.9\n"
					     "#nameserver 8.8.4.4\n"
					     "search example.org\n"
					     "nameserver 127.0.0.53\n"
					     "nameserver 127.1.2.3\n"
					     "nameserver 0.0.0.0\n"
					     "nameserver ::1\n"
					     "nameserver 2001:db8::1\n"
					     "nameserver 1.2.3.400\n"
					     "nameserver\n"
					     "  nameserver\t192.0.2.7   # office\r\n"
					     "nameserver 198.51.100.1\n",
					     dns, sizeof(dns)), 1);
	ck_assert_str_eq(dns, "192.0.2.7");
	ck_assert_int_eq(jobnet_parse_resolv("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", dns,
					     sizeof(dns)), 0);
	ck_assert_str_eq(dns, "");
	ck_assert_int_eq(jobnet_parse_resolv("", dns, sizeof(dns)), 0);
	ck_assert_int_eq(jobnet_parse_resolv("nameserver 8.8.8.8", dns, sizeof(dns)), 1); /* no newline */
	ck_assert_str_eq(dns, "8.8.8.8");
}
END_TEST

/* A host with systemd-resolved names only its stub 127.0.0.53 in
 * /etc/resolv.conf: the guest gets the first upstream server instead. */
START_TEST(dns_from_files)
{
	char stub[PATH_MAX], upstream[PATH_MAX], missing[PATH_MAX], dns[16];
	const char *paths[4];
	FILE *f;

	make_scratch();
	snprintf(stub, sizeof(stub), "%s/resolv.conf", scratch);
	snprintf(upstream, sizeof(upstream), "%s/resolved.conf", scratch);
	snprintf(missing, sizeof(missing), "%s/missing.conf", scratch);
	f = fopen(stub, "w");
	ck_assert_ptr_nonnull(f);
	fputs("nameserver 127.0.0.53\noptions edns0 trust-ad\n", f);
	fclose(f);
	f = fopen(upstream, "w");
	ck_assert_ptr_nonnull(f);
	fputs("# resolved's upstreams\nnameserver 192.168.1.1\nnameserver 10.0.0.1\n", f);
	fclose(f);
	paths[0] = missing;
	paths[1] = stub;
	paths[2] = upstream;
	paths[3] = NULL;
	ck_assert_int_eq(jobnet_read_dns(paths, dns, sizeof(dns)), 2);
	ck_assert_str_eq(dns, "192.168.1.1");
	paths[2] = NULL;
	ck_assert_int_eq(jobnet_read_dns(paths, dns, sizeof(dns)), -1);
	ck_assert_str_eq(dns, "");
	paths[0] = upstream;
	ck_assert_int_eq(jobnet_read_dns(paths, dns, sizeof(dns)), 0);
	ck_assert_str_eq(dns, "192.168.1.1");
	drop_scratch();
}
END_TEST

START_TEST(claim_writes_owner)
{
	struct kiln_err e = { 0 };
	char path[PATH_MAX], text[256], want[128], job[64];
	unsigned slot = 99;
	pid_t pid;

	make_scratch();
	ck_assert_int_eq(jobnet_claim(net(), "job-1", 16, NULL, NULL, &slot, path, sizeof(path), NULL, &e), KILN_OK);
	ck_assert_uint_eq(slot, 0);
	ck_assert_str_eq(path + strlen(net()), "/slot-0");
	read_file(path, text, sizeof(text));
	snprintf(want, sizeof(want), "pid=%d\nstart=", (int)getpid());
	ck_assert_msg(strncmp(text, want, strlen(want)) == 0, "slot file: %s", text);
	ck_assert_ptr_nonnull(strstr(text, "\njob=job-1\n"));
	ck_assert_int_eq(jobnet_slot_live(path, &pid, job, sizeof(job)), 1);
	ck_assert_int_eq(pid, getpid());
	ck_assert_str_eq(job, "job-1");

	ck_assert_int_eq(jobnet_claim(net(), "job-2", 16, NULL, NULL, &slot, path, sizeof(path), NULL, &e), KILN_OK);
	ck_assert_uint_eq(slot, 1);
	ck_assert_int_eq(jobnet_claim(net(), "job/3", 16, NULL, NULL, &slot, path, sizeof(path), NULL, &e),
			 KILN_E_INVALID);
	ck_assert_int_eq(jobnet_claim(net(), "", 16, NULL, NULL, &slot, path, sizeof(path), NULL, &e), KILN_E_INVALID);
	drop_scratch();
}
END_TEST

START_TEST(claim_concurrent_distinct)
{
	enum { KIDS = 8 };
	int res[2], go[2], i;
	pid_t kids[KIDS];
	bool seen[KIDS] = { false };

	make_scratch();
	ck_assert_int_eq(pipe(res), 0);
	ck_assert_int_eq(pipe(go), 0);
	for (i = 0; i < KIDS; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			char job[16], path[PATH_MAX], c;
			unsigned slot = 999;

			close(res[0]);
			close(go[1]);
			snprintf(job, sizeof(job), "job-%d", i);
			if (jobnet_claim(net(), job, 64, NULL, NULL, &slot, path, sizeof(path), NULL, NULL) != KILN_OK)
				slot = 1000;
			if (write(res[1], &slot, sizeof(slot)) != sizeof(slot))
				_exit(1);
			/* stay alive (owning the slot) until all have claimed */
			while (read(go[0], &c, 1) > 0)
				;
			_exit(0);
		}
	}
	close(res[1]);
	close(go[0]);
	for (i = 0; i < KIDS; i++) {
		unsigned slot;

		ck_assert_int_eq(read(res[0], &slot, sizeof(slot)), sizeof(slot));
		ck_assert_msg(slot < KIDS, "child got slot %u", slot);
		ck_assert_msg(!seen[slot], "slot %u given twice", slot);
		seen[slot] = true;
	}
	close(go[1]);
	close(res[0]);
	for (i = 0; i < KIDS; i++)
		waitpid(kids[i], NULL, 0);
	drop_scratch();
}
END_TEST

START_TEST(claim_reuses_stale_not_live)
{
	struct kiln_err e = { 0 };
	char path[PATH_MAX], text[256], buf[128];
	unsigned slot = 99;

	make_scratch();
	/* 0: a live owner (us); 1: a dead one; 2: our pid, but another
	 * process's start time (pid reuse); 3: garbage. */
	snprintf(buf, sizeof(buf), "pid=%d\njob=live\n", (int)getpid());
	write_slot(0, buf);
	snprintf(buf, sizeof(buf), "pid=%d\nstart=12345\njob=dead\n", (int)dead_pid());
	write_slot(1, buf);
	snprintf(buf, sizeof(buf), "pid=%d\nstart=1\njob=reused\n", (int)getpid());
	write_slot(2, buf);
	write_slot(3, "");

	n_reclaimed = 0;
	ck_assert_int_eq(jobnet_claim(net(), "new-1", 16, record_reclaim, &n_reclaimed, &slot, path,
				      sizeof(path), NULL, &e), KILN_OK);
	ck_assert_uint_eq(slot, 1);
	read_file(path, text, sizeof(text));
	ck_assert_ptr_nonnull(strstr(text, "job=new-1\n"));
	ck_assert_int_eq(jobnet_claim(net(), "new-2", 16, record_reclaim, &n_reclaimed, &slot, path,
				      sizeof(path), NULL, &e), KILN_OK);
	ck_assert_uint_eq(slot, 2);
	ck_assert_int_eq(jobnet_claim(net(), "new-3", 16, record_reclaim, &n_reclaimed, &slot, path,
				      sizeof(path), NULL, &e), KILN_OK);
	ck_assert_uint_eq(slot, 3);
	ck_assert_int_eq(n_reclaimed, 3);
	ck_assert_uint_eq(reclaimed[0], 1);
	ck_assert_uint_eq(reclaimed[1], 2);
	ck_assert_uint_eq(reclaimed[2], 3);

	/* the live slot 0 is still the same file */
	snprintf(path, sizeof(path), "%s/slot-0", net());
	read_file(path, text, sizeof(text));
	ck_assert_ptr_nonnull(strstr(text, "job=live\n"));

	/* all four live now: the pool of 4 is exhausted */
	ck_assert_int_eq(jobnet_claim(net(), "new-4", 4, record_reclaim, &n_reclaimed, &slot, path,
				      sizeof(path), NULL, &e), KILN_E_LIMIT);
	ck_assert_int_eq(n_reclaimed, 3);
	ck_assert_msg(strstr(e.msg, "all 4 network slots in ") != NULL, "%s", e.msg);
	drop_scratch();
}
END_TEST

START_TEST(sweep_keeps_live_and_lookup)
{
	struct kiln_err e = { 0 };
	struct jobnet n;
	char path[PATH_MAX], buf[128];
	unsigned slot;

	make_scratch();
	/* no net folder yet: nothing to sweep */
	ck_assert_int_eq(jobnet_sweep(&e), KILN_OK);
	ck_assert_int_eq(jobnet_claim(net(), "a", 16, NULL, NULL, &slot, path, sizeof(path), NULL, &e), KILN_OK);
	ck_assert_int_eq(jobnet_claim(net(), "b", 16, NULL, NULL, &slot, path, sizeof(path), NULL, &e), KILN_OK);
	snprintf(buf, sizeof(buf), "pid=%d\njob=other\n", (int)getppid());
	write_slot(7, buf);
	/* only live owners: sweep leaves every file (and runs no tool) */
	ck_assert_int_eq(jobnet_sweep(&e), KILN_OK);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/slot-7", net());
	ck_assert_int_eq(access(path, F_OK), 0);

	ck_assert_int_eq(jobnet_lookup("b", &n, &e), KILN_OK);
	ck_assert(n.enabled && n.claimed);
	ck_assert_uint_eq(n.slot, 1);
	ck_assert_str_eq(n.tap, "kt1");
	ck_assert_str_eq(n.guest_ip, "172.30.0.6");
	ck_assert_int_eq(n.owner, getpid());
	ck_assert_ptr_nonnull(strstr(n.slot_file, "/net/slot-1"));
	ck_assert_ptr_nonnull(strstr(n.cmdline, "kiln.ip=172.30.0.6/30 kiln.gw=172.30.0.5"));
	ck_assert_int_eq(jobnet_lookup("other", &n, &e), KILN_OK);
	ck_assert_uint_eq(n.slot, 7);
	ck_assert_int_eq(jobnet_lookup("c", &n, &e), KILN_E_NOTFOUND);
	ck_assert(!n.enabled);
	/* two kiln processes ran jobs of one id: the lowest slot answers */
	snprintf(buf, sizeof(buf), "pid=%d\njob=twice\n", (int)getppid());
	write_slot(12, buf);
	write_slot(9, buf);
	write_slot(10, buf);
	ck_assert_int_eq(jobnet_lookup("twice", &n, &e), KILN_OK);
	ck_assert_uint_eq(n.slot, 9);
	ck_assert_int_eq(n.owner, getppid());
	ck_assert_ptr_nonnull(strstr(n.slot_file, "/net/slot-9"));
	drop_scratch();
}
END_TEST

/* Finding 7 of issue 13: two kiln processes with their own state folders
 * (a `kiln exec` beside a `kiln run`) each claimed slot 0 under
 * <state_dir>/net and shared kt0. Claims now live in one folder for the
 * host, whatever the state folder. */
START_TEST(claims_are_host_global)
{
	static const char *const states[] = { "/var/lib/kiln", "/home/dev/.local/state/kiln" };
	char path[2][PATH_MAX];
	unsigned slot[2] = { 99, 99 };
	int i;

	unsetenv(JOBNET_DIR_ENV);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(setenv("KILN_STATE_DIR", states[i], 1), 0);
		ck_assert_str_eq(jobnet_dir(), "/run/kiln/net");
	}
	unsetenv("KILN_STATE_DIR");
	make_scratch();
	ck_assert_str_eq(jobnet_dir(), net());
	/* Each "kiln" claims for its job 1 (both number their jobs alike). */
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(jobnet_claim(jobnet_dir(), "1", 16, NULL, NULL, &slot[i], path[i],
					      sizeof(path[i]), NULL, NULL), KILN_OK);
	ck_assert_uint_eq(slot[0], 0);
	ck_assert_uint_eq(slot[1], 1);
	ck_assert_str_ne(path[0], path[1]);
	drop_scratch();
}
END_TEST

/* A service's slot reaches its job's VM and back (issue #16); its id names
 * the peer so that a sweep after a crash removes the pair. */
START_TEST(service_peers)
{
	struct jobnet n;
	char buf[4096], id[JOBNET_JOB_ID_MAX + 1], tap[16], big[80];

	memset(&n, 0, sizeof(n));
	ck_assert_int_eq(jobnet_addrs(7, &n, NULL), KILN_OK);
	ck_assert_int_eq(jobnet_peer_script(&n, true, buf, sizeof(buf)), -1); /* no peer */
	snprintf(n.peer_tap, sizeof(n.peer_tap), "kt3");
	ck_assert_int_gt(jobnet_peer_script(&n, true, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "add set inet kiln job_peers { type ifname . ifname; }\n"));
	ck_assert_ptr_nonnull(strstr(buf, "add element inet kiln job_peers { \"kt7\" . \"kt3\", \"kt3\" . \"kt7\" }\n"));
	ck_assert_ptr_null(strstr(buf, "delete"));
	ck_assert_int_gt(jobnet_peer_script(&n, false, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "add element inet kiln job_peers { \"kt7\" . \"kt3\", \"kt3\" . \"kt7\" }\n"
					  "delete element inet kiln job_peers { \"kt7\" . \"kt3\", \"kt3\" . \"kt7\" }\n"));
	ck_assert_int_eq(jobnet_peer_script(&n, true, buf, 40), -1);

	ck_assert_int_gt(jobnet_service_id("1234", 2, 3, id, sizeof(id)), 0);
	ck_assert_str_eq(id, "1234.svc2.peer3");
	ck_assert(jobnet_service_peer(id, tap, sizeof(tap)));
	ck_assert_str_eq(tap, "kt3");
	ck_assert(jobnet_service_peer("x.peer9.svc0.peer16383", tap, sizeof(tap)));
	ck_assert_str_eq(tap, "kt16383");
	ck_assert(!jobnet_service_peer("1234", tap, sizeof(tap)));
	ck_assert_str_eq(tap, "");
	ck_assert(!jobnet_service_peer("1.svc0.peer16384", tap, sizeof(tap)));
	ck_assert(!jobnet_service_peer("1.svc0.peer03", tap, sizeof(tap)));
	ck_assert(!jobnet_service_peer("1.svc0.peer3x", tap, sizeof(tap)));
	/* A pair a crash left behind goes when either slot is set up again. */
	ck_assert_int_gt(jobnet_peers_forget_script("table inet kiln {\n\tset job_peers {\n"
						    "\t\telements = { \"kt1\" . \"kt0\",\n\t\t\t\"kt0\" . \"kt1\",\n"
						    "\t\t\t\"kt12\" . \"kt10\" }\n\t}\n}\n",
						    "kt1", buf, sizeof(buf)),
			 0);
	ck_assert_ptr_nonnull(strstr(buf, "delete element inet kiln job_peers { \"kt1\" . \"kt0\" }\n"
					  "delete element inet kiln job_peers { \"kt0\" . \"kt1\" }\n"));
	ck_assert_ptr_null(strstr(buf, "kt12"));
	ck_assert_int_eq(jobnet_peers_forget_script("elements = { \"kt12\" . \"kt10\" }", "kt1", buf, sizeof(buf)), 0);
	memset(big, '9', 60);
	big[60] = '\0';
	ck_assert_int_eq(jobnet_service_id(big, 1, 3, id, sizeof(id)), -1);
}
END_TEST

/* A job's services reach each other (gitlab-runner's network per build):
 * every pair of enabled service nets, both ways, and nothing else. */
START_TEST(service_siblings)
{
	struct jobnet a, b, c, off;
	const struct jobnet *nets[4] = { &a, &b, &off, &c };
	char buf[4096], forget[4096];

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(jobnet_addrs(4, &a, NULL), KILN_OK);
	ck_assert_int_eq(jobnet_addrs(5, &b, NULL), KILN_OK);
	ck_assert_int_eq(jobnet_addrs(9, &c, NULL), KILN_OK);
	a.enabled = b.enabled = c.enabled = true;
	jobnet_disabled(&off);
	ck_assert_int_eq(jobnet_siblings_script(nets, 1, buf, sizeof(buf)), 0);
	ck_assert_int_eq(jobnet_siblings_script((const struct jobnet *const[]){ &a, &off }, 2, buf, sizeof(buf)), 0);
	ck_assert_int_gt(jobnet_siblings_script(nets, 4, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "add set inet kiln job_peers { type ifname . ifname; }\n"));
	ck_assert_ptr_nonnull(strstr(buf, "add element inet kiln job_peers { \"kt4\" . \"kt5\", \"kt5\" . \"kt4\" }\n"
					  "add element inet kiln job_peers { \"kt4\" . \"kt9\", \"kt9\" . \"kt4\" }\n"
					  "add element inet kiln job_peers { \"kt5\" . \"kt9\", \"kt9\" . \"kt5\" }\n"));
	/* Three pairs, no more: no element of the disabled net, no base chain
	 * and nothing deleted. */
	ck_assert_ptr_null(strstr(strstr(buf, "{ \"kt5\" . \"kt9\"") + 1, "add element"));
	ck_assert_ptr_null(strstr(buf, "delete"));
	ck_assert_ptr_null(strstr(buf, "chain"));
	ck_assert_int_eq(jobnet_siblings_script(nets, 4, buf, 200), -1);
	/* Teardown of a service forgets all its pairs: the job's and its siblings'. */
	ck_assert_int_gt(jobnet_peers_forget_script("elements = { \"kt5\" . \"kt0\", \"kt0\" . \"kt5\",\n"
						    "\"kt4\" . \"kt5\", \"kt5\" . \"kt4\", \"kt4\" . \"kt9\" }",
						    "kt5", forget, sizeof(forget)),
			 0);
	ck_assert_ptr_nonnull(strstr(forget, "delete element inet kiln job_peers { \"kt4\" . \"kt5\" }\n"
					     "delete element inet kiln job_peers { \"kt5\" . \"kt4\" }\n"));
	ck_assert_ptr_null(strstr(forget, "\"kt9\""));
}
END_TEST

Suite *jobnet_suite(void)
{
	Suite *s = suite_create("jobnet");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, addrs_of_slots);
	tcase_add_test(tc, cmdline);
	tcase_add_test(tc, nft_script_golden);
	tcase_add_test(tc, service_peers);
	tcase_add_test(tc, cidr_parse);
	tcase_add_test(tc, resolv_conf);
	tcase_add_test(tc, dns_from_files);
	tcase_add_test(tc, claim_writes_owner);
	tcase_add_test(tc, claim_concurrent_distinct);
	tcase_add_test(tc, claim_reuses_stale_not_live);
	tcase_add_test(tc, sweep_keeps_live_and_lookup);
	tcase_add_test(tc, claims_are_host_global);
	tcase_add_test(tc, service_siblings);
	suite_add_tcase(s, tc);
	return s;
}
