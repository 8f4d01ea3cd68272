/* nbd_transport.c - the socket transport, and helpers over any transport.
 *
 * Writes use MSG_NOSIGNAL so a client that went away gives -EPIPE here, never
 * a SIGPIPE that would end the daemon.  The descriptor is closed only by
 * close(), after every thread that used it is joined; shutdown() is what
 * another thread calls to wake a blocked reader or writer, because closing
 * a descriptor another thread may still use invites fd reuse races. */
#include "nbd_transport.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/compiler.h"

struct nbd_socket {
	struct nbd_transport t;
	int fd;
};

static int sock_fd(struct nbd_transport *t)
{
	return hs_container_of(t, struct nbd_socket, t)->fd;
}

static int sock_read(struct nbd_transport *t, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = recv(sock_fd(t), p, len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int sock_writev(struct nbd_transport *t, const struct iovec *iov_in, int iovcnt)
{
	struct iovec iov[8];
	struct msghdr msg = { .msg_iov = iov };

	if (iovcnt < 1 || iovcnt > (int)HS_ARRAY_SIZE(iov))
		return -EINVAL;
	memcpy(iov, iov_in, sizeof(iov[0]) * (size_t)iovcnt);
	msg.msg_iovlen = (size_t)iovcnt;
	while (msg.msg_iovlen > 0) {
		ssize_t n = sendmsg(sock_fd(t), &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* step over what went out */
		while (msg.msg_iovlen > 0 && (size_t)n >= msg.msg_iov->iov_len) {
			n -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen > 0) {
			msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
			msg.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static void sock_shutdown(struct nbd_transport *t)
{
	shutdown(sock_fd(t), SHUT_RDWR);
}

static int sock_set_read_timeout(struct nbd_transport *t, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	return setsockopt(sock_fd(t), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ? -errno : 0;
}

static void sock_close(struct nbd_transport *t)
{
	struct nbd_socket *s = hs_container_of(t, struct nbd_socket, t);
	close(s->fd);
	free(s);
}

static const struct nbd_transport_ops socket_ops = {
	.read = sock_read,
	.writev = sock_writev,
	.shutdown = sock_shutdown,
	.set_read_timeout = sock_set_read_timeout,
	.close = sock_close,
};

struct nbd_transport *nbd_transport_socket(int fd)
{
	struct nbd_socket *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return NULL;
	}
	s->t.ops = &socket_ops;
	s->fd = fd;
	return &s->t;
}

int nbd_transport_socket_fd(struct nbd_transport *t)
{
	return t->ops == &socket_ops ? sock_fd(t) : -1;
}

int nbd_skip(struct nbd_transport *t, uint64_t len)
{
	uint8_t scratch[4096];

	while (len > 0) {
		size_t n = len < sizeof(scratch) ? (size_t)len : sizeof(scratch);
		int r = nbd_read_full(t, scratch, n);
		if (r)
			return r;
		len -= n;
	}
	return 0;
}
