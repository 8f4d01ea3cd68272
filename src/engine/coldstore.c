/* coldstore.c - see coldstore.h.
 *
 * Entries are 16 bytes, so a run of COLD_RUN_MAX neighbours is one 4 KiB
 * read or write.  The by-slot table starts on a 1 MiB boundary past the
 * by-chunk table; the file is sparse, so slots never used cost nothing. */
#include "coldstore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cowmap.h"

struct chunk_entry {
	uint64_t mask;
	uint32_t slot;
	uint32_t spare;
};

struct slot_entry {
	uint64_t chunk;
	uint64_t mask;
};

_Static_assert(sizeof(struct chunk_entry) == 16 && sizeof(struct slot_entry) == 16,
	       "cold entry size");

#define TABLE_ALIGN (UINT64_C(1) << 20)

int coldstore_init(struct coldstore *cs, struct dev *dev, uint64_t nchunks, uint64_t nslots)
{
	memset(cs, 0, sizeof(*cs));
	if (!dev)
		return 0;
	cs->nchunks = nchunks;
	cs->slot_base = (nchunks * sizeof(struct chunk_entry) + TABLE_ALIGN - 1) & ~(TABLE_ALIGN - 1);
	if (bitmap_init(&cs->chunks, nchunks, false) < 0 ||
	    bitmap_init(&cs->slots, nslots, false) < 0) {
		bitmap_destroy(&cs->chunks);
		dev_destroy(dev);
		return -ENOMEM;
	}
	cs->dev = dev;
	return 0;
}

void coldstore_destroy(struct coldstore *cs)
{
	if (!cs->dev)
		return;
	bitmap_destroy(&cs->chunks);
	bitmap_destroy(&cs->slots);
	dev_destroy(cs->dev);
	dev_destroy(cs->next_dev);
	memset(cs, 0, sizeof(*cs));
}

void coldstore_set_file_locked(struct coldstore *cs, struct dev *dev)
{
	if (!cs->dev || !dev) {
		dev_destroy(dev); /* disabled: records stay in memory */
		return;
	}
	dev_destroy(cs->next_dev);
	cs->next_dev = dev;
}

bool coldstore_adopt_locked(struct coldstore *cs)
{
	if (!cs->next_dev || cs->count)
		return false;
	dev_destroy(cs->dev);
	cs->dev = cs->next_dev;
	cs->next_dev = NULL;
	cs->high = 0;
	return true;
}

static uint64_t chunk_off(const struct coldstore *cs, uint64_t chunk)
{
	return chunk * sizeof(struct chunk_entry);
}

static uint64_t slot_off(const struct coldstore *cs, uint64_t slot)
{
	return cs->slot_base + slot * sizeof(struct slot_entry);
}

static void reach(struct coldstore *cs, const struct cold_record *rec)
{
	uint64_t end = chunk_off(cs, rec->chunk) + sizeof(struct chunk_entry);
	if (rec->slot != COW_NONE)
		end = slot_off(cs, rec->slot) + sizeof(struct slot_entry);
	if (end > cs->high)
		cs->high = end;
}

static bool slot_at_rest(const struct coldstore *cs, uint32_t slot)
{
	return slot < cs->slots.nbits && bitmap_test(&cs->slots, slot);
}

int coldstore_read_chunks_locked(const struct coldstore *cs, uint64_t first, unsigned n,
				 struct cold_record *out)
{
	struct chunk_entry e[COLD_RUN_MAX];

	if (n > COLD_RUN_MAX || first + n > cs->nchunks)
		return -EINVAL;
	int r = dev_pread(cs->dev, e, n * sizeof(*e), chunk_off(cs, first));
	if (r)
		return r;
	for (unsigned i = 0; i < n; i++) {
		out[i].chunk = first + i;
		out[i].mask = e[i].mask;
		out[i].slot = e[i].slot;
	}
	return 0;
}

bool coldstore_record_sane(const struct coldstore *cs, const struct cold_record *rec)
{
	/* a record at rest always has readers, and its slot is at rest too */
	return rec->mask && (rec->slot == COW_NONE || slot_at_rest(cs, rec->slot));
}

int coldstore_read_slots_locked(const struct coldstore *cs, uint64_t first, unsigned n,
				struct cold_record *out)
{
	struct slot_entry e[COLD_RUN_MAX];

	if (n > COLD_RUN_MAX)
		return -EINVAL;
	int r = dev_pread(cs->dev, e, n * sizeof(*e), slot_off(cs, first));
	if (r)
		return r;
	for (unsigned i = 0; i < n; i++) {
		out[i].chunk = e[i].chunk;
		out[i].mask = e[i].mask;
		out[i].slot = (uint32_t)(first + i);
		if (slot_at_rest(cs, (uint32_t)(first + i)) &&
		    (!e[i].mask || e[i].chunk >= cs->nchunks || !bitmap_test(&cs->chunks, e[i].chunk)))
			return -EIO;
	}
	return 0;
}

