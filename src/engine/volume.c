/* volume.c - a volume over its origin, and the write path with
 * copy-before-write.
 *
 * Notes on the design
 * -------------------
 * A write with no live snapshot is a plain write to the origin under the
 * shared gate: one atomic load decides that.  With snapshots, the write first
 * marks its chunks changed in every snapshot, then asks whether any snapshot
 * still needs the old contents of its chunks (their "pending" bits).  If none
 * does, it writes at once.  Otherwise it takes a WRITE range lock on its
 * chunks, and for each chunk some snapshots need:
 *   - reserves a slot in the diff file (or fails exactly those snapshots when
 *     the diff limit is reached: the write goes on),
 *   - takes a slot in the RAM buffer (or waits for the flusher to make room,
 *     counted as a writer wait),
 *   - records one version for all of them, clears their pending bits,
 * then reads the originals into the RAM slots outside the lock, in runs of
 * neighbouring chunks, marks the copies done, and only then writes the
 * origin.  A snapshot read of those chunks waits on the range lock, so it
 * sees either the origin before the write or the copy, never new data.
 * Chunks are processed in windows of COPY_WINDOW so a long write with little
 * buffer room makes progress piece by piece.
 *
 * Zeros cost nothing.  An original that reads all zeros gives its RAM and
 * file slots back at once and stays as a zero record; a discard or
 * write-zeroes (fstrim sends gigabytes of them over free space, week after
 * week) first asks the origin for its holes and records those chunks
 * without reading them.  And because most of what a full diff file would
 * refuse is such zeros, a chunk that finds no file slot is read anyway:
 * only data overflows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/units.h"
#include "engine/snapshot_backup.h"
#include "engine/tracker.h"
#include "engine/volume_internal.h"

#define COPY_WINDOW 256
#define VOLUME_HOT_RECORDS 16384u /* ~0.6 MiB of records and table */

/* --- lifecycle ------------------------------------------------------------ */

int volume_create(struct volume **out, const struct volume_config *cfg, struct dev *origin,
		  struct dev *diff)
{
	struct dev *copy_index = cfg->copy_index;
	struct volume *v;
	int r;

	if (!origin || !diff || cfg->chunk_shift < ENGINE_MIN_CHUNK_SHIFT ||
	    cfg->chunk_shift > ENGINE_MAX_CHUNK_SHIFT || cfg->size == 0 || cfg->size % 512 ||
	    cfg->size > origin->size) {
		r = -EINVAL;
		goto err_devs;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto err_devs;
	}
	v->tracker = cfg->tracker;
	v->on_event = cfg->on_event;
	v->event_arg = cfg->event_arg;
	if (v->tracker)
		tracker_set_name(v->tracker, cfg->name ? cfg->name : "volume");
	snprintf(v->name, sizeof(v->name), "%s", cfg->name ? cfg->name : "volume");
	snprintf(v->diff_dir, sizeof(v->diff_dir), "%s", cfg->diff_dir ? cfg->diff_dir : "");
	v->origin = origin;
	v->size = cfg->size;
	v->chunk_shift = cfg->chunk_shift;
	v->chunk_size = UINT64_C(1) << cfg->chunk_shift;
	v->nchunks = (cfg->size + v->chunk_size - 1) >> cfg->chunk_shift;
	atomic_init(&v->refs, 1);
	atomic_init(&v->openers, 0);
	atomic_init(&v->sole, false);
	atomic_init(&v->nactive, 0);

	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* A waiting snapshot must not starve behind a stream of writers. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&v->gate, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->room, NULL);
	pthread_cond_init(&v->flush_wake, NULL);
	pthread_cond_init(&v->held, NULL);
	rangelock_init(&v->rl);

	r = cowmap_init(&v->map);
	if (r < 0)
		goto err_sync;
	r = diffstore_init(&v->ds, v->chunk_size, cfg->cow_buffer, cfg->diff_limit, diff);
	diff = NULL; /* owned by the store now, also on failure */
	if (r < 0)
		goto err_map;
	r = coldstore_init(&v->cold, copy_index, v->nchunks, v->ds.file_used.nbits);
	copy_index = NULL; /* owned by the store now, also on failure */
	if (r < 0)
		goto err_store;
	v->hot_target = cfg->hot_records ? cfg->hot_records : VOLUME_HOT_RECORDS;
	v->rest_at = v->hot_target;
	r = flusher_start(v);
	if (r < 0)
		goto err_cold;
	*out = v;
	return 0;

