/* cli_volume.c - hotsnap volume create|attach|detach|list|remove. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "common/names.h"

int cli_check_volume_name(const char *cmd, const char *name)
{
	const char *why = names_check(name);
	return why ? cli_usage_error(cmd, "bad volume name '%s': %s", name, why) : 0;
}

int cli_check_snapshot_name(const char *cmd, const char *name)
{
	char v[HS_NAME_MAX + 1], s[HS_NAME_MAX + 1];
	const char *why = names_split_snapshot(name, v, s);
	return why ? cli_usage_error(cmd, "bad snapshot '%s': %s", name, why) : 0;
}

static const struct cmd_spec create_spec = {
	.cmd = "volume create",
	.positional = "NAME",
	.min_pos = 1,
	.max_pos = 1,
	.summary = "Defines a volume served by the daemon over a backing file or block device.\n"
		   "With --size, a backing file that does not exist is created (sparse).",
	.opts = {
		{ "backing", OPT_PATH, 0, "PATH", "the file or block device holding the data (required)" },
		{ "size", OPT_SIZE, 0, "SIZE", "volume size (default: the backing's size)" },
		{ "chunk-size", OPT_SIZE, 0, "SIZE", "copy-on-write unit, 4K to 1M, a power of two (default 4K, or the daemon's --default-chunk-size)" },
		{ "cow-buffer", OPT_SIZE, 0, "SIZE", "RAM for saved originals (default 8M, or the daemon's --default-cow-buffer)" },
		{ "diff-dir", OPT_PATH, 0, "DIR", "where the diff file goes (default: STATE_DIR/diff, or the daemon's --default-diff-dir)" },
		{ "diff-limit", OPT_SIZE, 0, "SIZE", "most the diff file may hold (default: 10% of the volume, at least 1G, or the daemon's --default-diff-limit)" },
		{ "cache", OPT_STRING, 0, "MODE", "auto (default: writeback for files, none for devices), writeback or none" },
		{ "track-granularity", OPT_SIZE, 0, "SIZE", "change map unit kept across crashes (default 64K)" },
		{ "no-tracking", OPT_FLAG, 0, "", "no change tracking: no bookmarks, no incrementals" },
	},
};

static const struct cmd_spec set_spec = {
	.cmd = "volume set",
	.positional = "NAME",
	.min_pos = 1,
	.max_pos = 1,
	.summary = "Changes a volume's settings at once, also while snapshots are live.\n"
		   "A smaller --diff-limit than the diff store holds now is refused.  A new\n"
		   "--diff-dir takes the spills from the moment the present diff file is empty.\n"
		   "--hook runs PATH around every freezing snapshot of the volume (see\n"
		   "hooks/README.md); --hook '' removes it.",
	.opts = {
		{ "diff-limit", OPT_SIZE, 0, "SIZE", "most the diff file may hold" },
		{ "diff-dir", OPT_PATH, 0, "DIR", "where diff files go from now on" },
		{ "hook", OPT_STRING, 0, "PATH", "the volume's application hook (absolute path; '' for none)" },
	},
};

static struct cmd_spec name_spec(const char *cmd, const char *summary)
{
	struct cmd_spec s = { .cmd = cmd, .positional = "NAME", .min_pos = 1, .max_pos = 1,
			      .summary = summary };
	return s;
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static int volume_create(const struct cli *cli, int argc, char **argv)
{
	struct parsed_args p;
	json_object *args, *res;
	int r = args_parse(&create_spec, argc, argv, &p);
	const struct opt_value *v;
	char a[32];

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = cli_check_volume_name(create_spec.cmd, p.pos[0])))
		return r;
	if (!args_get(&create_spec, &p, "backing")->set)
		return cli_usage_error(create_spec.cmd, "--backing PATH is required");
	args = json_object_new_object();
	json_object_object_add(args, "name", json_object_new_string(p.pos[0]));
	json_object_object_add(args, "backing",
			       json_object_new_string(args_get(&create_spec, &p, "backing")->str));
	static const char *const sizes[][2] = { { "size", "size" },
						{ "chunk-size", "chunk_size" },
						{ "cow-buffer", "cow_buffer" },
						{ "diff-limit", "diff_limit" },
						{ "track-granularity", "track_granularity" } };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if ((v = args_get(&create_spec, &p, sizes[i][0]))->set)
			add_u64(args, sizes[i][1], v->num);
	if (args_get(&create_spec, &p, "no-tracking")->set) {
		if (args_get(&create_spec, &p, "track-granularity")->set) {
			json_object_put(args);
			return cli_usage_error(create_spec.cmd,
					       "--no-tracking and --track-granularity contradict each other");
		}
		json_object_object_add(args, "no_tracking", json_object_new_boolean(true));
	}
	if ((v = args_get(&create_spec, &p, "diff-dir"))->set)
		json_object_object_add(args, "diff_dir", json_object_new_string(v->str));
	if ((v = args_get(&create_spec, &p, "cache"))->set) {
		if (strcmp(v->str, "writeback") != 0 && strcmp(v->str, "none") != 0 &&
		    strcmp(v->str, "auto") != 0) {
			json_object_put(args);
			return cli_usage_error(create_spec.cmd,
					       "--cache '%s' is not auto, writeback or none", v->str);
		}
		json_object_object_add(args, "cache", json_object_new_string(v->str));
	}
	r = cli_call(cli, "volume.create", args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else
		printf("volume %s: %s on %s\n", p.pos[0],
		       cli_size((uint64_t)cli_get_int(res, "size"), a, sizeof(a)),
		       cli_get_str(res, "backing"));
	json_object_put(res);
	return EXIT_OK;
}

static int volume_set(const struct cli *cli, int argc, char **argv)
{
	struct parsed_args p;
	json_object *args, *res;
	const struct opt_value *v;
	char a[32];
	int r = args_parse(&set_spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = cli_check_volume_name(set_spec.cmd, p.pos[0])))
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "name", json_object_new_string(p.pos[0]));
	if ((v = args_get(&set_spec, &p, "diff-limit"))->set)
		add_u64(args, "diff_limit", v->num);
	if ((v = args_get(&set_spec, &p, "diff-dir"))->set)
		json_object_object_add(args, "diff_dir", json_object_new_string(v->path));
	if ((v = args_get(&set_spec, &p, "hook"))->set)
		json_object_object_add(args, "hook", json_object_new_string(v->str));
	r = cli_call(cli, "volume.set", args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else
		printf("volume %s: diff limit %s, diff dir %s, hook %s\n", p.pos[0],
		       cli_size((uint64_t)cli_get_int(res, "diff_limit"), a, sizeof(a)),
		       cli_get_str(res, "diff_dir"),
		       cli_get_str(res, "hook") ? cli_get_str(res, "hook") : "none");
	json_object_put(res);
	return EXIT_OK;
}

/* attach and detach and remove: NAME in, a device or nothing out. */
static int volume_simple(const struct cli *cli, const struct cmd_spec *spec, const char *cmd,
			 int argc, char **argv)
{
	struct parsed_args p;
	json_object *args, *res;
	int r = args_parse(spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = cli_check_volume_name(spec->cmd, p.pos[0])))
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "name", json_object_new_string(p.pos[0]));
	r = cli_call(cli, cmd, args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else if (cli_get_str(res, "device"))
		printf("%s\n", cli_get_str(res, "device"));
	json_object_put(res);
	return EXIT_OK;
}

