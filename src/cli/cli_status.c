/* cli_status.c - hotsnap status, and hotsnap shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"

static void print_volume(json_object *v)
{
	char a[32], b[32], c[32], d[32], e[32];
	const char *dev = cli_get_str(v, "device");
	json_object *backups, *stf;

	printf("volume %s: %s, backing %s%s%s\n", cli_get_str(v, "name"),
	       cli_size((uint64_t)cli_get_int(v, "size"), a, sizeof(a)), cli_get_str(v, "backing"),
	       dev ? ", attached as " : "", dev ? dev : "");
	if (cli_get_str(v, "error")) {
		printf("  ERROR: %s\n", cli_get_str(v, "error"));
		return;
	}
	printf("  diff store: %s held (peak %s, limit %s, %s in the file), ",
	       cli_size((uint64_t)cli_get_int(v, "diff_bytes"), a, sizeof(a)),
	       cli_size((uint64_t)cli_get_int(v, "diff_peak_bytes"), b, sizeof(b)),
	       cli_size((uint64_t)cli_get_int(v, "diff_limit"), c, sizeof(c)),
	       cli_size((uint64_t)cli_get_int(v, "diff_file_bytes"), d, sizeof(d)));
	printf("RAM buffer %s of %s\n", cli_size((uint64_t)cli_get_int(v, "ram_bytes"), e, sizeof(e)),
	       cli_size((uint64_t)cli_get_int(v, "cow_buffer"), a, sizeof(a)));
	printf("  copied on write: %s; writers waited for buffer room %lld times\n",
	       cli_size((uint64_t)cli_get_int(v, "cow_bytes"), a, sizeof(a)),
	       (long long)cli_get_int(v, "writer_waits"));
	double rate = cli_get_double(v, "fill_rate_bytes_per_s");
	if (rate > 0 && json_object_object_get_ex(v, "seconds_to_full", &stf) && stf)
		printf("  filling at %s/s: full in %.0f s at this rate\n",
		       cli_size((uint64_t)rate, a, sizeof(a)), json_object_get_double(stf));
	json_object *tr;
	if (json_object_object_get_ex(v, "tracking", &tr)) {
		const char *state = cli_get_str(tr, "state");
		if (strcmp(state, "active") == 0)
			printf("  change tracking: %s regions, %lld bookmarks, since %s\n",
			       cli_size((uint64_t)cli_get_int(tr, "granularity"), a, sizeof(a)),
			       (long long)cli_get_int(tr, "bookmarks"), cli_get_str(tr, "since"));
		else if (strcmp(state, "lost") == 0)
			printf("  change tracking: LOST, the next backup must be a full one: %s\n",
			       cli_get_str(tr, "started_over_because"));
		else
			printf("  change tracking: %s%s%s\n", state, cli_get_str(tr, "reason") ? ": " : "",
			       cli_get_str(tr, "reason") ? cli_get_str(tr, "reason") : "");
	}
	if (cli_get_str(v, "hook"))
		printf("  application hook: %s\n", cli_get_str(v, "hook"));
	printf("  FUSE file %s (%s); NBD %s\n", cli_get_str(v, "fuse_file"),
	       cli_get_str(v, "fuse_transport") ? cli_get_str(v, "fuse_transport") : "?",
	       cli_get_str(v, "nbd_uri") ? cli_get_str(v, "nbd_uri") : "-");
	if (json_object_object_get_ex(v, "backups", &backups))
		for (size_t i = 0; i < json_object_array_length(backups); i++) {
			json_object *bk = json_object_array_get_idx(backups, i);
			double pos = (double)cli_get_int(bk, "position");
			double size = (double)cli_get_int(bk, "size");
			printf("  backup of %s to %s: %.0f%% (%s of %s), %.0f MB/s, yielded %lld "
			       "times\n",
			       cli_get_str(bk, "source"), cli_get_str(bk, "output"),
			       size > 0 ? 100 * pos / size : 0, cli_size((uint64_t)pos, a, sizeof(a)),
			       cli_size((uint64_t)size, b, sizeof(b)), cli_get_double(bk, "mb_per_s"),
			       (long long)cli_get_int(bk, "yields"));
		}
}

int cli_status(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "status", .positional = "",
		.summary = "Shows the daemon, its volumes and snapshots, diff store use and backups.\n"
			   "--prometheus prints the figures in the Prometheus text format, for\n"
			   "node-exporter's textfile collector (hotsnap_up 0 when the daemon\n"
			   "does not answer, and exit status 0).",
		.opts = {
			{ "prometheus", OPT_FLAG, 0, "", "the Prometheus text format" },
		},
	};
	json_object *res, *vols, *snaps;
	char a[32], b[32];
	struct parsed_args p;
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	r = cli_call(cli, "status", NULL, -1, NULL, NULL, &res);
	if (args_get(&spec, &p, "prometheus")->set) {
		cli_print_prometheus(r == EXIT_OK ? res : NULL);
		json_object_put(res);
		return EXIT_OK;
	}
	if (r)
		return r;
	if (cli->json) {
		cli_print_json(res);
		json_object_put(res);
		return EXIT_OK;
	}
	printf("hotsnap daemon %lld on %s, up %.0f s, RSS %s\n", (long long)cli_get_int(res, "pid"),
	       cli_get_str(res, "state_dir"), cli_get_double(res, "uptime_s"),
	       cli_size((uint64_t)cli_get_int(res, "rss_bytes"), a, sizeof(a)));
	if (cli_get_str(res, "fuse_problem"))
		printf("PROBLEM: %s\n", cli_get_str(res, "fuse_problem"));
	if (cli_get_str(res, "fuse_stall"))
		printf("PROBLEM: %s\n", cli_get_str(res, "fuse_stall"));
	json_object *ft;
	if (json_object_object_get_ex(res, "fuse_transport", &ft)) {
		if (strcmp(cli_get_str(ft, "name"), "io-uring") == 0)
			printf("FUSE over io_uring: %lld queues, %lld workers; %lld requests over "
			       "the ring, %lld over /dev/fuse\n",
			       (long long)cli_get_int(ft, "queues"), (long long)cli_get_int(ft, "workers"),
			       (long long)cli_get_int(ft, "ring_requests"),
			       (long long)cli_get_int(ft, "dev_requests"));
		else
			printf("FUSE over /dev/fuse: %lld workers; not io_uring: %s\n",
			       (long long)cli_get_int(ft, "workers"),
			       cli_get_str(ft, "why_not_io_uring") ? cli_get_str(ft, "why_not_io_uring")
								   : "?");
	}
	json_object *hooks;
	if (json_object_object_get_ex(res, "hooks", &hooks) &&
	    json_object_array_length(hooks) > 0) {
		printf("application hooks in %s (%lld s a phase):", cli_get_str(res, "hooks_dir"),
		       (long long)cli_get_int(res, "hook_timeout_s"));
		for (size_t i = 0; i < json_object_array_length(hooks); i++) {
			const char *h = json_object_get_string(json_object_array_get_idx(hooks, i));
			const char *base = strrchr(h, '/');
			printf(" %s", base ? base + 1 : h);
		}
		printf("\n");
	}
	if (cli_get_str(res, "hooks_problem"))
		printf("PROBLEM: %s\n", cli_get_str(res, "hooks_problem"));
	json_object_object_get_ex(res, "volumes", &vols);
	for (size_t i = 0; i < json_object_array_length(vols); i++)
		print_volume(json_object_array_get_idx(vols, i));
	json_object_object_get_ex(res, "snapshots", &snaps);
	for (size_t i = 0; i < json_object_array_length(snaps); i++) {
		json_object *s = json_object_array_get_idx(snaps, i);
		const char *reason = cli_get_str(s, "reason");
		printf("snapshot %s: %s%s%s; copied on write %s, holds %s\n",
		       cli_get_str(s, "snapshot"), cli_get_str(s, "state"), reason ? ": " : "",
		       reason ? reason : "", cli_size((uint64_t)cli_get_int(s, "cow_bytes"), a, sizeof(a)),
		       cli_size((uint64_t)cli_get_int(s, "held_bytes"), b, sizeof(b)));
	}
	json_object_put(res);
	return EXIT_OK;
}

/* Whether pid has ended: gone, or a zombie its parent has not reaped yet
 * (a daemon started in the foreground by a script). */
