#include "lib/varexpand.h"

#include <string.h>

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

void var_expand(const char *s, var_lookup_fn lookup, void *arg, char *out, size_t size)
{
	size_t n = 0;

	while (*s && n + 1 < size) {
		char name[256];
		const char *v, *end;
		size_t k;

		if (s[0] != '$') {
			out[n++] = *s++;
			continue;
		}
		if (s[1] == '$') {
			out[n++] = '$';
			s += 2;
			continue;
		}
		end = s + 1 + (s[1] == '{');
		k = strspn(end, NAME_CHARS);
		if (!k || (s[1] == '{' && end[k] != '}') || k >= sizeof(name)) {
			out[n++] = *s++;
			continue;
		}
		memcpy(name, end, k);
		name[k] = '\0';
		s = end + k + (s[1] == '{');
		for (v = lookup(arg, name); v && *v && n + 1 < size; v++)
			out[n++] = *v;
	}
	out[n] = '\0';
}