err_cold:
	coldstore_destroy(&v->cold);
err_store:
	diffstore_destroy(&v->ds);
err_map:
	cowmap_destroy(&v->map);
err_sync:
	rangelock_destroy(&v->rl);
	pthread_cond_destroy(&v->held);
	pthread_cond_destroy(&v->flush_wake);
	pthread_cond_destroy(&v->room);
	pthread_mutex_destroy(&v->mu);
	pthread_rwlock_destroy(&v->gate);
	free(v);
err_devs:
	tracker_close(cfg->tracker); /* nothing was written: still clean */
	dev_destroy(origin);
	dev_destroy(diff);
	dev_destroy(copy_index);
	return r;
}

void volume_get(struct volume *v)
{
	atomic_fetch_add(&v->refs, 1);
}

void volume_put(struct volume *v)
{
	if (atomic_fetch_sub(&v->refs, 1) != 1)
		return;
	flusher_stop(v);
	if (v->tracker) {
		/* after the last write: durable, then stamped clean */
		(void)v->origin->ops->flush(v->origin);
		tracker_close(v->tracker);
	}
	coldstore_destroy(&v->cold);
	diffstore_destroy(&v->ds);
	cowmap_destroy(&v->map);
	rangelock_destroy(&v->rl);
	pthread_cond_destroy(&v->held);
	pthread_cond_destroy(&v->flush_wake);
	pthread_cond_destroy(&v->room);
	pthread_mutex_destroy(&v->mu);
	pthread_rwlock_destroy(&v->gate);
	dev_destroy(v->origin);
	free(v);
}

void volume_destroy(struct volume *v)
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
	for (unsigned i = 0; i < n; i++) {
		snapshot_delete(list[i]);
		snapshot_put(list[i]);
	}
	volume_put(v);
}

struct tracker *volume_tracker(const struct volume *v)
{
	return v->tracker;
}

uint64_t volume_size(const struct volume *v)
{
	return v->size;
}
unsigned volume_chunk_shift(const struct volume *v)
{
	return v->chunk_shift;
}
uint64_t volume_nchunks(const struct volume *v)
{
	return v->nchunks;
}
const char *volume_name(const struct volume *v)
{
	return v->name;
}

/* --- version bookkeeping ------------------------------------------------- */

void version_free_locked(struct volume *v, uint32_t id)
{
	struct version *ver = cowmap_get(&v->map, id);

	if (ver->ram_slot != COW_NONE) {
		diffstore_ram_give_locked(&v->ds, ver->ram_slot);
		pthread_cond_broadcast(&v->room);
	}
	if (ver->file_slot != COW_NONE)
		diffstore_unreserve_locked(&v->ds, ver->file_slot);
	cowmap_free(&v->map, id);
}

/* Frees a version no snapshot reads any more, or leaves that to whoever is
 * still busy with it (its copier, the flusher, a pinned reader). */
void version_release_if_unused_locked(struct volume *v, uint32_t id)
{
	struct version *ver = cowmap_get(&v->map, id);

	if (ver->mask)
		return;
	if (ver->state == VERSION_COPYING || ver->state == VERSION_FLUSHING || ver->pins)
		ver->dead = 1;
	else
		version_free_locked(v, id);
}

void version_drop_snapshot_locked(struct volume *v, uint32_t id, struct snapshot *s)
{
	struct version *ver = cowmap_get(&v->map, id);

	if (!(ver->mask & s->bit))
		return;
	ver->mask &= ~s->bit;
	ver->rest_clean = 0; /* the mask at rest is the old one */
	s->held_chunks--;
	if (ver->state == VERSION_ZERO)
		s->held_zero--;
	version_release_if_unused_locked(v, id);
}

