#include "lib/slots.h"

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int max_slots = 1, used;

void kiln_slots_set_max(int max)
{
	pthread_mutex_lock(&lock);
	max_slots = max;
	pthread_mutex_unlock(&lock);
}

bool kiln_slots_take(void)
{
	bool ok;

	pthread_mutex_lock(&lock);
	ok = used < max_slots;
	if (ok)
		used++;
	pthread_mutex_unlock(&lock);
	return ok;
}

void kiln_slots_add(void)
{
	pthread_mutex_lock(&lock);
	used++;
	pthread_mutex_unlock(&lock);
}

void kiln_slots_give(void)
{
	pthread_mutex_lock(&lock);
	if (used > 0)
		used--;
	pthread_mutex_unlock(&lock);
}

int kiln_slots_used(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = used;
	pthread_mutex_unlock(&lock);
	return n;
}

int kiln_slots_free(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = used < max_slots ? max_slots - used : 0;
	pthread_mutex_unlock(&lock);
	return n;
}
