#include "vmm/i8042.h"

#include <string.h>

#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08
#define CB_KBD_INT 0x01

void i8042_init(struct i8042 *k, void (*reset)(void *), void (*irq)(void *), void *arg)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->cmd_byte = CB_KBD_INT | 0x04 | 0x40; /* interrupts, system flag, translation */
	k->reset = reset;
	k->irq = irq;
	k->arg = arg;
}

static bool push(struct i8042 *k, uint8_t b)
{
	if (k->out_len == sizeof(k->outbuf))
		return false;
	k->outbuf[(k->out_head + k->out_len++) % sizeof(k->outbuf)] = b;
	return true;
}

static void kick(struct i8042 *k)
{
	if (k->out_len && (k->cmd_byte & CB_KBD_INT) && k->irq)
		k->irq(k->arg);
}

void i8042_io(struct i8042 *k, uint16_t port, uint8_t *data, bool is_write)
{
	bool do_reset = false;

	pthread_mutex_lock(&k->lock);
	if (!is_write) {
		if (port == I8042_CMD) {
			*data = STATUS_SYS | (k->out_len ? STATUS_OBF : 0);
		} else {
			*data = 0;
			if (k->out_len) {
				*data = k->outbuf[k->out_head];
				k->out_head = (k->out_head + 1) % sizeof(k->outbuf);
				k->out_len--;
				kick(k);
			}
		}
	} else if (port == I8042_CMD) {
		switch (*data) {
		case 0xfe: do_reset = true; break;             /* pulse reset line */
		case 0x20: push(k, k->cmd_byte); kick(k); break; /* read command byte */
		case 0x60: k->pending_cmd = 0x60; break;       /* write command byte */
		case 0xaa: push(k, 0x55); kick(k); break;      /* self test */
		case 0xab: push(k, 0x00); kick(k); break;      /* keyboard interface test */
		case 0xd4: k->pending_cmd = 0xd4; break;       /* to aux: swallowed */
		default: break;
		}
	} else {
		if (k->pending_cmd == 0x60)
			k->cmd_byte = *data;
		else if (k->pending_cmd != 0xd4) {
			/* A keyboard command: acknowledge (and answer resets with
			 * the self-test pass code) so that atkbd probes fine. */
			push(k, 0xfa);
			if (*data == 0xff)
				push(k, 0xaa);
			kick(k);
		}
		k->pending_cmd = 0;
	}
	pthread_mutex_unlock(&k->lock);
	/* Outside the lock: the callback ends the VM. */
	if (do_reset && k->reset)
		k->reset(k->arg);
}

bool i8042_ctrl_alt_del(struct i8042 *k)
{
	/* Set 1 make/break codes through the controller's translation:
	 * Ctrl 0x1d, Alt 0x38, Del 0xe0 0x53, then the breaks. */
	static const uint8_t seq[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	bool ok = true;
	size_t i;

	pthread_mutex_lock(&k->lock);
	if (k->out_len + sizeof(seq) > sizeof(k->outbuf))
		ok = false;
	for (i = 0; ok && i < sizeof(seq); i++)
		push(k, seq[i]);
	if (ok)
		kick(k);
	pthread_mutex_unlock(&k->lock);
	return ok;
}
