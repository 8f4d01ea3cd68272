/* loopdev.h - loop devices on the FUSE files, always with direct I/O.
 *
 * An attachment remembers its device and the identity (st_dev, st_ino) of
 * the file it was attached to, and every later check asks the kernel
 * (LOOP_GET_STATUS64) whether the device still sits on that very file: a
 * path would not do, since a lost mount leaves sysfs showing "/NAME" and
 * another process may reuse a freed device number. */
#ifndef HS_LOOPDEV_H
#define HS_LOOPDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define LOOPDEV_NAME_MAX 32

struct loop_attachment {
	char dev[LOOPDEV_NAME_MAX]; /* "/dev/loopN", or "" when not attached */
	dev_t back_dev;
	ino_t back_ino;
};

/* Attaches a free loop device to path (direct I/O; read-only if asked).
 * 0 or -errno; *why says what failed. */
int loopdev_attach(const char *path, bool readonly, struct loop_attachment *a, const char **why);
/* Whether a's device still sits on the file it was attached to. */
bool loopdev_attached(const struct loop_attachment *a);
/* Detaches a's device.  -EBUSY (and nothing done) while something holds it
 * exclusively, such as a mounted file system; -ESTALE when the device is
 * no longer on our file (then a is cleared, nothing else is done). */
int loopdev_detach(struct loop_attachment *a);
/* Detaches even when in use: the device goes once its last user lets go
 * (the kernel's auto-clear).  For shutdown.  Clears a. */
void loopdev_detach_force(struct loop_attachment *a);
/* Calls fn for each loop device whose backing file lies under dir. */
void loopdev_foreach_under(const char *dir, void (*fn)(void *arg, const char *dev,
						       const char *backing), void *arg);
/* The backing file of the loop device dev (a whole device or one of its
 * partitions) into out; "" when dev is no loop device. */
void loopdev_backing_of_dev(dev_t dev, char *out, size_t len);
/* Whether the block device dev, or one it is stacked on (device-mapper,
 * md: its slaves, to a depth of 8), is a loop device whose backing file
 * lies under dir; rest gets that file's path below dir. */
bool loopdev_stack_under(dev_t dev, const char *dir, char *rest, size_t len);
/* Detaches dev if its backing file is still path (for stale devices). */
void loopdev_detach_path(const char *dev, const char *path);

#endif
