/* backup_drain.h - a consuming backup's drain thread.
 *
 * While a consuming backup runs, writers keep making copies of chunks ahead
 * of its read position.  This thread takes each one as soon as it exists,
 * writes it into the image at its place and releases it, so copies never
 * pile up ahead of the reader, and writers that wait for RAM room wait for
 * this thread, which never waits on them (it reads held copies without a
 * range lock).
 *
 * The drain and the block pass never both write a chunk: the block pass
 * announces how far it will read (backup_drain_advance) under the same
 * lock the drain holds while it checks, writes and releases a chunk; the
 * drain leaves alone everything below that point, and the block pass finds
 * what the drain took already released (it reads around it).
 *
 * What the drain leaves to the block pass stays in RAM until that pass
 * reads it; with a buffer smaller than the pass's window, a writer waiting
 * for room may hold the very range the pass waits on.  So when the drain
 * finds only such copies it says so (snapshot_drain_yield), and the
 * flusher spills a batch of them for the writer. */
#ifndef HS_BACKUP_DRAIN_H
#define HS_BACKUP_DRAIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "backup/backup.h"

struct backup_drain {
	struct backup_job *job;
	pthread_t thread;
	pthread_mutex_t claim_mu; /* orders a chunk's take against the block pass */
	uint64_t read_from;       /* [claim_mu] the block pass owns what is below */
	atomic_bool stop;
	bool started;
	int err;
	uint64_t err_off;
};

/* Starts draining (snapshot_set_drain) and the thread.  0 or -errno. */
int backup_drain_start(struct backup_drain *dr, struct backup_job *job);
/* The block pass is about to read up to end. */
void backup_drain_advance(struct backup_drain *dr, uint64_t end);
/* Stops the thread and draining; 0, or the error the drain met (job->error
 * set). */
int backup_drain_stop(struct backup_drain *dr);

#endif
