/* cli_prometheus.c - `hotsnap status --prometheus`: the status reply in the
 * Prometheus text exposition format, for node-exporter's textfile collector
 * (a timer writes it to a .prom file).  Names follow Prometheus' rules: a
 * hotsnap_ prefix, base units (bytes, seconds), _total for counters. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/compiler.h"

/* Label values escape backslash, quote and newline. */
static void label(const char *key, const char *val, bool first)
{
	printf("%s%s=\"", first ? "" : ",", key);
	for (const char *p = val ? val : ""; *p; p++) {
		if (*p == '\\' || *p == '"')
			printf("\\%c", *p);
		else if (*p == '\n')
			printf("\\n");
		else
			putchar(*p);
	}
	putchar('"');
}

struct metric {
	const char *name, *key, *type, *help;
};

static const struct metric volume_metrics[] = {
	{ "hotsnap_volume_size_bytes", "size", "gauge", "Volume size." },
	{ "hotsnap_diff_bytes", "diff_bytes", "gauge", "Saved originals held in the diff store." },
	{ "hotsnap_diff_limit_bytes", "diff_limit", "gauge", "Most the diff store may hold." },
	{ "hotsnap_diff_peak_bytes", "diff_peak_bytes", "gauge", "Most the diff store has held." },
	{ "hotsnap_ram_buffer_bytes", "ram_bytes", "gauge", "RAM buffer in use for copies." },
	{ "hotsnap_cow_bytes_total", "cow_bytes", "counter", "Bytes copied before overwrite." },
	{ "hotsnap_zero_bytes_total", "zero_bytes", "counter",
	  "Originals that read zeros: recorded, not copied." },
	{ "hotsnap_writer_waits_total", "writer_waits", "counter",
	  "Times a writer waited for RAM buffer room." },
	{ "hotsnap_reads_total", "reads", "counter", "Read requests served." },
	{ "hotsnap_writes_total", "writes", "counter", "Write requests served." },
	{ "hotsnap_snapshots", "snapshots", "gauge", "Snapshots of the volume." },
	{ "hotsnap_copy_records_in_memory", "copy_records_in_memory", "gauge",
	  "Records of copies held in the daemon's memory." },
	{ "hotsnap_copy_records_at_rest", "copy_records_at_rest", "gauge",
	  "Records of copies resting in the file beside the diff file." },
	{ "hotsnap_copy_records_rested_total", "copy_records_rested", "counter",
	  "Copy records written to the file beside the diff file." },
};

static const struct metric snapshot_metrics[] = {
	{ "hotsnap_snapshot_cow_bytes_total", "cow_bytes", "counter",
	  "Bytes copied on write for the snapshot." },
	{ "hotsnap_snapshot_held_bytes", "held_bytes", "gauge", "Copies the snapshot holds." },
	{ "hotsnap_snapshot_changed_bytes", "changed_bytes", "gauge",
	  "Bytes of the volume written since the snapshot." },
};

static void header(const struct metric *m)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
}

