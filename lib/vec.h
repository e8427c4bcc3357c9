/* One growable array with a ceiling: every buffer that grows as input
 * arrives goes through kiln_vec_grow, so that hostile or runaway input
 * meets a named limit instead of eating the host's memory. The array stays
 * the caller's own (T *items; size_t len, cap), so structures keep their
 * fields and indexing. */
#ifndef KILN_VEC_H
#define KILN_VEC_H

#include <stddef.h>

#include "lib/result.h"

/* Make room in *itemsp (an array of elem-byte items, len used, *cap
 * allocated) for more items past len: the capacity doubles (from 16
 * items), never beyond max items. KILN_E_LIMIT when len + more passes max,
 * KILN_E_NOMEM when the allocation fails; the array is unchanged then. */
enum kiln_rc kiln_vec_grow(void *itemsp, size_t *cap, size_t len, size_t more, size_t elem, size_t max);

/* The same for an array variable: VEC_GROW(v->items, v->cap, v->n, 1, MAX). */
#define VEC_GROW(items, cap, len, more, max) \
	kiln_vec_grow(&(items), &(cap), (len), (more), sizeof(*(items)), (max))

#endif
