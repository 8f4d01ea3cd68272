/* snapshot.c - creating, reading, consuming, failing and deleting snapshots.
 *
 * A snapshot is three sparse bitmaps over the volume's chunks and a bit in
 * the masks of the versions it reads:
 *   pending   - in use at the snapshot instant and not yet copied: a write
 *               must copy it first; a read takes it from the origin;
 *   consumed  - its reader is done with it: no copy, reads fail;
 *   changed   - written on the volume since the snapshot (for incrementals).
 * A chunk neither pending nor consumed is either held (a version carries the
 * snapshot's bit) or was free at the snapshot instant (reads as zeros).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/snapshot_backup.h"
#include "engine/tracker.h"
#include "engine/volume_internal.h"

#define READ_WINDOW 256
#define EXTENT_WINDOW 4096

const char *snapshot_state_name(enum snapshot_state st)
{
	switch (st) {
	case SNAPSHOT_ACTIVE:
		return "active";
	case SNAPSHOT_FAILED:
		return "failed";
	case SNAPSHOT_DELETED:
		return "deleted";
	}
	return "unknown";
}

/* --- references ------------------------------------------------------------ */

void snapshot_get(struct snapshot *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void snapshot_put(struct snapshot *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	bitmap_destroy(&s->pending);
	bitmap_destroy(&s->consumed);
	bitmap_destroy(&s->changed);
	volume_put(s->vol);
	free(s);
}

uint64_t snapshot_generation(const struct snapshot *s)
{
	return s->gen;
}

const char *snapshot_name(const struct snapshot *s)
{
	return s->name;
}

void volume_openers_add(struct volume *v, int delta)
{
	atomic_fetch_add(&v->openers, delta);
}

int volume_openers(const struct volume *v)
{
	return atomic_load(&((struct volume *)v)->openers);
}

/* A claimer sets sole, then counts openers; an opener counts itself, then
 * looks at sole (export.c).  Both sequentially consistent, so at least one
 * of the two sees the other: no opener slips in under a granted claim. */
bool volume_claim_sole(struct volume *v, int openers)
{
	bool free = false;

	if (!atomic_compare_exchange_strong(&v->sole, &free, true))
		return false; /* claimed already */
	if (atomic_load(&v->openers) > openers) {
		atomic_store(&v->sole, false);
		return false;
	}
	return true;
}

void volume_release_sole(struct volume *v)
{
	atomic_store(&v->sole, false);
}

bool volume_claimed(const struct volume *v)
{
	return atomic_load(&((struct volume *)v)->sole);
}

void snapshot_readers_add(struct snapshot *s, int delta)
{
	atomic_fetch_add(&s->readers, delta);
}

int snapshot_readers(const struct snapshot *s)
{
	return atomic_load(&((struct snapshot *)s)->readers);
}

struct volume *snapshot_volume(const struct snapshot *s)
{
	return s->vol;
}

/* --- creation ------------------------------------------------------------ */

static struct snapshot *snapshot_alloc(const struct snapshot_request *rq)
{
	struct volume *v = rq->volume;
	struct snapshot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", rq->name);
	if (rq->used ? bitmap_copy(&s->pending, rq->used) < 0
		     : bitmap_init(&s->pending, v->nchunks, true) < 0)
		goto err;
	if (bitmap_init(&s->consumed, v->nchunks, false) < 0)
		goto err;
	if (bitmap_init(&s->changed, v->nchunks, false) < 0)
		goto err;
	s->used_chunks = rq->used ? bitmap_count(rq->used) : v->nchunks;
	s->all_blocks = rq->used == NULL;
	s->state = SNAPSHOT_ACTIVE;
	s->vol = v;
	atomic_init(&s->refs, 2); /* the volume's list, and the caller */
	return s;
err:
	bitmap_destroy(&s->pending);
	bitmap_destroy(&s->consumed);
	bitmap_destroy(&s->changed);
	free(s);
	return NULL;
}

static int cmp_volume_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (struct volume *const *)a;
	uintptr_t y = (uintptr_t) * (struct volume *const *)b;
	return x < y ? -1 : x > y;
}

/* Checks request i against the volume's live snapshots and the requests
 * before it.  Under every involved volume's mu. */
static int check_request_locked(const struct snapshot_request *reqs, size_t i)
{
	struct volume *v = reqs[i].volume;
	unsigned want = 1;

	for (unsigned k = 0; k < ENGINE_MAX_SNAPSHOTS; k++)
		if (v->snaps[k] && strcmp(v->snaps[k]->name, reqs[i].name) == 0)
			return -EEXIST;
	for (size_t j = 0; j < i; j++) {
		if (reqs[j].volume != v)
			continue;
		if (strcmp(reqs[j].name, reqs[i].name) == 0)
			return -EEXIST;
		want++;
	}
	return v->nsnaps + want > ENGINE_MAX_SNAPSHOTS ? -EBUSY : 0;
}

