#include "vmm/snapshot.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sha256.h"

/* Header field offsets. */
#define H_MAGIC 0
#define H_VERSION 8
#define H_HSIZE 12
#define H_FILELEN 16
#define H_MACHINE 24
#define H_CPU 56
#define H_MEM 88
#define H_NSEC 96
/* 100..127 zero, reserved */

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

void snap_writer_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
	snap_put(w, NULL, SNAP_HEADER_SIZE); /* filled by snap_finish */
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

void snap_put(struct snap_writer *w, const void *data, size_t n)
{
	if (w->err)
		return;
	if (n > SNAP_MAX_BYTES - SNAP_DIGEST - w->len) {
		w->err = -E2BIG;
		return;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		uint8_t *nb;

		while (cap < w->len + n)
			cap *= 2;
		if (!(nb = realloc(w->buf, cap))) {
			w->err = -ENOMEM;
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	if (data)
		memcpy(w->buf + w->len, data, n);
	else
		memset(w->buf + w->len, 0, n);
	w->len += n;
}

void snap_put_u32(struct snap_writer *w, uint32_t v)
{
	uint8_t b[4];

	le32(b, v);
	snap_put(w, b, 4);
}

void snap_put_u64(struct snap_writer *w, uint64_t v)
{
	uint8_t b[8];

	le64(b, v);
	snap_put(w, b, 8);
}

void snap_put_blob(struct snap_writer *w, const void *data, uint32_t n)
{
	snap_put_u32(w, n);
	snap_put(w, data, n);
}

static void close_section(struct snap_writer *w)
{
	size_t payload;

	if (!w->sec_start || w->err)
		return;
	payload = w->len - w->sec_start - SNAP_SECTION_HEAD;
	if (payload > UINT32_MAX) {
		w->err = -E2BIG;
		return;
	}
	le32(w->buf + w->sec_start + 8, (uint32_t)payload);
	snap_put(w, NULL, (8 - payload % 8) % 8);
	w->sec_start = 0;
}

void snap_section(struct snap_writer *w, uint32_t tag, uint32_t index)
{
	close_section(w);
	if (w->err)
		return;
	if (w->n_sections == SNAP_MAX_SECTIONS) {
		w->err = -E2BIG;
		return;
	}
	w->sec_start = w->len;
	snap_put_u32(w, tag);
	snap_put_u32(w, index);
	snap_put_u64(w, 0); /* the payload length, at close */
	w->n_sections++;
}

int snap_finish(struct snap_writer *w, const struct snap_header *h)
{
	uint8_t digest[SNAP_DIGEST];

	close_section(w);
	snap_put(w, NULL, SNAP_DIGEST); /* room, so that the length below is final */
	if (w->err)
		return w->err;
	memset(w->buf, 0, SNAP_HEADER_SIZE);
	memcpy(w->buf + H_MAGIC, SNAP_MAGIC, 8);
	le32(w->buf + H_VERSION, h->version);
	le32(w->buf + H_HSIZE, SNAP_HEADER_SIZE);
	le64(w->buf + H_FILELEN, w->len);
	memcpy(w->buf + H_MACHINE, h->machine, SNAP_DIGEST);
	memcpy(w->buf + H_CPU, h->cpu, SNAP_DIGEST);
	le64(w->buf + H_MEM, h->mem_bytes);
	le32(w->buf + H_NSEC, w->n_sections);
	sha256_buf(w->buf, w->len - SNAP_DIGEST, digest);
	memcpy(w->buf + w->len - SNAP_DIGEST, digest, SNAP_DIGEST);
	return 0;
}

static int refuse(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int refuse(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

int snap_parse(struct snap_file *f, const uint8_t *buf, size_t len, const uint8_t *machine, const uint8_t *cpu,
	       char *err, size_t errlen)
{
	uint8_t digest[SNAP_DIGEST];
	size_t off, end;
	uint32_t i, n;

	memset(f, 0, sizeof(*f));
	if (len < SNAP_HEADER_SIZE + SNAP_DIGEST)
		return refuse(err, errlen, -EINVAL, "truncated: %zu bytes, shorter than a header", len);
	if (memcmp(buf + H_MAGIC, SNAP_MAGIC, 8))
		return refuse(err, errlen, -EINVAL, "not a kiln-vmm snapshot (bad magic)");
	f->h.version = rd32(buf + H_VERSION);
	if (f->h.version != SNAP_VERSION)
		return refuse(err, errlen, -EPROTO, "snapshot_version %u, this kiln-vmm reads %u", f->h.version,
			      SNAP_VERSION);
	if (rd32(buf + H_HSIZE) != SNAP_HEADER_SIZE)
		return refuse(err, errlen, -EINVAL, "header size %u, expected %u", rd32(buf + H_HSIZE),
			      SNAP_HEADER_SIZE);
	if (rd64(buf + H_FILELEN) != len)
		return refuse(err, errlen, -EINVAL, "truncated or extended: %zu bytes, the header says %llu", len,
			      (unsigned long long)rd64(buf + H_FILELEN));
	sha256_buf(buf, len - SNAP_DIGEST, digest);
	if (memcmp(digest, buf + len - SNAP_DIGEST, SNAP_DIGEST))
		return refuse(err, errlen, -EINVAL, "digest mismatch: the file was changed or damaged");
	memcpy(f->h.machine, buf + H_MACHINE, SNAP_DIGEST);
	memcpy(f->h.cpu, buf + H_CPU, SNAP_DIGEST);
	f->h.mem_bytes = rd64(buf + H_MEM);
	if (machine && memcmp(machine, f->h.machine, SNAP_DIGEST))
		return refuse(err, errlen, -ESTALE, "taken of another machine (vcpus, memory or devices differ)");
	if (cpu && memcmp(cpu, f->h.cpu, SNAP_DIGEST))
		return refuse(err, errlen, -ESTALE, "taken on another host CPU (CPUID or XSAVE size differ)");
	n = rd32(buf + H_NSEC);
	if (n > SNAP_MAX_SECTIONS)
		return refuse(err, errlen, -EINVAL, "%u sections, at most %u", n, SNAP_MAX_SECTIONS);
	for (i = H_NSEC + 4; i < SNAP_HEADER_SIZE; i++)
		if (buf[i])
			return refuse(err, errlen, -EINVAL, "reserved header byte %u is not zero", i);
	end = len - SNAP_DIGEST;
	off = SNAP_HEADER_SIZE;
	for (i = 0; i < n; i++) {
		uint64_t plen, padded;

		if (end - off < SNAP_SECTION_HEAD)
			return refuse(err, errlen, -EINVAL, "section %u: head past the end", i);
		plen = rd64(buf + off + 8);
		if (plen > end - off - SNAP_SECTION_HEAD)
			return refuse(err, errlen, -EINVAL, "section %u: %llu bytes run past the end", i,
				      (unsigned long long)plen);
		padded = (plen + 7) & ~7ULL;
		if (padded > end - off - SNAP_SECTION_HEAD)
			return refuse(err, errlen, -EINVAL, "section %u: padding runs past the end", i);
		f->sec[i].tag = rd32(buf + off);
		f->sec[i].index = rd32(buf + off + 4);
		f->sec[i].data = buf + off + SNAP_SECTION_HEAD;
		f->sec[i].len = (uint32_t)plen;
		off += SNAP_SECTION_HEAD + padded;
	}
	if (off != end)
		return refuse(err, errlen, -EINVAL, "%zu bytes after the last section", end - off);
	f->n_sections = n;
	return 0;
}

bool snap_find(const struct snap_file *f, uint32_t tag, uint32_t index, struct snap_reader *r)
{
	uint32_t i;

	for (i = 0; i < f->n_sections; i++) {
		if (f->sec[i].tag == tag && f->sec[i].index == index) {
			*r = (struct snap_reader){ .p = f->sec[i].data, .len = f->sec[i].len };
			return true;
		}
	}
	*r = (struct snap_reader){ .bad = true };
	return false;
}

void snap_get(struct snap_reader *r, void *dst, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		memset(dst, 0, n);
		return;
	}
	memcpy(dst, r->p + r->off, n);
	r->off += n;
}

uint32_t snap_get_u32(struct snap_reader *r)
{
	uint8_t b[4];

	snap_get(r, b, 4);
	return rd32(b);
}

uint64_t snap_get_u64(struct snap_reader *r)
{
	uint8_t b[8];

	snap_get(r, b, 8);
	return rd64(b);
}

void snap_get_blob(struct snap_reader *r, void *dst, uint32_t n)
{
	if (snap_get_u32(r) != n) {
		r->bad = true;
		memset(dst, 0, n);
		return;
	}
	snap_get(r, dst, n);
}

void snap_get_blob_max(struct snap_reader *r, void *dst, uint32_t max, uint32_t *n)
{
	*n = snap_get_u32(r);
	if (*n > max) {
		r->bad = true;
		*n = 0;
		return;
	}
	snap_get(r, dst, *n);
}

bool snap_rd_done(const struct snap_reader *r)
{
	return !r->bad && r->off == r->len;
}
