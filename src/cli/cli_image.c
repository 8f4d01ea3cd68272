/* cli_image.c - hotsnap image attach|detach|list|info.
 *
 * attach, detach and list go to the daemon (it serves the image); info
 * reads the file here, with the image library, and needs no daemon. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup_meta.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "common/names.h"
#include "image/image.h"

static int image_attach(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "image attach", .positional = "IMAGE", .min_pos = 1, .max_pos = 1,
		.summary = "Serves a backup image (raw, or a qcow2 with its backing chain) read-only:\n"
			   "a loop device to mount and copy files from, and the NBD export\n"
			   "image:NAME.  Prints the device.",
		.opts = { { "name", OPT_STRING, 'n', "NAME", "its name (default: the file's, without the extension)" } },
	};
	struct parsed_args p;
	json_object *args, *res;
	char path[4096];
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	const struct opt_value *name = args_get(&spec, &p, "name");
	if (name->set && names_check(name->str))
		return cli_usage_error(spec.cmd, "bad --name '%s': %s", name->str, names_check(name->str));
	if (p.pos[0][0] == '/' || !getcwd(path, sizeof(path) - 512))
		snprintf(path, sizeof(path), "%s", p.pos[0]);
	else
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", p.pos[0]);
	args = json_object_new_object();
	json_object_object_add(args, "image", json_object_new_string(path));
	if (name->set)
		json_object_object_add(args, "name", json_object_new_string(name->str));
	r = cli_call(cli, "image.attach", args, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json)
		cli_print_json(res);
	else
		printf("%s\n", cli_get_str(res, "device"));
	json_object_put(res);
	return EXIT_OK;
}

static int image_detach(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "image detach", .positional = "NAME", .min_pos = 1, .max_pos = 1,
		.summary = "Stops serving an attached image (refused while its device is mounted)."
	};
	struct parsed_args p;
	json_object *args, *res;
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	args = json_object_new_object();
	json_object_object_add(args, "name", json_object_new_string(p.pos[0]));
	r = cli_call(cli, "image.detach", args, -1, NULL, NULL, &res);
	if (r == EXIT_OK && cli->json)
		cli_print_json(res);
	json_object_put(res);
	return r;
}

static const struct table_col image_cols[] = {
	{ "NAME", "name", CELL_TEXT, 0, "the attached image's name" },
	{ "SIZE", "size", CELL_SIZE, TABLE_RIGHT, "its size" },
	{ "DEVICE", "device", CELL_TEXT, TABLE_DASH, "the loop device it is attached as" },
	{ "IMAGE", "image", CELL_TEXT, TABLE_WIDE, "the image file (the newest of its chain)" },
	{ "FUSE-FILE", "fuse_file", CELL_TEXT, TABLE_EXTRA | TABLE_WIDE, "its FUSE block file" },
	{ "NBD", "nbd_uri", CELL_TEXT, TABLE_EXTRA | TABLE_DASH, "its NBD export" },
	{ NULL, NULL, CELL_TEXT, 0, NULL },
};

static int image_list(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = { .cmd = "image list", .positional = "",
					      .summary = "Lists the attached images.",
					      .opts = { TABLE_OPT_SPECS } };
	struct table_style st;
	json_object *res, *imgs = NULL;
	int r = cli_fetch_listing(cli, &spec, argc, argv, "image.list", image_cols, &st, &res);

	if (!res)
		return r;
	json_object_object_get_ex(res, "images", &imgs);
	r = table_print(&st, imgs);
	json_object_put(res);
	return r ? EXIT_ERROR : EXIT_OK;
}

static json_object *info_json(struct image_reader *r)
{
	json_object *o = json_object_new_object(), *chain = json_object_new_array();

	for (struct image_reader *x = r; x; x = image_backing(x)) {
		const struct image_info *i = image_get_info(x);
		struct backup_meta m;
		const char *why;
		json_object *e = json_object_new_object();
		json_object_object_add(e, "path", json_object_new_string(image_path(x)));
		json_object_object_add(e, "format", json_object_new_string(image_format_name(i->format)));
		json_object_object_add(e, "size", json_object_new_int64((int64_t)i->size));
		if (i->format == IMAGE_QCOW2) {
			json_object_object_add(e, "cluster_size", json_object_new_int64(i->cluster_size));
			json_object_object_add(e, "compression",
					       json_object_new_string(image_compress_name(i->compress)));
		}
		if (i->backing[0])
			json_object_object_add(e, "backing_file", json_object_new_string(i->backing));
		if (i->meta && backup_meta_decode(i->meta, i->meta_len, &m, &why) == 0) {
			json_object *h = json_object_new_object();
			json_object_object_add(h, "volume", json_object_new_string(m.volume));
			if (m.bookmark[0]) {
				char b[2 * HS_NAME_MAX + 2];
				snprintf(b, sizeof(b), "%s#%s", m.volume, m.bookmark);
				json_object_object_add(h, "bookmark", json_object_new_string(b));
			}
			json_object_object_add(h, "instant", json_object_new_int64((int64_t)m.instant_s));
			json_object_object_add(h, "generation", json_object_new_int64((int64_t)m.generation));
			json_object_object_add(h, "incremental",
					       json_object_new_boolean(m.parent_generation != 0));
			json_object_object_add(e, "hotsnap", h);
		}
		json_object_array_add(chain, e);
	}
	json_object_object_add(o, "size", json_object_new_int64((int64_t)image_get_info(r)->size));
	json_object_object_add(o, "depth", json_object_new_int64(image_get_info(r)->depth));
	json_object_object_add(o, "chain", chain);
	return o;
}

static int image_info(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "image info", .positional = "IMAGE", .min_pos = 1, .max_pos = 1,
		.summary = "Shows an image and its backing chain: format, size, compression, and\n"
			   "for images hotsnap wrote the volume, instant and bookmark each holds.\n"
			   "Reads the files here; needs no daemon."
	};
	struct parsed_args p;
	struct image_reader *r;
	char err[IMAGE_ERROR_MAX], a[32], when[64];
	int rr = args_parse(&spec, argc, argv, &p);

	if (rr)
		return rr < 0 ? EXIT_OK : rr;
	if (image_open(&r, p.pos[0], 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "hotsnap: %s\n", err);
		return EXIT_ERROR;
	}
	json_object *o = info_json(r), *chain;
	image_close(r);
	if (cli->json) {
		cli_print_json(o);
		json_object_put(o);
		return EXIT_OK;
	}
	json_object_object_get_ex(o, "chain", &chain);
	for (size_t i = 0; i < json_object_array_length(chain); i++) {
		json_object *e = json_object_array_get_idx(chain, i), *h;
		printf("%s%s: %s, %s", i ? "  backed by " : "", cli_get_str(e, "path"),
		       cli_get_str(e, "format"), cli_size((uint64_t)cli_get_int(e, "size"), a, sizeof(a)));
		if (cli_get_str(e, "compression"))
			printf(", %s clusters, compressed %s",
			       cli_size((uint64_t)cli_get_int(e, "cluster_size"), a, sizeof(a)),
			       cli_get_str(e, "compression"));
		if (json_object_object_get_ex(e, "hotsnap", &h)) {
			time_t t = (time_t)cli_get_int(h, "instant");
			struct tm tm;
			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			printf("\n    %s of volume %s at %s%s%s", cli_get_bool(h, "incremental")
								   ? "incremental"
								   : "full image",
			       cli_get_str(h, "volume"), when, cli_get_str(h, "bookmark") ? ", bookmark " : "",
			       cli_get_str(h, "bookmark") ? cli_get_str(h, "bookmark") : "");
		}
		printf("\n");
	}
	json_object_put(o);
	return EXIT_OK;
}

int cli_image(const struct cli *cli, int argc, char **argv)
{
	static const char help[] =
		"usage: hotsnap image attach|detach|list|info ...\n"
		"  attach IMAGE [--name NAME]   serve read-only (prints /dev/loopM)\n"
		"  detach NAME\n"
		"  list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
		"  info IMAGE                   the image and its chain (no daemon needed)\n";

	static const struct cli_sub subs[] = {
		{ "attach", image_attach },
		{ "detach", image_detach },
		{ "list", image_list },
		{ "info", image_info },
		{ NULL, NULL },
	};
	return cli_group(cli, "image", help, subs, argc, argv);
}
