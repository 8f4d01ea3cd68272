/* export.c - see export.h.  Three implementations behind a const ops table:
 * volumes, snapshots and images. */
#include "export.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/names.h"
#include "engine/tracker.h"

struct export_ops {
	int (*pread)(struct export *e, void *buf, size_t len, uint64_t off);
	int (*pwrite)(struct export *e, const void *buf, size_t len, uint64_t off, unsigned fl);
	int (*flush)(struct export *e);
	int (*trim)(struct export *e, uint64_t off, uint64_t len);
	int (*zero)(struct export *e, uint64_t off, uint64_t len, unsigned flags);
	int (*extents)(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg);
	int (*changed)(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg);
};

/* An image reader shared by every export on it. */
struct image_ref {
	struct image_reader *r;
	atomic_int refs;
};

struct export {
	const struct export_ops *ops;
	enum export_kind kind;
	struct volume *vol;
	struct snapshot *snap;
	struct image_ref *img;
	char name[2 * HS_NAME_MAX + 8];
};

static int in_range(const struct export *e, uint64_t off, uint64_t len)
{
	uint64_t size = export_size(e);
	return off <= size && len <= size - off ? 0 : -EINVAL;
}

/* --- volumes ------------------------------------------------------------- */

static int vol_pread(struct export *e, void *buf, size_t len, uint64_t off)
{
	return volume_read(e->vol, buf, len, off);
}

static int vol_pwrite(struct export *e, const void *buf, size_t len, uint64_t off, unsigned fl)
{
	return volume_write(e->vol, buf, len, off, (fl & EXPORT_FUA) ? VOLUME_FUA : 0);
}

static int vol_flush(struct export *e)
{
	return volume_flush(e->vol);
}

static int vol_trim(struct export *e, uint64_t off, uint64_t len)
{
	return volume_discard(e->vol, off, len);
}

static int vol_zero(struct export *e, uint64_t off, uint64_t len, unsigned flags)
{
	int r = volume_write_zeroes(e->vol, off, len,
				    (flags & EXPORT_MAY_TRIM) ? VOLUME_MAY_UNMAP : 0);
	if (r == 0 && (flags & EXPORT_FUA))
		r = volume_flush(e->vol);
	return r;
}

static int vol_extents(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	return volume_extents(e->vol, off, len, fn, arg);
}

static int no_changed(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	return -ENOTSUP;
}

static const struct export_ops volume_ops = {
	.pread = vol_pread,
	.pwrite = vol_pwrite,
	.flush = vol_flush,
	.trim = vol_trim,
	.zero = vol_zero,
	.extents = vol_extents,
	.changed = no_changed,
};

/* --- snapshots ------------------------------------------------------------ */

static int snap_pread(struct export *e, void *buf, size_t len, uint64_t off)
{
	return snapshot_read(e->snap, buf, len, off);
}

static int snap_refuse_write(struct export *e, const void *buf, size_t len, uint64_t off,
			     unsigned fl)
{
	return in_range(e, off, len) ?: -EPERM;
}

static int snap_flush(struct export *e)
{
	return 0; /* nothing of a snapshot is ever dirty */
}

static int snap_trim(struct export *e, uint64_t off, uint64_t len)
{
	return snapshot_consume(e->snap, off, len);
}

static int snap_refuse_zero(struct export *e, uint64_t off, uint64_t len, unsigned flags)
{
	return in_range(e, off, len) ?: -EPERM;
}

static int snap_extents(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	return snapshot_extents(e->snap, off, len, fn, arg);
}

static int snap_changed(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	return snapshot_changed(e->snap, off, len, fn, arg);
}

static const struct export_ops snapshot_ops = {
	.pread = snap_pread,
	.pwrite = snap_refuse_write,
	.flush = snap_flush,
	.trim = snap_trim,
	.zero = snap_refuse_zero,
	.extents = snap_extents,
	.changed = snap_changed,
};

/* --- images --------------------------------------------------------------- */

static int img_pread(struct export *e, void *buf, size_t len, uint64_t off)
{
	return image_read(e->img->r, buf, len, off);
}

static int img_trim(struct export *e, uint64_t off, uint64_t len)
{
	return -EPERM;
}

