/* backup_service.c - see backup_service.h.
 *
 * An incremental is refused, with one line saying a full backup is needed,
 * unless every link holds: the parent carries hotsnap's metadata, is of
 * this volume and size, from this tracking epoch, at an instant a bookmark
 * still marks, earlier than the source; and the tracker still holds the
 * generations between.  Never a silent wrong incremental. */
#include "daemon/backup_service.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup.h"
#include "backup/backup_meta.h"
#include "common/log.h"
#include "common/paths.h"
#include "daemon/commands.h"
#include "daemon/events.h"
#include "engine/tracker.h"

#define INCREMENTAL_MAX_CLUSTER (UINT64_C(64) << 10)

/* What the parent image says, checked on its own (no daemon state). */
struct parent {
	struct backup_meta meta;
	char path[PATH_MAX];
	uint64_t size;
};

static int open_parent(const char *path, struct parent *p, char *err, size_t errlen)
{
	struct image_reader *r;
	const struct image_info *info;
	const char *why;
	char msg[IMAGE_ERROR_MAX];
	int e;

	if (!realpath(path, p->path)) {
		snprintf(err, errlen, "--incremental %s: %s", path, strerror(errno));
		return -errno;
	}
	/* the whole chain must open: an incremental on a broken chain is no backup */
	e = image_open(&r, p->path, 0, msg, sizeof(msg));
	if (e < 0) {
		snprintf(err, errlen, "--incremental %s cannot be opened: %s", path, msg);
		return e;
	}
	info = image_get_info(r);
	p->size = info->size;
	if (info->format != IMAGE_QCOW2 || !info->meta) {
		snprintf(err, errlen, "--incremental %s is not a qcow2 image hotsnap wrote; a full "
				      "backup is needed",
			 path);
		e = -EINVAL;
	} else if (backup_meta_decode(info->meta, info->meta_len, &p->meta, &why) < 0) {
		snprintf(err, errlen, "--incremental %s: %s; a full backup is needed", path, why);
		e = -EINVAL;
	}
	image_close(r);
	return e;
}

/* The parent against the volume and its tracker; under d->mu. */
static int check_parent(struct vol_entry *ve, const struct parent *p, const char *arg,
			struct tracker_bookmark *bm, char *err, size_t errlen)
{
	struct tracker *t = volume_tracker(ve->vol);
	struct tracker_status st;
	char epoch[33];

	if (strcmp(p->meta.volume, ve->cfg.name) != 0) {
		snprintf(err, errlen, "--incremental %s is an image of volume '%s', not '%s'", arg,
			 p->meta.volume, ve->cfg.name);
		return -EINVAL;
	}
	if (p->meta.volume_size != ve->cfg.size || p->size != ve->cfg.size) {
		snprintf(err, errlen, "--incremental %s holds %llu bytes, the volume %llu; a full "
				      "backup is needed",
			 arg, (unsigned long long)p->size, (unsigned long long)ve->cfg.size);
		return -EINVAL;
	}
	if (!t) {
		snprintf(err, errlen, "volume '%s' has no change tracking (%s); a full backup is "
				      "needed",
			 ve->cfg.name, ve->tracking_error[0] ? ve->tracking_error : "off");
		return -EINVAL;
	}
	tracker_status(t, &st);
	tracker_epoch_hex(st.epoch, epoch);
	if (st.broken) {
		snprintf(err, errlen, "change tracking of volume '%s' stopped (%s); a full backup "
				      "is needed",
			 ve->cfg.name, st.lost_reason);
		return -ESTALE;
	}
	if (!p->meta.epoch[0] || strcmp(p->meta.epoch, epoch) != 0) {
		snprintf(err, errlen,
			 "change tracking of volume '%s' started over after %s was made (%s); a "
			 "full backup is needed",
			 ve->cfg.name, arg,
			 st.lost_reason[0] ? st.lost_reason : "its change map was made anew");
		return -ESTALE;
	}
	if (tracker_bookmark_find(t, p->meta.bookmark, bm) < 0 || bm->gen != p->meta.generation) {
		snprintf(err, errlen,
			 "bookmark %s#%s, the instant of %s, is gone (deleted, or the oldest of %d "
			 "dropped); a full backup is needed",
			 ve->cfg.name, p->meta.bookmark, arg, TRACKER_MAX_BOOKMARKS);
		return -ESTALE;
	}
	return 0;
}