int snapshot_create_set(const struct snapshot_request *reqs, size_t n, struct snapshot **out)
{
	struct volume **vols;
	size_t nv = 0;
	uint64_t t0, cost;
	int r = 0;

	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!reqs[i].name || (reqs[i].used && reqs[i].used->nbits != reqs[i].volume->nchunks))
			return -EINVAL;
		out[i] = NULL;
	}
	vols = calloc(n, sizeof(*vols));
	if (!vols)
		return -ENOMEM;
	/* Everything that allocates happens before the gates close, so the
	 * writers are held up only for the installation itself. */
	for (size_t i = 0; i < n; i++) {
		out[i] = snapshot_alloc(&reqs[i]);
		if (!out[i]) {
			r = -ENOMEM;
			goto out_free;
		}
		vols[i] = reqs[i].volume;
	}
	qsort(vols, n, sizeof(*vols), cmp_volume_ptr);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || vols[i] != vols[nv - 1])
			vols[nv++] = vols[i];

	/* every snapshot ends its volume's generation: the tracker gets a spare
	 * map ready now, so that the switch under the gate needs no I/O */
	bool *tracked = calloc(nv, sizeof(*tracked));
	uint64_t *gens = calloc(nv, sizeof(*gens));
	if (!tracked || !gens) {
		free(tracked);
		free(gens);
		r = -ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < nv; i++)
		if (vols[i]->tracker) {
			tracked[i] = true;
			if (tracker_switch_prepare(vols[i]->tracker) < 0)
				hs_warn("snapshots of %s taken now have no bookmark to offer: the "
					"change map could not get ready",
					vols[i]->name);
		}

	t0 = clock_mono_ns();
	for (size_t i = 0; i < nv; i++)
		pthread_rwlock_wrlock(&vols[i]->gate); /* drain in-flight writes */
	for (size_t i = 0; i < nv; i++)
		pthread_mutex_lock(&vols[i]->mu);
	for (size_t i = 0; i < n && r == 0; i++)
		r = check_request_locked(reqs, i);
	if (r == 0) {
		uint64_t now = clock_wall_ns();
		for (size_t i = 0; i < nv; i++)
			if (tracked[i])
				gens[i] = tracker_switch_locked(vols[i]->tracker);
		for (size_t i = 0; i < n; i++) {
			struct volume *v = reqs[i].volume;
			struct snapshot *s = out[i];
			unsigned slot = 0;
			while (v->snaps[slot])
				slot++;
			s->slot = slot;
			s->bit = UINT64_C(1) << slot;
			s->created_ns = now;
			for (size_t k = 0; k < nv; k++)
				if (vols[k] == v)
					s->gen = gens[k];
			v->snaps[slot] = s;
			v->nsnaps++;
			active_add_locked(v, s);
			atomic_fetch_add_explicit(&v->nactive, 1, memory_order_release);
			volume_get(v);
		}
	}
	for (size_t i = nv; i-- > 0;)
		pthread_mutex_unlock(&vols[i]->mu);
	for (size_t i = nv; i-- > 0;)
		pthread_rwlock_unlock(&vols[i]->gate);
	cost = clock_mono_ns() - t0;
	for (size_t i = 0; i < nv; i++)
		if (tracked[i])
			tracker_switch_done(vols[i]->tracker);
	for (size_t i = 0; r == 0 && i < n; i++)
		if (out[i]->gen)
			tracker_boundary_get(out[i]->vol->tracker, out[i]->gen);
	free(tracked);
	free(gens);

	if (r == 0) {
		for (size_t i = 0; i < n; i++)
			out[i]->create_cost_ns = cost;
		goto out_vols;
	}
out_free:
	for (size_t i = 0; i < n; i++) {
		if (!out[i])
			continue;
		bitmap_destroy(&out[i]->pending);
		bitmap_destroy(&out[i]->consumed);
		bitmap_destroy(&out[i]->changed);
		free(out[i]);
		out[i] = NULL;
	}
out_vols:
	free(vols);
	return r;
}

struct snapshot *volume_find_snapshot(struct volume *v, const char *name)
{
	struct snapshot *found = NULL;

	pthread_mutex_lock(&v->mu);
	for (unsigned i = 0; i < ENGINE_MAX_SNAPSHOTS; i++)
		if (v->snaps[i] && strcmp(v->snaps[i]->name, name) == 0) {
			found = v->snaps[i];
			snapshot_get(found);
			break;
		}
	pthread_mutex_unlock(&v->mu);
	return found;
}

