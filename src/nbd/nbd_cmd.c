/* nbd_cmd.c - running one request on the export and replying to it.
 *
 * Requests arrive here already validated by the reader (nbd_conn.c): the
 * command and its flags are known, the range lies inside the export, READ
 * and WRITE lengths are within max_block, BLOCK_STATUS has contexts.  So
 * this file asserts those and only maps what the export says.
 *
 * READ with structured replies sends zero runs as NBD_REPLY_TYPE_OFFSET_HOLE.
 * The data is read first, then export_extents names the candidate holes, and
 * a run is sent as a hole only if the bytes we read there are in fact zero:
 * a write racing with the read can then never turn real data into a hole.
 *
 * WRITE_ZEROES with FAST_ZERO: we only know a zeroing is fast when there is
 * nothing to do - every extent of the range already reads as zeros with no
 * storage (EXTENT_ZERO).  Otherwise the engine may have to copy pre-images
 * for live snapshots, or the device may write zero buffers, so we answer
 * NBD_ENOTSUP at once without touching the data, as the spec allows. */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "nbd_internal.h"

/* --- errors ------------------------------------------------------------------ */

/* A sentence for the client about err; may use buf. */
static const char *error_text(struct nbd_conn *c, int err, char *buf, size_t len)
{
	switch (-err) {
	case EPERM:
		return "the export is read-only";
	case EINVAL:
		return "request outside the export";
	case ENODATA:
		return "this snapshot range was already consumed (trimmed) by its reader";
	case ESTALE:
		return "the snapshot was deleted";
	case ENOTSUP:
		return "operation not supported by this export";
	case ENOMEM:
		return "out of memory";
	case EIO:
		if (export_failure_reason(c->exp, buf, len)[0])
			return buf;
		return "input/output error";
	default:
		return "error";
	}
}

static void reply_result(struct nbd_conn *c, struct nbd_req *r, int err)
{
	char buf[ENGINE_REASON_MAX];

	if (err == 0)
		nbd_reply_ok(c, r->cookie);
	else
		nbd_reply_error(c, r->cookie, nbd_errno(err),
				error_text(c, err, buf, sizeof(buf)));
}

/* --- READ ---------------------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

#define READ_MAX_SEGS 1024

struct read_seg {
	uint64_t off;
	uint32_t len;
	bool hole;
};

struct hole_walk {
	struct read_seg *segs;
	unsigned n;
	uint64_t pos; /* end of the last segment */
	uint64_t end; /* of the request */
	const uint8_t *buf;
	uint64_t base;
};

static void seg_add(struct hole_walk *w, uint64_t off, uint64_t len, bool hole)
{
	struct read_seg *last = w->n ? &w->segs[w->n - 1] : NULL;

	if (last && last->hole == hole)
		last->len += (uint32_t)len; /* within one request: fits */
	else
		w->segs[w->n++] = (struct read_seg){ .off = off, .len = (uint32_t)len, .hole = hole };
	w->pos = off + len;
}

static int hole_cb(void *arg, uint64_t off, uint64_t len, enum extent_type type)
{
	struct hole_walk *w = arg;
	bool hole;

	/* Runs come in order and inside the request; should one not, or the
	 * segments run out (two slots kept: this run and the data tail), the
	 * rest of the request simply goes out as data. */
	if (off != w->pos || len > w->end - off || w->n + 2 >= READ_MAX_SEGS)
		return 1;
	hole = type == EXTENT_ZERO && all_zero(w->buf + (off - w->base), len);
	seg_add(w, off, len, hole);
	return 0;
}

