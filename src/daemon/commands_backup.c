/* commands_backup.c - `backup SOURCE -o FILE`.
 *
 * The CLI opens the output (an unnamed temporary file in the target's
 * directory) and passes the descriptor with the request; the daemon fills it
 * and the CLI gives it its name only after success, so an interrupted backup
 * never leaves a half image under the final name.  Progress goes to the
 * client as events; a client that goes away cancels the backup.
 *
 * This handler runs without d->mu (a backup takes minutes); it takes the
 * lock only to set up and to tear down, and holds engine references in
 * between. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "backup/backup.h"
#include "daemon/commands.h"

static atomic_uint temp_counter;

struct tick_ctx {
	struct ctl_session *sess;
	bool progress;
};

static void backup_tick(void *arg, struct backup_job *job)
{
	struct tick_ctx *t = arg;

	if (ctl_session_gone(t->sess)) {
		atomic_store(&job->cancel, true);
		return;
	}
	if (!t->progress)
		return;
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string("progress"));
	json_object_object_add(ev, "position",
			       json_object_new_int64((int64_t)atomic_load(&job->position)));
	json_object_object_add(ev, "size", json_object_new_int64((int64_t)job->size));
	json_object_object_add(ev, "bytes_read",
			       json_object_new_int64((int64_t)atomic_load(&job->bytes_read)));
	json_object_object_add(ev, "seconds", json_object_new_double(backup_job_seconds(job)));
	ctl_session_event(t->sess, ev);
	json_object_put(ev);
}

static enum cmd_status check_output(int fd, char *err, size_t errlen)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fstat(fd, &st) < 0 || (fl & O_ACCMODE) == O_RDONLY) {
		snprintf(err, errlen, "the output descriptor passed is not open for writing");
		return CMD_USAGE;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode) &&
	    !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "the output must be a regular file, a device or a pipe");
		return CMD_USAGE;
	}
	return CMD_OK;
}

static enum cmd_status cmd_backup(struct daemon *d, const struct ctl_request *req,
				  struct ctl_session *sess, json_object **result, char *err,
				  size_t errlen)
{
	const char *source = ctl_str(req, "source");
	const char *format = ctl_str(req, "format");
	struct backup_job *job;
	struct vol_entry *ve = NULL;
	struct snap_entry *se;
	struct snapshot_set_result made;
	struct tick_ctx tick = { .sess = sess, .progress = ctl_bool(req, "progress", true) };
	const char *consume_refused = NULL;
	enum cmd_status st;
	bool temporary = false;
	uint64_t data_bytes = 0;
	int fd, r;

	fd = ctl_session_take_fd(sess);
	if (fd < 0) {
		snprintf(err, errlen, "backup needs its output file passed as a descriptor");
		return CMD_USAGE;
	}
	struct image_params ip = { .format = IMAGE_RAW };
	const char *compress = ctl_str(req, "compress");
	if (format && image_format_parse(format, &ip.format) < 0) {
		snprintf(err, errlen, "image format '%.32s' is not raw or qcow2", format);
		close(fd);
		return CMD_USAGE;
	}
	ip.compress = ip.format == IMAGE_QCOW2 ? IMAGE_COMPRESS_ZSTD : IMAGE_COMPRESS_NONE;
	if (compress && image_compress_parse(compress, &ip.compress) < 0) {
		snprintf(err, errlen, "--compress '%.32s' is not zstd, zlib or none", compress);
		close(fd);
		return CMD_USAGE;
	}
	if (ip.format == IMAGE_RAW && ip.compress != IMAGE_COMPRESS_NONE) {
		snprintf(err, errlen, "a raw image cannot be compressed; use --format qcow2");
		close(fd);
		return CMD_USAGE;
	}
	if ((st = check_output(fd, err, errlen)) != CMD_OK) {
		close(fd);
		return st;
	}
	job = calloc(1, sizeof(*job));
	if (!job) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return CMD_ERROR;
	}
	job->yield = ctl_bool(req, "yield", true);
	job->rate_limit = ctl_u64(req, "rate", 0);
	snprintf(job->output, sizeof(job->output), "%s", ctl_str(req, "output"));

	pthread_mutex_lock(&d->mu);
	/* The image must not land on a volume's own data: not its backing file
	 * (the CLI renames the image over the output path at the end) and not a
	 * file of the FUSE directory. */
	struct stat ost;
	const char *outpath = ctl_str(req, "output");
	struct vol_entry *victim = NULL;
	if ((stat(outpath, &ost) == 0 && (victim = registry_volume_on(d, &ost))) ||
	    (fstat(fd, &ost) == 0 && (victim = registry_volume_on(d, &ost)))) {
		snprintf(err, errlen, "-o %s is the backing of volume '%s'; choose another file",
			 outpath, victim->cfg.name);
		st = CMD_ERROR;
		goto out_unlock;
	}
	if ((stat(outpath, &ost) == 0 || fstat(fd, &ost) == 0) && registry_on_fuse(d, &ost)) {
		snprintf(err, errlen, "-o %s is inside hotsnap's own FUSE directory", outpath);
		st = CMD_USAGE;
		goto out_unlock;
	}
	if (strchr(source, '@')) {
		bool usage;
		se = registry_resolve_snapshot(d, source, &ve, err, errlen, &usage);
		if (!se) {
			st = usage ? CMD_USAGE : CMD_ERROR;
			goto out_unlock;
		}
		struct snapshot_stats ss;
		snapshot_get_stats(se->snap, &ss);
		if (ss.state != SNAPSHOT_ACTIVE) {
			snprintf(err, errlen, "snapshot %s failed: %s", source, ss.reason);
			st = CMD_ERROR;
			goto out_unlock;
		}
		if (ctl_bool(req, "all_blocks", false) && !ss.all_blocks) {
			snprintf(err, errlen,
				 "snapshot %s was taken with a used-block map; --all-blocks needs a "
				 "snapshot taken with --all-blocks",
				 source);
			st = CMD_USAGE;
			goto out_unlock;
		}
		job->consume = ctl_bool(req, "consume", false);
		if (job->consume && (snapshot_readers(se->snap) > 0 || se->backups > 0)) {
			job->consume = false;
			consume_refused = "the snapshot is also attached or read by someone else";
		}
	} else {
		struct snapshot_set_request rq = { .n = 1, .freeze = true, .temporary = true };
		char name[HS_NAME_MAX + 1];
		const char *why = names_check(source);
		if (why) {
			snprintf(err, errlen, "bad volume name '%.64s': %s", source, why);
			st = CMD_USAGE;
			goto out_unlock;
		}
		ve = commands_usable_volume(d, source, err, errlen, &st);
		if (!ve)
			goto out_unlock;
		do
			snprintf(name, sizeof(name), "backup%u", atomic_fetch_add(&temp_counter, 1) + 1);
		while (registry_snapshot(ve, name));
		rq.vols[0] = ve;
		rq.name = name;
		rq.all_blocks = ctl_bool(req, "all_blocks", false);
		st = snapshots_create_locked(d, &rq, &made, err, errlen);
		if (st != CMD_OK)
			goto out_unlock;
		se = made.snaps[0];
		temporary = true;
		job->consume = true; /* the snapshot exists for this backup alone */
	}
	snprintf(job->source, sizeof(job->source), "%s@%s", ve->cfg.name, se->name);
	ip.size = ve->cfg.size;
	ip.name = job->output;
	r = image_writer_begin(&job->out, fd, &ip, err, errlen);
	if (r < 0) {
		if (temporary)
			registry_drop_snapshot(d, ve, se);
		st = CMD_ERROR;
		goto out_unlock;
	}
	job->snap = se->snap;
	snapshot_get(job->snap);
	se->backups++;
	job->next = ve->backups;
	ve->backups = job;
	pthread_mutex_unlock(&d->mu);

	hs_info("backup of %s to %s (%s) started%s", job->source, job->output,
		image_format_name(ip.format), job->consume ? " (consuming)" : "");
	r = backup_job_run(job, backup_tick, &tick);

	pthread_mutex_lock(&d->mu);
	for (struct backup_job **pp = &ve->backups; *pp; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	/* the entry is still there: delete refuses while backups > 0 */
	se = registry_snapshot(ve, job->source + strlen(ve->cfg.name) + 1);
	if (se) {
		se->backups--;
		if (temporary)
			registry_drop_snapshot(d, ve, se);
	}
	pthread_mutex_unlock(&d->mu);

	/* off the list: status no longer looks at the writer */
	data_bytes = atomic_load(&job->out->data_bytes);
	if (r == 0)
		r = image_writer_finish(job->out, job->error, sizeof(job->error));
	else
		image_writer_abort(job->out);
	job->out = NULL;

	struct snapshot_stats ss;
	snapshot_get_stats(job->snap, &ss);
	if (r < 0) {
		hs_error("backup of %s to %s failed: %s", job->source, job->output, job->error);
		snprintf(err, errlen, "%s", job->error);
		st = CMD_ERROR;
		goto out_job;
	}
	double secs = backup_job_seconds(job);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "source", json_object_new_string(job->source));
	json_object_object_add(o, "output", json_object_new_string(job->output));
	json_object_object_add(o, "format", json_object_new_string(image_format_name(ip.format)));
	if (ip.format == IMAGE_QCOW2)
		json_object_object_add(o, "compress",
				       json_object_new_string(image_compress_name(ip.compress)));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)job->size));
	json_object_object_add(o, "bytes_read",
			       json_object_new_int64((int64_t)atomic_load(&job->bytes_read)));
	struct stat ist;
	if (fstat(fd, &ist) == 0 && S_ISREG(ist.st_mode))
		json_object_object_add(o, "image_bytes",
				       json_object_new_int64((int64_t)ist.st_blocks * 512));
	json_object_object_add(o, "data_bytes", json_object_new_int64((int64_t)data_bytes));
	json_object_object_add(o, "bytes_skipped",
			       json_object_new_int64((int64_t)atomic_load(&job->bytes_skipped)));
	json_object_object_add(o, "seconds", json_object_new_double(secs));
	json_object_object_add(o, "mb_per_s",
			       json_object_new_double(secs > 0 ? (double)job->size / secs / 1e6 : 0));
	json_object_object_add(o, "read_mb_per_s",
			       json_object_new_double(
				       secs > 0 ? (double)atomic_load(&job->bytes_read) / secs / 1e6 : 0));
	json_object_object_add(o, "cow_bytes", json_object_new_int64((int64_t)ss.cow_bytes));
	json_object_object_add(o, "diff_peak_bytes",
			       json_object_new_int64((int64_t)atomic_load(&job->diff_peak)));
	json_object_object_add(o, "consumed", json_object_new_boolean(job->consume));
	if (consume_refused)
		json_object_object_add(o, "consume_refused", json_object_new_string(consume_refused));
	json_object_object_add(o, "yields", json_object_new_int64((int64_t)atomic_load(&job->yields)));
	json_object_object_add(o, "all_blocks", json_object_new_boolean(ss.all_blocks));
	if (temporary)
		json_object_object_add(o, "freeze_ms", json_object_new_double(made.freeze_ms));
	*result = o;
	hs_info("backup of %s done: %.1f MB in %.2f s", job->source,
		(double)atomic_load(&job->bytes_read) / 1e6, secs);
	st = CMD_OK;
out_job:
	snapshot_put(job->snap);
	close(fd);
	free(job);
	return st;

out_unlock:
	pthread_mutex_unlock(&d->mu);
	close(fd);
	free(job);
	return st;
}

const struct command_entry commands_backup[] = {
	{ "backup", cmd_backup },
	{ NULL, NULL },
};
