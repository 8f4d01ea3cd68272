/* engine.h - volumes, snapshots and copy-before-write.
 *
 * The engine knows nothing of FUSE, NBD, sockets or the command line.  Front
 * ends call it through this header (usually via export.h).  Every function
 * returns 0 or -errno unless it says otherwise.
 *
 * The invariants it keeps:
 *  1. Pre-image before overwrite: no write, discard or write-zeroes reaches a
 *     chunk of the origin that a live snapshot still needs until the chunk's
 *     original is held in the diff store.
 *  2. One copy per chunk version: a chunk copied once serves every snapshot
 *     that needed that version (a bit mask of snapshots on the copy).
 *  3. A range lock orders copy-out, origin write and snapshot read of the same
 *     chunks: a snapshot read never sees data written after the snapshot.
 *  4. Overflow fails the snapshot, never the write: when the diff store has no
 *     room, the snapshots that needed the copy become failed and the write
 *     goes on.  Origin errors go back to the writer.
 *  5. The RAM buffer for copies is bounded; writers wait for room, never fail.
 *  6. Zeros cost nothing: an original that reads all zeros (or lies in a
 *     hole of the origin, for a discard or write-zeroes) is held as a zero
 *     record, with neither RAM nor diff-file space, and cannot overflow.
 */
#ifndef HS_ENGINE_H
#define HS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "engine/dev.h"

#define ENGINE_MAX_SNAPSHOTS 64 /* live per volume; one bit each in a copy's mask */
#define ENGINE_MIN_CHUNK_SHIFT 12
#define ENGINE_MAX_CHUNK_SHIFT 20
#define ENGINE_REASON_MAX 256

struct volume;
struct snapshot;
struct tracker;

/* What the engine tells its owner as it happens (the daemon's event stream).
 * Called with the volume's lock held, from a writer's path: the callee only
 * copies what it needs and returns; it must not block or call the engine. */
enum volume_event_type {
	VOLUME_EVENT_SNAPSHOT_FAILED, /* snapshot, reason */
	VOLUME_EVENT_DIFF_LEVEL,      /* the diff store rose past level_pct of its limit */
};
struct volume_event {
	enum volume_event_type type;
	const char *volume;
	const char *snapshot;
	const char *reason;
	unsigned level_pct;
	uint64_t held, limit; /* bytes */
	double seconds_to_full; /* at the rate since the last level; < 0: unknown */
};
typedef void (*volume_event_fn)(void *arg, const struct volume_event *ev);

struct volume_config {
	const char *name;    /* for messages */
	uint64_t size;       /* bytes; a multiple of 512, at most origin's size */
	unsigned chunk_shift;
	uint64_t cow_buffer; /* bytes of RAM for copies; at least 2 chunks */
	uint64_t diff_limit; /* bytes the diff file may hold */
	const char *diff_dir; /* for messages only: where the diff file lives */
	/* Change tracking (tracker.h), or NULL.  The volume takes it over, also
	 * on failure, and closes it cleanly after its last write. */
	struct tracker *tracker;
	volume_event_fn on_event; /* or NULL */
	void *event_arg;
	/* Where records of settled copies rest instead of memory (an unnamed
	 * file beside the diff file; coldstore.h), or NULL to keep every
	 * record in memory.  The volume takes it over, also on failure. */
	struct dev *copy_index;
	/* Records kept in memory before settled ones go to rest; 0: the
	 * default (16384, about 0.6 MiB).  Tests set it tiny. */
	uint32_t hot_records;
};

/* Takes ownership of origin and diff (also on failure).  diff is where
 * copies go when the RAM buffer fills (required; tests use a dev_mem). */
int volume_create(struct volume **out, const struct volume_config *cfg, struct dev *origin,
		  struct dev *diff);
/* Deletes any snapshots left and drops the creator's reference; the volume
 * is freed when the last export on it closes. */
void volume_destroy(struct volume *v);
void volume_get(struct volume *v);
void volume_put(struct volume *v);

/* Who has the volume open (exports: the daemon's own, FUSE files, NBD
 * clients): a revert runs only when nobody but the daemon does.  Counted
 * by the export layer. */