static void cmd_read(struct nbd_conn *c, struct nbd_req *r)
{
	char ebuf[ENGINE_REASON_MAX];
	uint8_t *buf = malloc(r->length ? r->length : 1);
	int err;

	if (!buf) {
		nbd_reply_error(c, r->cookie, NBD_ENOMEM, "out of memory");
		return;
	}
	err = export_pread(c->exp, buf, r->length, r->offset);
	if (err) {
		nbd_reply_error(c, r->cookie, nbd_errno(err),
				error_text(c, err, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (!c->structured) {
		nbd_reply_simple(c, r->cookie, 0, buf, r->length);
		goto out;
	}
	if (r->length == 0) {
		nbd_reply_chunk(c, r->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NULL, 0,
				NULL, 0);
		goto out;
	}

	struct read_seg segs[READ_MAX_SEGS];
	uint64_t end = r->offset + r->length;
	struct hole_walk w = {
		.segs = segs, .pos = r->offset, .end = end, .buf = buf, .base = r->offset,
	};

	if (!(r->flags & NBD_CMD_FLAG_DF) &&
	    export_extents(c->exp, r->offset, r->length, hole_cb, &w) < 0) {
		w.n = 0; /* no map: everything is data */
		w.pos = r->offset;
	}
	if (w.pos < end)
		seg_add(&w, w.pos, end - w.pos, false);
	for (unsigned i = 0; i < w.n; i++) {
		uint16_t done = i + 1 == w.n ? NBD_REPLY_FLAG_DONE : 0;
		const struct read_seg *s = &segs[i];
		int sr;
		if (s->hole) {
			struct nbd_chunk_hole h = { .offset = htobe64(s->off),
						    .length = htobe32(s->len) };
			sr = nbd_reply_chunk(c, r->cookie, done, NBD_REPLY_TYPE_OFFSET_HOLE, &h,
					     sizeof(h), NULL, 0);
		} else {
			uint64_t be_off = htobe64(s->off);
			sr = nbd_reply_chunk(c, r->cookie, done, NBD_REPLY_TYPE_OFFSET_DATA, &be_off,
					     8, buf + (s->off - r->offset), s->len);
		}
		if (sr)
			break;
	}
out:
	free(buf);
}

/* --- WRITE_ZEROES -------------------------------------------------------------- */

static int not_all_zero_cb(void *arg, uint64_t off, uint64_t len, enum extent_type type)
{
	return type == EXTENT_ZERO ? 0 : 1;
}

static int cmd_zero(struct nbd_conn *c, struct nbd_req *r)
{
	unsigned flags = 0;

	if (r->flags & NBD_CMD_FLAG_FAST_ZERO) {
		int err;
		if (export_readonly(c->exp))
			return -EPERM;
		err = export_extents(c->exp, r->offset, r->length, not_all_zero_cb, NULL);
		return err == 0 ? 0 : -ENOTSUP;
	}
	if (r->flags & NBD_CMD_FLAG_FUA)
		flags |= EXPORT_FUA;
	if (!(r->flags & NBD_CMD_FLAG_NO_HOLE))
		flags |= EXPORT_MAY_TRIM;
	return export_zero(c->exp, r->offset, r->length, flags);
}

/* --- BLOCK_STATUS -------------------------------------------------------------- */

struct bs_walk {
	struct nbd_extent *ext; /* host order until sent */
	unsigned n, cap;
	uint32_t (*flags)(enum extent_type type);
};

static int bs_cb(void *arg, uint64_t off, uint64_t len, enum extent_type type)
{
	struct bs_walk *w = arg;
	uint32_t f = w->flags(type);
	struct nbd_extent *last = w->n ? &w->ext[w->n - 1] : NULL;

	if (len == 0)
		return 0;
	if (last && last->flags == f && (uint64_t)last->length + len <= UINT32_MAX) {
		last->length += (uint32_t)len;
		return 0;
	}
	/* enough, or a run longer than any request: the client asks again
	 * from where we stopped */
	if (w->n == w->cap || len > UINT32_MAX)
		return 1;
	w->ext[w->n++] = (struct nbd_extent){ .length = (uint32_t)len, .flags = f };
	return 0;
}

static void cmd_block_status(struct nbd_conn *c, struct nbd_req *r)
{
	unsigned cap = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
	struct nbd_extent *ext[NBD_META_NCTX] = { 0 };
	unsigned n[NBD_META_NCTX] = { 0 };
	unsigned last = 0;
	char ebuf[ENGINE_REASON_MAX];
	int err = 0;

	assert(c->meta && r->length > 0);
	/* Walk every context before sending anything, so an error is the
	 * whole reply and never follows a half-sent status. */
	for (unsigned i = 0; i < NBD_META_NCTX && err == 0; i++) {
		if (!(c->meta & (1u << i)))
			continue;
		struct bs_walk w = { .cap = cap, .flags = nbd_meta_ctx[i].flags };
		w.ext = malloc(sizeof(*w.ext) * cap);
		if (!w.ext) {
			err = -ENOMEM;
			break;
		}
		ext[i] = w.ext;
		err = nbd_meta_ctx[i].walk(c, r->offset, r->length, bs_cb, &w);
		if (err > 0)
			err = 0; /* stopped at the cap */
		if (err == 0 && w.n == 0)
			err = -EIO; /* cannot happen for a range inside the export */
		n[i] = w.n;
		last = i;
	}
	if (err) {
		nbd_reply_error(c, r->cookie, nbd_errno(err), error_text(c, err, ebuf, sizeof(ebuf)));
		goto out;
	}
	for (unsigned i = 0; i < NBD_META_NCTX; i++) {
		if (!(c->meta & (1u << i)))
			continue;
		uint32_t id = htobe32(nbd_meta_ctx[i].id);
		for (unsigned j = 0; j < n[i]; j++) {
			ext[i][j].length = htobe32(ext[i][j].length);
			ext[i][j].flags = htobe32(ext[i][j].flags);
		}
		if (nbd_reply_chunk(c, r->cookie, i == last ? NBD_REPLY_FLAG_DONE : 0,
				    NBD_REPLY_TYPE_BLOCK_STATUS, &id, 4, ext[i],
				    sizeof(struct nbd_extent) * n[i]))
			break;
	}
out:
	for (unsigned i = 0; i < NBD_META_NCTX; i++)
		free(ext[i]);
}

/* --- dispatch ------------------------------------------------------------------ */

void nbd_cmd_run(struct nbd_conn *c, struct nbd_req *r)
{
	int err = 0;

	if (r->error) {
		nbd_reply_error(c, r->cookie, r->error, r->why);
		return;
	}
	switch (r->type) {
	case NBD_CMD_READ:
		cmd_read(c, r);
		return;
	case NBD_CMD_WRITE:
		err = export_pwrite(c->exp, r->data, r->length, r->offset,
				    (r->flags & NBD_CMD_FLAG_FUA) ? EXPORT_FUA : 0);
		break;
	case NBD_CMD_FLUSH:
		err = export_flush(c->exp);
		break;
	case NBD_CMD_TRIM:
		/* On a snapshot this consumes the range: the backup is done
		 * with it.  That is the point of offering TRIM there. */
		err = export_trim(c->exp, r->offset, r->length);
		if (err == 0 && (r->flags & NBD_CMD_FLAG_FUA))
			err = export_flush(c->exp);
		break;
	case NBD_CMD_CACHE:
		break; /* the range was checked; there is no cache to fill */
	case NBD_CMD_WRITE_ZEROES:
		err = cmd_zero(c, r);
		break;
	case NBD_CMD_BLOCK_STATUS:
		cmd_block_status(c, r);
		return;
	default:
		assert(!"command validated by the reader");
		err = -EINVAL;
	}
	reply_result(c, r, err);
}
