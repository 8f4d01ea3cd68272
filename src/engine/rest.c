/* rest.c - copy records between memory and the store at rest (coldstore.h).
 *
 * Memory (the cowmap) holds every record something is busy with: a copy on
 * its way in, in RAM, being flushed, pinned by a reader, or released while
 * busy.  When more than hot_target records are in memory, the flusher
 * thread puts settled ones to rest (rest_some_locked): copies in the diff
 * file and zero records that nothing holds, each the only record at rest of
 * its chunk.  It pins them, writes their entries without the lock, and under
 * the lock frees the ones that did not change meanwhile from memory; a
 * snapshot delete waits for that pass as for a flusher batch, so the space
 * of what it released is free when it returns.
 *
 * A reader that needs a data record at rest brings it back into memory
 * (version_find_locked), because pinning is how a copy is kept still while
 * it is read without the lock; the next pass puts it to rest again.  A zero
 * record at rest is answered in place.  A snapshot letting go of chunks (a
 * consume, a used map, a delete or failure) edits records at rest in place:
 * it frees those it read alone and rewrites the mask of the others.
 *
 * If the store fails (a read or write error of its file, or no memory for
 * its bitmaps), its records cannot be trusted: every snapshot that holds
 * copies fails, saying why, their diff-file slots are given back, and from
 * then on the volume keeps its records in memory as before. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "engine/volume_internal.h"

#define REST_BATCH 256u /* short holds of the lock at commit */
#define COLD_RUN_SMALL 16u /* entries read for a lookup out of the blue */

static void give_slot(void *arg, uint32_t slot)
{
	struct volume *v = arg;
	diffstore_unreserve_locked(&v->ds, slot);
}

/* The store is lost: see the top of the file. */
static void rest_abandon_locked(struct volume *v, int err, const char *what)
{
	char reason[ENGINE_REASON_MAX];
	uint64_t mask = 0;

	hs_error("volume %s: %s the copy records at rest%s%.120s failed: %s; they stay in memory "
		 "from now on",
		 v->name, what, v->diff_dir[0] ? " in " : "", v->diff_dir, strerror(-err));
	coldstore_forget_all_locked(&v->cold, give_slot, v);
	v->rest_off = true;
	for (unsigned i = 0; i < v->nactive_list; i++)
		if (v->active[i]->held_chunks)
			mask |= v->active[i]->bit;
	snprintf(reason, sizeof(reason), "%s its copy records%s%.120s failed: %s", what,
		 v->diff_dir[0] ? " in " : "", v->diff_dir, strerror(-err));
	volume_fail_mask_locked(v, mask, reason);
	pthread_cond_broadcast(&v->room);
}

void rest_adopt_locked(struct volume *v)
{
	if (!coldstore_adopt_locked(&v->cold))
		return;
	/* records brought back from the old file have no entries in the new */
	for (uint32_t id = 0; id < v->map.cap; id++)
		cowmap_get(&v->map, id)->rest_clean = 0;
}

/* --- reading records at rest ------------------------------------------------ */

void rest_window_init(struct rest_window *w)
{
	w->n = 0;
}

typedef int (*entries_fn)(const struct coldstore *cs, uint64_t first, unsigned n,
			  struct cold_record *out);

/* Fills w with n entries from first, by chunk or by slot as read says.
 * False after a read error (the store is then abandoned). */
static bool window_fill_locked(struct volume *v, struct rest_window *w, entries_fn read,
			       uint64_t first, unsigned n)
{
	int r = read(&v->cold, first, n, w->e);

	if (r) {
		w->n = 0;
		rest_abandon_locked(v, r, "reading");
		return false;
	}
	w->first = first;
	w->n = n;
	return true;
}

/* The entry of chunk c (its bit is set), read with its neighbours into w.
 * NULL after a read error (the store is then abandoned). */
