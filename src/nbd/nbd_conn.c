/* nbd_conn.c - one client connection: the request loop.
 *
 * Notes on the design
 *
 * Threads.  The connection thread runs the handshake, then becomes the
 * reader: it reads a request header, validates every field (this is the
 * boundary; nbd_cmd.c only asserts), reads a WRITE payload into a buffer that
 * belongs to that request alone, and queues the request.  NBD_CONN_WORKERS
 * workers take requests off the queue, run them on the export and send the
 * replies, so replies may leave out of order; a reply chunk goes out whole
 * under send_mu (nbd_reply.c).
 *
 * Bounds.  At most NBD_MAX_INFLIGHT requests are read but not yet answered,
 * and their READ/WRITE lengths add up to at most NBD_MAX_INFLIGHT_BYTES
 * (one request of any valid length is always let through): the reader waits
 * for room before it reads more from the socket, so a client that floods
 * requests without reading replies stops itself and nobody else.
 *
 * Ending.  The reader stops on NBD_CMD_DISC, end of stream, a protocol error
 * it cannot answer (bad magic, a payload too big to skip), or a dead stream.
 * It then sets draining; workers finish what is queued (DISC: "handle all
 * outstanding requests") and exit, and the reader joins them.  When a send
 * fails or nbd_conn_kill() is called, dead is set and the transport shut
 * down: blocked reads and writes return at once and workers drop queued
 * requests without running them (no reply could reach the client anyway). */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "nbd_internal.h"

#define NBD_MAX_INFLIGHT_BYTES (64u << 20)

/* --- the boundary ------------------------------------------------------------- */

static uint16_t allowed_flags(const struct nbd_conn *c, uint16_t type)
{
	/* FUA is valid on every command once advertised (the spec). */
	switch (type) {
	case NBD_CMD_READ:
		return NBD_CMD_FLAG_FUA | (c->structured ? NBD_CMD_FLAG_DF : 0);
	case NBD_CMD_WRITE_ZEROES:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
	case NBD_CMD_BLOCK_STATUS:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
	default:
		return NBD_CMD_FLAG_FUA;
	}
}

static void refuse(struct nbd_req *r, uint32_t error, const char *why)
{
	r->error = error;
	r->why = why;
}

/* Decides whether r may run; if not, sets the error it gets instead. */
static void validate(const struct nbd_conn *c, struct nbd_req *r)
{
	switch (r->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
	case NBD_CMD_WRITE_ZEROES:
	case NBD_CMD_BLOCK_STATUS:
		break;
	default:
		refuse(r, NBD_EINVAL, "unknown command");
		return;
	}
	if (r->flags & ~allowed_flags(c, r->type)) {
		refuse(r, NBD_EINVAL, "flag not valid for this command");
		return;
	}
	/* a volume served read-only by policy (TCP without --nbd-writable):
	 * nothing may change it, TRIM included */
	if (c->policy.volumes_readonly && export_kind(c->exp) == EXPORT_VOLUME &&
	    (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
	     r->type == NBD_CMD_WRITE_ZEROES)) {
		refuse(r, NBD_EPERM, "volumes are read-only over this listener "
				     "(the daemon's --nbd-writable allows writes)");
		return;
	}
	if (r->type == NBD_CMD_FLUSH)
		return; /* offset and length are reserved: ignored */
	if (r->offset > c->size || r->length > c->size - r->offset) {
		refuse(r, NBD_EINVAL, "request past the end of the export");
		return;
	}
	if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->length > c->max_block) {
		refuse(r, NBD_EINVAL, "request longer than the maximum block size");
		return;
	}
	if (r->type == NBD_CMD_BLOCK_STATUS) {
		if (!c->structured || !c->meta)
			refuse(r, NBD_EINVAL, "no metadata context was negotiated");
		else if (r->length == 0)
			refuse(r, NBD_EINVAL, "block status of nothing");
	}
}

/* Bytes of memory the request will hold while in flight. */
static uint64_t req_cost(const struct nbd_req *r)
{
	if (r->error)
		return 0;
	return r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE ? r->length : 0;
}

/* --- the queue ---------------------------------------------------------------- */

static void req_free(struct nbd_req *r)
{
	free(r->data);
	free(r);
}

/* The request is answered (or dropped): give its room back. */
static void req_done(struct nbd_conn *c, struct nbd_req *r)
{
	pthread_mutex_lock(&c->mu);
	assert(c->inflight > 0 && c->inflight_bytes >= req_cost(r));
	c->inflight--;
	c->inflight_bytes -= req_cost(r);
	pthread_cond_signal(&c->room);
	pthread_mutex_unlock(&c->mu);
	req_free(r);
}

/* Waits until a request of cost bytes fits, then counts it.  false when the
 * connection died meanwhile. */
static bool reserve(struct nbd_conn *c, uint64_t cost, bool need_slot)
{
	bool ok;

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->dead) &&
	       ((need_slot && c->inflight >= NBD_MAX_INFLIGHT) ||
		(cost && c->inflight > 0 && c->inflight_bytes + cost > NBD_MAX_INFLIGHT_BYTES)))
		pthread_cond_wait(&c->room, &c->mu);
	ok = !atomic_load(&c->dead);
	pthread_mutex_unlock(&c->mu);
	return ok;
}

