/* commands_backup.c - `backup SOURCE -o FILE`: the request parsed, the
 * backup run (backup_service.h), the outcome rendered.
 *
 * The CLI opens the output (an unnamed temporary file in the target's
 * directory) and passes the descriptor with the request; the daemon fills it
 * and the CLI gives it its name only after success, so an interrupted backup
 * never leaves a half image under the final name.  Progress goes to the
 * client as events; a client that goes away cancels the backup. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup.h"
#include "daemon/backup_service.h"
#include "daemon/commands.h"

struct tick_ctx {
	struct ctl_session *sess;
	bool progress;
};

static void backup_tick(void *arg, struct backup_job *job)
{
	struct tick_ctx *t = arg;

	if (commands_progress(t->sess, t->progress, NULL, atomic_load(&job->position), job->size,
			      atomic_load(&job->bytes_read), backup_job_seconds(job)))
		atomic_store(&job->cancel, true);
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

static enum cmd_status parse(const struct ctl_request *req, struct backup_request *rq,
			     char *err, size_t errlen)
{
	const char *format = ctl_str(req, "format"), *compress = ctl_str(req, "compress");

	rq->source = ctl_str(req, "source");
	rq->output = ctl_str(req, "output");
	rq->incremental = ctl_str(req, "incremental");
	rq->consume = ctl_bool(req, "consume", false);
	rq->all_blocks = ctl_bool(req, "all_blocks", false);
	rq->yield = ctl_bool(req, "yield", true);
	rq->rate = ctl_u64(req, "rate", 0);
	rq->format = IMAGE_RAW;
	if (format && image_format_parse(format, &rq->format) < 0) {
		snprintf(err, errlen, "image format '%.32s' is not raw or qcow2", format);
		return CMD_USAGE;
	}
	rq->compress = rq->format == IMAGE_QCOW2 ? IMAGE_COMPRESS_ZSTD : IMAGE_COMPRESS_NONE;
	if (compress && image_compress_parse(compress, &rq->compress) < 0) {
		snprintf(err, errlen, "--compress '%.32s' is not zstd, zlib or none", compress);
		return CMD_USAGE;
	}
	if (rq->format == IMAGE_RAW && rq->compress != IMAGE_COMPRESS_NONE) {
		snprintf(err, errlen, "a raw image cannot be compressed; use --format qcow2");
		return CMD_USAGE;
	}
	if (rq->incremental && rq->incremental[0] != '/') {
		snprintf(err, errlen, "--incremental must be an absolute path");
		return CMD_USAGE;
	}
	return check_output(rq->fd, err, errlen);
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static json_object *render(const struct backup_request *rq, const struct backup_outcome *out)
{
	json_object *o = json_object_new_object();
	struct stat ist;

	json_object_object_add(o, "source", json_object_new_string(out->source));
	json_object_object_add(o, "output", json_object_new_string(rq->output));
	json_object_object_add(o, "format", json_object_new_string(image_format_name(rq->format)));
	if (rq->format == IMAGE_QCOW2) {
		json_object_object_add(o, "compress",
				       json_object_new_string(image_compress_name(rq->compress)));
		add_u64(o, "cluster_size", out->cluster_size);
	}
	if (rq->incremental) {
		json_object_object_add(o, "incremental", json_object_new_string(rq->incremental));
		json_object_object_add(o, "backing_file", json_object_new_string(out->backing));
		add_u64(o, "changed_bytes", out->changed_bytes);
		json_object_object_add(o, "changed_exact", json_object_new_boolean(out->changed_exact));
	}
	add_u64(o, "size_bytes", out->size);
	add_u64(o, "bytes_read", out->bytes_read);
	add_u64(o, "bytes_skipped", out->bytes_skipped);
	add_u64(o, "data_bytes", out->data_bytes);
	if (fstat(rq->fd, &ist) == 0 && S_ISREG(ist.st_mode))
		add_u64(o, "image_bytes", (uint64_t)ist.st_blocks * 512);
	json_object_object_add(o, "seconds", json_object_new_double(out->seconds));
	json_object_object_add(o, "read_mb_per_s",
			       json_object_new_double(out->seconds > 0
							      ? (double)out->bytes_read / out->seconds / 1e6
							      : 0));
	add_u64(o, "copies_first_bytes", out->copies_bytes);
	json_object_object_add(o, "copies_first_seconds", json_object_new_double(out->copies_seconds));
	add_u64(o, "cow_bytes", out->cow_bytes);
	add_u64(o, "diff_peak_bytes", out->diff_peak);
	json_object_object_add(o, "consumed", json_object_new_boolean(out->consumed));
	if (out->consume_refused)
		json_object_object_add(o, "consume_refused",
				       json_object_new_string(out->consume_refused));
	add_u64(o, "yields", out->yields);
	json_object_object_add(o, "all_blocks", json_object_new_boolean(out->all_blocks));
	if (out->temporary)
		json_object_object_add(o, "freeze_ms", json_object_new_double(out->freeze_ms));
	if (out->bookmark[0])
		json_object_object_add(o, "bookmark", json_object_new_string(out->bookmark));
	else
		json_object_object_add(o, "bookmark_problem",
				       json_object_new_string(out->bookmark_problem));
	return o;
}

static enum cmd_status cmd_backup(struct daemon *d, const struct ctl_request *req,
				  struct ctl_session *sess, json_object **result, char *err,
				  size_t errlen)
{
	struct tick_ctx tick = { .sess = sess, .progress = ctl_bool(req, "progress", true) };
	struct backup_request rq = { .tick = backup_tick, .tick_arg = &tick };
	struct backup_outcome out;
	enum cmd_status st;

	rq.fd = ctl_session_take_fd(sess);
	if (rq.fd < 0) {
		snprintf(err, errlen, "backup needs its output file passed as a descriptor");
		return CMD_USAGE;
	}
	st = parse(req, &rq, err, errlen);
	if (st == CMD_OK)
		st = backup_service_run(d, &rq, &out, err, errlen);
	if (st == CMD_OK)
		*result = render(&rq, &out);
	close(rq.fd);
	return st;
}

const struct command_entry commands_backup[] = {
	{ "backup", cmd_backup },
	{ NULL, NULL },
};
