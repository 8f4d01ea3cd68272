/* backup_meta.h - what an image hotsnap wrote says about itself.
 *
 * A qcow2 image carries these lines in a header extension of its own
 * (QEMU keeps extensions it does not know), so a later incremental can
 * check that its parent is of the same volume, from the same tracking
 * epoch, at an instant a bookmark still marks:
 *
 *   hotsnap-image 1
 *   volume db
 *   volume-size 21474836480
 *   chunk-size 4096
 *   epoch 5f0c...            the volume's change tracking (tracker.h)
 *   generation 17            the snapshot's boundary
 *   bookmark snap3           the bookmark the backup left, VOLUME#snap3
 *   instant 1795997815       the snapshot's wall clock, seconds
 *   parent-generation 12     incrementals: the parent's boundary
 *
 * Text, so `qemu-img info` readers and people can see what it is; parsed
 * strictly, so a damaged or foreign extension is refused with a reason. */
#ifndef HS_BACKUP_META_H
#define HS_BACKUP_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/names.h"

struct backup_meta {
	char volume[HS_NAME_MAX + 1];
	uint64_t volume_size;
	uint64_t chunk_size;
	char epoch[33];       /* 32 hex digits; "" when the volume had no tracking */
	uint64_t generation;  /* 0 when the volume had no tracking */
	char bookmark[HS_NAME_MAX + 1];
	uint64_t instant_s;
	uint64_t parent_generation; /* 0 for a full image */
};

/* Writes the lines into buf; the length, or 0 when they do not fit. */
size_t backup_meta_encode(const struct backup_meta *m, char *buf, size_t len);
/* 0, or -EINVAL with why set (static text). */
int backup_meta_decode(const void *buf, size_t len, struct backup_meta *m, const char **why);

#endif
