/* Masking secrets in the job log (gitlab/mask): values split across writes,
 * held-back tails, token prefixes and URL parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitlab/mask.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

struct sink {
	char buf[65536];
	size_t len;
	size_t calls;
};

static void sink_out(void *arg, const void *p, size_t n)
{
	struct sink *s = arg;

	ck_assert_uint_le(s->len + n, sizeof(s->buf) - 1);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
	s->calls++;
}

/* Mask input, written in the pieces that '|' separates, with secrets
 * (NULL-terminated) and extra prefixes (NULL-terminated); compare. */
static void check_mask(const char *input, const char *const *secrets, const char *const *prefixes, const char *want)
{
	struct sink s = { .len = 0 };
	struct mask m;
	const char *p = input;

	mask_init(&m, sink_out, &s);
	for (; secrets && *secrets; secrets++)
		ck_assert_int_eq(mask_add_secret(&m, *secrets, NULL), KILN_OK);
	for (; prefixes && *prefixes; prefixes++)
		ck_assert_int_eq(mask_add_prefix(&m, *prefixes, NULL), KILN_OK);
	for (;;) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);

		ck_assert_int_eq(mask_write(&m, p, n), KILN_OK);
		if (!bar)
			break;
		p = bar + 1;
	}
	mask_flush(&m);
	ck_assert_msg(!strcmp(s.buf, want), "input '%s': got '%s', want '%s'", input, s.buf, want);
	mask_free(&m);
}

START_TEST(mask_values)
{
	static const char *const pw[] = { "hunter22", NULL };
	static const char *const two[] = { "apple", "pie", NULL };
	static const char *const overlap[] = { "the last word", "wo foobar", "wo", NULL };
	static const char *const nested[] = { "key", "long_key", NULL };
	static const char *const blanks[] = { "  spaced-out \n", "", "   ", "spaced-out", NULL };

	check_mask("nothing to hide", pw, NULL, "nothing to hide");
	check_mask("hunter22", pw, NULL, "[MASKED]");
	check_mask("pw=hunter22;", pw, NULL, "pw=[MASKED];");
	check_mask("hunter22hunter22 hhunter22", pw, NULL, "[MASKED][MASKED] h[MASKED]");
	check_mask("xapplex pie apples ppie", two, NULL, "x[MASKED]x [MASKED] [MASKED]s p[MASKED]");
	/* The longest value wins where values overlap. */
	check_mask("see the last wo| foobar", overlap, NULL, "see the last [MASKED]");
	check_mask("long_key key long_|key lo|ng_k|ey", nested, NULL, "[MASKED] [MASKED] [MASKED] [MASKED]");
	/* Values are trimmed, empty ones ignored, duplicates once. */
	check_mask("a spaced-out b", blanks, NULL, "a [MASKED] b");
}
END_TEST

START_TEST(mask_split_writes)
{
	static const char *const s[] = { "s3cr3t-value", NULL };

	/* Across two writes, at every possible cut. */
	check_mask("before s3cr3t|-value after", s, NULL, "before [MASKED] after");
	check_mask("s|3cr3t-value", s, NULL, "[MASKED]");
	check_mask("s3cr3t-valu|e", s, NULL, "[MASKED]");
	/* Across three writes. */
	check_mask("x s3c|r3t-va|lue y", s, NULL, "x [MASKED] y");
	check_mask("s|3cr3t-valu|e", s, NULL, "[MASKED]");
	/* A false start held back is released intact. */
	check_mask("s3cr3t-val|ve s3cr3|", s, NULL, "s3cr3t-valve s3cr3");
}
END_TEST

/* Found by the mask fuzz target: the stream ends (mask_flush) while a
 * secret that is also the start of a longer one is held back. */
START_TEST(mask_flush_masks_held)
{
	static const char *const nested[] = { "hunter2", "hunter2-and-more", NULL };
	static const char *const param[] = { "tok", NULL };

	check_mask("echo -n hunter2", nested, NULL, "echo -n [MASKED]");
	check_mask("hunter2|", nested, NULL, "[MASKED]");
	check_mask("hunter2-and|", nested, NULL, "[MASKED]-and");
	check_mask("x hunter2-and-more", nested, NULL, "x [MASKED]");
	/* Nothing ever written: nothing held, no buffer yet (UBSan). */
	check_mask("", nested, NULL, "");
	/* Prefixes and parameter names cut short by the end stay as they are. */
	check_mask("a glpat-", NULL, NULL, "a glpat-");
	check_mask("u?private_tok", param, NULL, "u?private_[MASKED]");
}
END_TEST

