/* dev_fault.c - a struct dev wrapper that fails on demand and loses power.
 *
 * Faults: after a given number of reads or writes (or from now on), every
 * further one fails with the chosen errno, until cleared.
 *
 * Power loss: in crash mode every write is applied to the inner device (the
 * volatile view everyone reads) and also kept in a log of writes not yet
 * flushed; a flush empties the log into a durable copy.  dev_fault_crash()
 * then builds what the disk would hold after a power cut: the durable copy
 * plus a random subset of the unflushed writes (each one in full, or not at
 * all, or cut at a sector boundary), and makes that the new content.  This
 * is SQLite's crash-test device, for the engine's unit tests.
 *
 * Holds: writes wait inside the device until released, so a test can act
 * while a write is in flight. */
#include "dev_fault.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct pending {
	uint64_t off;
	uint64_t len;
	uint8_t *data;
	bool fua; /* durable the moment it completed: always lands */
};

struct dev_fault {
	struct dev dev;
	struct dev *inner;
	pthread_mutex_t mu;
	/* faults */
	long reads_left, writes_left; /* -1: no fault planned */
	int fail_errno;
	uint64_t reads, writes, failures;
	/* holds */
	pthread_cond_t held_cv;
	bool hold;
	unsigned waiting; /* writes held now */
	/* power loss */
	bool crash_mode;
	uint8_t *durable;
	struct pending *log;
	size_t nlog, caplog;
};

static struct dev_fault *to_fault(struct dev *d)
{
	return (struct dev_fault *)d;
}

/* Counts one operation; true when it must fail. */
static bool should_fail(struct dev_fault *f, bool write)
{
	bool fail = false;
	long *left = write ? &f->writes_left : &f->reads_left;

	pthread_mutex_lock(&f->mu);
	if (write)
		f->writes++;
	else
		f->reads++;
	if (*left == 0) {
		fail = true;
		f->failures++;
	} else if (*left > 0) {
		(*left)--;
	}
	pthread_mutex_unlock(&f->mu);
	return fail;
}

static uint64_t iov_len(const struct iovec *iov, int n)
{
	uint64_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static int fault_preadv(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
			unsigned flags)
{
	struct dev_fault *f = to_fault(d);
	if (should_fail(f, false))
		return -f->fail_errno;
	return f->inner->ops->preadv(f->inner, iov, iovcnt, off, flags);
}

/* Remembers a write that is not durable yet (crash mode). */
static int log_write(struct dev_fault *f, const struct iovec *iov, int iovcnt, uint64_t off,
		     bool fua)
{
	uint64_t len = iov_len(iov, iovcnt), pos = 0;
	struct pending p = { .off = off, .len = len, .data = malloc(len ? len : 1), .fua = fua };

	if (!p.data)
		return -ENOMEM;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(p.data + pos, iov[i].iov_base, iov[i].iov_len);
		pos += iov[i].iov_len;
	}
	pthread_mutex_lock(&f->mu);
	if (f->nlog == f->caplog) {
		size_t cap = f->caplog ? f->caplog * 2 : 64;
		struct pending *l = realloc(f->log, cap * sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&f->mu);
			free(p.data);
			return -ENOMEM;
		}
		f->log = l;
		f->caplog = cap;
	}
	f->log[f->nlog++] = p;
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static void make_durable_locked(struct dev_fault *f)
{
	for (size_t i = 0; i < f->nlog; i++) {
		memcpy(f->durable + f->log[i].off, f->log[i].data, f->log[i].len);
		free(f->log[i].data);
	}
	f->nlog = 0;
}

static int fault_pwritev(struct dev *d, const struct iovec *iov, int iovcnt, uint64_t off,
			 unsigned flags)
{
	struct dev_fault *f = to_fault(d);
	int r;

	if (should_fail(f, true))
		return -f->fail_errno;
	pthread_mutex_lock(&f->mu);
	if (f->hold) {
		f->waiting++;
		pthread_cond_broadcast(&f->held_cv);
		while (f->hold)
			pthread_cond_wait(&f->held_cv, &f->mu);
		f->waiting--;
	}
	pthread_mutex_unlock(&f->mu);
	r = f->inner->ops->pwritev(f->inner, iov, iovcnt, off, flags);
	if (r == 0 && f->crash_mode) {
		bool fua = flags & DEV_WRITE_FUA;
		r = log_write(f, iov, iovcnt, off, fua);
		if (r == 0 && fua) {
			/* FUA: this write is durable now (earlier ones need not be) */
			pthread_mutex_lock(&f->mu);
			struct pending *p = &f->log[f->nlog - 1];
			memcpy(f->durable + p->off, p->data, p->len);
			pthread_mutex_unlock(&f->mu);
		}
	}
	return r;
}

static int fault_flush(struct dev *d)
{
	struct dev_fault *f = to_fault(d);
	int r;

	if (should_fail(f, true))
		return -f->fail_errno;
	r = f->inner->ops->flush(f->inner);
	if (r == 0 && f->crash_mode) {
		pthread_mutex_lock(&f->mu);
		make_durable_locked(f);
		pthread_mutex_unlock(&f->mu);
	}
	return r;
}

