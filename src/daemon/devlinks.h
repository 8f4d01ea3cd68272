/* devlinks.h - stable names for attached devices: DEV_DIR/NAME and
 * DEV_DIR/VOLUME@SNAP, symlinks to the loop devices the daemon keeps.
 *
 * A loop device number is whatever the kernel had free; an fstab line, a
 * script or a database's configuration wants a name that survives restarts.
 * DEV_DIR is /dev/hotsnap for the system daemon (the default state dir),
 * STATE_DIR/dev for any other, so a test daemon never touches the system's
 * names.  A link is replaced atomically (a new link renamed over the old),
 * removed when its device is detached, and at start links left by a daemon
 * that died are removed before any is made again. */
#ifndef HS_DAEMON_DEVLINKS_H
#define HS_DAEMON_DEVLINKS_H

struct daemon;

/* Creates DEV_DIR and removes links a previous run left in it. */
void devlinks_init(struct daemon *d);
/* DEV_DIR/name -> dev.  Logged, not fatal, when it cannot be made. */
void devlinks_set(struct daemon *d, const char *name, const char *dev);
void devlinks_remove(struct daemon *d, const char *name);
/* The path of name's link, for messages and listings. */
const char *devlinks_path(struct daemon *d, const char *name, char *buf, unsigned long len);

#endif