void volume_foreach_snapshot(struct volume *v, void (*fn)(void *arg, struct snapshot *s),
			     void *arg)
{
	struct snapshot *list[ENGINE_MAX_SNAPSHOTS];
	unsigned n = 0;

	pthread_mutex_lock(&v->mu);
	for (unsigned i = 0; i < ENGINE_MAX_SNAPSHOTS; i++)
		if (v->snaps[i]) {
			snapshot_get(v->snaps[i]);
			list[n++] = v->snaps[i];
		}
	pthread_mutex_unlock(&v->mu);
	/* oldest first */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && list[j]->created_ns < list[j - 1]->created_ns; j--) {
			struct snapshot *t = list[j];
			list[j] = list[j - 1];
			list[j - 1] = t;
		}
	for (unsigned i = 0; i < n; i++) {
		fn(arg, list[i]);
		snapshot_put(list[i]);
	}
}

/* --- the active list ------------------------------------------------------------ */

void active_add_locked(struct volume *v, struct snapshot *s)
{
	v->active[v->nactive_list++] = s;
}

void active_remove_locked(struct volume *v, struct snapshot *s)
{
	for (unsigned i = 0; i < v->nactive_list; i++)
		if (v->active[i] == s) {
			v->active[i] = v->active[--v->nactive_list];
			return;
		}
}

/* --- failing and deleting ------------------------------------------------ */

static void drop_all_versions_locked(struct volume *v, struct snapshot *s)
{
	rest_drop_locked(v, s, 0, v->nchunks, NULL);
	for (uint32_t id = 0; id < v->map.cap && s->held_chunks; id++) {
		struct version *ver = cowmap_get(&v->map, id);
		if (ver->state != VERSION_FREE && (ver->mask & s->bit))
			version_drop_snapshot_locked(v, id, s);
	}
}

void snapshot_fail_locked(struct snapshot *s, const char *reason)
{
	struct volume *v = s->vol;

	if (s->state != SNAPSHOT_ACTIVE)
		return;
	s->state = SNAPSHOT_FAILED;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	atomic_fetch_sub_explicit(&v->nactive, 1, memory_order_release);
	active_remove_locked(v, s);
	v->drain_mask &= ~s->bit;
	pthread_cond_broadcast(&v->held);
	drop_all_versions_locked(v, s);
	bitmap_fill(&s->pending, false);
	bitmap_fill(&s->changed, false);
	hs_error("snapshot %s@%s failed: %s", v->name, s->name, reason);
	if (v->on_event) {
		struct volume_event ev = { .type = VOLUME_EVENT_SNAPSHOT_FAILED, .volume = v->name,
					   .snapshot = s->name, .reason = reason };
		v->on_event(v->event_arg, &ev);
	}
}

void volume_fail_mask_locked(struct volume *v, uint64_t mask, const char *reason)
{
	for (unsigned i = 0; i < ENGINE_MAX_SNAPSHOTS && mask; i++) {
		struct snapshot *s = v->snaps[i];
		if (s && (mask & s->bit)) {
			mask &= ~s->bit;
			snapshot_fail_locked(s, reason);
		}
	}
}

void snapshot_fail(struct snapshot *s, const char *reason)
{
	pthread_mutex_lock(&s->vol->mu);
	snapshot_fail_locked(s, reason);
	pthread_mutex_unlock(&s->vol->mu);
}

int snapshot_delete(struct snapshot *s)
{
	struct volume *v = s->vol;

	pthread_mutex_lock(&v->mu);
	if (s->state == SNAPSHOT_DELETED) {
		pthread_mutex_unlock(&v->mu);
		return -ESTALE;
	}
	if (s->state == SNAPSHOT_ACTIVE) {
		atomic_fetch_sub_explicit(&v->nactive, 1, memory_order_release);
		active_remove_locked(v, s);
	}
	s->state = SNAPSHOT_DELETED;
	if (s->gen)
		tracker_boundary_put(v->tracker, s->gen);
	v->drain_mask &= ~s->bit;
	pthread_cond_broadcast(&v->held);
	drop_all_versions_locked(v, s);
	bitmap_fill(&s->pending, false);
	bitmap_fill(&s->consumed, false);
	bitmap_fill(&s->changed, false);
	v->snaps[s->slot] = NULL;
	v->nsnaps--;
	/* copies the flusher is writing are freed when it is done: wait, so
	 * that a delete has released all its space when it returns */
	volume_settle_locked(v);
	if (v->nsnaps == 0) {
		/* no copies until the next snapshot: give back what a burst took */
		diffstore_ram_release_pages(&v->ds);
		cowmap_shrink_if_empty(&v->map);
		coldstore_release_space_locked(&v->cold);
		rest_adopt_locked(v); /* no pass runs: settled above */
		v->rest_at = v->hot_target;
	}
	pthread_mutex_unlock(&v->mu);
	snapshot_put(s); /* the list's reference */
	return 0;
}

