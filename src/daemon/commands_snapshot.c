/* commands_snapshot.c - snapshot create, list, attach, detach, delete.
 *
 * Creating a set: every file system mounted on the volumes' loop devices is
 * frozen (FIFREEZE flushes it and holds new writes), their used-block maps
 * are read while frozen, the engine installs all the views at one instant,
 * and everything is thawed again, also on error.  Volumes with nothing
 * mounted get their map afterwards from the snapshot itself (an unmounted
 * ext2/3/4), which is consistent by construction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/log.h"
#include "daemon/commands.h"
#include "daemon/devlinks.h"
#include "daemon/events.h"
#include "daemon/freeze.h"
#include "daemon/usedmap.h"
#include "engine/tracker.h"
#include "export/export.h"
#include "fuse/fuse_front.h"
#include "hooks/hooks.h"

static int read_snapshot(void *ctx, void *buf, size_t len, uint64_t off)
{
	return snapshot_read(ctx, buf, len, off);
}

/* Picks the default name: snapN with N past every volume's counter and not
 * in use on any of them. */
static void default_name(const struct snapshot_set_request *rq, char *out, size_t len)
{
	uint64_t n = 1;

	for (size_t i = 0; i < rq->n; i++)
		if (rq->vols[i]->cfg.next_snapshot > n)
			n = rq->vols[i]->cfg.next_snapshot;
	for (;; n++) {
		bool taken = false;
		snprintf(out, len, "snap%llu", (unsigned long long)n);
		for (size_t i = 0; i < rq->n; i++)
			taken |= registry_snapshot(rq->vols[i], out) != NULL;
		if (!taken)
			return;
	}
}

static json_object *snapshot_event_fields(const char *volume, const char *full)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "volume", json_object_new_string(volume));
	json_object_object_add(o, "snapshot", json_object_new_string(full));
	return o;
}

/* A hook's result, for the event stream. */
static void hook_event(void *arg, const struct hook_report *r)
{
	const struct hooks_run *hr = arg;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "hook", json_object_new_string(r->hook));
	json_object_object_add(o, "phase", json_object_new_string(r->phase));
	json_object_object_add(o, "snapshot_name", json_object_new_string(hr->snapshot));
	json_object_object_add(o, "volumes", json_object_new_string(hr->volumes));
	json_object_object_add(o, "ms", json_object_new_double(r->ms));
	if (r->ok)
		events_post("hook.done", o, "hook %s %s for snapshot %s done in %.0f ms", r->hook,
			    r->phase, hr->snapshot, r->ms);
	else
		events_post("hook.failed", o, "%s", r->message ? r->message : "failed");
}

/* The application hooks of a freezing snapshot: the directory's, then each
 * volume's own.  0, or -1 with a message. */
static int plan_hooks(struct daemon *d, const struct snapshot_set_request *rq,
		      const struct frozen_fs *fs, const bool *has_fs, const char *name,
		      struct hooks_run *hr, char *err, size_t errlen)
{
	hooks_init(hr, d->hook_timeout_s, 0);
	hr->report = hook_event;
	hr->report_arg = hr;
	hooks_set_snapshot(hr, name);
	for (size_t i = 0; i < rq->n; i++)
		hooks_add_volume(hr, rq->vols[i]->cfg.name, has_fs[i] ? fs[i].mountpoint : "",
				 rq->vols[i]->loop.dev);
	if (hooks_add_dir(hr, d->hooks_dir, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < rq->n; i++)
		if (rq->vols[i]->cfg.hook[0] &&
		    hooks_add(hr, rq->vols[i]->cfg.hook, rq->vols[i]->cfg.name,
			      has_fs[i] ? fs[i].mountpoint : "", err, errlen) < 0)
			return -1;
	return 0;
}

/* Runs prepare and starts the holders, without the registry lock (a
 * database checkpoint may take a while, and other commands go on); the
 * volumes are marked busy meanwhile, so none of them goes away.  0, or -1
 * with a message, everything released. */
static int hooks_before(struct daemon *d, const struct snapshot_set_request *rq,
			struct hooks_run *hr, char *err, size_t errlen)
{
	int r;

