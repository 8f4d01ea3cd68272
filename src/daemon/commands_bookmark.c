/* commands_bookmark.c - bookmark list, create, delete.
 *
 * A bookmark VOLUME#NAME marks the instant of a snapshot that was backed up
 * (ZFS' word and syntax): it outlives the snapshot and the daemon, and an
 * incremental backup reads only what changed since it (engine/tracker.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/commands.h"
#include "engine/tracker.h"

static json_object *bookmark_json(struct vol_entry *ve, const struct tracker_bookmark *b)
{
	json_object *o = json_object_new_object();
	char full[2 * HS_NAME_MAX + 2];

	snprintf(full, sizeof(full), "%s#%s", ve->cfg.name, b->name);
	json_object_object_add(o, "bookmark", json_object_new_string(full));
	json_object_object_add(o, "volume", json_object_new_string(ve->cfg.name));
	json_object_object_add(o, "name", json_object_new_string(b->name));
	json_add_time(o, "instant", b->instant_ns);
	json_add_time(o, "created", b->created_ns);
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)b->gen));
	return o;
}

json_object *bookmarks_json(struct daemon *d)
{
	json_object *arr = json_object_new_array();
	struct tracker_bookmark b[TRACKER_MAX_BOOKMARKS];

	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		struct tracker *t = ve->vol ? volume_tracker(ve->vol) : NULL;
		size_t n = t ? tracker_bookmarks(t, b, TRACKER_MAX_BOOKMARKS) : 0;
		for (size_t i = 0; i < n && i < TRACKER_MAX_BOOKMARKS; i++)
			json_object_array_add(arr, bookmark_json(ve, &b[i]));
	}
	return arr;
}

static enum cmd_status cmd_bookmark_list(struct daemon *d, const struct ctl_request *req,
					 struct ctl_session *sess, json_object **result,
					 char *err, size_t errlen)
{
	*result = json_object_new_object();
	json_object_object_add(*result, "bookmarks", bookmarks_json(d));
	return CMD_OK;
}

/* The tracker of the volume a "VOLUME#NAME" names; NULL with err set. */
static struct tracker *resolve(struct daemon *d, const char *full, char *vol, char *name,
			       char *err, size_t errlen, enum cmd_status *st)
{
	const char *hash = strchr(full, '#'), *why;
	struct vol_entry *ve;

	*st = CMD_USAGE;
	if (!hash || (size_t)(hash - full) > HS_NAME_MAX || strlen(hash + 1) > HS_NAME_MAX) {
		snprintf(err, errlen, "bad bookmark '%.140s': a bookmark is named VOLUME#NAME", full);
		return NULL;
	}
	memcpy(vol, full, (size_t)(hash - full));
	vol[hash - full] = '\0';
	strcpy(name, hash + 1);
	if ((why = names_check(vol)) || (why = names_check(name))) {
		snprintf(err, errlen, "bad bookmark '%.140s': %s", full, why);
		return NULL;
	}
	ve = commands_usable_volume(d, vol, err, errlen, st);
	if (!ve)
		return NULL;
	if (!volume_tracker(ve->vol)) {
		snprintf(err, errlen, "volume '%s' has no change tracking, so no bookmarks (%s)", vol,
			 ve->tracking_error[0] ? ve->tracking_error : "off");
		*st = CMD_ERROR;
		return NULL;
	}
	return volume_tracker(ve->vol);
}

static enum cmd_status cmd_bookmark_delete(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	char vol[HS_NAME_MAX + 1], name[HS_NAME_MAX + 1];
	enum cmd_status st;
	struct tracker *t = resolve(d, ctl_str(req, "bookmark"), vol, name, err, errlen, &st);
	int r;

	if (!t)
		return st;
	r = tracker_bookmark_remove(t, name);
	if (r == -ENOENT) {
		snprintf(err, errlen, "bookmark %s#%s does not exist (see 'hotsnap bookmark list')",
			 vol, name);
		return CMD_ERROR;
	}
	if (r < 0) {
		snprintf(err, errlen, "deleting bookmark %s#%s failed: %s", vol, name, strerror(-r));
		return CMD_ERROR;
	}
	*result = json_object_new_object();
	json_object_object_add(*result, "deleted", json_object_new_string(ctl_str(req, "bookmark")));
	return CMD_OK;
}

/* For backups made by other tools (an NBD pull): the snapshot's instant
 * becomes a bookmark without a hotsnap backup. */
static enum cmd_status cmd_bookmark_create(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	struct vol_entry *ve;
	struct snap_entry *se;
	struct snapshot_stats ss;
	const char *name = ctl_str(req, "name"), *why;
	bool usage;
	int r;

	se = registry_resolve_snapshot(d, ctl_str(req, "snapshot"), &ve, err, errlen, &usage);
	if (!se)
		return usage ? CMD_USAGE : CMD_ERROR;
	if (!name)
		name = se->name;
	if ((why = names_check(name))) {
		snprintf(err, errlen, "bad bookmark name '%.64s': %s", name, why);
		return CMD_USAGE;
	}
	snapshot_get_stats(se->snap, &ss);
	if (ss.state != SNAPSHOT_ACTIVE) {
		snprintf(err, errlen, "snapshot %s failed: %s", ctl_str(req, "snapshot"), ss.reason);
		return CMD_ERROR;
	}
	if (!volume_tracker(ve->vol) || !ss.generation) {
		snprintf(err, errlen, "volume '%s' has no change tracking, so no bookmarks (%s)",
			 ve->cfg.name, ve->tracking_error[0] ? ve->tracking_error : "off");
		return CMD_ERROR;
	}
	r = tracker_bookmark_add(volume_tracker(ve->vol), name, ss.generation, ss.created_ns);
	if (r < 0) {
		snprintf(err, errlen, "keeping bookmark %s#%s failed: %s", ve->cfg.name, name,
			 strerror(-r));
		return CMD_ERROR;
	}
	struct tracker_bookmark b;
	if (tracker_bookmark_find(volume_tracker(ve->vol), name, &b) == 0)
		*result = bookmark_json(ve, &b);
	else
		*result = json_object_new_object();
	return CMD_OK;
}

const struct command_entry commands_bookmark[] = {
	{ "bookmark.list", cmd_bookmark_list },
	{ "bookmark.create", cmd_bookmark_create },
	{ "bookmark.delete", cmd_bookmark_delete },
	{ NULL, NULL },
};
