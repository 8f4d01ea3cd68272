/* tracking.c - each volume's change map file, STATE_DIR/tracking/NAME.map.
 *
 * The engine keeps the map (engine/tracker.h); the daemon only says where
 * it lives, forgets it with the volume, and shows it in status.  A volume
 * whose map cannot be opened still serves: it just has no bookmarks to
 * offer, and status says why. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/daemon.h"
#include "engine/tracker.h"

static void map_path(struct daemon *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tracking/%s.map", d->state_dir, name);
}

struct tracker *tracking_open(struct daemon *d, struct vol_entry *ve, struct dev *origin)
{
	char path[PATH_MAX], dir[PATH_MAX];
	struct tracker_geometry geo = {
		.size = ve->cfg.size,
		.chunk_shift = (unsigned)__builtin_ctzll(ve->cfg.chunk_size),
		.region_shift = (unsigned)__builtin_ctzll(ve->cfg.track_granularity),
	};
	struct tracker *t;
	struct dev *map;
	int r;

	ve->tracking_error[0] = '\0';
	if (ve->cfg.track_granularity == 0) {
		snprintf(ve->tracking_error, sizeof(ve->tracking_error),
			 "the volume was created with --no-tracking");
		return NULL;
	}
	snprintf(dir, sizeof(dir), "%s/tracking", d->state_dir);
	(void)mkdir(dir, 0700);
	map_path(d, ve->cfg.name, path, sizeof(path));
	r = dev_file_open(&map, path, DEV_FILE_BUFFERED | DEV_FILE_CREATE);
	if (r == 0)
		r = tracker_open(&t, map, origin, &geo);
	if (r < 0) {
		snprintf(ve->tracking_error, sizeof(ve->tracking_error),
			 "cannot use the change map %s: %s", path, strerror(-r));
		hs_error("volume %s has no change tracking: %s", ve->cfg.name, ve->tracking_error);
		return NULL;
	}
	return t;
}

void tracking_forget(struct daemon *d, const char *name)
{
	char path[PATH_MAX];

	map_path(d, name, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		hs_warn("cannot remove %s: %s", path, strerror(errno));
}

json_object *tracking_json(struct daemon *d, struct vol_entry *ve)
{
	json_object *o = json_object_new_object();
	struct tracker *t = ve->vol ? volume_tracker(ve->vol) : NULL;
	struct tracker_status st;
	char path[PATH_MAX], epoch[33];

	if (!t) {
		json_object_object_add(o, "state", json_object_new_string("off"));
		if (ve->tracking_error[0])
			json_object_object_add(o, "reason",
					       json_object_new_string(ve->tracking_error));
		return o;
	}
	tracker_status(t, &st);
	map_path(d, ve->cfg.name, path, sizeof(path));
	tracker_epoch_hex(st.epoch, epoch);
	/* lost: the tracking started over and no backup has left a bookmark
	 * since, so the next backup must be a full one */
	const char *state = st.broken ? "broken"
			    : st.lost_reason[0] && st.bookmarks == 0 ? "lost"
								     : "active";
	json_object_object_add(o, "state", json_object_new_string(state));
	if (st.broken)
		json_object_object_add(o, "reason", json_object_new_string(st.lost_reason));
	json_object_object_add(o, "granularity",
			       json_object_new_int64((int64_t)(UINT64_C(1) << st.region_shift)));
	json_object_object_add(o, "map_file", json_object_new_string(path));
	json_object_object_add(o, "map_bytes", json_object_new_int64((int64_t)st.map_bytes));
	json_object_object_add(o, "epoch", json_object_new_string(epoch));
	json_add_time(o, "since", st.epoch_ns);
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)st.gen));
	json_object_object_add(o, "exact_since_generation",
			       json_object_new_int64((int64_t)st.exact_since));
	json_object_object_add(o, "bookmarks", json_object_new_int64(st.bookmarks));
	json_object_object_add(o, "write_path_flushes", json_object_new_int64((int64_t)st.syncs));
	if (!st.broken && st.lost_reason[0]) {
		json_object_object_add(o, "started_over_because",
				       json_object_new_string(st.lost_reason));
		json_add_time(o, "started_over", st.lost_ns);
	}
	json_object_object_add(o, "needs_full_backup",
			       json_object_new_boolean(st.broken || st.bookmarks == 0));
	return o;
}
