/* bitmap.h - a sparse two-level bitmap for per-chunk state.
 *
 * A volume of 100 GiB in 4 KiB chunks has 26 million chunks; a flat bitmap
 * costs 3.2 MiB for each snapshot and each map.  Most maps are uniform over
 * long stretches (all protected after a snapshot, all consumed behind a
 * backup, nothing changed far from the writers), so the bitmap is cut into
 * leaves of BITMAP_LEAF_BITS bits and a leaf that is all zeros or all ones is
 * stored as a tag instead of memory.  A leaf that becomes uniform again is
 * freed.  So memory follows the number of mixed leaves, not the volume size.
 *
 * Not thread safe: the owner's lock guards it. */
#ifndef HS_BITMAP_H
#define HS_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BITMAP_LEAF_SHIFT 15 /* 32768 bits = 4 KiB per leaf */
#define BITMAP_LEAF_BITS (UINT64_C(1) << BITMAP_LEAF_SHIFT)

struct bitmap {
	uint64_t nbits;
	size_t nleaves;
	uint64_t **leaves;  /* NULL: all zeros; BITMAP_FULL: all ones; else 4 KiB */
	uint32_t *ones;     /* set bits per leaf, to notice a leaf become uniform */
	size_t mixed;       /* leaves holding memory */
};

/* 0 or -ENOMEM. fill_ones chooses the initial value of every bit. */
int bitmap_init(struct bitmap *bm, uint64_t nbits, bool fill_ones);
void bitmap_destroy(struct bitmap *bm);
/* Grows bm to nbits (new bits clear); a smaller nbits changes nothing.
 * 0 or -ENOMEM, and then bm is as it was. */
int bitmap_grow(struct bitmap *bm, uint64_t nbits);
/* dst becomes a copy of src (dst uninitialised on entry). 0 or -ENOMEM. */
int bitmap_copy(struct bitmap *dst, const struct bitmap *src);

bool bitmap_test(const struct bitmap *bm, uint64_t bit);

/* Set or clear [first, first + count).  0 or -ENOMEM; on -ENOMEM the bits
 * already done stay done and the rest is unchanged. */
int bitmap_set_range(struct bitmap *bm, uint64_t first, uint64_t count);
int bitmap_clear_range(struct bitmap *bm, uint64_t first, uint64_t count);
/* All bits to one value, freeing every leaf. */
void bitmap_fill(struct bitmap *bm, bool ones);

/* First set (or clear) bit in [from, limit); limit when there is none. */
uint64_t bitmap_next_set(const struct bitmap *bm, uint64_t from, uint64_t limit);
uint64_t bitmap_next_clear(const struct bitmap *bm, uint64_t from, uint64_t limit);

/* Number of set bits in [first, first + count). */
uint64_t bitmap_count_range(const struct bitmap *bm, uint64_t first, uint64_t count);
uint64_t bitmap_count(const struct bitmap *bm);

/* Bytes of heap the bitmap holds now. */
size_t bitmap_memory(const struct bitmap *bm);

#endif
