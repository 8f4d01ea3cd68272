/* rangelock.c - see rangelock.h.  The list is short (one entry per request
 * in flight on chunks some snapshot needs), so a linear scan is right. */
#include "rangelock.h"

#include <assert.h>
#include <stddef.h>

void rangelock_init(struct rangelock *rl)
{
	rl->head = NULL;
	rl->waits = 0;
	pthread_cond_init(&rl->released, NULL);
}

void rangelock_destroy(struct rangelock *rl)
{
	assert(rl->head == NULL);
	pthread_cond_destroy(&rl->released);
}

static bool conflicts(const struct rangelock *rl, uint64_t first, uint64_t last, bool write)
{
	for (const struct range_entry *e = rl->head; e; e = e->next) {
		if (e->last < first || e->first > last)
			continue;
		if (write || e->write)
			return true;
	}
	return false;
}

void rangelock_acquire_locked(struct rangelock *rl, pthread_mutex_t *mu, struct range_entry *e,
			      uint64_t first, uint64_t last, bool write)
{
	assert(first <= last);
	if (conflicts(rl, first, last, write)) {
		rl->waits++;
		do
			pthread_cond_wait(&rl->released, mu);
		while (conflicts(rl, first, last, write));
	}
	e->first = first;
	e->last = last;
	e->write = write;
	e->held = true;
	e->prev = NULL;
	e->next = rl->head;
	if (rl->head)
		rl->head->prev = e;
	rl->head = e;
}

void rangelock_release_locked(struct rangelock *rl, struct range_entry *e)
{
	if (!e->held)
		return;
	if (e->prev)
		e->prev->next = e->next;
	else
		rl->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	e->held = false;
	pthread_cond_broadcast(&rl->released);
}

void rangelock_wait_writes_locked(struct rangelock *rl, pthread_mutex_t *mu, uint64_t first,
				  uint64_t last)
{
	/* a READ-mode conflict check finds exactly the overlapping WRITE ranges */
	if (conflicts(rl, first, last, false)) {
		rl->waits++;
		do
			pthread_cond_wait(&rl->released, mu);
		while (conflicts(rl, first, last, false));
	}
}
