#include <stdint.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/ratelimit.h"

#define MS 1000000ULL

/* An arbitrary origin, far from 0, so no test leans on time 0. */
#define T0 (1000ULL * 1000 * MS)

static struct token_bucket bucket(uint64_t size, uint64_t burst, uint64_t refill_ms, uint64_t now)
{
	struct token_bucket_cfg cfg = { .size = size, .one_time_burst = burst, .refill_time_ms = refill_ms };
	struct token_bucket b;

	tb_init(&b, &cfg, now);
	return b;
}

/* Take one token at a time until refused; how many were taken. */
static uint64_t drain(struct token_bucket *b, uint64_t now)
{
	uint64_t n = 0;

	while (tb_take(b, 1, now, NULL))
		n++;
	return n;
}

/* Nanoseconds left on the limiter's timer (0 = disarmed). */
static uint64_t timer_left(const struct rate_limiter *rl)
{
	struct itimerspec its;

	ck_assert_int_eq(timerfd_gettime(rl->timer_fd, &its), 0);
	return (uint64_t)its.it_value.tv_sec * 1000 * MS + (uint64_t)its.it_value.tv_nsec;
}

START_TEST(starts_full)
{
	struct token_bucket b = bucket(1000, 0, 100, T0);
	uint64_t wait = 0;

	ck_assert(tb_take(&b, 1000, T0, &wait));
	ck_assert_uint_eq(wait, 0);
	ck_assert(!tb_take(&b, 1, T0, &wait));
	/* 1000 tokens per 100 ms: one token every 100 us. */
	ck_assert_uint_eq(wait, 100000);
}
END_TEST

START_TEST(refill_linear_and_capped)
{
	struct token_bucket b = bucket(1000, 0, 100, T0);

	ck_assert(tb_take(&b, 1000, T0, NULL));
	/* A tenth of the refill time gives a tenth of the bucket. */
	ck_assert_uint_eq(drain(&b, T0 + 10 * MS), 100);
	ck_assert_uint_eq(drain(&b, T0 + 35 * MS), 250);
	/* Idle far longer than refill_time: full, and no more. */
	ck_assert_uint_eq(drain(&b, T0 + 10000 * MS), 1000);
	/* Emptied again: half a refill later, exactly half a bucket. */
	ck_assert_uint_eq(drain(&b, T0 + 10050 * MS), 500);
	ck_assert_uint_eq(drain(&b, T0 + 10150 * MS), 1000);
}
END_TEST

/* Tiny steps, each worth less than a token, must add up to exactly size
 * tokens per refill_time: the remainder is carried, never rounded away. */
static void check_carry(uint64_t size, uint64_t refill_ms, uint64_t step_ns)
{
	struct token_bucket b = bucket(size, 0, refill_ms, T0);
	uint64_t t, got = 0, end = T0 + refill_ms * MS;

	ck_assert(tb_take(&b, size, T0, NULL));
	for (t = T0 + step_ns; t < end; t += step_ns)
		got += drain(&b, t);
	got += drain(&b, end);
	ck_assert_uint_eq(got, size);
	/* And the same again over the next period, with a ragged start. */
	for (t = end + 1; t < end + refill_ms * MS; t += step_ns)
		got += drain(&b, t);
	got += drain(&b, end + refill_ms * MS);
	ck_assert_uint_eq(got, 2 * size);
}

START_TEST(remainder_carried)
{
	check_carry(1000, 1, 1);       /* 1 ns steps, 0.001 token each */
	check_carry(3, 1, 7);          /* 1e6 / 7 is not whole */
	check_carry(7, 3, 13);
	check_carry(1000003, 1, 997);  /* more than one token per step */
}
END_TEST

START_TEST(huge_values_no_overflow)
{
	/* elapsed x size overflows 64 bits: must still cap at size. */
	struct token_bucket b = bucket(UINT64_MAX / 2, 0, 1, T0);
	uint64_t wait;

	ck_assert(tb_take(&b, UINT64_MAX / 2, T0, NULL));
	ck_assert(tb_take(&b, UINT64_MAX / 2, T0 + 1000 * MS, NULL));
	ck_assert(!tb_take(&b, 1, T0 + 1000 * MS, &wait));
	ck_assert_uint_ge(wait, 1);
	/* An absurd refill time is clamped rather than overflowing. */
	b = bucket(10, 0, UINT64_MAX, T0);
	ck_assert(tb_take(&b, 10, T0, NULL));
	ck_assert(!tb_take(&b, 1, T0 + 1000 * MS, &wait));
	ck_assert_uint_gt(wait, 1000 * MS);
}
END_TEST

