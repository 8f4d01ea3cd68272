/* export.h - what a front end serves: a volume (read-write), a snapshot
 * (read-only) or an image chain (read-only, image/image.h), behind one
 * interface.
 *
 * FUSE and NBD go through this; it holds a reference on the volume,
 * snapshot or image for as long as the export is open.  Calls return
 * 0 or -errno.  Errors a front end must translate:
 *   -EPERM   write, zero or discard on a read-only export
 *   -EINVAL  range outside the export
 *   -EIO     the snapshot failed (export_failure_reason() says why)
 *   -ENODATA a snapshot range already consumed (trimmed) by its reader
 *   -ESTALE  the snapshot was deleted while the export was open
 *   -ENOTSUP an operation this kind of export does not have
 */
#ifndef HS_EXPORT_H
#define HS_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "image/image.h"

struct export;

enum export_kind { EXPORT_VOLUME, EXPORT_SNAPSHOT, EXPORT_IMAGE };

#define EXPORT_FUA 0x1       /* pwrite, zero: durable on return */
#define EXPORT_MAY_TRIM 0x2  /* zero: may deallocate */

/* Both take a reference of their own; NULL with errno ENOMEM when out of
 * memory, or EBUSY for a volume a job holds alone (volume_claim_sole). */
struct export *export_open_volume(struct volume *v);
struct export *export_open_snapshot(struct snapshot *s);
/* Takes over r (closed with the last export on it; also when NULL is
 * returned).  name: "image:NAME". */
struct export *export_open_image(struct image_reader *r, const char *name);
/* One more export of the same volume, snapshot or image (NULL and errno as
 * for export_open_volume). */
struct export *export_dup(const struct export *e);
void export_close(struct export *e);

enum export_kind export_kind(const struct export *e);
/* "VOLUME" or "VOLUME@SNAPSHOT" */
const char *export_name(const struct export *e);
uint64_t export_size(const struct export *e);
bool export_readonly(const struct export *e);
struct volume *export_volume(const struct export *e);      /* NULL for an image */
struct snapshot *export_snapshot(const struct export *e); /* NULL unless a snapshot */

/* Block size constraints a front end should advertise (bytes). */
uint32_t export_min_block(const struct export *e);       /* 512 */
uint32_t export_preferred_block(const struct export *e); /* the chunk size, at least 4096 */
uint32_t export_max_block(const struct export *e);       /* 32 MiB */

int export_pread(struct export *e, void *buf, size_t len, uint64_t off);
int export_pwrite(struct export *e, const void *buf, size_t len, uint64_t off, unsigned flags);
int export_flush(struct export *e);
/* Volume: discard (reads zeros after).  Snapshot: the reader is done with the
 * range; its saved originals are released and later reads fail. */
int export_trim(struct export *e, uint64_t off, uint64_t len);
int export_zero(struct export *e, uint64_t off, uint64_t len, unsigned flags);
/* base:allocation-style extents (see engine.h extent_type). */
int export_extents(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg);
/* Snapshot only: chunks written on the volume since the snapshot. */
int export_changed(struct export *e, uint64_t off, uint64_t len, extent_fn fn, void *arg);

/* Snapshot only: the bookmarks of its volume an incremental could start
 * from (older than the snapshot); fn gets each NAME. */
void export_bookmarks(struct export *e, void (*fn)(void *arg, const char *name), void *arg);
/* Snapshot only: what changed between bookmark NAME of its volume and the
 * snapshot's instant, kept for walks.  -ENOENT: no such bookmark (or not
 * older than the snapshot); -ESTALE: the change map no longer reaches it;
 * -ENOTSUP: not a snapshot, or no change tracking. */
struct export_changes;
int export_changes_since(struct export *e, const char *bookmark, struct export_changes **out);
/* Runs of changed (EXTENT_DATA) and unchanged (EXTENT_ZERO) bytes. */
int export_changes_walk(const struct export_changes *ch, uint64_t off, uint64_t len,
			extent_fn fn, void *arg);
void export_changes_free(struct export_changes *ch);

/* Why a failed snapshot failed ("" otherwise); copied into buf. */
const char *export_failure_reason(struct export *e, char *buf, size_t len);

#endif
