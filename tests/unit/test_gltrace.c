/* The trace buffer (gitlab/trace): CRC, sections, and the size limit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gitlab/trace.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

START_TEST(trace_crc_and_sections)
{
	struct trace *t = test_offline_trace(0);
	struct kiln_err e = { 0 };
	uint32_t crc;
	size_t len;
	char *copy;
	bool cut;

	ck_assert_int_eq(mask_add_secret(trace_masker(t), "topsecret", NULL), KILN_OK);
	trace_write(t, "hello top", 9);
	trace_write(t, "secret", 6);
	trace_section(t, "step_script", true, "Executing");
	trace_write(t, "out\n", 4);
	trace_section(t, "step_script", false, NULL);
	ck_assert_int_eq(trace_finish(t, "success", NULL, 0, &e), KILN_OK);
	trace_stat(t, &len, &crc, &cut);
	copy = trace_copy(t, &len);
	ck_assert(!cut);
	/* The masked bytes, and what the checksum covers, are exactly these. */
	ck_assert_ptr_nonnull(strstr(copy, "hello [MASKED]\n\033[0Ksection_start:"));
	ck_assert_ptr_nonnull(strstr(copy, ":step_script\r\033[0K\033[0K\033[36;1mExecuting\033[0;m\nout\n\033[0Ksection_end:"));
	ck_assert_ptr_null(strstr(copy, "topsecret"));
	ck_assert_uint_eq(crc, (uint32_t)crc32(0, (const Bytef *)copy, (uInt)len));
	ck_assert_uint_eq(len, strlen(copy));
	free(copy);
	trace_free(t);
}
END_TEST

START_TEST(trace_limit_cuts_at_utf8)
{
	static const char want[] = "12345678\xc3\xa9\n\033[0;33mJob's log exceeded limit of 11 bytes.";
	struct trace *t = test_offline_trace(11);
	char *copy;
	size_t len;
	uint32_t crc;
	bool cut;

	/* 8 ASCII bytes, then "é" (2 bytes) and "€" (3 bytes): the cut falls
	 * inside "€", which goes whole. */
	trace_write(t, "12345678\xc3\xa9\xe2\x82\xac tail", 18);
	trace_write(t, "MORE", 4);
	trace_stat(t, &len, &crc, &cut);
	copy = trace_copy(t, &len);
	ck_assert(cut);
	ck_assert_int_eq(strncmp(copy, want, sizeof(want) - 1), 0);
	ck_assert_ptr_null(strstr(copy, "MORE"));
	ck_assert_uint_eq(crc, (uint32_t)crc32(0, (const Bytef *)copy, (uInt)len));
	free(copy);
	trace_free(t);
}
END_TEST

Suite *gltrace_suite(void)
{
	Suite *s = suite_create("gltrace");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, trace_crc_and_sections);
	tcase_add_test(tc, trace_limit_cuts_at_utf8);
	suite_add_tcase(s, tc);
	return s;
}