static int state_error(const struct snapshot *s)
{
	if (s->state == SNAPSHOT_FAILED)
		return -EIO;
	if (s->state == SNAPSHOT_DELETED)
		return -ESTALE;
	return 0;
}

/* --- reading --------------------------------------------------------------- */

enum source { SRC_ZERO, SRC_ORIGIN, SRC_RAM, SRC_FILE, SRC_SKIP };

struct plan {
	uint8_t src;
	uint32_t id;   /* version, pinned, for SRC_RAM and SRC_FILE */
	uint32_t slot; /* RAM or file slot */
};

static int check_io(const struct snapshot *s, uint64_t off, uint64_t len)
{
	if (off > s->vol->size || len > s->vol->size - off)
		return -EINVAL;
	return 0;
}

/* Reads chunks [c0, c1] (which overlap [off, off+len)) into buf. */
static int read_window(struct snapshot *s, uint8_t *buf, uint64_t off, uint64_t len,
		       uint64_t c0, uint64_t c1, const struct bitmap *skip)
{
	struct volume *v = s->vol;
	struct plan plan[READ_WINDOW];
	struct rest_window w;
	struct range_entry range;
	unsigned n = (unsigned)(c1 - c0 + 1);
	unsigned planned = 0;
	int r = 0, diff_err = 0;

	pthread_mutex_lock(&v->mu);
	r = state_error(s);
	if (r)
		goto out_unlock;
	rangelock_acquire_locked(&v->rl, &v->mu, &range, c0, c1, false);
	r = state_error(s);
	rest_window_init(&w);
	for (unsigned i = 0; i < n && r == 0; i++, planned++) {
		uint64_t c = c0 + i;
		if (skip && bitmap_test(skip, c)) {
			plan[i].src = SRC_SKIP;
			continue;
		}
		if (bitmap_test(&s->consumed, c)) {
			r = -ENODATA;
			break;
		}
		if (bitmap_test(&s->pending, c)) {
			plan[i].src = SRC_ORIGIN;
			continue;
		}
		bool zero_at_rest;
		uint32_t id = version_find_locked(v, &w, c, s->bit, &zero_at_rest);
		if (id == COW_NONE || cowmap_get(&v->map, id)->state == VERSION_ZERO) {
			plan[i].src = SRC_ZERO;
			continue;
		}
		/* Pinned: it stays where it is until we are done copying it out. */
		struct version *ver = cowmap_get(&v->map, id);
		ver->pins++;
		plan[i].id = id;
		if (ver->ram_slot != COW_NONE) {
			plan[i].src = SRC_RAM;
			plan[i].slot = ver->ram_slot;
		} else {
			plan[i].src = SRC_FILE;
			plan[i].slot = ver->file_slot;
		}
	}
	pthread_mutex_unlock(&v->mu);

	n = planned;
	/* copies in the diff file are scattered: ask for all of them first,
	 * so the device sees them together instead of one at a time */
	for (unsigned i = 0; i < n && r == 0; i++)
		if (plan[i].src == SRC_FILE)
			diffstore_prefetch(&v->ds, plan[i].slot);
	for (unsigned i = 0; i < n && r == 0;) {
		uint64_t c = c0 + i;
		uint64_t cstart = c << v->chunk_shift;
		uint64_t from = cstart > off ? cstart : off;
		uint64_t cend = cstart + chunk_len(v, c);
		uint64_t to = cend < off + len ? cend : off + len;
		uint8_t *dst = buf + (from - off);
		unsigned j = i + 1;

		switch (plan[i].src) {
		case SRC_SKIP:
			break;
		case SRC_ZERO:
			memset(dst, 0, to - from);
			break;
		case SRC_ORIGIN:
			/* one read for the whole run of origin chunks */
			while (j < n && plan[j].src == SRC_ORIGIN)
				j++;
			{
				uint64_t last_end = ((c0 + j - 1) << v->chunk_shift) +
						    chunk_len(v, c0 + j - 1);
				to = last_end < off + len ? last_end : off + len;
			}
			r = dev_pread(v->origin, dst, to - from, from);
			break;
		case SRC_RAM:
			memcpy(dst, diffstore_ram_ptr(&v->ds, plan[i].slot) + (from - cstart),
			       to - from);
			break;
		case SRC_FILE:
			r = diffstore_read(&v->ds, plan[i].slot, dst, to - from, from - cstart);
			if (r)
				diff_err = r;
			break;
		}
		i = j;
	}

	pthread_mutex_lock(&v->mu);
	if (diff_err) {
		/* the copy is gone: the snapshot can no longer be exact */
		char reason[ENGINE_REASON_MAX];
		snprintf(reason, sizeof(reason), "reading a copy from the diff file%s%.120s failed: %s",
			 v->diff_dir[0] ? " in " : "", v->diff_dir, strerror(-diff_err));
		snapshot_fail_locked(s, reason);
	}
	for (unsigned i = 0; i < planned; i++)
		if (plan[i].src == SRC_RAM || plan[i].src == SRC_FILE)
			version_unpin_locked(v, plan[i].id);
	rangelock_release_locked(&v->rl, &range);
	if (r == 0)
		r = state_error(s); /* failed meanwhile: what we read may be partial */
out_unlock:
	pthread_mutex_unlock(&v->mu);
	return r;
}

