/* nbd_handshake.c - fixed newstyle negotiation, up to the transmission phase.
 *
 * Runs on the connection's own thread, one option at a time, so nothing here
 * is shared.  Every field the client sends is checked here, at the boundary:
 *  - the option length is capped (NBD_MAX_OPTION_LEN); a longer one, or a
 *    bad magic, or unknown client flags, closes the connection, because we
 *    cannot tell where the next option would start;
 *  - option data is read whole into a buffer of exactly its length and parsed
 *    with a cursor that refuses to run past it (NBD_REP_ERR_INVALID);
 *  - names with a NUL or longer than a protocol string are unknown exports.
 * A client that lies about a length and then sends less just blocks its own
 * thread; the handshake read timeout and nbd_server_stop() both end it.
 *
 * The catalog's list callback may run under the daemon's locks, so NBD_OPT_LIST
 * gathers the entries into memory first and only then writes to the socket:
 * a slow client must never hold anyone else up. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd_internal.h"
#include "nbd_tls.h"

/* --- reading option data ---------------------------------------------------- */

struct cursor {
	const uint8_t *p;
	size_t left;
};

static bool get_bytes(struct cursor *cur, const uint8_t **out, size_t n)
{
	if (n > cur->left)
		return false;
	*out = cur->p;
	cur->p += n;
	cur->left -= n;
	return true;
}

static bool get_u16(struct cursor *cur, uint16_t *v)
{
	const uint8_t *b;
	if (!get_bytes(cur, &b, 2))
		return false;
	*v = (uint16_t)(b[0] << 8 | b[1]);
	return true;
}

static bool get_u32(struct cursor *cur, uint32_t *v)
{
	const uint8_t *b;
	if (!get_bytes(cur, &b, 4))
		return false;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return true;
}

/* A protocol string as a C string: NULL when too long or holding a NUL. */
static char *get_string(struct cursor *cur, uint32_t len)
{
	const uint8_t *b;
	char *s;

	if (len > NBD_MAX_STRING || !get_bytes(cur, &b, len) || memchr(b, 0, len))
		return NULL;
	s = malloc((size_t)len + 1);
	if (!s)
		return NULL;
	memcpy(s, b, len);
	s[len] = '\0';
	return s;
}

/* --- replies ----------------------------------------------------------------- */

static int opt_reply2(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *a,
		      size_t alen, const void *b, size_t blen)
{
	struct nbd_option_reply h = {
		.magic = htobe64(NBD_OPT_REPLY_MAGIC),
		.option = htobe32(opt),
		.reply = htobe32(type),
		.length = htobe32((uint32_t)(alen + blen)),
	};
	struct iovec iov[3] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)a, .iov_len = alen },
		{ .iov_base = (void *)b, .iov_len = blen },
	};
	return nbd_writev_full(c->t, iov, 3);
}

static int opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
		     size_t len)
{
	return opt_reply2(c, opt, type, data, len, NULL, 0);
}

static int opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return opt_reply(c, opt, type, msg, msg ? strnlen(msg, NBD_MAX_STRING) : 0);
}

/* --- the catalog ------------------------------------------------------------ */

/* Entries of NBD_OPT_LIST, gathered before anything is sent.  Each entry is
 * a host-order u32 payload length, then the NBD_REP_SERVER payload. */
struct list_buf {
	uint8_t *buf;
	size_t len, cap;
	const char *want; /* NBD_OPT_INFO: only the description of this name */
	char *desc;
};

static void list_add(void *arg, const char *name, const char *description)
{
	struct list_buf *lb = arg;
	size_t nlen = strlen(name);
	size_t dlen = description ? strnlen(description, NBD_MAX_STRING) : 0;

	if (lb->want) {
		if (!lb->desc && strcmp(name, lb->want) == 0 && description)
			lb->desc = strndup(description, dlen);
		return;
	}
	if (nlen > NBD_MAX_STRING)
		return; /* no client could ask for it */
	size_t need = 4 + 4 + nlen + dlen;
	if (lb->len + need > NBD_MAX_LIST_BYTES)
		return;
	if (lb->len + need > lb->cap) {
		size_t cap = HS_MAX(lb->cap * 2, lb->len + need);
		uint8_t *nb = realloc(lb->buf, cap);
		if (!nb)
			return;
		lb->buf = nb;
		lb->cap = cap;
	}
	uint32_t plen = (uint32_t)(4 + nlen + dlen), be_nlen = htobe32((uint32_t)nlen);
	uint8_t *p = lb->buf + lb->len;
	memcpy(p, &plen, 4);
	memcpy(p + 4, &be_nlen, 4);
	memcpy(p + 8, name, nlen);
	if (dlen)
		memcpy(p + 8 + nlen, description, dlen);
	lb->len += need;
}

