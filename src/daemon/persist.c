/* persist.c - volumes.json and snapshots.json in the state dir.
 *
 * Written whole to a temporary file, fsynced, renamed over the old one and
 * the directory fsynced, so a crash leaves the old or the new file, never a
 * torn one.  Records that only matter while the machine is up (the list of
 * snapshots, which a power cut loses anyway; the default-name counter) skip
 * the fsyncs: they are written inside a snapshot's freeze window, where
 * milliseconds of fsync would stall every application.  Read with json-c
 * and checked field by field: a hand-edited or damaged file gives a message
 * naming the file and the field. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "engine/tracker.h"

#define FORMAT_VERSION 1

static int write_atomically(struct daemon *d, const char *name, json_object *obj, bool sync)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY);
	size_t len = strlen(text);
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", d->state_dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", d->state_dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		off += (size_t)n;
	}
	if (r == 0 && (write(fd, "\n", 1) != 1 || (sync && fsync(fd) < 0)))
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r == 0 && sync) {
		int dfd = open(d->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if (r < 0) {
		unlink(tmp);
		hs_error("cannot write %s: %s", path, strerror(-r));
	}
	return r;
}

static int save_volumes(struct daemon *d, bool sync)
{
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	int r;

	json_object_object_add(root, "version", json_object_new_int(FORMAT_VERSION));
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(ve->cfg.name));
		json_object_object_add(o, "backing", json_object_new_string(ve->cfg.backing));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)ve->cfg.size));
		json_object_object_add(o, "chunk_size",
				       json_object_new_int64((int64_t)ve->cfg.chunk_size));
		json_object_object_add(o, "cow_buffer",
				       json_object_new_int64((int64_t)ve->cfg.cow_buffer));
		json_object_object_add(o, "diff_dir", json_object_new_string(ve->cfg.diff_dir));
		json_object_object_add(o, "diff_limit",
				       json_object_new_int64((int64_t)ve->cfg.diff_limit));
		json_object_object_add(o, "next_snapshot",
				       json_object_new_int64((int64_t)ve->cfg.next_snapshot));
		json_object_object_add(o, "cache", json_object_new_string(ve->cfg.cache));
		json_object_object_add(o, "track_granularity",
				       json_object_new_int64((int64_t)ve->cfg.track_granularity));
		if (ve->cfg.hook[0])
			json_object_object_add(o, "hook", json_object_new_string(ve->cfg.hook));
		if (ve->cfg.attached)
			json_object_object_add(o, "attached", json_object_new_boolean(1));
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "volumes", arr);
	r = write_atomically(d, "volumes.json", root, sync);
	json_object_put(root);
	return r;
}

int persist_save_volumes(struct daemon *d)
{
	return save_volumes(d, true);
}

int persist_save_volume_counters(struct daemon *d)
{
	return save_volumes(d, false);
}

int persist_save_snapshots(struct daemon *d)
{
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	int r;

	json_object_object_add(root, "version", json_object_new_int(FORMAT_VERSION));
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		for (struct snap_entry *se = ve->snaps; se; se = se->next) {
			if (se->temporary)
				continue;
			json_object *o = json_object_new_object();
			json_object_object_add(o, "volume", json_object_new_string(ve->cfg.name));
			json_object_object_add(o, "name", json_object_new_string(se->name));
			json_object_object_add(o, "state", json_object_new_string("active"));
			json_object_array_add(arr, o);
		}
		for (struct lost_snap *ls = ve->lost; ls; ls = ls->next) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "volume", json_object_new_string(ve->cfg.name));
			json_object_object_add(o, "name", json_object_new_string(ls->name));
			json_object_object_add(o, "state", json_object_new_string("lost"));
			json_object_object_add(o, "reason", json_object_new_string(ls->reason));
			json_object_array_add(arr, o);
		}
	}
	json_object_object_add(root, "snapshots", arr);
	r = write_atomically(d, "snapshots.json", root, false);
	json_object_put(root);
	return r;
}

/* Reads a state file; NULL with *missing when it does not exist. */
static json_object *read_file(struct daemon *d, const char *name, bool *missing, char *err,
			      size_t errlen)
{
	char path[PATH_MAX];
	json_object *root;

	snprintf(path, sizeof(path), "%s/%s", d->state_dir, name);
	*missing = access(path, F_OK) != 0 && errno == ENOENT;
	if (*missing)
		return NULL;
	root = json_object_from_file(path);
	if (!root || !json_object_is_type(root, json_type_object)) {
		snprintf(err, errlen, "%s is not valid JSON (%s); fix or remove it", path,
			 json_util_get_last_err() ? json_util_get_last_err() : "not an object");
		if (root)
			json_object_put(root);
		return NULL;
	}
	return root;
}

static bool get_str(json_object *o, const char *key, char *out, size_t len)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) >= len)
		return false;
	snprintf(out, len, "%s", json_object_get_string(v));
	return true;
}

