/* image.h - image formats behind one writer and one reader interface.
 *
 * Writing.  A writer receives the bytes of one point-in-time view, range by
 * range: image_writer_begin() opens it on a descriptor, data() and zero()
 * describe the view, finish() makes the image complete and durable, abort()
 * gives up.  Both finish and abort free the writer; the descriptor stays the
 * caller's.  The promises each side makes:
 *   - the caller gives every byte at most once, from any number of threads,
 *     in any order, unless the writer is `sequential` (a pipe): then in
 *     increasing order without gaps, from one thread;
 *   - a range the caller never mentions reads as zeros in an image without a
 *     backing file, and as the backing file in one with (an incremental);
 *     zero() says a range reads as zeros whatever the backing holds;
 *   - ranges aligned to `granularity` are stored best (a qcow2 cluster is
 *     compressed only when it arrives whole); anything else still works;
 *   - data() may find zeros in what it is given and store them as zeros.
 * Every call returns 0 or -errno; the writer's `error` then says what failed
 * in words (path, offset, cause).
 *
 * Reading.  image_open() opens a file of any supported format with its
 * backing chain (relative backing names are resolved against the directory
 * of the image that names them); image_read() and image_map() see the
 * chain's top view.  Hostile files give an error naming the file and the
 * defect, never a crash: every offset and size read from a file is checked
 * before use.  A reader is safe to use from several threads at once. */
#ifndef HS_IMAGE_H
#define HS_IMAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum image_format { IMAGE_RAW, IMAGE_QCOW2 };
enum image_compress { IMAGE_COMPRESS_NONE, IMAGE_COMPRESS_ZSTD, IMAGE_COMPRESS_ZLIB };

#define IMAGE_ERROR_MAX 512
#define IMAGE_META_MAX 4096      /* bytes of application metadata an image keeps */
#define IMAGE_BACKING_MAX 1023   /* qcow2's limit on the backing file name */
#define IMAGE_CHAIN_MAX 256      /* images in one backing chain */

/* Parses "raw"/"qcow2" and "zstd"/"zlib"/"none"; -EINVAL otherwise. */
int image_format_parse(const char *s, enum image_format *out);
int image_compress_parse(const char *s, enum image_compress *out);
const char *image_format_name(enum image_format f);
const char *image_compress_name(enum image_compress c);

/* --- writing --------------------------------------------------------------- */

struct image_params {
	enum image_format format;
	uint64_t size;               /* virtual size, bytes (a multiple of 512) */
	uint32_t cluster_size;       /* qcow2: a power of two, 512 B..2 MiB; 0 = 64 KiB */
	enum image_compress compress; /* qcow2 only */
	int compress_level;          /* 0 = the library's default */
	unsigned threads;            /* compression threads; 0 = one per CPU */
	const char *backing;         /* qcow2: backing file name as stored, or NULL */
	const char *backing_format;  /* "qcow2" or "raw", with backing */
	const void *meta;            /* opaque application metadata, or NULL */
	size_t meta_len;             /* at most IMAGE_META_MAX */
	const char *name;            /* the image's path, for messages */
};

struct image_writer;

struct image_writer_ops {
	int (*data)(struct image_writer *w, const void *buf, size_t len, uint64_t off);
	int (*zero)(struct image_writer *w, uint64_t off, uint64_t len);
	/* Optional hint: nothing before off will be given any more (lets a
	 * writer write out and forget the metadata of that part). */
	void (*position)(struct image_writer *w, uint64_t off);
	int (*finish)(struct image_writer *w);
	void (*abort)(struct image_writer *w);
};

struct image_writer {
	const struct image_writer_ops *ops;
	enum image_format format;
	uint64_t size;
	uint32_t granularity;  /* best alignment and size of a piece */
	bool sequential;       /* in order only (the output is a pipe) */
	atomic_uint_fast64_t bytes_written; /* to the output, data and metadata */
	atomic_uint_fast64_t data_bytes;    /* of the view, stored as data (not zeros) */
	char error[IMAGE_ERROR_MAX];
};

/* Opens a writer of p->format on fd (a fresh regular file, a block device,
 * or a pipe for raw).  0 or -errno with err set. */
int image_writer_begin(struct image_writer **out, int fd, const struct image_params *p,
		       char *err, size_t errlen);

static inline int image_writer_data(struct image_writer *w, const void *buf, size_t len,
				    uint64_t off)
{
	return w->ops->data(w, buf, len, off);
}
static inline int image_writer_zero(struct image_writer *w, uint64_t off, uint64_t len)
{
	return w->ops->zero(w, off, len);
}
static inline void image_writer_position(struct image_writer *w, uint64_t off)
{
	if (w->ops->position)
		w->ops->position(w, off);
}
/* Completes the image and frees the writer.  0 or -errno (then the image is
 * not usable; err says why). */
int image_writer_finish(struct image_writer *w, char *err, size_t errlen);
void image_writer_abort(struct image_writer *w);

/* True when all len bytes are zero. */
bool image_all_zero(const void *p, size_t len);
/* The run at the start of buf (len > 0 bytes, at offset off of the view)
 * that is all zeros or all not, in pieces that end on multiples of unit:
 * its length, and *zero says which.  Writers store zeros as holes with it. */
size_t image_zero_run(const void *buf, size_t len, uint64_t off, size_t unit, bool *zero);

/* --- reading --------------------------------------------------------------- */

struct image_reader;

enum image_extent { IMAGE_DATA, IMAGE_ZERO };
/* Returning non-zero stops a walk and is returned. */
typedef int (*image_map_fn)(void *arg, uint64_t off, uint64_t len, enum image_extent type);

#define IMAGE_OPEN_NO_BACKING 0x1 /* refuse images that name a backing file */

struct image_info {
	enum image_format format;
	uint64_t size;
	uint32_t cluster_size;          /* qcow2; 0 for raw */
	enum image_compress compress;   /* qcow2 compression type */
	char backing[IMAGE_BACKING_MAX + 1]; /* as stored; "" without */
	unsigned depth;                 /* images in the chain, this one included */
	const void *meta;               /* application metadata, or NULL */
	size_t meta_len;
};

/* 0 or -errno with err naming the file and what is wrong with it. */
int image_open(struct image_reader **out, const char *path, unsigned flags, char *err,
	       size_t errlen);
void image_close(struct image_reader *r);

const struct image_info *image_get_info(const struct image_reader *r);
/* The reader of the backing image, or NULL. */
struct image_reader *image_backing(struct image_reader *r);
const char *image_path(const struct image_reader *r);

/* Reads [off, off + len) of the view.  -EINVAL outside it; -EIO (with
 * image_error() saying what) when the file is damaged there. */
int image_read(struct image_reader *r, void *buf, size_t len, uint64_t off);
/* Runs of data and zeros in [off, off + len), resolved through the chain;
 * neighbouring runs of one type may be reported separately. */
int image_map(struct image_reader *r, uint64_t off, uint64_t len, image_map_fn fn, void *arg);
/* What the last failed call of this thread found wrong, in words. */
const char *image_error(void);

#endif
