#include "lib/varexpand.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/vec.h"

const char var_as_written[] = "";

struct out {
	char **p;
	size_t *len, *cap, max;
	enum kiln_rc rc;
};

/* Append what fits of n bytes; the first failure sticks. */
static void put(struct out *o, const char *s, size_t n)
{
	size_t room;

	if (o->rc)
		return;
	room = o->max - 1 - *o->len;
	if (n > room) {
		o->rc = KILN_E_LIMIT;
		n = room;
	}
	if (VEC_GROW(*o->p, *o->cap, *o->len, n + 1, o->max)) {
		o->rc = KILN_E_NOMEM;
		return;
	}
	memcpy(*o->p + *o->len, s, n);
	*o->len += n;
	(*o->p)[*o->len] = '\0';
}

static bool name_first(char c, unsigned flags)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       ((flags & VAR_DIGIT_FIRST) && c >= '0' && c <= '9');
}

static bool name_char(char c)
{
	return name_first(c, VAR_DIGIT_FIRST);
}

static bool go_special(char c)
{
	return (c >= '0' && c <= '9') || (c && strchr("*#$@!?-", c));
}

/* os.Expand's reading of the reference at s; *len 0 with bytes taken: bad
 * syntax, dropped. */
static size_t go_reference(const char *s, const char **name, size_t *len)
{
	size_t i;

	*name = s + 1;
	*len = 1;
	if (s[1] == '{') {
		*name = s + 2;
		if (go_special(s[2]) && s[3] == '}')
			return 4;
		for (i = 2; s[i] && s[i] != '}'; i++)
			;
		*len = s[i] ? i - 2 : 0;
		return s[i] ? i + 1 : 2;
	}
	if (go_special(s[1]))
		return 2;
	for (i = 1; name_char(s[i]); i++)
		;
	*len = i - 1;
	return *len ? i : 0;
}

/* The reference at s ('$' first): its name (*name, *len) and the bytes it
 * takes, or 0 when s does not start one. */
static size_t reference(const char *s, unsigned flags, const char **name, size_t *len)
{
	size_t brace = s[1] == '{', i = 1 + brace;

	if (flags & VAR_GO_NAMES)
		return go_reference(s, name, len);
	if (!name_first(s[i], flags))
		return 0;
	while (name_char(s[i]))
		i++;
	if (brace && s[i] != '}')
		return 0;
	*name = s + 1 + brace;
	*len = i - 1 - brace;
	return i + brace;
}

enum kiln_rc var_expand_into(const char *s, unsigned flags, var_lookup_n_fn lookup, void *arg, char **out,
			     size_t *len, size_t *cap, size_t max)
{
	struct out o = { out, len, cap, max, KILN_OK };

	if (!max)
		return KILN_E_LIMIT;
	put(&o, "", 0);
	while (*s && !o.rc) {
		const char *name, *v;
		size_t n, used;

		if (s[0] != '$') {
			for (n = 1; s[n] && s[n] != '$'; n++)
				;
			put(&o, s, n);
			s += n;
			continue;
		}
		if (s[1] == '$' && !(flags & VAR_NO_ESCAPE)) {
			put(&o, "$$", flags & VAR_KEEP_ESCAPE ? 2 : 1);
			s += 2;
			continue;
		}
		used = reference(s, flags, &name, &n);
		if (used && !n) {
			s += used;
			continue;
		}
		v = used ? lookup(arg, name, n) : var_as_written;
		if (v == var_as_written || (!v && (flags & VAR_KEEP_UNDEFINED))) {
			put(&o, s, used ? used : 1);
			s += used ? used : 1;
			continue;
		}
		if (v)
			put(&o, v, strlen(v));
		s += used;
	}
	return o.rc;
}

const char *var_by_name(void *arg, const char *name, size_t len)
{
	const struct var_names *vn = arg;
	char buf[256];

	if (len >= sizeof(buf))
		return var_as_written;
	if (!vn->lookup)
		return NULL;
	memcpy(buf, name, len);
	buf[len] = '\0';
	return vn->lookup(vn->arg, buf);
}

void var_expand(const char *s, var_lookup_fn lookup, void *arg, char *out, size_t size)
{
	struct var_names vn = { lookup, arg };
	char *p = NULL;
	size_t len = 0, cap = 0;

	if (!size)
		return;
	var_expand_into(s, VAR_DIGIT_FIRST, var_by_name, &vn, &p, &len, &cap, size);
	memcpy(out, p ? p : "", len + 1);
	free(p);
}
