/* backup_copies.c - see backup_copies.h. */
#include "daemon/backup_copies.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "daemon/backup_io.h"
#include "engine/engine.h"

/* slots looked at per call: 64 Ki slots cost 512 KiB of chunk numbers */
#define SLOT_BATCH 65536u
/* copies read at once (neighbouring slots in one read) */
#define READ_BYTES (UINT64_C(1) << 20)

/* Writes one chunk's copy into the image (a hole when zero) and marks it. */
static int put_chunk(struct backup_job *job, struct bitmap *taken, uint64_t c, const uint8_t *p,
		     uint64_t chunk)
{
	uint64_t off = c * chunk;
	size_t len = (size_t)HS_MIN_U64(chunk, job->size - off);
	long put = backup_image_put(job, p, len, off);
	int r;

	if (put < 0) {
		snprintf(job->error, sizeof(job->error), "writing %s at offset %llu failed: %s",
			 job->output, (unsigned long long)off, strerror((int)-put));
		return (int)put;
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
	bool got[READ_BYTES / 4096];
	void *buf = NULL;
	int r = 0;

	if (!chunks || posix_memalign(&buf, 4096, per_read * chunk)) {
		snprintf(job->error, sizeof(job->error), "out of memory for the backup");
		free(chunks);
		return -ENOMEM;
	}
	while (cursor != UINT64_MAX && r == 0) {
		size_t n = snapshot_held_by_slot(job->snap, chunks, SLOT_BATCH, &cursor);
		for (size_t i = 0; i < n && r == 0; i += per_read) {
			size_t m = HS_MIN(per_read, n - i);
			if (step(arg, m * chunk)) {
				r = -ECANCELED;
				break;
			}
			r = snapshot_read_held_batch(job->snap, chunks + i, m, buf, got);
			if (r < 0)
				break; /* the caller says why: the snapshot's state tells */
			for (size_t k = 0; k < m && r == 0; k++)
				if (got[k])
					r = put_chunk(job, taken, chunks[i + k],
						      (const uint8_t *)buf + k * chunk, chunk);
		}
	}
	free(buf);
	free(chunks);
	return r;
}
