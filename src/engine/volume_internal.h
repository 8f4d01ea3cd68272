/* volume_internal.h - the engine's shared state, for volume.c, snapshot.c
 * and flusher.c only.
 *
 * Locks, in the order they are taken:
 *   1. volume.gate (rwlock): data writers hold it shared for the whole of a
 *      write; snapshot creation holds it exclusive to drain them, so a
 *      snapshot starts between writes, never inside one.  Several volumes'
 *      gates are taken in address order.
 *   2. volume.mu: guards everything below marked [mu].  Never held across
 *      I/O of data; the one file touched under it is the copy index
 *      (coldstore.h): page-cache reads and rewrites of 16-byte entries.
 *      Range locks and buffer waits sleep on condition variables of this
 *      mutex.
 * Snapshot reference counts are atomics and need no lock. */
#ifndef HS_VOLUME_INTERNAL_H
#define HS_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/names.h"
#include "engine/coldstore.h"
#include "engine/cowmap.h"
#include "engine/diffstore.h"
#include "engine/engine.h"
#include "engine/rangelock.h"

struct snapshot {
	struct volume *vol;      /* holds a volume reference */
	char name[HS_NAME_MAX + 1];
	unsigned slot;           /* its bit in version masks */
	uint64_t bit;
	atomic_int refs;
	atomic_int readers;
	uint64_t created_ns;
	uint64_t create_cost_ns; /* time the set creation held the gates */
	/* [mu] */
	enum snapshot_state state;
	char reason[ENGINE_REASON_MAX];
	struct bitmap pending;   /* chunks a write must copy out first */
	struct bitmap consumed;  /* chunks its reader is done with */
	struct bitmap changed;   /* chunks written since the snapshot */
	uint64_t used_chunks;
	bool all_blocks;
	uint64_t cow_bytes;
	uint64_t held_chunks;    /* versions it reads, zero records included */
	uint64_t held_zero;      /* of those, zero records (no storage) */
	uint64_t zero_chunks;    /* originals that read zeros: never copied */
	uint64_t gen;            /* its generation boundary (tracker.h); 0: none */
};

struct volume {
	atomic_int openers; /* exports open on it (counted by the export layer) */
	atomic_bool sole;   /* a sole claim is held (volume_claim_sole) */
	char name[HS_NAME_MAX + 1];
	char diff_dir[256];
	struct dev *origin;
	struct tracker *tracker; /* or NULL; its own locks */
	uint64_t size;
	uint64_t chunk_size;
	uint64_t nchunks;
	unsigned chunk_shift;
	atomic_int refs;

	pthread_rwlock_t gate;
	pthread_mutex_t mu;
	pthread_cond_t room;       /* a RAM slot was freed */
	pthread_cond_t flush_wake; /* the flusher has work, or must stop */
	pthread_cond_t held;       /* a copy was made for a draining snapshot */

	/* [mu] */
	struct rangelock rl;
	struct cowmap map;         /* records in memory */
	struct coldstore cold;     /* records at rest (rest.c) */
	uint32_t hot_target;       /* records in memory before some go to rest */
	uint32_t rest_at;          /* a pass starts when memory holds more */
	uint32_t rest_cursor;      /* where the next pass looks first */
	uint64_t rest_writes;      /* records whose entries a pass wrote */
	bool rest_off;             /* the store failed: records stay in memory */
	struct diffstore ds;
	struct snapshot *snaps[ENGINE_MAX_SNAPSHOTS]; /* by slot; NULL = free */
	unsigned nsnaps;
	/* the active ones, packed: the write path loops over these only */
	struct snapshot *active[ENGINE_MAX_SNAPSHOTS];
	unsigned nactive_list;
	unsigned room_waiters;
	uint64_t drain_mask;       /* snapshots being drained by their reader */
	bool drain_yield;          /* a drainer left all it was given: spill some */
	bool flushing;             /* flusher is draining toward its low mark */
	bool flush_in_flight;      /* a batch is being written */
	uint64_t flush_batches;    /* batches finished (room is broadcast) */
	bool flusher_stop;
	uint32_t flush_cursor;
	uint64_t cow_bytes, cow_chunks, writer_waits, writer_wait_ns;
	uint64_t zero_chunks;      /* originals that read zeros: held as zero records */
	unsigned diff_level;       /* index in DIFF_LEVELS last reported (events) */
	uint64_t fill_ref_ns, fill_ref_held; /* where the fill rate is measured from */
	volume_event_fn on_event;  /* set at creation */
	void *event_arg;