static bool get_u64(json_object *o, const char *key, uint64_t *out)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		return false;
	*out = (uint64_t)json_object_get_int64(v);
	return true;
}

static int load_volumes(struct daemon *d, char *err, size_t errlen)
{
	json_object *root, *arr;
	bool missing;
	struct vol_entry **tail = &d->volumes;

	root = read_file(d, "volumes.json", &missing, err, errlen);
	if (!root)
		return missing ? 0 : -EINVAL;
	if (!json_object_object_get_ex(root, "volumes", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		snprintf(err, errlen, "%s/volumes.json has no \"volumes\" list", d->state_dir);
		json_object_put(root);
		return -EINVAL;
	}
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		struct vol_entry *ve = calloc(1, sizeof(*ve));
		if (!ve)
			break;
		if (!json_object_is_type(o, json_type_object) ||
		    !get_str(o, "name", ve->cfg.name, sizeof(ve->cfg.name)) ||
		    names_check(ve->cfg.name) || registry_volume(d, ve->cfg.name) ||
		    !get_str(o, "backing", ve->cfg.backing, sizeof(ve->cfg.backing)) ||
		    !get_str(o, "diff_dir", ve->cfg.diff_dir, sizeof(ve->cfg.diff_dir)) ||
		    !get_u64(o, "size", &ve->cfg.size) ||
		    !get_u64(o, "chunk_size", &ve->cfg.chunk_size) ||
		    !get_u64(o, "cow_buffer", &ve->cfg.cow_buffer) ||
		    !get_u64(o, "diff_limit", &ve->cfg.diff_limit) ||
		    !hs_is_pow2(ve->cfg.chunk_size)) {
			snprintf(err, errlen, "%s/volumes.json: entry %zu is damaged; fix or remove it",
				 d->state_dir, i + 1);
			free(ve);
			json_object_put(root);
			return -EINVAL;
		}
		(void)get_u64(o, "next_snapshot", &ve->cfg.next_snapshot);
		if (!get_str(o, "cache", ve->cfg.cache, sizeof(ve->cfg.cache)))
			strcpy(ve->cfg.cache, "auto");
		if (!get_str(o, "hook", ve->cfg.hook, sizeof(ve->cfg.hook)))
			ve->cfg.hook[0] = 0;
		json_object *att;
		ve->cfg.attached = json_object_object_get_ex(o, "attached", &att) &&
				   json_object_get_boolean(att);
		/* volumes from before change tracking: the default */
		if (!get_u64(o, "track_granularity", &ve->cfg.track_granularity) ||
		    (ve->cfg.track_granularity != 0 && (!hs_is_pow2(ve->cfg.track_granularity) ||
							ve->cfg.track_granularity < ve->cfg.chunk_size)))
			ve->cfg.track_granularity =
				HS_MAX(ve->cfg.chunk_size, UINT64_C(1) << TRACKER_DEFAULT_REGION_SHIFT);
		*tail = ve;
		tail = &ve->next;
	}
	json_object_put(root);
	return 0;
}

static void load_snapshots(struct daemon *d)
{
	char err[256];
	json_object *root, *arr;
	bool missing;

	root = read_file(d, "snapshots.json", &missing, err, sizeof(err));
	if (!root) {
		if (!missing)
			hs_warn("%s; the list of lost snapshots is gone with it", err);
		return;
	}
	if (json_object_object_get_ex(root, "snapshots", &arr) &&
	    json_object_is_type(arr, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i);
			char vol[HS_NAME_MAX + 1], name[HS_NAME_MAX + 1], state[16];
			struct lost_snap *ls;
			struct vol_entry *ve;
			if (!json_object_is_type(o, json_type_object) ||
			    !get_str(o, "volume", vol, sizeof(vol)) ||
			    !get_str(o, "name", name, sizeof(name)) ||
			    !get_str(o, "state", state, sizeof(state)) || names_check(name) ||
			    !(ve = registry_volume(d, vol)) || registry_lost(ve, name))
				continue;
			ls = calloc(1, sizeof(*ls));
			if (!ls)
				break;
			snprintf(ls->name, sizeof(ls->name), "%s", name);
			if (strcmp(state, "lost") != 0 ||
			    !get_str(o, "reason", ls->reason, sizeof(ls->reason))) {
				snprintf(ls->reason, sizeof(ls->reason),
					 "lost when the daemon stopped (snapshots live only as "
					 "long as the daemon); delete it with 'hotsnap snapshot "
					 "delete %s@%s'",
					 vol, name);
				hs_warn("snapshot %s@%s was lost when the previous daemon stopped",
					vol, name);
			}
			ls->next = ve->lost;
			ve->lost = ls;
		}
	}
	json_object_put(root);
}

int persist_load(struct daemon *d, char *err, size_t errlen)
{
	int r = load_volumes(d, err, errlen);
	if (r < 0)
		return r;
	load_snapshots(d);
	return persist_save_snapshots(d);
}
