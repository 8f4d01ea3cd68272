/* flusher.c - moves copies from the RAM buffer to the diff file.
 *
 * One thread per volume.  It sleeps until the buffer is more than half full
 * (or a writer waits for room), then writes the oldest-reserved copies to
 * their diff-file slots in runs of neighbouring slots, freeing RAM as it
 * goes, until the buffer is down to a quarter.  Keeping copies in RAM while
 * there is room means a copy the backup consumes soon is never written at
 * all.  A failed write fails the snapshots that needed those copies, and
 * their RAM is freed all the same, so writers never wait on a broken disk.
 * Copies that only draining snapshots need are left in RAM: their reader
 * takes them (see snapshot_set_drain), unless a writer waits for room and
 * the reader leaves them to someone else (snapshot_drain_yield).
 *
 * Its second duty: when memory holds more copy records than the volume's
 * hot target, it puts settled ones to rest (rest.c), in turns with batches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/volume_internal.h"

#define FLUSH_BATCH 64

static bool above_high_mark(const struct volume *v)
{
	return diffstore_ram_used(&v->ds) * 2 > v->ds.ram_slots;
}

static bool above_low_mark(const struct volume *v)
{
	return diffstore_ram_used(&v->ds) * 4 > v->ds.ram_slots;
}

void flusher_kick_locked(struct volume *v)
{
	pthread_cond_signal(&v->flush_wake);
}

static int cmp_file_slot(const void *a, const void *b, void *ctx)
{
	struct cowmap *m = ctx;
	uint32_t x = cowmap_get(m, *(const uint32_t *)a)->file_slot;
	uint32_t y = cowmap_get(m, *(const uint32_t *)b)->file_slot;
	return x < y ? -1 : x > y;
}

/* Picks up to FLUSH_BATCH copies that are only in RAM, marks them FLUSHING.
 * Copies only draining snapshots need stay, unless with_drained. */
static unsigned pick_batch_locked(struct volume *v, uint32_t *ids, bool with_drained)
{
	unsigned n = 0;

	for (uint32_t k = 0; k < v->ds.ram_slots && n < FLUSH_BATCH; k++) {
		uint32_t slot = (v->flush_cursor + k) % v->ds.ram_slots;
		uint32_t id = v->ds.ram_owner[slot];
		if (id == COW_NONE)
			continue;
		struct version *ver = cowmap_get(&v->map, id);
		if (ver->state != VERSION_RAM || ver->dead)
			continue;
		/* its only readers drain it: it leaves RAM through them */
		if (!(ver->mask & ~v->drain_mask) && !with_drained)
			continue;
		ver->state = VERSION_FLUSHING;
		ids[n++] = id;
	}
	if (n)
		v->flush_cursor = (v->flush_cursor + 1) % v->ds.ram_slots;
	qsort_r(ids, n, sizeof(*ids), cmp_file_slot, &v->map);
	return n;
}

static void write_batch(struct volume *v, const uint32_t *ids, const uint32_t *fslots,
			const uint32_t *rslots, unsigned n, int *errs)
{
	unsigned i = 0;

	while (i < n) {
		unsigned j = i + 1;
		while (j < n && fslots[j] == fslots[j - 1] + 1)
			j++;
		int r = diffstore_write_run(&v->ds, fslots[i], rslots + i, j - i);
		for (unsigned k = i; k < j; k++)
			errs[k] = r;
		i = j;
	}
	(void)ids;
}

static void finish_batch_locked(struct volume *v, const uint32_t *ids, unsigned n,
				const int *errs)
{
	char reason[ENGINE_REASON_MAX];

	for (unsigned i = 0; i < n; i++) {
		struct version *ver = cowmap_get(&v->map, ids[i]);
		ver->state = VERSION_FILE;
		if (errs[i]) {
			snprintf(reason, sizeof(reason),
				 "writing a copy to the diff file%s%.120s failed: %s",
				 v->diff_dir[0] ? " in " : "", v->diff_dir, strerror(-errs[i]));
			volume_fail_mask_locked(v, ver->mask, reason);
			ver = cowmap_get(&v->map, ids[i]);
			if (ver->state != VERSION_FREE && ver->dead)
				version_free_locked(v, ids[i]);
			continue;
		}
		if (ver->dead) {
			version_free_locked(v, ids[i]);
		} else if (!ver->pins) {
			diffstore_ram_give_locked(&v->ds, ver->ram_slot);
			ver->ram_slot = COW_NONE;
			rest_note_settled_locked(v, ids[i]);
		}
	}
	pthread_cond_broadcast(&v->room);
}

static void *flusher_main(void *arg)
{
	struct volume *v = arg;
	uint32_t ids[FLUSH_BATCH], fslots[FLUSH_BATCH], rslots[FLUSH_BATCH];
	int errs[FLUSH_BATCH];
	bool rest_turn = false;

	pthread_mutex_lock(&v->mu);
	for (;;) {
		unsigned n;

		if (!v->flushing && (above_high_mark(v) || v->room_waiters))
			v->flushing = true;
		if (v->flushing && !above_low_mark(v) && !v->room_waiters)
			v->flushing = false;
		if (v->flusher_stop)
			break;
		/* records to rest, taking turns with batches when both are due */
		if (rest_due_locked(v) && (!v->flushing || rest_turn)) {
			rest_turn = false;
			rest_some_locked(v);
			continue;
		}
		if (!v->flushing) {
			pthread_cond_wait(&v->flush_wake, &v->mu);
			continue;
		}
		n = pick_batch_locked(v, ids, false);
		/* A writer waits, RAM holds only copies for a drain, and the
		 * drainer said it leaves them to its backup's block pass (which
		 * may itself wait on this writer's range: a buffer smaller than
		 * the pass's window).  Spill a batch of them. */
		if (n == 0 && v->room_waiters && v->drain_yield) {
			v->drain_yield = false;
			n = pick_batch_locked(v, ids, true);
		}
		if (n == 0) {
			/* everything in RAM is being copied in or read: wait for that */
			v->flushing = false;
			pthread_cond_wait(&v->flush_wake, &v->mu);
			continue;
		}
		rest_turn = true;
		for (unsigned i = 0; i < n; i++) {
			fslots[i] = cowmap_get(&v->map, ids[i])->file_slot;
			rslots[i] = cowmap_get(&v->map, ids[i])->ram_slot;
		}
		v->flush_in_flight = true;
		pthread_mutex_unlock(&v->mu);
		write_batch(v, ids, fslots, rslots, n, errs);
		pthread_mutex_lock(&v->mu);
		v->flush_in_flight = false;
		v->flush_batches++;
		finish_batch_locked(v, ids, n, errs); /* broadcasts room */
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

int flusher_start(struct volume *v)
{
	int r = pthread_create(&v->flusher, NULL, flusher_main, v);
	if (r)
		return -r;
	v->flusher_started = true;
	return 0;
}

void flusher_stop(struct volume *v)
{
	if (!v->flusher_started)
		return;
	pthread_mutex_lock(&v->mu);
	v->flusher_stop = true;
	pthread_cond_signal(&v->flush_wake);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->flusher, NULL);
	v->flusher_started = false;
}
