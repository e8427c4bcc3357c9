#include "lib/http.h"

#include "lib/vec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void http_copy_value(char *dst, size_t size, const char *v, size_t n)
{
	if (!size)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

long http_retry_after_s(const char *v, long cap_s)
{
	struct tm tm = { 0 };
	char *end;
	long s;

	v += strspn(v, " \t");
	s = strtol(v, &end, 10);
	if (end != v && (*end == '\0' || *end == '\r' || *end == '\n'))
		return s < 0 ? 0 : s > cap_s ? cap_s : s;
	if (strptime(v, "%a, %d %b %Y %H:%M:%S", &tm)) {
		time_t at = timegm(&tm), now = time(NULL);

		return at <= now ? 0 : at - now > cap_s ? cap_s : (long)(at - now);
	}
	return -1;
}

int http_body_append(char **buf, size_t *len, size_t *cap, size_t max, const void *data, size_t n)
{
	if (n > max - *len)
		return 1;
	if (VEC_GROW(*buf, *cap, *len, n + 1, max + 1))
		return -1;
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}
