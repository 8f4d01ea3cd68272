/* dev.h - the engine's only door to storage.
 *
 * Every byte the engine reads or writes, on the origin or in the diff file,
 * goes through a struct dev.  Production uses dev_file (a regular file or a
 * block device); unit tests use dev_mem and the fault and crash wrappers to
 * inject errors and lose unflushed writes.  Every method returns 0 or -errno
 * and transfers the whole length or fails: short transfers are looped inside
 * the implementation, never passed up. */
#ifndef HS_DEV_H
#define HS_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct dev;

enum dev_extent_type { DEV_EXTENT_DATA, DEV_EXTENT_HOLE };

/* What backs a device, as its owner can tell later whether something else
 * changed it: size and the last modification and change times (ns). */
struct dev_stamp {
	uint64_t size;
	uint64_t mtime_ns;
	uint64_t ctime_ns;
	/* A block device's times do not change when it is written, so its
	 * own counter says instead: the sectors written and discarded on it
	 * in this boot (written), and which boot that is (boot, a hash of the
	 * kernel's boot_id).  Both 0 for a file, or when the kernel does not
	 * say. */
	uint64_t boot;
	uint64_t written;
};

/* preadv and pwritev flags */
#define DEV_WRITE_FUA 0x1     /* durable on return */
#define DEV_NOCACHE 0x2       /* a hint: nobody reads these bytes again soon (a
			       * restore's stream, its check): past the page
			       * cache when aligned */
#define DEV_WRITE_NOCACHE DEV_NOCACHE

struct dev_ops {
	const char *kind;
	int (*preadv)(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
		      unsigned flags);
	int (*pwritev)(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
		       unsigned flags);
	int (*flush)(struct dev *d);
	/* Deallocate; the range reads as zeros afterwards. */
	int (*discard)(struct dev *d, uint64_t off, uint64_t len);
	/* Make the range read as zeros; may deallocate when may_unmap. */
	int (*write_zeroes)(struct dev *d, uint64_t off, uint64_t len, bool may_unmap);
	/* Type of the extent at off, and its length (at most max_len).  Optional:
	 * a device without it is all data. */
	int (*extent)(struct dev *d, uint64_t off, uint64_t max_len,
		      enum dev_extent_type *type, uint64_t *len);
	/* Optional: the range will be read soon; start fetching it (many such
	 * hints in a row give the device a deep queue of scattered reads). */
	void (*prefetch)(struct dev *d, uint64_t off, uint64_t len);
	/* Optional: the stamp of what backs the device now. */
	int (*stamp)(struct dev *d, struct dev_stamp *out);
	void (*destroy)(struct dev *d);
};

struct dev {
	const struct dev_ops *ops; /* first, as in SQLite's sqlite3_file */
	uint64_t size;
	/* Buffers, offsets and lengths aligned to this go the fastest way
	 * (O_DIRECT); anything else still works, more slowly. */
	uint32_t align;
};

static inline int dev_pread(struct dev *d, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return d->ops->preadv(d, &iov, 1, off, 0);
}

static inline int dev_pwrite(struct dev *d, const void *buf, size_t len, uint64_t off,
			     unsigned flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return d->ops->pwritev(d, &iov, 1, off, flags);
}

static inline void dev_destroy(struct dev *d)
{
	if (d)
		d->ops->destroy(d);
}

/* dev_file: a regular file or a block device.  Opened O_DIRECT where the file
 * system allows it, with a second buffered descriptor for unaligned I/O.
 * flags: DEV_FILE_* below.  0 or -errno. */
#define DEV_FILE_READONLY 0x1
#define DEV_FILE_BUFFERED 0x2 /* through the page cache (O_DIRECT only for
			       * DEV_WRITE_NOCACHE writes) */
#define DEV_FILE_TMPFILE 0x4  /* path is a directory: an unnamed file in it */
#define DEV_FILE_CREATE 0x8   /* create the file (mode 0600) when it is missing */
int dev_file_open(struct dev **out, const char *path, unsigned flags);

/* dev_mem: size bytes of memory, zero-filled; for tests and benchmarks. */
int dev_mem_create(struct dev **out, uint64_t size);
/* The memory behind a dev_mem, for tests that compare contents. */
uint8_t *dev_mem_data(struct dev *d);
/* A second dev over the same memory, for tests that reopen what a user of
 * the first destroyed; the memory stays the original's. */
int dev_mem_share(struct dev **out, struct dev *original);
/* Fixes what stamp() reports (NULL: the time of the last write again). */
void dev_mem_set_stamp(struct dev *d, const struct dev_stamp *st);

#endif
