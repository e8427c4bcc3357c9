/* A fake guest for the virtio fuzz targets: 64 KiB of RAM between guard
 * pages, one device on the virtio-mmio transport, and a driver whose every
 * move comes from the fuzzer's input.
 *
 * RAM is [0, 48 KiB) plus [4 GiB, 4 GiB + 16 KiB), so gm_ptr()'s both
 * ranges and the gap between them are reachable. The guard pages on either
 * side are PROT_NONE: a device that strays past guest RAM faults at once
 * (ASan heap checks cannot see this mapping).
 *
 * The input is a sequence of commands, one byte each (modulo FG_NCMDS) and
 * then its arguments; see fguest.c. A command's argument that runs past
 * the input's end reads as zero. The device target supplies the
 * device-specific command (FG_CMD_DEVICE).
 *
 * Besides what ASan and UBSan see, every input checks: no access outside
 * guest RAM, no fd left open, and after a notification of a queue the
 * device drains (fg_device.drains), that the ring is empty or the device
 * is in NEEDS_RESET: a broken ring is never left half-served. */
#ifndef TESTS_FUZZ_FGUEST_H
#define TESTS_FUZZ_FGUEST_H

#include <stdint.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/evloop.h"
#include "vmm/guestmem.h"
#include "vmm/virtio/virtio.h"

#define FG_LOW_SIZE 0xc000u
#define FG_HIGH_SIZE 0x4000u
#define FG_RAM_SIZE (FG_LOW_SIZE + FG_HIGH_SIZE)
/* Where FG_CMD_SETUP puts queue q's rings: desc at q * FG_QUEUE_SPAN,
 * avail 4 KiB later, used 5 KiB later (sized for 256 entries). Data
 * buffers are best put from FG_DATA on. */
#define FG_QUEUE_SPAN 0x2000u
#define FG_DATA 0x8000u
#define FG_MAX_COMMANDS 256

enum fg_cmd {
	FG_CMD_MMIO_WRITE,   /* off16, width8, value64 */
	FG_CMD_MMIO_READ,    /* off16, width8 */
	FG_CMD_MEM_WRITE,    /* gpa16, len8, bytes */
	FG_CMD_NOTIFY,       /* queue8 */
	FG_CMD_SETUP,        /* features32, then per queue: size8 */
	FG_CMD_DESC,         /* queue8, index8, mode8, addr16|addr64, len32, flags8, next8 */
	FG_CMD_AVAIL,        /* queue8, head8: publish head, idx + 1 */
	FG_CMD_LOOP,         /* run the event loop once, without waiting */
	FG_CMD_DEVICE,       /* the device's own command */
	FG_NCMDS
};

struct fguest {
	uint8_t *ram;
	struct guest_mem mem;
	struct evloop loop;
	struct virtio_dev dev;
	uint16_t avail_idx[VIRTIO_MAX_QUEUES];  /* what FG_CMD_AVAIL published */
};

/* What a device target tells the driver. */
struct fg_device {
	const struct virtio_dev_ops *ops;
	/* Once, before the first input: what lives as long as the fuzzer
	 * (a disk file). NULL: nothing. */
	void (*init)(void);
	/* Make the device's state in *priv for one input; 0 or -errno. */
	int (*open)(void **priv, struct fuzz_in *in);
	void (*close)(void *priv);
	/* FG_CMD_DEVICE: read its arguments from in and act (the host side:
	 * a frame on the tap, a client on a socket). NULL: nothing. */
	void (*command)(struct fguest *g, struct fuzz_in *in);
	/* Queues (bit per index) that a notification must leave empty unless
	 * the device gave up with NEEDS_RESET: what it does with each chain
	 * needs nothing but the chain. */
	unsigned drains;
};

/* The host address of guest address gpa, which must be in RAM. */
uint8_t *fg_host(struct fguest *g, uint64_t gpa);

/* The guest address a 16-bit fuzz value names: [0, 48 KiB) as is, the rest
 * in the high range. Always in RAM. */
uint64_t fg_gpa(uint16_t v);

/* Run one input through a fresh device: map RAM once, open the device,
 * play the commands, then detach and close everything. Checks that the
 * device ends with no fd left open. */
int fg_run(const struct fg_device *dev, const uint8_t *data, size_t size);

#endif
