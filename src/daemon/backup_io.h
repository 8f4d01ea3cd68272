/* backup_io.h - small I/O helpers shared by the backup's passes. */
#ifndef HS_BACKUP_IO_H
#define HS_BACKUP_IO_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "daemon/backup.h"

static inline bool backup_all_zero(const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	const uint8_t *b = p;
	for (size_t i = len & ~(size_t)7; i < len; i++)
		if (b[i])
			return false;
	return true;
}

/* 0 or -errno; retries short writes and EINTR. */
static inline int backup_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Puts len bytes of the snapshot at off into the image: nothing when they
 * are all zero (the image has a hole there), else written and counted.
 * The bytes written (0 for a hole), or -errno. */
static inline long backup_image_put(struct backup_job *job, const void *p, size_t len,
				    uint64_t off)
{
	if (backup_all_zero(p, len))
		return 0;
	int r = backup_pwrite_full(job->out_fd, p, len, off);
	if (r < 0)
		return r;
	atomic_fetch_add(&job->bytes_written, len);
	return (long)len;
}

#endif