void cli_print_prometheus(json_object *res)
{
	json_object *vols = NULL, *snaps = NULL, *v;

	printf("# HELP hotsnap_up Whether the hotsnap daemon answered.\n"
	       "# TYPE hotsnap_up gauge\nhotsnap_up %d\n", res ? 1 : 0);
	if (!res)
		return;
	printf("# HELP hotsnap_daemon_resident_bytes Resident memory of the daemon.\n"
	       "# TYPE hotsnap_daemon_resident_bytes gauge\n"
	       "hotsnap_daemon_resident_bytes %lld\n",
	       (long long)cli_get_int(res, "rss_bytes"));
	json_object *ft;
	if (json_object_object_get_ex(res, "fuse_transport", &ft))
		printf("# HELP hotsnap_fuse_requests_total FUSE requests received, by transport (/dev/fuse's include INIT and FORGET).\n"
		       "# TYPE hotsnap_fuse_requests_total counter\n"
		       "hotsnap_fuse_requests_total{transport=\"io_uring\"} %lld\n"
		       "hotsnap_fuse_requests_total{transport=\"dev\"} %lld\n",
		       (long long)cli_get_int(ft, "ring_requests"),
		       (long long)cli_get_int(ft, "dev_requests"));
	json_object *fr;
	if (json_object_object_get_ex(res, "fuse_requests", &fr))
		printf("# HELP hotsnap_fuse_requests_in_flight FUSE requests being served now.\n"
		       "# TYPE hotsnap_fuse_requests_in_flight gauge\n"
		       "hotsnap_fuse_requests_in_flight %lld\n"
		       "# HELP hotsnap_fuse_oldest_request_seconds How long the oldest FUSE request "
		       "being served has waited (a stuck backing shows here; every volume shares "
		       "the workers).\n"
		       "# TYPE hotsnap_fuse_oldest_request_seconds gauge\n"
		       "hotsnap_fuse_oldest_request_seconds %.3f\n",
		       (long long)cli_get_int(fr, "in_flight"), cli_get_double(fr, "oldest_ms") / 1e3);
	json_object_object_get_ex(res, "volumes", &vols);
	json_object_object_get_ex(res, "snapshots", &snaps);
	size_t nv = vols ? json_object_array_length(vols) : 0;
	size_t ns = snaps ? json_object_array_length(snaps) : 0;

	for (size_t m = 0; m < HS_ARRAY_SIZE(volume_metrics); m++) {
		header(&volume_metrics[m]);
		for (size_t i = 0; i < nv; i++) {
			v = json_object_array_get_idx(vols, i);
			if (!json_object_object_get_ex(v, volume_metrics[m].key, NULL))
				continue;
			printf("%s{", volume_metrics[m].name);
			label("volume", cli_get_str(v, "name"), true);
			printf("} %lld\n", (long long)cli_get_int(v, volume_metrics[m].key));
		}
	}
	printf("# HELP hotsnap_diff_seconds_to_full Time until the diff store is full at the "
	       "present rate (absent when not filling).\n"
	       "# TYPE hotsnap_diff_seconds_to_full gauge\n");
	for (size_t i = 0; i < nv; i++) {
		json_object *t;
		v = json_object_array_get_idx(vols, i);
		if (json_object_object_get_ex(v, "seconds_to_full", &t) && t) {
			printf("hotsnap_diff_seconds_to_full{");
			label("volume", cli_get_str(v, "name"), true);
			printf("} %.0f\n", json_object_get_double(t));
		}
	}
	printf("# HELP hotsnap_tracking_ok Whether the volume's change tracking is usable for "
	       "incrementals.\n# TYPE hotsnap_tracking_ok gauge\n");
	for (size_t i = 0; i < nv; i++) {
		json_object *tr;
		v = json_object_array_get_idx(vols, i);
		if (!json_object_object_get_ex(v, "tracking", &tr))
			continue;
		printf("hotsnap_tracking_ok{");
		label("volume", cli_get_str(v, "name"), true);
		printf("} %d\n", strcmp(cli_get_str(tr, "state") ? cli_get_str(tr, "state") : "",
					"active") == 0);
	}
	printf("# HELP hotsnap_snapshot_active 1 for an active snapshot, 0 for a failed one.\n"
	       "# TYPE hotsnap_snapshot_active gauge\n");
	for (size_t i = 0; i < ns; i++) {
		json_object *s = json_object_array_get_idx(snaps, i);
		printf("hotsnap_snapshot_active{");
		label("volume", cli_get_str(s, "volume"), true);
		label("snapshot", cli_get_str(s, "name"), false);
		printf("} %d\n", strcmp(cli_get_str(s, "state"), "active") == 0);
	}
	for (size_t m = 0; m < HS_ARRAY_SIZE(snapshot_metrics); m++) {
		header(&snapshot_metrics[m]);
		for (size_t i = 0; i < ns; i++) {
			json_object *s = json_object_array_get_idx(snaps, i);
			printf("%s{", snapshot_metrics[m].name);
			label("volume", cli_get_str(s, "volume"), true);
			label("snapshot", cli_get_str(s, "name"), false);
			printf("} %lld\n", (long long)cli_get_int(s, snapshot_metrics[m].key));
		}
	}
}
