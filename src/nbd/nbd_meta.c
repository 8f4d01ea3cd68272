/* nbd_meta.c - the metadata contexts hotsnap offers and how queries select
 * them.
 *
 *   base:allocation   every export.  EXTENT_ZERO -> HOLE|ZERO, EXTENT_DATA -> 0,
 *                     EXTENT_CONSUMED -> HOLE (not ZERO: reads fail there).
 *   hotsnap:changed   snapshot exports.  Bit 0 set where the volume was
 *                     written since the snapshot (what an incremental backup
 *                     copies).
 *
 * Query syntax, as the spec asks a server to document it: "base:allocation"
 * and "hotsnap:changed" select themselves; "base:" and "hotsnap:" are
 * wildcards for NBD_OPT_LIST_META_CONTEXT only; anything else is ignored. */
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

const struct nbd_meta_ctx nbd_meta_ctx[NBD_META_NCTX] = {
	{
		.name = "base:allocation",
		.id = 1,
		.snapshot_only = false,
		.walk = export_extents,
		.flags = base_flags,
	},
	{
		.name = "hotsnap:changed",
		.id = 2,
		.snapshot_only = true,
		.walk = export_changed,
		.flags = changed_flags,
	},
};

unsigned nbd_meta_all(bool snapshot)
{
	unsigned mask = 0;
	for (unsigned i = 0; i < NBD_META_NCTX; i++)
		if (snapshot || !nbd_meta_ctx[i].snapshot_only)
			mask |= 1u << i;
	return mask;
}

unsigned nbd_meta_match(const char *query, size_t len, bool list, bool snapshot)
{
	const char *colon = memchr(query, ':', len);
	unsigned mask = 0;

	if (!colon)
		return 0;
	size_t ns_len = (size_t)(colon - query) + 1; /* with the colon */
	for (unsigned i = 0; i < NBD_META_NCTX; i++) {
		const struct nbd_meta_ctx *m = &nbd_meta_ctx[i];
		if (m->snapshot_only && !snapshot)
			continue;
		if (strncmp(m->name, query, ns_len) != 0)
			continue; /* another namespace */
		if (list && len == ns_len)
			mask |= 1u << i; /* "NAMESPACE:" wildcard */
		else if (strlen(m->name) == len && memcmp(m->name, query, len) == 0)
			mask |= 1u << i;
	}
	return mask;
}
