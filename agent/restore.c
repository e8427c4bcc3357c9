#include "agent/restore.h"

#include "agent/log.h"
#include "agent/net.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int bad(char *err, size_t errsz, const char *field, const char *msg)
{
	snprintf(err, errsz, "%s: %s", field, msg);
	return -EINVAL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Lowercase hex of at most max bytes into out; the byte count, or -1. */
static long unhex(const char *s, size_t n, uint8_t *out, size_t max)
{
	size_t i;

	if (n % 2 || n / 2 > max)
		return -1;
	for (i = 0; i < n; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

/* An optional (required: must be there) string member of at most size-1
 * bytes, each accepted by ok(). */
static int get_str(json_t *o, const char *key, int required, char *out, size_t size, int (*ok)(int),
		   char *err, size_t errsz)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	size_t n, i;

	out[0] = '\0';
	if (!v)
		return required ? bad(err, errsz, key, "missing") : 0;
	if (!json_is_string(v))
		return bad(err, errsz, key, "must be a string");
	s = json_string_value(v);
	n = json_string_length(v);
	if (n >= size)
		return bad(err, errsz, key, "too long");
	for (i = 0; i < n; i++)
		if (!ok((unsigned char)s[i]))
			return bad(err, errsz, key, "has a character it may not have");
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static int is_hex(int c)
{
	return hexval((char)c) >= 0;
}

static int is_hostchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static int is_addrchar(int c)
{
	return (c >= '0' && c <= '9') || c == '.' || c == '/';
}

static int is_macchar(int c)
{
	return is_hex(c) || c == ':';
}

int restore_parse(const void *json, size_t len, struct restore_msg *m, char *err, size_t errsz)
{
	char hex[RESTORE_ENTROPY_MAX * 2 + 1];
	json_error_t je;
	json_t *o, *net;
	long n;
	int rc = -EINVAL;

	memset(m, 0, sizeof(*m));
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!o || !json_is_object(o)) {
		snprintf(err, errsz, "not a JSON object: %s", o ? "" : je.text);
		goto out;
	}
	if (get_str(o, "entropy", 1, hex, sizeof(hex), is_hex, err, errsz) < 0)
		goto out;
	n = unhex(hex, strlen(hex), m->entropy, sizeof(m->entropy));
	if (n < RESTORE_ENTROPY_MIN) {
		bad(err, errsz, "entropy", "must be 16 to 64 bytes of lowercase hex");
		goto out;
	}
	m->entropy_len = (size_t)n;
	if (get_str(o, "hostname", 1, m->hostname, sizeof(m->hostname), is_hostchar, err, errsz) < 0 ||
	    get_str(o, "machine_id", 1, m->machine_id, sizeof(m->machine_id), is_hex, err, errsz) < 0)
		goto out;
	if (!m->hostname[0] || m->hostname[0] == '-') {
		bad(err, errsz, "hostname", "must be a DNS label");
		goto out;
	}
	if (strlen(m->machine_id) != 32) {
		bad(err, errsz, "machine_id", "must be 32 hex digits");
		goto out;
	}
	net = json_object_get(o, "net");
	if (net) {
		struct in_addr a, mask;

		if (!json_is_object(net)) {
			bad(err, errsz, "net", "must be an object");
			goto out;
		}
		if (get_str(net, "mac", 0, m->mac, sizeof(m->mac), is_macchar, err, errsz) < 0 ||
		    get_str(net, "ip", 1, m->ip, sizeof(m->ip), is_addrchar, err, errsz) < 0 ||
		    get_str(net, "gw", 0, m->gw, sizeof(m->gw), is_addrchar, err, errsz) < 0 ||
		    get_str(net, "dns", 0, m->dns, sizeof(m->dns), is_addrchar, err, errsz) < 0)
			goto out;
		if (m->mac[0] && strlen(m->mac) != 17) {
			bad(err, errsz, "net.mac", "must be aa:bb:cc:dd:ee:ff");
			goto out;
		}
		if (net_parse_cidr(m->ip, &a, &mask) < 0) {
			bad(err, errsz, "net.ip", "must be A.B.C.D/PREFIX");
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

/* Credit the bytes to the CRNG and force a reseed: the restored pool is
 * every sibling's pool. */
static int reseed(const struct restore_msg *m)
{
	struct {
		struct rand_pool_info info;
		uint8_t buf[RESTORE_ENTROPY_MAX];
	} p;
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	p.info.entropy_count = (int)m->entropy_len * 8;
	p.info.buf_size = (int)m->entropy_len;
	memcpy(p.buf, m->entropy, m->entropy_len);
	if (ioctl(fd, RNDADDENTROPY, &p) < 0)
		rc = -errno;
	/* Kernels before 5.18 need it; later ones reseed on added entropy. */
	if (ioctl(fd, RNDRESEEDCRNG) < 0 && errno != EINVAL && !rc)
		rc = -errno;
	close(fd);
	return rc;
}

static int set_mac(const char *mac)
{
	struct ifreq ifr = { 0 };
	unsigned v[6];
	int s, i, rc = 0;

	if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -EINVAL;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	/* The address changes only while the link is down. */
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags &= (short)~IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	for (i = 0; i < 6; i++)
		ifr.ifr_hwaddr.sa_data[i] = (char)v[i];
	if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0)
		rc = -errno;
	close(s);
	return rc;
}

static int first(int rc, int more)
{
	return rc ? rc : more;
}

int restore_apply(const struct restore_msg *m)
{
	char line[256];
	int rc = 0, r;
	FILE *f;

	if ((r = reseed(m)) < 0)
		say("restore: cannot reseed the CRNG: %s", strerror(-r));
	rc = first(rc, r);
	if (sethostname(m->hostname, strlen(m->hostname)) < 0) {
		r = -errno;
		say("restore: cannot set the hostname: %s", strerror(errno));
		rc = first(rc, r);
	}
	f = fopen("/etc/machine-id", "we");
	r = f && fprintf(f, "%s\n", m->machine_id) > 0 ? 0 : -EIO;
	if ((f && fclose(f) != 0) || r < 0) {
		rc = first(rc, -EIO);
		say("restore: cannot write /etc/machine-id");
	}
	if (m->ip[0]) {
		if (m->mac[0] && (r = set_mac(m->mac)) < 0) {
			say("restore: cannot set eth0's MAC: %s", strerror(-r));
			rc = first(rc, r);
		}
		/* The boot's own path, fed the host's word instead of the
		 * command line the template booted with. */
		snprintf(line, sizeof(line), "kiln.ip=%s%s%s%s%s", m->ip, m->gw[0] ? " kiln.gw=" : "", m->gw,
			 m->dns[0] ? " kiln.dns=" : "", m->dns);
		rc = first(rc, net_setup(line));
	}
	return rc;
}