static void *worker_main(void *arg)
{
	struct nbd_conn *c = arg;

	for (;;) {
		struct nbd_req *r;

		pthread_mutex_lock(&c->mu);
		while (!c->head && !c->draining)
			pthread_cond_wait(&c->work, &c->mu);
		r = c->head;
		if (r) {
			c->head = r->next;
			if (!c->head)
				c->tail = NULL;
		}
		pthread_mutex_unlock(&c->mu);
		if (!r)
			return NULL; /* draining and nothing left */
		if (!atomic_load(&c->dead))
			nbd_cmd_run(c, r);
		req_done(c, r);
	}
}

static void enqueue(struct nbd_conn *c, struct nbd_req *r)
{
	pthread_mutex_lock(&c->mu);
	r->next = NULL;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->mu);
}

/* --- the reader ------------------------------------------------------------------ */

/* Reads the next request.  0 with *out set (to be run or refused), 1 on
 * NBD_CMD_DISC, -errno to close.  Waits for room before taking anything
 * that costs memory off the socket. */
static int read_request(struct nbd_conn *c, struct nbd_req **out)
{
	struct nbd_request h;
	struct nbd_req *r;
	int err;

	if (!reserve(c, 0, true))
		return -EPIPE;
	err = nbd_read_full(c->t, &h, sizeof(h));
	if (err)
		return err;
	if (be32toh(h.magic) != NBD_REQUEST_MAGIC)
		return -EPROTO; /* no way to find the next request */
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cookie = h.cookie;
	r->flags = be16toh(h.flags);
	r->type = be16toh(h.type);
	r->offset = be64toh(h.offset);
	r->length = be32toh(h.length);
	if (r->type == NBD_CMD_DISC) {
		free(r);
		return 1;
	}
	validate(c, r);

	if (r->type == NBD_CMD_WRITE && r->error) {
		/* Refused: its payload must still leave the stream.  Beyond
		 * NBD_MAX_DISCARD we would rather hang up than read on. */
		if (r->length > NBD_MAX_DISCARD) {
			free(r);
			return -EPROTO;
		}
		err = nbd_skip(c->t, r->length);
	} else if (r->type == NBD_CMD_WRITE) {
		if (!reserve(c, r->length, false)) {
			free(r);
			return -EPIPE;
		}
		r->data = malloc(r->length ? r->length : 1);
		if (r->data) {
			err = nbd_read_full(c->t, r->data, r->length);
		} else {
			refuse(r, NBD_ENOMEM, "out of memory");
			err = nbd_skip(c->t, r->length);
		}
	} else if (!reserve(c, req_cost(r), false)) {
		err = -EPIPE;
	}
	if (err) {
		req_free(r);
		return err;
	}
	pthread_mutex_lock(&c->mu);
	c->inflight++;
	c->inflight_bytes += req_cost(r);
	pthread_mutex_unlock(&c->mu);
	*out = r;
	return 0;
}

static void transmission(struct nbd_conn *c)
{
	for (unsigned i = 0; i < c->nworkers; i++) {
		if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0)
			break;
		c->nstarted++;
	}
	for (;;) {
		struct nbd_req *r = NULL;
		if (read_request(c, &r) != 0)
			break;
		if (c->nstarted == 0) {
			/* no workers (fuzzing, or none could start): run inline */
			nbd_cmd_run(c, r);
			req_done(c, r);
		} else {
			enqueue(c, r);
		}
	}
	pthread_mutex_lock(&c->mu);
	c->draining = true;
	pthread_cond_broadcast(&c->work);
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; i < c->nstarted; i++)
		pthread_join(c->workers[i], NULL);
	c->nstarted = 0;
	assert(!c->head && c->inflight == 0);
}

/* --- lifecycle ----------------------------------------------------------------- */

struct nbd_conn *nbd_conn_new(struct nbd_transport *t, const struct nbd_catalog *catalog,
			      unsigned nworkers)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		t->ops->close(t);
		return NULL;
	}
	c->t = c->raw = t;
	c->catalog = catalog;
	c->nworkers = HS_MIN(nworkers, NBD_CONN_WORKERS);
	atomic_init(&c->dead, false);
	pthread_mutex_init(&c->send_mu, NULL);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->room, NULL);
	return c;
}

void nbd_conn_set_policy(struct nbd_conn *c, const struct nbd_policy *p)
{
	c->policy = *p;
}

void nbd_conn_serve(struct nbd_conn *c)
{
	int err;

	/* a client that connects and never finishes the handshake must not
	 * hold a connection slot for ever */
	if (c->t->ops->set_read_timeout)
		c->t->ops->set_read_timeout(c->t, NBD_HANDSHAKE_TIMEOUT);
	err = nbd_handshake(c);
	if (err)
		return;
	assert(c->exp);
	/* idle clients are normal once connected */
	if (c->t->ops->set_read_timeout)
		c->t->ops->set_read_timeout(c->t, 0);
	transmission(c);
}

void nbd_conn_kill(struct nbd_conn *c)
{
	atomic_store(&c->dead, true);
	/* the socket, not c->t: the handshake thread may be putting TLS over it */
	c->raw->ops->shutdown(c->raw);
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->room);
	pthread_cond_broadcast(&c->work);
	pthread_mutex_unlock(&c->mu);
}

void nbd_conn_free(struct nbd_conn *c)
{
	if (!c)
		return;
	export_close(c->exp);
	export_changes_free(c->changes);
	c->t->ops->close(c->t);
	pthread_cond_destroy(&c->room);
	pthread_cond_destroy(&c->work);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->send_mu);
	free(c);
}
