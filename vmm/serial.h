/* 8250/16550A UART at COM1 (0x3f8, IRQ 4), output only: the guest
 * console. Interrupt driven: a THR-empty interrupt follows every write
 * while the driver enabled it. Output goes to an fd with a byte ceiling so
 * a chatty guest cannot fill the host's disk. */
#ifndef VMM_SERIAL_H
#define VMM_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERIAL_PORT 0x3f8
#define SERIAL_PORTS 8

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thre_pending;     /* THR-empty interrupt not yet read from IIR */
	int out_fd;            /* -1 drops output */
	uint64_t written;
	uint64_t limit;        /* bytes; output beyond it is dropped */
	bool limit_hit;
	/* Raise the interrupt line (edge: the callback pulses it). */
	void (*irq)(void *arg);
	void *irq_arg;
};

void serial_init(struct serial *s, int out_fd, uint64_t limit, void (*irq)(void *), void *arg);
/* A port access at SERIAL_PORT + off from a vCPU thread. */
void serial_io(struct serial *s, uint16_t off, uint8_t *data, bool is_write);

#endif