static const struct cold_record *entry_locked(struct volume *v, struct rest_window *w,
					      uint64_t c)
{
	if (w->n == 0 || c < w->first || c >= w->first + w->n) {
		/* a few entries for a lookup here and there; a whole window
		 * once the lookups walk on from the last one */
		unsigned want = w->n && c == w->first + w->n ? COLD_RUN_MAX : COLD_RUN_SMALL;
		unsigned n = (unsigned)HS_MIN_U64(want, v->nchunks - c);
		if (!window_fill_locked(v, w, coldstore_read_chunks_locked, c, n))
			return NULL;
	}
	if (!coldstore_record_sane(&v->cold, &w->e[c - w->first])) {
		w->n = 0;
		rest_abandon_locked(v, -EIO, "reading");
		return NULL;
	}
	return &w->e[c - w->first];
}

/* Brings the data record e back into memory.  COW_NONE when out of memory
 * (its snapshots then fail). */
static uint32_t bring_back_locked(struct volume *v, const struct cold_record *e)
{
	uint32_t id = cowmap_alloc(&v->map, e->chunk);

	if (id == COW_NONE) {
		volume_fail_mask_locked(v, e->mask, "out of memory for copy records");
		return COW_NONE;
	}
	struct version *ver = cowmap_get(&v->map, id);
	ver->mask = e->mask;
	ver->file_slot = e->slot;
	ver->state = e->slot == COW_NONE ? VERSION_ZERO : VERSION_FILE;
	ver->rest_clean = 1;
	if (coldstore_forget_locked(&v->cold, e) < 0) {
		/* its slot is still marked at rest: the store gives it back */
		cowmap_free(&v->map, id);
		rest_abandon_locked(v, -ENOMEM, "keeping track of");
		return COW_NONE;
	}
	if (v->map.live > v->rest_at)
		flusher_kick_locked(v);
	return id;
}

uint32_t version_find_locked(struct volume *v, struct rest_window *w, uint64_t c, uint64_t bit,
			     bool *zero_at_rest)
{
	uint32_t id = cowmap_lookup(&v->map, c, bit);

	*zero_at_rest = false;
	if (id != COW_NONE || !coldstore_has_locked(&v->cold, c))
		return id;
	const struct cold_record *e = entry_locked(v, w, c);
	if (!e || !(e->mask & bit))
		return COW_NONE;
	if (e->slot == COW_NONE) {
		*zero_at_rest = true;
		return COW_NONE;
	}
	struct cold_record copy = *e; /* w may be reused below */
	return bring_back_locked(v, &copy);
}

/* The entry of diff-file slot slot (its bit is set), read with the slots
 * after it into w: a reader in slot order reads a window once.  NULL after
 * a read error (the store is then abandoned). */
static const struct cold_record *slot_entry_locked(struct volume *v, struct rest_window *w,
						   uint32_t slot)
{
	if (w->n == 0 || slot < w->first || slot >= w->first + w->n) {
		unsigned n = (unsigned)HS_MIN_U64(COLD_RUN_MAX, v->cold.slots.nbits - slot);
		if (!window_fill_locked(v, w, coldstore_read_slots_locked, slot, n))
			return NULL;
	}
	return &w->e[slot - w->first];
}

uint32_t version_find_at_slot_locked(struct volume *v, struct rest_window *ws,
				     struct rest_window *w, uint64_t c, uint32_t slot,
				     uint64_t bit, bool *zero_at_rest)
{
	uint32_t id = cowmap_lookup(&v->map, c, bit);

	*zero_at_rest = false;
	if (id != COW_NONE || !coldstore_has_locked(&v->cold, c))
		return id;
	if (slot != COW_NONE && slot < v->cold.slots.nbits && bitmap_test(&v->cold.slots, slot)) {
		/* a slot at rest names its record whole (coldstore.h): if it
		 * is c's, it is the one record of c at rest */
		const struct cold_record *e = slot_entry_locked(v, ws, slot);
		if (!e)
			return COW_NONE;
		if (e->chunk == c) {
			if (!(e->mask & bit))
				return COW_NONE;
			struct cold_record copy = *e; /* ws may be reused below */
			return bring_back_locked(v, &copy);
		}
	}
	return version_find_locked(v, w, c, bit, zero_at_rest);
}