static bool process_ended(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	size_t n;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *paren = strrchr(buf, ')'); /* the name may hold anything */
	return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

int cli_shutdown(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "shutdown", .positional = "",
		.summary = "Stops the daemon as SIGTERM would: detaches its loop devices and unmounts."
	};
	struct parsed_args p;
	json_object *res;
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	r = cli_call(cli, "shutdown", NULL, -1, NULL, NULL, &res);
	if (r != EXIT_OK) {
		json_object_put(res);
		return r;
	}
	/* Returns once the daemon is gone, its mounts and loop devices with it,
	 * so that a script may remove the state dir next.  Unmounting waits for
	 * I/O in flight, which a slow disk can make long: the bound is generous. */
	pid_t pid = (pid_t)cli_get_int(res, "pid");
	json_object_put(res);
	const struct timespec tick = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };
	for (int i = 0; pid > 0 && i < 50 * 300; i++) {
		if (process_ended(pid)) {
			if (cli->json)
				printf("{\"stopped\":true,\"pid\":%d}\n", (int)pid);
			return EXIT_OK;
		}
		nanosleep(&tick, NULL);
	}
	if (pid > 0) {
		fprintf(stderr,
			"hotsnap: the daemon (pid %d) was asked to stop but is still running after "
			"300 s; see its log\n",
			(int)pid);
		return EXIT_ERROR;
	}
	return EXIT_OK;
}