	for (size_t i = 0; i < rq->n; i++)
		rq->vols[i]->busy = "the prepare step of application hooks";
	pthread_mutex_unlock(&d->mu);
	r = hooks_prepare(hr, err, errlen);
	if (r == 0)
		r = hooks_freeze(hr, err, errlen);
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < rq->n; i++)
		rq->vols[i]->busy = NULL;
	if (r == 0 && atomic_load(&d->stopping)) {
		snprintf(err, errlen, "the daemon is stopping");
		r = -1;
	}
	if (r < 0) {
		hooks_release(hr, false);
		hooks_finish(hr, false);
	}
	return r;
}

enum cmd_status snapshots_create_locked(struct daemon *d, const struct snapshot_set_request *rq,
					struct snapshot_set_result *res, char *err,
					size_t errlen)
{
	struct snapshot_request reqs[CONTROL_MAX_LIST];
	struct snapshot *snaps[CONTROL_MAX_LIST];
	struct frozen_fs *fs; /* 4 KiB each: not for a thread's stack */
	struct bitmap used[CONTROL_MAX_LIST];
	bool has_fs[CONTROL_MAX_LIST], has_map[CONTROL_MAX_LIST];
	uint64_t t0, t_frozen, t_created, t_thawed;
	enum cmd_status st = CMD_OK;
	int r = 0;

	memset(res, 0, sizeof(*res));
	fs = calloc(rq->n, sizeof(*fs));
	if (!fs) {
		snprintf(err, errlen, "out of memory");
		return CMD_ERROR;
	}
	if (rq->name)
		snprintf(res->name, sizeof(res->name), "%s", rq->name);
	else
		default_name(rq, res->name, sizeof(res->name));
	for (size_t i = 0; i < rq->n; i++) {
		if (registry_snapshot(rq->vols[i], res->name)) {
			snprintf(err, errlen, "snapshot %s@%s exists already", rq->vols[i]->cfg.name,
				 res->name);
			free(fs);
			return CMD_ERROR;
		}
		has_fs[i] = rq->vols[i]->loop.dev[0] &&
			    freeze_find_mount(rq->vols[i]->loop.dev, &fs[i]);
		has_map[i] = false;
	}

	struct hooks_run *hr = NULL;
	if (rq->freeze && !rq->no_hooks) {
		char why[1024];
		hr = calloc(1, sizeof(*hr));
		if (!hr || plan_hooks(d, rq, fs, has_fs, res->name, hr, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "snapshot not taken: %s", hr ? why : "out of memory");
			free(hr);
			free(fs);
			return CMD_ERROR;
		}
		if (hr->n && hooks_before(d, rq, hr, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "snapshot not taken: %s", why);
			free(hr);
			free(fs);
			return CMD_ERROR;
		}
		res->hooks = (unsigned)hr->n;
	}

	/* the change maps get ready for the boundary now, outside the freeze */
	for (size_t i = 0; i < rq->n; i++)
		if (volume_tracker(rq->vols[i]->vol))
			(void)tracker_sync(volume_tracker(rq->vols[i]->vol));

	bool any_fs = false;
	for (size_t i = 0; i < rq->n; i++)
		any_fs |= has_fs[i];
	if (rq->freeze && any_fs)
		freeze_journal_write(d->state_dir, fs, rq->n); /* unused entries are empty */
	struct freezer fz = { .pid = -1 };
	t0 = clock_mono_ns();
	if (rq->freeze && any_fs) {
		size_t bad = 0;
		r = freezer_freeze(&fz, fs, rq->n, &bad);
		if (r < 0) {
			snprintf(err, errlen, "freezing %s (on %s, volume %s) failed: %s",
				 fs[bad].mountpoint, rq->vols[bad]->loop.dev, rq->vols[bad]->cfg.name,
				 strerror(-r));
			st = CMD_ERROR;
			goto thaw;
		}
	}
	t_frozen = clock_mono_ns();
	/* Inside the freeze: the maps of the mounted file systems, then the set.
	 * Without a freeze a mounted file system may be changing its
	 * allocation under us, so it gets no map. */
	for (size_t i = 0; i < rq->n; i++) {
		struct vol_entry *ve = rq->vols[i];
		struct stat sb;
		reqs[i].volume = ve->vol;
		reqs[i].name = res->name;
		reqs[i].used = NULL;
		res->map_source[i] = "none: every block is protected";
		if (rq->all_blocks) {
			res->map_source[i] = "none: --all-blocks";
			continue;
		}
		if (!has_fs[i])
			continue;
		if (!rq->freeze || !(fs[i].frozen_by_us || fs[i].was_frozen)) {
			res->map_source[i] = "none: the mounted file system was not frozen by hotsnap";
			continue;
		}
		if (stat(ve->loop.dev, &sb) == 0 &&
		    usedmap_from_fsmap(fs[i].mountpoint, sb.st_rdev, ve->cfg.size,
				       volume_chunk_shift(ve->vol), &used[i]) == 0) {
			has_map[i] = true;
			reqs[i].used = &used[i];
			res->map_source[i] = "GETFSMAP of the mounted file system";
		}
	}
	r = snapshot_create_set(reqs, rq->n, snaps);
	t_created = clock_mono_ns();
	char early[1024];
	if (r == 0 && hr && hooks_holders_alive(hr, early, sizeof(early)) < 0) {
		/* a lock let go before it was asked to: the instant may not have
		 * been covered, so the set does not stand */
		snprintf(err, errlen, "snapshot not taken: %s", early);
		for (size_t i = 0; i < rq->n; i++) {
			snapshot_delete(snaps[i]);
			snapshot_put(snaps[i]);
		}
		st = CMD_ERROR;
	}
thaw:
	(void)freezer_thaw(&fz);
	t_thawed = clock_mono_ns();
	if (hr) {
		/* the holders let go at once; then thaw (or abort) */
		bool taken = st == CMD_OK && r == 0;
		res->hooks_failed = hooks_release(hr, taken);
		res->hooks_failed += hooks_finish(hr, taken);
		free(hr);
	}
	if (rq->freeze && any_fs)
		freeze_journal_clear(d->state_dir);
	for (size_t i = 0; i < rq->n; i++)
		if (has_map[i]) {
			res->used_chunks[i] = bitmap_count(&used[i]);
			bitmap_destroy(&used[i]);
		}
	free(fs);
	if (st != CMD_OK)
		return st;
	if (r == -EEXIST) {
		snprintf(err, errlen, "a snapshot named '%s' exists already", res->name);
		return CMD_ERROR;
	}
	if (r == -EBUSY) {
		snprintf(err, errlen, "a volume has %d snapshots already; delete some first",
			 ENGINE_MAX_SNAPSHOTS);
		return CMD_ERROR;
	}
	if (r < 0) {
		snprintf(err, errlen, "creating the snapshot failed: %s", strerror(-r));
		return CMD_ERROR;
	}
	res->freeze_ms = (double)(t_thawed - t0) / 1e6;
	res->daemon_us = (double)(t_created - t_frozen) / 1e3;
	struct snapshot_stats ss;
	snapshot_get_stats(snaps[0], &ss);
	res->engine_us = (double)ss.create_cost_ns / 1e3;

	/* Unmounted volumes: an ext2/3/4 image's own bitmaps, read from the
	 * snapshot, which cannot change any more. */
	uint64_t tm = clock_mono_ns();
	for (size_t i = 0; i < rq->n; i++) {
		struct vol_entry *ve = rq->vols[i];
		struct bitmap bm;
		const char *why = NULL;
		if (rq->all_blocks || has_fs[i])
			continue;
		if (usedmap_from_ext(read_snapshot, snaps[i], ve->cfg.size,
				     volume_chunk_shift(ve->vol), &bm, &why) == 0) {
			if (snapshot_apply_used_map(snaps[i], &bm) == 0) {
				res->map_source[i] = "block bitmaps of the unmounted ext file system";
				res->used_chunks[i] = bitmap_count(&bm);
			}
			bitmap_destroy(&bm);
		} else if (why) {
			res->map_source[i] = why;
		}
	}
	res->map_ms = (double)(clock_mono_ns() - tm) / 1e6;

	for (size_t i = 0; i < rq->n; i++) {
		struct vol_entry *ve = rq->vols[i];
		struct snap_entry *se = calloc(1, sizeof(*se));
		struct lost_snap *ls, **pp;
		if (!se) {
			/* cannot track it: do not keep it */
			snapshot_delete(snaps[i]);
			snapshot_put(snaps[i]);
			continue;
		}
		snprintf(se->name, sizeof(se->name), "%s", res->name);
		se->snap = snaps[i];
		se->temporary = rq->temporary;
		/* append: listings stay oldest first */
		struct snap_entry **tail = &ve->snaps;
		while (*tail)
			tail = &(*tail)->next;
		*tail = se;
		res->snaps[i] = se;
		/* a new snapshot replaces a lost record of the same name */
		for (pp = &ve->lost; (ls = *pp); pp = &ls->next)
			if (strcmp(ls->name, res->name) == 0) {
				*pp = ls->next;
				free(ls);
				break;
			}
		json_object *ev = json_object_new_object();
		char full[2 * HS_NAME_MAX + 2];
		snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, res->name);
		json_object_object_add(ev, "volume", json_object_new_string(ve->cfg.name));
		json_object_object_add(ev, "snapshot", json_object_new_string(full));
		json_object_object_add(ev, "map", json_object_new_string(res->map_source[i]));
		json_object_object_add(ev, "temporary", json_object_new_boolean(rq->temporary));
		json_object_object_add(ev, "hooks", json_object_new_int((int)res->hooks));
		events_post("snapshot.created", ev, "snapshot %s created%s (used-block map: %s)", full,
			    rq->temporary ? " for a backup" : "", res->map_source[i]);
		uint64_t num;
		if (sscanf(res->name, "snap%llu", (unsigned long long *)&num) == 1 &&
		    num >= ve->cfg.next_snapshot)
			ve->cfg.next_snapshot = num + 1;
	}
	persist_save_volume_counters(d);
	if (!rq->temporary)
		persist_save_snapshots(d);
	return CMD_OK;
}

