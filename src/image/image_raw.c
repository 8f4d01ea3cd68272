/* image_raw.c - raw images: the view's bytes at their own offsets.
 *
 * Three kinds of output, told apart by fstat at begin:
 *   file    a regular file, normally fresh and empty: zeros stay holes (the
 *           file gets its full size at finish); below its size at begin a
 *           zero range is punched, so a reused file holds no stale data;
 *   device  a block device: zeros are written as zeros (BLKZEROOUT through
 *           fallocate), because the device holds whatever was there before;
 *   stream  a pipe or socket: bytes in order, zeros included.
 * A file's writeback rolls behind the writes (image_writeback.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "image/image_internal.h"

#define ZERO_SCAN 4096
#define STREAM_ZEROS (UINT64_C(1) << 20)

enum raw_kind { RAW_FILE, RAW_DEVICE, RAW_STREAM };

struct raw_writer {
	struct image_writer w;
	int fd;
	enum raw_kind kind;
	uint64_t initial_size; /* RAW_FILE: bytes that may hold stale data */
	uint64_t next;         /* RAW_STREAM: the next offset expected */
	const char *name;
	struct image_writeback wb;
};

static struct raw_writer *to_raw(struct image_writer *w)
{
	return hs_container_of(w, struct raw_writer, w);
}

static int io_error(struct raw_writer *rw, int r, const char *what, uint64_t off)
{
	snprintf(rw->w.error, sizeof(rw->w.error), "%s %s at offset %llu failed: %s", what,
		 rw->name, (unsigned long long)off, strerror(-r));
	return image_fail(r, "%s", rw->w.error);
}

static int write_zeros_slowly(struct raw_writer *rw, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[STREAM_ZEROS];

	while (len > 0) {
		size_t n = (size_t)HS_MIN_U64(len, sizeof(zeros));
		int r = image_pwrite_full(rw->fd, zeros, n, off);
		if (r < 0)
			return io_error(rw, r, "writing zeros to", off);
		atomic_fetch_add(&rw->w.bytes_written, n);
		off += n;
		len -= n;
	}
	return 0;
}

static int stream_write(struct raw_writer *rw, const void *buf, uint64_t len, uint64_t off)
{
	static const uint8_t zeros[STREAM_ZEROS];

	if (off != rw->next) {
		snprintf(rw->w.error, sizeof(rw->w.error),
			 "internal error: a stream got offset %llu where %llu was due",
			 (unsigned long long)off, (unsigned long long)rw->next);
		return image_fail(-EINVAL, "%s", rw->w.error);
	}
	while (len > 0) {
		size_t n = buf ? (size_t)len : (size_t)HS_MIN_U64(len, sizeof(zeros));
		ssize_t k = write(rw->fd, buf ? buf : zeros, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return io_error(rw, -errno, "writing to", off);
		}
		if (buf)
			buf = (const uint8_t *)buf + k;
		len -= (uint64_t)k;
		off += (uint64_t)k;
		rw->next = off;
		atomic_fetch_add(&rw->w.bytes_written, (uint64_t)k);
	}
	return 0;
}

static int raw_zero(struct image_writer *w, uint64_t off, uint64_t len)
{
	struct raw_writer *rw = to_raw(w);

	if (off > w->size || len > w->size - off)
		return image_fail(-EINVAL, "zero range past the end of %s", rw->name);
	switch (rw->kind) {
	case RAW_STREAM:
		return stream_write(rw, NULL, len, off);
	case RAW_FILE:
		if (off >= rw->initial_size)
			return 0; /* a hole already */
		len = HS_MIN_U64(len, rw->initial_size - off);
		if (fallocate(rw->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) == 0)
			return 0;
		return write_zeros_slowly(rw, off, len);
	case RAW_DEVICE:
		if (off % 512 == 0 && len % 512 == 0 &&
		    fallocate(rw->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) == 0)
			return 0;
		return write_zeros_slowly(rw, off, len);
	}
	return 0;
}

static int put_data(struct raw_writer *rw, const uint8_t *p, size_t len, uint64_t off)
{
	int r = image_pwrite_full(rw->fd, p, len, off);

	if (r < 0)
		return io_error(rw, r, "writing", off);
	atomic_fetch_add(&rw->w.bytes_written, len);
	atomic_fetch_add(&rw->w.data_bytes, len);
	image_writeback_note(&rw->wb, off, len);
	return 0;
}

/* Zeros become holes (or zeroed ranges), found a page at a time, so a mostly
 * empty block leaves a sparse image. */
static int raw_data(struct image_writer *w, const void *buf, size_t len, uint64_t off)
{
	struct raw_writer *rw = to_raw(w);
	const uint8_t *p = buf;
	int r = 0;

	if (off > w->size || len > w->size - off)
		return image_fail(-EINVAL, "data past the end of %s", rw->name);
	if (rw->kind == RAW_STREAM) {
		r = stream_write(rw, buf, len, off);
		if (r == 0 && !image_all_zero(buf, len))
			atomic_fetch_add(&w->data_bytes, len);
		return r;
	}
	for (size_t i = 0; i < len && r == 0;) {
		bool zero;
		size_t n = image_zero_run(p + i, len - i, off + i, ZERO_SCAN, &zero);
		r = zero ? raw_zero(w, off + i, n) : put_data(rw, p + i, n, off + i);
		i += n;
	}
	return r;
}

