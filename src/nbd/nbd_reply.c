/* nbd_reply.c - replies of the transmission phase.
 *
 * Each message (a simple reply with its data, or one structured chunk with
 * its payload) goes out in one writev under the connection's send_mu, so
 * replies of requests running on different workers never interleave inside
 * a message.  The first failed send marks the connection dead and shuts the
 * transport: the reader wakes, workers drop what is queued. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "nbd_internal.h"

static int send_locked(struct nbd_conn *c, struct iovec *iov, int n)
{
	int r;

	if (atomic_load(&c->dead))
		return -EPIPE;
	r = nbd_writev_full(c->t, iov, n);
	if (r) {
		atomic_store(&c->dead, true);
		c->t->ops->shutdown(c->t);
	}
	return r;
}

int nbd_reply_simple(struct nbd_conn *c, uint64_t cookie, uint32_t error, const void *data,
		     size_t len)
{
	struct nbd_simple_reply h = {
		.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
		.error = htobe32(error),
		.cookie = cookie, /* opaque: echoed as received */
	};
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)data, .iov_len = len },
	};
	int r;

	pthread_mutex_lock(&c->send_mu);
	r = send_locked(c, iov, len ? 2 : 1);
	pthread_mutex_unlock(&c->send_mu);
	return r;
}

int nbd_reply_chunk(struct nbd_conn *c, uint64_t cookie, uint16_t flags, uint16_t type,
		    const void *head, size_t head_len, const void *data, size_t data_len)
{
	struct nbd_chunk h = {
		.magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
		.flags = htobe16(flags),
		.type = htobe16(type),
		.cookie = cookie,
		.length = htobe32((uint32_t)(head_len + data_len)),
	};
	struct iovec iov[3] = { { .iov_base = &h, .iov_len = sizeof(h) } };
	int n = 1, r;

	if (head_len)
		iov[n++] = (struct iovec){ .iov_base = (void *)head, .iov_len = head_len };
	if (data_len)
		iov[n++] = (struct iovec){ .iov_base = (void *)data, .iov_len = data_len };
	pthread_mutex_lock(&c->send_mu);
	r = send_locked(c, iov, n);
	pthread_mutex_unlock(&c->send_mu);
	return r;
}

int nbd_reply_error(struct nbd_conn *c, uint64_t cookie, uint32_t error, const char *msg)
{
	struct nbd_chunk_error e;
	size_t len = msg ? strnlen(msg, 1024) : 0;

	if (!c->structured)
		return nbd_reply_simple(c, cookie, error, NULL, 0);
	e.error = htobe32(error);
	e.msg_len = htobe16((uint16_t)len);
	return nbd_reply_chunk(c, cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, &e,
			       sizeof(e), msg, len);
}

int nbd_reply_ok(struct nbd_conn *c, uint64_t cookie)
{
	return nbd_reply_simple(c, cookie, 0, NULL, 0);
}