int snapshot_read(struct snapshot *s, void *buf, size_t len, uint64_t off)
{
	return snapshot_read_except(s, buf, len, off, NULL);
}

int snapshot_read_except(struct snapshot *s, void *buf, size_t len, uint64_t off,
			 const struct bitmap *skip)
{
	struct volume *v = s->vol;
	uint64_t end;
	int r = check_io(s, off, len);

	if (r || len == 0)
		return r;
	end = off + len;
	for (uint64_t c = off >> v->chunk_shift; c <= (end - 1) >> v->chunk_shift;) {
		uint64_t c1 = HS_MIN_U64((end - 1) >> v->chunk_shift, c + READ_WINDOW - 1);
		uint64_t wstart = HS_MAX(off, c << v->chunk_shift);
		uint64_t wend = HS_MIN_U64(end, (c1 + 1) << v->chunk_shift);
		r = read_window(s, (uint8_t *)buf + (wstart - off), wstart, wend - wstart, c, c1,
				skip);
		if (r)
			return r;
		c = c1 + 1;
	}
	return 0;
}

void snapshot_prefetch(struct snapshot *s, uint64_t off, uint64_t len)
{
	struct dev *o = s->vol->origin;

	if (o->ops->prefetch && off < s->vol->size)
		o->ops->prefetch(o, off, HS_MIN_U64(len, s->vol->size - off));
}

/* --- consuming and the used map ------------------------------------------- */

/* Drops s's hold on versions of chunks in [first, first+count). */
static void drop_versions_in_locked(struct volume *v, struct snapshot *s, uint64_t first,
				    uint64_t count, const struct bitmap *keep)
{
	if (!s->held_chunks)
		return;
	rest_drop_locked(v, s, first, count, keep);
	if (count < v->map.live) {
		for (uint64_t c = first; c < first + count && s->held_chunks; c++) {
			if (keep && bitmap_test(keep, c))
				continue;
			uint32_t id = cowmap_lookup(&v->map, c, s->bit);
			if (id != COW_NONE)
				version_drop_snapshot_locked(v, id, s);
		}
		return;
	}
	for (uint32_t id = 0; id < v->map.cap && s->held_chunks; id++) {
		struct version *ver = cowmap_get(&v->map, id);
		if (ver->state == VERSION_FREE || !(ver->mask & s->bit) || ver->chunk < first ||
		    ver->chunk >= first + count || (keep && bitmap_test(keep, ver->chunk)))
			continue;
		version_drop_snapshot_locked(v, id, s);
	}
}

int snapshot_consume(struct snapshot *s, uint64_t off, uint64_t len)
{
	struct volume *v = s->vol;
	uint64_t first, end_chunk;
	int r = check_io(s, off, len);

	if (r)
		return r;
	/* whole chunks only; the volume's last chunk may be short */
	first = (off + v->chunk_size - 1) >> v->chunk_shift;
	end_chunk = (off + len == v->size) ? v->nchunks : (off + len) >> v->chunk_shift;
	if (end_chunk <= first)
		return 0;
	pthread_mutex_lock(&v->mu);
	r = state_error(s);
	if (r == 0) {
		if (bitmap_set_range(&s->consumed, first, end_chunk - first) < 0 ||
		    bitmap_clear_range(&s->pending, first, end_chunk - first) < 0) {
			snapshot_fail_locked(s, "out of memory for its map of consumed chunks");
			r = -EIO;
		} else {
			drop_versions_in_locked(v, s, first, end_chunk - first, NULL);
		}
	}
	pthread_mutex_unlock(&v->mu);
	return r;
}

int snapshot_apply_used_map(struct snapshot *s, const struct bitmap *used)
{
	struct volume *v = s->vol;
	int r;

	if (used->nbits != v->nchunks)
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	r = state_error(s);
	for (uint64_t c = 0; r == 0 && c < v->nchunks;) {
		uint64_t free0 = bitmap_next_clear(used, c, v->nchunks);
		uint64_t free1 = bitmap_next_set(used, free0, v->nchunks);
		if (free0 >= v->nchunks)
			break;
		if (bitmap_clear_range(&s->pending, free0, free1 - free0) < 0) {
			snapshot_fail_locked(s, "out of memory for its map of protected chunks");
			r = -EIO;
		}
		c = free1;
	}
	if (r == 0) {
		drop_versions_in_locked(v, s, 0, v->nchunks, used);
		s->used_chunks = bitmap_count(used);
		s->all_blocks = false;
	}
	pthread_mutex_unlock(&v->mu);
	return r;
}