void version_unpin_locked(struct volume *v, uint32_t id)
{
	struct version *ver = cowmap_get(&v->map, id);

	if (--ver->pins)
		return;
	if (ver->dead) {
		version_free_locked(v, id);
		return;
	}
	if (ver->state == VERSION_FILE && ver->ram_slot != COW_NONE) {
		/* Flushed while we read it from RAM: the slot can go now. */
		diffstore_ram_give_locked(&v->ds, ver->ram_slot);
		ver->ram_slot = COW_NONE;
		pthread_cond_broadcast(&v->room);
	}
	rest_note_settled_locked(v, id);
}

/* --- the copy-out path ---------------------------------------------------- */

struct copy_job {
	uint32_t id;
	uint64_t chunk;
	int err;
	bool no_room; /* the diff file had no slot: fatal only if not zeros */
	bool zero;    /* the original read all zeros */
};

/* Snapshots (as a mask) that still need chunk c copied. */
static uint64_t pending_mask_locked(struct volume *v, uint64_t c)
{
	uint64_t mask = 0;

	for (unsigned i = 0; i < v->nactive_list; i++) {
		struct snapshot *s = v->active[i];
		if (bitmap_test(&s->pending, c))
			mask |= s->bit;
	}
	return mask;
}

/* First chunk in [from, limit) some snapshot needs copied; limit if none. */
static uint64_t next_pending_locked(struct volume *v, uint64_t from, uint64_t limit)
{
	uint64_t best = limit;

	for (unsigned i = 0; i < v->nactive_list; i++) {
		uint64_t n = bitmap_next_set(&v->active[i]->pending, from, best);
		if (n < best)
			best = n;
	}
	return best;
}

static void track_changes_locked(struct volume *v, uint64_t c0, uint64_t c1)
{
	/* backwards: failing a snapshot takes it out of the list */
	for (unsigned i = v->nactive_list; i-- > 0;) {
		struct snapshot *s = v->active[i];
		if (bitmap_set_range(&s->changed, c0, c1 - c0 + 1) < 0)
			snapshot_fail_locked(s, "out of memory for its map of changed chunks");
	}
}

static void wait_for_room_locked(struct volume *v)
{
	uint64_t t0 = clock_mono_ns();

	v->room_waiters++;
	v->writer_waits++;
	flusher_kick_locked(v);
	pthread_cond_wait(&v->room, &v->mu);
	v->room_waiters--;
	v->writer_wait_ns += clock_mono_ns() - t0;
}

static void overflow_reason(struct volume *v, uint64_t c, char *buf, size_t len)
{
	char lim[32];

	units_format_size(v->ds.file_slots * v->chunk_size, lim, sizeof(lim));
	snprintf(buf, len,
		 "diff store full: the diff limit of %s (--diff-limit) was reached when chunk "
		 "%llu (offset %llu) of volume %s was first overwritten; raise --diff-limit "
		 "or back up sooner",
		 lim, (unsigned long long)c, (unsigned long long)(c << v->chunk_shift), v->name);
}

/* The diff store's fill levels an owner hears about, each once on the way
 * up; a level is heard again after use fell 10 points below it. */
static const unsigned DIFF_LEVELS[] = { 50, 80, 90, 95 };

static void report_diff_level_locked(struct volume *v)
{
	uint64_t limit = v->ds.file_slots;
	unsigned pct = limit ? (unsigned)(v->ds.file_used_count * 100 / limit) : 100;
	unsigned lvl = v->diff_level;

	if (v->ds.file_used_count == 0 || !v->fill_ref_ns) {
		/* the rate toward full is measured from here */
		v->fill_ref_ns = clock_mono_ns();
		v->fill_ref_held = v->ds.file_used_count * v->chunk_size;
	}

	while (lvl > 0 && pct + 10 < DIFF_LEVELS[lvl - 1])
		lvl--;
	v->diff_level = lvl;
	if (lvl >= HS_ARRAY_SIZE(DIFF_LEVELS) || pct < DIFF_LEVELS[lvl])
		return;
	while (lvl < HS_ARRAY_SIZE(DIFF_LEVELS) && pct >= DIFF_LEVELS[lvl])
		lvl++;
	v->diff_level = lvl;
	uint64_t now = clock_mono_ns(), held = v->ds.file_used_count * v->chunk_size;
	double rate = 0;
	if (v->fill_ref_ns && now > v->fill_ref_ns && held > v->fill_ref_held)
		rate = (double)(held - v->fill_ref_held) * 1e9 / (double)(now - v->fill_ref_ns);
	v->fill_ref_ns = now;
	v->fill_ref_held = held;
	if (v->on_event) {
		struct volume_event ev = { .type = VOLUME_EVENT_DIFF_LEVEL, .volume = v->name,
					   .level_pct = DIFF_LEVELS[lvl - 1], .held = held,
					   .limit = limit * v->chunk_size,
					   .seconds_to_full = -1 };
		if (rate > 0)
			ev.seconds_to_full = (double)(ev.limit - HS_MIN_U64(held, ev.limit)) / rate;
		v->on_event(v->event_arg, &ev);
	}
}