struct img_walk {
	extent_fn fn;
	void *arg;
};

static int img_extent(void *arg, uint64_t off, uint64_t len, enum image_extent type)
{
	struct img_walk *w = arg;
	return w->fn(w->arg, off, len, type == IMAGE_ZERO ? EXTENT_ZERO : EXTENT_DATA);
}

static int img_extents(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	struct img_walk w = { fn, arg };
	return image_map(e->img->r, off, len, img_extent, &w);
}

static const struct export_ops image_ops = {
	.pread = img_pread,
	.pwrite = snap_refuse_write,
	.flush = snap_flush,
	.trim = img_trim,
	.zero = snap_refuse_zero,
	.extents = img_extents,
	.changed = no_changed,
};

/* --- common ----------------------------------------------------------------- */

struct export *export_open_volume(struct volume *v)
{
	struct export *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	volume_openers_add(v, 1);
	if (volume_claimed(v)) { /* after counting ourselves: see volume_claim_sole */
		volume_openers_add(v, -1);
		free(e);
		errno = EBUSY;
		return NULL;
	}
	e->ops = &volume_ops;
	e->kind = EXPORT_VOLUME;
	e->vol = v;
	volume_get(v);
	snprintf(e->name, sizeof(e->name), "%s", volume_name(v));
	return e;
}

struct export *export_open_snapshot(struct snapshot *s)
{
	struct export *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->ops = &snapshot_ops;
	e->kind = EXPORT_SNAPSHOT;
	e->snap = s;
	e->vol = snapshot_volume(s);
	snapshot_get(s);
	snapshot_readers_add(s, 1);
	snprintf(e->name, sizeof(e->name), "%s@%s", volume_name(e->vol), snapshot_name(s));
	return e;
}

struct export *export_open_image(struct image_reader *r, const char *name)
{
	struct export *e = calloc(1, sizeof(*e));
	struct image_ref *ref = calloc(1, sizeof(*ref));
	if (!e || !ref) {
		free(e);
		free(ref);
		image_close(r);
		return NULL;
	}
	ref->r = r;
	atomic_init(&ref->refs, 1);
	e->ops = &image_ops;
	e->kind = EXPORT_IMAGE;
	e->img = ref;
	snprintf(e->name, sizeof(e->name), "%s", name);
	return e;
}

struct export *export_dup(const struct export *e)
{
	struct export *d;

	if (e->kind == EXPORT_SNAPSHOT)
		return export_open_snapshot(e->snap);
	if (e->kind == EXPORT_VOLUME)
		return export_open_volume(e->vol);
	d = malloc(sizeof(*d));
	if (d) {
		*d = *e;
		atomic_fetch_add(&e->img->refs, 1);
	}
	return d;
}

void export_close(struct export *e)
{
	if (!e)
		return;
	if (e->snap) {
		snapshot_readers_add(e->snap, -1);
		snapshot_put(e->snap);
	} else if (e->img) {
		if (atomic_fetch_sub(&e->img->refs, 1) == 1) {
			image_close(e->img->r);
			free(e->img);
		}
	} else {
		volume_openers_add(e->vol, -1);
		volume_put(e->vol);
	}
	free(e);
}

enum export_kind export_kind(const struct export *e)
{
	return e->kind;
}
const char *export_name(const struct export *e)
{
	return e->name;
}
uint64_t export_size(const struct export *e)
{
	return e->img ? image_get_info(e->img->r)->size : volume_size(e->vol);
}
bool export_readonly(const struct export *e)
{
	return e->kind != EXPORT_VOLUME;
}
struct volume *export_volume(const struct export *e)
{
	return e->vol;
}
struct snapshot *export_snapshot(const struct export *e)
{
	return e->snap;
}

uint32_t export_min_block(const struct export *e)
{
	return 512;
}

uint32_t export_preferred_block(const struct export *e)
{
	uint32_t chunk = e->img ? image_get_info(e->img->r)->cluster_size
				: (uint32_t)1 << volume_chunk_shift(e->vol);
	return chunk < 4096 ? 4096 : chunk;
}

uint32_t export_max_block(const struct export *e)
{
	return 32u << 20;
}

