#include "agent/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/vec.h"

void ap_reader_init(struct ap_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void ap_reader_free(struct ap_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

static void consume(struct ap_reader *r)
{
	if (!r->skip)
		return;
	memmove(r->buf, r->buf + r->skip, r->len - r->skip);
	r->len -= r->skip;
	r->skip = 0;
}

int ap_reader_feed(struct ap_reader *r, const void *data, size_t n)
{
	consume(r);
	switch (VEC_GROW(r->buf, r->cap, r->len, n, AP_READER_MAX)) {
	case KILN_OK:
		break;
	case KILN_E_LIMIT:
		return -EMSGSIZE;
	default:
		return -ENOMEM;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	return 0;
}

int ap_reader_next(struct ap_reader *r, uint8_t *type, const uint8_t **payload, uint32_t *len)
{
	uint32_t n;

	consume(r);
	if (r->len < AP_HEADER_SIZE)
		return 0;
	n = (uint32_t)r->buf[0] | (uint32_t)r->buf[1] << 8 | (uint32_t)r->buf[2] << 16 | (uint32_t)r->buf[3] << 24;
	if (n > AP_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (r->buf[4] == 0 || r->buf[4] > AP_TYPE_MAX || r->buf[5] || r->buf[6] || r->buf[7])
		return -EPROTO;
	if (r->len < AP_HEADER_SIZE + (size_t)n)
		return 0;
	*type = r->buf[4];
	*payload = r->buf + AP_HEADER_SIZE;
	*len = n;
	r->skip = AP_HEADER_SIZE + n;
	return 1;
}

void ap_header(uint8_t hdr[AP_HEADER_SIZE], uint8_t type, uint32_t len)
{
	hdr[0] = (uint8_t)len;
	hdr[1] = (uint8_t)(len >> 8);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 24);
	hdr[4] = type;
	hdr[5] = hdr[6] = hdr[7] = 0;
}

int ap_send(int fd, uint8_t type, const void *payload, uint32_t len)
{
	uint8_t hdr[AP_HEADER_SIZE];
	struct iovec iov[2];
	size_t total = AP_HEADER_SIZE + (size_t)len, done = 0;

	if (len > AP_MAX_PAYLOAD)
		return -EMSGSIZE;
	ap_header(hdr, type, len);
	while (done < total) {
		ssize_t w;
		int n = 0;

		if (done < AP_HEADER_SIZE) {
			iov[n++] = (struct iovec){ hdr + done, AP_HEADER_SIZE - done };
			if (len)
				iov[n++] = (struct iovec){ (void *)payload, len };
		} else {
			iov[n++] = (struct iovec){ (uint8_t *)payload + (done - AP_HEADER_SIZE), total - done };
		}
		w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)w;
	}
	return 0;
}

const char *ap_type_name(uint8_t type)
{
	static const char *const names[] = { "?",      "HELLO", "JOB",   "OUTPUT", "STEP",
					     "EXIT",   "CANCEL", "SHELL", "STDIN",  "WINSIZE",
					     "RESTORED" };

	return type <= AP_TYPE_MAX ? names[type] : "?";
}
