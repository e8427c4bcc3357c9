#include "vmm/ratelimit.h"

#include "vmm/snapshot.h"

#include <errno.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL

/* Shortest timer we arm: a sub-millisecond wait would have the device
 * thread spin on timer wakeups for a handful of tokens each. */
#define RL_MIN_WAIT_NS NS_PER_MS

/* Longest refill time kept, so that refill_time in ns fits 64 bits and the
 * remainder (always below it) fits rem; ~585 years is "never" anyway. */
#define RL_MAX_REFILL_MS (UINT64_MAX / NS_PER_MS)

typedef unsigned __int128 u128;

static bool tb_enabled(const struct token_bucket *b)
{
	return b->cfg.size != 0 && b->cfg.refill_time_ms != 0;
}

static uint64_t tb_period_ns(const struct token_bucket *b)
{
	return b->cfg.refill_time_ms * NS_PER_MS;
}

/* a / b rounded up, saturated to 64 bits (b > 0). */
static uint64_t div_up_sat(u128 a, u128 b)
{
	u128 q = a / b + (a % b != 0);

	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

void tb_init(struct token_bucket *b, const struct token_bucket_cfg *cfg, uint64_t now_ns)
{
	*b = (struct token_bucket){ .cfg = *cfg, .last_ns = now_ns };
	if (b->cfg.refill_time_ms > RL_MAX_REFILL_MS)
		b->cfg.refill_time_ms = RL_MAX_REFILL_MS;
	if (!tb_enabled(b))
		return;
	b->budget = b->cfg.size;  /* buckets start full */
	b->burst_left = b->cfg.one_time_burst;
}

/* Add the tokens earned since last_ns: elapsed x size / period. The
 * division's remainder stays in rem (ns x size units) and counts towards
 * the next refill, so many small steps add up to exactly what one big step
 * would give. A full bucket banks nothing, remainder included. */
static void tb_refill(struct token_bucket *b, uint64_t now_ns)
{
	uint64_t period = tb_period_ns(b), room;
	u128 acc, tokens;

	/* The clock did not move, or last_ns is in the future because an
	 * over-sized request is still being paid for (see tb_take). */
	if (now_ns <= b->last_ns)
		return;
	acc = (u128)(now_ns - b->last_ns) * b->cfg.size + b->rem;
	b->last_ns = now_ns;
	tokens = acc / period;
	room = b->cfg.size - b->budget;
	if (tokens >= room) {
		b->budget = b->cfg.size;
		b->rem = 0;
		return;
	}
	b->budget += (uint64_t)tokens;
	b->rem = (uint64_t)(acc % period);
}

bool tb_take(struct token_bucket *b, uint64_t n, uint64_t now_ns, uint64_t *wait_ns)
{
	uint64_t from_burst, rest, need;

	if (wait_ns)
		*wait_ns = 0;
	if (!tb_enabled(b) || n == 0)
		return true;
	tb_refill(b, now_ns);

	/* The one-time burst pays first; what it cannot cover comes from
	 * the budget. Nothing is committed until the whole request is paid. */
	from_burst = n < b->burst_left ? n : b->burst_left;
	rest = n - from_burst;
	if (rest <= b->budget) {
		b->burst_left -= from_burst;
		b->budget -= rest;
		return true;
	}

	if (rest > b->cfg.size) {
		/* Could never be paid by waiting: let it through once, empty the
		 * bucket and make the caller wait while the debt (what the bucket
		 * did not hold) refills. Moving last_ns past that wait keeps the
		 * bucket from refilling during it, so a stream of over-sized
		 * requests still averages out at size per refill_time. */
		u128 debt = rest - b->budget;
		uint64_t wait = div_up_sat(debt * tb_period_ns(b), b->cfg.size);

		b->burst_left -= from_burst;
		b->budget = 0;
		b->rem = 0;
		b->last_ns = now_ns + wait < now_ns ? UINT64_MAX : now_ns + wait;
		if (wait_ns)
			*wait_ns = wait;
		return true;
	}

	/* Time until the missing tokens are earned:
	 * t x size + rem >= need x period. */
	need = rest - b->budget;
	if (wait_ns) {
		u128 owed = (u128)need * tb_period_ns(b) - b->rem;

		/* Still in the debt of an over-sized request: wait it out. */
		if (b->last_ns > now_ns)
			owed += (u128)(b->last_ns - now_ns) * b->cfg.size;
		*wait_ns = div_up_sat(owed, b->cfg.size);
	}
	return false;
}

/* Arm the one-shot timer for wait_ns (at least RL_MIN_WAIT_NS) and block.
 * False when the timer could not be armed: nothing would ever unblock the
 * device, so the caller lets the request through instead (fail open). That
 * cannot happen with a valid timerfd and value. */
static bool rl_block(struct rate_limiter *rl, uint64_t wait_ns)
{
	struct itimerspec its = { 0 };

	if (wait_ns < RL_MIN_WAIT_NS)
		wait_ns = RL_MIN_WAIT_NS;
	its.it_value.tv_sec = (time_t)(wait_ns / NS_PER_S);
	its.it_value.tv_nsec = (long)(wait_ns % NS_PER_S);
	if (timerfd_settime(rl->timer_fd, 0, &its, NULL) < 0)
		return false;
	rl->blocked = true;
	return true;
}

int rl_init(struct rate_limiter *rl, const struct rate_limiter_cfg *cfg, uint64_t now_ns)
{
	static const struct rate_limiter_cfg unlimited;
	int err = 0;

	if (!cfg)
		cfg = &unlimited;
	*rl = (struct rate_limiter){ .timer_fd = -1 };
	tb_init(&rl->bw, &cfg->bandwidth, now_ns);
	tb_init(&rl->ops, &cfg->ops, now_ns);
	rl->enabled = tb_enabled(&rl->bw) || tb_enabled(&rl->ops);
	if (!rl->enabled)
		goto out;
	rl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (rl->timer_fd < 0) {
		err = -errno;
		rl->timer_fd = -1;
		rl->enabled = false;
	}
out:
	return err;
}

void rl_close(struct rate_limiter *rl)
{
	if (rl->timer_fd >= 0)
		close(rl->timer_fd);
	rl->timer_fd = -1;
	rl->enabled = false;
	rl->blocked = false;
}

bool rl_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns)
{
	struct token_bucket ops_before;
	uint64_t wait_ops, wait_bw;

	if (!rl->enabled)
		return true;
	if (rl->blocked)
		return false;
	/* Restoring the snapshot hands the op token back exactly, burst
	 * included; the refill it undoes is recomputed identically later. */
	ops_before = rl->ops;
	if (!tb_take(&rl->ops, 1, now_ns, &wait_ops))
		return !rl_block(rl, wait_ops);
	if (!tb_take(&rl->bw, bytes, now_ns, &wait_bw)) {
		rl->ops = ops_before;
		return !rl_block(rl, wait_bw);
	}
	/* Paid, but an over-sized request left a debt to wait out. */
	if (wait_bw || wait_ops)
		rl_block(rl, wait_bw > wait_ops ? wait_bw : wait_ops);
	return true;
}