static void raw_free(struct raw_writer *rw)
{
	image_writeback_destroy(&rw->wb);
	free(rw);
}

static int raw_finish(struct image_writer *w)
{
	struct raw_writer *rw = to_raw(w);
	int r = 0;

	if (rw->kind == RAW_STREAM && rw->next != w->size) {
		snprintf(w->error, sizeof(w->error),
			 "internal error: the stream ended at %llu of %llu bytes",
			 (unsigned long long)rw->next, (unsigned long long)w->size);
		r = image_fail(-EIO, "%s", w->error);
	} else if (rw->kind == RAW_FILE) {
		struct stat st;
		/* the tail may be a hole: give the image its full size */
		if (fstat(rw->fd, &st) == 0 && (uint64_t)st.st_size < w->size &&
		    ftruncate(rw->fd, (off_t)w->size) < 0)
			r = io_error(rw, -errno, "sizing", w->size);
	}
	if (r == 0 && rw->kind != RAW_STREAM && fsync(rw->fd) < 0 && errno != EINVAL)
		r = io_error(rw, -errno, "flushing", 0);
	raw_free(rw);
	return r;
}

static void raw_abort(struct image_writer *w)
{
	raw_free(to_raw(w));
}

static void raw_position(struct image_writer *w, uint64_t off)
{
	image_writeback_position(&to_raw(w)->wb, off);
}

static const struct image_writer_ops raw_writer_ops = {
	.data = raw_data,
	.zero = raw_zero,
	.position = raw_position,
	.finish = raw_finish,
	.abort = raw_abort,
};

int raw_writer_begin(struct image_writer **out, int fd, const struct image_params *p,
		     char *err, size_t errlen)
{
	struct raw_writer *rw;
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot examine the output %s: %s", p->name, strerror(errno));
		return -errno;
	}
	rw = calloc(1, sizeof(*rw));
	if (!rw) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rw->w.ops = &raw_writer_ops;
	rw->w.format = IMAGE_RAW;
	rw->w.size = p->size;
	rw->w.granularity = 512;
	rw->fd = fd;
	rw->name = p->name ? p->name : "the image";
	image_writeback_init(&rw->wb, fd, S_ISREG(st.st_mode), WRITEBACK_POSITIONED);
	if (S_ISREG(st.st_mode)) {
		rw->kind = RAW_FILE;
		rw->initial_size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		uint64_t dsize = 0;
		rw->kind = RAW_DEVICE;
		if (ioctl(fd, BLKGETSIZE64, &dsize) == 0 && dsize < p->size) {
			snprintf(err, errlen, "the device %s (%llu bytes) is smaller than the image "
					      "(%llu bytes)",
				 rw->name, (unsigned long long)dsize, (unsigned long long)p->size);
			raw_free(rw);
			return -ENOSPC;
		}
	} else {
		rw->kind = RAW_STREAM;
		rw->w.sequential = true;
	}
	*out = &rw->w;
	return 0;
}

/* --- reading ------------------------------------------------------------------- */

static int raw_read(struct image_reader *r, void *buf, size_t len, uint64_t off)
{
	int e = image_pread_full(r->fd, buf, len, off);
	if (e < 0)
		return image_fail(e, "reading %s at offset %llu failed: %s", r->path,
				  (unsigned long long)off, strerror(-e));
	return 0;
}

static int raw_map(struct image_reader *r, uint64_t off, uint64_t len, image_map_fn fn, void *arg)
{
	uint64_t end = off + len;

	if (!S_ISREG(r->st.st_mode))
		return fn(arg, off, len, IMAGE_DATA);
	while (off < end) {
		off_t data = lseek(r->fd, (off_t)off, SEEK_DATA);
		uint64_t d = data < 0 ? end : HS_MIN_U64((uint64_t)data, end);
		int e;
		if (d > off && (e = fn(arg, off, d - off, IMAGE_ZERO)))
			return e;
		if (d >= end)
			break;
		off_t hole = lseek(r->fd, (off_t)d, SEEK_HOLE);
		uint64_t h = hole < 0 ? end : HS_MIN_U64((uint64_t)hole, end);
		if ((e = fn(arg, d, h - d, IMAGE_DATA)))
			return e;
		off = h;
	}
	return 0;
}

static void raw_close(struct image_reader *r)
{
	close(r->fd);
	free(r);
}

static const struct image_reader_ops raw_reader_ops = {
	.read = raw_read,
	.map = raw_map,
	.close = raw_close,
};

int raw_reader_open(struct image_reader **out, int fd, const char *path)
{
	struct image_reader *r = calloc(1, sizeof(*r));
	uint64_t size;

	if (!r) {
		close(fd);
		return image_fail(-ENOMEM, "out of memory");
	}
	r->ops = &raw_reader_ops;
	r->fd = fd;
	snprintf(r->path, sizeof(r->path), "%s", path);
	if (fstat(fd, &r->st) < 0) {
		int e = -errno;
		raw_close(r);
		return image_fail(e, "cannot examine %s: %s", path, strerror(-e));
	}
	if (S_ISBLK(r->st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			int e = -errno;
			raw_close(r);
			return image_fail(e, "cannot read the size of %s: %s", path, strerror(-e));
		}
	} else {
		size = (uint64_t)r->st.st_size;
	}
	r->info.format = IMAGE_RAW;
	/* a view is whole sectors: the odd tail of a raw file is not part of it */
	r->info.size = size & ~UINT64_C(511);
	*out = r;
	return 0;
}
