/* fuzz_qcow2.c - the image reader on hostile bytes: the input is opened as
 * an image file (no backing file may be named), its whole view is read and
 * mapped.  Nothing a file holds may crash the reader or make it read or
 * allocate without bound; a damaged file is an error. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(void *arg, uint64_t off, uint64_t len, enum image_extent type)
{
	*(uint64_t *)arg += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[IMAGE_ERROR_MAX];
	struct image_reader *r;
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (image_open(&r, path, IMAGE_OPEN_NO_BACKING, err, sizeof(err)) == 0) {
		uint64_t vsize = image_get_info(r)->size, mapped = 0;
		uint8_t *buf = malloc(1 << 20);
		/* a view may claim terabytes of holes: read a bounded sample */
		for (uint64_t off = 0; buf && off < vsize && off < (UINT64_C(64) << 20);
		     off += 1 << 20) {
			size_t n = (size_t)(vsize - off < (1 << 20) ? vsize - off : (1 << 20));
			if (image_read(r, buf, n, off) < 0)
				break;
		}
		(void)image_map(r, 0, vsize < (UINT64_C(1) << 30) ? vsize : UINT64_C(1) << 30, count,
				&mapped);
		free(buf);
		image_close(r);
	}
	close(fd);
	return 0;
}
