/* fuse_front.h - the FUSE front end: one regular file per volume (writable)
 * and per attached snapshot (read-only), in one directory mounted by the
 * daemon.  A loop device on such a file gives the kernel a block device.
 *
 * Two transports carry the kernel's requests: FUSE over io_uring (one ring
 * per worker thread, spread over the kernel's per-CPU queues; a request is
 * answered and the next one fetched in one call) when the kernel offers it,
 * else libfuse's /dev/fuse loop.  Either way every request is served
 * synchronously by the thread that received it, into a buffer that thread
 * owns, so no request can see another's data.  Files are opened in
 * direct-I/O mode: there is no FUSE page cache that could go stale when the
 * same volume is written over NBD. */
#ifndef HS_FUSE_FRONT_H
#define HS_FUSE_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/names.h"
#include "export/export.h"

struct fuse_front;

enum fuse_transport_mode {
	FUSE_TRANSPORT_AUTO,	 /* the ring when the kernel offers it, else /dev/fuse */
	FUSE_TRANSPORT_IO_URING, /* the ring or no start */
	FUSE_TRANSPORT_DEV,	 /* /dev/fuse only */
};
/* "auto", "io-uring" or "dev"; false for anything else. */
bool fuse_transport_parse(const char *s, enum fuse_transport_mode *out);

/* Mounts on mountpoint (an existing empty directory; a stale mount left by a
 * killed daemon is detached first) and starts the worker threads.  In mode
 * auto, as root, switches on the fuse module's enable_uring.  With
 * FUSE_TRANSPORT_IO_URING, fails (-EOPNOTSUPP, *why saying why) when the
 * ring does not serve.  0 or -errno with *why set. */
int fuse_front_start(struct fuse_front **out, const char *mountpoint,
		     enum fuse_transport_mode mode, const char **why);
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
/* Which transport carries the requests, and why not the ring. */
struct fuse_transport_info {
	const char *name;	 /* "io-uring" or "dev" */
	char why_not_ring[192];	 /* empty when the ring serves */
	unsigned queues;	 /* the ring's queues (possible CPUs), 0 without it */
	unsigned workers;	 /* ring workers, or libfuse's */
	uint64_t ring_requests;	 /* served over the ring */
	uint64_t dev_requests;	 /* read from /dev/fuse */
};
void fuse_front_transport(struct fuse_front *ff, struct fuse_transport_info *out);

/* Requests being served now: how many, and the oldest (its age, its file,
 * and how many of those in flight are for that file).  The workers are
 * shared by every volume: one whose backing hangs holds them up for all. */
struct fuse_busy_info {
	unsigned in_flight;
	uint64_t oldest_ns;
	char oldest_file[2 * HS_NAME_MAX + 2]; /* "" when none */
	unsigned oldest_file_requests;
};
void fuse_front_busy(struct fuse_front *ff, struct fuse_busy_info *out);

/* Whether the mount is still in place (false when someone unmounted it). */
bool fuse_front_mounted(const struct fuse_front *ff);

#endif
