/* revert.h - a volume back to a snapshot's instant (Hyper-V's "apply",
 * LVM's merge).
 *
 * Only what changed since the snapshot is written: the engine knows those
 * chunks (snapshot_changed), the snapshot's view of them is read
 * (snapshot_read) and written into the volume through the engine's normal
 * write path.  So every other snapshot of the volume keeps its own view:
 * before a revert write touches a chunk one of them still needs, its
 * original is copied, as for any write (engine invariant 1); should the
 * diff store overflow meanwhile, those snapshots fail with that reason and
 * the revert goes on.  Change tracking sees every write, so the next
 * incremental backup carries the revert.  Runs of zeros are written as
 * write-zeroes that may deallocate.
 *
 * After it, every block in use at the instant reads as the snapshot reads.
 * Blocks free at the instant (a used-block map) read zeros in the
 * snapshot: those written since get zeros back, the others keep what they
 * hold (free space either way; a snapshot with --all-blocks has none).
 * The snapshot itself stays.  It refuses a snapshot that failed or that a
 * backup consumed in part (its view is gone there).
 *
 * Like the backup and the restore it knows no daemon: tests run it on
 * memory volumes. */
#ifndef HS_REVERT_H
#define HS_REVERT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"

#define REVERT_PIECE (1u << 20) /* bytes read and written at a time */

struct revert_job {
	/* set by the caller: a reference held by the caller */
	struct snapshot *snap;
	/* progress, readable from other threads */
	uint64_t size;                      /* the volume's */
	uint64_t changed;                   /* bytes to write back, known at the start */
	uint64_t started_ns;
	atomic_uint_fast64_t position;      /* of changed, written back */
	atomic_uint_fast64_t bytes_written; /* as data */
	atomic_uint_fast64_t bytes_zeroed;  /* as write-zeroes */
	atomic_bool cancel;
	char error[512];
};

/* Writes the snapshot's view of every changed chunk back into its volume,
 * then flushes.  0, or -errno with job->error (then the volume holds a mix:
 * run it again). */
int revert_job_run(struct revert_job *job, void (*tick)(void *arg, struct revert_job *job),
		   void *arg);

double revert_job_seconds(const struct revert_job *job);

#endif
