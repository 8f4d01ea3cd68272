/* fuse_init_hook.c - libfuse's reads and writes of /dev/fuse, seen on the
 * way through (fuse_session_custom_io), so that the ring can be accepted in
 * the INIT reply that Debian 12's libfuse writes without knowing of it.
 *
 * Order matters, and the kernel sets it:
 *  1. the INIT request says whether the kernel offers the ring (flags2);
 *  2. the rings are set up before the reply: a reply that accepts the ring
 *     makes the kernel hold every new request until each queue has an entry,
 *     so nothing that can fail may come after it but the registrations;
 *  3. the reply is written with FUSE_OVER_IO_URING added; the kernel handles
 *     it inside the write, so when writev returns the connection is
 *     initialised and REGISTER is accepted;
 *  4. the entries are registered (fuse_uring_go), which, if it fails, sends
 *     the kernel back to /dev/fuse.
 * Only then is init_done signalled, so a start knows which transport serves.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "fuse/fuse_uring_abi.h"

/* With the ring serving, an INTERRUPT that comes over /dev/fuse is for a
 * request libfuse never saw: it would keep it on its list of interrupts
 * until some other request came over /dev/fuse, which may be never.  The
 * operations here are never interrupted anyway (the protocol lets a file
 * system ignore an INTERRUPT and answer the request as usual), so it is
 * dropped here and the next request read. */
static bool drop_interrupt(struct fuse_front *ff, const struct fuse_in_header *in)
{
	return in->opcode == FUSE_INTERRUPT && atomic_load_explicit(&ff->ring_serves,
								    memory_order_relaxed);
}

ssize_t ff_dev_read(int fd, void *buf, size_t len, void *userdata)
{
	struct fuse_front *ff = userdata;
	const struct fuse_in_header *in = buf;
	ssize_t n;

	do {
		n = read(fd, buf, len);
		if (n < (ssize_t)sizeof(*in))
			return n; /* errno as read left it, for libfuse */
		atomic_fetch_add(&ff->dev_requests, 1);
	} while (drop_interrupt(ff, in));
	if (in->opcode == FUSE_INIT &&
	    (size_t)n >= sizeof(*in) + offsetof(struct fuse_init_in, flags2) + sizeof(uint32_t)) {
		const struct fuse_init_in *ii = (const void *)(in + 1);
		pthread_mutex_lock(&ff->mu);
		ff->init_unique = in->unique;
		ff->ring_offered = (ii->flags & HS_FUSE_INIT_EXT) &&
				   (ii->flags2 & HS_FUSE_OVER_IO_URING_FLAGS2);
		pthread_mutex_unlock(&ff->mu);
	}
	return n;
}

/* The payload each ring entry needs: the kernel refuses a smaller one. */
static size_t ring_payload(const struct fuse_init_out *io)
{
	size_t pages = (io->flags & FUSE_MAX_PAGES) ? io->max_pages : 32;
	long page = sysconf(_SC_PAGESIZE);
	return HS_MAX(HS_MAX((size_t)8192, (size_t)io->max_write), pages * (size_t)HS_MAX(page, 4096));
}

static ssize_t answer_init(struct fuse_front *ff, int fd, struct iovec *iov, int count,
			   bool offered)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	struct fuse_init_out io;
	struct fuse_uring *fr = NULL;
	const char *why = NULL;
	char go_why[160];
	struct iovec v[2];
	ssize_t n;
	int err;

	if (count != 2 || oh->error != 0 || iov[1].iov_len != sizeof(io)) {
		why = "libfuse's INIT reply has an unexpected form";
	} else if (ff->mode == FUSE_TRANSPORT_DEV || (!offered && ff->why_not_ring[0])) {
		why = NULL; /* said at start, and said better (why it was not offered) */
	} else if (!offered) {
		why = "the kernel did not offer the ring in its INIT request";
	} else {
		memcpy(&io, iov[1].iov_base, sizeof(io));
		if (fuse_uring_prepare(ff, ff->dev_fd, ring_payload(&io), &fr, &why) == 0) {
			io.flags |= HS_FUSE_INIT_EXT;
			io.flags2 |= HS_FUSE_OVER_IO_URING_FLAGS2;
		}
	}
	if (fr) {
		v[0] = iov[0];
		v[1] = (struct iovec){ .iov_base = &io, .iov_len = sizeof(io) };
		iov = v;
	}
	n = writev(fd, iov, count);
	err = errno;
	if (fr && n < 0) {
		fuse_uring_discard(fr);
		fr = NULL;
		why = "the INIT reply that accepted the ring failed";
	} else if (fr && !fuse_uring_go(fr, go_why, sizeof(go_why))) {
		why = go_why;
		hs_warn("FUSE: the ring does not serve (%s); /dev/fuse serves", why);
	}
	pthread_mutex_lock(&ff->mu);
	ff->ring = fr; /* kept even when it failed: its threads end at stop */
	if (fr && !why) /* only ever set: a late ring request may have set it already */
		atomic_store(&ff->ring_serves, true);
	if (why)
		snprintf(ff->why_not_ring, sizeof(ff->why_not_ring), "%s", why);
	ff->init_unique = 0;
	ff->init_answered = true;
	pthread_cond_broadcast(&ff->init_done);
	pthread_mutex_unlock(&ff->mu);
	errno = err;
	return n;
}

ssize_t ff_dev_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fuse_front *ff = userdata;
	bool is_init = false, offered = false;

	if (count >= 1 && iov[0].iov_len == sizeof(struct fuse_out_header)) {
		const struct fuse_out_header *oh = iov[0].iov_base;
		pthread_mutex_lock(&ff->mu);
		is_init = ff->init_unique != 0 && oh->unique == ff->init_unique;
		offered = ff->ring_offered;
		pthread_mutex_unlock(&ff->mu);
	}
	if (is_init)
		return answer_init(ff, fd, iov, count, offered);
	return writev(fd, iov, count);
}
