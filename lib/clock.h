/* The one monotonic clock: durations, deadlines and timeouts. Header only
 * (static inline) so that the static kiln-agent, kiln-vmm and the benches
 * use it without linking anything. Wall-clock time (timestamps people read)
 * is not this: use time() or CLOCK_REALTIME for that. */
#ifndef KILN_CLOCK_H
#define KILN_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC (since an unspecified start, never going
 * back, stopped while the machine sleeps). */
static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The same clock in milliseconds, signed so that differences may be negative. */
static inline int64_t mono_ms(void)
{
	return (int64_t)(mono_ns() / 1000000ULL);
}

/* The same clock in seconds, for durations people read ("took 1.2 s"). */
static inline double mono_s(void)
{
	return (double)mono_ns() / 1e9;
}

#endif
