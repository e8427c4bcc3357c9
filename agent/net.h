/* The guest's network, configured from the kernel command line:
 *   kiln.ip=A.B.C.D/PREFIX  address of eth0 (without it only lo comes up)
 *   kiln.gw=A.B.C.D         default route through eth0
 *   kiln.dns=A.B.C.D        the nameserver written to /etc/resolv.conf
 * Plain ioctls, no netlink: the agent stays small and static. */
#ifndef KILN_AGENT_NET_H
#define KILN_AGENT_NET_H

#include <netinet/in.h>

/* Parse "A.B.C.D/PREFIX" (PREFIX 0..32) into *addr and *mask (network
 * order). 0, or -EINVAL. */
int net_parse_cidr(const char *s, struct in_addr *addr, struct in_addr *mask);

/* Bring up lo, then eth0 as cmdline asks. Every failure is reported on
 * stderr and the rest still attempted (a job that needs no network can
 * still run). 0, or -errno of the first failure. */
int net_setup(const char *cmdline);

#endif
