/* bitmap.c - see bitmap.h.
 *
 * Leaf states: NULL (all zeros), BITMAP_FULL (all ones), or a 4 KiB array of
 * words.  ones[i] counts the set bits of leaf i, so an update can tell when a
 * leaf turns uniform and give its memory back.  The last leaf may be short:
 * its "full" count is the number of bits it really has, and bits past nbits
 * in an allocated leaf are always zero. */
#include "bitmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WORD_BITS 64
#define LEAF_WORDS (BITMAP_LEAF_BITS / WORD_BITS)
#define LEAF_BYTES (LEAF_WORDS * sizeof(uint64_t))

static uint64_t full_leaf_tag; /* its address marks an all-ones leaf */
#define BITMAP_FULL (&full_leaf_tag)

static inline bool leaf_is_mem(const uint64_t *leaf)
{
	return leaf && leaf != BITMAP_FULL;
}

static uint64_t leaf_nbits(const struct bitmap *bm, size_t leaf)
{
	uint64_t start = (uint64_t)leaf << BITMAP_LEAF_SHIFT;
	uint64_t left = bm->nbits - start;
	return left < BITMAP_LEAF_BITS ? left : BITMAP_LEAF_BITS;
}

int bitmap_init(struct bitmap *bm, uint64_t nbits, bool fill_ones)
{
	memset(bm, 0, sizeof(*bm));
	bm->nbits = nbits;
	bm->nleaves = (size_t)((nbits + BITMAP_LEAF_BITS - 1) >> BITMAP_LEAF_SHIFT);
	if (bm->nleaves == 0)
		return 0;
	bm->leaves = calloc(bm->nleaves, sizeof(*bm->leaves));
	bm->ones = calloc(bm->nleaves, sizeof(*bm->ones));
	if (!bm->leaves || !bm->ones) {
		free(bm->leaves);
		free(bm->ones);
		memset(bm, 0, sizeof(*bm));
		return -ENOMEM;
	}
	bitmap_fill(bm, fill_ones);
	return 0;
}

void bitmap_fill(struct bitmap *bm, bool ones)
{
	for (size_t i = 0; i < bm->nleaves; i++) {
		if (leaf_is_mem(bm->leaves[i]))
			free(bm->leaves[i]);
		bm->leaves[i] = ones ? BITMAP_FULL : NULL;
		bm->ones[i] = ones ? (uint32_t)leaf_nbits(bm, i) : 0;
	}
	bm->mixed = 0;
}

void bitmap_destroy(struct bitmap *bm)
{
	if (bm->leaves)
		bitmap_fill(bm, false);
	free(bm->leaves);
	free(bm->ones);
	memset(bm, 0, sizeof(*bm));
}

int bitmap_copy(struct bitmap *dst, const struct bitmap *src)
{
	int r = bitmap_init(dst, src->nbits, false);
	if (r < 0)
		return r;
	for (size_t i = 0; i < src->nleaves; i++) {
		uint64_t *leaf = src->leaves[i];
		if (leaf_is_mem(leaf)) {
			uint64_t *mem = malloc(LEAF_BYTES);
			if (!mem) {
				bitmap_destroy(dst);
				return -ENOMEM;
			}
			memcpy(mem, leaf, LEAF_BYTES);
			leaf = mem;
			dst->mixed++;
		}
		dst->leaves[i] = leaf;
		dst->ones[i] = src->ones[i];
	}
	return 0;
}

bool bitmap_test(const struct bitmap *bm, uint64_t bit)
{
	const uint64_t *leaf;
	uint64_t in;

	if (bit >= bm->nbits)
		return false;
	leaf = bm->leaves[bit >> BITMAP_LEAF_SHIFT];
	if (!leaf)
		return false;
	if (leaf == BITMAP_FULL)
		return true;
	in = bit & (BITMAP_LEAF_BITS - 1);
	return (leaf[in / WORD_BITS] >> (in % WORD_BITS)) & 1;
}

