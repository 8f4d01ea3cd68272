/* nbd_transport.h - the byte stream under an NBD connection.
 *
 * The protocol code never calls recv() or send(): it reads and writes whole
 * messages through a transport.  Today there are two: a socket (below) and
 * the fuzzer's in-memory stream, and TLS over a socket (nbd_tls.c), which
 * slots in after STARTTLS without touching the protocol.  Every call moves the whole length or fails: 0 or -errno, and
 * -ECONNRESET when the peer closed the stream. */
#ifndef HS_NBD_TRANSPORT_H
#define HS_NBD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct nbd_transport;

struct nbd_transport_ops {
	int (*read)(struct nbd_transport *t, void *buf, size_t len);
	int (*writev)(struct nbd_transport *t, const struct iovec *iov, int iovcnt);
	/* Makes blocked and later reads and writes fail at once.  Safe from
	 * another thread while one is blocked in read or writev. */
	void (*shutdown)(struct nbd_transport *t);
	/* A read that waits longer than this fails with -ETIMEDOUT; 0 = no
	 * limit.  Optional. */
	int (*set_read_timeout)(struct nbd_transport *t, unsigned seconds);
	void (*close)(struct nbd_transport *t);
};

struct nbd_transport {
	const struct nbd_transport_ops *ops; /* first */
};

static inline int nbd_read_full(struct nbd_transport *t, void *buf, size_t len)
{
	return len ? t->ops->read(t, buf, len) : 0;
}

static inline int nbd_write_full(struct nbd_transport *t, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return len ? t->ops->writev(t, &iov, 1) : 0;
}

static inline int nbd_writev_full(struct nbd_transport *t, const struct iovec *iov, int iovcnt)
{
	return t->ops->writev(t, iov, iovcnt);
}

/* Reads and drops len bytes (a payload the server refuses). */
int nbd_skip(struct nbd_transport *t, uint64_t len);

/* A connected stream socket; takes ownership of fd (also on failure).
 * NULL when out of memory. */
struct nbd_transport *nbd_transport_socket(int fd);
/* The descriptor of a socket transport; -1 for any other transport. */
int nbd_transport_socket_fd(struct nbd_transport *t);

#endif