START_TEST(mask_holds_back_little)
{
	struct sink s = { .len = 0 };
	struct mask m;

	mask_init(&m, sink_out, &s);
	ck_assert_int_eq(mask_add_secret(&m, "abcdef", NULL), KILN_OK);
	ck_assert_int_eq(mask_write(&m, "0123456789abcde", 15), KILN_OK);
	/* At most longest - 1 bytes wait for the next write. */
	ck_assert_str_eq(s.buf, "0123456789");
	ck_assert_uint_le(m.hold_len, 5);
	ck_assert_int_eq(mask_write(&m, "X", 1), KILN_OK);
	ck_assert_str_eq(s.buf, "0123456789abcdeX");
	ck_assert_uint_eq(m.hold_len, 0);
	mask_free(&m);
}
END_TEST

START_TEST(mask_large_value)
{
	char *secret = malloc(16001), *input = malloc(16100);
	static const char *list[2];

	memset(secret, '_', 16000);
	secret[16000] = '\0';
	snprintf(input, 16100, "big: %.8000s|%.8000s!", secret, secret);
	list[0] = secret;
	check_mask(input, list, NULL, "big: [MASKED]!");
	free(secret);
	free(input);
}
END_TEST

START_TEST(mask_token_prefixes)
{
	static const char *const custom[] = { "glcbt-", " tok- ", NULL };
	static const char *const many[] = { "p1-", "p2-", "p3-", "p4-", "p5-", "p6-", "p7-", "p8-", "p9-", "p10-", NULL };

	check_mask("a glpat-Ab.c_d=e-f b", NULL, NULL, "a glpat-[MASKED] b");
	check_mask("xglpat-abc", NULL, NULL, "xglpat-[MASKED]");
	check_mask("glpat-one glpat-two", NULL, NULL, "glpat-[MASKED] glpat-[MASKED]");
	check_mask("glpat-abcglpat-def end", NULL, NULL, "glpat-[MASKED] end");
	/* Split anywhere, the prefix or the token. */
	check_mask("gl|pat-abc and glpat|-x|y.z!", NULL, NULL, "glpat-[MASKED] and glpat-[MASKED]!");
	check_mask("glpat-ab|cd|ef end", NULL, NULL, "glpat-[MASKED] end");
	/* A prefix alone is no token. */
	check_mask("glpat- x glpat-", NULL, NULL, "glpat- x glpat-");
	check_mask("glpat| -x", NULL, NULL, "glpat -x");
	/* The job's prefixes (trimmed), fifteen past the defaults (test_gltransfer.c). */
	check_mask("CI_JOB_TOKEN=glcbt-123abc tok-zz", NULL, custom, "CI_JOB_TOKEN=glcbt-[MASKED] tok-[MASKED]");
	check_mask("p9-x p10-x glpat-x", NULL, many, "p9-[MASKED] p10-[MASKED] glpat-[MASKED]");
}
END_TEST

START_TEST(mask_url_params)
{
	static const char *const pw[] = { "hunter22", NULL };

	check_mask("GET /a?private_token=abc123&page=2 HTTP", NULL, NULL, "GET /a?private_token=[MASKED]&page=2 HTTP");
	/* The value runs to '?', '&', a blank or a control character, as in gitlab-runner. */
	check_mask("u?x=1&RSS_TOKEN=Zz9#frag", NULL, NULL, "u?x=1&RSS_TOKEN=[MASKED]");
	check_mask("'https://s3/b?X-Amz-Signature=ab%2Fcd&X-Amz-Credential=AKIA/x' y", NULL, NULL,
		   "'https://s3/b?X-Amz-Signature=[MASKED]&X-Amz-Credential=[MASKED] y");
	check_mask("?authenticity_token=a+b/c= next", NULL, NULL, "?authenticity_token=[MASKED] next");
	check_mask("\"&x-amz-security-token=q\"", NULL, NULL, "\"&x-amz-security-token=[MASKED]");
	/* Split anywhere: the separator, the name, the value. */
	check_mask("a?|private_tok|en=ab|c&b=1", NULL, NULL, "a?private_token=[MASKED]&b=1");
	check_mask("a|&|private_token=|abc d", NULL, NULL, "a&private_token=[MASKED] d");
	/* No value, no separator before it, other names: left alone. */
	check_mask("?private_token=&a=1 ?private_token= x", NULL, NULL, "?private_token=&a=1 ?private_token= x");
	check_mask("private_token=abc ?token=abc ?private_tokens=abc", NULL, NULL,
		   "private_token=abc ?token=abc ?private_tokens=abc");
	check_mask("?private_tok", NULL, NULL, "?private_tok");
	/* Together with masked values. */
	check_mask("?rss_token=hunter22 hunter22", pw, NULL, "?rss_token=[MASKED] [MASKED]");
}
END_TEST

Suite *glmask_suite(void)
{
	Suite *s = suite_create("glmask");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, mask_values);
	tcase_add_test(tc, mask_split_writes);
	tcase_add_test(tc, mask_flush_masks_held);
	tcase_add_test(tc, mask_holds_back_little);
	tcase_add_test(tc, mask_large_value);
	tcase_add_test(tc, mask_token_prefixes);
	tcase_add_test(tc, mask_url_params);
	suite_add_tcase(s, tc);
	return s;
}
