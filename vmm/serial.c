#include "vmm/serial.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define UART_IER_THRI 0x02
#define UART_IIR_NO_INT 0x01
#define UART_IIR_THRI 0x02
#define UART_IIR_FIFO 0xc0
#define UART_LCR_DLAB 0x80
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_MSR_DCD 0x80
#define UART_MSR_DSR 0x20
#define UART_MSR_CTS 0x10
#define UART_MCR_LOOP 0x10

void serial_init(struct serial *s, int out_fd, uint64_t limit, void (*irq)(void *), void *arg)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->limit = limit;
	s->irq = irq;
	s->irq_arg = arg;
	s->lcr = 0x03;
}

static void emit(struct serial *s, uint8_t ch)
{
	ssize_t n;

	if (s->out_fd < 0 || s->limit_hit)
		return;
	if (s->written >= s->limit) {
		static const char msg[] = "\n[kiln-vmm: serial output limit reached, dropping the rest]\n";
		s->limit_hit = true;
		n = write(s->out_fd, msg, sizeof(msg) - 1);
		(void)n;
		return;
	}
	do
		n = write(s->out_fd, &ch, 1);
	while (n < 0 && errno == EINTR);
	s->written++;
}

static void update_irq(struct serial *s)
{
	if ((s->ier & UART_IER_THRI) && s->thre_pending && s->irq)
		s->irq(s->irq_arg);
}

void serial_io(struct serial *s, uint16_t off, uint8_t *data, bool is_write)
{
	bool dlab;

	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & UART_LCR_DLAB;
	if (is_write) {
		uint8_t v = *data;

		switch (off) {
		case 0:
			if (dlab) {
				s->dll = v;
			} else {
				if (!(s->mcr & UART_MCR_LOOP))
					emit(s, v);
				/* The byte left at once: THR is empty again. */
				s->thre_pending = true;
				update_irq(s);
			}
			break;
		case 1:
			if (dlab) {
				s->dlm = v;
			} else {
				bool was = s->ier & UART_IER_THRI;
				s->ier = v & 0x0f;
				if (!was && (s->ier & UART_IER_THRI)) {
					s->thre_pending = true;
					update_irq(s);
				}
			}
			break;
		case 2: s->fcr = v; break;
		case 3: s->lcr = v; break;
		case 4: s->mcr = v; break;
		case 7: s->scr = v; break;
		default: break;
		}
	} else {
		uint8_t v = 0;

		switch (off) {
		case 0: v = dlab ? s->dll : 0; break;   /* no input */
		case 1: v = dlab ? s->dlm : s->ier; break;
		case 2:
			v = (s->fcr & 1) ? UART_IIR_FIFO : 0;
			if ((s->ier & UART_IER_THRI) && s->thre_pending) {
				v |= UART_IIR_THRI;
				s->thre_pending = false;
			} else {
				v |= UART_IIR_NO_INT;
			}
			break;
		case 3: v = s->lcr; break;
		case 4: v = s->mcr; break;
		case 5: v = UART_LSR_THRE | UART_LSR_TEMT; break;
		case 6: v = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS; break;
		case 7: v = s->scr; break;
		default: break;
		}
		*data = v;
	}
	pthread_mutex_unlock(&s->lock);
}
