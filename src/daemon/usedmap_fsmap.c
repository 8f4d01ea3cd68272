/* usedmap_fsmap.c - the used-block map of a mounted file system from
 * FS_IOC_GETFSMAP.  See usedmap.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fsmap.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "usedmap.h"

#define RECORDS 1024

/* Clears the chunks that lie wholly inside the free run [off, end). */
static int clear_free(struct bitmap *used, uint64_t size, unsigned shift, uint64_t off,
		      uint64_t end)
{
	uint64_t chunk = UINT64_C(1) << shift;
	uint64_t c0 = (off + chunk - 1) >> shift;
	uint64_t c1;

	if (end > size)
		end = size;
	if (end <= off)
		return 0;
	/* the volume's last chunk may be short: it ends at size */
	c1 = end == size ? (size + chunk - 1) >> shift : end >> shift;
	return c1 > c0 ? bitmap_clear_range(used, c0, c1 - c0) : 0;
}

int usedmap_from_fsmap(const char *mountpoint, dev_t rdev, uint64_t size, unsigned chunk_shift,
		       struct bitmap *used)
{
	struct fsmap_head *head;
	uint64_t nchunks = (size + (UINT64_C(1) << chunk_shift) - 1) >> chunk_shift;
	uint64_t run_start = 0, run_end = 0; /* free run being merged */
	uint64_t records = 0;
	int fd, r;

	head = calloc(1, fsmap_sizeof(RECORDS));
	if (!head)
		return -ENOMEM;
	fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out_free;
	}
	/* Everything is in use unless the file system says it is free: GETFSMAP
	 * may leave allocated extents out altogether (ext4 on Linux 6.18 does),
	 * so a gap between records must never be taken for free space. */
	r = bitmap_init(used, nchunks, true);
	if (r < 0)
		goto out_close;
	/* the whole key space: low key zero, high key all ones (but for its
	 * reserved fields, which must stay zero) */
	head->fmh_keys[1].fmr_device = UINT32_MAX;
	head->fmh_keys[1].fmr_flags = UINT32_MAX;
	head->fmh_keys[1].fmr_physical = UINT64_MAX;
	head->fmh_keys[1].fmr_owner = UINT64_MAX;
	head->fmh_keys[1].fmr_offset = UINT64_MAX;
	head->fmh_count = RECORDS;
	for (;;) {
		if (ioctl(fd, FS_IOC_GETFSMAP, head) < 0) {
			r = (errno == ENOTTY || errno == EOPNOTSUPP) ? -ENOTSUP : -errno;
			goto out_map;
		}
		if (head->fmh_entries == 0)
			break;
		for (unsigned i = 0; i < head->fmh_entries; i++) {
			struct fsmap *m = &head->fmh_recs[i];
			records++;
			/* records of an external log or realtime device are not ours */
			if (m->fmr_device != (uint32_t)rdev && m->fmr_device != 0)
				continue;
			if (m->fmr_owner != FMR_OWN_FREE)
				continue;
			/* records come in address order: merge touching free runs so
			 * a chunk made of two free pieces counts as free */
			if (m->fmr_physical == run_end && run_end > run_start) {
				run_end += m->fmr_length;
				continue;
			}
			r = clear_free(used, size, chunk_shift, run_start, run_end);
			if (r < 0)
				goto out_map;
			run_start = m->fmr_physical;
			run_end = m->fmr_physical + m->fmr_length;
		}
		struct fsmap *last = &head->fmh_recs[head->fmh_entries - 1];
		if (last->fmr_flags & FMR_OF_LAST)
			break;
		head->fmh_keys[0] = *last; /* continue after the last record */
	}
	r = clear_free(used, size, chunk_shift, run_start, run_end);
	if (r < 0)
		goto out_map;
	/* Every file system keeps its super block at the start: a map that
	 * calls it free is not to be trusted. */
	if (records == 0 || !bitmap_test(used, 0)) {
		hs_warn("GETFSMAP on %s gave an implausible map; protecting every block",
			mountpoint);
		r = -ENOTSUP;
		goto out_map;
	}
	r = 0;
	goto out_close;
out_map:
	bitmap_destroy(used);
out_close:
	close(fd);
out_free:
	free(head);
	return r;
}
