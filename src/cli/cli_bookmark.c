/* cli_bookmark.c - hotsnap bookmark list|create|delete. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "common/names.h"

const struct table_col cli_bookmark_cols[] = {
	{ "BOOKMARK", "bookmark", CELL_TEXT, 0, "VOLUME#NAME" },
	{ "INSTANT", "instant", CELL_TEXT, 0, "the instant of the snapshot it was left by" },
	{ "KEPT-SINCE", "created", CELL_TEXT, 0, "when change tracking began to keep it" },
	{ "VOLUME", "volume", CELL_TEXT, TABLE_EXTRA, "its volume" },
	{ "NAME", "name", CELL_TEXT, TABLE_EXTRA, "its name on the volume" },
	{ "GENERATION", "generation", CELL_COUNT, TABLE_EXTRA | TABLE_RIGHT,
	  "the change-tracking generation it starts from" },
	{ NULL, NULL, CELL_TEXT, 0, NULL },
};

int cli_print_bookmarks(json_object *res, const struct table_style *st)
{
	json_object *books;

	if (!json_object_object_get_ex(res, "bookmarks", &books) ||
	    json_object_array_length(books) == 0)
		return 0;
	return table_print(st, books);
}

static int bookmark_list(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "bookmark list", .positional = "",
		.summary = "Lists the bookmarks: instants of backed-up snapshots that an\n"
			   "incremental backup can start from.",
		.opts = { TABLE_OPT_SPECS },
	};
	struct table_style st;
	json_object *res, *books = NULL;
	int r = cli_fetch_listing(cli, &spec, argc, argv, "bookmark.list", cli_bookmark_cols, &st,
				  &res);

	if (!res)
		return r;
	json_object_object_get_ex(res, "bookmarks", &books);
	r = table_print(&st, books);
	json_object_put(res);
	return r ? EXIT_ERROR : EXIT_OK;
}

static bool bookmark_name_ok(const char *cmd, const char *full)
{
	const char *hash = strchr(full, '#');
	char vol[HS_NAME_MAX + 1];
	const char *why = NULL;

	if (!hash || (size_t)(hash - full) > HS_NAME_MAX) {
		cli_usage_error(cmd, "'%s' is not a bookmark: a bookmark is named VOLUME#NAME", full);
		return false;
	}
	memcpy(vol, full, (size_t)(hash - full));
	vol[hash - full] = '\0';
	if ((why = names_check(vol)) || (why = names_check(hash + 1))) {
		cli_usage_error(cmd, "bad bookmark '%s': %s", full, why);
		return false;
	}
	return true;
}

static int bookmark_delete(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "bookmark delete", .positional = "VOLUME#NAME...", .min_pos = 1,
		.max_pos = 64,
		.summary = "Deletes bookmarks; an incremental against one is refused afterwards."
	};
	struct parsed_args p;
	json_object *args, *res;
	int r = args_parse(&spec, argc, argv, &p), worst = EXIT_OK;

	if (r)
		return r < 0 ? EXIT_OK : r;
	for (int i = 0; i < p.npos; i++)
		if (!bookmark_name_ok(spec.cmd, p.pos[i]))
			return EXIT_USAGE;
	for (int i = 0; i < p.npos; i++) {
		args = json_object_new_object();
		json_object_object_add(args, "bookmark", json_object_new_string(p.pos[i]));
		r = cli_call(cli, "bookmark.delete", args, -1, NULL, NULL, &res);
		if (r == EXIT_OK && cli->json)
			cli_print_json(res);
		json_object_put(res);
		if (r > worst)
			worst = r;
	}
	return worst;
}

static int bookmark_create(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "bookmark create", .positional = "VOLUME@SNAPSHOT", .min_pos = 1,
		.max_pos = 1,
		.summary = "Keeps a snapshot's instant as a bookmark, for a snapshot backed up by\n"
			   "another tool (an NBD pull).  hotsnap backup leaves one by itself.",
		.opts = { { "name", OPT_STRING, 'n', "NAME", "the bookmark's name (default: the snapshot's)" } },
	};
	struct parsed_args p;
	json_object *args, *res;
	const struct opt_value *name;
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = cli_check_snapshot_name(spec.cmd, p.pos[0])))
		return r;
	name = args_get(&spec, &p, "name");
	if (name->set && names_check(name->str))
		return cli_usage_error(spec.cmd, "bad --name '%s': %s", name->str,
				       names_check(name->str));
	args = json_object_new_object();
	json_object_object_add(args, "snapshot", json_object_new_string(p.pos[0]));
	if (name->set)
		json_object_object_add(args, "name", json_object_new_string(name->str));
	r = cli_call(cli, "bookmark.create", args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else
		printf("%s\n", cli_get_str(res, "bookmark"));
	json_object_put(res);
	return EXIT_OK;
}

int cli_bookmark(const struct cli *cli, int argc, char **argv)
{
	static const char help[] =
		"usage: hotsnap bookmark list|create|delete ...\n"
		"  list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
		"  create VOLUME@SNAPSHOT [--name NAME]\n"
		"  delete VOLUME#NAME...\n";

	static const struct cli_sub subs[] = {
		{ "list", bookmark_list },
		{ "create", bookmark_create },
		{ "delete", bookmark_delete },
		{ NULL, NULL },
	};
	return cli_group(cli, "bookmark", help, subs, argc, argv);
}