/* Zeros are the common case for freed and never-written space; the first
 * byte rules out nearly every data chunk at once. */
static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Reads originals for jobs (ascending chunks) into their RAM slots, one
 * preadv per run of neighbouring chunks.  Sets each job's err and zero. */
static void read_originals(struct volume *v, struct copy_job *jobs, unsigned n,
			   const uint32_t *ram_slots)
{
	struct iovec iov[COPY_WINDOW];
	unsigned i = 0;

	while (i < n) {
		unsigned j = i;
		int cnt = 0;
		while (j < n && (j == i || jobs[j].chunk == jobs[j - 1].chunk + 1)) {
			uint8_t *p = diffstore_ram_ptr(&v->ds, ram_slots[j]);
			uint64_t clen = chunk_len(v, jobs[j].chunk);
			if (clen < v->chunk_size)
				memset(p + clen, 0, v->chunk_size - clen);
			iov[cnt].iov_base = p;
			iov[cnt].iov_len = clen;
			cnt++;
			j++;
		}
		int r = v->origin->ops->preadv(v->origin, iov, cnt, jobs[i].chunk << v->chunk_shift,
					       0);
		for (unsigned k = i; k < j; k++) {
			jobs[k].err = r;
			jobs[k].zero = r == 0 && all_zero(iov[k - i].iov_base, iov[k - i].iov_len);
		}
		i = j;
	}
}

/* A copy of chunk c is counted as bytes copied when it is made (so a
 * snapshot that overflows has counted the limit), and moved to the zero
 * records when its original turns out to be zeros (counted: it was a copy
 * in the making). */
static void count_copy_locked(struct volume *v, uint64_t mask, uint64_t c, bool counted)
{
	uint64_t len = chunk_len(v, c);

	for (unsigned i = 0; i < v->nactive_list; i++) {
		struct snapshot *s = v->active[i];
		if (!(mask & s->bit))
			continue;
		if (counted)
			s->cow_bytes -= len;
		s->held_zero++;
		s->zero_chunks++;
	}
	if (counted) {
		v->cow_bytes -= len;
		v->cow_chunks--;
	}
	v->zero_chunks++;
}

/* A copy that turned out to be zeros gives its RAM and file slots back. */
static void make_zero_record_locked(struct volume *v, struct version *ver)
{
	diffstore_ram_give_locked(&v->ds, ver->ram_slot);
	ver->ram_slot = COW_NONE;
	if (ver->file_slot != COW_NONE)
		diffstore_unreserve_locked(&v->ds, ver->file_slot);
	ver->file_slot = COW_NONE;
	ver->state = VERSION_ZERO;
	pthread_cond_broadcast(&v->room);
}