/* Turns a uniform leaf into memory so single bits can change. */
static int leaf_materialize(struct bitmap *bm, size_t i)
{
	uint64_t *mem;
	uint64_t n;

	if (leaf_is_mem(bm->leaves[i]))
		return 0;
	mem = malloc(LEAF_BYTES);
	if (!mem)
		return -ENOMEM;
	if (bm->leaves[i] == BITMAP_FULL) {
		n = leaf_nbits(bm, i);
		memset(mem, 0, LEAF_BYTES);
		memset(mem, 0xff, (size_t)(n / WORD_BITS) * sizeof(uint64_t));
		if (n % WORD_BITS)
			mem[n / WORD_BITS] = (UINT64_C(1) << (n % WORD_BITS)) - 1;
	} else {
		memset(mem, 0, LEAF_BYTES);
	}
	bm->leaves[i] = mem;
	bm->mixed++;
	return 0;
}

/* Frees a leaf whose count says it is uniform. */
static void leaf_collapse(struct bitmap *bm, size_t i)
{
	uint64_t *leaf = bm->leaves[i];

	if (!leaf_is_mem(leaf))
		return;
	if (bm->ones[i] == 0) {
		free(leaf);
		bm->leaves[i] = NULL;
		bm->mixed--;
	} else if (bm->ones[i] == leaf_nbits(bm, i)) {
		free(leaf);
		bm->leaves[i] = BITMAP_FULL;
		bm->mixed--;
	}
}

/* Sets or clears [from, to) inside one allocated leaf; returns bits changed. */
static uint32_t leaf_update(uint64_t *leaf, uint64_t from, uint64_t to, bool set)
{
	uint32_t changed = 0;

	while (from < to) {
		uint64_t w = from / WORD_BITS;
		uint64_t lo = from % WORD_BITS;
		uint64_t hi = (to - w * WORD_BITS) < WORD_BITS ? (to - w * WORD_BITS) : WORD_BITS;
		uint64_t mask = (hi - lo == WORD_BITS) ? ~UINT64_C(0)
						      : ((UINT64_C(1) << (hi - lo)) - 1) << lo;
		uint64_t before = leaf[w];
		leaf[w] = set ? (before | mask) : (before & ~mask);
		changed += (uint32_t)__builtin_popcountll(before ^ leaf[w]);
		from = w * WORD_BITS + hi;
	}
	return changed;
}

static int update_range(struct bitmap *bm, uint64_t first, uint64_t count, bool set)
{
	uint64_t end;

	if (first >= bm->nbits || count == 0)
		return 0;
	end = (count > bm->nbits - first) ? bm->nbits : first + count;
	while (first < end) {
		size_t i = (size_t)(first >> BITMAP_LEAF_SHIFT);
		uint64_t base = (uint64_t)i << BITMAP_LEAF_SHIFT;
		uint64_t lend = base + leaf_nbits(bm, i);
		uint64_t stop = end < lend ? end : lend;
		uint64_t *leaf = bm->leaves[i];

		if ((set && leaf == BITMAP_FULL) || (!set && leaf == NULL)) {
			/* already the wanted value */
		} else if (first == base && stop == lend) {
			/* the whole leaf: make it uniform without memory */
			if (leaf_is_mem(leaf)) {
				free(leaf);
				bm->mixed--;
			}
			bm->leaves[i] = set ? BITMAP_FULL : NULL;
			bm->ones[i] = set ? (uint32_t)(lend - base) : 0;
		} else {
			uint32_t changed;
			int r = leaf_materialize(bm, i);
			if (r < 0)
				return r;
			changed = leaf_update(bm->leaves[i], first - base, stop - base, set);
			bm->ones[i] = set ? bm->ones[i] + changed : bm->ones[i] - changed;
			leaf_collapse(bm, i);
		}
		first = stop;
	}
	return 0;
}

int bitmap_set_range(struct bitmap *bm, uint64_t first, uint64_t count)
{
	return update_range(bm, first, count, true);
}

int bitmap_clear_range(struct bitmap *bm, uint64_t first, uint64_t count)
{
	return update_range(bm, first, count, false);
}

