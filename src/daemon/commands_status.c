/* commands_status.c - status, ping, shutdown, and the JSON of volumes and
 * snapshots that listings share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "backup/backup.h"
#include "daemon/commands.h"
#include "daemon/devlinks.h"
#include "hooks/hooks.h"
#include "fuse/fuse_front.h"

/* A FUSE request older than this is called stuck in status: the kernel's
 * own FUSE timeouts and the loop device's are longer, and nothing the
 * daemon does itself takes this long (a backing on a network file system
 * that has gone away does). */

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static void add_str(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

void json_add_time(json_object *o, const char *key, uint64_t wall_ns)
{
	char when[64];
	time_t t = (time_t)(wall_ns / 1000000000u);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", &tm);
	json_object_object_add(o, key, json_object_new_string(when));
}

bool commands_progress(struct ctl_session *sess, bool show, const char *phase,
		       uint64_t position, uint64_t size, uint64_t bytes_read, double seconds)
{
	if (ctl_session_gone(sess))
		return true;
	if (!show)
		return false;
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string("progress"));
	if (phase)
		json_object_object_add(ev, "phase", json_object_new_string(phase));
	add_u64(ev, "position", position);
	add_u64(ev, "size", size);
	add_u64(ev, "bytes_read", bytes_read);
	json_object_object_add(ev, "seconds", json_object_new_double(seconds));
	ctl_session_event(sess, ev);
	json_object_put(ev);
	return false;
}

/* The diff store's fill rate over the sampled window (bytes/s, may be
 * negative while a backup releases copies). */
static double fill_rate(const struct vol_entry *ve)
{
	if (ve->nsamples < 2)
		return 0;
	unsigned newest = (ve->sample_next + RATE_SAMPLES - 1) % RATE_SAMPLES;
	unsigned oldest = ve->nsamples < RATE_SAMPLES ? 0 : ve->sample_next;
	const struct rate_sample *a = &ve->samples[oldest], *b = &ve->samples[newest];
	if (b->t_ns <= a->t_ns)
		return 0;
	return ((double)b->bytes - (double)a->bytes) / ((double)(b->t_ns - a->t_ns) / 1e9);
}

void daemon_sample_rates(struct daemon *d)
{
	uint64_t now = clock_mono_ns();

	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		if (!ve->vol)
			continue;
		ve->samples[ve->sample_next].t_ns = now;
		ve->samples[ve->sample_next].bytes = volume_diff_bytes(ve->vol);
		ve->sample_next = (ve->sample_next + 1) % RATE_SAMPLES;
		if (ve->nsamples < RATE_SAMPLES)
			ve->nsamples++;
	}
}

static void add_rate(json_object *o, const struct vol_entry *ve, uint64_t used, uint64_t limit)
{
	double rate = fill_rate(ve);
	json_object_object_add(o, "fill_rate_bytes_per_s", json_object_new_double(rate));
	if (rate > 0 && limit > used)
		json_object_object_add(o, "seconds_to_full",
				       json_object_new_double((double)(limit - used) / rate));
	else
		json_object_object_add(o, "seconds_to_full", NULL);
}

