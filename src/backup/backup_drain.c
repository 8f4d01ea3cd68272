/* backup_drain.c - see backup_drain.h. */
#include "backup/backup_drain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "engine/snapshot_backup.h"

#define DRAIN_BATCH 256
#define DRAIN_WAIT_NS (100 * 1000000ull)
#define DRAIN_IDLE_US 1000

/* Takes chunk c: writes it (when the backup wants it) and releases it.
 * Under claim_mu.  0; 1 when the block pass has it; or -errno. */
static int take_locked(struct backup_drain *dr, uint64_t c, void *buf, uint64_t chunk)
{
	struct backup_job *job = dr->job;
	uint64_t off = c * chunk;
	size_t len = (size_t)HS_MIN_U64(chunk, job->size - off);
	int r;

	if (off < dr->read_from)
		return 1; /* the block pass has it: it is released behind the position */
	if (job->only && !bitmap_test(job->only, c)) {
		/* unchanged since the parent: the image has it from its backing */
		(void)snapshot_consume(job->snap, off, len);
		return 0;
	}
	r = snapshot_read_held(job->snap, c, buf);
	if (r == -EAGAIN)
		return 0; /* consumed by the block pass meanwhile */
	if (r == 0) {
		r = image_writer_data(job->out, buf, len, off);
		if (r < 0)
			snprintf(job->error, sizeof(job->error), "%s", job->out->error);
	} else {
		backup_read_error(job, r, off);
	}
	if (r < 0)
		return r;
	atomic_fetch_add(&job->bytes_read, len);
	atomic_fetch_add(&job->bytes_drained, len);
	(void)snapshot_consume(job->snap, off, len);
	return 0;
}

static void *drain_main(void *arg)
{
	struct backup_drain *dr = arg;
	struct backup_job *job = dr->job;
	uint64_t chunk = UINT64_C(1) << volume_chunk_shift(snapshot_volume(job->snap));
	uint64_t chunks[DRAIN_BATCH];
	void *buf;

	if (posix_memalign(&buf, 4096, chunk)) {
		dr->err = -ENOMEM;
		snprintf(job->error, sizeof(job->error), "out of memory for the backup");
		atomic_store(&job->cancel, true);
		return NULL;
	}
	while (!atomic_load(&dr->stop) && !atomic_load(&job->cancel)) {
		size_t n = snapshot_held_chunks(job->snap, chunks, DRAIN_BATCH, DRAIN_WAIT_NS);
		size_t left = 0;
		for (size_t i = 0; i < n; i++) {
			pthread_mutex_lock(&dr->claim_mu);
			int r = take_locked(dr, chunks[i], buf, chunk);
			pthread_mutex_unlock(&dr->claim_mu);
			if (r > 0) {
				left++;
				continue;
			}
			if (r < 0) {
				dr->err = r;
				dr->err_off = chunks[i] * chunk;
				atomic_store(&job->cancel, true);
				break;
			}
		}
		/* every copy held is the block pass's to take: asking again at
		 * once would only find them again, so give it a moment, and let
		 * writers waiting for room have some spilled meanwhile */
		if (n && left == n) {
			snapshot_drain_yield(job->snap);
			usleep(DRAIN_IDLE_US);
		}
	}
	free(buf);
	return NULL;
}

int backup_drain_start(struct backup_drain *dr, struct backup_job *job)
{
	memset(dr, 0, sizeof(*dr));
	dr->job = job;
	pthread_mutex_init(&dr->claim_mu, NULL);
	snapshot_set_drain(job->snap, true);
	int r = pthread_create(&dr->thread, NULL, drain_main, dr);
	if (r) {
		snapshot_set_drain(job->snap, false);
		pthread_mutex_destroy(&dr->claim_mu);
		return -r;
	}
	dr->started = true;
	return 0;
}

void backup_drain_advance(struct backup_drain *dr, uint64_t end)
{
	if (!dr->started)
		return;
	pthread_mutex_lock(&dr->claim_mu);
	if (end > dr->read_from)
		dr->read_from = end;
	pthread_mutex_unlock(&dr->claim_mu);
}

int backup_drain_stop(struct backup_drain *dr)
{
	if (!dr->started)
		return 0;
	atomic_store(&dr->stop, true);
	pthread_join(dr->thread, NULL);
	snapshot_set_drain(dr->job->snap, false);
	pthread_mutex_destroy(&dr->claim_mu);
	dr->started = false;
	return dr->err;
}
