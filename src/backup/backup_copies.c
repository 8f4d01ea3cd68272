/* backup_copies.c - see backup_copies.h. */
#include "backup/backup_copies.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "engine/snapshot_backup.h"

/* slots looked at per call: 64 Ki slots cost 768 KiB of chunk and slot
 * numbers */
#define SLOT_BATCH 65536u
/* copies read at once (neighbouring slots in one read) */
#define READ_BYTES (UINT64_C(1) << 20)

/* Writes one chunk's copy into the image and marks it taken. */
static int put_chunk(struct backup_job *job, struct bitmap *taken, uint64_t c, const uint8_t *p,
		     uint64_t chunk)
{
	uint64_t off = c * chunk;
	size_t len = (size_t)HS_MIN_U64(chunk, job->size - off);
	int r = image_writer_data(job->out, p, len, off);

	if (r < 0) {
		snprintf(job->error, sizeof(job->error), "%s", job->out->error);
		return r;
	}
	atomic_fetch_add(&job->bytes_read, len);
	r = bitmap_set_range(taken, c, 1);
	if (r < 0)
		snprintf(job->error, sizeof(job->error), "out of memory for the backup");
	return r;
}

int backup_copies_first(struct backup_job *job, struct bitmap *taken,
			int (*step)(void *arg, size_t n), void *arg)
{
	struct volume *v = snapshot_volume(job->snap);
	uint64_t chunk = UINT64_C(1) << volume_chunk_shift(v);
	size_t per_read = (size_t)HS_MAX(UINT64_C(1), READ_BYTES / chunk);
	uint64_t cursor = 0;
	uint64_t *chunks = malloc(SLOT_BATCH * sizeof(*chunks));
	uint32_t *slots = malloc(SLOT_BATCH * sizeof(*slots));
	bool got[READ_BYTES / 4096];
	void *buf = NULL;
	int r = 0;

	if (!chunks || !slots || posix_memalign(&buf, 4096, per_read * chunk)) {
		snprintf(job->error, sizeof(job->error), "out of memory for the backup");
		free(chunks);
		free(slots);
		return -ENOMEM;
	}
	while (cursor != UINT64_MAX && r == 0) {
		size_t n = snapshot_held_by_slot(job->snap, chunks, slots, SLOT_BATCH, &cursor);
		/* an incremental wants only its own chunks */
		if (job->only) {
			size_t k = 0;
			for (size_t i = 0; i < n; i++) {
				if (!bitmap_test(job->only, chunks[i]))
					continue;
				slots[k] = slots[i];
				chunks[k++] = chunks[i];
			}
			n = k;
		}
		for (size_t i = 0; i < n && r == 0; i += per_read) {
			size_t m = HS_MIN(per_read, n - i);
			if (step(arg, m * chunk)) {
				r = -ECANCELED;
				break;
			}
			r = snapshot_read_held_batch(job->snap, chunks + i, slots + i, m, buf, got);
			if (r < 0)
				break; /* the caller says why: the snapshot's state tells */
			for (size_t k = 0; k < m && r == 0; k++)
				if (got[k])
					r = put_chunk(job, taken, chunks[i + k],
						      (const uint8_t *)buf + k * chunk, chunk);
		}
	}
	free(buf);
	free(slots);
	free(chunks);
	return r;
}
