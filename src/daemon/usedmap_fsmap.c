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

static int mark(struct bitmap *used, uint64_t size, unsigned shift, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= size)
		return 0;
	if (len > size - off)
		len = size - off;
	uint64_t c0 = off >> shift, c1 = (off + len - 1) >> shift;
	return bitmap_set_range(used, c0, c1 - c0 + 1);
}

int usedmap_from_fsmap(const char *mountpoint, dev_t rdev, uint64_t size, unsigned chunk_shift,
		       struct bitmap *used)
{
	struct fsmap_head *head;
	uint64_t nchunks = (size + (UINT64_C(1) << chunk_shift) - 1) >> chunk_shift;
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
	r = bitmap_init(used, nchunks, false);
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
			/* records of an external log or realtime device are not ours */
			if (m->fmr_device != (uint32_t)rdev && m->fmr_device != 0)
				continue;
			if (m->fmr_owner == FMR_OWN_FREE)
				continue;
			r = mark(used, size, chunk_shift, m->fmr_physical, m->fmr_length);
			if (r < 0)
				goto out_map;
			records++;
		}
		struct fsmap *last = &head->fmh_recs[head->fmh_entries - 1];
		if (last->fmr_flags & FMR_OF_LAST)
			break;
		head->fmh_keys[0] = *last; /* continue after the last record */
	}
	/* A map with nothing in use, or without the first block (where every
	 * file system keeps its super block), is not to be trusted. */
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
