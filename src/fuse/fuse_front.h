/* fuse_front.h - the FUSE front end: one regular file per volume (writable)
 * and per attached snapshot (read-only), in one directory mounted by the
 * daemon.  A loop device on such a file gives the kernel a block device.
 *
 * Every request is served synchronously by the libfuse worker thread that
 * received it, into a buffer that thread owns, so no request can see
 * another's data.  Files are opened in direct-I/O mode: there is no FUSE
 * page cache that could go stale when the same volume is written over NBD. */
#ifndef HS_FUSE_FRONT_H
#define HS_FUSE_FRONT_H

#include <stdbool.h>
#include <stddef.h>

#include "export/export.h"

struct fuse_front;

/* Mounts on mountpoint (an existing empty directory; a stale mount left by a
 * killed daemon is detached first) and starts the worker threads.  0 or
 * -errno with *why set. */
int fuse_front_start(struct fuse_front **out, const char *mountpoint, const char **why);
/* Unmounts (lazily if a loop device still holds a file) and stops. */
void fuse_front_stop(struct fuse_front *ff);

/* Publishes a file for an export; the front end takes over e and opens one
 * more export of the same volume or snapshot per open() of the file.
 * -EEXIST when the name is taken. */
int fuse_front_add(struct fuse_front *ff, const char *name, struct export *e);
/* Withdraws a file.  -EBUSY while something has it open (a loop device);
 * -ENOENT when there is no such file. */
int fuse_front_remove(struct fuse_front *ff, const char *name);

/* mountpoint/name */
const char *fuse_front_path(const struct fuse_front *ff, const char *name, char *buf,
			    size_t len);
/* Number of open handles of the file (0 when it does not exist). */
int fuse_front_open_count(struct fuse_front *ff, const char *name);
/* Waits until the file has fewer than fewer_than open handles (or is gone),
 * at most timeout_ms; false on timeout.  The kernel sends the release of a
 * file a loop device let go of after LOOP_CLR_FD has returned, so a detach
 * waits here: once it answers, the snapshot or volume is free for a
 * consuming backup, a revert or a restore. */
bool fuse_front_wait_closes(struct fuse_front *ff, const char *name, int fewer_than,
			    unsigned timeout_ms);
/* Whether the mount is still in place (false when someone unmounted it). */
bool fuse_front_mounted(const struct fuse_front *ff);

#endif
