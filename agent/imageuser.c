#include "agent/imageuser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* In db (passwd or group lines "name:x:id:gid..."), the entry named name:
 * its third field in *id and, for passwd, its fourth in *gid. */
static int lookup(const char *db, const char *name, unsigned long *id, unsigned long *gid)
{
	const char *line = db;
	size_t nlen = strlen(name);

	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char buf[512];

		if (len < sizeof(buf) && len > nlen && !strncmp(line, name, nlen) && line[nlen] == ':') {
			char *f2, *f3, *f4;

			memcpy(buf, line, len);
			buf[len] = '\0';
			f2 = strchr(buf + nlen + 1, ':');
			f3 = f2 ? f2 + 1 : NULL;
			f4 = f3 ? strchr(f3, ':') : NULL;
			if (f4)
				*f4++ = '\0';
			if (f3 && all_digits(f3)) {
				*id = strtoul(f3, NULL, 10);
				if (gid && f4) {
					char *f5 = strchr(f4, ':');

					if (f5)
						*f5 = '\0';
					*gid = all_digits(f4) ? strtoul(f4, NULL, 10) : 0;
				}
				return 0;
			}
		}
		line = end ? end + 1 : NULL;
	}
	return -1;
}

int image_resolve_user(const char *user, const char *passwd, const char *group, uid_t *uid, gid_t *gid, char *err,
		       size_t size)
{
	char u[256], *g;
	unsigned long id = 0, gd = 0;

	*uid = 0;
	*gid = 0;
	if (!user || !*user)
		return 0;
	if (strlen(user) >= sizeof(u)) {
		snprintf(err, size, "the image's user is too long");
		return -1;
	}
	snprintf(u, sizeof(u), "%s", user);
	g = strchr(u, ':');
	if (g)
		*g++ = '\0';
	if (all_digits(u)) {
		id = strtoul(u, NULL, 10);
		/* A numeric user with a passwd entry gets its group too. */
		if (passwd) {
			const char *line = passwd;

			while (line && *line) {
				unsigned long pid = 0, pgid = 0;
				const char *colon = strchr(line, ':');
				char name[256];

				if (colon && (size_t)(colon - line) < sizeof(name)) {
					memcpy(name, line, (size_t)(colon - line));
					name[colon - line] = '\0';
					if (!lookup(line, name, &pid, &pgid) && pid == id) {
						gd = pgid;
						break;
					}
				}
				line = strchr(line, '\n');
				line = line ? line + 1 : NULL;
			}
		}
	} else if (!passwd || lookup(passwd, u, &id, &gd) < 0) {
		snprintf(err, size, "user %s: not in the image's /etc/passwd", u);
		return -1;
	}
	if (g && *g) {
		if (all_digits(g))
			gd = strtoul(g, NULL, 10);
		else if (!group || lookup(group, g, &gd, NULL) < 0) {
			snprintf(err, size, "group %s: not in the image's /etc/group", g);
			return -1;
		}
	}
	if (id > 0x7fffffffUL || gd > 0x7fffffffUL) {
		snprintf(err, size, "user %s: id out of range", user);
		return -1;
	}
	*uid = (uid_t)id;
	*gid = (gid_t)gd;
	return 0;
}

/* Field n (0-based) of the line [line, end) into buf: 0, or -1 when the
 * line has fewer fields or the field does not fit. */
static int field(const char *line, const char *end, int n, char *buf, size_t size)
{
	const char *p = line, *q;

	for (; n > 0; n--) {
		p = memchr(p, ':', (size_t)(end - p));
		if (!p)
			return -1;
		p++;
	}
	q = memchr(p, ':', (size_t)(end - p));
	if (!q)
		q = end;
	if ((size_t)(q - p) >= size)
		return -1;
	memcpy(buf, p, (size_t)(q - p));
	buf[q - p] = '\0';
	return 0;
}

int passwd_home(const char *passwd, const char *name, char *home, size_t size)
{
	const char *line = passwd, *end;
	size_t nlen = strlen(name);

	while (line && *line) {
		end = strchrnul(line, '\n');
		if ((size_t)(end - line) > nlen && !strncmp(line, name, nlen) && line[nlen] == ':')
			return field(line, end, 5, home, size);
		line = *end ? end + 1 : NULL;
	}
	return -1;
}

unsigned long passwd_free_id(const char *passwd)
{
	const char *line = passwd, *end;
	unsigned long next = 1001, id;
	char buf[16];

	while (line && *line) {
		end = strchrnul(line, '\n');
		if (!field(line, end, 2, buf, sizeof(buf)) && all_digits(buf)) {
			id = strtoul(buf, NULL, 10);
			if (id >= next && id < 60000)
				next = id + 1;
		}
		line = *end ? end + 1 : NULL;
	}
	return next;
}

size_t group_ids_of(const char *group, const char *user, gid_t *out, size_t max)
{
	const char *line = group, *end, *m;
	size_t n = 0, ulen = strlen(user);
	char gid[16];

	while (line && *line && n < max) {
		end = strchrnul(line, '\n');
		/* The members are field 3 ("a,b,c"), after the third ':'. */
		m = line;
		for (int i = 0; i < 3 && m; i++) {
			m = memchr(m, ':', (size_t)(end - m));
			m = m ? m + 1 : NULL;
		}
		while (m && m < end) {
			const char *c = memchr(m, ',', (size_t)(end - m));

			if (!c)
				c = end;
			if ((size_t)(c - m) == ulen && !strncmp(m, user, ulen) && !field(line, end, 2, gid, sizeof(gid)) &&
			    all_digits(gid) && strtoul(gid, NULL, 10) <= 0x7fffffffUL) {
				out[n++] = (gid_t)strtoul(gid, NULL, 10);
				break;
			}
			m = c + 1;
		}
		line = *end ? end + 1 : NULL;
	}
	return n;
}

int user_name_ok(const char *name)
{
	size_t i;

	if (!name[0] || strlen(name) > 32 || !((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
		return 0;
	for (i = 1; name[i]; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
		      name[i] == '-'))
			return 0;
	return 1;
}
