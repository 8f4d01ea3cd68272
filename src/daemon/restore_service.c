/* restore_service.c - see restore_service.h. */
#include "daemon/restore_service.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/test_hold.h"
#include "daemon/commands.h"
#include "fuse/fuse_front.h"

static enum cmd_status served_to_clients(struct vol_entry *ve, char *err, size_t errlen)
{
	snprintf(err, errlen,
		 "volume '%s' is served to %d NBD client(s); disconnect them first (a restore "
		 "replaces every block under them)",
		 ve->cfg.name, volume_openers(ve->vol) - 1);
	return CMD_ERROR;
}

/* Whether the volume may be written wholesale now; under d->mu. */
static enum cmd_status check_free(struct daemon *d, struct vol_entry *ve, bool verify_only,
				  char *err, size_t errlen)
{
	if (ve->busy) {
		snprintf(err, errlen, "volume '%s' is busy: %s is running", ve->cfg.name, ve->busy);
		return CMD_ERROR;
	}
	if (verify_only)
		return CMD_OK; /* reading only: it may be in use */
	if (ve->loop.dev[0]) {
		snprintf(err, errlen,
			 "volume '%s' is attached as %s: unmount and detach it first (hotsnap volume "
			 "detach %s); a restore replaces every block",
			 ve->cfg.name, ve->loop.dev, ve->cfg.name);
		return CMD_ERROR;
	}
	if (fuse_front_open_count(d->fuse, ve->cfg.name) > 0) {
		snprintf(err, errlen, "the FUSE file of volume '%s' is open (a loop device or a "
				      "program); close it first",
			 ve->cfg.name);
		return CMD_ERROR;
	}
	if (volume_openers(ve->vol) > 1) /* the claim below is the real check */
		return served_to_clients(ve, err, errlen);
	if (ve->snaps) {
		snprintf(err, errlen,
			 "volume '%s' has snapshots: delete them first (a restore rewrites every "
			 "block, which they would all have to keep)",
			 ve->cfg.name);
		return CMD_ERROR;
	}
	if (ve->backups) {
		snprintf(err, errlen, "a backup of volume '%s' is running", ve->cfg.name);
		return CMD_ERROR;
	}
	return CMD_OK;
}

/* Holds the volume alone for the restore: the daemon's own export for the
 * FUSE files is one; any other is an NBD client that may write over the
 * restore, or read it half done, and none may connect until it ends. */
static enum cmd_status claim(struct vol_entry *ve, char *err, size_t errlen)
{
	if (volume_claim_sole(ve->vol, 1))
		return CMD_OK;
	snprintf(err, errlen,
		 "volume '%s' was opened meanwhile (an NBD client or its FUSE file); close it, "
		 "then restore",
		 ve->cfg.name);
	return CMD_ERROR;
}

enum cmd_status restore_service_run(struct daemon *d, const struct restore_request *rq,
				    struct restore_outcome *out, char *err, size_t errlen)
{
	struct restore_job job = { .verify_only = rq->verify_only };
	struct vol_entry *ve = NULL;
	enum cmd_status st = CMD_OK;
	char msg[IMAGE_ERROR_MAX];
	int r;

	memset(out, 0, sizeof(*out));
	r = image_open(&job.src, rq->image, 0, msg, sizeof(msg));
	if (r < 0) {
		snprintf(err, errlen, "cannot restore from %s: %s", rq->image, msg);
		return CMD_ERROR;
	}
	out->depth = image_get_info(job.src)->depth;
	out->size = image_get_info(job.src)->size;

	pthread_mutex_lock(&d->mu);
	if (rq->new_backing) {
		struct vol_config c;
		const char *why = names_check(rq->volume);
		if (why) {
			snprintf(err, errlen, "bad volume name '%.64s': %s", rq->volume, why);
			st = CMD_USAGE;
			goto out_unlock;
		}
		volume_config_defaults(d, &c, rq->volume, rq->new_backing);
		c.size = out->size;
		st = volume_create_locked(d, &c, true, &ve, &job.fresh, err, errlen);
		if (st != CMD_OK)
			goto out_unlock;
		out->created = true;
		hs_info("volume %s created for the restore of %s", rq->volume, rq->image);
	} else {
		ve = commands_usable_volume(d, rq->volume, err, errlen, &st);
		if (!ve)
			goto out_unlock;
		if ((st = check_free(d, ve, rq->verify_only, err, errlen)) != CMD_OK)
			goto out_unlock;
	}
	if (!rq->verify_only && (st = claim(ve, err, errlen)) != CMD_OK)
		goto out_unlock;
	ve->busy = rq->verify_only ? "a comparison with an image" : "a restore";
	job.dst = ve->vol;
	volume_get(job.dst);
	pthread_mutex_unlock(&d->mu);

	hs_info("%s %s into volume %s (%u images)", rq->verify_only ? "comparing" : "restoring",
		rq->image, rq->volume, out->depth);
	test_hold_point("restore");
	r = restore_job_run(&job, rq->tick, rq->tick_arg);
	out->written = atomic_load(&job.bytes_written);
	out->zeroed = atomic_load(&job.bytes_zeroed);
	out->checked = atomic_load(&job.bytes_checked);
	out->mismatched = atomic_load(&job.mismatched);
	out->first_mismatch = atomic_load(&job.first_mismatch);
	out->seconds = restore_job_seconds(&job);
	out->write_seconds = job.write_seconds;
	out->verify_seconds = job.verify_seconds;
	if (r < 0) {
		snprintf(err, errlen, "%s", job.error);
		hs_error("%s of %s into volume %s: %s", rq->verify_only ? "comparison" : "restore",
			 rq->image, rq->volume, job.error);
		st = CMD_ERROR;
	} else {
		hs_info("%s %s into volume %s: %.1f MB in %.2f s, %s",
			rq->verify_only ? "compared" : "restored", rq->image, rq->volume,
			(double)out->size / 1e6, out->seconds,
			rq->verify_only ? "equal" : "verified");
	}
	volume_put(job.dst);
	pthread_mutex_lock(&d->mu);
	if (!rq->verify_only)
		volume_release_sole(ve->vol);
	ve->busy = NULL;
out_unlock:
	pthread_mutex_unlock(&d->mu);
	image_close(job.src);
	return st;
}