static const struct table_col volume_cols[] = {
	{ "NAME", "name", CELL_TEXT, 0, "the volume's name" },
	{ "SIZE", "size", CELL_SIZE, TABLE_RIGHT, "its size" },
	{ "CHUNK", "chunk_size", CELL_SIZE, TABLE_RIGHT, "the unit of copy-on-write" },
	{ "DEVICE", "device", CELL_TEXT, TABLE_DASH, "the loop device it is attached as" },
	{ "SNAPS", "snapshots", CELL_COUNT, TABLE_RIGHT, "how many snapshots it has" },
	{ "BACKING", "backing", CELL_TEXT, TABLE_WIDE, "the file or device that holds its data" },
	{ "ERROR", "error", CELL_TEXT, TABLE_WIDE | TABLE_SOME, "why it cannot be served, when it cannot" },
	{ "LINK", "link", CELL_TEXT, TABLE_EXTRA | TABLE_DASH, "its stable name (/dev/hotsnap/NAME)" },
	{ "STATE", "state", CELL_TEXT, TABLE_EXTRA, "ok, or what is wrong" },
	{ "COW-BUFFER", "cow_buffer", CELL_SIZE, TABLE_EXTRA | TABLE_RIGHT,
	  "the RAM buffer for saved originals" },
	{ "DIFF-LIMIT", "diff_limit", CELL_SIZE, TABLE_EXTRA | TABLE_RIGHT,
	  "how much the diff store may hold" },
	{ "DIFF-DIR", "diff_dir", CELL_TEXT, TABLE_EXTRA | TABLE_WIDE, "where diff files go" },
	{ "FUSE-FILE", "fuse_file", CELL_TEXT, TABLE_EXTRA | TABLE_WIDE, "its FUSE block file" },
	{ "HOOK", "hook", CELL_TEXT, TABLE_EXTRA | TABLE_DASH, "its application hook" },
	{ NULL, NULL, CELL_TEXT, 0, NULL },
};