/* --- draining ----------------------------------------------------------------- */

void snapshot_set_drain(struct snapshot *s, bool on)
{
	struct volume *v = s->vol;

	pthread_mutex_lock(&v->mu);
	if (on && s->state == SNAPSHOT_ACTIVE)
		v->drain_mask |= s->bit;
	else
		v->drain_mask &= ~s->bit;
	/* off: what stayed in RAM for the reader may have to be spilled now */
	flusher_kick_locked(v);
	pthread_cond_broadcast(&v->held);
	pthread_mutex_unlock(&v->mu);
}

void snapshot_drain_yield(struct snapshot *s)
{
	struct volume *v = s->vol;

	pthread_mutex_lock(&v->mu);
	v->drain_yield = true;
	if (v->room_waiters)
		flusher_kick_locked(v);
	pthread_mutex_unlock(&v->mu);
}

static size_t collect_held_locked(struct volume *v, struct snapshot *s, uint64_t *out, size_t max)
{
	size_t n = 0;

	for (uint32_t id = 0; id < v->map.cap && n < max && n < s->held_chunks; id++) {
		struct version *ver = cowmap_get(&v->map, id);
		if (ver->state != VERSION_FREE && ver->state != VERSION_COPYING &&
		    (ver->mask & s->bit))
			out[n++] = ver->chunk;
	}
	if (n < max && n < s->held_chunks)
		n += rest_collect_locked(v, s, out + n, max - n);
	return n;
}

size_t snapshot_held_chunks(struct snapshot *s, uint64_t *out, size_t max, uint64_t wait_ns)
{
	struct volume *v = s->vol;
	size_t n;

	pthread_mutex_lock(&v->mu);
	n = collect_held_locked(v, s, out, max);
	if (n == 0 && wait_ns && s->state == SNAPSHOT_ACTIVE) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		uint64_t ns = (uint64_t)until.tv_nsec + wait_ns;
		until.tv_sec += (time_t)(ns / 1000000000u);
		until.tv_nsec = (long)(ns % 1000000000u);
		pthread_cond_timedwait(&v->held, &v->mu, &until);
		n = collect_held_locked(v, s, out, max);
	}
	pthread_mutex_unlock(&v->mu);
	return n;
}

size_t snapshot_held_by_slot(struct snapshot *s, uint64_t *out, uint32_t *slots, size_t max,
			     uint64_t *cursor)
{
	struct volume *v = s->vol;
	size_t n = 0;

	pthread_mutex_lock(&v->mu);
	uint64_t nslots = v->ds.file_used.nbits; /* past the limit after a shrink */
	if (state_error(s) || !s->held_chunks || *cursor >= nslots || max == 0) {
		*cursor = UINT64_MAX;
		goto out;
	}
	/* every copy has its own file slot, so out can be indexed by slot:
	 * one pass over the versions, no sort */
	uint64_t lo = bitmap_next_set(&v->ds.file_used, *cursor, nslots);
	if (lo >= nslots) {
		*cursor = UINT64_MAX;
		goto out;
	}
	uint64_t hi = HS_MIN_U64(lo + max, nslots);
	memset(out, 0, (hi - lo) * sizeof(*out));
	for (uint32_t id = 0; id < v->map.cap; id++) {
		struct version *ver = cowmap_get(&v->map, id);
		if (ver->state != VERSION_FREE && ver->state != VERSION_COPYING &&
		    ver->state != VERSION_ZERO && (ver->mask & s->bit) && ver->file_slot >= lo &&
		    ver->file_slot < hi)
			out[ver->file_slot - lo] = ver->chunk + 1;
	}
	rest_by_slot_locked(v, s, lo, hi, out);
	for (uint64_t i = 0; i < hi - lo; i++) {
		if (!out[i])
			continue;
		slots[n] = (uint32_t)(lo + i);
		out[n++] = out[i] - 1;
	}
	*cursor = hi >= nslots ? UINT64_MAX : hi;
out:
	pthread_mutex_unlock(&v->mu);
	return n;
}

#define HELD_BATCH_MAX 1024

