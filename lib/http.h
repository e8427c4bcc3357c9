/* Pieces of HTTP that kiln's clients (GitLab, GitHub, registries) read the
 * same way: header values and Retry-After. The transfers themselves are
 * libcurl's. */
#ifndef KILN_HTTP_H
#define KILN_HTTP_H

#include <stddef.h>

/* Copy the n bytes at v into dst (size bytes), cut to fit, NUL-terminated. */
void http_copy_value(char *dst, size_t size, const char *v, size_t n);

/* A Retry-After value, delta-seconds or an HTTP-date (RFC 9110 10.2.3), as
 * seconds from now clamped to 0..cap_s; -1 when it is neither. Trailing
 * CR/LF are allowed (a raw header line). */
long http_retry_after_s(const char *v, long cap_s);

/* Append data[0..n) to a reply body kept in memory (*buf, *len, grown in
 * *cap), NUL-terminated, at most max bytes: 0 when it fits, 1 when it
 * would pass max (nothing appended), -1 when out of memory. For libcurl
 * write callbacks. */
int http_body_append(char **buf, size_t *len, size_t *cap, size_t max, const void *data, size_t n);

#endif