static enum cmd_status cmd_snapshot_create(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	struct snapshot_set_request rq = { 0 };
	struct snapshot_set_result res;
	const char *names[CONTROL_MAX_LIST];
	enum cmd_status st;
	const char *why;

	rq.n = ctl_strings(req, "volumes", names, CONTROL_MAX_LIST);
	rq.name = ctl_str(req, "name");
	rq.freeze = ctl_bool(req, "freeze", true);
	rq.no_hooks = !ctl_bool(req, "hooks", true);
	rq.all_blocks = ctl_bool(req, "all_blocks", false);
	if (rq.name && (why = names_check(rq.name))) {
		snprintf(err, errlen, "bad snapshot name '%.64s': %s", rq.name, why);
		return CMD_USAGE;
	}
	for (size_t i = 0; i < rq.n; i++) {
		rq.vols[i] = commands_usable_volume(d, names[i], err, errlen, &st);
		if (!rq.vols[i])
			return st;
		if (rq.vols[i]->busy) {
			snprintf(err, errlen, "volume '%s' is busy: %s is running", names[i],
				 rq.vols[i]->busy);
			return CMD_ERROR;
		}
		for (size_t j = 0; j < i; j++)
			if (rq.vols[j] == rq.vols[i]) {
				snprintf(err, errlen, "volume '%s' is named twice", names[i]);
				return CMD_USAGE;
			}
	}
	st = snapshots_create_locked(d, &rq, &res, err, errlen);
	if (st != CMD_OK)
		return st;

	json_object *arr = json_object_new_array(), *maps = json_object_new_array();
	for (size_t i = 0; i < rq.n; i++) {
		char full[2 * HS_NAME_MAX + 2];
		snprintf(full, sizeof(full), "%s@%s", rq.vols[i]->cfg.name, res.name);
		json_object_array_add(arr, json_object_new_string(full));
		json_object *m = json_object_new_object();
		json_object_object_add(m, "snapshot", json_object_new_string(full));
		json_object_object_add(m, "source", json_object_new_string(res.map_source[i]));
		json_object_object_add(
			m, "used_bytes",
			json_object_new_int64((int64_t)(res.used_chunks[i] * rq.vols[i]->cfg.chunk_size)));
		json_object_array_add(maps, m);
	}
	*result = json_object_new_object();
	json_object_object_add(*result, "snapshots", arr);
	json_object_object_add(*result, "name", json_object_new_string(res.name));
	json_object_object_add(*result, "freeze_ms", json_object_new_double(res.freeze_ms));
	json_object_object_add(*result, "daemon_us", json_object_new_double(res.daemon_us));
	json_object_object_add(*result, "engine_us", json_object_new_double(res.engine_us));
	json_object_object_add(*result, "map_ms", json_object_new_double(res.map_ms));
	json_object_object_add(*result, "hooks", json_object_new_int((int)res.hooks));
	json_object_object_add(*result, "hooks_failed", json_object_new_int((int)res.hooks_failed));
	json_object_object_add(*result, "maps", maps);
	return CMD_OK;
}

