/* commands_restore.c - `restore IMAGE --to VOLUME | --new NAME --backing
 * PATH [--verify-only]`: parsed, run (restore_service.h), rendered.
 * Progress goes to the client as events; a client that goes away cancels
 * the restore. */
#include <stdio.h>
#include <string.h>

#include "daemon/commands.h"
#include "daemon/restore_service.h"

struct tick_ctx {
	struct ctl_session *sess;
	bool progress;
};

static void restore_tick(void *arg, struct restore_job *job)
{
	struct tick_ctx *t = arg;

	if (commands_progress(t->sess, t->progress, job->phase, atomic_load(&job->position),
			      job->size, atomic_load(&job->bytes_checked), restore_job_seconds(job)))
		atomic_store(&job->cancel, true);
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static enum cmd_status cmd_restore(struct daemon *d, const struct ctl_request *req,
				   struct ctl_session *sess, json_object **result, char *err,
				   size_t errlen)
{
	struct tick_ctx tick = { .sess = sess, .progress = ctl_bool(req, "progress", true) };
	struct restore_request rq = {
		.image = ctl_str(req, "image"),
		.volume = ctl_str(req, "volume"),
		.new_backing = ctl_str(req, "new_backing"),
		.verify_only = ctl_bool(req, "verify_only", false),
		.tick = restore_tick,
		.tick_arg = &tick,
	};
	struct restore_outcome out;
	enum cmd_status st;

	if (rq.image[0] != '/' || (rq.new_backing && rq.new_backing[0] != '/')) {
		snprintf(err, errlen, "the image and --backing must be absolute paths");
		return CMD_USAGE;
	}
	if (rq.new_backing && rq.verify_only) {
		snprintf(err, errlen, "--verify-only compares with an existing volume; not with --new");
		return CMD_USAGE;
	}
	st = restore_service_run(d, &rq, &out, err, errlen);
	if (st != CMD_OK)
		return st;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "image", json_object_new_string(rq.image));
	json_object_object_add(o, "volume", json_object_new_string(rq.volume));
	json_object_object_add(o, "created", json_object_new_boolean(out.created));
	json_object_object_add(o, "verify_only", json_object_new_boolean(rq.verify_only));
	add_u64(o, "chain_images", out.depth);
	add_u64(o, "size_bytes", out.size);
	add_u64(o, "bytes_written", out.written);
	add_u64(o, "bytes_zeroed", out.zeroed);
	add_u64(o, "bytes_checked", out.checked);
	json_object_object_add(o, "equal", json_object_new_boolean(out.mismatched == 0));
	json_object_object_add(o, "seconds", json_object_new_double(out.seconds));
	json_object_object_add(o, "write_seconds", json_object_new_double(out.write_seconds));
	json_object_object_add(o, "verify_seconds", json_object_new_double(out.verify_seconds));
	json_object_object_add(o, "mb_per_s",
			       json_object_new_double(out.seconds > 0
							      ? (double)out.size / out.seconds / 1e6
							      : 0));
	*result = o;
	return CMD_OK;
}

const struct command_entry commands_restore[] = {
	{ "restore", cmd_restore },
	{ NULL, NULL },
};
