#include "lib/vec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VEC_FIRST 16

enum kiln_rc kiln_vec_grow(void *itemsp, size_t *cap, size_t len, size_t more, size_t elem, size_t max)
{
	void *items, *bigger;
	size_t need, ncap;

	if (more > max || len > max - more)
		return KILN_E_LIMIT;
	need = len + more;
	if (need <= *cap)
		return KILN_OK;
	ncap = *cap ? *cap : VEC_FIRST;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
	if (ncap > max)
		ncap = max;
	if (elem && ncap > SIZE_MAX / elem)
		return KILN_E_NOMEM;
	/* itemsp points at a T *: read and write it as bytes, whatever T is. */
	memcpy(&items, itemsp, sizeof(items));
	if (!(bigger = realloc(items, ncap * elem)))
		return KILN_E_NOMEM;
	memcpy(itemsp, &bigger, sizeof(bigger));
	*cap = ncap;
	return KILN_OK;
}
