/* cli_restore.c - hotsnap restore IMAGE --to VOLUME | --new NAME --backing PATH. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "common/names.h"

static const struct cmd_spec restore_spec = {
	.cmd = "restore",
	.positional = "IMAGE",
	.min_pos = 1,
	.max_pos = 1,
	.summary =
		"Writes IMAGE (raw, or a qcow2 with its whole backing chain) into a volume that\n"
		"is not attached, or into a new one made for it (--new NAME --backing PATH), then\n"
		"reads the volume back and checks it against the image.  Zeros are not written\n"
		"as data.  --verify-only compares the volume with the image and writes nothing.",
	.opts = {
		{ "to", OPT_STRING, 0, "VOLUME", "the volume to write" },
		{ "new", OPT_STRING, 0, "NAME", "make a volume of the image's size first" },
		{ "backing", OPT_PATH, 0, "PATH", "with --new: its backing file (made sparse)" },
		{ "verify-only", OPT_FLAG, 0, "", "compare only; exit 1 when they differ" },
		{ "no-progress", OPT_FLAG, 0, "", "no progress bar, even on a terminal" },
	},
};

int cli_restore(const struct cli *cli, int argc, char **argv)
{
	struct parsed_args p;
	struct progress pr = { 0 };
	json_object *args, *res;
	char image[4096], a[32], b[32];
	int r = args_parse(&restore_spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	const struct opt_value *to = args_get(&restore_spec, &p, "to");
	const struct opt_value *nw = args_get(&restore_spec, &p, "new");
	const struct opt_value *backing = args_get(&restore_spec, &p, "backing");
	bool verify_only = args_get(&restore_spec, &p, "verify-only")->set;
	if (to->set == nw->set)
		return cli_usage_error("restore", "give either --to VOLUME or --new NAME --backing PATH");
	if (nw->set && !backing->set)
		return cli_usage_error("restore", "--new NAME needs --backing PATH");
	if (to->set && backing->set)
		return cli_usage_error("restore", "--backing goes with --new (a volume given with --to "
						  "has its backing already)");
	if (nw->set && verify_only)
		return cli_usage_error("restore", "--verify-only compares with an existing volume "
						  "(--to VOLUME)");
	if ((r = cli_check_volume_name("restore", to->set ? to->str : nw->str)))
		return r;
	if (p.pos[0][0] == '/') {
		snprintf(image, sizeof(image), "%s", p.pos[0]);
	} else {
		char cwd[2048];
		if (!getcwd(cwd, sizeof(cwd)))
			return cli_usage_error("restore", "cannot tell the current directory");
		snprintf(image, sizeof(image), "%s/%s", cwd, p.pos[0]);
	}
	args = json_object_new_object();
	json_object_object_add(args, "image", json_object_new_string(image));
	json_object_object_add(args, "volume", json_object_new_string(to->set ? to->str : nw->str));
	if (nw->set)
		json_object_object_add(args, "new_backing", json_object_new_string(backing->str));
	json_object_object_add(args, "verify_only", json_object_new_boolean(verify_only));
	pr.show = !args_get(&restore_spec, &p, "no-progress")->set && isatty(STDERR_FILENO);
	json_object_object_add(args, "progress", json_object_new_boolean(pr.show));
	r = cli_call(cli, "restore", args, -1, progress_draw, &pr, &res);
	progress_end(&pr);
	if (r)
		return r;
	if (cli->json) {
		cli_print_json(res);
	} else if (verify_only) {
		printf("%s equals volume %s (%s compared in %.2f s)\n", image, cli_get_str(res, "volume"),
		       cli_size((uint64_t)cli_get_int(res, "bytes_checked"), a, sizeof(a)),
		       cli_get_double(res, "seconds"));
	} else {
		printf("%s -> volume %s%s: %s, %lld image%s; %s written, %s of zeros not written; "
		       "%.2f s (%.0f MB/s); read back and verified\n",
		       image, cli_get_str(res, "volume"), cli_get_bool(res, "created") ? " (new)" : "",
		       cli_size((uint64_t)cli_get_int(res, "size_bytes"), a, sizeof(a)),
		       (long long)cli_get_int(res, "chain_images"),
		       cli_get_int(res, "chain_images") == 1 ? "" : "s in the chain",
		       cli_size((uint64_t)cli_get_int(res, "bytes_written"), b, sizeof(b)),
		       cli_size((uint64_t)cli_get_int(res, "bytes_zeroed"), a, sizeof(a)),
		       cli_get_double(res, "seconds"), cli_get_double(res, "mb_per_s"));
	}
	json_object_put(res);
	return EXIT_OK;
}
