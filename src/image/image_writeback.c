/* image_writeback.c - writeback that rolls behind the writes, as nbdcopy
 * does it: each piece is sent to the disk at once, and every
 * WRITEBACK_LAG bytes the writer waits for what it sent earlier and drops
 * it from the page cache.  Without it a whole image sits dirty in the page
 * cache and the final fsync writes it all after the reading is over; with
 * it writing overlaps reading, and an image leaves no dirty memory behind
 * and evicts nobody's cache. */
#include <fcntl.h>

#include "image/image_internal.h"

#define WRITEBACK_LAG (UINT64_C(4) << 20)
#define WRITEBACK_MIN (UINT64_C(64) << 10)

void image_writeback_init(struct image_writeback *wb, int fd, bool on)
{
	*wb = (struct image_writeback){ .fd = fd, .on = on };
	pthread_mutex_init(&wb->mu, NULL);
}

void image_writeback_destroy(struct image_writeback *wb)
{
	pthread_mutex_destroy(&wb->mu);
}

void image_writeback_note(struct image_writeback *wb, uint64_t off, uint64_t len)
{
	uint64_t done = 0;

	if (!wb->on)
		return;
	/* a small piece (a backup's scattered copies) waits for the rolling
	 * wait below or the final flush: a system call each would cost more
	 * than the write */
	if (len >= WRITEBACK_MIN)
		(void)sync_file_range(wb->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
	pthread_mutex_lock(&wb->mu);
	wb->unflushed += len;
	wb->high = HS_MAX(wb->high, off + len);
	if (wb->unflushed >= WRITEBACK_LAG && wb->high > WRITEBACK_LAG && !wb->busy) {
		done = wb->high - WRITEBACK_LAG;
		wb->unflushed = 0;
		wb->busy = true;
	}
	pthread_mutex_unlock(&wb->mu);
	if (!done)
		return;
	(void)sync_file_range(wb->fd, 0, (off_t)done,
			      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				      SYNC_FILE_RANGE_WAIT_AFTER);
	(void)posix_fadvise(wb->fd, 0, (off_t)done, POSIX_FADV_DONTNEED);
	pthread_mutex_lock(&wb->mu);
	wb->busy = false;
	pthread_mutex_unlock(&wb->mu);
}