static enum cmd_status cmd_snapshot_list(struct daemon *d, const struct ctl_request *req,
					 struct ctl_session *sess, json_object **result,
					 char *err, size_t errlen)
{
	json_object *arr = json_object_new_array();

	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		for (struct snap_entry *se = ve->snaps; se; se = se->next)
			json_object_array_add(arr, status_snapshot_json(d, ve, se));
		for (struct lost_snap *ls = ve->lost; ls; ls = ls->next) {
			json_object *o = json_object_new_object();
			char full[2 * HS_NAME_MAX + 2];
			snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, ls->name);
			json_object_object_add(o, "snapshot", json_object_new_string(full));
			json_object_object_add(o, "name", json_object_new_string(ls->name));
			json_object_object_add(o, "volume", json_object_new_string(ve->cfg.name));
			json_object_object_add(o, "state", json_object_new_string("failed"));
			json_object_object_add(o, "reason", json_object_new_string(ls->reason));
			json_object_object_add(o, "lost", json_object_new_boolean(1));
			json_object_object_add(o, "cow_bytes", json_object_new_int64(0));
			json_object_array_add(arr, o);
		}
	}
	*result = json_object_new_object();
	json_object_object_add(*result, "snapshots", arr);
	json_object_object_add(*result, "bookmarks", bookmarks_json(d));
	return CMD_OK;
}

