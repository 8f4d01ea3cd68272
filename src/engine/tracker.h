/* tracker.h - which parts of a volume changed, kept across crashes.
 *
 * Time on a volume is cut into generations: every snapshot ends one, at its
 * instant.  The tracker answers "which chunks were written in generations
 * [a, b)", which is what an incremental backup from a bookmark (a kept
 * generation boundary) to a snapshot (the next boundary) must read.
 *
 * Two maps of the same writes:
 *   exact   per chunk, in memory, for the generations since the tracker
 *           was opened;
 *   coarse  per region (64 KiB by default), in the map file (a struct dev),
 *           write-ahead: before the first write to a clean region of the
 *           live generation reaches the origin, that region's bit is on
 *           disk.  Rewrites of a marked region cost a lock and a bit test;
 *           writers that need a bit durable share one flush (group commit).
 * So after any crash the coarse map may over-report (a bit whose write
 * never landed), never miss a change.  A query uses the exact map where it
 * has one and the coarse one before that.
 *
 * Trust: tracking is only as good as the promise that nothing else wrote
 * the origin.  At open the tracker compares the origin's stamp (size,
 * mtime, ctime from dev_stamp) with what it recorded: after a clean close
 * they must be equal; after a crash the origin may not have changed later
 * than the last heartbeat plus a grace (the daemon's own last writes).
 * Otherwise, or when the file is missing or damaged, the tracking starts
 * over with a new epoch, the reason kept for status, and every bookmark of
 * the old epoch is gone: an incremental against one is refused, never
 * computed wrong.
 *
 * Deltas and bookmarks: the map of a closed generation is kept only while
 * a bookmark or a live snapshot needs it; neighbouring deltas that no
 * boundary separates are merged.  So the file holds about one map per
 * bookmark.  At most TRACKER_MAX_BOOKMARKS bookmarks; adding one more drops
 * the oldest.
 *
 * Locks: tracker.mu guards the maps and the header copy, never across
 * I/O; tracker.io_mu serializes header commits, merges and heartbeats.
 * Order: switch_mu -> volume gate -> volume mu -> tracker.mu; io_mu is
 * taken with none of the volume's locks held (and may take tracker.mu).
 * Every function returns 0 or -errno unless it says otherwise. */
#ifndef HS_TRACKER_H
#define HS_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "engine/dev.h"
#include "engine/tracker_format.h"

#define TRACKER_DEFAULT_REGION_SHIFT 16
#define TRACKER_HEARTBEAT_NS (1000 * 1000000ull)
/* after a crash, how much later than the last heartbeat the origin may
 * have been written (by the daemon's last writes) */
#define TRACKER_GRACE_NS (2000 * 1000000ull)

struct tracker;

struct tracker_geometry {
	uint64_t size;         /* of the volume */
	unsigned chunk_shift;
	unsigned region_shift; /* >= chunk_shift */
};

/* Opens the map file of a volume (map is taken over, also on failure) and
 * checks it against the origin (not taken over; it must outlive the
 * tracker).  A missing, damaged or distrusted map does not fail the open:
 * the tracker starts over and tracker_status() says why.  -EINVAL only for
 * a bad geometry; -EIO when the file cannot be written at all. */
int tracker_open(struct tracker **out, struct dev *map, struct dev *origin,
		 const struct tracker_geometry *geo);
/* Names the tracker in messages (the volume's name). */
void tracker_set_name(struct tracker *t, const char *name);
/* Flushes, marks the file clean with the origin's stamp (call it after the
 * last write to the origin and its flush) and frees. */
void tracker_close(struct tracker *t);
/* Frees without the clean mark (a test's crash). */
void tracker_abandon(struct tracker *t);

/* --- the write path ------------------------------------------------------- */

/* Chunks [c0, c1] are about to be written: returns once their regions are
 * on disk.  Never fails the write: a map that cannot be written ends the
 * tracking (tracker_status says why). */
void tracker_mark(struct tracker *t, uint64_t c0, uint64_t c1);

/* --- generation boundaries (snapshot_create_set) -------------------------- */

/* Before the volume's gate closes: makes sure a spare map is ready (may
 * write and flush), and holds the switch lock until tracker_switch_done. */
int tracker_switch_prepare(struct tracker *t);
/* Under the gate, with no write in flight: ends the live generation and
 * returns the new one's number (the snapshot's boundary).  No I/O. */
uint64_t tracker_switch_locked(struct tracker *t);
void tracker_switch_done(struct tracker *t);

/* A live snapshot keeps its boundary's maps (counted). */
void tracker_boundary_get(struct tracker *t, uint64_t gen);
void tracker_boundary_put(struct tracker *t, uint64_t gen);

/* Writes whatever the header owes the disk (the last boundary, merges) and
 * the heartbeat when the origin changed.  The tracker's own thread does it
 * about once a second; tests call it to reach a known state. */
int tracker_sync(struct tracker *t);

/* --- bookmarks ------------------------------------------------------------ */

struct tracker_bookmark {
	char name[TRACKER_NAME_MAX + 1];
	uint64_t gen;
	uint64_t instant_ns; /* wall clock */
	uint64_t created_ns;
};

/* Keeps boundary gen (a live snapshot's) under name, durably; a bookmark
 * of that name is replaced, and the oldest goes when there are too many.
 * Flushes the origin first (see tracker.c).
 * -ESTALE when gen is not a boundary the tracker still holds. */
int tracker_bookmark_add(struct tracker *t, const char *name, uint64_t gen, uint64_t instant_ns);
/* -ENOENT when there is none of that name. */
int tracker_bookmark_remove(struct tracker *t, const char *name);
/* Up to max bookmarks, oldest first; returns how many there are. */
size_t tracker_bookmarks(struct tracker *t, struct tracker_bookmark *out, size_t max);
/* The bookmark of that name, or -ENOENT. */
int tracker_bookmark_find(struct tracker *t, const char *name, struct tracker_bookmark *out);

/* --- queries ---------------------------------------------------------------- */

/* Sets in out (one bit per chunk, initialised by the caller) every chunk
 * written in generations [from, to).  *exact says whether every part came
 * from the exact maps (else some are whole regions).  -ESTALE when the
 * tracker no longer holds those generations (no boundary kept at from, or
 * tracking started over since). */
int tracker_changed(struct tracker *t, uint64_t from, uint64_t to, struct bitmap *out,
		    bool *exact);

struct tracker_status {
	uint8_t epoch[16];
	uint64_t epoch_ns;
	uint64_t gen;
	unsigned region_shift;
	uint64_t exact_since;   /* generations >= this have exact maps */
	unsigned bookmarks;
	unsigned deltas;
	bool broken;            /* the map could not be written: tracking stopped */
	char lost_reason[TRACKER_REASON_MAX]; /* why tracking last started over ("" never) */
	uint64_t lost_ns;
	uint64_t map_bytes;     /* of the file in use */
	uint64_t syncs;         /* flushes the write path waited for */
	uint64_t sync_wait_ns;
};
void tracker_status(struct tracker *t, struct tracker_status *st);

/* "0123abcd..." (32 hex digits) */
void tracker_epoch_hex(const uint8_t epoch[16], char out[33]);

#endif
