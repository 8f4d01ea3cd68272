/* nbd_tls.c - see nbd_tls.h. */
#include "nbd_tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "nbd_internal.h"

struct tls_transport {
	struct nbd_transport t;
	struct nbd_transport *raw; /* the socket; shut down and closed through it */
	struct tls_session *s;
};

static struct tls_session *sess(struct nbd_transport *t)
{
	return hs_container_of(t, struct tls_transport, t)->s;
}

static int tls_read(struct nbd_transport *t, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = tls_recv(sess(t), p, len);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Small pieces (a reply header and a short payload) go out as one record;
 * big payloads as they are, so no reply is copied whole. */
static int tls_writev(struct nbd_transport *t, const struct iovec *iov, int iovcnt)
{
	uint8_t small[4096];
	size_t total = 0;
	int r = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total <= sizeof(small)) {
		size_t at = 0;
		for (int i = 0; i < iovcnt; i++) {
			memcpy(small + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		return tls_send_all(sess(t), small, total);
	}
	for (int i = 0; i < iovcnt && r == 0; i++)
		r = tls_send_all(sess(t), iov[i].iov_base, iov[i].iov_len);
	return r;
}

static void tls_shutdown(struct nbd_transport *t)
{
	struct tls_transport *x = hs_container_of(t, struct tls_transport, t);
	x->raw->ops->shutdown(x->raw);
}

static int tls_set_read_timeout(struct nbd_transport *t, unsigned seconds)
{
	struct tls_transport *x = hs_container_of(t, struct tls_transport, t);
	return x->raw->ops->set_read_timeout ? x->raw->ops->set_read_timeout(x->raw, seconds) : 0;
}

static void tls_close(struct nbd_transport *t)
{
	struct tls_transport *x = hs_container_of(t, struct tls_transport, t);
	tls_session_free(x->s);
	x->raw->ops->close(x->raw);
	free(x);
}

static const struct nbd_transport_ops tls_ops = {
	.read = tls_read,
	.writev = tls_writev,
	.shutdown = tls_shutdown,
	.set_read_timeout = tls_set_read_timeout,
	.close = tls_close,
};

int nbd_tls_upgrade(struct tls_creds *creds, struct nbd_transport *raw,
		    struct nbd_transport **out, char *peer, size_t peerlen, char *why,
		    size_t whylen)
{
	int fd = nbd_transport_socket_fd(raw);
	struct tls_session *s;
	int r;

	*out = NULL;
	if (fd < 0) {
		snprintf(why, whylen, "TLS runs over sockets only");
		return -ENOTSUP;
	}
	r = tls_accept(creds, fd, NBD_HANDSHAKE_TIMEOUT, &s, peer, peerlen, why, whylen);
	if (r)
		return r;
	struct tls_transport *x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(why, whylen, "out of memory");
		tls_session_free(s);
		return -ENOMEM;
	}
	x->t.ops = &tls_ops;
	x->raw = raw;
	x->s = s;
	char desc[128];
	size_t used = strlen(peer);
	snprintf(peer + used, peerlen - used, " %s", tls_session_desc(s, desc, sizeof(desc)));
	*out = &x->t;
	return 0;
}