static char *describe(struct nbd_conn *c, const char *name)
{
	struct list_buf lb = { .want = name };
	c->catalog->list(c->catalog->ctx, list_add, &lb);
	return lb.desc;
}

static struct export *open_export(struct nbd_conn *c, const char *name, const char **why)
{
	*why = NULL;
	struct export *e = c->catalog->open(c->catalog->ctx, name, why);
	if (!e && !*why)
		*why = "no such export";
	return e;
}

static uint16_t tflags_of(const struct nbd_conn *c, struct export *e)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
		     NBD_FLAG_SEND_CACHE |
		     /* one volume, one page cache, and flush is a global fdatasync */
		     NBD_FLAG_CAN_MULTI_CONN;
	if (export_readonly(e) ||
	    (c->policy.volumes_readonly && export_kind(e) == EXPORT_VOLUME))
		f |= NBD_FLAG_READ_ONLY;
	if (c->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

/* The export chosen for transmission: what the command loop reads. */
static void enter_transmission(struct nbd_conn *c, struct export *e, const char *name)
{
	c->exp = e;
	c->size = export_size(e);
	c->tflags = tflags_of(c, e);
	c->max_block = export_max_block(e);
	if (c->meta && strcmp(c->meta_export, name) != 0) {
		c->meta = 0; /* contexts were chosen for another export */
		export_changes_free(c->changes);
		c->changes = NULL;
	}
}

/* --- options ------------------------------------------------------------------ */

static int opt_export_name(struct nbd_conn *c, struct cursor *cur)
{
	struct nbd_export_name_reply rep = { 0 };
	const char *why;
	struct export *e;
	char *name = get_string(cur, (uint32_t)cur->left);
	int r;

	/* This option cannot answer an error: the protocol says hang up. */
	if (!name)
		return -EPROTO;
	e = open_export(c, name, &why);
	if (!e) {
		free(name);
		return -ENOENT;
	}
	enter_transmission(c, e, name);
	free(name);
	rep.size = htobe64(c->size);
	rep.tflags = htobe16(c->tflags);
	r = nbd_write_full(c->t, &rep, c->no_zeroes ? 10 : sizeof(rep));
	return r ? r : 1;
}

static int send_info(struct nbd_conn *c, uint32_t opt, uint16_t type, const char *s)
{
	uint16_t be = htobe16(type);
	return opt_reply2(c, opt, NBD_REP_INFO, &be, 2, s, strnlen(s, NBD_MAX_STRING));
}

static int opt_info_go(struct nbd_conn *c, uint32_t opt, struct cursor *cur)
{
	bool want_name = false, want_desc = false;
	uint32_t nlen;
	uint16_t nreq;
	const char *why;
	struct export *e;
	char *name;
	int r;

	if (!get_u32(cur, &nlen) || nlen > cur->left)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "name length past the option");
	name = get_string(cur, nlen);
	if (!name)
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "invalid export name");
	if (!get_u16(cur, &nreq) || cur->left != (size_t)nreq * 2) {
		free(name);
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "information requests do not fit");
	}
	for (unsigned i = 0; i < nreq; i++) {
		uint16_t info = 0;
		get_u16(cur, &info); /* cannot fail: the length was checked */
		want_name |= info == NBD_INFO_NAME;
		want_desc |= info == NBD_INFO_DESCRIPTION;
	}
	e = open_export(c, name, &why);
	if (!e) {
		free(name);
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, why);
	}

	struct nbd_info_export ie = {
		.info = htobe16(NBD_INFO_EXPORT),
		.size = htobe64(export_size(e)),
		.tflags = htobe16(tflags_of(c, e)),
	};
	/* Sent unasked too: a client that did not ask may ignore it, and we
	 * cope with any alignment anyway. */
	struct nbd_info_block_size bs = {
		.info = htobe16(NBD_INFO_BLOCK_SIZE),
		.minimum = htobe32(export_min_block(e)),
		.preferred = htobe32(export_preferred_block(e)),
		.maximum = htobe32(export_max_block(e)),
	};
	r = opt_reply(c, opt, NBD_REP_INFO, &ie, sizeof(ie));
	if (r == 0)
		r = opt_reply(c, opt, NBD_REP_INFO, &bs, sizeof(bs));
	if (r == 0 && want_name)
		r = send_info(c, opt, NBD_INFO_NAME, export_name(e));
	if (r == 0 && want_desc) {
		char *desc = describe(c, export_name(e));
		if (desc)
			r = send_info(c, opt, NBD_INFO_DESCRIPTION, desc);
		free(desc);
	}
	if (r == 0)
		r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
	if (r || opt == NBD_OPT_INFO) {
		export_close(e);
		free(name);
		return r;
	}
	enter_transmission(c, e, name);
	free(name);
	return 1;
}