int snapshot_read_held_batch(struct snapshot *s, const uint64_t *chunks, const uint32_t *slots,
			     size_t n, void *buf, bool *got)
{
	struct volume *v = s->vol;
	uint32_t ids[HELD_BATCH_MAX], ram[HELD_BATCH_MAX], file[HELD_BATCH_MAX];
	struct rest_window w, ws;
	int r = 0;

	if (n > HELD_BATCH_MAX)
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	r = state_error(s);
	rest_window_init(&w);
	rest_window_init(&ws);
	/* the chunks come in diff-file order, scattered over the volume: with
	 * their slots, records at rest are found by slot, in order */
	if (!slots)
		coldstore_prefetch_locked(&v->cold, chunks, n);
	for (size_t i = 0; i < n; i++) {
		uint64_t c = chunks[i];
		bool zero_at_rest = false;
		uint32_t id = COW_NONE;
		got[i] = false;
		ids[i] = COW_NONE;
		if (r || c >= v->nchunks || bitmap_test(&s->consumed, c))
			continue;
		id = version_find_at_slot_locked(v, &ws, &w, c, slots ? slots[i] : COW_NONE,
						 s->bit, &zero_at_rest);
		if (zero_at_rest) {
			got[i] = true;
			ram[i] = file[i] = COW_NONE;
			continue;
		}
		/* a copy still COPYING cannot be read yet; a later call finds it done */
		if (id == COW_NONE || cowmap_get(&v->map, id)->state == VERSION_COPYING)
			continue;
		struct version *ver = cowmap_get(&v->map, id);
		got[i] = true;
		ram[i] = file[i] = COW_NONE; /* a zero record: nothing to read */
		if (ver->state == VERSION_ZERO)
			continue;
		ver->pins++; /* stays where it is until unpinned */
		ids[i] = id;
		ram[i] = ver->ram_slot;
		file[i] = ver->file_slot;
	}
	pthread_mutex_unlock(&v->mu);

	for (size_t i = 0; i < n && r == 0;) {
		uint8_t *dst = (uint8_t *)buf + i * v->chunk_size;
		size_t j = i + 1;
		if (!got[i]) {
			i = j;
			continue;
		}
		if (ram[i] != COW_NONE) {
			memcpy(dst, diffstore_ram_ptr(&v->ds, ram[i]), chunk_len(v, chunks[i]));
			i = j;
			continue;
		}
		if (file[i] == COW_NONE) {
			memset(dst, 0, chunk_len(v, chunks[i]));
			i = j;
			continue;
		}
		/* neighbouring full slots in the file: one read */
		uint32_t first = file[i];
		while (j < n && got[j] && chunk_len(v, chunks[j - 1]) == v->chunk_size &&
		       ram[j] == COW_NONE && file[j] != COW_NONE && file[j] == first + (j - i))
			j++;
		uint64_t len = (uint64_t)(j - i - 1) * v->chunk_size + chunk_len(v, chunks[j - 1]);
		r = diffstore_read(&v->ds, first, dst, len, 0);
		i = j;
	}

	pthread_mutex_lock(&v->mu);
	if (r) {
		/* a held copy that cannot be read back: the snapshot cannot be exact */
		char reason[ENGINE_REASON_MAX];
		snprintf(reason, sizeof(reason), "reading a copy from the diff file failed: %s",
			 strerror(-r));
		snapshot_fail_locked(s, reason);
	}
	for (size_t i = 0; i < n; i++)
		if (ids[i] != COW_NONE)
			version_unpin_locked(v, ids[i]);
	if (r == 0)
		r = state_error(s);
	pthread_mutex_unlock(&v->mu);
	return r;
}

int snapshot_read_held(struct snapshot *s, uint64_t c, void *buf)
{
	bool got;
	int r;

	if (c >= s->vol->nchunks)
		return -EINVAL;
	r = snapshot_read_held_batch(s, &c, NULL, 1, buf, &got);
	return r ? r : got ? 0 : -EAGAIN;
}

/* --- extents ----------------------------------------------------------------- */

struct run {
	uint64_t c0, c1; /* chunks, inclusive */
	enum extent_type type;
	bool from_origin;
};

static int emit(extent_fn fn, void *arg, struct volume *v, uint64_t off, uint64_t end,
		uint64_t c0, uint64_t c1, enum extent_type type)
{
	uint64_t a = HS_MAX(off, c0 << v->chunk_shift);
	uint64_t b = HS_MIN_U64(end, (c1 << v->chunk_shift) + chunk_len(v, c1));
	return a < b ? fn(arg, a, b - a, type) : 0;
}


