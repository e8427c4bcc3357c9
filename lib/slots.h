/* The host's `concurrent` job slots, shared by every service kiln runs in
 * one process (gitlab/daemon.c's runners, github/'s fleets): a counter
 * under its own lock, so that neither service needs the other's. */
#ifndef KILN_SLOTS_H
#define KILN_SLOTS_H

#include <stdbool.h>

/* The limit (`concurrent`, at start and on reload); slots already taken
 * stay taken, so lowering it only stops new takes. */
void kiln_slots_set_max(int max);

/* Take one slot when one is free; false when all are taken. */
bool kiln_slots_take(void);

/* Take one slot even past the limit (a caller that checked
 * kiln_slots_used itself under its own lock). */
void kiln_slots_add(void);

/* Give one back (never below 0). */
void kiln_slots_give(void);

int kiln_slots_used(void);
int kiln_slots_free(void); /* max - used, 0 when over */

#endif
