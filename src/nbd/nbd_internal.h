/* nbd_internal.h - what the files of the NBD server share.
 *
 * A connection (struct nbd_conn) is served by one thread that runs the
 * handshake and then reads requests; see nbd_conn.c for how requests reach
 * the workers and how a connection ends, and nbd_server.c for how the server
 * owns connections.  Lock order, outermost first:
 *   server mu  ->  conn mu  ->  conn send_mu
 * (the server only ever calls nbd_transport shutdown under its own mu). */
#ifndef HS_NBD_INTERNAL_H
#define HS_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "export/export.h"
#include "nbd_proto.h"
#include "nbd_server.h"
#include "nbd_transport.h"
#include "tls/tls.h"

/* --- bounds: every one of them is a promise to the rest of the daemon -------- */

#define NBD_MAX_INFLIGHT 32          /* requests read but not yet replied, per conn */
#define NBD_CONN_WORKERS 4           /* worker threads per connection */
#define NBD_MAX_OPTION_LEN (64u << 10) /* longer option data closes the connection */
#define NBD_MAX_OPTIONS 16384        /* options per connection before we hang up */
#define NBD_MAX_DISCARD (64u << 20)  /* refused WRITE payload we still read and drop */
#define NBD_MAX_EXTENTS 16384        /* descriptors in one block status chunk */
#define NBD_HANDSHAKE_TIMEOUT 60     /* seconds a client may sit silent in handshake */
#define NBD_MAX_CONNS 128            /* per server; more are closed at accept */
#define NBD_MAX_LIST_BYTES (1u << 20) /* of NBD_OPT_LIST replies, all exports */

/* --- metadata contexts (nbd_meta.c) ------------------------------------------ */

struct nbd_conn;

struct nbd_meta_ctx {
	const char *name;  /* "base:allocation", or the prefix of a per-bookmark one */
	uint32_t id;       /* sent in NBD_REP_META_CONTEXT and block status */
	bool snapshot_only;
	bool per_bookmark; /* name + a bookmark: "hotsnap:changed-since:VOL#NAME" */
	int (*walk)(struct nbd_conn *c, uint64_t off, uint64_t len, extent_fn fn, void *arg);
	uint32_t (*flags)(enum extent_type type);
};

#define NBD_META_NCTX 4
extern const struct nbd_meta_ctx nbd_meta_ctx[NBD_META_NCTX];

/* Contexts (a bit per index of nbd_meta_ctx) that the query selects on an
 * export of this kind.  list: a query for NBD_OPT_LIST_META_CONTEXT, where
 * "NAMESPACE:" (and a per-bookmark prefix) is a wildcard.  A query naming
 * a bookmark copies its name (NAME, without the volume) into bookmark,
 * which the caller then checks; volume is the export's volume, which a
 * "VOL#NAME" must name.  Unknown namespaces and leaves select none. */
unsigned nbd_meta_match(const char *query, size_t len, bool list, bool snapshot,
			const char *volume, char *bookmark, size_t bmlen);
/* Every context available on an export of this kind. */
unsigned nbd_meta_all(bool snapshot);
/* The full name of context i for a bookmark (NAME alone) into buf. */
const char *nbd_meta_name(unsigned i, const char *volume, const char *bookmark, char *buf,
			  size_t len);

/* --- errors (nbd_errno.c) --------------------------------------------------- */

/* The one mapping from -errno (or errno) to an NBD error value. */
uint32_t nbd_errno(int err);

/* --- a connection ------------------------------------------------------------ */

struct nbd_req {
	struct nbd_req *next; /* in the connection's queue */
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
	uint16_t type;
	uint16_t flags;
	uint32_t error;     /* refused at the boundary: reply this, run nothing */
	const char *why;    /* for the error chunk; static storage */
	uint8_t *data;      /* WRITE payload, owned by this request alone */
};

/* What a listener allows its connections (nbd_server.c sets it from the
 * server's config; the fuzzer's connections keep the zero policy: no TLS,
 * writable). */
