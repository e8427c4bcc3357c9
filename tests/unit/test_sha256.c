#include <fcntl.h>
#include <pthread.h>
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

/* HMAC-SHA-256, RFC 4231 test case 2. */
START_TEST(hmac_vector)
{
	uint8_t d[32];
	char hex[65];

	sha256_hmac("Jefe", 4, "what do ya want for nothing?", 28, d);
	sha256_hex(d, hex);
	ck_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(file_hash_and_size)
{
	char path[] = "/tmp/kiln-sha-XXXXXX", hex[65];
	uint64_t size = 0;
	static char a[1000];
	struct kiln_err e = { 0 };
	int fd = mkstemp(path), i;

	memset(a, 'a', sizeof(a));

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "abc", 3), 3);
	close(fd);
	ck_assert_int_eq(sha256_file_hex(path, hex, &size, &e), KILN_OK);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ck_assert_uint_eq(size, 3);
	/* One million 'a' (the long FIPS vector), read in several pieces. */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(write(fd, a, sizeof(a)), (ssize_t)sizeof(a));
	close(fd);
	ck_assert_int_eq(sha256_file_hex(path, hex, &size, &e), KILN_OK);
	ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	ck_assert_uint_eq(size, 1000000);
	unlink(path);
	ck_assert_int_eq(sha256_file_hex(path, hex, &size, &e), KILN_E_IO);
	ck_assert_ptr_nonnull(strstr(e.msg, path));
}
END_TEST

/* Two threads hashing two files at once each get their own file's
 * digest (jobs of one kiln hash their images' files in threads). */
struct hasher {
	char path[64];
	char want[65];
	int bad;
};

static void *hash_often(void *arg)
{
	struct hasher *h = arg;
	struct kiln_err e = { 0 };
	char hex[65];
	int i;

	for (i = 0; i < 40; i++)
		if (sha256_file_hex(h->path, hex, NULL, &e) || strcmp(hex, h->want))
			h->bad++;
	return NULL;
}

START_TEST(file_hash_in_threads)
{
	static char data[300000];
	struct hasher h[2];
	struct kiln_err e = { 0 };
	pthread_t t[2];
	int i, fd;

	for (i = 0; i < 2; i++) {
		snprintf(h[i].path, sizeof(h[i].path), "/tmp/kiln-sha-XXXXXX");
		fd = mkstemp(h[i].path);
		ck_assert_int_ge(fd, 0);
		memset(data, 'x' + i, sizeof(data));
		ck_assert_int_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
		close(fd);
		ck_assert_int_eq(sha256_file_hex(h[i].path, h[i].want, NULL, &e), KILN_OK);
		h[i].bad = 0;
	}
	ck_assert_str_ne(h[0].want, h[1].want);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hash_often, &h[i]), 0);
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		unlink(h[i].path);
		ck_assert_int_eq(h[i].bad, 0);
	}
}
END_TEST

Suite *sha256_suite(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, known_vectors);
	tcase_add_test(tc, hmac_vector);
	tcase_add_test(tc, file_hash_and_size);
	tcase_add_test(tc, file_hash_in_threads);
	suite_add_tcase(s, tc);
	return s;
}
