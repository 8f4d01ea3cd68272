/* cli_bookmark.c - hotsnap bookmark list|create|delete. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "common/names.h"

void cli_print_bookmarks(json_object *res)
{
	json_object *books;

	if (!json_object_object_get_ex(res, "bookmarks", &books) ||
	    json_object_array_length(books) == 0)
		return;
	printf("%-28s %-25s %-25s\n", "BOOKMARK", "INSTANT", "KEPT SINCE");
	for (size_t i = 0; i < json_object_array_length(books); i++) {
		json_object *b = json_object_array_get_idx(books, i);
		printf("%-28s %-25s %-25s\n", cli_get_str(b, "bookmark"), cli_get_str(b, "instant"),
		       cli_get_str(b, "created"));
	}
}

static int bookmark_list(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "bookmark list", .positional = "",
		.summary = "Lists the bookmarks: instants of backed-up snapshots that an\n"
			   "incremental backup can start from."
	};
	json_object *res;
	int r = cli_fetch_listing(cli, &spec, argc, argv, "bookmark.list", &res);

	if (!res)
		return r;
	cli_print_bookmarks(res);
	json_object_put(res);
	return EXIT_OK;
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
		"  list\n"
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
