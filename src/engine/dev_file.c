/* dev_file.c - struct dev over a regular file or a block device.
 *
 * Two descriptors: one with O_DIRECT for I/O aligned to the device's direct
 * I/O alignment (the normal case: loop devices and NBD clients send aligned
 * requests), and one buffered for anything else.  The kernel keeps the two
 * coherent (a direct write flushes and invalidates cached pages of its range
 * first), so an odd-sized request from a tool writing the FUSE file directly
 * is correct, just slower. */
#include "dev.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"

struct dev_file {
	struct dev dev;
	int fd_direct; /* -1 when O_DIRECT is not available */
	int fd;        /* buffered */
	bool buffered; /* fd_direct only for DEV_WRITE_NOCACHE */
	bool is_blockdev;
	bool readonly;
	/* The last data extent lseek found, [data_from, data_to): a reader
	 * walking a snapshot asks once per piece of its maps, and on tmpfs each
	 * SEEK_HOLE walks the pages up to the hole (a 1 GiB file of data cost a
	 * backup minutes).  Only data is remembered: should a hole appear in it
	 * since, the answer "data" is still true enough (reading a hole gives
	 * zeros); an answer "hole" that went stale would not be.  Discards
	 * through this device forget it so as not to hide the holes they make. */
	pthread_mutex_t extent_mu;
	uint64_t data_from, data_to;
};

static struct dev_file *to_file(struct dev *d)
{
	return (struct dev_file *)d;
}

static bool iov_aligned(const struct iovec *iov, int iovcnt, uint64_t off, uint32_t align)
{
	if (off % align)
		return false;
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % align || iov[i].iov_len % align)
			return false;
	return true;
}

static int pick_fd(struct dev_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
		   bool nocache)
{
	if (f->fd_direct >= 0 && (!f->buffered || nocache) &&
	    iov_aligned(iov, iovcnt, off, f->dev.align))
		return f->fd_direct;
	return f->fd;
}

/* Runs preadv/pwritev2 until the whole iovec is done.  A read past the end of
 * a regular file yields zeros (the file may be shorter than the volume when
 * its tail is sparse and was never extended). */
