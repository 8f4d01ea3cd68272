/* cowmap.h - the copies held for snapshots: one record per chunk version.
 *
 * When a write hits chunk c, every live snapshot that still needs c sees the
 * same data there (none of them has seen c change since it was taken), so
 * one copy serves them all: a version record with a bit mask of those
 * snapshots.  Versions of one chunk form a short chain (usually one), found
 * through an open-addressing hash keyed by chunk.  Only copied chunks cost
 * memory: a record is 32 bytes, plus about 6 bytes of table.  An original
 * that reads all zeros (a never-written or trimmed chunk) is a zero record:
 * the 32 bytes and nothing else, neither a RAM slot nor diff-file space, so
 * a discard of free space (the weekly fstrim) costs a snapshot nothing.
 *
 * Records are addressed by a 32-bit id that stays valid while the record is
 * alive; pointers do not survive cowmap_alloc (the pool may move).
 * Not thread safe: the volume's mutex guards it. */
#ifndef HS_COWMAP_H
#define HS_COWMAP_H

#include <stddef.h>
#include <stdint.h>

#define COW_NONE UINT32_MAX

enum version_state {
	VERSION_FREE,     /* unused record */
	VERSION_COPYING,  /* its writer is reading the original into RAM */
	VERSION_RAM,      /* in the RAM buffer only, waiting to be flushed */
	VERSION_FLUSHING, /* being written to the diff file */
	VERSION_FILE,     /* in the diff file (and maybe still in RAM) */
	VERSION_ZERO,     /* the original read all zeros: no RAM, no file slot */
};

struct version {
	uint64_t chunk;
	uint64_t mask;      /* snapshots (by slot) that read this copy */
	uint32_t file_slot; /* reserved in the diff file for it */
	uint32_t ram_slot;  /* COW_NONE when not in RAM */
	uint32_t next;      /* next version of the chunk, or free-list link */
	uint16_t pins;      /* readers copying its data out right now */
	uint8_t state;      /* enum version_state */
	uint8_t dead : 1;   /* released while busy: freed by whoever finishes */
	uint8_t rest_clean : 1; /* brought back from rest, and its entries there
				 * are still its own: resting again writes nothing */
};
_Static_assert(sizeof(struct version) == 32, "version record size");

struct cowmap {
	struct version *pool;
	uint32_t cap;
	uint32_t live;
	uint32_t free_head;
	uint32_t *table; /* head version id per bucket, COW_NONE if empty */
	uint32_t tsize;  /* power of two */
	uint32_t tused;  /* buckets in use (= chunks with versions) */
};

int cowmap_init(struct cowmap *m);
void cowmap_destroy(struct cowmap *m);

static inline struct version *cowmap_get(struct cowmap *m, uint32_t id)
{
	return &m->pool[id];
}

/* A new record for chunk, zeroed but for chunk, with ram_slot and file_slot
 * COW_NONE.  COW_NONE when out of memory. */
uint32_t cowmap_alloc(struct cowmap *m, uint64_t chunk);
/* Removes the record from its chain and frees it. */
void cowmap_free(struct cowmap *m, uint32_t id);
/* The newest version of chunk (its chain goes on through next), or COW_NONE. */
uint32_t cowmap_head(const struct cowmap *m, uint64_t chunk);
/* The version of chunk that serves the snapshot bit, or COW_NONE. */
uint32_t cowmap_lookup(const struct cowmap *m, uint64_t chunk, uint64_t bit);

size_t cowmap_memory(const struct cowmap *m);
/* With no record alive, gives a pool grown by a burst back to the heap. */
void cowmap_shrink_if_empty(struct cowmap *m);

#endif