/* A snapshot entry for a command, with a clear message when it is failed. */
static struct snap_entry *resolve(struct daemon *d, const struct ctl_request *req,
				  struct vol_entry **ve, char *err, size_t errlen,
				  enum cmd_status *st)
{
	bool usage;
	struct snap_entry *se =
		registry_resolve_snapshot(d, ctl_str(req, "snapshot"), ve, err, errlen, &usage);
	if (!se)
		*st = usage ? CMD_USAGE : CMD_ERROR;
	return se;
}

static enum cmd_status cmd_snapshot_attach(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	struct vol_entry *ve;
	enum cmd_status st;
	struct snap_entry *se = resolve(d, req, &ve, err, errlen, &st);
	struct snapshot_stats ss;
	char full[2 * HS_NAME_MAX + 2], path[PATH_MAX];
	const char *why = "";
	int r;

	if (!se)
		return st;
	snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, se->name);
	snapshot_get_stats(se->snap, &ss);
	if (ss.state != SNAPSHOT_ACTIVE) {
		snprintf(err, errlen, "snapshot %s failed: %s", full, ss.reason);
		return CMD_ERROR;
	}
	registry_fuse_path(d, full, path, sizeof(path));
	if (loopdev_attached(&se->loop))
		goto done;
	if (!se->published) {
		struct export *e = export_open_snapshot(se->snap);
		r = e ? fuse_front_add(d->fuse, full, e) : -ENOMEM;
		if (r < 0) {
			snprintf(err, errlen, "cannot publish %s: %s", full, strerror(-r));
			return CMD_ERROR;
		}
		se->published = true;
	}
	r = loopdev_attach(path, true, &se->loop, &why);
	if (r < 0) {
		snprintf(err, errlen, "cannot attach %s: %s: %s", full, why, strerror(-r));
		return CMD_ERROR;
	}
	hs_info("snapshot %s attached read-only as %s", full, se->loop.dev);
	devlinks_set(d, full, se->loop.dev);