int export_pread(struct export *e, void *buf, size_t len, uint64_t off)
{
	int r = in_range(e, off, len);
	return r ? r : e->ops->pread(e, buf, len, off);
}

int export_pwrite(struct export *e, const void *buf, size_t len, uint64_t off, unsigned flags)
{
	return e->ops->pwrite(e, buf, len, off, flags);
}

int export_flush(struct export *e)
{
	return e->ops->flush(e);
}

int export_trim(struct export *e, uint64_t off, uint64_t len)
{
	int r = in_range(e, off, len);
	return r ? r : e->ops->trim(e, off, len);
}

int export_zero(struct export *e, uint64_t off, uint64_t len, unsigned flags)
{
	return e->ops->zero(e, off, len, flags);
}

int export_extents(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	int r = in_range(e, off, len);
	return r ? r : e->ops->extents(e, off, len, fn, arg);
}

int export_changed(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg)
{
	int r = in_range(e, off, len);
	return r ? r : e->ops->changed(e, off, len, fn, arg);
}

/* --- changes since a bookmark -------------------------------------------------- */

struct export_changes {
	struct bitmap map; /* per chunk */
	unsigned chunk_shift;
	uint64_t size;
};

void export_bookmarks(struct export *e, void (*fn)(void *arg, const char *name), void *arg)
{
	struct tracker_bookmark b[TRACKER_MAX_BOOKMARKS];
	struct tracker *t = e->snap ? volume_tracker(e->vol) : NULL;
	uint64_t gen = e->snap ? snapshot_generation(e->snap) : 0;
	size_t n = t && gen ? tracker_bookmarks(t, b, TRACKER_MAX_BOOKMARKS) : 0;

	for (size_t i = 0; i < n && i < TRACKER_MAX_BOOKMARKS; i++)
		if (b[i].gen < gen)
			fn(arg, b[i].name);
}

int export_changes_since(struct export *e, const char *bookmark, struct export_changes **out)
{
	struct tracker *t = e->snap ? volume_tracker(e->vol) : NULL;
	uint64_t gen = e->snap ? snapshot_generation(e->snap) : 0;
	struct tracker_bookmark b;
	struct export_changes *ch;
	bool exact;
	int r;

	if (!t || !gen)
		return -ENOTSUP;
	if (tracker_bookmark_find(t, bookmark, &b) < 0 || b.gen >= gen)
		return -ENOENT;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->chunk_shift = volume_chunk_shift(e->vol);
	ch->size = volume_size(e->vol);
	r = bitmap_init(&ch->map, volume_nchunks(e->vol), false);
	if (r == 0)
		r = tracker_changed(t, b.gen, gen, &ch->map, &exact);
	if (r < 0) {
		bitmap_destroy(&ch->map); /* a zeroed map frees nothing */
		free(ch);
		return r;
	}
	*out = ch;
	return 0;
}

int export_changes_walk(const struct export_changes *ch, uint64_t off, uint64_t len,
			extent_fn fn, void *arg)
{
	uint64_t end = off + len, nbits = ch->map.nbits;

	while (off < end) {
		uint64_t c = off >> ch->chunk_shift;
		bool set = bitmap_test(&ch->map, c);
		uint64_t next = set ? bitmap_next_clear(&ch->map, c, nbits)
				    : bitmap_next_set(&ch->map, c, nbits);
		uint64_t stop = HS_MIN_U64(next << ch->chunk_shift, end);
		int r = fn(arg, off, stop - off, set ? EXTENT_DATA : EXTENT_ZERO);
		if (r)
			return r;
		off = stop;
	}
	return 0;
}

void export_changes_free(struct export_changes *ch)
{
	if (!ch)
		return;
	bitmap_destroy(&ch->map);
	free(ch);
}

const char *export_failure_reason(struct export *e, char *buf, size_t len)
{
	struct snapshot_stats st;

	buf[0] = '\0';
	if (!e->snap)
		return buf;
	snapshot_get_stats(e->snap, &st);
	if (st.state == SNAPSHOT_FAILED)
		snprintf(buf, len, "%s", st.reason);
	else if (st.state == SNAPSHOT_DELETED)
		snprintf(buf, len, "the snapshot was deleted");
	return buf;
}
