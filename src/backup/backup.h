/* backup.h - reading a snapshot into an image.
 *
 * A backup is a front end like FUSE or NBD: it reads a snapshot through the
 * engine (engine.h and snapshot_backup.h) and hands what it reads to an
 * image writer (image/image.h); it knows no daemon, socket or command line,
 * so tests run it on memory volumes.
 *
 * What the job does, in the order it happens:
 *   1. copies first: the snapshot's saved originals, in diff-file order (a
 *      sequential read of the diff file), each written to its place in the
 *      image (backup_copies.h).  Only when the image takes pieces as small as
 *      a chunk and out of order, and the backup does not consume.
 *   2. when consuming, a drain thread that takes every copy made while the
 *      backup runs as soon as it exists and releases it, so the diff store
 *      holds at most the RAM buffer (backup_drain.h).
 *   3. the block pass: extents a window at a time, in block order; free and
 *      hole ranges become zeros of the image without being read; data is
 *      read in aligned blocks and handed to an output thread, so reading and
 *      writing overlap.  When consuming, everything behind the read position
 *      is released as it goes.
 * An incremental backup (`only` set) does the same over the chunks of
 * `only` alone, and tells the image that every other byte comes from its
 * backing file.
 *
 * It yields to applications (backup_pace.h), runs at idle I/O priority and
 * uses a few MiB whatever the volume size. */
#ifndef HS_BACKUP_H
#define HS_BACKUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "engine/engine.h"
#include "image/image.h"

struct backup_job {
	/* set by the caller */
	char source[2 * 64 + 2];     /* VOLUME@SNAPSHOT, for messages */
	char output[4096];           /* the image's path, for messages */
	struct snapshot *snap;       /* a reference held by the caller */
	struct image_writer *out;    /* the caller begins it; the job does not end it */
	const struct bitmap *only;   /* chunks to back up (an incremental), or NULL: all */
	bool consume;                /* release the snapshot behind the read position */
	bool yield;                  /* step aside for the volume's own I/O */
	uint64_t rate_limit;         /* bytes/s; 0 = none */
	/* progress, readable from other threads while it runs */
	uint64_t size;
	uint64_t started_ns;
	atomic_uint_fast64_t position;
	atomic_uint_fast64_t bytes_read;    /* from the snapshot */
	atomic_uint_fast64_t bytes_skipped; /* free or hole: known zero without reading */
	atomic_uint_fast64_t bytes_drained; /* taken ahead of the position */
	atomic_uint_fast64_t diff_peak;     /* of the volume, during the job */
	atomic_uint_fast64_t yields;        /* pauses for foreground I/O */
	atomic_uint_fast64_t current_rate;  /* the pacer's rate, bytes/s */
	uint64_t copies_bytes;              /* taken by the copies pass ... */
	double copies_seconds;              /* ... in this time */
	atomic_bool cancel;                 /* set by anyone: the job stops soon */
	char error[512];
	struct backup_job *next;     /* free for the caller (a list of running jobs) */
};

/* Runs the job to the end.  tick is called about every 200 ms from the
 * job's thread (progress, and a chance to set cancel).  0, or -errno with
 * job->error saying what failed.  The caller then finishes or aborts
 * job->out. */
int backup_job_run(struct backup_job *job, void (*tick)(void *arg, struct backup_job *job),
		   void *arg);

double backup_job_seconds(const struct backup_job *job);

/* Explains a failed read of the snapshot at off (its state says why) into
 * job->error. */
void backup_read_error(struct backup_job *job, int r, uint64_t off);

#endif
