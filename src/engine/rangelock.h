/* rangelock.h - chunk range locks that order copy-out, origin writes and
 * snapshot reads of the same chunks.
 *
 * A writer that must copy chunks out holds a WRITE range from before the copy
 * until its origin write is done; a snapshot read holds a READ range while it
 * reads.  READ ranges share; anything else overlapping waits.  Writers that
 * need no copy hold no range, but first wait for copies in progress on their
 * chunks to end (rangelock_wait_writes_locked): a copy reads the original
 * after clearing the chunk's pending bits, so a writer that sees "nothing
 * pending" could otherwise overwrite the origin under a copy in flight.  After
 * that wait no new copy of those chunks can start (no snapshot needs them,
 * and snapshot creation drains writers first).
 *
 * Entries live on the caller's stack.  Everything runs under the owner's
 * mutex (the volume's), passed in for the waits. */
#ifndef HS_RANGELOCK_H
#define HS_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct range_entry {
	uint64_t first, last; /* chunks, inclusive */
	bool write;
	bool held;
	struct range_entry *prev, *next;
};

struct rangelock {
	struct range_entry *head;
	pthread_cond_t released;
	uint64_t waits; /* times a caller had to wait */
};

void rangelock_init(struct rangelock *rl);
void rangelock_destroy(struct rangelock *rl);

/* Waits (releasing mu) until [first, last] is free for this mode, then
 * holds it in e. */
void rangelock_acquire_locked(struct rangelock *rl, pthread_mutex_t *mu, struct range_entry *e,
			      uint64_t first, uint64_t last, bool write);
void rangelock_release_locked(struct rangelock *rl, struct range_entry *e);
/* Waits (releasing mu) until no WRITE range overlaps [first, last]. */
void rangelock_wait_writes_locked(struct rangelock *rl, pthread_mutex_t *mu, uint64_t first,
				  uint64_t last);

#endif
