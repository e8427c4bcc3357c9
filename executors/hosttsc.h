/* The host's TSC rate, for guests run by QEMU under TCG: their TSC reads
 * the host's (QEMU's cpu_get_host_ticks), they have no kvm-clock, and
 * calibrating the TSC against emulated timers is slow and may hang; so
 * the guest kernel is told the rate (tsc_early_khz=). A wrong rate makes
 * the guest's clock run fast or slow: `sleep 10` and job timeouts inside
 * the guest would not be 10 s. */
#ifndef KILN_HOSTTSC_H
#define KILN_HOSTTSC_H

/* The host TSC's rate in kHz, measured once per process against
 * CLOCK_MONOTONIC_RAW over about 20 ms (thread safe). Off x86, or when the
 * measurement makes no sense, HOSTTSC_FALLBACK_KHZ. */
unsigned long hosttsc_khz(void);

#define HOSTTSC_FALLBACK_KHZ 2000000UL

#endif