json_object *status_snapshot_json(struct daemon *d, struct vol_entry *ve, struct snap_entry *se)
{
	json_object *o = json_object_new_object();
	struct snapshot_stats ss;
	char full[2 * HS_NAME_MAX + 2], buf[512];
	uint64_t chunk = ve->cfg.chunk_size;

	snapshot_get_stats(se->snap, &ss);
	snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, se->name);
	add_str(o, "snapshot", full);
	add_str(o, "name", se->name);
	add_str(o, "volume", ve->cfg.name);
	add_str(o, "state", snapshot_state_name(ss.state));
	if (ss.state == SNAPSHOT_FAILED)
		add_str(o, "reason", ss.reason);
	json_add_time(o, "created", ss.created_ns);
	add_u64(o, "cow_bytes", ss.cow_bytes);
	add_u64(o, "held_bytes", ss.held_bytes);
	/* originals that read zeros: recorded, neither copied nor stored */
	add_u64(o, "zero_bytes", ss.zero_chunks * chunk);
	add_u64(o, "protected_bytes", ss.protected_chunks * chunk);
	add_u64(o, "used_bytes", ss.used_chunks * chunk);
	add_u64(o, "consumed_bytes", ss.consumed_chunks * chunk);
	add_u64(o, "changed_bytes", ss.changed_chunks * chunk);
	json_object_object_add(o, "all_blocks", json_object_new_boolean(ss.all_blocks));
	json_object_object_add(o, "temporary", json_object_new_boolean(se->temporary));
	add_u64(o, "readers", (uint64_t)snapshot_readers(se->snap));
	add_u64(o, "backups", (uint64_t)se->backups);
	if (se->loop.dev[0]) {
		add_str(o, "device", se->loop.dev);
		add_str(o, "link", devlinks_path(d, full, buf, sizeof(buf)));
	}
	if (ss.state == SNAPSHOT_ACTIVE)
		add_str(o, "nbd_uri", daemon_nbd_uri(d, full, buf, sizeof(buf)));
	if (ve->vol && ss.state == SNAPSHOT_ACTIVE) {
		/* the snapshot fails when the shared diff store fills */
		struct volume_stats vs;
		volume_get_stats(ve->vol, &vs);
		add_rate(o, ve, vs.diff_bytes, vs.diff_limit);
	}
	return o;
}

json_object *status_volume_json(struct daemon *d, struct vol_entry *ve)
{
	json_object *o = json_object_new_object();
	char path[PATH_MAX], buf[512];
	unsigned n = 0;

	add_str(o, "name", ve->cfg.name);
	add_str(o, "backing", ve->cfg.backing);
	add_u64(o, "size", ve->cfg.size);
	add_u64(o, "chunk_size", ve->cfg.chunk_size);
	add_u64(o, "cow_buffer", ve->cfg.cow_buffer);
	add_str(o, "diff_dir", ve->cfg.diff_dir);
	add_u64(o, "diff_limit", ve->cfg.diff_limit);
	add_str(o, "cache", ve->cfg.cache);
	if (ve->cfg.hook[0])
		add_str(o, "hook", ve->cfg.hook);
	add_str(o, "cache_mode", registry_cache_writeback(ve) ? "writeback" : "none");
	add_str(o, "state", ve->vol ? "ok" : "error");
	if (!ve->vol)
		add_str(o, "error", ve->open_error);
	if (ve->loop.dev[0]) {
		add_str(o, "device", ve->loop.dev);
		add_str(o, "link", devlinks_path(d, ve->cfg.name, path, sizeof(path)));
	}
	registry_fuse_path(d, ve->cfg.name, path, sizeof(path));
	add_str(o, "fuse_file", path);
	struct fuse_transport_info ti;
	fuse_front_transport(d->fuse, &ti); /* one transport serves every file */
	add_str(o, "fuse_transport", ti.name);
	if (ve->vol)
		add_str(o, "nbd_uri", daemon_nbd_uri(d, ve->cfg.name, buf, sizeof(buf)));
	for (struct snap_entry *se = ve->snaps; se; se = se->next)
		n++;
	add_u64(o, "snapshots", n);
	json_object_object_add(o, "tracking", tracking_json(d, ve));
	if (ve->vol) {
		struct volume_stats vs;
		volume_get_stats(ve->vol, &vs);
		add_u64(o, "diff_bytes", vs.diff_bytes);
		add_u64(o, "diff_peak_bytes", vs.diff_peak_bytes);
		add_u64(o, "diff_file_bytes", vs.diff_file_bytes);
		add_u64(o, "ram_bytes", vs.ram_bytes);
		add_u64(o, "cow_bytes", vs.cow_bytes);
		add_u64(o, "zero_bytes", vs.zero_chunks * ve->cfg.chunk_size);
		add_u64(o, "writer_waits", vs.writer_waits);
		json_object_object_add(o, "writer_wait_ms",
				       json_object_new_double((double)vs.writer_wait_ns / 1e6));
		add_u64(o, "map_memory_bytes", vs.map_memory);
		add_u64(o, "copy_records_in_memory", vs.records_in_memory);
		add_u64(o, "copy_records_at_rest", vs.records_at_rest);
		add_u64(o, "copy_records_rested", vs.records_rested);
		add_u64(o, "reads", vs.reads);
		add_u64(o, "writes", vs.writes);
		add_rate(o, ve, vs.diff_bytes, vs.diff_limit);
	}
	json_object *backups = json_object_new_array();
	for (struct backup_job *j = ve->backups; j; j = j->next) {
		json_object *b = json_object_new_object();
		uint64_t pos = atomic_load(&j->position);
		double secs = backup_job_seconds(j);
		add_str(b, "source", j->source);
		add_str(b, "output", j->output);
		add_u64(b, "position", pos);
		add_u64(b, "size", j->size);
		add_u64(b, "bytes_read", atomic_load(&j->bytes_read));
		/* the job leaves this list before its writer is freed */
		add_u64(b, "bytes_written", atomic_load(&j->out->bytes_written));
		add_str(b, "format", image_format_name(j->out->format));
		json_object_object_add(b, "consume", json_object_new_boolean(j->consume));
		json_object_object_add(b, "mb_per_s",
				       json_object_new_double(secs > 0 ? (double)pos / secs / 1e6 : 0));
		json_object_object_add(
			b, "read_mb_per_s",
			json_object_new_double(
				secs > 0 ? (double)atomic_load(&j->bytes_read) / secs / 1e6 : 0));
		add_u64(b, "yields", atomic_load(&j->yields));
		json_object_array_add(backups, b);
	}
	json_object_object_add(o, "backups", backups);
	return o;
}

