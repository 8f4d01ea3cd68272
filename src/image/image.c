/* image.c - the format-independent parts: names, dispatch, opening a backing
 * chain, errors. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/image_internal.h"

static __thread char last_error[IMAGE_ERROR_MAX];

int image_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

const char *image_error(void)
{
	return last_error;
}

int image_format_parse(const char *s, enum image_format *out)
{
	if (strcmp(s, "raw") == 0)
		*out = IMAGE_RAW;
	else if (strcmp(s, "qcow2") == 0)
		*out = IMAGE_QCOW2;
	else
		return -EINVAL;
	return 0;
}

int image_compress_parse(const char *s, enum image_compress *out)
{
	if (strcmp(s, "zstd") == 0)
		*out = IMAGE_COMPRESS_ZSTD;
	else if (strcmp(s, "zlib") == 0)
		*out = IMAGE_COMPRESS_ZLIB;
	else if (strcmp(s, "none") == 0)
		*out = IMAGE_COMPRESS_NONE;
	else
		return -EINVAL;
	return 0;
}

const char *image_format_name(enum image_format f)
{
	return f == IMAGE_QCOW2 ? "qcow2" : "raw";
}

const char *image_compress_name(enum image_compress c)
{
	switch (c) {
	case IMAGE_COMPRESS_ZSTD:
		return "zstd";
	case IMAGE_COMPRESS_ZLIB:
		return "zlib";
	case IMAGE_COMPRESS_NONE:
		break;
	}
	return "none";
}

bool image_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	/* the first 16 bytes alone, then the rest against its own start: one
	 * memcmp over the buffer instead of a loop of loads */
	for (size_t i = 0; i < len && i < 16; i++)
		if (b[i])
			return false;
	return len <= 16 || memcmp(b, b + 16, len - 16) == 0;
}

size_t image_zero_run(const void *buf, size_t len, uint64_t off, size_t unit, bool *zero)
{
	const uint8_t *p = buf;
	size_t n = (size_t)HS_MIN_U64(unit - off % unit, len);
	size_t j = n;

	*zero = image_all_zero(p, n);
	while (j < len) {
		size_t m = HS_MIN(unit, len - j);
		if (image_all_zero(p + j, m) != *zero)
			break;
		j += m;
	}
	return j;
}

int image_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* past the end of the file */
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int image_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return len ? image_pwritev_full(fd, &iov, 1, off) : 0;
}

