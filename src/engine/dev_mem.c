/* dev_mem.c - struct dev over memory, for unit tests and benchmarks of the
 * engine without any disk.  Concurrent writes to the same bytes race exactly
 * as they would on a disk; the engine, not the device, orders them. */
#include "dev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "common/clock.h"

struct dev_mem {
	struct dev dev;
	uint8_t *data;
	bool shared;                   /* data belongs to another dev_mem */
	atomic_uint_fast64_t mtime_ns; /* of the last change, like a file's */
	bool fixed_stamp;              /* a test chose what stamp() says */
	struct dev_stamp stamp;
};

static struct dev_mem *to_mem(struct dev *d)
{
	return (struct dev_mem *)d;
}

static int mem_check(struct dev *d, uint64_t off, uint64_t len)
{
	if (off > d->size || len > d->size - off)
		return -EIO;
	return 0;
}

static uint64_t iov_total(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static int mem_preadv(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
		      unsigned flags)
{
	int r = mem_check(d, off, iov_total(iov, iovcnt));
	if (r)
		return r;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, to_mem(d)->data + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return 0;
}

static int mem_pwritev(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
		       unsigned flags)
{
	(void)flags;
	int r = mem_check(d, off, iov_total(iov, iovcnt));
	if (r)
		return r;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(to_mem(d)->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	atomic_store(&to_mem(d)->mtime_ns, clock_wall_ns());
	return 0;
}

static int mem_flush(struct dev *d)
{
	(void)d;
	return 0;
}

static int mem_zero(struct dev *d, uint64_t off, uint64_t len, bool may_unmap)
{
	(void)may_unmap;
	int r = mem_check(d, off, len);
	if (r)
		return r;
	memset(to_mem(d)->data + off, 0, len);
	atomic_store(&to_mem(d)->mtime_ns, clock_wall_ns());
	return 0;
}

static int mem_stamp(struct dev *d, struct dev_stamp *out)
{
	if (to_mem(d)->fixed_stamp) {
		*out = to_mem(d)->stamp;
		return 0;
	}
	out->size = d->size;
	out->mtime_ns = out->ctime_ns = atomic_load(&to_mem(d)->mtime_ns);
	return 0;
}

static int mem_discard(struct dev *d, uint64_t off, uint64_t len)
{
	return mem_zero(d, off, len, true);
}

static void mem_destroy(struct dev *d)
{
	if (!to_mem(d)->shared)
		munmap(to_mem(d)->data, d->size ? d->size : 1);
	free(d);
}

static const struct dev_ops dev_mem_ops = {
	.kind = "memory",
	.preadv = mem_preadv,
	.pwritev = mem_pwritev,
	.flush = mem_flush,
	.discard = mem_discard,
	.write_zeroes = mem_zero,
	.extent = NULL,
	.stamp = mem_stamp,
	.destroy = mem_destroy,
};

int dev_mem_create(struct dev **out, uint64_t size)
{
	struct dev_mem *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	/* mmap keeps untouched pages out of RSS, so a big sparse device is cheap. */
	m->data = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->data == MAP_FAILED) {
		free(m);
		return -ENOMEM;
	}
	m->dev.ops = &dev_mem_ops;
	m->dev.size = size;
	m->dev.align = 1;
	*out = &m->dev;
	return 0;
}

uint8_t *dev_mem_data(struct dev *d)
{
	return to_mem(d)->data;
}

int dev_mem_share(struct dev **out, struct dev *original)
{
	struct dev_mem *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	*m = *to_mem(original);
	m->shared = true;
	*out = &m->dev;
	return 0;
}

void dev_mem_set_stamp(struct dev *d, const struct dev_stamp *st)
{
	to_mem(d)->fixed_stamp = st != NULL;
	if (st)
		to_mem(d)->stamp = *st;
}