static int volume_list(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = { .cmd = "volume list", .positional = "",
					      .summary = "Lists the volumes.",
					      .opts = { TABLE_OPT_SPECS } };
	struct table_style st;
	json_object *res, *vols;
	int r = cli_fetch_listing(cli, &spec, argc, argv, "volume.list", volume_cols, &st, &res);

	if (!res)
		return r;
	json_object_object_get_ex(res, "volumes", &vols);
	r = table_print(&st, vols);
	json_object_put(res);
	return r ? EXIT_ERROR : EXIT_OK;
}

static int volume_attach(const struct cli *cli, int argc, char **argv)
{
	struct cmd_spec s = name_spec("volume attach", "Attaches a loop device (direct I/O) to the "
						       "volume's FUSE file and prints it.");
	return volume_simple(cli, &s, "volume.attach", argc, argv);
}

static int volume_detach(const struct cli *cli, int argc, char **argv)
{
	struct cmd_spec s = name_spec("volume detach",
				      "Detaches the volume's loop device (refused while mounted).");
	return volume_simple(cli, &s, "volume.detach", argc, argv);
}

static int volume_remove(const struct cli *cli, int argc, char **argv)
{
	struct cmd_spec s = name_spec("volume remove",
				      "Forgets the volume; its backing file is left as it is.");
	return volume_simple(cli, &s, "volume.remove", argc, argv);
}

int cli_volume(const struct cli *cli, int argc, char **argv)
{
	static const char help[] =
		"usage: hotsnap volume create|set|attach|detach|list|remove ...\n"
		"  create NAME --backing PATH [--size SIZE] [--chunk-size SIZE] [--cow-buffer SIZE]\n"
		"              [--diff-dir DIR] [--diff-limit SIZE] [--cache MODE]\n"
		"              [--track-granularity SIZE | --no-tracking]\n"
		"  set NAME [--diff-limit SIZE] [--diff-dir DIR] [--hook PATH]\n"
		"                  change settings at once, also under live snapshots\n"
		"  attach NAME     attach a loop device (prints /dev/loopN)\n"
		"  detach NAME     detach its loop device\n"
		"  list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
		"                  list the volumes\n"
		"  remove NAME     forget the volume (its backing file stays)\n";

	static const struct cli_sub subs[] = {
		{ "create", volume_create },
		{ "set", volume_set },
		{ "list", volume_list },
		{ "attach", volume_attach },
		{ "detach", volume_detach },
		{ "remove", volume_remove },
		{ NULL, NULL },
	};
	return cli_group(cli, "volume", help, subs, argc, argv);
}