static int zero_through_write(struct dev_fault *f, uint64_t off, uint64_t len)
{
	uint8_t *z = calloc(1, len ? len : 1);
	struct iovec iov = { .iov_base = z, .iov_len = len };
	int r;

	if (!z)
		return -ENOMEM;
	r = fault_pwritev(&f->dev, &iov, 1, off, 0);
	free(z);
	return r;
}

static int fault_discard(struct dev *d, uint64_t off, uint64_t len)
{
	struct dev_fault *f = to_fault(d);
	if (f->crash_mode)
		return zero_through_write(f, off, len); /* logged like a write */
	if (should_fail(f, true))
		return -f->fail_errno;
	return f->inner->ops->discard(f->inner, off, len);
}

static int fault_write_zeroes(struct dev *d, uint64_t off, uint64_t len, bool may_unmap)
{
	struct dev_fault *f = to_fault(d);
	if (f->crash_mode)
		return zero_through_write(f, off, len);
	if (should_fail(f, true))
		return -f->fail_errno;
	return f->inner->ops->write_zeroes(f->inner, off, len, may_unmap);
}

static int fault_extent(struct dev *d, uint64_t off, uint64_t max_len, enum dev_extent_type *type,
			uint64_t *len)
{
	struct dev_fault *f = to_fault(d);
	if (!f->inner->ops->extent) {
		*type = DEV_EXTENT_DATA;
		*len = max_len;
		return 0;
	}
	return f->inner->ops->extent(f->inner, off, max_len, type, len);
}

static int fault_stamp(struct dev *d, struct dev_stamp *out)
{
	struct dev_fault *f = to_fault(d);
	return f->inner->ops->stamp ? f->inner->ops->stamp(f->inner, out) : -ENOTSUP;
}

static void fault_destroy(struct dev *d)
{
	struct dev_fault *f = to_fault(d);
	make_durable_locked(f); /* frees the log */
	free(f->log);
	free(f->durable);
	dev_destroy(f->inner);
	pthread_cond_destroy(&f->held_cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

static const struct dev_ops dev_fault_ops = {
	.kind = "fault",
	.preadv = fault_preadv,
	.pwritev = fault_pwritev,
	.flush = fault_flush,
	.discard = fault_discard,
	.write_zeroes = fault_write_zeroes,
	.extent = fault_extent,
	.stamp = fault_stamp,
	.destroy = fault_destroy,
};

int dev_fault_wrap(struct dev **out, struct dev *inner, bool crash_mode)
{
	struct dev_fault *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->dev.ops = &dev_fault_ops;
	f->dev.size = inner->size;
	f->dev.align = inner->align;
	f->inner = inner;
	f->reads_left = f->writes_left = -1;
	f->fail_errno = EIO;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->held_cv, NULL);
	if (crash_mode) {
		f->crash_mode = true;
		f->durable = malloc(inner->size ? inner->size : 1);
		if (!f->durable || dev_pread(inner, f->durable, inner->size, 0) < 0) {
			free(f->durable);
			free(f);
			return -ENOMEM;
		}
	}
	*out = &f->dev;
	return 0;
}

void dev_fault_fail(struct dev *d, long reads_after, long writes_after, int err)
{
	struct dev_fault *f = to_fault(d);
	pthread_mutex_lock(&f->mu);
	f->reads_left = reads_after;
	f->writes_left = writes_after;
	f->fail_errno = err;
	pthread_mutex_unlock(&f->mu);
}

uint64_t dev_fault_failures(struct dev *d)
{
	struct dev_fault *f = to_fault(d);
	uint64_t n;
	pthread_mutex_lock(&f->mu);
	n = f->failures;
	pthread_mutex_unlock(&f->mu);
	return n;
}

void dev_fault_hold_writes(struct dev *d, bool hold)
{
	struct dev_fault *f = to_fault(d);
	pthread_mutex_lock(&f->mu);
	f->hold = hold;
	pthread_cond_broadcast(&f->held_cv);
	pthread_mutex_unlock(&f->mu);
}

void dev_fault_wait_held(struct dev *d)
{
	struct dev_fault *f = to_fault(d);
	pthread_mutex_lock(&f->mu);
	while (!f->waiting)
		pthread_cond_wait(&f->held_cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

int dev_fault_crash(struct dev *d, uint64_t *seed, uint8_t *after)
{
	struct dev_fault *f = to_fault(d);
	uint64_t s = *seed;
	int r;

	pthread_mutex_lock(&f->mu);
	memcpy(after, f->durable, f->dev.size);
	for (size_t i = 0; i < f->nlog; i++) {
		struct pending *p = &f->log[i];
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		/* a FUA write landed before it completed; a drive never lets an
		 * older cached write land over it afterwards */
		switch (p->fua ? 1 : s % 3) {
		case 0: /* never reached the disk */
			break;
		case 1: /* reached it whole */
			memcpy(after + p->off, p->data, p->len);
			break;
		default: { /* torn: its first sectors only */
			uint64_t sectors = p->len / 512;
			uint64_t keep = sectors ? (s >> 8) % sectors * 512 : 0;
			memcpy(after + p->off, p->data, keep);
		}
		}
		free(p->data);
	}
	f->nlog = 0;
	memcpy(f->durable, after, f->dev.size);
	pthread_mutex_unlock(&f->mu);
	*seed = s;
	/* the power is back: the volatile view is what survived */
	r = dev_pwrite(f->inner, after, f->dev.size, 0, false);
	return r;
}