static uint64_t rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static enum cmd_status cmd_status(struct daemon *d, const struct ctl_request *req,
				  struct ctl_session *sess, json_object **result, char *err,
				  size_t errlen)
{
	json_object *vols = json_object_new_array(), *snaps = json_object_new_array();
	json_object *nbd = json_object_new_array();
	json_object *o = json_object_new_object();

	add_u64(o, "pid", (uint64_t)getpid());
	add_str(o, "state_dir", d->state_dir);
	json_object_object_add(o, "uptime_s",
			       json_object_new_double((double)(clock_mono_ns() - d->started_ns) / 1e9));
	add_u64(o, "rss_bytes", rss_bytes());
	add_str(o, "fuse_dir", d->mnt_dir);
	bool mounted = fuse_front_mounted(d->fuse);
	json_object_object_add(o, "fuse_mounted", json_object_new_boolean(mounted));
	if (!mounted)
		add_str(o, "fuse_problem",
			"the FUSE mount is gone (unmounted by someone?): loop devices attached "
			"before keep working, but nothing new can be attached and the files are "
			"not visible; unmount what uses the volumes, then restart the daemon");
	struct fuse_transport_info ti;
	fuse_front_transport(d->fuse, &ti);
	json_object *ft = json_object_new_object();
	add_str(ft, "name", ti.name);
	if (ti.why_not_ring[0])
		add_str(ft, "why_not_io_uring", ti.why_not_ring);
	add_u64(ft, "queues", ti.queues);
	add_u64(ft, "workers", ti.workers);
	add_u64(ft, "ring_requests", ti.ring_requests);
	add_u64(ft, "dev_requests", ti.dev_requests);
	json_object_object_add(o, "fuse_transport", ft);
	struct fuse_busy_info bi;
	fuse_front_busy(d->fuse, &bi);
	json_object *fr = json_object_new_object();
	add_u64(fr, "in_flight", bi.in_flight);
	if (bi.in_flight) {
		json_object_object_add(fr, "oldest_ms",
				       json_object_new_double((double)bi.oldest_ns / 1e6));
		if (bi.oldest_file[0])
			add_str(fr, "oldest_file", bi.oldest_file);
		add_u64(fr, "oldest_file_requests", bi.oldest_file_requests);
	}
	json_object_object_add(o, "fuse_requests", fr);
	add_u64(fr, "stall_warning_s", d->stall_warning_s);
	if (bi.oldest_ns >= d->stall_warning_s * UINT64_C(1000000000) && bi.oldest_file[0]) {
		char why[512];
		snprintf(why, sizeof(why),
			 "a request to %s has waited %.0f s (is its backing or diff store "
			 "stuck?); %u of the %u requests being served are for it, and the FUSE "
			 "workers are shared by every volume",
			 bi.oldest_file, (double)bi.oldest_ns / 1e9, bi.oldest_file_requests,
			 bi.in_flight);
		add_str(o, "fuse_stall", why);
	}
	for (size_t i = 0; i < d->nbd_nlisten; i++)
		json_object_array_add(nbd, json_object_new_string(d->nbd_listen[i]));
	/* the hooks a freezing snapshot runs now (each volume's own are in its entry) */
	add_str(o, "hooks_dir", d->hooks_dir);
	json_object *hooks = json_object_new_array();
	struct hooks_run *hr = calloc(1, sizeof(*hr));
	char herr[512];
	if (hr) {
		hooks_init(hr, d->hook_timeout_s, 0);
		if (hooks_add_dir(hr, d->hooks_dir, herr, sizeof(herr)) < 0)
			add_str(o, "hooks_problem", herr);
		for (size_t i = 0; i < hr->n; i++)
			json_object_array_add(hooks, json_object_new_string(hr->hooks[i].path));
		free(hr);
	}
	json_object_object_add(o, "hooks", hooks);
	add_u64(o, "hook_timeout_s", d->hook_timeout_s);
	json_object *vd = json_object_new_object(); /* what new volumes get */
	add_u64(vd, "chunk_size", d->defaults.chunk_size ? d->defaults.chunk_size : 4096);
	add_u64(vd, "cow_buffer", d->defaults.cow_buffer ? d->defaults.cow_buffer : UINT64_C(8) << 20);
	if (d->defaults.diff_limit)
		add_u64(vd, "diff_limit", d->defaults.diff_limit);
	else if (d->defaults.diff_limit_pct)
		add_u64(vd, "diff_limit_pct", d->defaults.diff_limit_pct);
	else
		add_str(vd, "diff_limit_rule", "10% of the volume, at least 1 GiB");
	add_str(vd, "diff_dir", d->default_diff_dir);
	add_str(vd, "cache", d->defaults.cache[0] ? d->defaults.cache : "auto");
	json_object_object_add(o, "volume_defaults", vd);
	json_object_object_add(o, "nbd_listen", nbd);
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		json_object_array_add(vols, status_volume_json(d, ve));
		for (struct snap_entry *se = ve->snaps; se; se = se->next)
			json_object_array_add(snaps, status_snapshot_json(d, ve, se));
		for (struct lost_snap *ls = ve->lost; ls; ls = ls->next) {
			json_object *l = json_object_new_object();
			char full[2 * HS_NAME_MAX + 2];
			snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, ls->name);
			add_str(l, "snapshot", full);
			add_str(l, "name", ls->name);
			add_str(l, "volume", ve->cfg.name);
			add_str(l, "state", "failed");
			add_str(l, "reason", ls->reason);
			json_object_object_add(l, "lost", json_object_new_boolean(1));
			add_u64(l, "cow_bytes", 0);
			json_object_array_add(snaps, l);
		}
	}
	json_object_object_add(o, "volumes", vols);
	json_object_object_add(o, "snapshots", snaps);
	*result = o;
	return CMD_OK;
}

