/* What vmm-test-init.c shares with the other parts of the test init. */
#ifndef TESTS_GUEST_VMM_TEST_INIT_H
#define TESTS_GUEST_VMM_TEST_INIT_H

#include <stdint.h>

/* One line on the console (stdout), newline added. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The test pattern: byte i of a stream with the given seed (/ref.bin is
 * seed 0 from byte 0). */
uint8_t pat(unsigned seed, uint32_t i);

/* kiln.test=hostile: drive every virtio-mmio device but the root disk by
 * hand, as a hostile guest would (tests/guest/hostile.c). Prints one
 * "hostile: <device> <attack>: <what the device did>" line per attack;
 * returns how many answers were not the expected ones (-1 when the attacks
 * could not run at all). */
int hostile_run(void);

#endif