void volume_openers_add(struct volume *v, int delta);
int volume_openers(const struct volume *v);
/* A sole claim, for a job that rewrites the volume wholesale (a restore, a
 * revert): it is granted only while at most `openers` exports are open (the
 * daemon's own), and while it is held the export layer opens no new export
 * of the volume (export_open_volume fails with EBUSY), so a client that
 * connects after the check cannot write under the job or read it half done.
 * The claim and an open race safely: one of them, or both, gives way. */
bool volume_claim_sole(struct volume *v, int openers);
void volume_release_sole(struct volume *v);
bool volume_claimed(const struct volume *v);
/* The volume's change tracker, or NULL. */
struct tracker *volume_tracker(const struct volume *v);
uint64_t volume_size(const struct volume *v);
unsigned volume_chunk_shift(const struct volume *v);
uint64_t volume_nchunks(const struct volume *v);
const char *volume_name(const struct volume *v);

/* Ranges past the end give -EINVAL; any other error is the device's. */
#define VOLUME_FUA 0x1        /* write: durable on return */
#define VOLUME_MAY_UNMAP 0x2  /* write_zeroes: may deallocate */
#define VOLUME_NOCACHE 0x4    /* nobody reads it again soon (a restore): past the page cache */

int volume_read(struct volume *v, void *buf, size_t len, uint64_t off);
/* With VOLUME_NOCACHE: read past the page cache (a restore's check reads
 * what is on the disk, and leaves nothing cached behind). */
int volume_read_flags(struct volume *v, void *buf, size_t len, uint64_t off, unsigned flags);
int volume_write(struct volume *v, const void *buf, size_t len, uint64_t off, unsigned flags);
int volume_discard(struct volume *v, uint64_t off, uint64_t len);
int volume_write_zeroes(struct volume *v, uint64_t off, uint64_t len, unsigned flags);
int volume_flush(struct volume *v);

/* Extents for block status: callback gets byte runs; returning non-zero
 * stops the walk and is returned. */
enum extent_type {
	EXTENT_DATA,     /* reads data */
	EXTENT_ZERO,     /* reads zeros and holds no storage (hole, free block) */
	EXTENT_CONSUMED, /* snapshot only: already read by its backup; reads fail */
};
typedef int (*extent_fn)(void *arg, uint64_t off, uint64_t len, enum extent_type type);
int volume_extents(struct volume *v, uint64_t off, uint64_t len, extent_fn fn, void *arg);

struct volume_stats {
	uint64_t diff_bytes;         /* held now, RAM and file */
	uint64_t diff_peak_bytes;
	uint64_t diff_file_bytes;    /* of which in the diff file */
	uint64_t diff_limit;
	uint64_t ram_bytes;          /* of the buffer in use now */
	uint64_t ram_limit;
	uint64_t cow_bytes;          /* bytes copied on write, all time */
	uint64_t cow_chunks;
	uint64_t zero_chunks;        /* originals that read zeros: no copy, no space */
	uint64_t writer_waits;       /* times a writer waited for buffer room */
	uint64_t writer_wait_ns;
	uint64_t reads, writes, bytes_read, bytes_written;
	unsigned snapshots;
	size_t map_memory;           /* bytes of RAM in maps and copy records */
	uint64_t records_in_memory;  /* copy and zero records in memory */
	uint64_t records_at_rest;    /* and in the file beside the diff file */
	uint64_t records_rested;     /* entries written to that file, all time: a
				      * record brought back unchanged rests again
				      * without one */
};
void volume_get_stats(struct volume *v, struct volume_stats *st);
/* A new diff limit, at once, also while snapshots are live: -EBUSY when
 * more than bytes is held now (nothing changes then). */
int volume_set_diff_limit(struct volume *v, uint64_t bytes);
/* Copies spill to diff (a file in diff_dir) from the moment the present
 * diff file holds none (at once when it is empty); records rest in
 * copy_index (or NULL: where they rest now) from the moment none rests in
 * the present one.  Takes ownership of both. */
void volume_set_diff_file(struct volume *v, struct dev *diff, struct dev *copy_index,
			  const char *diff_dir);

/* Just diff_bytes: cheap enough to sample once per backup block. */
uint64_t volume_diff_bytes(struct volume *v);
/* Waits until no copy is on its way to the diff file.  A copy released
 * while the flusher writes it is freed when that write ends, so the stats
 * read after this count every release already made.  For tests and
 * accounting; no writer or reader needs it. */
void volume_settle(struct volume *v);
/* Waits until the flusher has put to rest what it will (volume_config's
 * copy_index): memory holds at most the hot target, or only records that
 * must stay.  For tests. */