/* The chunks to read: changed in [bm, snap), widened to whole clusters. */
static int changed_set(struct tracker *t, uint64_t from, uint64_t to, uint64_t nchunks,
		       unsigned chunk_shift, struct bitmap *only, bool *exact, uint32_t *cluster)
{
	int r = bitmap_init(only, nchunks, false);

	if (r < 0)
		return r;
	r = tracker_changed(t, from, to, only, exact);
	if (r < 0) {
		bitmap_destroy(only);
		return r;
	}
	struct tracker_status st;
	tracker_status(t, &st);
	/* exact: clusters of a chunk; regions: clusters of a region (up to 64K) */
	uint64_t chunk = UINT64_C(1) << chunk_shift;
	uint64_t cl = *exact ? chunk : UINT64_C(1) << st.region_shift;
	cl = HS_MAX(HS_MIN(cl, INCREMENTAL_MAX_CLUSTER), HS_MAX(chunk, UINT64_C(4096)));
	*cluster = (uint32_t)HS_MIN(cl, UINT64_C(2) << 20);
	uint64_t per = *cluster >> chunk_shift;
	for (uint64_t c = bitmap_next_set(only, 0, nchunks); per > 1 && c < nchunks;) {
		uint64_t c0 = c / per * per, c1 = HS_MIN_U64(c0 + per, nchunks);
		if ((r = bitmap_set_range(only, c0, c1 - c0)) < 0)
			break;
		c = bitmap_next_set(only, c1, nchunks);
	}
	if (r < 0)
		bitmap_destroy(only);
	return r;
}

/* The backing file name as the new image keeps it: relative to its own
 * directory, so a chain moved as a whole still opens. */
static int backing_name(const char *output, const char *parent, char *out, size_t len)
{
	char copy[PATH_MAX], dir[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", output);
	if (!realpath(dirname(copy), dir))
		return -errno;
	return path_relative(dir, parent, out, len);
}

static void temp_name(struct vol_entry *ve, char *name, size_t len)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "backup-%Y%m%d-%H%M%S", &tm);
	snprintf(name, len, "%s", stamp);
	for (unsigned i = 2; registry_snapshot(ve, name) || registry_lost(ve, name); i++)
		snprintf(name, len, "%s-%u", stamp, i);
}

/* The image must not land on a volume's own data: not its backing file
 * (the CLI renames the image over the output path at the end) and not a
 * file of the FUSE directory.  Under d->mu. */
static enum cmd_status check_output_place(struct daemon *d, const struct backup_request *rq,
					  char *err, size_t errlen)
{
	struct stat ost;
	struct vol_entry *victim = NULL;

	if ((stat(rq->output, &ost) == 0 && (victim = registry_volume_on(d, &ost))) ||
	    (fstat(rq->fd, &ost) == 0 && (victim = registry_volume_on(d, &ost)))) {
		snprintf(err, errlen, "-o %s is the backing of volume '%s'; choose another file",
			 rq->output, victim->cfg.name);
		return CMD_ERROR;
	}
	if ((stat(rq->output, &ost) == 0 || fstat(rq->fd, &ost) == 0) && registry_on_fuse(d, &ost)) {
		snprintf(err, errlen, "-o %s is inside hotsnap's own FUSE directory", rq->output);
		return CMD_USAGE;
	}
	return CMD_OK;
}

static json_object *backup_event_fields(const struct backup_job *job)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "source", json_object_new_string(job->source));
	json_object_object_add(o, "output", json_object_new_string(job->output));
	return o;
}

/* The snapshot to read: named, or made now for this backup alone.  Under
 * d->mu. */