static int opt_list(struct nbd_conn *c, uint32_t opt, struct cursor *cur)
{
	struct list_buf lb = { 0 };
	int r = 0;

	if (cur->left)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
	c->catalog->list(c->catalog->ctx, list_add, &lb);
	for (size_t at = 0; at < lb.len && r == 0;) {
		uint32_t plen;
		memcpy(&plen, lb.buf + at, 4);
		r = opt_reply(c, opt, NBD_REP_SERVER, lb.buf + at + 4, plen);
		at += 4 + plen;
	}
	free(lb.buf);
	return r ? r : opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

struct list_bookmarks {
	struct nbd_conn *c;
	uint32_t opt;
	unsigned ctx;
	const char *volume;
	int r;
};

static void reply_bookmark(void *arg, const char *bookmark)
{
	struct list_bookmarks *lb = arg;
	char full[NBD_MAX_STRING + 1];
	uint32_t id = 0; /* the id of a listed context is reserved: zero */

	if (lb->r == 0) {
		nbd_meta_name(lb->ctx, lb->volume, bookmark, full, sizeof(full));
		lb->r = opt_reply2(lb->c, lb->opt, NBD_REP_META_CONTEXT, &id, 4, full, strlen(full));
	}
}

static int opt_meta_context(struct nbd_conn *c, uint32_t opt, struct cursor *cur)
{
	bool list = opt == NBD_OPT_LIST_META_CONTEXT;
	uint32_t nlen, nq;
	unsigned mask = 0, wild = 0, named = 0;
	char volume[NBD_MAX_STRING + 1], bookmark[NBD_MAX_STRING + 1] = "";
	struct export_changes *ch = NULL;
	const char *why;
	struct export *e;
	char *name;
	bool snapshot;
	int r = 0;

	if (!list) {
		/* replaces the previous choice, even when this one fails */
		c->meta = 0;
		c->meta_export[0] = '\0';
		c->meta_bookmark[0] = '\0';
		export_changes_free(c->changes);
		c->changes = NULL;
		if (!c->structured)
			return opt_error(c, opt, NBD_REP_ERR_INVALID,
					 "negotiate structured replies first");
	}
	if (!get_u32(cur, &nlen) || nlen > cur->left)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "name length past the option");
	name = get_string(cur, nlen);
	if (!name)
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "invalid export name");
	if (!get_u32(cur, &nq)) {
		free(name);
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "no query count");
	}
	e = open_export(c, name, &why);
	if (!e) {
		free(name);
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, why);
	}
	snapshot = export_kind(e) == EXPORT_SNAPSHOT;
	snprintf(volume, sizeof(volume), "%s", export_name(e));
	volume[strcspn(volume, "@")] = '\0';

	if (nq == 0 && list)
		wild = mask = nbd_meta_all(snapshot); /* every context, every bookmark */
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t qlen;
		const uint8_t *q;
		char qbm[NBD_MAX_STRING + 1] = "";
		if (!get_u32(cur, &qlen) || qlen > NBD_MAX_STRING || !get_bytes(cur, &q, qlen)) {
			export_close(e);
			free(name);
			return opt_error(c, opt, NBD_REP_ERR_INVALID, "query past the option");
		}
		unsigned m = nbd_meta_match((const char *)q, qlen, list, snapshot, volume, qbm,
					    sizeof(qbm));
		for (unsigned k = 0; k < NBD_META_NCTX; k++) {
			if (!(m & (1u << k)) || !nbd_meta_ctx[k].per_bookmark)
				continue;
			if (!qbm[0]) {
				wild |= 1u << k;
			} else if (!bookmark[0] || strcmp(bookmark, qbm) == 0) {
				/* one bookmark per connection: the first named */
				snprintf(bookmark, sizeof(bookmark), "%s", qbm);
				named |= 1u << k;
			} else {
				m &= ~(1u << k);
			}
		}
		mask |= m;
	}
	if (cur->left) {
		export_close(e);
		free(name);
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
	}
	/* a named bookmark must exist and be older than the snapshot */
	if (named && export_changes_since(e, bookmark, &ch) < 0)
		mask &= ~(named & ~wild);
	for (unsigned i = 0; i < NBD_META_NCTX && r == 0; i++) {
		char full[NBD_MAX_STRING + 1];
		if (!(mask & (1u << i)))
			continue;
		if (nbd_meta_ctx[i].per_bookmark && (wild & (1u << i))) {
			struct list_bookmarks lb = { c, opt, i, volume, 0 };
			export_bookmarks(e, reply_bookmark, &lb);
			r = lb.r;
			continue;
		}
		/* the id of a listed context is reserved: zero */
		uint32_t id = htobe32(list ? 0 : nbd_meta_ctx[i].id);
		nbd_meta_name(i, volume, bookmark, full, sizeof(full));
		r = opt_reply2(c, opt, NBD_REP_META_CONTEXT, &id, 4, full, strlen(full));
	}
	export_close(e);
	if (r == 0 && !list) {
		c->meta = mask;
		memcpy(c->meta_export, name, (size_t)nlen + 1);
		snprintf(c->meta_bookmark, sizeof(c->meta_bookmark), "%s", bookmark);
		c->changes = ch;
		ch = NULL;
	}
	export_changes_free(ch);
	free(name);
	return r ? r : opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_STARTTLS: ACK in clear text, then the TLS handshake on the same
 * socket; everything after is encrypted.  What was negotiated before is
 * forgotten, as the protocol asks (a man in the middle could have chosen
 * it). */