void volume_wait_rest(struct volume *v);

/* --- snapshots ---------------------------------------------------------- */

struct snapshot_request {
	struct volume *volume;
	const char *name;
	/* Chunks in use at the snapshot instant (volume_nchunks bits); NULL
	 * protects every chunk.  The snapshot copies its own. */
	const struct bitmap *used;
};

/* Creates one snapshot per request at one instant: in-flight writes to all
 * the volumes are drained, every view installed, writes resume.  out[i]
 * gets a reference the caller must put.  -EBUSY when a volume has
 * ENGINE_MAX_SNAPSHOTS snapshots; -EEXIST when a name is taken. */
int snapshot_create_set(const struct snapshot_request *reqs, size_t n, struct snapshot **out);

void snapshot_get(struct snapshot *s);
void snapshot_put(struct snapshot *s);

/* Finds a live (active or failed) snapshot of v by name, with a reference. */
struct snapshot *volume_find_snapshot(struct volume *v, const char *name);
/* Calls fn for each live snapshot, oldest first, under no lock the callee
 * may rely on beyond the reference it is given. */
void volume_foreach_snapshot(struct volume *v, void (*fn)(void *arg, struct snapshot *s),
			     void *arg);

/* Removes the snapshot and releases its copies; when it returns, their
 * space is free (it waits for a flush of them in flight).  References still
 * held see -ESTALE from every call. */
int snapshot_delete(struct snapshot *s);

const char *snapshot_name(const struct snapshot *s);
/* Who else reads the snapshot (exports open on it): a backup consumes a
 * snapshot only when it is the only reader.  Counted by the export layer. */
void snapshot_readers_add(struct snapshot *s, int delta);
int snapshot_readers(const struct snapshot *s);
struct volume *snapshot_volume(const struct snapshot *s);
/* The generation the snapshot's instant began in its volume's tracker (a
 * bookmark keeps it; tracker_changed counts from it); 0 when untracked. */
uint64_t snapshot_generation(const struct snapshot *s);

/* Reads the point-in-time view.  -EIO when the snapshot failed; -ENODATA
 * where the range was consumed. */
int snapshot_read(struct snapshot *s, void *buf, size_t len, uint64_t off);
/* The reader is done with [off, off + len): whole chunks inside it need no
 * more copies and their held originals are released at once. */
int snapshot_consume(struct snapshot *s, uint64_t off, uint64_t len);

/* Chunks clear in used become free for the snapshot: no copy, read as
 * zeros.  May be applied after creation (copies already made are released). */
int snapshot_apply_used_map(struct snapshot *s, const struct bitmap *used);

int snapshot_extents(struct snapshot *s, uint64_t off, uint64_t len, extent_fn fn, void *arg);
/* Runs of chunks written on the volume since the snapshot: the callback
 * gets (off, len, EXTENT_DATA) for changed runs, EXTENT_ZERO for unchanged. */
int snapshot_changed(struct snapshot *s, uint64_t off, uint64_t len, extent_fn fn, void *arg);

enum snapshot_state { SNAPSHOT_ACTIVE, SNAPSHOT_FAILED, SNAPSHOT_DELETED };

struct snapshot_stats {
	enum snapshot_state state;
	char reason[ENGINE_REASON_MAX]; /* when failed */
	uint64_t created_ns;            /* CLOCK_REALTIME */
	uint64_t create_cost_ns;        /* writers were held for this long */
	uint64_t cow_bytes;             /* copied on write for this snapshot */
	uint64_t held_bytes;            /* copies it holds now (zero records take none) */
	uint64_t zero_chunks;           /* originals that read zeros: recorded, not copied */
	uint64_t protected_chunks;      /* still to be copied before a write */
	uint64_t used_chunks;           /* in use at the snapshot instant */
	uint64_t consumed_chunks;
	uint64_t changed_chunks;        /* written since */
	bool all_blocks;
	uint64_t generation;            /* its boundary in the volume's tracker; 0: none */
};
void snapshot_get_stats(struct snapshot *s, struct snapshot_stats *st);

/* Fails the snapshot with a reason (a front end's or the daemon's decision,
 * e.g. a lost backing device).  Idempotent. */
void snapshot_fail(struct snapshot *s, const char *reason);

const char *snapshot_state_name(enum snapshot_state st);

#endif