static int rw_full(struct dev_file *f, const struct iovec *iov_in, int iovcnt, uint64_t off,
		   bool write, unsigned flags)
{
	struct iovec stack[16];
	struct iovec *iov = stack;
	bool fua = flags & DEV_WRITE_FUA;
	int fd = pick_fd(f, iov_in, iovcnt, off, flags & DEV_WRITE_NOCACHE);
	int r = 0;

	if (iovcnt > (int)(sizeof(stack) / sizeof(stack[0]))) {
		iov = malloc(sizeof(*iov) * (size_t)iovcnt);
		if (!iov)
			return -ENOMEM;
	}
	memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
	struct iovec *cur = iov;
	int left = iovcnt;
	while (left > 0) {
		ssize_t n;
		if (cur->iov_len == 0) {
			cur++;
			left--;
			continue;
		}
		if (write)
			n = pwritev2(fd, cur, left, (off_t)off, fua ? RWF_DSYNC : 0);
		else
			n = preadv(fd, cur, left, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		if (n == 0) {
			if (write) {
				r = -EIO;
				break;
			}
			/* End of file: the rest reads as zeros. */
			for (int i = 0; i < left; i++)
				memset(cur[i].iov_base, 0, cur[i].iov_len);
			break;
		}
		off += (uint64_t)n;
		while (n > 0 && left > 0) {
			if ((size_t)n >= cur->iov_len) {
				n -= (ssize_t)cur->iov_len;
				cur++;
				left--;
			} else {
				cur->iov_base = (char *)cur->iov_base + n;
				cur->iov_len -= (size_t)n;
				n = 0;
			}
		}
		/* A short O_DIRECT transfer can leave the rest unaligned. */
		if (left > 0 && fd == f->fd_direct && !iov_aligned(cur, left, off, f->dev.align))
			fd = f->fd;
	}
	if (iov != stack)
		free(iov);
	return r;
}

static int file_preadv(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
		       unsigned flags)
{
	return rw_full(to_file(d), iov, iovcnt, off, false, flags);
}

static int file_pwritev(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
			unsigned flags)
{
	if (to_file(d)->readonly)
		return -EROFS;
	return rw_full(to_file(d), iov, iovcnt, off, true, flags);
}

static int file_flush(struct dev *d)
{
	struct dev_file *f = to_file(d);
	if (f->readonly)
		return 0;
	return fdatasync(f->fd) < 0 ? -errno : 0;
}

/* Writes zeros by hand, for file systems and devices that cannot punch. */
static int write_zero_buffers(struct dev_file *f, uint64_t off, uint64_t len)
{
	const size_t bufsize = 1 << 20;
	void *zeros;
	int r = 0;

	if (posix_memalign(&zeros, 4096, bufsize))
		return -ENOMEM;
	memset(zeros, 0, bufsize);
	while (len > 0 && r == 0) {
		size_t n = len < bufsize ? (size_t)len : bufsize;
		struct iovec iov = { .iov_base = zeros, .iov_len = n };
		r = rw_full(f, &iov, 1, off, true, 0);
		off += n;
		len -= n;
	}
	free(zeros);
	return r;
}

static int file_zero_or_discard(struct dev *d, uint64_t off, uint64_t len, bool unmap)
{
	struct dev_file *f = to_file(d);

	if (f->readonly)
		return -EROFS;
	pthread_mutex_lock(&f->extent_mu);
	f->data_from = f->data_to = 0;
	pthread_mutex_unlock(&f->extent_mu);
	if (len == 0)
		return 0;
	if (f->is_blockdev) {
		uint64_t range[2] = { off, len };
		if (ioctl(f->fd, BLKZEROOUT, range) == 0)
			return 0;
		return write_zero_buffers(f, off, len);
	}
	int mode = unmap ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
			 : (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -errno;
	if (!unmap && fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				(off_t)len) == 0)
		return 0;
	return write_zero_buffers(f, off, len);
}

static int file_discard(struct dev *d, uint64_t off, uint64_t len)
{
	return file_zero_or_discard(d, off, len, true);
}

static int file_write_zeroes(struct dev *d, uint64_t off, uint64_t len, bool may_unmap)
{
	return file_zero_or_discard(d, off, len, may_unmap);
}

static int file_extent(struct dev *d, uint64_t off, uint64_t max_len, enum dev_extent_type *type,
		       uint64_t *len)
{
	struct dev_file *f = to_file(d);
	off_t data, hole;

	if (f->is_blockdev) {
		*type = DEV_EXTENT_DATA;
		*len = max_len;
		return 0;
	}
	pthread_mutex_lock(&f->extent_mu);
	if (off >= f->data_from && off < f->data_to) {
		*type = DEV_EXTENT_DATA;
		*len = HS_MIN_U64(f->data_to - off, max_len);
		pthread_mutex_unlock(&f->extent_mu);
		return 0;
	}
	pthread_mutex_unlock(&f->extent_mu);
	data = lseek(f->fd, (off_t)off, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) { /* no data after off: all hole */
			*type = DEV_EXTENT_HOLE;
			*len = max_len;
			return 0;
		}
		*type = DEV_EXTENT_DATA; /* cannot tell: say data */
		*len = max_len;
		return 0;
	}
	if ((uint64_t)data > off) {
		*type = DEV_EXTENT_HOLE;
		*len = HS_MIN_U64((uint64_t)data - off, max_len);
		return 0;
	}
	hole = lseek(f->fd, (off_t)off, SEEK_HOLE);
	*type = DEV_EXTENT_DATA;
	*len = hole < 0 ? max_len : HS_MIN_U64((uint64_t)hole - off, max_len);
	if (*len == 0)
		*len = max_len;
	if (hole > 0 && (uint64_t)hole > off) {
		pthread_mutex_lock(&f->extent_mu);
		f->data_from = off;
		f->data_to = (uint64_t)hole;
		pthread_mutex_unlock(&f->extent_mu);
	}
	return 0;
}

