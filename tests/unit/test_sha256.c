#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/sha256.h"
#include "tests/unit/suites.h"

START_TEST(known_vectors)
{
	char hex[65];

	sha256_buf_hex("", 0, hex);
	ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_buf_hex("abc", 3, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256_buf_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

/* Feeding in odd-sized pieces must give the same digest as one call. */
START_TEST(incremental_matches_oneshot)
{
	static char data[1000];
	struct sha256 s;
	uint8_t d[32];
	char a[65], b[65];
	size_t i, off = 0, step = 1;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + 3);
	sha256_buf_hex(data, sizeof(data), a);
	sha256_init(&s);
	while (off < sizeof(data)) {
		size_t n = off + step > sizeof(data) ? sizeof(data) - off : step;
		sha256_update(&s, data + off, n);
		off += n;
		step = step * 3 % 67 + 1;
	}
	sha256_final(&s, d);
	sha256_hex(d, b);
	ck_assert_str_eq(a, b);
	/* One million 'a': the long FIPS vector. */
	sha256_init(&s);
	memset(data, 'a', sizeof(data));
	for (i = 0; i < 1000; i++)
		sha256_update(&s, data, 1000);
	sha256_final(&s, d);
	sha256_hex(d, b);
	ck_assert_str_eq(b, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(file_hash_and_size)
{
	char path[] = "/tmp/kiln-sha-XXXXXX", hex[65];
	uint64_t size = 0;
	struct kiln_err e = { 0 };
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "abc", 3), 3);
	close(fd);
	ck_assert_int_eq(sha256_file_hex(path, hex, &size, &e), KILN_OK);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ck_assert_uint_eq(size, 3);
	unlink(path);
	ck_assert_int_eq(sha256_file_hex(path, hex, &size, &e), KILN_E_IO);
	ck_assert_ptr_nonnull(strstr(e.msg, path));
}
END_TEST

Suite *sha256_suite(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, known_vectors);
	tcase_add_test(tc, incremental_matches_oneshot);
	tcase_add_test(tc, file_hash_and_size);
	suite_add_tcase(s, tc);
	return s;
}