bool version_has_data_locked(struct volume *v, struct rest_window *w, uint64_t c, uint64_t bit)
{
	uint32_t id = cowmap_lookup(&v->map, c, bit);

	if (id != COW_NONE)
		return cowmap_get(&v->map, id)->state != VERSION_ZERO;
	if (!coldstore_has_locked(&v->cold, c))
		return false;
	const struct cold_record *e = entry_locked(v, w, c);
	return e && (e->mask & bit) && e->slot != COW_NONE;
}

/* The entry of chunk c at rest is being rewritten for another record: the
 * versions of c in memory can no longer rest without writing theirs. */
static void chunk_entry_rewritten_locked(struct volume *v, uint64_t c)
{
	for (uint32_t id = cowmap_head(&v->map, c); id != COW_NONE;
	     id = cowmap_get(&v->map, id)->next)
		cowmap_get(&v->map, id)->rest_clean = 0;
}

/* --- letting go ------------------------------------------------------------- */

/* Snapshots in mask no longer count a record (it is being thrown away under
 * them, and they fail). */
static void uncount_locked(struct volume *v, uint64_t mask, bool zero)
{
	for (unsigned i = 0; i < v->nactive_list; i++) {
		struct snapshot *o = v->active[i];
		if (!(mask & o->bit))
			continue;
		o->held_chunks--;
		if (zero)
			o->held_zero--;
	}
}

/* s lets go of the record e at rest.  *lost collects snapshots whose copy
 * had to be thrown away.  0 or -ENOMEM (the store must be abandoned). */
static int drop_one_locked(struct volume *v, struct snapshot *s, const struct cold_record *e,
			   uint64_t *lost)
{
	struct cold_record rec = *e;
	bool zero = e->slot == COW_NONE;

	rec.mask &= ~s->bit;
	s->held_chunks--;
	if (zero)
		s->held_zero--;
	if (rec.mask)
		chunk_entry_rewritten_locked(v, rec.chunk);
	if (rec.mask && coldstore_set_mask_locked(&v->cold, &rec) == 0)
		return 0;
	int r = coldstore_forget_locked(&v->cold, e);
	if (r)
		return r; /* abandoning the store gives the slot back */
	if (rec.mask) {
		/* the entry could not be rewritten: the record goes back to memory */
		uint32_t id = cowmap_alloc(&v->map, rec.chunk);
		if (id != COW_NONE) {
			struct version *ver = cowmap_get(&v->map, id);
			ver->mask = rec.mask;
			ver->file_slot = rec.slot;
			ver->state = zero ? VERSION_ZERO : VERSION_FILE;
			return 0;
		}
		*lost |= rec.mask;
		uncount_locked(v, rec.mask, zero);
	}
	if (!zero)
		diffstore_unreserve_locked(&v->ds, rec.slot);
	return 0;
}

void rest_drop_locked(struct volume *v, struct snapshot *s, uint64_t first, uint64_t count,
		      const struct bitmap *keep)
{
	struct cold_record e[COLD_RUN_MAX];
	uint64_t end = first + count, lost = 0;
	int r = 0;

	for (uint64_t c = bitmap_next_set(&v->cold.chunks, first, end);
	     c < end && s->held_chunks && v->cold.count && r == 0;) {
		/* one read for the entries of a window, wherever the live ones are */
		unsigned n = (unsigned)HS_MIN_U64(COLD_RUN_MAX, end - c);
		r = coldstore_read_chunks_locked(&v->cold, c, n, e);
		if (r) {
			rest_abandon_locked(v, r, "reading");
			break;
		}
		for (unsigned i = 0; i < n && r == 0; i++) {
			if (!bitmap_test(&v->cold.chunks, c + i))
				continue;
			if (!coldstore_record_sane(&v->cold, &e[i])) {
				rest_abandon_locked(v, -EIO, "reading");
				r = 0; /* nothing is left to drop */
				goto out;
			}
			if (!(e[i].mask & s->bit) || (keep && bitmap_test(keep, c + i)))
				continue;
			r = drop_one_locked(v, s, &e[i], &lost);
		}
		if (r) {
			rest_abandon_locked(v, r, "keeping track of");
			break;
		}
		c = bitmap_next_set(&v->cold.chunks, c + n, end);
	}
out:
	if (lost)
		volume_fail_mask_locked(v, lost, "out of memory for copy records");
}

