/* Helpers shared by the runner's check suites. */
#ifndef KILN_TESTS_TESTUTIL_H
#define KILN_TESTS_TESTUTIL_H

/* Run a shell command made with printf-style fmt (at most 8 KiB); its exit
 * status, 128 when it did not exit normally. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
