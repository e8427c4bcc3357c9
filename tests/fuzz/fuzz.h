/* What every fuzz target shares: libFuzzer's entry points and a reader
 * that turns the input into numbers.
 *
 * Each target is one file, tests/fuzz/<name>.c, defining
 * LLVMFuzzerTestOneInput(); tests/fuzz/fuzz.mk builds it with clang and
 * libFuzzer, Makefile.am builds it with tests/fuzz/replay.c (plain gcc) so
 * that make check runs every seed and every input that once crashed. A
 * target returns 0 and asserts its properties with FUZZ_CHECK(), which
 * aborts: libFuzzer and the replayer both report an abort as a crash. */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional, once before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A violated property: say which and abort. */
#define FUZZ_CHECK(cond)                                                                        \
	do {                                                                                    \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                \
		}                                                                               \
	} while (0)

/* Where targets make their scratch files: tmpfs when there is one, as
 * creating and removing files on a disk file system per input is most of
 * the time a target spends. */
static inline const char *fuzz_tmpdir(void)
{
	return access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
}

/* The input as a stream; reads past its end give zeros and set done. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
	bool done;
};

static inline uint64_t fuzz_take(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < bytes; i++) {
		if (in->n == 0) {
			in->done = true;
			break;
		}
		v |= (uint64_t)*in->p++ << (8 * i);
		in->n--;
	}
	return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in) { return (uint8_t)fuzz_take(in, 1); }
static inline uint16_t fuzz_u16(struct fuzz_in *in) { return (uint16_t)fuzz_take(in, 2); }
static inline uint32_t fuzz_u32(struct fuzz_in *in) { return (uint32_t)fuzz_take(in, 4); }
static inline uint64_t fuzz_u64(struct fuzz_in *in) { return fuzz_take(in, 8); }

/* Up to max bytes of the rest of the input, without copying: their count
 * in *len. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t max, size_t *len)
{
	const uint8_t *p = in->p;

	*len = max < in->n ? max : in->n;
	in->p += *len;
	in->n -= *len;
	if (*len < max)
		in->done = true;
	return p;
}

#endif
