/* snapshot_backup.h - the engine calls only a backup makes.
 *
 * A backup is an ordinary reader of a snapshot (engine.h) that also wants
 * three things no other front end needs: to skip chunks it took already,
 * to take the snapshot's saved originals out of block order (all of them in
 * diff-file order first, or each one as soon as it is made), and to see how
 * the volume's own requests fare so it can step aside.  They live here so
 * that engine.h stays what every front end needs, and so that the list of
 * what the backup library depends on is one short header. */
#ifndef HS_SNAPSHOT_BACKUP_H
#define HS_SNAPSHOT_BACKUP_H

#include "engine/engine.h"

/* As snapshot_read, but chunks set in skip are not read: their bytes in buf
 * are left as they were.  For a reader that took those chunks already. */
int snapshot_read_except(struct snapshot *s, void *buf, size_t len, uint64_t off,
			 const struct bitmap *skip);

/* The reader will read [off, off + len) soon: the origin starts fetching
 * it (a hint; for an origin in the page cache, readahead).  A backup keeps
 * a few MiB of these in flight ahead of its position, so the device sees a
 * deep queue instead of one read at a time. */
void snapshot_prefetch(struct snapshot *s, uint64_t off, uint64_t len);

/* Foreground requests served so far and their summed service time: a backup
 * samples both to see how its own reading affects the applications.  And
 * the requests under way at the sample: none served in a while with some
 * under way is a stalled foreground, not an idle one. */
struct volume_fg_sample {
	uint64_t ops;
	uint64_t busy_ns;
	uint64_t inflight;
};
void volume_fg_sample(const struct volume *v, struct volume_fg_sample *out);

/* Draining: a consuming reader (a backup) takes every copy the snapshot
 * holds as soon as it is made, instead of waiting to reach its position.
 * While draining is on, copies that only this snapshot needs stay in the
 * RAM buffer (the flusher does not spill them); writers that find the
 * buffer full wait for the reader.  So during a drained backup the diff
 * store holds at most the RAM buffer, plus what it held when draining began.
 */
void snapshot_set_drain(struct snapshot *s, bool on);
/* The reader leaves every copy it was last given to someone else (its
 * block pass, which releases them behind its position): if writers wait
 * for room, the flusher may spill one batch of drained copies to the diff
 * file.  Without it a block pass waiting on such a writer's range would
 * wait for good when the buffer is smaller than the pass's window. */
void snapshot_drain_yield(struct snapshot *s);
/* Up to max chunks (in no particular order) the snapshot holds copies of;
 * with wait_ns, waits that long for one to appear.  Returns the count. */
size_t snapshot_held_chunks(struct snapshot *s, uint64_t *out, size_t max, uint64_t wait_ns);
/* Held copies in diff-file order, for a reader that wants to take them all
 * with sequential reads of the diff file: fills out with up to max chunks
 * whose copies the snapshot holds in the diff-file slots [*cursor,
 * *cursor + max), in slot order, and slots[i] with the slot of out[i];
 * advances *cursor, which becomes UINT64_MAX after the last slot.  Returns
 * the count (0 is not the end). */
size_t snapshot_held_by_slot(struct snapshot *s, uint64_t *out, uint32_t *slots, size_t max,
			     uint64_t *cursor);
/* Reads the held copies of chunks[0..n) (as snapshot_held_by_slot gives
 * them) into buf, chunk i at i * chunk size, with one read per run of
 * neighbouring diff-file slots.  slots (or NULL) are the slots
 * snapshot_held_by_slot gave: records at rest are then looked up in slot
 * order, a few reads of the copy index instead of one per chunk; a slot
 * reused meanwhile only costs the lookup by chunk.  got[i] is false where
 * the snapshot holds no readable copy (released meanwhile, or still being
 * made).  At most 1024 chunks.  0, or -EIO and the like. */
int snapshot_read_held_batch(struct snapshot *s, const uint64_t *chunks, const uint32_t *slots,
			     size_t n, void *buf, bool *got);
/* Reads the whole held copy of chunk c into buf (chunk_len bytes): -EAGAIN
 * when the snapshot holds no copy of it.  Takes no range lock (a held copy
 * never changes), so it cannot wait behind a writer that waits for room. */
int snapshot_read_held(struct snapshot *s, uint64_t c, void *buf);

#endif
