/* The output prefixer of kiln exec: prefixes, partial lines, interleaving,
 * colours carried across lines and never onto a prefix, '\r', cuts that
 * keep escape sequences and UTF-8 whole, the tail kept for the summary. */
#include <stdlib.h>
#include <string.h>

#include "localci/outmux.h"
#include "tests/unit/suites.h"

struct sink {
	char buf[65536];
	size_t len;
};

static void sink_write(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;

	ck_assert_uint_lt(s->len + n, sizeof(s->buf));
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
}

static struct sink g_sink;
static struct outmux g_m;

static void setup(bool colour, int width)
{
	memset(&g_sink, 0, sizeof(g_sink));
	outmux_init(&g_m, sink_write, &g_sink, colour, width);
}

static void wr(struct outmux_stream *s, const char *text, long long t)
{
	outmux_write(s, text, strlen(text), t);
}

START_TEST(whole_lines_prefixed_and_padded)
{
	struct outmux_stream a, b;

	setup(false, 6);
	outmux_stream_init(&g_m, &a, "build", 0, 0);
	outmux_stream_init(&g_m, &b, "test-a", 1, 0);
	wr(&a, "one\ntwo\n", 0);
	wr(&b, "three\n", 0);
	outmux_note(&a, "booting a fresh VM (%s)", "qemu");
	outmux_print(&g_m, "summary %d", 1);
	ck_assert_str_eq(g_sink.buf, "build  > one\nbuild  > two\ntest-a > three\n"
				     "build  > booting a fresh VM (qemu)\nsummary 1\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(partial_line_waits_100ms_then_continues)
{
	struct outmux_stream a;

	setup(false, 5);
	outmux_stream_init(&g_m, &a, "build", 0, 0);
	wr(&a, "Compiling... ", 1000);
	outmux_tick(&a, 1050, false);
	ck_assert_str_eq(g_sink.buf, "");
	outmux_tick(&a, 1100, false);
	ck_assert_str_eq(g_sink.buf, "build > Compiling... ");
	/* Nothing else was written: the line goes on where it was. */
	wr(&a, "done\nnext", 1200);
	ck_assert_str_eq(g_sink.buf, "build > Compiling... done\n");
	outmux_tick(&a, 1250, true);
	ck_assert_str_eq(g_sink.buf, "build > Compiling... done\nbuild > next\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(another_job_ends_the_open_line)
{
	struct outmux_stream a, b;

	setup(false, 1);
	outmux_stream_init(&g_m, &a, "a", 0, 0);
	outmux_stream_init(&g_m, &b, "b", 1, 0);
	wr(&a, "50%", 0);
	outmux_tick(&a, 200, false);
	wr(&b, "hello\n", 210);
	wr(&a, " 100%\n", 220);
	ck_assert_str_eq(g_sink.buf, "a > 50%\nb > hello\na >  100%\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(colours_span_lines_but_never_a_prefix)
{
	struct outmux_stream a;

	setup(false, 1);
	outmux_stream_init(&g_m, &a, "a", 0, 0);
	/* The agent's command echo: set, text, reset on one line. */
	wr(&a, "\033[32;1m$ make\033[0;m\n", 0);
	ck_assert_str_eq(g_sink.buf, "a > \033[32;1m$ make\033[0;m\n");
	g_sink.len = 0;
	g_sink.buf[0] = '\0';
	/* A colour left on at the end of a line: reset before the newline,
	 * set again after the next prefix. */
	wr(&a, "\033[31mred\nstill red\033[0m plain\n", 0);
	ck_assert_str_eq(g_sink.buf, "a > \033[31mred\033[0m\na > \033[31mstill red\033[0m plain\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(coloured_prefixes_on_a_terminal)
{
	struct outmux_stream a;

	setup(true, 3);
	outmux_stream_init(&g_m, &a, "ab", 0, 0);
	wr(&a, "x\n", 0);
	outmux_note(&a, "note");
	ck_assert_str_eq(g_sink.buf, "\033[36mab \033[0m > x\n\033[36mab \033[0m > \033[2mnote\033[0m\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(carriage_returns)
{
	struct outmux_stream a;

	setup(false, 1);
	outmux_stream_init(&g_m, &a, "a", 0, 0);
	wr(&a, "dos line\r\n", 0);
	wr(&a, "10%\r50%\r100%\n", 0);
	ck_assert_str_eq(g_sink.buf, "a > dos line\na > 100%\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(partial_writes_keep_escapes_and_utf8_whole)
{
	struct outmux_stream a;

	setup(false, 1);
	outmux_stream_init(&g_m, &a, "a", 0, 0);
	wr(&a, "abc\033[3", 0);
	outmux_tick(&a, 500, false);
	ck_assert_str_eq(g_sink.buf, "a > abc");
	wr(&a, "2mX\033[0m\n", 600);
	ck_assert_str_eq(g_sink.buf, "a > abc\033[32mX\033[0m\n");
	g_sink.len = 0;
	g_sink.buf[0] = '\0';
	wr(&a, "caf\xc3", 1000);
	outmux_tick(&a, 1200, false);
	ck_assert_str_eq(g_sink.buf, "a > caf");
	wr(&a, "\xa9\n", 1300);
	ck_assert_str_eq(g_sink.buf, "a > caf\xc3\xa9\n");
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(long_lines_are_cut)
{
	struct outmux_stream a;
	char *big = malloc(OUTMUX_LINE_MAX + 11);

	setup(false, 1);
	outmux_stream_init(&g_m, &a, "a", 0, 0);
	memset(big, 'x', OUTMUX_LINE_MAX + 10);
	big[OUTMUX_LINE_MAX + 10] = '\0';
	wr(&a, big, 0);
	wr(&a, "\n", 0);
	ck_assert_uint_eq(g_sink.len, 4 + OUTMUX_LINE_MAX + 10 + 1);
	ck_assert_int_eq(g_sink.buf[g_sink.len - 1], '\n');
	ck_assert_ptr_null(strchr(g_sink.buf + 4, '>'));
	free(big);
	outmux_destroy(&g_m);
}
END_TEST

START_TEST(tail_keeps_the_last_three_plain_lines)
{
	struct outmux_stream a;
	unsigned n;

	setup(false, 1);
	outmux_stream_init(&g_m, &a, "a", 0, 0);
	ck_assert_ptr_null(outmux_tail(&a, 0, &n));
	ck_assert_uint_eq(n, 0);
	wr(&a, "one\ntwo\n\n\033[31;1mthree\033[0;m\r\nfour  \n", 0);
	wr(&a, "fi", 0);
	outmux_tick(&a, 1000, true);
	ck_assert_ptr_nonnull(outmux_tail(&a, 0, &n));
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(outmux_tail(&a, 0, NULL), "three");
	ck_assert_str_eq(outmux_tail(&a, 1, NULL), "four");
	ck_assert_str_eq(outmux_tail(&a, 2, NULL), "fi");
	ck_assert_ptr_null(outmux_tail(&a, 3, NULL));
	outmux_destroy(&g_m);
}
END_TEST

Suite *outmux_suite(void)
{
	Suite *s = suite_create("outmux");
	TCase *tc = tcase_create("prefixer");

	tcase_add_test(tc, whole_lines_prefixed_and_padded);
	tcase_add_test(tc, partial_line_waits_100ms_then_continues);
	tcase_add_test(tc, another_job_ends_the_open_line);
	tcase_add_test(tc, colours_span_lines_but_never_a_prefix);
	tcase_add_test(tc, coloured_prefixes_on_a_terminal);
	tcase_add_test(tc, carriage_returns);
	tcase_add_test(tc, partial_writes_keep_escapes_and_utf8_whole);
	tcase_add_test(tc, long_lines_are_cut);
	tcase_add_test(tc, tail_keeps_the_last_three_plain_lines);
	suite_add_tcase(s, tc);
	return s;
}
