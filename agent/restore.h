/* The RESTORED frame: a VM restored from a template is a copy of one that
 * booted once, so before its job it takes a new identity from the host:
 * entropy for the CRNG, hostname, machine-id and its network. See
 * docs/agent-protocol.md. */
#ifndef KILN_AGENT_RESTORE_H
#define KILN_AGENT_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#define RESTORE_ENTROPY_MIN 16
#define RESTORE_ENTROPY_MAX 64 /* bytes, sent as hex */
#define RESTORE_HOSTNAME_MAX 63
#define RESTORE_NET_MAX 47     /* "255.255.255.255/32" and the like, with room */

struct restore_msg {
	uint8_t entropy[RESTORE_ENTROPY_MAX];
	size_t entropy_len;
	char hostname[RESTORE_HOSTNAME_MAX + 1];
	char machine_id[33];          /* 32 lowercase hex digits */
	char mac[18];                 /* "aa:bb:cc:dd:ee:ff", or "" to keep it */
	char ip[RESTORE_NET_MAX + 1]; /* A.B.C.D/PREFIX, or "" for no network */
	char gw[RESTORE_NET_MAX + 1];
	char dns[RESTORE_NET_MAX + 1];
};

/* Parse the frame's JSON: {"entropy": HEX, "hostname": S, "machine_id": HEX32,
 * "net": {"mac": S, "ip": CIDR, "gw": A, "dns": A}?}. Every field is checked
 * against its bound and shape; 0, or -EINVAL with err naming the field. */
int restore_parse(const void *json, size_t len, struct restore_msg *m, char *err, size_t errsz);

/* Make the running machine the new one: mix the entropy into the CRNG and
 * reseed it, set the hostname, write /etc/machine-id, move eth0 to the new
 * MAC and address. Every failure is said and the rest attempted; 0, or
 * -errno of the first failure. */
int restore_apply(const struct restore_msg *m);

#endif
