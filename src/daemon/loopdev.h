/* loopdev.h - loop devices on the FUSE files, always with direct I/O. */
#ifndef HS_LOOPDEV_H
#define HS_LOOPDEV_H

#include <stdbool.h>
#include <stddef.h>

#define LOOPDEV_NAME_MAX 32

/* Attaches a free loop device to path (direct I/O; read-only if asked) and
 * writes "/dev/loopN" into dev.  0 or -errno; *why says what failed. */
int loopdev_attach(const char *path, bool readonly, char *dev, size_t devlen, const char **why);
/* Detaches dev if it is still backed by path.  -EBUSY (and nothing done)
 * while something holds it exclusively, such as a mounted file system. */
int loopdev_detach(const char *dev, const char *path);
/* Detaches even when in use: the device goes away once its last user lets
 * go (the kernel's auto-clear).  For shutdown. */
void loopdev_detach_force(const char *dev, const char *path);
/* Whether dev is a loop device backed by path. */
bool loopdev_backed_by(const char *dev, const char *path);
/* Calls fn for each loop device whose backing file lies under dir. */
void loopdev_foreach_under(const char *dir, void (*fn)(void *arg, const char *dev,
						       const char *backing), void *arg);

#endif