	/* Read without mu by the write fast path; changed under gate + mu. */
	atomic_uint nactive;

	pthread_t flusher;
	bool flusher_started;

	atomic_uint_fast64_t reads, writes, bytes_read, bytes_written;
	atomic_uint_fast64_t fg_ops, fg_busy_ns, fg_inflight;
};

static inline uint64_t chunk_len(const struct volume *v, uint64_t c)
{
	uint64_t start = c << v->chunk_shift;
	uint64_t left = v->size - start;
	return left < v->chunk_size ? left : v->chunk_size;
}

/* Version bookkeeping (volume.c). */
void version_free_locked(struct volume *v, uint32_t id);
void version_release_if_unused_locked(struct volume *v, uint32_t id);
void version_drop_snapshot_locked(struct volume *v, uint32_t id, struct snapshot *s);
void version_unpin_locked(struct volume *v, uint32_t id);

/* Copy records at rest (rest.c).  A rest_window caches entries read while
 * mu is held: it must not outlive that hold (rest_window_init after every
 * relock), since a pass may put new records to rest meanwhile. */
struct rest_window {
	uint64_t first;
	unsigned n;
	struct cold_record e[COLD_RUN_MAX];
};
void rest_window_init(struct rest_window *w);
/* The version of chunk c that snapshot bit reads, brought back into memory
 * if it was at rest; COW_NONE when there is none, or when it is a zero
 * record at rest (then *zero_at_rest).  May fail snapshots (no memory, a
 * broken store): readers check the snapshot's state afterwards. */
uint32_t version_find_locked(struct volume *v, struct rest_window *w, uint64_t c, uint64_t bit,
			     bool *zero_at_rest);
/* As version_find_locked, for a reader that knows the diff-file slot the
 * copy had (COW_NONE: not known): a record at rest is found by its entry by
 * slot, read in windows ws that walk on with the slots, instead of its entry
 * by chunk (scattered); w serves when the slot has been reused meanwhile. */
uint32_t version_find_at_slot_locked(struct volume *v, struct rest_window *ws,
				     struct rest_window *w, uint64_t c, uint32_t slot,
				     uint64_t bit, bool *zero_at_rest);
/* Whether snapshot bit reads a copy with data at c, in memory or at rest. */
bool version_has_data_locked(struct volume *v, struct rest_window *w, uint64_t c, uint64_t bit);
/* s lets go of its records at rest in [first, first + count), but for the
 * chunks set in keep. */
void rest_drop_locked(struct volume *v, struct snapshot *s, uint64_t first, uint64_t count,
		      const struct bitmap *keep);
/* Up to max chunks whose records at rest s reads. */
size_t rest_collect_locked(struct volume *v, struct snapshot *s, uint64_t *out, size_t max);
/* out[slot - lo] = chunk + 1 for each record at rest in diff-file slots
 * [lo, hi) that s reads. */
void rest_by_slot_locked(struct volume *v, struct snapshot *s, uint64_t lo, uint64_t hi,
			 uint64_t *out);
/* The copy index moves to a new diff directory's file, if one waits and
 * nothing rests in the old (coldstore_adopt_locked).  Not during a pass. */
void rest_adopt_locked(struct volume *v);
/* The flusher's second duty: memory holds more than hot_target records. */
bool rest_due_locked(const struct volume *v);
/* Puts up to a batch of settled records to rest; drops mu while writing. */
void rest_some_locked(struct volume *v);
/* Record id just became free to rest (unpinned, or flushed): if memory
 * holds too many, a pass that found none before runs again. */
void rest_note_settled_locked(struct volume *v, uint32_t id);

/* The packed list of active snapshots (snapshot.c). */
void active_add_locked(struct volume *v, struct snapshot *s);
void active_remove_locked(struct volume *v, struct snapshot *s);

/* Failing snapshots (snapshot.c). */
void snapshot_fail_locked(struct snapshot *s, const char *reason);
void volume_fail_mask_locked(struct volume *v, uint64_t mask, const char *reason);

/* Waits for the flusher's batch in flight, if any (see volume_settle). */
void volume_settle_locked(struct volume *v);

/* The flusher thread (flusher.c). */
int flusher_start(struct volume *v);
void flusher_stop(struct volume *v);
void flusher_kick_locked(struct volume *v);

#endif
