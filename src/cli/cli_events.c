/* cli_events.c - hotsnap events: the daemon's event stream, one line per
 * event (time, type, message), or the daemon's JSON lines with --json. */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"

static void print_event(void *arg, json_object *ev)
{
	const struct cli *cli = arg;

	if (cli->json)
		printf("%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
	else
		printf("%s %-17s %s\n", cli_get_str(ev, "time") ? cli_get_str(ev, "time") : "-",
		       cli_get_str(ev, "event") ? cli_get_str(ev, "event") : "-",
		       cli_get_str(ev, "message") ? cli_get_str(ev, "message") : "");
	fflush(stdout); /* a pipe to a log shipper sees each line at once */
}

int cli_events(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "events",
		.positional = "",
		.summary = "Streams what happens in the daemon, one line each, until interrupted:\n"
			   "snapshots created, failed (with the reason) and deleted; the diff store\n"
			   "passing 50/80/90/95% of its limit (with the time to full); backups\n"
			   "started, done and failed; application hook results; volumes attached\n"
			   "and detached.  The same lines go to the daemon's log.",
		.opts = {
			{ "recent", OPT_NUMBER, 'n', "N", "first the last N events (the daemon keeps 256)" },
			{ "no-follow", OPT_FLAG, 0, "", "stop after the recent events instead of waiting for more" },
		},
	};
	struct parsed_args p;
	json_object *args, *res;
	const struct opt_value *v;
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	args = json_object_new_object();
	if ((v = args_get(&spec, &p, "recent"))->set)
		json_object_object_add(args, "recent", json_object_new_int64((int64_t)v->num));
	json_object_object_add(args, "follow",
			       json_object_new_boolean(!args_get(&spec, &p, "no-follow")->set));
	r = cli_call(cli, "events", args, -1, print_event, (void *)cli, &res);
	if (r)
		return r;
	if (cli_get_int(res, "missed") > 0)
		fprintf(stderr, "hotsnap: %lld events were missed (this client read too slowly)\n",
			(long long)cli_get_int(res, "missed"));
	json_object_put(res);
	return EXIT_OK;
}