/* Finds the next bit equal to want in [from, limit). */
static uint64_t next_bit(const struct bitmap *bm, uint64_t from, uint64_t limit, bool want)
{
	if (limit > bm->nbits)
		limit = bm->nbits;
	while (from < limit) {
		size_t i = (size_t)(from >> BITMAP_LEAF_SHIFT);
		uint64_t base = (uint64_t)i << BITMAP_LEAF_SHIFT;
		uint64_t lend = base + leaf_nbits(bm, i);
		const uint64_t *leaf = bm->leaves[i];

		if (leaf == NULL || leaf == BITMAP_FULL) {
			if ((leaf == BITMAP_FULL) == want)
				return from;
			from = lend;
			continue;
		}
		for (uint64_t in = from - base; in < lend - base;) {
			uint64_t w = in / WORD_BITS;
			uint64_t word = want ? leaf[w] : ~leaf[w];
			word &= ~UINT64_C(0) << (in % WORD_BITS);
			if (word) {
				uint64_t found = base + w * WORD_BITS + (uint64_t)__builtin_ctzll(word);
				if (found >= lend)
					break;
				return found < limit ? found : limit;
			}
			in = (w + 1) * WORD_BITS;
		}
		from = lend;
	}
	return limit;
}

uint64_t bitmap_next_set(const struct bitmap *bm, uint64_t from, uint64_t limit)
{
	return next_bit(bm, from, limit, true);
}

uint64_t bitmap_next_clear(const struct bitmap *bm, uint64_t from, uint64_t limit)
{
	return next_bit(bm, from, limit, false);
}

uint64_t bitmap_count_range(const struct bitmap *bm, uint64_t first, uint64_t count)
{
	uint64_t end, total = 0;

	if (first >= bm->nbits)
		return 0;
	end = (count > bm->nbits - first) ? bm->nbits : first + count;
	while (first < end) {
		size_t i = (size_t)(first >> BITMAP_LEAF_SHIFT);
		uint64_t base = (uint64_t)i << BITMAP_LEAF_SHIFT;
		uint64_t lend = base + leaf_nbits(bm, i);
		uint64_t stop = end < lend ? end : lend;
		const uint64_t *leaf = bm->leaves[i];

		if (leaf == BITMAP_FULL) {
			total += stop - first;
		} else if (leaf && first == base && stop == lend) {
			total += bm->ones[i];
		} else if (leaf) {
			for (uint64_t b = first - base; b < stop - base;) {
				uint64_t w = b / WORD_BITS;
				uint64_t lo = b % WORD_BITS;
				uint64_t hi = (stop - base - w * WORD_BITS) < WORD_BITS
						      ? (stop - base - w * WORD_BITS)
						      : WORD_BITS;
				uint64_t mask = (hi - lo == WORD_BITS)
							? ~UINT64_C(0)
							: ((UINT64_C(1) << (hi - lo)) - 1) << lo;
				total += (uint64_t)__builtin_popcountll(leaf[w] & mask);
				b = w * WORD_BITS + hi;
			}
		}
		first = stop;
	}
	return total;
}

uint64_t bitmap_count(const struct bitmap *bm)
{
	uint64_t total = 0;
	for (size_t i = 0; i < bm->nleaves; i++)
		total += bm->ones[i];
	return total;
}

int bitmap_grow(struct bitmap *bm, uint64_t nbits)
{
	struct bitmap bigger;

	if (nbits <= bm->nbits)
		return 0;
	if (bitmap_init(&bigger, nbits, false) < 0)
		return -ENOMEM;
	/* run by run: uniform leaves cost one call each */
	for (uint64_t a = bitmap_next_set(bm, 0, bm->nbits); a < bm->nbits;) {
		uint64_t b = bitmap_next_clear(bm, a, bm->nbits);
		if (bitmap_set_range(&bigger, a, b - a) < 0) {
			bitmap_destroy(&bigger);
			return -ENOMEM;
		}
		a = bitmap_next_set(bm, b, bm->nbits);
	}
	bitmap_destroy(bm);
	*bm = bigger;
	return 0;
}

size_t bitmap_memory(const struct bitmap *bm)
{
	return bm->nleaves * (sizeof(*bm->leaves) + sizeof(*bm->ones)) + bm->mixed * LEAF_BYTES;
}
