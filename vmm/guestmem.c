#include "vmm/guestmem.h"

#include <string.h>

void gm_layout(struct guest_mem *m, uint64_t size)
{
	m->low_size = size < GM_GAP_START ? size : GM_GAP_START;
	m->high_size = size - m->low_size;
}

void *gm_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end))
		return NULL;
	if (end <= m->low_size)
		return m->host + gpa;
	if (gpa >= GM_HIGH_START && end - GM_HIGH_START <= m->high_size)
		return m->host + m->low_size + (gpa - GM_HIGH_START);
	return NULL;
}

bool gm_read(const struct guest_mem *m, void *dst, uint64_t gpa, uint64_t len)
{
	void *p = gm_ptr(m, gpa, len);

	if (!p)
		return false;
	memcpy(dst, p, len);
	return true;
}

bool gm_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(m, gpa, len);

	if (!p)
		return false;
	memcpy(p, src, len);
	return true;
}