static void finish_copies_locked(struct volume *v, struct copy_job *jobs, unsigned n)
{
	char reason[ENGINE_REASON_MAX];
	bool for_drain = false;

	for (unsigned i = 0; i < n; i++) {
		struct version *ver = cowmap_get(&v->map, jobs[i].id);
		ver->state = VERSION_RAM;
		if (jobs[i].err) {
			snprintf(reason, sizeof(reason),
				 "reading the original of chunk %llu of volume %s from its origin "
				 "failed: %s",
				 (unsigned long long)jobs[i].chunk, v->name, strerror(-jobs[i].err));
			volume_fail_mask_locked(v, ver->mask, reason);
		} else if (jobs[i].zero) {
			make_zero_record_locked(v, ver);
			count_copy_locked(v, ver->mask, jobs[i].chunk, true);
		} else if (jobs[i].no_room) {
			/* data after all, and no room for it: the overflow is real */
			overflow_reason(v, jobs[i].chunk, reason, sizeof(reason));
			volume_fail_mask_locked(v, ver->mask, reason);
		} else if (ver->mask & v->drain_mask) {
			for_drain = true;
		}
		/* failing released the version unless it was dead already */
		ver = cowmap_get(&v->map, jobs[i].id);
		if (ver->state != VERSION_FREE && ver->dead)
			version_free_locked(v, jobs[i].id);
	}
	if (for_drain)
		pthread_cond_broadcast(&v->held);
	if (diffstore_ram_used(&v->ds) * 2 > v->ds.ram_slots)
		flusher_kick_locked(v);
	report_diff_level_locked(v);
}

/* Sets bit i of holes for each chunk first + i (up to last) that lies
 * wholly in a hole of the origin: its original reads zeros without being
 * read.  Called without mu; the caller's WRITE range keeps those chunks of
 * the origin still.  false when the origin cannot tell or has none. */
static bool origin_holes(struct volume *v, uint64_t first, uint64_t last, uint64_t *holes)
{
	uint64_t off = first << v->chunk_shift;
	uint64_t end = (last << v->chunk_shift) + chunk_len(v, last);
	bool any = false;

	memset(holes, 0, COPY_WINDOW / 8);
	if (!v->origin->ops->extent)
		return false;
	while (off < end) {
		enum dev_extent_type t = DEV_EXTENT_DATA;
		uint64_t n = end - off;
		if (v->origin->ops->extent(v->origin, off, end - off, &t, &n) < 0 || n == 0)
			return any;
		if (t == DEV_EXTENT_HOLE) {
			uint64_t c = (off + v->chunk_size - 1) >> v->chunk_shift;
			for (; c <= last && (c << v->chunk_shift) + chunk_len(v, c) <= off + n; c++) {
				holes[(c - first) / 64] |= UINT64_C(1) << ((c - first) % 64);
				any = true;
			}
		}
		off += n;
	}
	return any;
}

static bool hole_at(const uint64_t *holes, uint64_t i)
{
	return holes[i / 64] >> (i % 64) & 1;
}

/* Copies out every chunk in [c0, c1] that a snapshot still needs.  Called
 * with mu and the WRITE range held; drops mu around I/O and waits.  With
 * ask_holes (a discard or write-zeroes, which come in big runs over free
 * space), chunks in holes of the origin become zero records unread.
 *
 * The diff-file slot is reserved before the read (prepare), but a chunk
 * that finds the file full is read anyway: only if it holds data does the
 * overflow fail its snapshots. */