struct nbd_policy {
	struct tls_creds *tls;   /* NULL: STARTTLS is refused */
	bool tls_required;       /* nothing but STARTTLS and ABORT before TLS */
	bool volumes_readonly;   /* volume exports are served read-only */
	const char *where;       /* "tcp:HOST:PORT" or "unix:PATH", for the log */
};

struct nbd_conn {
	struct nbd_transport *t;   /* the stream: the socket, or TLS over it */
	struct nbd_transport *raw; /* the socket itself, for nbd_conn_kill */
	const struct nbd_catalog *catalog;
	unsigned nworkers; /* 0: the reader runs each request itself (fuzzing) */
	struct nbd_policy policy;
	bool tls_on;       /* STARTTLS done: everything after it is encrypted */
	char peer[256];    /* who the client proved to be, once tls_on */

	/* Negotiated in the handshake; read-only once transmission starts. */
	bool structured;
	bool no_zeroes;
	unsigned meta;      /* selected contexts, for meta_export only */
	char meta_export[NBD_MAX_STRING + 1];
	char meta_bookmark[NBD_MAX_STRING + 1]; /* of the per-bookmark contexts */
	struct export_changes *changes;         /* what they report, made at selection */
	struct export *exp; /* NULL until NBD_OPT_GO / NBD_OPT_EXPORT_NAME */
	uint64_t size;
	uint16_t tflags;
	uint32_t max_block;

	/* A reply chunk goes out whole under send_mu: chunks never interleave. */
	pthread_mutex_t send_mu;

	/* mu guards the queue, inflight and draining. */
	pthread_mutex_t mu;
	pthread_cond_t work; /* queue not empty, or draining */
	pthread_cond_t room; /* inflight went down */
	struct nbd_req *head, *tail;
	unsigned inflight;   /* queued or running, at most NBD_MAX_INFLIGHT */
	uint64_t inflight_bytes; /* their READ/WRITE lengths */
	bool draining;       /* no more requests will come: finish and leave */
	atomic_bool dead;    /* the stream is broken: queued requests are dropped */

	pthread_t workers[NBD_CONN_WORKERS];
	unsigned nstarted;
};

/* A connection over t (owned from now on, also on failure); NULL when out
 * of memory.  nworkers 0 runs requests inline, for the fuzzer. */
struct nbd_conn *nbd_conn_new(struct nbd_transport *t, const struct nbd_catalog *catalog,
			      unsigned nworkers);
/* Sets what the connection allows (before nbd_conn_serve). */
void nbd_conn_set_policy(struct nbd_conn *c, const struct nbd_policy *p);
/* Handshake, then requests until the client leaves or the stream breaks. */
void nbd_conn_serve(struct nbd_conn *c);
/* Wakes a connection blocked in I/O so nbd_conn_serve returns soon.  Any
 * thread; the connection must not be freed meanwhile. */
void nbd_conn_kill(struct nbd_conn *c);
void nbd_conn_free(struct nbd_conn *c);

/* nbd_handshake.c: 0 with c->exp open and transmission to begin, or -errno
 * to close the connection (also after NBD_OPT_ABORT). */
int nbd_handshake(struct nbd_conn *c);

/* nbd_cmd.c: runs one validated request and sends its reply. */
void nbd_cmd_run(struct nbd_conn *c, struct nbd_req *r);

/* nbd_reply.c: replies in the transmission phase, each chunk under send_mu.
 * A failed send marks the connection dead and returns -errno. */
int nbd_reply_simple(struct nbd_conn *c, uint64_t cookie, uint32_t error, const void *data,
		     size_t len);
int nbd_reply_chunk(struct nbd_conn *c, uint64_t cookie, uint16_t flags, uint16_t type,
		    const void *head, size_t head_len, const void *data, size_t data_len);
/* The error reply for a request: a structured ERROR chunk (with DONE) when
 * negotiated, else a simple reply. */
int nbd_reply_error(struct nbd_conn *c, uint64_t cookie, uint32_t error, const char *msg);
/* Success without data. */
int nbd_reply_ok(struct nbd_conn *c, uint64_t cookie);

#endif