static struct snap_entry *resolve_source(struct daemon *d, const struct backup_request *rq,
					 struct vol_entry **vep, struct backup_outcome *out,
					 char *err, size_t errlen, enum cmd_status *st)
{
	struct snap_entry *se;
	struct snapshot_stats ss;

	if (strchr(rq->source, '@')) {
		bool usage;
		se = registry_resolve_snapshot(d, rq->source, vep, err, errlen, &usage);
		if (!se) {
			*st = usage ? CMD_USAGE : CMD_ERROR;
			return NULL;
		}
		snapshot_get_stats(se->snap, &ss);
		if (ss.state != SNAPSHOT_ACTIVE) {
			snprintf(err, errlen, "snapshot %s failed: %s", rq->source, ss.reason);
			*st = CMD_ERROR;
			return NULL;
		}
		if (rq->all_blocks && !ss.all_blocks) {
			snprintf(err, errlen,
				 "snapshot %s was taken with a used-block map; --all-blocks needs a "
				 "snapshot taken with --all-blocks",
				 rq->source);
			*st = CMD_USAGE;
			return NULL;
		}
		out->consumed = rq->consume;
		if (rq->consume && (snapshot_readers(se->snap) > 0 || se->backups > 0)) {
			out->consumed = false;
			out->consume_refused = "the snapshot is also attached or read by someone else";
		}
		return se;
	}
	const char *why = names_check(rq->source);
	if (why) {
		snprintf(err, errlen, "bad volume name '%.64s': %s", rq->source, why);
		*st = CMD_USAGE;
		return NULL;
	}
	struct vol_entry *ve = commands_usable_volume(d, rq->source, err, errlen, st);
	if (!ve)
		return NULL;
	if (ve->busy) {
		snprintf(err, errlen, "volume '%s' is busy: %s is running", rq->source, ve->busy);
		*st = CMD_ERROR;
		return NULL;
	}
	*vep = ve;
	struct snapshot_set_request sr = { .n = 1, .freeze = true, .temporary = true };
	struct snapshot_set_result made;
	char name[HS_NAME_MAX + 1];
	temp_name(ve, name, sizeof(name));
	sr.vols[0] = ve;
	sr.name = name;
	sr.all_blocks = rq->all_blocks;
	*st = snapshots_create_locked(d, &sr, &made, err, errlen);
	if (*st != CMD_OK)
		return NULL;
	out->temporary = true;
	out->freeze_ms = made.freeze_ms;
	out->consumed = true; /* the snapshot exists for this backup alone */
	return made.snaps[0];
}

enum cmd_status backup_service_run(struct daemon *d, const struct backup_request *rq,
				   struct backup_outcome *out, char *err, size_t errlen)
{
	struct backup_job *job = calloc(1, sizeof(*job));
	struct image_params ip = { .format = rq->format, .compress = rq->compress };
	struct parent parent;
	struct tracker_bookmark bm;
	struct bitmap only;
	bool have_only = false;
	struct vol_entry *ve = NULL;
	struct snap_entry *se;
	enum cmd_status st = CMD_OK;
	char meta[1024];
	int r;

	memset(out, 0, sizeof(*out));
	if (!job) {
		snprintf(err, errlen, "out of memory");
		return CMD_ERROR;
	}
	if (rq->incremental) {
		if (rq->format != IMAGE_QCOW2) {
			snprintf(err, errlen, "--incremental writes qcow2 (its parent is the backing "
					      "file); add --format qcow2");
			free(job);
			return CMD_USAGE;
		}
		/* the file alone first, without the registry lock */
		if (open_parent(rq->incremental, &parent, err, errlen) < 0) {
			free(job);
			return CMD_ERROR;
		}
		r = backing_name(rq->output, parent.path, out->backing, sizeof(out->backing));
		if (r < 0) {
			snprintf(err, errlen, "cannot name %s relative to %s: %s", parent.path,
				 rq->output, strerror(-r));
			free(job);
			return CMD_ERROR;
		}
	}

