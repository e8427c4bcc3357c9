#include "agent/net.h"
#include "agent/cmdline.h"
#include "agent/log.h"
#include "lib/atomicfile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define RESOLV_CONF "/etc/resolv.conf"

int net_parse_cidr(const char *s, struct in_addr *addr, struct in_addr *mask)
{
	char ip[INET_ADDRSTRLEN], *end;
	const char *slash = strchr(s, '/');
	unsigned long prefix;

	if (!slash || (size_t)(slash - s) >= sizeof(ip) || !slash[1])
		return -EINVAL;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	if (inet_pton(AF_INET, ip, addr) != 1)
		return -EINVAL;
	errno = 0;
	prefix = strtoul(slash + 1, &end, 10);
	if (errno || *end || prefix > 32 || slash[1] == '-' || slash[1] == '+')
		return -EINVAL;
	/* Shifting a 32-bit value by 32 is undefined: /0 is spelled out. */
	mask->s_addr = prefix ? htonl(~0u << (32 - prefix)) : 0;
	return 0;
}

static void set_sin(struct sockaddr *sa, struct in_addr a)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };

	memcpy(sa, &sin, sizeof(sin));
}

/* Give ifname an address and netmask and set it up. 0 or -errno. */
static int if_up(int sock, const char *ifname, struct in_addr addr, struct in_addr mask)
{
	struct ifreq ifr;
	const char *what = "SIOCSIFADDR";
	int rc = 0;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	set_sin(&ifr.ifr_addr, addr);
	if (ioctl(sock, SIOCSIFADDR, &ifr) < 0)
		goto fail;
	what = "SIOCSIFNETMASK";
	set_sin(&ifr.ifr_netmask, mask);
	if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0)
		goto fail;
	what = "SIOCGIFFLAGS";
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		goto fail;
	what = "SIOCSIFFLAGS";
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		goto fail;
	return 0;
fail:
	rc = -errno;
	say("%s: %s: %s", ifname, what, strerror(errno));
	return rc;
}

static int add_default_route(int sock, const char *ifname, struct in_addr gw)
{
	struct rtentry rt;
	char dev[IFNAMSIZ];
	int rc = 0;

	memset(&rt, 0, sizeof(rt));
	snprintf(dev, sizeof(dev), "%s", ifname);
	set_sin(&rt.rt_dst, (struct in_addr){ INADDR_ANY });
	set_sin(&rt.rt_genmask, (struct in_addr){ INADDR_ANY });
	set_sin(&rt.rt_gateway, gw);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = dev;
	if (ioctl(sock, SIOCADDRT, &rt) < 0 && errno != EEXIST) {
		rc = -errno;
		say("default route via %s: %s", inet_ntoa(gw), strerror(errno));
	}
	return rc;
}

/* Replace /etc/resolv.conf through a rename, which also replaces a symlink
 * into a resolver daemon's /run that this VM does not have. */
static int write_resolv_conf(struct in_addr dns)
{
	struct kiln_err e;
	char text[64];
	int n;

	n = snprintf(text, sizeof(text), "nameserver %s\n", inet_ntoa(dns));
	if (kiln_write_atomic(RESOLV_CONF, text, (size_t)n, 0644, &e)) {
		say("%s", e.msg);
		return -EIO;
	}
	return 0;
}

/* One parameter as an address; 0 absent, 1 set, -EINVAL malformed. */
static int param_addr(const char *cmdline, const char *key, struct in_addr *a)
{
	char val[64];
	int found = cmdline_get(cmdline, key, val, sizeof(val));

	if (found <= 0)
		return found < 0 ? -EINVAL : 0;
	if (inet_pton(AF_INET, val, a) != 1) {
		say("%s=%s: not an IPv4 address", key, val);
		return -EINVAL;
	}
	return 1;
}

static int setup_eth0(int sock, const char *cmdline)
{
	struct in_addr addr, mask, gw, dns;
	char cidr[64];
	int rc, first = 0, found;

	found = cmdline_get(cmdline, "kiln.ip", cidr, sizeof(cidr));
	if (found == 0)
		return 0;
	if (found < 0 || net_parse_cidr(cidr, &addr, &mask) < 0) {
		say("kiln.ip=%s: not A.B.C.D/PREFIX", cidr);
		return -EINVAL;
	}
	first = if_up(sock, "eth0", addr, mask);
	rc = param_addr(cmdline, "kiln.gw", &gw);
	if (rc > 0)
		rc = add_default_route(sock, "eth0", gw);
	first = first ? first : rc;
	rc = param_addr(cmdline, "kiln.dns", &dns);
	if (rc > 0)
		rc = write_resolv_conf(dns);
	return first ? first : rc;
}

int net_setup(const char *cmdline)
{
	struct in_addr lo, lomask;
	int sock = -1, rc, first;

	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		rc = -errno;
		say("network: socket: %s", strerror(errno));
		return rc;
	}
	lo.s_addr = htonl(INADDR_LOOPBACK);
	lomask.s_addr = htonl(0xff000000u);
	first = if_up(sock, "lo", lo, lomask);
	rc = setup_eth0(sock, cmdline);
	close(sock);
	sock = -1;
	return first ? first : (rc > 0 ? 0 : rc);
}