static enum cmd_status cmd_ping(struct daemon *d, const struct ctl_request *req,
				struct ctl_session *sess, json_object **result, char *err,
				size_t errlen)
{
	*result = json_object_new_object();
	add_u64(*result, "pid", (uint64_t)getpid());
	add_str(*result, "version", HOTSNAP_VERSION);
	return CMD_OK;
}

static enum cmd_status cmd_shutdown(struct daemon *d, const struct ctl_request *req,
				    struct ctl_session *sess, json_object **result, char *err,
				    size_t errlen)
{
	daemon_request_stop(d);
	*result = json_object_new_object();
	/* the CLI waits for this process to end: the mounts and loop devices
	 * are gone by then */
	add_u64(*result, "pid", (uint64_t)getpid());
	return CMD_OK;
}

const struct command_entry commands_status[] = {
	{ "status", cmd_status },
	{ "ping", cmd_ping },
	{ "shutdown", cmd_shutdown },
	{ NULL, NULL },
};

cmd_handler commands_find(const char *name)
{
	const struct command_entry *groups[] = { commands_volume, commands_snapshot,
						 commands_backup, commands_bookmark,
						 commands_restore, commands_image,
						 commands_status, commands_events, commands_revert };
	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++)
		for (const struct command_entry *c = groups[g]; c->name; c++)
			if (strcmp(c->name, name) == 0)
				return c->fn;
	return NULL;
}