	pthread_mutex_lock(&d->mu);
	if ((st = check_output_place(d, rq, err, errlen)) != CMD_OK)
		goto out_unlock;
	/* an incremental of a volume checks its parent before it freezes anything */
	if (rq->incremental && !strchr(rq->source, '@')) {
		ve = commands_usable_volume(d, rq->source, err, errlen, &st);
		if (!ve)
			goto out_unlock;
		if (check_parent(ve, &parent, rq->incremental, &bm, err, errlen) < 0) {
			st = CMD_ERROR;
			goto out_unlock;
		}
	}
	se = resolve_source(d, rq, &ve, out, err, errlen, &st);
	if (!se)
		goto out_unlock;
	if (rq->incremental && check_parent(ve, &parent, rq->incremental, &bm, err, errlen) < 0)
		st = CMD_ERROR;
	else if (rq->incremental && snapshot_generation(se->snap) <= bm.gen) {
		snprintf(err, errlen, "%s is not later than the instant of %s", rq->source,
			 rq->incremental);
		st = CMD_ERROR;
	}
	if (st != CMD_OK) {
		if (out->temporary)
			registry_drop_snapshot(d, ve, se);
		goto out_unlock;
	}
	snprintf(job->source, sizeof(job->source), "%s@%s", ve->cfg.name, se->name);
	snprintf(job->output, sizeof(job->output), "%s", rq->output);
	snprintf(out->source, sizeof(out->source), "%s", job->source);
	job->snap = se->snap;
	snapshot_get(job->snap);
	se->backups++; /* the entry stays: delete refuses while backups > 0 */
	pthread_mutex_unlock(&d->mu);

	struct tracker *t = volume_tracker(ve->vol);
	uint64_t gen = snapshot_generation(job->snap);
	if (rq->incremental) {
		r = changed_set(t, bm.gen, gen, volume_nchunks(ve->vol),
				volume_chunk_shift(ve->vol), &only, &out->changed_exact,
				&ip.cluster_size);
		if (r < 0) {
			snprintf(err, errlen, "the change map of volume '%s' no longer reaches the "
					      "instant of %s (%s); a full backup is needed",
				 ve->cfg.name, rq->incremental, strerror(-r));
			st = CMD_ERROR;
			goto out_release;
		}
		have_only = true;
		job->only = &only;
		out->changed_bytes = bitmap_count(&only) * ve->cfg.chunk_size;
		ip.backing = out->backing;
		ip.backing_format = "qcow2";
	}
	/* what the image says about itself, so it can be a parent later */
	struct backup_meta bmeta = { .volume_size = ve->cfg.size, .chunk_size = ve->cfg.chunk_size,
				     .generation = gen,
				     .parent_generation = rq->incremental ? bm.gen : 0 };
	struct snapshot_stats ss;
	snapshot_get_stats(job->snap, &ss);
	bmeta.instant_s = ss.created_ns / 1000000000u;
	snprintf(bmeta.volume, sizeof(bmeta.volume), "%s", ve->cfg.name);
	snprintf(bmeta.bookmark, sizeof(bmeta.bookmark), "%s", se->name);
	if (t && gen) {
		struct tracker_status ts;
		tracker_status(t, &ts);
		tracker_epoch_hex(ts.epoch, bmeta.epoch);
	}
	ip.size = ve->cfg.size;
	ip.name = job->output;
	if (rq->format == IMAGE_QCOW2) {
		ip.meta = meta;
		ip.meta_len = backup_meta_encode(&bmeta, meta, sizeof(meta));
	}
	out->cluster_size = rq->format == IMAGE_QCOW2 ? (ip.cluster_size ? ip.cluster_size : 65536) : 0;
	r = image_writer_begin(&job->out, rq->fd, &ip, err, errlen);
	if (r < 0) {
		st = CMD_ERROR;
		goto out_release;
	}
	job->consume = out->consumed;
	job->yield = rq->yield;
	job->rate_limit = rq->rate;
	pthread_mutex_lock(&d->mu);
	job->next = ve->backups;
	ve->backups = job;
	pthread_mutex_unlock(&d->mu);

