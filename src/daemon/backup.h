/* backup.h - reading a snapshot into an image file.
 *
 * The job walks the snapshot in block order: extents first (free and hole
 * ranges are skipped and stay holes in the image), then data in large reads,
 * handed to a writer thread so reading and writing overlap.  All-zero blocks
 * are not written either.  When consuming, everything behind the read
 * position is released from the snapshot as it goes, so later writes there
 * need no copy; and a drain thread takes every copy made ahead of the
 * position at once (see snapshot_set_drain), so while the backup runs the
 * diff store holds at most the RAM buffer.
 *
 * It yields to applications: it steers its own rate with a closed loop on
 * the service time of the volume's foreground requests (slow down when the
 * backup makes them slower, speed up when it does not or the volume is
 * idle), runs at idle I/O priority, and never exceeds --rate. */
#ifndef HS_BACKUP_H
#define HS_BACKUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"

struct backup_job {
	char source[2 * 64 + 2];
	char output[4096];
	struct snapshot *snap; /* a reference held by whoever runs the job */
	int out_fd;
	bool consume;
	bool yield;
	uint64_t rate_limit; /* bytes/s; 0 = none */
	uint64_t size;
	uint64_t started_ns;
	/* progress, readable from other threads */
	atomic_uint_fast64_t position;
	atomic_uint_fast64_t bytes_read;
	atomic_uint_fast64_t bytes_written;
	atomic_uint_fast64_t bytes_skipped;
	atomic_uint_fast64_t bytes_drained; /* taken ahead of the position */
	atomic_uint_fast64_t diff_peak;   /* of the volume, during the job */
	atomic_uint_fast64_t yields;      /* pauses for foreground I/O */
	atomic_uint_fast64_t current_rate; /* the controller's target, bytes/s */
	atomic_bool cancel;
	char error[512];
	struct backup_job *next; /* in its volume's list of running backups */
};

/* Runs the job to the end.  tick is called about every 200 ms from the
 * job's thread (progress, and a chance to set cancel).  0, or -errno with
 * job->error saying what failed. */
int backup_job_run(struct backup_job *job, void (*tick)(void *arg, struct backup_job *job),
		   void *arg);

double backup_job_seconds(const struct backup_job *job);

#endif
