/* Firecracker-style rate limiter: a bandwidth and an ops token bucket.
 *
 * Buckets start full and refill linearly (size tokens per refill_time ms,
 * remainders carried so frequent callers lose nothing); one_time_burst is
 * spent first and never refills. A request larger than the bucket is let
 * through once, emptying it. When a request cannot be paid the limiter is
 * blocked and a one-shot timerfd is armed; the device registers that fd
 * with its event loop, calls rl_timer_event() when it fires, and retries. */
#ifndef VMM_RATELIMIT_H
#define VMM_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/clock.h" /* now_ns arguments are mono_ns() */

struct token_bucket_cfg {
	uint64_t size;            /* 0 disables the bucket */
	uint64_t one_time_burst;
	uint64_t refill_time_ms;  /* 0 disables the bucket */
};

struct rate_limiter_cfg {
	struct token_bucket_cfg bandwidth;  /* bytes */
	struct token_bucket_cfg ops;        /* requests */
};

struct token_bucket {
	struct token_bucket_cfg cfg;
	uint64_t budget;          /* tokens available now */
	uint64_t burst_left;      /* one_time_burst still unspent */
	uint64_t last_ns;         /* time of the last refill */
	uint64_t rem;             /* refill remainder carried over (ns x size units) */
};

struct rate_limiter {
	struct token_bucket bw, ops;
	bool enabled;             /* any bucket configured */
	bool blocked;             /* waiting for the timer */
	int timer_fd;             /* -1 when disabled */
};

/* Set up rl from cfg (NULL = unlimited) at time now_ns; creates the timerfd
 * when a bucket is enabled (before seccomp forbids timerfd_create).
 * 0 or -errno. */
int rl_init(struct rate_limiter *rl, const struct rate_limiter_cfg *cfg, uint64_t now_ns);
void rl_close(struct rate_limiter *rl);

/* Take one op and bytes bandwidth tokens at now_ns. On false nothing is
 * taken, the limiter is blocked and its timer armed. */
bool rl_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns);

/* The timer fired: read it and unblock. */
void rl_timer_event(struct rate_limiter *rl);

/* Bucket arithmetic, exposed for tests: refill to now_ns, then try to take
 * n tokens; returns true when paid. *wait_ns gets how long until n could be
 * paid when it cannot. */
bool tb_take(struct token_bucket *b, uint64_t n, uint64_t now_ns, uint64_t *wait_ns);
void tb_init(struct token_bucket *b, const struct token_bucket_cfg *cfg, uint64_t now_ns);

/* Snapshots: the buckets' budgets, unspent bursts and carried remainders
 * (not the configuration: that comes from vm.json). Restored buckets
 * refill from now_ns; a budget above the configured size is cut to it.
 * rl_restore returns false for a truncated record. */
struct snap_writer;
struct snap_reader;
void rl_save(const struct rate_limiter *rl, struct snap_writer *w);
bool rl_restore(struct rate_limiter *rl, struct snap_reader *r, uint64_t now_ns);

#endif
