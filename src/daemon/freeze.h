/* freeze.h - finding the file systems mounted on a block device, and
 * freezing and thawing them around a snapshot. */
#ifndef HS_FREEZE_H
#define HS_FREEZE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct frozen_fs {
	char mountpoint[4096];
	char fstype[32];
	int fd;             /* open on the mount point, -1 when not frozen by us */
	bool frozen_by_us;
	bool was_frozen;    /* someone else had frozen it already */
};

/* Finds the file system mounted from block device dev (every mount of one
 * device is the same file system; a mount of its root is preferred).  False
 * when nothing is mounted from it. */
bool freeze_find_mount(const char *dev, struct frozen_fs *out);

/* Flushes and freezes (FIFREEZE).  0 or -errno.  A file system that is
 * frozen already counts as frozen (was_frozen), and is left frozen by thaw. */
int freeze_fs(struct frozen_fs *fs);
/* Thaws what freeze_fs froze.  0 or -errno (logged). */
int thaw_fs(struct frozen_fs *fs);

#endif
