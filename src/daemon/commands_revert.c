/* commands_revert.c - `snapshot revert VOLUME@NAME`: the volume back to the
 * snapshot's instant (revert/revert.h), refused while anything writes to
 * it.  Progress goes to the client as events; a client that goes away
 * cancels the revert (the volume then holds a mix: run it again). */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/test_hold.h"
#include "daemon/commands.h"
#include "daemon/events.h"
#include "fuse/fuse_front.h"
#include "revert/revert.h"

struct tick_ctx {
	struct ctl_session *sess;
	bool progress;
};

static void revert_tick(void *arg, struct revert_job *job)
{
	struct tick_ctx *t = arg;

	if (commands_progress(t->sess, t->progress, "reverting", atomic_load(&job->position),
			      job->changed, atomic_load(&job->position), revert_job_seconds(job)))
		atomic_store(&job->cancel, true);
}

static enum cmd_status served_to_clients(struct vol_entry *ve, const char *full, char *err,
					 size_t errlen)
{
	snprintf(err, errlen,
		 "volume '%s' is served to %d NBD client(s) that may write; disconnect them first, "
		 "then revert to %s",
		 ve->cfg.name, volume_openers(ve->vol) - 1, full);
	return CMD_ERROR;
}

/* Nothing may write to the volume while it is put back; under d->mu. */
static enum cmd_status check_quiet(struct daemon *d, struct vol_entry *ve, const char *full,
				   char *err, size_t errlen)
{
	if (ve->busy) {
		snprintf(err, errlen, "volume '%s' is busy: %s is running", ve->cfg.name, ve->busy);
		return CMD_ERROR;
	}
	if (ve->loop.dev[0]) {
		snprintf(err, errlen,
			 "volume '%s' is attached as %s: unmount and detach it first (hotsnap volume "
			 "detach %s); a revert must not race the file system's writes",
			 ve->cfg.name, ve->loop.dev, ve->cfg.name);
		return CMD_ERROR;
	}
	if (fuse_front_open_count(d->fuse, ve->cfg.name) > 0) {
		snprintf(err, errlen, "the FUSE file of volume '%s' is open (a program or an NBD "
				      "writer); close it first, then revert to %s",
			 ve->cfg.name, full);
		return CMD_ERROR;
	}
	/* the daemon's own export for the FUSE files is one; any other is a
	 * client that may write (NBD).  The claim at the end is the real check,
	 * and holds the volume alone until the revert ends. */
	if (volume_openers(ve->vol) > 1)
		return served_to_clients(ve, full, err, errlen);
	if (ve->backups) {
		snprintf(err, errlen, "a backup of volume '%s' is running; wait for it first",
			 ve->cfg.name);
		return CMD_ERROR;
	}
	if (!volume_claim_sole(ve->vol, 1)) {
		snprintf(err, errlen,
			 "volume '%s' was opened meanwhile (an NBD client or its FUSE file); close "
			 "it, then revert to %s",
			 ve->cfg.name, full);
		return CMD_ERROR;
	}
	return CMD_OK;
}

static enum cmd_status cmd_snapshot_revert(struct daemon *d, const struct ctl_request *req,
					   struct ctl_session *sess, json_object **result,
					   char *err, size_t errlen)
{
	struct tick_ctx tick = { .sess = sess, .progress = ctl_bool(req, "progress", true) };
	const char *full = ctl_str(req, "snapshot");
	struct revert_job job = { 0 };
	struct vol_entry *ve;
	struct snap_entry *se;
	enum cmd_status st;
	bool usage = false;
	int r;

	pthread_mutex_lock(&d->mu);
	se = registry_resolve_snapshot(d, full, &ve, err, errlen, &usage);
	if (!se) {
		pthread_mutex_unlock(&d->mu);
		return usage ? CMD_USAGE : CMD_ERROR;
	}
	if ((st = check_quiet(d, ve, full, err, errlen)) != CMD_OK) {
		pthread_mutex_unlock(&d->mu);
		return st;
	}
	ve->busy = "a revert";
	job.snap = se->snap;
	snapshot_get(job.snap);
	pthread_mutex_unlock(&d->mu);

	hs_info("reverting volume %s to %s", ve->cfg.name, full);
	test_hold_point("revert");
	r = revert_job_run(&job, revert_tick, &tick);
	snapshot_put(job.snap);
	pthread_mutex_lock(&d->mu);
	volume_release_sole(ve->vol);
	ve->busy = NULL;
	pthread_mutex_unlock(&d->mu);
	if (r < 0) {
		snprintf(err, errlen, "revert of volume %s to %s: %s", ve->cfg.name, full, job.error);
		hs_error("%s", err);
		return CMD_ERROR;
	}
	json_object *f = json_object_new_object();
	json_object_object_add(f, "volume", json_object_new_string(ve->cfg.name));
	json_object_object_add(f, "snapshot", json_object_new_string(full));
	events_post("snapshot.reverted", f, "volume %s reverted to %s: %.1f MB written back",
		    ve->cfg.name, full, (double)job.changed / 1e6);

	json_object *o = json_object_new_object();
	json_object_object_add(o, "volume", json_object_new_string(ve->cfg.name));
	json_object_object_add(o, "snapshot", json_object_new_string(full));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)job.size));
	json_object_object_add(o, "changed_bytes", json_object_new_int64((int64_t)job.changed));
	json_object_object_add(o, "bytes_written",
			       json_object_new_int64((int64_t)atomic_load(&job.bytes_written)));
	json_object_object_add(o, "bytes_zeroed",
			       json_object_new_int64((int64_t)atomic_load(&job.bytes_zeroed)));
	json_object_object_add(o, "seconds", json_object_new_double(revert_job_seconds(&job)));
	*result = o;
	return CMD_OK;
}

const struct command_entry commands_revert[] = {
	{ "snapshot.revert", cmd_snapshot_revert },
	{ NULL, NULL },
};