/* --- walks for the backup ----------------------------------------------------- */

size_t rest_collect_locked(struct volume *v, struct snapshot *s, uint64_t *out, size_t max)
{
	struct cold_record e[COLD_RUN_MAX];
	size_t n = 0;

	for (uint64_t c = v->cold.count ? bitmap_next_set(&v->cold.chunks, 0, v->nchunks)
					: v->nchunks;
	     c < v->nchunks && n < max;) {
		unsigned k = (unsigned)HS_MIN_U64(COLD_RUN_MAX, v->nchunks - c);
		int r = coldstore_read_chunks_locked(&v->cold, c, k, e);
		if (r) {
			rest_abandon_locked(v, r, "reading");
			return n;
		}
		for (unsigned i = 0; i < k && n < max; i++) {
			if (!bitmap_test(&v->cold.chunks, c + i))
				continue;
			if (!coldstore_record_sane(&v->cold, &e[i])) {
				rest_abandon_locked(v, -EIO, "reading");
				return 0;
			}
			if (e[i].mask & s->bit)
				out[n++] = c + i;
		}
		c = bitmap_next_set(&v->cold.chunks, c + k, v->nchunks);
	}
	return n;
}

void rest_by_slot_locked(struct volume *v, struct snapshot *s, uint64_t lo, uint64_t hi,
			 uint64_t *out)
{
	struct cold_record e[COLD_RUN_MAX];
	uint64_t limit = HS_MIN_U64(hi, v->cold.slots.nbits);

	for (uint64_t a = v->cold.count ? bitmap_next_set(&v->cold.slots, lo, limit) : limit;
	     a < limit;) {
		unsigned k = (unsigned)HS_MIN_U64(COLD_RUN_MAX, limit - a);
		int r = coldstore_read_slots_locked(&v->cold, a, k, e);
		if (r) {
			rest_abandon_locked(v, r, "reading");
			return;
		}
		for (unsigned i = 0; i < k; i++)
			if (bitmap_test(&v->cold.slots, a + i) && (e[i].mask & s->bit))
				out[a + i - lo] = e[i].chunk + 1;
		a = bitmap_next_set(&v->cold.slots, a + k, limit);
	}
}

/* --- putting records to rest ------------------------------------------------------ */

static bool rest_due_at(const struct volume *v, uint32_t at)
{
	return v->cold.dev && !v->rest_off && v->map.live > at;
}

bool rest_due_locked(const struct volume *v)
{
	return rest_due_at(v, v->rest_at);
}

static bool restable_locked(const struct volume *v, const struct version *ver)
{
	if (ver->pins || ver->dead || !ver->mask)
		return false;
	if (ver->state != VERSION_ZERO && (ver->state != VERSION_FILE || ver->ram_slot != COW_NONE))
		return false;
	return !coldstore_has_locked(&v->cold, ver->chunk);
}

void rest_note_settled_locked(struct volume *v, uint32_t id)
{
	/* a pass that found nothing to move raised rest_at; this record can
	 * move now, so the next pass moves at least it (no empty passes) */
	if (v->rest_at == v->hot_target || !rest_due_at(v, v->hot_target) ||
	    !restable_locked(v, cowmap_get(&v->map, id)))
		return;
	v->rest_at = v->hot_target;
	flusher_kick_locked(v);
}

struct pick {
	struct cold_record rec;
	uint32_t id;
	bool clean; /* its entries at rest are still its own */
};