static void copy_out_locked(struct volume *v, uint64_t c0, uint64_t c1, bool ask_holes)
{
	struct copy_job jobs[COPY_WINDOW];
	uint32_t ram_slots[COPY_WINDOW];
	uint64_t holes[COPY_WINDOW / 64];
	uint64_t c = c0;

	while (c <= c1) {
		uint64_t wstart = c;
		uint64_t wend = c1 - c < COPY_WINDOW - 1 ? c1 : c + COPY_WINDOW - 1;
		bool have_holes = false;
		unsigned n = 0;

		if (ask_holes && next_pending_locked(v, c, wend + 1) <= wend) {
			pthread_mutex_unlock(&v->mu);
			have_holes = origin_holes(v, wstart, wend, holes);
			pthread_mutex_lock(&v->mu);
		}
		while (c <= wend) {
			uint64_t mask;
			uint32_t fslot = COW_NONE, id;
			bool zero;

			c = next_pending_locked(v, c, wend + 1);
			if (c > wend)
				break;
			mask = pending_mask_locked(v, c);
			zero = have_holes && hole_at(holes, c - wstart);
			if (!zero && v->ds.ram_free_count == 0) {
				if (n > 0)
					break; /* copy what we have, then come back */
				wait_for_room_locked(v);
				continue; /* snapshots may have changed meanwhile */
			}
			id = cowmap_alloc(&v->map, c);
			if (id == COW_NONE) {
				volume_fail_mask_locked(v, mask, "out of memory for copy records");
				c++;
				continue;
			}
			if (v->map.live > v->rest_at)
				flusher_kick_locked(v); /* some can go to rest */
			struct version *ver = cowmap_get(&v->map, id);
			ver->mask = mask;
			for (unsigned i = v->nactive_list; i-- > 0;) {
				struct snapshot *s = v->active[i];
				if (!(mask & s->bit))
					continue;
				if (bitmap_clear_range(&s->pending, c, 1) < 0) {
					/* cannot record it: this snapshot can no longer be exact */
					ver->mask &= ~s->bit;
					snapshot_fail_locked(s, "out of memory for its map of protected chunks");
					continue;
				}
				s->held_chunks++;
				if (!zero)
					s->cow_bytes += chunk_len(v, c);
			}
			if (zero) {
				ver->state = VERSION_ZERO;
				count_copy_locked(v, ver->mask, c, false);
				version_release_if_unused_locked(v, id);
				c++;
				continue;
			}
			v->cow_bytes += chunk_len(v, c);
			v->cow_chunks++;
			bool no_room = diffstore_reserve_locked(&v->ds, &fslot) < 0;
			ver->file_slot = no_room ? COW_NONE : fslot;
			ver->ram_slot = diffstore_ram_take_locked(&v->ds, id);
			ram_slots[n] = ver->ram_slot;
			jobs[n].id = id;
			jobs[n].chunk = c;
			jobs[n].err = 0;
			jobs[n].no_room = no_room;
			jobs[n].zero = false;
			n++;
			c++;
		}
		if (n == 0)
			continue;
		pthread_mutex_unlock(&v->mu);
		read_originals(v, jobs, n, ram_slots);
		pthread_mutex_lock(&v->mu);
		finish_copies_locked(v, jobs, n);
	}
}

/* --- writes, discards, zeroes -------------------------------------------- */

struct modify {
	struct range_entry range;
	uint64_t started;
};

/* Foreground accounting: requests served, their service time and those
 * under way (for the backup's pacing).  Two clock reads per request. */
static inline uint64_t io_begin(struct volume *v)
{
	atomic_fetch_add_explicit(&v->fg_inflight, 1, memory_order_relaxed);
	return clock_mono_ns();
}

static inline void io_end(struct volume *v, uint64_t started)
{
	atomic_fetch_add_explicit(&v->fg_busy_ns, clock_mono_ns() - started, memory_order_relaxed);
	atomic_fetch_add_explicit(&v->fg_ops, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&v->fg_inflight, 1, memory_order_relaxed);
}

void volume_fg_sample(const struct volume *v, struct volume_fg_sample *out)
{
	struct volume *w = (struct volume *)v; /* atomics are read through non-const */

	out->ops = atomic_load_explicit(&w->fg_ops, memory_order_relaxed);
	out->busy_ns = atomic_load_explicit(&w->fg_busy_ns, memory_order_relaxed);
	out->inflight = atomic_load_explicit(&w->fg_inflight, memory_order_relaxed);
}

/* Everything that must happen before bytes of [off, off+len) change on the
 * origin.  Leaves the gate held shared (and maybe a range). */
static void modify_begin(struct volume *v, uint64_t off, uint64_t len, bool zeroing,
			 struct modify *m)
{
	uint64_t c0 = off >> v->chunk_shift;
	uint64_t c1 = (off + len - 1) >> v->chunk_shift;

	m->range.held = false;
	m->started = io_begin(v);
	pthread_rwlock_rdlock(&v->gate);
	/* write-ahead: the change map first (in the gate, so a generation
	 * boundary falls between writes) */
	if (v->tracker)
		tracker_mark(v->tracker, c0, c1);
	if (atomic_load_explicit(&v->nactive, memory_order_acquire) == 0)
		return;
	pthread_mutex_lock(&v->mu);
	track_changes_locked(v, c0, c1);
	if (next_pending_locked(v, c0, c1 + 1) <= c1) {
		rangelock_acquire_locked(&v->rl, &v->mu, &m->range, c0, c1, true);
		copy_out_locked(v, c0, c1, zeroing);
	} else {
		rangelock_wait_writes_locked(&v->rl, &v->mu, c0, c1);
	}
	pthread_mutex_unlock(&v->mu);
}