void rl_timer_event(struct rate_limiter *rl)
{
	uint64_t expirations;

	if (rl->timer_fd >= 0) {
		/* EAGAIN (a spurious wakeup) is harmless: the next consume
		 * re-arms the timer if the tokens are still missing. */
		ssize_t r = read(rl->timer_fd, &expirations, sizeof(expirations));

		(void)r;
	}
	rl->blocked = false;
}

static void tb_save(const struct token_bucket *b, struct snap_writer *w)
{
	snap_put_u64(w, b->budget);
	snap_put_u64(w, b->burst_left);
	snap_put_u64(w, b->rem);
}

static void tb_restore(struct token_bucket *b, struct snap_reader *r, uint64_t now_ns)
{
	b->budget = snap_get_u64(r);
	b->burst_left = snap_get_u64(r);
	b->rem = snap_get_u64(r);
	/* Never more than the configuration allows, whatever the file says. */
	if (b->budget > b->cfg.size)
		b->budget = b->cfg.size;
	if (b->burst_left > b->cfg.one_time_burst)
		b->burst_left = b->cfg.one_time_burst;
	if (b->cfg.refill_time_ms && b->rem >= b->cfg.refill_time_ms * 1000000ULL)
		b->rem = 0;
	b->last_ns = now_ns;
}

void rl_save(const struct rate_limiter *rl, struct snap_writer *w)
{
	tb_save(&rl->bw, w);
	tb_save(&rl->ops, w);
}

bool rl_restore(struct rate_limiter *rl, struct snap_reader *r, uint64_t now_ns)
{
	tb_restore(&rl->bw, r, now_ns);
	tb_restore(&rl->ops, r, now_ns);
	/* A blocked limiter's timer did not survive: retry at once. */
	rl->blocked = false;
	return !r->bad;
}
