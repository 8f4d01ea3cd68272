/* coldstore.h - copy records at rest: the records of settled copies, kept
 * in a file instead of in memory.
 *
 * Why: a copy record costs 38 bytes of memory (cowmap.h), about 1% of the
 * copied bytes at 4 KiB chunks, so a backup that runs while a database
 * rewrites 100 GiB would hold a gigabyte of records.  Most records are
 * settled: the copy is in the diff file, nobody reads or writes it now, and
 * only a snapshot read of its chunk, a walk of the diff file in slot order
 * or a snapshot letting go of it will touch it again.  Those rest here, in
 * two tables of an unnamed file beside the diff file, read and written
 * through the page cache:
 *
 *   by chunk:  chunk c at c * 16:              { mask, slot }  (slot COW_NONE:
 *                                               a zero record)
 *   by slot:   diff-file slot s at base + s*16: { chunk, mask }
 *
 * Two sparse bitmaps in memory say which entries hold records (bit c of
 * chunks, bit s of slots), so memory follows the bitmaps' mixed leaves, not
 * the number of copies.  An entry whose bit is clear is garbage.
 *
 * A chunk has at most one record at rest; another version of the same chunk
 * (several snapshots, written between them) stays in memory.
 *
 * The contract, in dm-exception-store's words: the one settler *prepares*
 * entries (coldstore_write, without the volume's lock: it writes only entries
 * whose bits are clear, which nobody reads), then *commits* them
 * (coldstore_commit_locked sets the bits).  Everything else runs under the
 * volume's lock: reads of entries whose bits are set, mask updates of those
 * entries, and forgetting (the record was brought back into memory or
 * freed).  Those reads and writes are memory copies from and to the page
 * cache unless the machine is short of memory.
 *
 * Nothing outlives the daemon (snapshots do not): the file is unnamed and
 * never flushed. */
#ifndef HS_COLDSTORE_H
#define HS_COLDSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "engine/cowmap.h"
#include "engine/dev.h"

/* A record as the settler hands it over, and as a read by chunk returns it
 * (chunk is then the chunk asked for). */
struct cold_record {
	uint64_t chunk;
	uint64_t mask; /* snapshots (by slot) that read it; never 0 */
	uint32_t slot; /* its diff-file slot, COW_NONE for a zero record */
};

struct coldstore {
	struct dev *dev; /* NULL: disabled, every record stays in memory */
	struct dev *next_dev; /* takes dev's place once no record rests in it */
	uint64_t nchunks;
	uint64_t slot_base; /* byte offset of the by-slot table */
	struct bitmap chunks;
	struct bitmap slots;
	uint64_t count;      /* records at rest */
	uint64_t high;       /* bytes of the file committed entries reach */
};

/* Takes ownership of dev (NULL disables the store).  nslots: diff-file
 * slots at first; the store grows with later slots.  0 or -ENOMEM. */
int coldstore_init(struct coldstore *cs, struct dev *dev, uint64_t nchunks, uint64_t nslots);
void coldstore_destroy(struct coldstore *cs);

static inline bool coldstore_has_locked(const struct coldstore *cs, uint64_t chunk)
{
	return cs->count && bitmap_test(&cs->chunks, chunk);
}

/* Records of chunks [first, first + n) into out (at most COLD_RUN_MAX);
 * out[i] is meaningful only where the chunk has a record, and then must
 * pass coldstore_record_sane.  0 or -errno. */
#define COLD_RUN_MAX 256u
int coldstore_read_chunks_locked(const struct coldstore *cs, uint64_t first, unsigned n,
				 struct cold_record *out);
/* False when a record at rest contradicts the bitmaps (a damaged file):
 * the caller treats it as a read error (-EIO). */
bool coldstore_record_sane(const struct coldstore *cs, const struct cold_record *rec);
/* The entries of these chunks will be read soon: where they rest, their
 * pages start coming in (one hint per page), so scattered lookups after an
 * eviction (drop_caches, memory pressure) wait for the disk once, not once
 * each. */
void coldstore_prefetch_locked(const struct coldstore *cs, const uint64_t *chunks, size_t n);
/* Entries of diff-file slots [first, first + n) (at most COLD_RUN_MAX), as
 * chunk and mask; meaningful only where the slot's bit is set. */
int coldstore_read_slots_locked(const struct coldstore *cs, uint64_t first, unsigned n,
				struct cold_record *out);

/* Prepares n records, sorted by chunk, each chunk once, none of them at
 * rest now: writes their entries, one write per run of neighbours.  Called
 * by the one settler, without the volume's lock.  0 or -errno. */
int coldstore_write(struct coldstore *cs, const struct cold_record *recs, unsigned n);
/* The prepared record of chunk is at rest from now on.  0 or -ENOMEM. */
int coldstore_commit_locked(struct coldstore *cs, const struct cold_record *rec);
/* A new mask for a record at rest.  0 or -errno (the entry is unchanged or
 * half changed: the caller forgets the record). */
int coldstore_set_mask_locked(struct coldstore *cs, const struct cold_record *rec);
/* The record of chunk is no longer at rest (its bits are cleared).  0, or
 * -ENOMEM (splitting a leaf of all ones): then the store is inconsistent
 * and the caller forgets everything (coldstore_forget_all_locked). */
int coldstore_forget_locked(struct coldstore *cs, const struct cold_record *rec);
/* Forgets every record at once; calls fn(arg, slot) for each data record's
 * slot first, so the caller can give the slots back. */
void coldstore_forget_all_locked(struct coldstore *cs, void (*fn)(void *arg, uint32_t slot),
				 void *arg);

/* A new file (a new diff directory): it takes the present one's place
 * once no record rests there (coldstore_adopt_locked).  Takes ownership;
 * NULL keeps the present file. */
void coldstore_set_file_locked(struct coldstore *cs, struct dev *dev);
/* Moves to the new file if one waits and no record rests in the present
 * one (true when it moved).  Only while nobody writes entries without the
 * lock (the settler between passes, or the settler itself). */
bool coldstore_adopt_locked(struct coldstore *cs);

/* With no record at rest, gives the file's blocks back (punches a hole
 * over what entries reached).  For when the last snapshot is gone. */
void coldstore_release_space_locked(struct coldstore *cs);

/* Bytes of heap the store holds (its bitmaps). */
size_t coldstore_memory(const struct coldstore *cs);

#endif
