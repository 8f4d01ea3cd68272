/* nbd_meta.c - the metadata contexts hotsnap offers and how queries select
 * them.
 *
 *   base:allocation   every export.  EXTENT_ZERO -> HOLE|ZERO, EXTENT_DATA -> 0,
 *                     EXTENT_CONSUMED -> HOLE (not ZERO: reads fail there).
 *   hotsnap:changed   snapshot exports.  Bit 0 set where the volume was
 *                     written since the snapshot.
 *   hotsnap:changed-since:VOLUME#NAME
 *                     snapshot exports.  Bit 0 set where the volume was
 *                     written between bookmark VOLUME#NAME and the snapshot:
 *                     what an incremental backup from that bookmark reads.
 *   qemu:dirty-bitmap:NAME
 *                     the same map under the name QEMU's pull backup uses
 *                     (bit 0: dirty), so tools written for QEMU read it.
 *
 * Query syntax, as the spec asks a server to document it: a full name
 * selects itself (a per-bookmark one when the bookmark exists and is older
 * than the snapshot; one bookmark per connection); "base:", "hotsnap:",
 * "qemu:", "hotsnap:changed-since:" and "qemu:dirty-bitmap:" are wildcards
 * for NBD_OPT_LIST_META_CONTEXT only; anything else is ignored. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nbd_internal.h"

static uint32_t base_flags(enum extent_type type)
{
	switch (type) {
	case EXTENT_ZERO:
		return NBD_STATE_HOLE | NBD_STATE_ZERO;
	case EXTENT_CONSUMED:
		return NBD_STATE_HOLE;
	case EXTENT_DATA:
	default:
		return 0;
	}
}

static uint32_t changed_flags(enum extent_type type)
{
	/* export_changed: EXTENT_DATA for changed runs, EXTENT_ZERO otherwise */
	return type == EXTENT_DATA ? NBD_STATE_CHANGED : 0;
}

static int walk_allocation(struct nbd_conn *c, uint64_t off, uint64_t len, extent_fn fn,
			   void *arg)
{
	return export_extents(c->exp, off, len, fn, arg);
}

static int walk_changed(struct nbd_conn *c, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	return export_changed(c->exp, off, len, fn, arg);
}

static int walk_since(struct nbd_conn *c, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	return c->changes ? export_changes_walk(c->changes, off, len, fn, arg) : -EIO;
}

const struct nbd_meta_ctx nbd_meta_ctx[NBD_META_NCTX] = {
	{
		.name = "base:allocation",
		.id = 1,
		.walk = walk_allocation,
		.flags = base_flags,
	},
	{
		.name = "hotsnap:changed",
		.id = 2,
		.snapshot_only = true,
		.walk = walk_changed,
		.flags = changed_flags,
	},
	{
		.name = "hotsnap:changed-since:",
		.id = 3,
		.snapshot_only = true,
		.per_bookmark = true,
		.walk = walk_since,
		.flags = changed_flags,
	},
	{
		.name = "qemu:dirty-bitmap:",
		.id = 4,
		.snapshot_only = true,
		.per_bookmark = true,
		.walk = walk_since,
		.flags = changed_flags,
	},
};

const char *nbd_meta_name(unsigned i, const char *volume, const char *bookmark, char *buf,
			  size_t len)
{
	if (!nbd_meta_ctx[i].per_bookmark)
		snprintf(buf, len, "%s", nbd_meta_ctx[i].name);
	else if (nbd_meta_ctx[i].id == 3)
		snprintf(buf, len, "%s%s#%s", nbd_meta_ctx[i].name, volume, bookmark);
	else
		snprintf(buf, len, "%s%s", nbd_meta_ctx[i].name, bookmark);
	return buf;
}

unsigned nbd_meta_all(bool snapshot)
{
	unsigned mask = 0;
	for (unsigned i = 0; i < NBD_META_NCTX; i++)
		if (snapshot || !nbd_meta_ctx[i].snapshot_only)
			mask |= 1u << i;
	return mask;
}

/* The bookmark a per-bookmark query names (after the context's prefix):
 * "VOL#NAME" for hotsnap's, "NAME" for QEMU's; false when malformed or of
 * another volume. */
static bool bookmark_of(unsigned i, const char *rest, size_t n, const char *volume,
			char *bookmark, size_t bmlen)
{
	if (nbd_meta_ctx[i].id == 3) {
		size_t vlen = strlen(volume);
		if (n <= vlen + 1 || memcmp(rest, volume, vlen) != 0 || rest[vlen] != '#')
			return false;
		rest += vlen + 1;
		n -= vlen + 1;
	}
	if (n == 0 || n >= bmlen || memchr(rest, '\0', n))
		return false;
	memcpy(bookmark, rest, n);
	bookmark[n] = '\0';
	return true;
}

unsigned nbd_meta_match(const char *query, size_t len, bool list, bool snapshot,
			const char *volume, char *bookmark, size_t bmlen)
{
	const char *colon = memchr(query, ':', len);
	unsigned mask = 0;

	if (!colon)
		return 0;
	size_t ns_len = (size_t)(colon - query) + 1; /* with the colon */
	for (unsigned i = 0; i < NBD_META_NCTX; i++) {
		const struct nbd_meta_ctx *m = &nbd_meta_ctx[i];
		size_t nlen = strlen(m->name);
		if (m->snapshot_only && !snapshot)
			continue;
		if (strncmp(m->name, query, ns_len) != 0)
			continue; /* another namespace */
		if (list && len == ns_len)
			mask |= 1u << i; /* "NAMESPACE:" wildcard */
		else if (!m->per_bookmark && nlen == len && memcmp(m->name, query, len) == 0)
			mask |= 1u << i;
		else if (m->per_bookmark && len >= nlen && memcmp(m->name, query, nlen) == 0) {
			if (list && len == nlen)
				mask |= 1u << i; /* every bookmark */
			else if (bookmark_of(i, query + nlen, len - nlen, volume, bookmark, bmlen))
				mask |= 1u << i;
		}
	}
	return mask;
}
