/* fuse_internal.h - what the FUSE front end's files share: the front end's
 * state, the file table, and its operations written once for both
 * transports (libfuse over /dev/fuse in fuse_front.c, the ring in
 * fuse_uring.c).
 *
 * Promises
 * --------
 * - The ffo_* operations answer the same request the same way whichever
 *   transport carried it; they return 0 (or a byte count) or a negative errno
 *   already in the form the kernel should see (an export's -EPERM becomes
 *   -EROFS, a consumed or deleted snapshot -EIO).
 * - Inode 1 is the directory; every file gets a fresh inode number that is
 *   never reused while mounted, so a stale number finds nothing.
 * - A handle (fh) is valid from ffo_open until ffo_release; the kernel
 *   sends neither before nor after.
 */
#ifndef HS_FUSE_INTERNAL_H
#define HS_FUSE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/types.h>
#include <time.h>

#include "common/names.h"
#include "export/export.h"
#include "fuse/fuse_front.h"

#define FF_ROOT_INO 1
/* Largest request.  Each libfuse worker and each ring entry keeps a buffer
 * of this size, touched in full by the first request that size.  `make
 * bench` (frontend): at 1 MiB the daemon's RSS reached 132 MiB after 1 MiB
 * I/O at queue depth 64; at 256 KiB, 36 MiB, for about 14% less sequential
 * read throughput from the page cache and no measurable change in writes. */
#define FF_MAX_TRANSFER (256u << 10)
#define FF_ALIGN 4096

struct fuse_session;
struct fuse_uring;

struct ff_file {
	char name[2 * HS_NAME_MAX + 2];
	uint64_t ino;
	struct export *base;
	int opens;
	struct ff_file *next;
};

struct ff_handle {
	struct export *e;
	struct ff_file *f;
	struct fuse_front *ff;
};

/* What each serving thread is doing, for status: the workers are shared by
 * every volume, so one whose backing hangs holds them up for all, and an
 * admin needs to see which and for how long.  A thread takes a slot at its
 * first request and gives it back when it ends (libfuse starts and ends its
 * workers as load comes and goes). */
#define FF_MAX_SERVERS 192 /* ring workers (at most 64) and libfuse's */
struct ff_inflight {
	_Alignas(64) atomic_bool taken; /* a cache line each: written at every request */
	atomic_uint_fast64_t since_ns;      /* when its request began; 0: idle */
	_Atomic(const struct ff_file *) file; /* the file it serves */
};

struct fuse_front {
	char mountpoint[PATH_MAX];
	struct fuse_session *se;
	pthread_t loop_thread;
	bool loop_started;
	dev_t dev; /* of the mounted file system, for fusectl */
	pthread_mutex_t mu;
	pthread_cond_t closed; /* a handle was released */
	struct ff_file *files; /* [mu] */
	uint64_t next_ino;     /* [mu] */
	time_t start_time;
	pthread_key_t buf_key;
	pthread_key_t slot_key;		      /* a thread's struct ff_inflight */
	struct ff_inflight inflight[FF_MAX_SERVERS];
	bool test_holds;		      /* HOTSNAP_TEST_HOLD is set (common/test_hold.h) */

	/* transport */
	enum fuse_transport_mode mode;
	int dev_fd;		      /* the rings' own dup of the /dev/fuse descriptor */
	uint64_t init_unique;	      /* [mu] the kernel's INIT request, while unanswered */
	bool ring_offered;	      /* [mu] the INIT request offered the ring */
	bool init_answered;	      /* [mu] */
	struct fuse_uring *ring;      /* [mu] set once, when the ring is accepted */
	char why_not_ring[192];	      /* [mu] */
	atomic_uint_fast64_t dev_requests; /* requests read from /dev/fuse */
	atomic_bool ring_serves;      /* the ring took over (INTERRUPTs are dropped) */
	pthread_cond_t init_done;     /* INIT was answered */
};

/* --- operations, for both transports (fuse_files.c) --------------------- */

int ffo_lookup(struct fuse_front *ff, uint64_t parent, const char *name, uint64_t *ino,
	       struct stat *st);
int ffo_getattr(struct fuse_front *ff, uint64_t ino, struct stat *st);
/* Only a size equal to the current one is accepted. */
int ffo_setattr(struct fuse_front *ff, uint64_t ino, bool set_size, uint64_t size,
		struct stat *st);
int ffo_open(struct fuse_front *ff, uint64_t ino, int flags, uint64_t *fh);
void ffo_release(struct fuse_front *ff, uint64_t fh);
/* Bytes read (short only at the end of the volume) or -errno. */
ssize_t ffo_read(uint64_t fh, void *buf, size_t size, int64_t off);
int ffo_write(uint64_t fh, const void *buf, size_t size, int64_t off, int open_flags);
int ffo_fsync(uint64_t fh);
int ffo_fallocate(uint64_t fh, int mode, int64_t off, int64_t len);
/* Fills buf with struct fuse_dirent records from position off; bytes used
 * or -errno. */
ssize_t ffo_readdir(struct fuse_front *ff, uint64_t ino, int64_t off, char *buf, size_t size);

/* --- the file table (fuse_files.c) ---------------------------------------- */

void ff_files_init(struct fuse_front *ff);
void ff_files_destroy(struct fuse_front *ff);

/* --- /dev/fuse through libfuse's custom I/O hooks (fuse_init_hook.c) ------ */

/* read(2) of a request; counts it, and notes the kernel's INIT request and
 * whether it offers the ring. */
ssize_t ff_dev_read(int fd, void *buf, size_t len, void *userdata);
/* writev(2) of an answer; the answer to INIT is where the ring is set up and
 * accepted (or why not is recorded), and then init_done is signalled. */
ssize_t ff_dev_writev(int fd, struct iovec *iov, int count, void *userdata);

/* Ends the FUSE connection mounted at mountpoint through fusectl: every
 * request waiting in the kernel fails and every worker wakes (fuse_front.c). */
void ff_abort_mount(const char *mountpoint);

/* --- the ring (fuse_uring.c) ------------------------------------------------ */

/* Sets up the rings and their buffers for entries of payload bytes, before
 * the INIT reply accepts the ring: nothing reaches the kernel yet.  0 or
 * -errno with *why set. */
int fuse_uring_prepare(struct fuse_front *ff, int dev_fd, size_t payload,
		       struct fuse_uring **out, const char **why);
/* After the INIT reply accepted the ring: registers every entry and starts
 * serving.  When that fails the kernel is sent back to /dev/fuse (or, if it
 * will not go, the connection is ended); false then, with why filled. */
bool fuse_uring_go(struct fuse_uring *fr, char *why, size_t why_len);
/* Drops a ring that was prepared but never accepted. */
void fuse_uring_discard(struct fuse_uring *fr);
/* Stops the workers (after the connection was aborted) and frees. */
void fuse_uring_stop(struct fuse_uring *fr);
/* Every queue has an entry registered: the kernel sends requests here. */
bool fuse_uring_serving(const struct fuse_uring *fr);
void fuse_uring_counts(const struct fuse_uring *fr, unsigned *queues, unsigned *workers,
		       uint64_t *requests);
/* Why the ring does not serve (or stopped serving). */
void fuse_uring_why(const struct fuse_uring *fr, char *buf, size_t len);

#endif
