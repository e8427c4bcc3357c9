#include "executors/hosttsc.h"

#include <pthread.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static unsigned long khz = HOSTTSC_FALLBACK_KHZ;

/* Not lib/clock.h on purpose: CLOCK_MONOTONIC_RAW is not slewed by NTP, so
 * the TSC is compared with the oscillator itself rather than with a clock
 * that is being adjusted while we measure. */
static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void measure(void)
{
#if defined(__x86_64__) || defined(__i386__)
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	double t0, t1;
	unsigned long long c0, c1;
	double rate;

	t0 = now_ns();
	c0 = __rdtsc();
	while (nanosleep(&pause, &pause) != 0)
		;
	c1 = __rdtsc();
	t1 = now_ns();
	rate = (double)(c1 - c0) / (t1 - t0) * 1e6;
	/* 100 MHz .. 10 GHz: anything else is a broken or unstable TSC. */
	if (t1 > t0 && rate > 1e5 && rate < 1e7)
		khz = (unsigned long)(rate + 0.5);
#endif
}

unsigned long hosttsc_khz(void)
{
	pthread_once(&once, measure);
	return khz;
}
