#include "lib/glob.h"

#include <stdlib.h>
#include <string.h>

/* One bracket expression at p (just after '['), against c; *end is set
 * after its ']'. -1 for a malformed bracket (no ']'). */
static int bracket(const char *p, char c, const char **end)
{
	bool neg = false, hit = false;

	if (*p == '!' || *p == '^') {
		neg = true;
		p++;
	}
	if (*p == ']') {
		hit = c == ']';
		p++;
	}
	while (*p && *p != ']') {
		char lo = *p, hi;

		if (lo == '\\' && p[1])
			lo = *++p;
		hi = lo;
		if (p[1] == '-' && p[2] && p[2] != ']') {
			hi = p[2];
			if (hi == '\\' && p[3])
				hi = p[3], p++;
			p += 2;
		}
		if (c >= lo && c <= hi)
			hit = true;
		p++;
	}
	if (*p != ']')
		return -1;
	*end = p + 1;
	return hit != neg;
}

static bool glob_rec(const char *p, const char *s, bool seg_start, unsigned flags, long *steps)
{
	while (*p) {
		if (--*steps < 0)
			return false;
		if (p[0] == '*' && p[1] == '*' && !p[2] && seg_start && (flags & KILN_GLOB_DEEP_TAIL))
			return true; /* a last `**`: everything below */
		if (p[0] == '/' && p[1] == '*' && p[2] == '*' && !p[3] && !*s && (flags & KILN_GLOB_DEEP_TAIL))
			return true; /* a last `**` component also takes the folder above it */
		if (p[0] == '*' && p[1] == '*' && p[2] == '/' && seg_start) {
			/* zero or more whole directories */
			const char *q = s;

			for (;;) {
				if (glob_rec(p + 3, q, true, flags, steps))
					return true;
				q = strchr(q, '/');
				if (!q)
					return false;
				q++;
			}
		}
		if (*p == '*') {
			while (*p == '*')
				p++;
			for (;;) {
				if (glob_rec(p, s, false, flags, steps))
					return true;
				if (!*s || *s == '/')
					return false;
				s++;
			}
		}
		if (*p == '?') {
			if (!*s || *s == '/')
				return false;
			p++, s++;
		} else if (*p == '[') {
			const char *end;
			int r;

			if (!*s || *s == '/')
				return false;
			r = bracket(p + 1, *s, &end);
			if (r < 0) { /* no ']': a literal '[' */
				if (*s != '[')
					return false;
				p++, s++;
			} else if (!r) {
				return false;
			} else {
				p = end;
				s++;
			}
		} else {
			if (*p == '\\' && p[1])
				p++;
			if (*p != *s)
				return false;
			p++, s++;
		}
		seg_start = p[-1] == '/';
	}
	return !*s;
}

/* Expand the first {a,b} of pattern into out[]; recursive, bounded. */
static int brace_expand(const char *pat, char **out, int n, int max)
{
	const char *open = NULL, *close = NULL, *p, *start;
	int depth = 0;

	for (p = pat; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
		} else if (*p == '{') {
			if (!depth++)
				open = p;
		} else if (*p == '}' && depth && !--depth) {
			close = p;
			break;
		}
	}
	if (!open || !close) {
		if (n >= max)
			return -1;
		if (!(out[n] = strdup(pat)))
			return -1;
		return n + 1;
	}
	start = open + 1;
	depth = 0;
	for (p = start; p <= close; p++) {
		if (*p == '\\' && p[1] && p < close) {
			p++;
			continue;
		}
		if (*p == '{')
			depth++;
		else if (*p == '}' && depth)
			depth--;
		else if ((*p == ',' && !depth) || p == close) {
			size_t pre = (size_t)(open - pat), alt = (size_t)(p - start), post = strlen(close + 1);
			char *one = malloc(pre + alt + post + 1);

			if (!one)
				return -1;
			memcpy(one, pat, pre);
			memcpy(one + pre, start, alt);
			memcpy(one + pre + alt, close + 1, post + 1);
			n = brace_expand(one, out, n, max);
			free(one);
			if (n < 0)
				return -1;
			start = p + 1;
		}
	}
	return n;
}


int kiln_glob_braces(const char *pattern, char **alts, int max)
{
	int i, n;

	for (i = 0; i < max; i++)
		alts[i] = NULL;
	n = brace_expand(pattern, alts, 0, max);
	/* Past the ceiling: what was made before it is freed here. */
	for (i = 0; n < 0 && i < max; i++) {
		free(alts[i]);
		alts[i] = NULL;
	}
	return n;
}

void kiln_glob_braces_free(char **alts, int n)
{
	while (n-- > 0)
		free(alts[n]);
}

bool kiln_glob_match_one(const char *pattern, const char *path, unsigned flags)
{
	long steps = KILN_GLOB_MAX_STEPS;

	return glob_rec(pattern, path, true, flags, &steps);
}

bool kiln_glob_match(const char *pattern, const char *path, unsigned flags)
{
	char *alts[KILN_GLOB_MAX_ALTS];
	int n, i;
	bool hit = false;

	if (!(flags & KILN_GLOB_BRACES))
		return kiln_glob_match_one(pattern, path, flags);
	n = kiln_glob_braces(pattern, alts, KILN_GLOB_MAX_ALTS);
	if (n < 0)
		return false;
	for (i = 0; i < n && !hit; i++)
		hit = kiln_glob_match_one(alts[i], path, flags);
	kiln_glob_braces_free(alts, n);
	return hit;
}