int snapshot_extents(struct snapshot *s, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	struct volume *v = s->vol;
	struct run runs[64];
	struct rest_window w;
	uint64_t end = off + len;
	int r = check_io(s, off, len);

	if (r || len == 0)
		return r;
	for (uint64_t c = off >> v->chunk_shift; c <= (end - 1) >> v->chunk_shift;) {
		uint64_t wlast = HS_MIN_U64((end - 1) >> v->chunk_shift, c + EXTENT_WINDOW - 1);
		struct range_entry range;
		unsigned nr = 0;

		pthread_mutex_lock(&v->mu);
		r = state_error(s);
		if (r) {
			pthread_mutex_unlock(&v->mu);
			return r;
		}
		/* pending chunks are answered from the origin: hold them still */
		rangelock_acquire_locked(&v->rl, &v->mu, &range, c, wlast, false);
		rest_window_init(&w);
		while (c <= wlast && nr < HS_ARRAY_SIZE(runs)) {
			struct run *ru = &runs[nr];
			uint64_t next;
			ru->c0 = c;
			ru->from_origin = false;
			if (bitmap_test(&s->consumed, c)) {
				ru->type = EXTENT_CONSUMED;
				next = bitmap_next_clear(&s->consumed, c, wlast + 1);
			} else if (bitmap_test(&s->pending, c)) {
				ru->type = EXTENT_DATA;
				ru->from_origin = true;
				next = HS_MIN_U64(bitmap_next_clear(&s->pending, c, wlast + 1),
						  bitmap_next_set(&s->consumed, c, wlast + 1));
			} else if (!s->held_chunks) {
				/* free at the snapshot instant, up to the next other state */
				ru->type = EXTENT_ZERO;
				next = HS_MIN_U64(bitmap_next_set(&s->pending, c, wlast + 1),
						  bitmap_next_set(&s->consumed, c, wlast + 1));
			} else {
				bool held = version_has_data_locked(v, &w, c, s->bit);
				ru->type = held ? EXTENT_DATA : EXTENT_ZERO;
				next = c + 1;
				while (next <= wlast && !bitmap_test(&s->pending, next) &&
				       !bitmap_test(&s->consumed, next) &&
				       version_has_data_locked(v, &w, next, s->bit) == held)
					next++;
			}
			ru->c1 = next - 1;
			if (nr > 0 && runs[nr - 1].type == ru->type && !runs[nr - 1].from_origin &&
			    !ru->from_origin)
				runs[nr - 1].c1 = ru->c1;
			else
				nr++;
			c = next;
		}
		pthread_mutex_unlock(&v->mu);

		for (unsigned i = 0; i < nr && r == 0; i++) {
			if (!runs[i].from_origin) {
				r = emit(fn, arg, v, off, end, runs[i].c0, runs[i].c1, runs[i].type);
				continue;
			}
			/* the origin may have holes under pending chunks */
			uint64_t a = HS_MAX(off, runs[i].c0 << v->chunk_shift);
			uint64_t b = HS_MIN_U64(end, (runs[i].c1 << v->chunk_shift) +
							     chunk_len(v, runs[i].c1));
			while (a < b && r == 0) {
				enum dev_extent_type t = DEV_EXTENT_DATA;
				uint64_t n = b - a;
				if (v->origin->ops->extent)
					r = v->origin->ops->extent(v->origin, a, b - a, &t, &n);
				if (r == 0)
					r = fn(arg, a, n,
					       t == DEV_EXTENT_HOLE ? EXTENT_ZERO : EXTENT_DATA);
				a += n;
			}
		}
		pthread_mutex_lock(&v->mu);
		rangelock_release_locked(&v->rl, &range);
		pthread_mutex_unlock(&v->mu);
		if (r)
			return r;
	}
	return 0;
}

int snapshot_changed(struct snapshot *s, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	struct volume *v = s->vol;
	uint64_t end = off + len;
	int r = check_io(s, off, len);

	if (r || len == 0)
		return r;
	for (uint64_t c = off >> v->chunk_shift; c <= (end - 1) >> v->chunk_shift;) {
		uint64_t last = (end - 1) >> v->chunk_shift;
		uint64_t next;
		bool changed;

		pthread_mutex_lock(&v->mu);
		r = state_error(s);
		changed = bitmap_test(&s->changed, c);
		next = changed ? bitmap_next_clear(&s->changed, c, last + 1)
			       : bitmap_next_set(&s->changed, c, last + 1);
		pthread_mutex_unlock(&v->mu);
		if (r == 0)
			r = emit(fn, arg, v, off, end, c, next - 1,
				 changed ? EXTENT_DATA : EXTENT_ZERO);
		if (r)
			return r;
		c = next;
	}
	return 0;
}

/* --- stats ------------------------------------------------------------------ */

void snapshot_get_stats(struct snapshot *s, struct snapshot_stats *st)
{
	struct volume *v = s->vol;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&v->mu);
	st->state = s->state;
	snprintf(st->reason, sizeof(st->reason), "%s", s->reason);
	st->created_ns = s->created_ns;
	st->create_cost_ns = s->create_cost_ns;
	st->cow_bytes = s->cow_bytes;
	st->held_bytes = (s->held_chunks - s->held_zero) * v->chunk_size;
	st->zero_chunks = s->zero_chunks;
	st->protected_chunks = bitmap_count(&s->pending);
	st->used_chunks = s->used_chunks;
	st->consumed_chunks = bitmap_count(&s->consumed);
	st->changed_chunks = bitmap_count(&s->changed);
	st->all_blocks = s->all_blocks;
	st->generation = s->gen;
	pthread_mutex_unlock(&v->mu);
}
