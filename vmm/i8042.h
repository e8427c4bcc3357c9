/* The i8042 keyboard controller, as far as a microVM needs it: the guest
 * resets the machine by writing 0xfe to port 0x64 (reboot=k), which ends
 * the VM; the host can ask the guest to shut down by injecting
 * Ctrl-Alt-Del scancodes (the guest's atkbd driver turns them into
 * SIGINT to init). */
#ifndef VMM_I8042_H
#define VMM_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA 0x60
#define I8042_CMD 0x64

struct i8042 {
	pthread_mutex_t lock;
	uint8_t cmd_byte;        /* controller configuration byte */
	uint8_t pending_cmd;     /* command waiting for its data byte */
	uint8_t outbuf[16];      /* bytes waiting for the guest to read */
	unsigned out_head, out_len;
	void (*reset)(void *arg);   /* guest asked for a reset */
	void (*irq)(void *arg);     /* data for the guest: pulse IRQ 1 */
	void *arg;
};

void i8042_init(struct i8042 *k, void (*reset)(void *), void (*irq)(void *), void *arg);
/* A port access at 0x60 or 0x64 from a vCPU thread. */
void i8042_io(struct i8042 *k, uint16_t port, uint8_t *data, bool is_write);
/* Queue Ctrl-Alt-Del for the guest; false when the buffer is full. */
bool i8042_ctrl_alt_del(struct i8042 *k);

#endif
