/* revert.c - see revert.h. */
#include "revert/revert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "image/image.h"

struct walk {
	struct revert_job *job;
	struct volume *vol;
	uint8_t *buf;
	uint64_t last_tick_ns;
	void (*tick)(void *arg, struct revert_job *job);
	void *arg;
	int err;
};

static int count_cb(void *arg, uint64_t off, uint64_t len, enum extent_type type)
{
	struct revert_job *job = arg;
	if (type == EXTENT_DATA)
		job->changed += len;
	return 0;
}

static int write_back(struct walk *w, uint64_t off, uint64_t len)
{
	struct revert_job *job = w->job;
	int r = snapshot_read(job->snap, w->buf, len, off);

	if (r == -ENODATA) {
		snprintf(job->error, sizeof(job->error),
			 "the snapshot's view at offset %llu was consumed by a backup: it cannot be "
			 "reverted to", (unsigned long long)off);
		return r;
	}
	if (r < 0) {
		snprintf(job->error, sizeof(job->error), "reading the snapshot at offset %llu: %s",
			 (unsigned long long)off, strerror(-r));
		return r;
	}
	if (image_all_zero(w->buf, len)) {
		r = volume_write_zeroes(w->vol, off, len, VOLUME_MAY_UNMAP);
		atomic_fetch_add(&job->bytes_zeroed, len);
	} else {
		r = volume_write(w->vol, w->buf, len, off, 0);
		atomic_fetch_add(&job->bytes_written, len);
	}
	if (r < 0)
		snprintf(job->error, sizeof(job->error), "writing the volume at offset %llu: %s",
			 (unsigned long long)off, strerror(-r));
	return r;
}

static int revert_cb(void *arg, uint64_t off, uint64_t len, enum extent_type type)
{
	struct walk *w = arg;
	struct revert_job *job = w->job;

	if (type != EXTENT_DATA)
		return 0;
	while (len > 0) {
		uint64_t n = len < REVERT_PIECE ? len : REVERT_PIECE;
		if (atomic_load(&job->cancel)) {
			snprintf(job->error, sizeof(job->error), "cancelled");
			return w->err = -ECANCELED;
		}
		int r = write_back(w, off, n);
		if (r < 0)
			return w->err = r;
		off += n;
		len -= n;
		atomic_fetch_add(&job->position, n);
		uint64_t now = clock_mono_ns();
		if (w->tick && now - w->last_tick_ns >= 200000000u) {
			w->last_tick_ns = now;
			w->tick(w->arg, job);
		}
	}
	return 0;
}

int revert_job_run(struct revert_job *job, void (*tick)(void *arg, struct revert_job *job),
		   void *arg)
{
	struct snapshot_stats st;
	struct walk w = { .job = job, .vol = snapshot_volume(job->snap), .tick = tick, .arg = arg };
	int r;

	job->started_ns = clock_mono_ns();
	job->size = volume_size(w.vol);
	snapshot_get_stats(job->snap, &st);
	if (st.state != SNAPSHOT_ACTIVE) {
		snprintf(job->error, sizeof(job->error), "the snapshot %s: %s",
			 st.state == SNAPSHOT_FAILED ? "failed" : "is deleted",
			 st.state == SNAPSHOT_FAILED ? st.reason : "nothing to revert to");
		return -EIO;
	}
	if (st.consumed_chunks) {
		snprintf(job->error, sizeof(job->error),
			 "a backup consumed part of the snapshot (%llu chunks): its view is gone "
			 "there, so the volume cannot be reverted to it",
			 (unsigned long long)st.consumed_chunks);
		return -ENODATA;
	}
	r = snapshot_changed(job->snap, 0, job->size, count_cb, job);
	if (r < 0) {
		snprintf(job->error, sizeof(job->error), "what changed since the snapshot: %s",
			 strerror(-r));
		return r;
	}
	w.buf = malloc(REVERT_PIECE);
	if (!w.buf) {
		snprintf(job->error, sizeof(job->error), "out of memory");
		return -ENOMEM;
	}
	r = snapshot_changed(job->snap, 0, job->size, revert_cb, &w);
	free(w.buf);
	if (r == 0 && w.err == 0) {
		r = volume_flush(w.vol);
		if (r < 0)
			snprintf(job->error, sizeof(job->error), "flushing the volume: %s",
				 strerror(-r));
	} else if (w.err) {
		r = w.err;
	}
	if (tick)
		tick(arg, job);
	return r;
}

double revert_job_seconds(const struct revert_job *job)
{
	return job->started_ns ? (double)(clock_mono_ns() - job->started_ns) / 1e9 : 0;
}