static int opt_starttls(struct nbd_conn *c, uint32_t opt, struct cursor *cur)
{
	struct nbd_transport *tls_t;
	char why[256];
	int r;

	if (cur->left)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
	if (c->tls_on)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "TLS is on already");
	if (!c->policy.tls)
		return opt_error(c, opt, NBD_REP_ERR_POLICY,
				 "this listener offers no TLS (the daemon has no TLS credentials)");
	r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
	if (r)
		return r;
	r = nbd_tls_upgrade(c->policy.tls, c->raw, &tls_t, c->peer, sizeof(c->peer), why,
			    sizeof(why));
	if (r) {
		hs_warn("nbd: a client on %s: %s", c->policy.where ? c->policy.where : "?", why);
		return r;
	}
	c->t = tls_t;
	c->tls_on = true;
	c->structured = false;
	c->meta = 0;
	c->meta_export[0] = '\0';
	c->meta_bookmark[0] = '\0';
	export_changes_free(c->changes);
	c->changes = NULL;
	hs_info("nbd: TLS on %s with %s", c->policy.where ? c->policy.where : "?", c->peer);
	return 0;
}

/* >0: transmission begins; 0: next option; <0: close. */
static int handle_option(struct nbd_conn *c, uint32_t opt, struct cursor *cur)
{
	if (c->policy.tls_required && !c->tls_on) {
		switch (opt) {
		case NBD_OPT_STARTTLS:
		case NBD_OPT_ABORT:
			break;
		case NBD_OPT_EXPORT_NAME:
			return -EACCES; /* it cannot be answered with an error: hang up */
		default:
			return opt_error(c, opt, NBD_REP_ERR_TLS_REQD,
					 "TLS is required: connect with nbds:// (STARTTLS) and "
					 "the server's PSK or certificates");
		}
	}
	switch (opt) {
	case NBD_OPT_STARTTLS:
		return opt_starttls(c, opt, cur);
	case NBD_OPT_EXPORT_NAME:
		return opt_export_name(c, cur);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info_go(c, opt, cur);
	case NBD_OPT_LIST:
		return opt_list(c, opt, cur);
	case NBD_OPT_ABORT:
		/* the client may already be gone: a failed ACK changes nothing */
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		return -ECONNRESET;
	case NBD_OPT_STRUCTURED_REPLY:
		if (cur->left)
			return opt_error(c, opt, NBD_REP_ERR_INVALID, "option takes no data");
		c->structured = true;
		return opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return opt_meta_context(c, opt, cur);
	default:
		return opt_error(c, opt, NBD_REP_ERR_UNSUP, "unsupported option");
	}
}

int nbd_handshake(struct nbd_conn *c)
{
	struct nbd_hello hello = {
		.magic = htobe64(NBD_MAGIC),
		.opt_magic = htobe64(NBD_IHAVEOPT),
		.hs_flags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
	};
	uint32_t cflags;
	int r;

	r = nbd_write_full(c->t, &hello, sizeof(hello));
	if (r == 0)
		r = nbd_read_full(c->t, &cflags, sizeof(cflags));
	if (r)
		return r;
	cflags = be32toh(cflags);
	if (cflags & ~NBD_FLAG_C_KNOWN)
		return -EPROTO; /* the spec: drop the connection */
	c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

	for (unsigned n = 0; n < NBD_MAX_OPTIONS; n++) {
		struct nbd_option o;
		uint8_t *data;

		r = nbd_read_full(c->t, &o, sizeof(o));
		if (r)
			return r;
		if (be64toh(o.magic) != NBD_IHAVEOPT)
			return -EPROTO;
		uint32_t len = be32toh(o.length);
		if (len > NBD_MAX_OPTION_LEN)
			return -EPROTO;
		data = malloc(len ? len : 1);
		if (!data)
			return -ENOMEM;
		r = nbd_read_full(c->t, data, len);
		if (r == 0) {
			struct cursor cur = { .p = data, .left = len };
			r = handle_option(c, be32toh(o.option), &cur);
		}
		free(data);
		if (r)
			return r > 0 ? 0 : r;
	}
	return -EPROTO; /* a client that never ends the handshake */
}
