/* restore.h - writing an image (a whole backing chain) back into a volume.
 *
 * The reverse of a backup: the image's view is read in blocks, several at
 * once (decompression is the cost), and written into the volume through
 * the engine, so live tracking sees every write and the next incremental
 * knows what the restore changed.  Zero ranges (holes, zero clusters,
 * blocks of zeros) are not written as data: a fresh volume reads zeros
 * already, an old one gets them as write-zeroes that deallocate.
 *
 * Then the check: a hash (XXH3) of every block as it was written, the volume
 * flushed, read back and checksummed again, so a restore says "the volume
 * reads as the image" only when it does.  verify_only compares the volume
 * with the image without writing anything.
 *
 * Like the backup, it knows no daemon or socket: tests run it on memory
 * volumes. */
#ifndef HS_RESTORE_H
#define HS_RESTORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "image/image.h"

struct restore_job {
	/* set by the caller */
	struct image_reader *src;
	struct volume *dst;
	bool fresh;        /* the volume reads zeros everywhere: zeros need no writing */
	bool verify_only;  /* compare, write nothing */
	bool no_verify;    /* skip the read-back check (benchmarks of the write alone) */
	unsigned threads;  /* 0: one per CPU, at least 2 */
	/* progress, readable from other threads */
	uint64_t size;
	uint64_t started_ns;
	const char *phase;                  /* "writing", "verifying" or "comparing" */
	atomic_uint_fast64_t position;      /* bytes done in this phase */
	atomic_uint_fast64_t bytes_written; /* data written to the volume */
	atomic_uint_fast64_t bytes_zeroed;  /* ranges made zero without data */
	atomic_uint_fast64_t bytes_checked; /* compared or verified */
	atomic_uint_fast64_t mismatched;    /* bytes that differ */
	atomic_uint_fast64_t first_mismatch; /* offset of the first, or UINT64_MAX */
	atomic_bool cancel;
	double write_seconds, verify_seconds; /* of the two phases */
	char error[512];
};

/* 0 when the volume reads as the image (written and verified, or compared
 * equal); -EILSEQ when it does not (mismatched, first_mismatch say where);
 * other -errno with job->error saying what failed. */
int restore_job_run(struct restore_job *job, void (*tick)(void *arg, struct restore_job *job),
		    void *arg);

double restore_job_seconds(const struct restore_job *job);

#endif