static void modify_end(struct volume *v, struct modify *m)
{
	if (m->range.held) {
		pthread_mutex_lock(&v->mu);
		rangelock_release_locked(&v->rl, &m->range);
		pthread_mutex_unlock(&v->mu);
	}
	pthread_rwlock_unlock(&v->gate);
	io_end(v, m->started);
}

/* -EINVAL, not -ENOSPC: a device's own ENOSPC must reach the writer as it
 * is, not be taken for a range error by the layers above. */
static int check_range(const struct volume *v, uint64_t off, uint64_t len)
{
	if (off > v->size || len > v->size - off)
		return -EINVAL;
	return 0;
}

int volume_write(struct volume *v, const void *buf, size_t len, uint64_t off, unsigned flags)
{
	struct modify m;
	int r = check_range(v, off, len);

	if (r || len == 0)
		return r;
	modify_begin(v, off, len, false, &m);
	r = dev_pwrite(v->origin, buf, len, off,
		       ((flags & VOLUME_FUA) ? DEV_WRITE_FUA : 0) |
			       ((flags & VOLUME_NOCACHE) ? DEV_WRITE_NOCACHE : 0));
	modify_end(v, &m);
	atomic_fetch_add_explicit(&v->writes, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&v->bytes_written, len, memory_order_relaxed);
	return r;
}

int volume_discard(struct volume *v, uint64_t off, uint64_t len)
{
	struct modify m;
	int r = check_range(v, off, len);

	if (r || len == 0)
		return r;
	modify_begin(v, off, len, true, &m);
	r = v->origin->ops->discard(v->origin, off, len);
	modify_end(v, &m);
	return r;
}

int volume_write_zeroes(struct volume *v, uint64_t off, uint64_t len, unsigned flags)
{
	struct modify m;
	int r = check_range(v, off, len);

	if (r || len == 0)
		return r;
	modify_begin(v, off, len, true, &m);
	r = v->origin->ops->write_zeroes(v->origin, off, len, flags & VOLUME_MAY_UNMAP);
	modify_end(v, &m);
	return r;
}

int volume_read(struct volume *v, void *buf, size_t len, uint64_t off)
{
	return volume_read_flags(v, buf, len, off, 0);
}

int volume_read_flags(struct volume *v, void *buf, size_t len, uint64_t off, unsigned flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int r;

	if (off > v->size || len > v->size - off)
		return -EINVAL;
	uint64_t t = io_begin(v);
	r = v->origin->ops->preadv(v->origin, &iov, 1, off,
				   (flags & VOLUME_NOCACHE) ? DEV_NOCACHE : 0);
	io_end(v, t);
	atomic_fetch_add_explicit(&v->reads, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&v->bytes_read, len, memory_order_relaxed);
	return r;
}

int volume_flush(struct volume *v)
{
	return v->origin->ops->flush(v->origin);
}

int volume_extents(struct volume *v, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	uint64_t end;

	if (off > v->size || len > v->size - off)
		return -EINVAL;
	end = off + len;
	while (off < end) {
		enum dev_extent_type t = DEV_EXTENT_DATA;
		uint64_t n = end - off;
		int r = 0;
		if (v->origin->ops->extent)
			r = v->origin->ops->extent(v->origin, off, end - off, &t, &n);
		if (r < 0)
			return r;
		r = fn(arg, off, n, t == DEV_EXTENT_HOLE ? EXTENT_ZERO : EXTENT_DATA);
		if (r)
			return r;
		off += n;
	}
	return 0;
}

