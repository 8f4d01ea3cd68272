/* backup_copies.h - a backup's first pass: the snapshot's saved originals,
 * read in diff-file order.
 *
 * Copies enter the diff file in the order writers made them, which is
 * random with respect to block order: a backup reading in block order would
 * fetch them with one small random read each (the whole cost of a backup
 * after a random-write workload).  This pass reads them in slot order, which
 * the device sees as a sequential stream, writes each to its place in the
 * image, and marks it taken; the block pass then skips taken chunks.  It
 * needs an image that takes pieces of a chunk, out of order. */
#ifndef HS_BACKUP_COPIES_H
#define HS_BACKUP_COPIES_H

#include <stddef.h>

#include "backup/backup.h"
#include "common/bitmap.h"

/* step is called before each batch of n bytes (pacing); it returns nonzero
 * to stop the pass (cancel).  0, or -errno with job->error set (or empty
 * when the snapshot's state explains a failed read).  taken must have one
 * bit per chunk of the volume. */
int backup_copies_first(struct backup_job *job, struct bitmap *taken,
			int (*step)(void *arg, size_t n), void *arg);

#endif