done:
	*result = json_object_new_object();
	json_object_object_add(*result, "device", json_object_new_string(se->loop.dev));
	return CMD_OK;
}

static enum cmd_status cmd_snapshot_detach(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	struct vol_entry *ve;
	enum cmd_status st;
	struct snap_entry *se = resolve(d, req, &ve, err, errlen, &st);
	char full[2 * HS_NAME_MAX + 2], what[2 * HS_NAME_MAX + 16];

	if (!se)
		return st;
	snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, se->name);
	snprintf(what, sizeof(what), "snapshot %s", full);
	st = commands_detach_loop(d, &se->loop, what, full, full, err, errlen);
	if (st != CMD_OK)
		return st;
	if (se->published && fuse_front_remove(d->fuse, full) == 0)
		se->published = false;
	*result = json_object_new_object();
	return CMD_OK;
}

static enum cmd_status cmd_snapshot_delete(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	char vol[HS_NAME_MAX + 1], snap[HS_NAME_MAX + 1];
	const char *full = ctl_str(req, "snapshot");
	struct vol_entry *ve;
	struct snap_entry *se;
	struct lost_snap *ls;
	const char *why;
	enum cmd_status st;

	if ((why = names_split_snapshot(full, vol, snap))) {
		snprintf(err, errlen, "bad snapshot name '%.140s': %s", full, why);
		return CMD_USAGE;
	}
	ve = registry_volume(d, vol);
	if (ve && (ls = registry_lost(ve, snap))) {
		for (struct lost_snap **pp = &ve->lost; *pp; pp = &(*pp)->next)
			if (*pp == ls) {
				*pp = ls->next;
				break;
			}
		free(ls);
		persist_save_snapshots(d);
		*result = json_object_new_object();
		return CMD_OK;
	}
	se = resolve(d, req, &ve, err, errlen, &st);
	if (!se)
		return st;
	if (se->loop.dev[0]) {
		snprintf(err, errlen,
			 "snapshot %s is attached as %s: detach it first (hotsnap snapshot detach %s)",
			 full, se->loop.dev, full);
		return CMD_ERROR;
	}
	if (se->backups) {
		snprintf(err, errlen, "a backup of %s is running; wait for it or stop it first",
			 full);
		return CMD_ERROR;
	}
	registry_drop_snapshot(d, ve, se);
	persist_save_snapshots(d);
	events_post("snapshot.deleted", snapshot_event_fields(ve->cfg.name, full),
		    "snapshot %s deleted", full);
	*result = json_object_new_object();
	return CMD_OK;
}

const struct command_entry commands_snapshot[] = {
	{ "snapshot.create", cmd_snapshot_create },
	{ "snapshot.list", cmd_snapshot_list },
	{ "snapshot.attach", cmd_snapshot_attach },
	{ "snapshot.detach", cmd_snapshot_detach },
	{ "snapshot.delete", cmd_snapshot_delete },
	{ NULL, NULL },
};
