/* image_internal.h - what the format implementations share: the reader's
 * method table, the per-format constructors and small I/O helpers. */
#ifndef HS_IMAGE_INTERNAL_H
#define HS_IMAGE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "common/compiler.h"
#include "image/image.h"

struct image_reader_ops {
	int (*read)(struct image_reader *r, void *buf, size_t len, uint64_t off);
	int (*map)(struct image_reader *r, uint64_t off, uint64_t len, image_map_fn fn,
		   void *arg);
	void (*close)(struct image_reader *r);
};

struct image_reader {
	const struct image_reader_ops *ops;
	struct image_info info;
	char path[PATH_MAX];
	int fd;
	struct stat st;                /* of fd: identifies the file in a chain */
	struct image_reader *backing;  /* owned */
};

/* Records what went wrong for image_error(); returns err (a -errno). */
int image_fail(int err, const char *fmt, ...) HS_PRINTF(2, 3);

/* Writers, by format (image_raw.c, qcow2_write.c). */
int raw_writer_begin(struct image_writer **out, int fd, const struct image_params *p,
		     char *err, size_t errlen);
int qcow2_writer_begin(struct image_writer **out, int fd, const struct image_params *p,
		       char *err, size_t errlen);

/* Readers, by format: take over fd (closed on failure too).  A qcow2 reader
 * names its backing in info.backing for image_open to follow; it reads
 * through r->backing, which image_open sets before the first read. */
int raw_reader_open(struct image_reader **out, int fd, const char *path);
int qcow2_reader_open(struct image_reader **out, int fd, const char *path, char *backing_format,
		      size_t fmtlen);
/* True when the first bytes of a file say qcow2. */
bool qcow2_probe(const void *head, size_t len);

/* Rolling writeback of an output file (image_writeback.c); thread safe. */
enum image_writeback_mode {
	WRITEBACK_APPEND,     /* the file grows at its end (qcow2) */
	WRITEBACK_POSITIONED, /* written at the view's offsets; the front is the position hint */
};
struct image_writeback {
	int fd;
	bool on; /* only for regular files */
	enum image_writeback_mode mode;
	pthread_mutex_t mu;
	uint64_t unflushed, front, ahead;
	bool busy;
};
void image_writeback_init(struct image_writeback *wb, int fd, bool on,
			  enum image_writeback_mode mode);
void image_writeback_destroy(struct image_writeback *wb);
/* Nothing before off will be written any more (WRITEBACK_POSITIONED). */
void image_writeback_position(struct image_writeback *wb, uint64_t off);
/* [off, off + len) was just written. */
void image_writeback_note(struct image_writeback *wb, uint64_t off, uint64_t len);

/* pread/pwrite of the whole length: 0, or -errno (-EIO for a read that
 * ends early: the file is shorter than its metadata says). */
int image_pread_full(int fd, void *buf, size_t len, uint64_t off);
int image_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* The same for an iovec (at most IOV_MAX entries); iov is used up. */
int image_pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off);

#endif
