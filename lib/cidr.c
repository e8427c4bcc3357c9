#include "lib/cidr.h"

#include <stdio.h>
#include <string.h>

/* a.b.c.d with each part 1..3 digits and 0..255; *end gets what follows. */
static bool parse_quad(const char *s, uint32_t *addr, const char **end)
{
	uint32_t a = 0;
	int part;

	for (part = 0; part < 4; part++) {
		unsigned v = 0;
		int digits = 0;

		while (*s >= '0' && *s <= '9' && digits < 4) {
			v = v * 10 + (unsigned)(*s++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
		a = a << 8 | v;
		if (part < 3 && *s++ != '.')
			return false;
	}
	*addr = a;
	*end = s;
	return true;
}

static uint32_t mask_of(unsigned prefix)
{
	return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

bool kiln_cidr_parse(const char *s, struct kiln_cidr *c, const char **why)
{
	const char *p;
	uint32_t addr;
	unsigned prefix = 32;

	if (strchr(s, ':')) {
		*why = "IPv6 is not supported: the job network is IPv4 only";
		return false;
	}
	if (!parse_quad(s, &addr, &p)) {
		*why = "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)";
		return false;
	}
	if (*p == '/') {
		int digits = 0;

		for (prefix = 0, p++; *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
			prefix = prefix * 10 + (unsigned)(*p - '0');
		if (digits == 0 || *p || prefix > 32) {
			*why = "the prefix length must be 0..32";
			return false;
		}
	} else if (*p) {
		*why = "not an IPv4 address or network (a.b.c.d or a.b.c.d/len)";
		return false;
	}
	if (addr & ~mask_of(prefix)) {
		*why = "host bits are set after the prefix length (write the network's first address)";
		return false;
	}
	c->addr = addr;
	c->prefix = prefix;
	return true;
}

void kiln_cidr_str(const struct kiln_cidr *c, char *buf, size_t size)
{
	snprintf(buf, size, "%u.%u.%u.%u/%u", c->addr >> 24, (c->addr >> 16) & 255,
		 (c->addr >> 8) & 255, c->addr & 255, c->prefix);
}
