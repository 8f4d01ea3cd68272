/* diffstore.h - where saved originals live: a bounded RAM buffer in front of
 * a diff file with a size limit.
 *
 * Space is reserved in the diff file when a copy is made (prepare, in
 * dm-snapshot's words), so an overflow is known at once, on the writer's
 * path, and fails exactly the snapshots that needed that copy.  The copy
 * itself lands in a RAM slot; the flusher moves RAM slots to their reserved
 * file slots when the buffer fills past half.  A copy released while still in
 * RAM (a backup consumed it, its snapshot was deleted) never touches the
 * file.  The diff file is unnamed (O_TMPFILE), so a crash leaves nothing
 * behind: snapshots do not outlive the daemon.
 *
 * The store knows slots and bytes, not chunks or snapshots.  Not thread safe:
 * the volume's mutex guards it; data is copied in and out of slots outside
 * the lock by whoever holds the slot. */
#ifndef HS_DIFFSTORE_H
#define HS_DIFFSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "engine/dev.h"

struct diffstore {
	uint64_t chunk_size;
	/* RAM buffer */
	uint8_t *ram;
	uint32_t ram_slots;
	uint32_t ram_free_count;
	uint32_t *ram_free;  /* stack of free slots */
	uint32_t *ram_owner; /* version id using each slot (COW_NONE if free) */
	/* diff file */
	struct dev *file;
	struct dev *next_file; /* takes file's place once nothing is held in it */
	uint64_t file_slots; /* the limit, in slots; file_used may be longer after
			      * a shrink, with slots past it held until released */
	struct bitmap file_used;
	uint64_t file_used_count;
	uint64_t file_cursor; /* next-fit start: keeps neighbours adjacent */
	uint64_t peak_used;
};

/* Takes ownership of file. ram_bytes and limit_bytes are rounded down to
 * whole chunks; ram must hold at least 2.  0 or -errno. */
int diffstore_init(struct diffstore *ds, uint64_t chunk_size, uint64_t ram_bytes,
		   uint64_t limit_bytes, struct dev *file);
void diffstore_destroy(struct diffstore *ds);

/* A new limit, at once: -EBUSY when more slots than it allows are held
 * now (they stay as they are).  Growing may need memory (-ENOMEM). */
int diffstore_set_limit_locked(struct diffstore *ds, uint64_t limit_bytes);
/* Copies spill to file from the moment none is held in the present file
 * (at once when none is): the file cannot move while slots in it are
 * reserved, and nobody reads or writes a file with no slot reserved.  Takes
 * ownership of file. */
void diffstore_set_file_locked(struct diffstore *ds, struct dev *file);

/* Reserves a slot in the diff file; -ENOSPC when the limit is reached. */
int diffstore_reserve_locked(struct diffstore *ds, uint32_t *file_slot);
void diffstore_unreserve_locked(struct diffstore *ds, uint32_t file_slot);

/* Takes a RAM slot for owner; COW_NONE when the buffer is full. */
uint32_t diffstore_ram_take_locked(struct diffstore *ds, uint32_t owner);
void diffstore_ram_give_locked(struct diffstore *ds, uint32_t ram_slot);

static inline uint8_t *diffstore_ram_ptr(struct diffstore *ds, uint32_t ram_slot)
{
	return ds->ram + (uint64_t)ram_slot * ds->chunk_size;
}

/* File I/O of whole slots, called without the lock by the slot's holder.
 * write: count consecutive file slots from first, data from the RAM slots. */
int diffstore_write_run(struct diffstore *ds, uint32_t first_file_slot,
			const uint32_t *ram_slots, unsigned count);
int diffstore_read(struct diffstore *ds, uint32_t file_slot, void *buf, size_t len,
		   size_t offset_in_slot);
/* Hints that a slot will be read soon (see dev.h prefetch). */
void diffstore_prefetch(struct diffstore *ds, uint32_t file_slot);

/* Gives the buffer's pages back to the kernel (when nothing is held). */
void diffstore_ram_release_pages(struct diffstore *ds);

static inline uint32_t diffstore_ram_used(const struct diffstore *ds)
{
	return ds->ram_slots - ds->ram_free_count;
}

#endif
