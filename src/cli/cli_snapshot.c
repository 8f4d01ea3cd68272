/* cli_snapshot.c - hotsnap snapshot create|list|attach|detach|delete. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "common/names.h"

static const struct cmd_spec create_spec = {
	.cmd = "snapshot create",
	.positional = "VOLUME...",
	.min_pos = 1,
	.max_pos = 64,
	.summary = "Takes a point-in-time snapshot of each volume, all at one instant (a set),\n"
		   "and prints one VOLUME@NAME line per volume.  File systems mounted on the\n"
		   "volumes' loop devices are frozen around it (FIFREEZE) and always thawed.\n"
		   "Blocks free in a frozen ext4 or XFS (or an unmounted, clean ext2/3/4) are\n"
		   "neither protected nor backed up; --all-blocks protects and reads every block.\n"
		   "A freezing snapshot runs the application hooks first (the daemon's\n"
		   "--hooks-dir and each volume's --hook): one that fails aborts the snapshot.",
	.opts = {
		{ "name", OPT_STRING, 'n', "NAME", "the snapshot's name (default: snapN)" },
		{ "no-freeze", OPT_FLAG, 0, "", "do not freeze mounted file systems (then every block is protected)" },
		{ "all-blocks", OPT_FLAG, 0, "", "protect and back up every block: a bit-exact device image" },
		{ "no-hooks", OPT_FLAG, 0, "", "freeze without running the application hooks" },
	},
};

static int snapshot_create(const struct cli *cli, int argc, char **argv)
{
	struct parsed_args p;
	json_object *args, *vols, *res, *snaps;
	const struct opt_value *name;
	int r = args_parse(&create_spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	name = args_get(&create_spec, &p, "name");
	if (name->set && names_check(name->str))
		return cli_usage_error(create_spec.cmd, "bad --name '%s': %s", name->str,
				       names_check(name->str));
	vols = json_object_new_array();
	for (int i = 0; i < p.npos; i++) {
		if ((r = cli_check_volume_name(create_spec.cmd, p.pos[i]))) {
			json_object_put(vols);
			return r;
		}
		json_object_array_add(vols, json_object_new_string(p.pos[i]));
	}
	args = json_object_new_object();
	json_object_object_add(args, "volumes", vols);
	if (name->set)
		json_object_object_add(args, "name", json_object_new_string(name->str));
	json_object_object_add(args, "freeze",
			       json_object_new_boolean(!args_get(&create_spec, &p, "no-freeze")->set));
	json_object_object_add(args, "all_blocks",
			       json_object_new_boolean(args_get(&create_spec, &p, "all-blocks")->set));
	if (args_get(&create_spec, &p, "no-hooks")->set)
		json_object_object_add(args, "hooks", json_object_new_boolean(false));
	r = cli_call(cli, "snapshot.create", args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json) {
		cli_print_json(res);
	} else if (json_object_object_get_ex(res, "snapshots", &snaps)) {
		for (size_t i = 0; i < json_object_array_length(snaps); i++)
			printf("%s\n", json_object_get_string(json_object_array_get_idx(snaps, i)));
		if (cli_get_int(res, "hooks_failed") > 0)
			fprintf(stderr, "hotsnap: warning: %lld application hook(s) failed after the "
					"snapshot was taken (it stands); see the daemon's log\n",
				(long long)cli_get_int(res, "hooks_failed"));
	}
	json_object_put(res);
	return EXIT_OK;
}

static const struct table_col snapshot_cols[] = {
	{ "SNAPSHOT", "snapshot", CELL_TEXT, 0, "VOLUME@NAME" },
	{ "STATE", "state", CELL_TEXT, 0, "active, or failed" },
	{ "CREATED", "created", CELL_TEXT, TABLE_DASH, "its instant" },
	{ "COW", "cow_bytes", CELL_SIZE, TABLE_RIGHT, "originals copied on write for it" },
	{ "HELD", "held_bytes", CELL_SIZE, TABLE_RIGHT, "originals the diff store holds for it" },
	{ "DEVICE", "device", CELL_TEXT, TABLE_DASH, "the loop device it is attached as" },
	{ "REASON", "reason", CELL_TEXT, TABLE_WIDE | TABLE_SOME, "why it failed" },
	{ "VOLUME", "volume", CELL_TEXT, TABLE_EXTRA, "its volume" },
	{ "NAME", "name", CELL_TEXT, TABLE_EXTRA, "its name on the volume" },
	{ "LINK", "link", CELL_TEXT, TABLE_EXTRA | TABLE_DASH,
	  "its stable name (/dev/hotsnap/VOLUME@NAME)" },
	{ "ZERO", "zero_bytes", CELL_SIZE, TABLE_EXTRA | TABLE_RIGHT,
	  "originals that read zeros: recorded, neither copied nor stored" },
	{ "USED", "used_bytes", CELL_SIZE, TABLE_EXTRA | TABLE_RIGHT,
	  "what its used-block map keeps (what a backup reads)" },
	{ "NBD", "nbd_uri", CELL_TEXT, TABLE_EXTRA | TABLE_DASH, "its NBD export" },
	{ "ALL-BLOCKS", "all_blocks", CELL_TEXT, TABLE_EXTRA,
	  "true when it keeps free blocks too (no used-block map)" },
	{ "TEMPORARY", "temporary", CELL_TEXT, TABLE_EXTRA,
	  "true for a backup's own snapshot, deleted when it ends" },
	{ NULL, NULL, CELL_TEXT, 0, NULL },
};

static int snapshot_list(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "snapshot list", .positional = "",
		.summary = "Lists the snapshots, with their state, and the bookmarks\n"
			   "(VOLUME#NAME) their backups left.  With -o, --noheadings or --raw,\n"
			   "only the snapshots (bookmark list shows the bookmarks).",
		.opts = { TABLE_OPT_SPECS },
	};
	struct table_style st, bst;
	json_object *res, *snaps;
	int r = cli_fetch_listing(cli, &spec, argc, argv, "snapshot.list", snapshot_cols, &st, &res);

	if (!res)
		return r;
	json_object_object_get_ex(res, "snapshots", &snaps);
	r = table_print(&st, snaps);
	if (!r && !st.chosen && !st.raw && !st.noheadings)
		r = cli_print_bookmarks(res, table_style_like(&st, cli_bookmark_cols, &bst));
	json_object_put(res);
	return r ? EXIT_ERROR : EXIT_OK;
}

static int snapshot_simple(const struct cli *cli, const char *cmd, const char *rpc,
			   const char *summary, int argc, char **argv)
{
	struct cmd_spec spec = { .cmd = cmd, .positional = "VOLUME@SNAPSHOT", .min_pos = 1,
				 .max_pos = 1, .summary = summary };
	struct parsed_args p;
	json_object *args, *res;
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = cli_check_snapshot_name(cmd, p.pos[0])))
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "snapshot", json_object_new_string(p.pos[0]));
	r = cli_call(cli, rpc, args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else if (cli_get_str(res, "device"))
		printf("%s\n", cli_get_str(res, "device"));
	json_object_put(res);
	return EXIT_OK;
}

static int snapshot_delete(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "snapshot delete", .positional = "VOLUME@SNAPSHOT...", .min_pos = 1,
		.max_pos = 64, .summary = "Deletes the snapshots and releases what they hold."
	};
	struct parsed_args p;
	json_object *args, *res, *deleted = json_object_new_array();
	int r = args_parse(&spec, argc, argv, &p), worst = EXIT_OK;

	if (r) {
		json_object_put(deleted);
		return r < 0 ? EXIT_OK : r;
	}
	for (int i = 0; i < p.npos; i++)
		if ((r = cli_check_snapshot_name(spec.cmd, p.pos[i]))) {
			json_object_put(deleted);
			return r;
		}
	for (int i = 0; i < p.npos; i++) {
		args = json_object_new_object();
		json_object_object_add(args, "snapshot", json_object_new_string(p.pos[i]));
		r = cli_call(cli, "snapshot.delete", args, -1, NULL, NULL, &res);
		json_object_put(res);
		if (r == EXIT_OK)
			json_object_array_add(deleted, json_object_new_string(p.pos[i]));
		if (r > worst)
			worst = r;
	}
	if (cli->json && worst == EXIT_OK) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "deleted", deleted);
		cli_print_json(o);
		json_object_put(o);
	} else {
		json_object_put(deleted);
	}
	return worst;
}

static int snapshot_revert(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "snapshot revert", .positional = "VOLUME@SNAPSHOT", .min_pos = 1,
		.max_pos = 1,
		.summary = "Puts the volume back to the snapshot's instant, writing back only what\n"
			   "changed since.  The volume must not be attached or open (unmount and\n"
			   "detach it first).  Its other snapshots keep their views (their\n"
			   "originals are copied as for any write); the snapshot stays.",
		.opts = { { "no-progress", OPT_FLAG, 0, "", "no progress bar, even on a terminal" } },
	};
	struct parsed_args p;
	struct progress pr = { 0 };
	json_object *args, *res;
	char a[32];
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = cli_check_snapshot_name(spec.cmd, p.pos[0])))
		return r;
	pr.show = !args_get(&spec, &p, "no-progress")->set && isatty(STDERR_FILENO);
	args = json_object_new_object();
	json_object_object_add(args, "snapshot", json_object_new_string(p.pos[0]));
	json_object_object_add(args, "progress", json_object_new_boolean(pr.show));
	r = cli_call(cli, "snapshot.revert", args, -1, progress_draw, &pr, &res);
	progress_end(&pr);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else
		printf("volume %s reverted to %s: %s written back in %.2f s\n",
		       cli_get_str(res, "volume"), cli_get_str(res, "snapshot"),
		       cli_size((uint64_t)cli_get_int(res, "changed_bytes"), a, sizeof(a)),
		       cli_get_double(res, "seconds"));
	json_object_put(res);
	return EXIT_OK;
}

static int snapshot_attach(const struct cli *cli, int argc, char **argv)
{
	return snapshot_simple(cli, "snapshot attach", "snapshot.attach",
			       "Attaches a read-only loop device to the snapshot and prints it.", argc,
			       argv);
}

static int snapshot_detach(const struct cli *cli, int argc, char **argv)
{
	return snapshot_simple(cli, "snapshot detach", "snapshot.detach",
			       "Detaches the snapshot's loop device (refused while mounted).", argc,
			       argv);
}

int cli_snapshot(const struct cli *cli, int argc, char **argv)
{
	static const char help[] =
		"usage: hotsnap snapshot create|list|attach|detach|delete|revert ...\n"
		"  create VOLUME... [--name NAME] [--no-freeze] [--all-blocks]\n"
		"  list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
		"  attach VOLUME@NAME   attach read-only (prints /dev/loopM)\n"
		"  detach VOLUME@NAME\n"
		"  delete VOLUME@NAME...\n"
		"  revert VOLUME@NAME [--no-progress]   the volume back to the snapshot's instant\n";

	static const struct cli_sub subs[] = {
		{ "create", snapshot_create },
		{ "list", snapshot_list },
		{ "revert", snapshot_revert },
		{ "attach", snapshot_attach },
		{ "detach", snapshot_detach },
		{ "delete", snapshot_delete },
		{ NULL, NULL },
	};
	return cli_group(cli, "snapshot", help, subs, argc, argv);
}