void coldstore_prefetch_locked(const struct coldstore *cs, const uint64_t *chunks, size_t n)
{
	uint64_t last = UINT64_MAX;

	if (!cs->count || !cs->dev->ops->prefetch)
		return;
	for (size_t i = 0; i < n; i++) {
		if (chunks[i] >= cs->nchunks || !bitmap_test(&cs->chunks, chunks[i]))
			continue;
		uint64_t page = chunk_off(cs, chunks[i]) & ~UINT64_C(4095);
		if (page != last)
			cs->dev->ops->prefetch(cs->dev, page, 4096);
		last = page;
	}
}

static int cmp_slot(const void *a, const void *b)
{
	uint32_t x = ((const struct cold_record *)a)->slot;
	uint32_t y = ((const struct cold_record *)b)->slot;
	return x < y ? -1 : x > y;
}

int coldstore_write(struct coldstore *cs, const struct cold_record *recs, unsigned n)
{
	struct chunk_entry ce[COLD_RUN_MAX];
	struct slot_entry se[COLD_RUN_MAX];
	struct cold_record *by_slot;
	unsigned nslot = 0;
	int r = 0;

	/* by chunk: runs of neighbouring chunks */
	for (unsigned i = 0; i < n && r == 0;) {
		unsigned j = i;
		do {
			ce[j - i] = (struct chunk_entry){ .mask = recs[j].mask, .slot = recs[j].slot };
			j++;
		} while (j < n && j - i < COLD_RUN_MAX && recs[j].chunk == recs[j - 1].chunk + 1);
		r = dev_pwrite(cs->dev, ce, (j - i) * sizeof(*ce), chunk_off(cs, recs[i].chunk), 0);
		i = j;
	}
	if (r)
		return r;
	/* by slot: zero records have none */
	by_slot = malloc(sizeof(*by_slot) * (n ? n : 1));
	if (!by_slot)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		if (recs[i].slot != COW_NONE)
			by_slot[nslot++] = recs[i];
	qsort(by_slot, nslot, sizeof(*by_slot), cmp_slot);
	for (unsigned i = 0; i < nslot && r == 0;) {
		unsigned j = i;
		do {
			se[j - i] = (struct slot_entry){ .chunk = by_slot[j].chunk,
							 .mask = by_slot[j].mask };
			j++;
		} while (j < nslot && j - i < COLD_RUN_MAX &&
			 by_slot[j].slot == by_slot[j - 1].slot + 1);
		r = dev_pwrite(cs->dev, se, (j - i) * sizeof(*se), slot_off(cs, by_slot[i].slot), 0);
		i = j;
	}
	free(by_slot);
	return r;
}

int coldstore_commit_locked(struct coldstore *cs, const struct cold_record *rec)
{
	if (rec->slot != COW_NONE) {
		if (bitmap_grow(&cs->slots, (uint64_t)rec->slot + 1) < 0 ||
		    bitmap_set_range(&cs->slots, rec->slot, 1) < 0)
			return -ENOMEM;
	}
	if (bitmap_set_range(&cs->chunks, rec->chunk, 1) < 0) {
		if (rec->slot != COW_NONE)
			(void)bitmap_clear_range(&cs->slots, rec->slot, 1);
		return -ENOMEM;
	}
	cs->count++;
	reach(cs, rec);
	return 0;
}

int coldstore_set_mask_locked(struct coldstore *cs, const struct cold_record *rec)
{
	struct chunk_entry ce = { .mask = rec->mask, .slot = rec->slot };
	struct slot_entry se = { .chunk = rec->chunk, .mask = rec->mask };
	int r = dev_pwrite(cs->dev, &ce, sizeof(ce), chunk_off(cs, rec->chunk), 0);

	if (r == 0 && rec->slot != COW_NONE)
		r = dev_pwrite(cs->dev, &se, sizeof(se), slot_off(cs, rec->slot), 0);
	reach(cs, rec);
	return r;
}

int coldstore_forget_locked(struct coldstore *cs, const struct cold_record *rec)
{
	/* Clearing a bit fails only where it splits a leaf of all ones */
	if (bitmap_clear_range(&cs->chunks, rec->chunk, 1) < 0 ||
	    (rec->slot != COW_NONE && bitmap_clear_range(&cs->slots, rec->slot, 1) < 0))
		return -ENOMEM;
	cs->count--;
	return 0;
}

void coldstore_forget_all_locked(struct coldstore *cs, void (*fn)(void *arg, uint32_t slot),
				 void *arg)
{
	if (!cs->dev)
		return;
	for (uint64_t s = bitmap_next_set(&cs->slots, 0, cs->slots.nbits); s < cs->slots.nbits;
	     s = bitmap_next_set(&cs->slots, s + 1, cs->slots.nbits))
		fn(arg, (uint32_t)s);
	bitmap_fill(&cs->chunks, false);
	bitmap_fill(&cs->slots, false);
	cs->count = 0;
}

void coldstore_release_space_locked(struct coldstore *cs)
{
	if (!cs->dev || cs->count || !cs->high || !cs->dev->ops->discard)
		return;
	(void)cs->dev->ops->discard(cs->dev, 0, cs->high); /* only space: nothing to lose */
	cs->high = 0;
}

size_t coldstore_memory(const struct coldstore *cs)
{
	return cs->dev ? bitmap_memory(&cs->chunks) + bitmap_memory(&cs->slots) : 0;
}