	char how[160] = "";
	if (job->consume)
		snprintf(how, sizeof(how), " (consuming)");
	else if (out->consume_refused)
		snprintf(how, sizeof(how), " (not consuming: %s)", out->consume_refused);
	events_post("backup.started", backup_event_fields(job),
		    "backup of %s to %s (%s%s%s) started%s", job->source, job->output,
		    image_format_name(rq->format), rq->incremental ? ", incremental over " : "",
		    rq->incremental ? rq->incremental : "", how);
	r = backup_job_run(job, rq->tick, rq->tick_arg);

	pthread_mutex_lock(&d->mu);
	for (struct backup_job **pp = &ve->backups; *pp; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	pthread_mutex_unlock(&d->mu);
	/* off the list: status no longer looks at the writer */
	out->data_bytes = atomic_load(&job->out->data_bytes);
	if (r == 0)
		r = image_writer_finish(job->out, job->error, sizeof(job->error));
	else
		image_writer_abort(job->out);
	job->out = NULL;
	if (r < 0) {
		events_post("backup.failed", backup_event_fields(job), "backup of %s to %s failed: %s",
			    job->source, job->output, job->error);
		snprintf(err, errlen, "%s", job->error);
		st = CMD_ERROR;
		goto out_release;
	}

	/* the image is whole: its instant becomes a bookmark for the next one */
	if (!t || !gen)
		snprintf(out->bookmark_problem, sizeof(out->bookmark_problem),
			 "volume '%s' has no change tracking (%s)", ve->cfg.name,
			 ve->tracking_error[0] ? ve->tracking_error : "off");
	else if ((r = tracker_bookmark_add(t, se->name, gen, ss.created_ns)) < 0)
		snprintf(out->bookmark_problem, sizeof(out->bookmark_problem),
			 "the bookmark could not be kept: %s", strerror(-r));
	else
		snprintf(out->bookmark, sizeof(out->bookmark), "%s#%s", ve->cfg.name, se->name);
	if (out->bookmark_problem[0])
		hs_warn("backup of %s left no bookmark: %s", job->source, out->bookmark_problem);

	snapshot_get_stats(job->snap, &ss);
	out->size = job->size;
	out->bytes_read = atomic_load(&job->bytes_read);
	out->bytes_skipped = atomic_load(&job->bytes_skipped);
	out->cow_bytes = ss.cow_bytes;
	out->diff_peak = atomic_load(&job->diff_peak);
	out->yields = atomic_load(&job->yields);
	out->seconds = backup_job_seconds(job);
	out->copies_seconds = job->copies_seconds;
	out->copies_bytes = job->copies_bytes;
	out->all_blocks = ss.all_blocks;
	json_object *ev = backup_event_fields(job);
	json_object_object_add(ev, "bytes_read", json_object_new_int64((int64_t)out->bytes_read));
	json_object_object_add(ev, "seconds", json_object_new_double(out->seconds));
	if (out->bookmark[0])
		json_object_object_add(ev, "bookmark", json_object_new_string(out->bookmark));
	events_post("backup.done", ev, "backup of %s done: %.1f MB read in %.2f s%s%s",
		    job->source, (double)out->bytes_read / 1e6, out->seconds,
		    out->bookmark[0] ? ", bookmark " : "", out->bookmark);

out_release:
	pthread_mutex_lock(&d->mu);
	se = registry_snapshot(ve, job->source + strlen(ve->cfg.name) + 1);
	if (se) {
		se->backups--;
		if (out->temporary)
			registry_drop_snapshot(d, ve, se);
	}
	pthread_mutex_unlock(&d->mu);
	snapshot_put(job->snap);
	if (have_only)
		bitmap_destroy(&only);
	free(job);
	return st;

out_unlock:
	pthread_mutex_unlock(&d->mu);
	free(job);
	return st;
}