int image_pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
	while (iovcnt > 0) {
		ssize_t n = pwritev(fd, iov, iovcnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (n > 0 && iovcnt > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= (ssize_t)iov->iov_len;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

/* --- writers ----------------------------------------------------------------- */

int image_writer_begin(struct image_writer **out, int fd, const struct image_params *p,
		       char *err, size_t errlen)
{
	if (p->size == 0 || p->size % 512) {
		snprintf(err, errlen, "an image size must be a positive multiple of 512 bytes");
		return -EINVAL;
	}
	if (p->meta_len > IMAGE_META_MAX) {
		snprintf(err, errlen, "image metadata is limited to %d bytes", IMAGE_META_MAX);
		return -EINVAL;
	}
	if (p->format == IMAGE_QCOW2)
		return qcow2_writer_begin(out, fd, p, err, errlen);
	if (p->backing || p->compress != IMAGE_COMPRESS_NONE) {
		snprintf(err, errlen, "a raw image has neither a backing file nor compression");
		return -EINVAL;
	}
	return raw_writer_begin(out, fd, p, err, errlen);
}

int image_writer_finish(struct image_writer *w, char *err, size_t errlen)
{
	int r = w->ops->finish(w); /* frees w: keep the message first */

	if (r < 0)
		snprintf(err, errlen, "%s", image_error());
	return r;
}

void image_writer_abort(struct image_writer *w)
{
	if (w)
		w->ops->abort(w);
}

/* --- readers ------------------------------------------------------------------ */

const struct image_info *image_get_info(const struct image_reader *r)
{
	return &r->info;
}

struct image_reader *image_backing(struct image_reader *r)
{
	return r->backing;
}

const char *image_path(const struct image_reader *r)
{
	return r->path;
}

void image_close(struct image_reader *r)
{
	while (r) {
		struct image_reader *next = r->backing;
		r->ops->close(r);
		r = next;
	}
}

int image_read(struct image_reader *r, void *buf, size_t len, uint64_t off)
{
	if (off > r->info.size || len > r->info.size - off)
		return image_fail(-EINVAL, "%s: read of %zu bytes at %llu is past the end (%llu)",
				  r->path, len, (unsigned long long)off,
				  (unsigned long long)r->info.size);
	return len ? r->ops->read(r, buf, len, off) : 0;
}

int image_map(struct image_reader *r, uint64_t off, uint64_t len, image_map_fn fn, void *arg)
{
	if (off > r->info.size || len > r->info.size - off)
		return image_fail(-EINVAL, "%s: range past the end", r->path);
	return len ? r->ops->map(r, off, len, fn, arg) : 0;
}

/* Opens one file of the chain; fmt is "raw", "qcow2" or "" to probe. */
static int open_one(struct image_reader **out, const char *path, const char *fmt,
		    char *backing_fmt, size_t fmtlen)
{
	uint8_t head[8] = { 0 };
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return image_fail(-errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		close(fd);
		return image_fail(-EINVAL, "%s is neither a regular file nor a block device", path);
	}
	backing_fmt[0] = '\0';
	ssize_t n = pread(fd, head, sizeof(head), 0);
	bool is_qcow2 = n > 0 && qcow2_probe(head, (size_t)n);
	if (fmt[0] && strcmp(fmt, "qcow2") == 0 && !is_qcow2) {
		close(fd);
		return image_fail(-EINVAL, "%s is named as a qcow2 backing file but is not qcow2",
				  path);
	}
	if (is_qcow2 && !(fmt[0] && strcmp(fmt, "raw") == 0))
		return qcow2_reader_open(out, fd, path, backing_fmt, fmtlen);
	return raw_reader_open(out, fd, path);
}

int image_open(struct image_reader **out, const char *path, unsigned flags, char *err,
	       size_t errlen)
{
	struct image_reader *top = NULL, *cur = NULL;
	char fmt[16] = "", next_fmt[16];
	char cur_path[PATH_MAX];
	int r;

	snprintf(cur_path, sizeof(cur_path), "%s", path);
	for (unsigned depth = 0;; depth++) {
		struct image_reader *img;
		r = open_one(&img, cur_path, fmt, next_fmt, sizeof(next_fmt));
		if (r < 0)
			goto fail;
		if (!top)
			top = img;
		else
			cur->backing = img;
		/* the same file twice in one chain is a cycle */
		for (struct image_reader *x = top; x != img; x = x->backing)
			if (x->st.st_dev == img->st.st_dev && x->st.st_ino == img->st.st_ino) {
				r = image_fail(-ELOOP, "the backing chain of %s loops: %s appears twice",
					       path, img->path);
				goto fail;
			}
		cur = img;
		if (!img->info.backing[0])
			break;
		if (flags & IMAGE_OPEN_NO_BACKING) {
			r = image_fail(-EINVAL, "%s names a backing file (%s), which is not allowed here",
				       img->path, img->info.backing);
			goto fail;
		}
		if (depth + 2 > IMAGE_CHAIN_MAX) {
			r = image_fail(-ELOOP, "the backing chain of %s is longer than %d images",
				       path, IMAGE_CHAIN_MAX);
			goto fail;
		}
		/* a relative name is relative to the directory of the image naming it */
		if (img->info.backing[0] == '/') {
			snprintf(cur_path, sizeof(cur_path), "%s", img->info.backing);
		} else {
			char dir[PATH_MAX];
			snprintf(dir, sizeof(dir), "%s", img->path);
			if ((size_t)snprintf(cur_path, sizeof(cur_path), "%s/%s", dirname(dir),
					     img->info.backing) >= sizeof(cur_path)) {
				r = image_fail(-ENAMETOOLONG, "%s: backing file path too long",
					       img->path);
				goto fail;
			}
		}
		snprintf(fmt, sizeof(fmt), "%s", next_fmt);
	}
	/* depths, counted from the bottom of the chain */
	unsigned n = 0;
	for (cur = top; cur; cur = cur->backing)
		n++;
	for (cur = top; cur; cur = cur->backing)
		cur->info.depth = n--;
	*out = top;
	return 0;
fail:
	snprintf(err, errlen, "%s", image_error());
	image_close(top);
	return r;
}
