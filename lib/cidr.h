/* IPv4 networks in CIDR notation, for the job network's egress policy
 * (executors/jobnet.h) and the `allowed_networks`/`denied_networks` settings
 * (runner/config.h). The job network is IPv4 only: IPv6 is refused. */
#ifndef KILN_CIDR_H
#define KILN_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_CIDR_STR_MAX 19 /* "255.255.255.255/32" and its NUL */
#define KILN_MAX_NETWORKS 32 /* entries in one allowed or denied list */

struct kiln_cidr {
	uint32_t addr;   /* host byte order, host bits zero */
	unsigned prefix; /* 0..32 */
};

/* A list of networks, small and fixed so that settings copy by value. */
struct kiln_cidrs {
	size_t n;
	struct kiln_cidr v[KILN_MAX_NETWORKS];
};

/* Parse "a.b.c.d/len" (len 0..32) or a bare "a.b.c.d" (a /32) into c.
 * Host bits must be zero: 10.0.0.1/8 is refused rather than guessed at.
 * On failure returns false and *why (static text) says what is wrong. */
bool kiln_cidr_parse(const char *s, struct kiln_cidr *c, const char **why);

/* c as "a.b.c.d/len" into buf (size >= KILN_CIDR_STR_MAX fits any). */
void kiln_cidr_str(const struct kiln_cidr *c, char *buf, size_t size);

#endif