START_TEST(one_time_burst)
{
	struct token_bucket b = bucket(100, 50, 100, T0);
	uint64_t wait;

	/* Spent first: the budget is untouched. */
	ck_assert(tb_take(&b, 30, T0, NULL));
	ck_assert_uint_eq(b.burst_left, 20);
	ck_assert_uint_eq(b.budget, 100);
	/* Then burst and budget together. */
	ck_assert(tb_take(&b, 70, T0, NULL));
	ck_assert_uint_eq(b.burst_left, 0);
	ck_assert_uint_eq(b.budget, 50);
	ck_assert_uint_eq(drain(&b, T0), 50);
	/* Refill brings the budget back, never the burst. */
	ck_assert_uint_eq(drain(&b, T0 + 1000 * MS), 100);
	ck_assert_uint_eq(b.burst_left, 0);

	/* A refused request takes nothing, burst included. */
	b = bucket(100, 50, 100, T0);
	ck_assert(tb_take(&b, 100, T0, NULL));
	ck_assert_uint_eq(b.burst_left, 0);
	b = bucket(100, 50, 100, T0);
	b.budget = 10;
	ck_assert(!tb_take(&b, 80, T0, &wait));  /* 50 + 10 < 80 */
	ck_assert_uint_eq(b.burst_left, 50);
	ck_assert_uint_eq(b.budget, 10);
	/* 20 tokens missing at one per ms. */
	ck_assert_uint_eq(wait, 20 * MS);
}
END_TEST

START_TEST(wait_counts_remainder)
{
	struct token_bucket b = bucket(1000, 0, 1000, T0);  /* 1 token/ms */
	uint64_t wait;

	ck_assert(tb_take(&b, 1000, T0, NULL));
	ck_assert(!tb_take(&b, 5, T0, &wait));
	ck_assert_uint_eq(wait, 5 * MS);
	/* Half a token earned already: half a ms to go. */
	ck_assert(!tb_take(&b, 1, T0 + MS / 2, &wait));
	ck_assert_uint_eq(wait, MS / 2);
	ck_assert(tb_take(&b, 1, T0 + MS / 2 + wait, NULL));
}
END_TEST

START_TEST(oversized_once_then_blocks)
{
	struct token_bucket b = bucket(100, 0, 100, T0);  /* 1 token/ms */
	struct rate_limiter_cfg cfg = { .bandwidth = { .size = 100, .refill_time_ms = 100 } };
	struct rate_limiter rl;
	uint64_t wait, left, t;

	/* Full bucket, 250 asked: let through, 150 owed = 150 ms. */
	ck_assert(tb_take(&b, 250, T0, &wait));
	ck_assert_uint_eq(wait, 150 * MS);
	ck_assert_uint_eq(b.budget, 0);
	/* Nothing refills while the debt is paid off... */
	ck_assert(!tb_take(&b, 1, T0 + 149 * MS, &wait));
	ck_assert_uint_eq(wait, 2 * MS);
	ck_assert(!tb_take(&b, 1, T0 + 150 * MS, NULL));
	/* ...then refilling resumes at the normal rate. */
	ck_assert_uint_eq(drain(&b, T0 + 160 * MS), 10);
	/* Over-sized requests back to back average out at the configured
	 * rate: 10 x 300 tokens take 10 x 300 ms. */
	t = T0 + 1000 * MS;
	b = bucket(100, 0, 100, t);
	ck_assert(tb_take(&b, 100, t, NULL));
	for (int i = 0; i < 10; i++) {
		ck_assert(tb_take(&b, 300, t, &wait));
		ck_assert_uint_eq(wait, 300 * MS);
		t += wait;
	}

	/* Through the limiter: paid, but blocked with the timer armed. */
	ck_assert_int_eq(rl_init(&rl, &cfg, T0), 0);
	ck_assert(rl_consume(&rl, 250, T0));
	ck_assert(rl.blocked);
	left = timer_left(&rl);
	ck_assert_uint_gt(left, 140 * MS);
	ck_assert_uint_le(left, 150 * MS);
	/* While blocked every request fails, even one that could be paid. */
	ck_assert(!rl_consume(&rl, 0, T0 + 1000 * MS));
	rl_timer_event(&rl);
	ck_assert(!rl.blocked);
	ck_assert(rl_consume(&rl, 10, T0 + 1000 * MS));
	rl_close(&rl);
	ck_assert_int_eq(rl.timer_fd, -1);
}
END_TEST