int volume_set_diff_limit(struct volume *v, uint64_t bytes)
{
	int r;

	pthread_mutex_lock(&v->mu);
	r = diffstore_set_limit_locked(&v->ds, bytes);
	if (r == 0) {
		v->diff_level = 0; /* levels anew, against the new limit */
		report_diff_level_locked(v);
		pthread_cond_broadcast(&v->room);
	}
	pthread_mutex_unlock(&v->mu);
	return r;
}

void volume_set_diff_file(struct volume *v, struct dev *diff, struct dev *copy_index,
			  const char *diff_dir)
{
	pthread_mutex_lock(&v->mu);
	diffstore_set_file_locked(&v->ds, diff);
	coldstore_set_file_locked(&v->cold, copy_index);
	if (!v->flush_in_flight)
		rest_adopt_locked(v); /* no pass writes entries now */
	snprintf(v->diff_dir, sizeof(v->diff_dir), "%s", diff_dir ? diff_dir : "");
	pthread_mutex_unlock(&v->mu);
}

uint64_t volume_diff_bytes(struct volume *v)
{
	uint64_t n;

	pthread_mutex_lock(&v->mu);
	n = v->ds.file_used_count * v->chunk_size;
	pthread_mutex_unlock(&v->mu);
	return n;
}

void volume_settle_locked(struct volume *v)
{
	/* Only the batch in flight now can hold copies released before this
	 * call (later batches skip dead copies); waiting for a moment with no
	 * batch at all could wait forever behind a busy flusher. */
	uint64_t target = v->flush_batches + 1;

	if (!v->flush_in_flight)
		return;
	while (v->flush_batches < target)
		pthread_cond_wait(&v->room, &v->mu);
}

void volume_settle(struct volume *v)
{
	pthread_mutex_lock(&v->mu);
	volume_settle_locked(v);
	pthread_mutex_unlock(&v->mu);
}

void volume_wait_rest(struct volume *v)
{
	pthread_mutex_lock(&v->mu);
	while (rest_due_locked(v) || v->flush_in_flight) {
		flusher_kick_locked(v);
		pthread_cond_wait(&v->room, &v->mu);
	}
	pthread_mutex_unlock(&v->mu);
}

void volume_get_stats(struct volume *v, struct volume_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&v->mu);
	st->diff_bytes = v->ds.file_used_count * v->chunk_size;
	st->diff_peak_bytes = v->ds.peak_used * v->chunk_size;
	st->diff_limit = v->ds.file_slots * v->chunk_size;
	st->ram_bytes = (uint64_t)diffstore_ram_used(&v->ds) * v->chunk_size;
	st->ram_limit = (uint64_t)v->ds.ram_slots * v->chunk_size;
	/* copies not in RAM are in the file */
	uint64_t in_ram_only = 0;
	for (uint32_t i = 0; i < v->ds.ram_slots; i++) {
		uint32_t id = v->ds.ram_owner[i];
		if (id != COW_NONE && cowmap_get(&v->map, id)->state != VERSION_FILE)
			in_ram_only++;
	}
	st->diff_file_bytes = st->diff_bytes - in_ram_only * v->chunk_size;
	st->cow_bytes = v->cow_bytes;
	st->cow_chunks = v->cow_chunks;
	st->zero_chunks = v->zero_chunks;
	st->writer_waits = v->writer_waits;
	st->writer_wait_ns = v->writer_wait_ns;
	st->snapshots = v->nsnaps;
	st->map_memory = cowmap_memory(&v->map) + bitmap_memory(&v->ds.file_used) +
			 coldstore_memory(&v->cold);
	st->records_in_memory = v->map.live;
	st->records_at_rest = v->cold.count;
	st->records_rested = v->rest_writes;
	for (unsigned i = 0; i < ENGINE_MAX_SNAPSHOTS; i++) {
		struct snapshot *s = v->snaps[i];
		if (s)
			st->map_memory += bitmap_memory(&s->pending) +
					  bitmap_memory(&s->consumed) +
					  bitmap_memory(&s->changed);
	}
	pthread_mutex_unlock(&v->mu);
	st->reads = atomic_load(&v->reads);
	st->writes = atomic_load(&v->writes);
	st->bytes_read = atomic_load(&v->bytes_read);
	st->bytes_written = atomic_load(&v->bytes_written);
}
