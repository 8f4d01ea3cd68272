/* usedmap.h - which chunks of a volume hold data a file system uses.
 *
 * A snapshot protects and backs up only those: blocks free at the snapshot
 * instant cost no copy when written afterwards, and read as zeros in the
 * backup.  Two sources:
 *   - a mounted file system, frozen: FS_IOC_GETFSMAP on its mount point
 *     (ext4, XFS); only what it reports as free space is free (it may leave
 *     allocated extents out of its records: a gap is never free);
 *   - an unmounted, cleanly unmounted ext2/3/4: its block bitmaps, read
 *     through the snapshot with libext2fs.
 * Anything else gets no map, and the snapshot protects every block. */
#ifndef HS_USEDMAP_H
#define HS_USEDMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/bitmap.h"

/* From the file system mounted at mountpoint on block device rdev.
 * used gets nchunks bits.  -ENOTSUP when the file system has no GETFSMAP. */
int usedmap_from_fsmap(const char *mountpoint, dev_t rdev, uint64_t size, unsigned chunk_shift,
		       struct bitmap *used);

typedef int (*usedmap_read_fn)(void *ctx, void *buf, size_t len, uint64_t off);

/* From the block bitmaps of an ext2/3/4 image read through fn.  -ENOTSUP
 * when it is not ext2/3/4 or was not cleanly unmounted (then its bitmaps
 * cannot be trusted), with *why saying which. */
int usedmap_from_ext(usedmap_read_fn fn, void *ctx, uint64_t size, unsigned chunk_shift,
		     struct bitmap *used, const char **why);

#endif