START_TEST(ops_and_bytes)
{
	struct rate_limiter_cfg cfg = {
		.bandwidth = { .size = 1000, .refill_time_ms = 1000 },  /* 1 byte/ms */
		.ops = { .size = 10, .one_time_burst = 1, .refill_time_ms = 1000 },
	};
	struct rate_limiter rl;
	uint64_t left;

	ck_assert_int_eq(rl_init(&rl, &cfg, T0), 0);
	ck_assert(rl.enabled);
	ck_assert_int_ge(rl.timer_fd, 0);
	ck_assert(rl_consume(&rl, 1000, T0));  /* the op came from the burst */
	ck_assert_uint_eq(rl.ops.burst_left, 0);
	ck_assert_uint_eq(rl.ops.budget, 10);
	ck_assert_uint_eq(rl.bw.budget, 0);
	/* The bytes fail: the op token goes back and the timer is armed for
	 * when 3 bytes will be there. */
	ck_assert(!rl_consume(&rl, 3, T0));
	ck_assert_uint_eq(rl.ops.budget, 10);
	ck_assert(rl.blocked);
	left = timer_left(&rl);
	ck_assert_uint_gt(left, 2 * MS);
	ck_assert_uint_le(left, 3 * MS);
	rl_timer_event(&rl);
	ck_assert(rl_consume(&rl, 3, T0 + 3 * MS));
	ck_assert_uint_eq(rl.ops.budget, 9);

	/* The op bucket alone can refuse, bytes untouched. */
	rl.ops.budget = 0;
	rl.ops.last_ns = T0 + 3 * MS;
	rl.ops.rem = 0;
	left = rl.bw.budget;
	ck_assert(!rl_consume(&rl, 0, T0 + 3 * MS));
	ck_assert_uint_eq(rl.bw.budget, left);
	/* One op per 100 ms. */
	ck_assert_uint_gt(timer_left(&rl), 99 * MS);
	rl_close(&rl);
}
END_TEST

START_TEST(short_waits_arm_at_least_1ms)
{
	struct rate_limiter_cfg cfg = { .bandwidth = { .size = 1000000, .refill_time_ms = 1 } };
	struct rate_limiter rl;

	ck_assert_int_eq(rl_init(&rl, &cfg, T0), 0);
	ck_assert(rl_consume(&rl, 1000000, T0));
	ck_assert(!rl_consume(&rl, 1, T0));  /* 1 ns away */
	ck_assert_uint_gt(timer_left(&rl), MS / 2);
	rl_close(&rl);
}
END_TEST

START_TEST(disabled_buckets)
{
	struct rate_limiter_cfg only_ops = { .ops = { .size = 1, .refill_time_ms = 1000 } };
	struct rate_limiter_cfg zero_refill = { .bandwidth = { .size = 10, .refill_time_ms = 0 } };
	struct token_bucket b = bucket(0, 100, 100, T0);
	struct rate_limiter rl;
	int i;

	/* size 0 or refill 0: always pays, burst or not. */
	for (i = 0; i < 1000; i++)
		ck_assert(tb_take(&b, UINT64_MAX, T0, NULL));
	b = bucket(100, 0, 0, T0);
	ck_assert(tb_take(&b, 1000, T0, NULL));

	ck_assert_int_eq(rl_init(&rl, NULL, T0), 0);
	ck_assert(!rl.enabled);
	ck_assert_int_eq(rl.timer_fd, -1);
	ck_assert(rl_consume(&rl, UINT64_MAX, T0));
	rl_close(&rl);

	ck_assert_int_eq(rl_init(&rl, &zero_refill, T0), 0);
	ck_assert(!rl.enabled);
	ck_assert_int_eq(rl.timer_fd, -1);
	rl_close(&rl);

	/* Only the ops bucket limits: any byte count goes. */
	ck_assert_int_eq(rl_init(&rl, &only_ops, T0), 0);
	ck_assert(rl_consume(&rl, UINT64_MAX, T0));
	ck_assert(!rl_consume(&rl, 0, T0));
	rl_close(&rl);
}
END_TEST

START_TEST(clock_going_back_is_harmless)
{
	struct token_bucket b = bucket(100, 0, 100, T0);

	ck_assert(tb_take(&b, 100, T0, NULL));
	ck_assert(!tb_take(&b, 1, T0 - 50 * MS, NULL));
	ck_assert_uint_eq(drain(&b, T0 + 50 * MS), 50);
}
END_TEST

Suite *ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("buckets");

	tcase_add_test(tc, starts_full);
	tcase_add_test(tc, refill_linear_and_capped);
	tcase_add_test(tc, remainder_carried);
	tcase_add_test(tc, huge_values_no_overflow);
	tcase_add_test(tc, one_time_burst);
	tcase_add_test(tc, wait_counts_remainder);
	tcase_add_test(tc, oversized_once_then_blocks);
	tcase_add_test(tc, ops_and_bytes);
	tcase_add_test(tc, short_waits_arm_at_least_1ms);
	tcase_add_test(tc, disabled_buckets);
	tcase_add_test(tc, clock_going_back_is_harmless);
	suite_add_tcase(s, tc);
	return s;
}