static int cmp_chunk(const void *a, const void *b)
{
	uint64_t x = ((const struct pick *)a)->rec.chunk;
	uint64_t y = ((const struct pick *)b)->rec.chunk;
	return x < y ? -1 : x > y;
}

void rest_some_locked(struct volume *v)
{
	struct pick picks[REST_BATCH];
	struct cold_record recs[REST_BATCH];
	uint32_t dups[REST_BATCH];
	uint32_t want = v->map.live > v->hot_target / 2 ? v->map.live - v->hot_target / 2 : 1;
	unsigned n = 0, kept = 0, ndups = 0, moved = 0;
	uint32_t k;

	rest_adopt_locked(v); /* a new diff directory, if it waits */

	for (k = 0; k < v->map.cap && n < REST_BATCH && n < want; k++) {
		uint32_t id = (v->rest_cursor + k) % v->map.cap;
		struct version *ver = cowmap_get(&v->map, id);
		if (ver->state == VERSION_FREE || !restable_locked(v, ver))
			continue;
		ver->pins++; /* still while we write */
		picks[n].id = id;
		picks[n].clean = ver->rest_clean;
		picks[n].rec = (struct cold_record){ .chunk = ver->chunk, .mask = ver->mask,
						     .slot = ver->file_slot };
		n++;
	}
	v->rest_cursor = v->map.cap ? (v->rest_cursor + k) % v->map.cap : 0;
	if (n == 0) {
		/* nothing can go now: wait until memory holds more */
		v->rest_at = v->map.live + v->hot_target / 2;
		pthread_cond_broadcast(&v->room); /* volume_wait_rest */
		return;
	}

	v->flush_in_flight = true; /* a delete waits for this pass (volume_settle) */
	pthread_mutex_unlock(&v->mu);
	/* one record at rest per chunk: of several versions, the first goes;
	 * a record brought back unchanged has its entries there still */
	qsort(picks, n, sizeof(*picks), cmp_chunk);
	unsigned nwrite = 0;
	for (unsigned i = 0; i < n; i++) {
		if (kept && picks[kept - 1].rec.chunk == picks[i].rec.chunk) {
			dups[ndups++] = picks[i].id;
			continue;
		}
		picks[kept++] = picks[i];
		if (!picks[i].clean)
			recs[nwrite++] = picks[i].rec;
	}
	int r = coldstore_write(&v->cold, recs, nwrite);
	pthread_mutex_lock(&v->mu);
	v->flush_in_flight = false;
	v->flush_batches++;
	v->rest_writes += nwrite;

	/* entries written are no longer those of any other version of their
	 * chunks in memory, committed or not (a record that changed meanwhile
	 * stays in memory, but its entry was written all the same) */
	for (unsigned i = 0; i < nwrite; i++)
		chunk_entry_rewritten_locked(v, recs[i].chunk);
	for (unsigned i = 0; i < ndups; i++)
		version_unpin_locked(v, dups[i]);
	for (unsigned i = 0; i < kept; i++) {
		uint32_t id = picks[i].id;
		struct version *ver = cowmap_get(&v->map, id);
		if (r || ver->pins > 1 || ver->dead || ver->mask != picks[i].rec.mask ||
		    (picks[i].clean && !ver->rest_clean) ||
		    coldstore_has_locked(&v->cold, ver->chunk) ||
		    coldstore_commit_locked(&v->cold, &picks[i].rec) < 0) {
			/* a reader has it, it changed, or it cannot go: it stays in
			 * memory (or is freed, if released meanwhile) */
			version_unpin_locked(v, id);
			continue;
		}
		cowmap_free(&v->map, id); /* its diff-file slot stays reserved */
		moved++;
	}
	pthread_cond_broadcast(&v->room);
	if (r) {
		hs_error("volume %s: writing copy records to rest%s%.120s failed: %s; they stay in "
			 "memory from now on",
			 v->name, v->diff_dir[0] ? " in " : "", v->diff_dir, strerror(-r));
		v->rest_off = true;
	}
	v->rest_at = moved ? v->hot_target : v->map.live + v->hot_target / 2;
}