static void file_prefetch(struct dev *d, uint64_t off, uint64_t len)
{
	(void)posix_fadvise(to_file(d)->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

static uint64_t boot;
static pthread_once_t boot_once = PTHREAD_ONCE_INIT;

static void read_boot(void)
{
	char id[64];
	uint64_t h = 0xcbf29ce484222325ull;
	FILE *fp = fopen("/proc/sys/kernel/random/boot_id", "re");

	if (!fp)
		return;
	if (!fgets(id, sizeof(id), fp))
		id[0] = '\0';
	fclose(fp);
	if (strlen(id) < 32)
		return;
	for (const char *c = id; *c && *c != '\n'; c++)
		h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
	boot = h ? h : 1;
}

/* This boot's identity: a hash (FNV-1a) of the kernel's boot_id, read
 * once; 0 when unknown. */
static uint64_t boot_hash(void)
{
	pthread_once(&boot_once, read_boot);
	return boot;
}

/* Sectors written and discarded on the block device rdev in this boot, from
 * its statistics (Documentation/block/stat.rst: fields 7 and 14); false
 * when the kernel does not say. */
static bool device_written(dev_t rdev, uint64_t *out)
{
	char path[64];
	unsigned long long f[14];
	FILE *fp;
	int n;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/stat", major(rdev), minor(rdev));
	fp = fopen(path, "re");
	if (!fp)
		return false;
	n = fscanf(fp, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		   &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10],
		   &f[11], &f[12], &f[13]);
	fclose(fp);
	if (n < 7)
		return false;
	*out = f[6] + (n == 14 ? f[13] : 0);
	return true;
}

static int file_stamp(struct dev *d, struct dev_stamp *out)
{
	struct dev_file *f = to_file(d);
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (fstat(f->fd, &st) < 0)
		return -errno;
	out->size = (uint64_t)st.st_size;
	if (f->is_blockdev && ioctl(f->fd, BLKGETSIZE64, &out->size) < 0)
		return -errno;
	out->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
	out->ctime_ns = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
	if (f->is_blockdev && device_written(st.st_rdev, &out->written))
		out->boot = boot_hash();
	return 0;
}

static void file_destroy(struct dev *d)
{
	struct dev_file *f = to_file(d);
	if (f->fd_direct >= 0)
		close(f->fd_direct);
	if (f->fd >= 0)
		close(f->fd);
	pthread_mutex_destroy(&f->extent_mu);
	free(f);
}

static const struct dev_ops dev_file_ops = {
	.kind = "file",
	.preadv = file_preadv,
	.pwritev = file_pwritev,
	.flush = file_flush,
	.discard = file_discard,
	.write_zeroes = file_write_zeroes,
	.extent = file_extent,
	.prefetch = file_prefetch,
	.stamp = file_stamp,
	.destroy = file_destroy,
};

/* The alignment O_DIRECT needs here: statx knows it on recent kernels;
 * otherwise the logical sector size of a block device, or 4096. */
static uint32_t direct_alignment(int fd, bool blockdev)
{
#ifdef STATX_DIOALIGN
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		uint32_t a = stx.stx_dio_offset_align;
		if (stx.stx_dio_mem_align > a)
			a = stx.stx_dio_mem_align;
		return a;
	}
#endif
	if (blockdev) {
		int ssz = 0;
		if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
			return (uint32_t)ssz;
	}
	return 4096;
}

int dev_file_open(struct dev **out, const char *path, unsigned flags)
{
	bool ro = flags & DEV_FILE_READONLY;
	int oflags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	int cflags = (flags & DEV_FILE_CREATE) ? O_CREAT : 0;
	struct dev_file *f;
	struct stat st;
	int r;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->dev.ops = &dev_file_ops;
	f->fd_direct = -1;
	pthread_mutex_init(&f->extent_mu, NULL);
	f->readonly = ro;
	if (flags & DEV_FILE_TMPFILE) {
		f->fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (f->fd < 0) {
			r = -errno;
			goto err_free;
		}
		f->dev.size = UINT64_MAX;
		f->dev.align = 1;
		*out = &f->dev;
		return 0;
	}
	f->fd = open(path, oflags | cflags, 0600);
	if (f->fd < 0) {
		r = -errno;
		goto err_free;
	}
	if (fstat(f->fd, &st) < 0) {
		r = -errno;
		goto err_close;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t size;
		if (ioctl(f->fd, BLKGETSIZE64, &size) < 0) {
			r = -errno;
			goto err_close;
		}
		f->dev.size = size;
		f->is_blockdev = true;
	} else if (S_ISREG(st.st_mode)) {
		f->dev.size = (uint64_t)st.st_size;
	} else {
		r = -EINVAL;
		goto err_close;
	}
	f->dev.align = direct_alignment(f->fd, f->is_blockdev);
	f->buffered = flags & DEV_FILE_BUFFERED;
	f->fd_direct = open(path, oflags | O_DIRECT);
	if (f->fd_direct < 0)
		hs_debug("%s: no O_DIRECT (%s), using buffered I/O", path, strerror(errno));
	*out = &f->dev;
	return 0;

err_close:
	close(f->fd);
err_free:
	pthread_mutex_destroy(&f->extent_mu);
	free(f);
	return r;
}
