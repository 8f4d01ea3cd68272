/* diffstore.c - see diffstore.h. */
#include "diffstore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/compiler.h"
#include "engine/cowmap.h"

int diffstore_init(struct diffstore *ds, uint64_t chunk_size, uint64_t ram_bytes,
		   uint64_t limit_bytes, struct dev *file)
{
	int r;

	memset(ds, 0, sizeof(*ds));
	ds->chunk_size = chunk_size;
	ds->file = file;
	ds->ram_slots = (uint32_t)HS_MIN_U64(ram_bytes / chunk_size, UINT32_MAX - 1);
	if (ds->ram_slots < 2) {
		r = -EINVAL;
		goto err;
	}
	ds->file_slots = limit_bytes / chunk_size;
	if (ds->file_slots > UINT32_MAX - 1)
		ds->file_slots = UINT32_MAX - 1;
	/* The buffer is mapped, not allocated: pages come into RSS only once a
	 * copy has used them, so an idle volume costs no buffer memory. */
	ds->ram = mmap(NULL, (size_t)(ds->ram_slots * chunk_size), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ds->ram == MAP_FAILED) {
		ds->ram = NULL;
		r = -ENOMEM;
		goto err;
	}
	ds->ram_free = malloc(sizeof(uint32_t) * ds->ram_slots);
	ds->ram_owner = malloc(sizeof(uint32_t) * ds->ram_slots);
	if (!ds->ram_free || !ds->ram_owner) {
		r = -ENOMEM;
		goto err;
	}
	/* Free stack with slot 0 on top: the lowest slots are reused first,
	 * which keeps the touched part of the buffer small. */
	for (uint32_t i = 0; i < ds->ram_slots; i++) {
		ds->ram_free[i] = ds->ram_slots - 1 - i;
		ds->ram_owner[i] = COW_NONE;
	}
	ds->ram_free_count = ds->ram_slots;
	r = bitmap_init(&ds->file_used, ds->file_slots, false);
	if (r < 0)
		goto err;
	return 0;

err:
	diffstore_destroy(ds);
	return r;
}

void diffstore_destroy(struct diffstore *ds)
{
	if (ds->ram)
		munmap(ds->ram, (size_t)(ds->ram_slots * ds->chunk_size));
	free(ds->ram_free);
	free(ds->ram_owner);
	bitmap_destroy(&ds->file_used);
	dev_destroy(ds->file);
	dev_destroy(ds->next_file);
	memset(ds, 0, sizeof(*ds));
}

int diffstore_reserve_locked(struct diffstore *ds, uint32_t *file_slot)
{
	uint64_t s;

	if (ds->file_used_count >= ds->file_slots)
		return -ENOSPC;
	s = bitmap_next_clear(&ds->file_used, ds->file_cursor, ds->file_slots);
	if (s >= ds->file_slots)
		s = bitmap_next_clear(&ds->file_used, 0, ds->file_cursor);
	if (s >= ds->file_slots)
		return -ENOSPC;
	if (bitmap_set_range(&ds->file_used, s, 1) < 0)
		return -ENOMEM;
	ds->file_used_count++;
	if (ds->file_used_count > ds->peak_used)
		ds->peak_used = ds->file_used_count;
	ds->file_cursor = s + 1;
	*file_slot = (uint32_t)s;
	return 0;
}

void diffstore_unreserve_locked(struct diffstore *ds, uint32_t file_slot)
{
	/* Clearing a bit can need a leaf when a full leaf becomes mixed; if
	 * that allocation fails the slot stays marked and is lost, which only
	 * wastes space. */
	if (bitmap_clear_range(&ds->file_used, file_slot, 1) == 0)
		ds->file_used_count--;
	if (file_slot < ds->file_cursor && ds->file_used_count == 0)
		ds->file_cursor = 0;
	if (ds->file_used_count == 0 && ds->next_file)
		diffstore_set_file_locked(ds, NULL);
}

int diffstore_set_limit_locked(struct diffstore *ds, uint64_t limit_bytes)
{
	uint64_t slots = HS_MIN_U64(limit_bytes / ds->chunk_size, UINT32_MAX - 1);

	if (slots < ds->file_used_count)
		return -EBUSY;
	if (bitmap_grow(&ds->file_used, slots) < 0)
		return -ENOMEM;
	ds->file_slots = slots;
	if (ds->file_cursor >= slots)
		ds->file_cursor = 0;
	return 0;
}

void diffstore_set_file_locked(struct diffstore *ds, struct dev *file)
{
	if (file) {
		dev_destroy(ds->next_file);
		ds->next_file = file;
	}
	if (ds->file_used_count == 0 && ds->next_file) {
		dev_destroy(ds->file);
		ds->file = ds->next_file;
		ds->next_file = NULL;
	}
}

uint32_t diffstore_ram_take_locked(struct diffstore *ds, uint32_t owner)
{
	uint32_t slot;

	if (ds->ram_free_count == 0)
		return COW_NONE;
	slot = ds->ram_free[--ds->ram_free_count];
	ds->ram_owner[slot] = owner;
	return slot;
}

void diffstore_ram_give_locked(struct diffstore *ds, uint32_t ram_slot)
{
	ds->ram_owner[ram_slot] = COW_NONE;
	ds->ram_free[ds->ram_free_count++] = ram_slot;
}

int diffstore_write_run(struct diffstore *ds, uint32_t first_file_slot,
			const uint32_t *ram_slots, unsigned count)
{
	struct iovec iov[64];
	unsigned done = 0;
	int r;

	while (done < count) {
		unsigned n = count - done < 64 ? count - done : 64;
		for (unsigned i = 0; i < n; i++) {
			iov[i].iov_base = diffstore_ram_ptr(ds, ram_slots[done + i]);
			iov[i].iov_len = ds->chunk_size;
		}
		r = ds->file->ops->pwritev(ds->file, iov, (int)n,
					   (uint64_t)(first_file_slot + done) * ds->chunk_size, 0);
		if (r < 0)
			return r;
		done += n;
	}
	return 0;
}

void diffstore_prefetch(struct diffstore *ds, uint32_t file_slot)
{
	if (ds->file->ops->prefetch)
		ds->file->ops->prefetch(ds->file, (uint64_t)file_slot * ds->chunk_size,
					ds->chunk_size);
}

int diffstore_read(struct diffstore *ds, uint32_t file_slot, void *buf, size_t len,
		   size_t offset_in_slot)
{
	return dev_pread(ds->file, buf, len,
			 (uint64_t)file_slot * ds->chunk_size + offset_in_slot);
}

void diffstore_ram_release_pages(struct diffstore *ds)
{
	if (ds->ram && ds->ram_free_count == ds->ram_slots)
		(void)madvise(ds->ram, (size_t)(ds->ram_slots * ds->chunk_size), MADV_DONTNEED);
}
