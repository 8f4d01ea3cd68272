/* cli_vm.c - hotsnap vm checkpoint|restore|list: parses, hands the daemon's
 * part to src/vm through struct vm_daemon (each a control call), renders. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "common/names.h"
#include "vm/vm.h"

/* The daemon's own words reach stderr through cli_call; err says which
 * step they belong to. */
static int call(const struct cli *cli, const char *cmd, json_object *args, int fd,
		json_object **res, char *err, size_t errlen, const char *step)
{
	int r = cli_call(cli, cmd, args, fd, NULL, NULL, res);
	if (r != EXIT_OK) {
		snprintf(err, errlen, "%s failed (the daemon's reason is above)", step);
		return -EIO;
	}
	return 0;
}

static int d_snapshot(void *arg, char *const *volumes, int n, const char *name, char *err,
		      size_t errlen)
{
	json_object *args = json_object_new_object(), *vols = json_object_new_array(), *res;
	for (int i = 0; i < n; i++)
		json_object_array_add(vols, json_object_new_string(volumes[i]));
	json_object_object_add(args, "volumes", vols);
	json_object_object_add(args, "name", json_object_new_string(name));
	/* the guest is stopped: nothing to freeze, no application to ask */
	json_object_object_add(args, "freeze", json_object_new_boolean(false));
	json_object_object_add(args, "hooks", json_object_new_boolean(false));
	int r = call(arg, "snapshot.create", args, -1, &res, err, errlen, "the snapshot set");
	json_object_put(res);
	return r;
}

static int d_backup(void *arg, const char *snapshot, const char *path, uint64_t *bytes,
		    char *err, size_t errlen)
{
	char part[PATH_MAX];
	json_object *args = json_object_new_object(), *res = NULL;
	int fd, r;

	snprintf(part, sizeof(part), "%s.part", path);
	fd = open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		json_object_put(args);
		snprintf(err, errlen, "cannot create %s: %s", part, strerror(errno));
		return -errno;
	}
	json_object_object_add(args, "source", json_object_new_string(snapshot));
	json_object_object_add(args, "output", json_object_new_string(path));
	json_object_object_add(args, "format", json_object_new_string("qcow2"));
	/* the snapshot goes when its image is written: release as it is read */
	json_object_object_add(args, "consume", json_object_new_boolean(true));
	json_object_object_add(args, "yield", json_object_new_boolean(true));
	json_object_object_add(args, "progress", json_object_new_boolean(false));
	r = call(arg, "backup", args, fd, &res, err, errlen, "the backup of a disk");
	if (r == 0 && (fsync(fd) < 0 || rename(part, path) < 0)) {
		r = -errno;
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	}
	close(fd);
	if (r < 0)
		unlink(part);
	*bytes = (uint64_t)cli_get_int(res, "bytes_read");
	json_object_put(res);
	return r;
}

static int d_delete(void *arg, const char *snapshot, char *err, size_t errlen)
{
	json_object *args = json_object_new_object(), *res;
	json_object_object_add(args, "snapshot", json_object_new_string(snapshot));
	int r = call(arg, "snapshot.delete", args, -1, &res, err, errlen, "deleting a snapshot");
	json_object_put(res);
	return r;
}

static int d_live(void *arg, const char *snapshot)
{
	json_object *res, *snaps;
	char e[64];
	int live = 0;

	if (call(arg, "snapshot.list", NULL, -1, &res, e, sizeof(e), "") < 0)
		return -EIO;
	if (json_object_object_get_ex(res, "snapshots", &snaps))
		for (size_t i = 0; i < json_object_array_length(snaps); i++) {
			json_object *s = json_object_array_get_idx(snaps, i);
			const char *name = cli_get_str(s, "snapshot"), *st = cli_get_str(s, "state");
			if (name && strcmp(name, snapshot) == 0 && st && strcmp(st, "active") == 0 &&
			    cli_get_int(s, "consumed_bytes") == 0)
				live = 1;
		}
	json_object_put(res);
	return live;
}

static int d_revert(void *arg, const char *snapshot, uint64_t *bytes, char *err, size_t errlen)
{
	json_object *args = json_object_new_object(), *res;
	json_object_object_add(args, "snapshot", json_object_new_string(snapshot));
	json_object_object_add(args, "progress", json_object_new_boolean(false));
	int r = call(arg, "snapshot.revert", args, -1, &res, err, errlen, "reverting a volume");
	*bytes = (uint64_t)cli_get_int(res, "bytes_written");
	json_object_put(res);
	return r;
}

static int d_restore(void *arg, const char *image, const char *volume, uint64_t *bytes,
		     char *err, size_t errlen)
{
	json_object *args = json_object_new_object(), *res;
	json_object_object_add(args, "image", json_object_new_string(image));
	json_object_object_add(args, "volume", json_object_new_string(volume));
	json_object_object_add(args, "verify_only", json_object_new_boolean(false));
	json_object_object_add(args, "progress", json_object_new_boolean(false));
	int r = call(arg, "restore", args, -1, &res, err, errlen, "restoring a volume");
	*bytes = (uint64_t)cli_get_int(res, "bytes_written");
	json_object_put(res);
	return r;
}

static struct vm_daemon daemon_of(const struct cli *cli)
{
	return (struct vm_daemon){ .arg = (void *)cli, .snapshot = d_snapshot, .backup = d_backup,
				   .delete_snapshot = d_delete, .snapshot_live = d_live,
				   .revert = d_revert, .restore = d_restore };
}

static int local_only(const struct cli *cli, const char *cmd)
{
	if (!cli->remote)
		return 0;
	fprintf(stderr, "hotsnap %s: talks to QEMU on this machine (its QMP socket); run it on "
			"the guest's host, not with --remote\n", cmd);
	return EXIT_USAGE;
}

static const struct cmd_spec checkpoint_spec = {
	.cmd = "vm checkpoint",
	.positional = "VOLUME...",
	.min_pos = 1,
	.max_pos = VM_MAX_VOLUMES,
	.summary = "Checkpoints a running QEMU guest whose disks are these volumes (over\n"
		   "NBD): stops it, takes one snapshot set, starts QEMU's background save of\n"
		   "memory and device state into DIR and lets the guest run again at once;\n"
		   "then backs the disks up into DIR (qcow2) while the memory is saved, and\n"
		   "writes DIR/checkpoint.json last.  Reports the guest's pause.",
	.opts = {
		{ "qmp", OPT_PATH, 0, "SOCKET", "QEMU's QMP socket (-qmp unix:SOCKET,server=on,wait=off)" },
		{ "output", OPT_PATH, 'o', "DIR", "the checkpoint's directory (new or empty)" },
		{ "name", OPT_STRING, 'n', "NAME", "the checkpoint's name, also its snapshots' (default: vm-DATE-TIME)" },
		{ "disks-only", OPT_FLAG, 0, "", "keep the disks as live snapshots instead of images (a restore reverts)" },
		{ "timeout", OPT_NUMBER, 0, "SECONDS", "for QEMU's answers and the memory save (default 600)" },
	},
};

static int vm_checkpoint(const struct cli *cli, int argc, char **argv)
{
	struct parsed_args p;
	struct vm_checkpoint c;
	struct vm_daemon d = daemon_of(cli);
	char err[2048], a[32], b[32];
	int r = args_parse(&checkpoint_spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = local_only(cli, checkpoint_spec.cmd)))
		return r;
	const struct opt_value *qmp = args_get(&checkpoint_spec, &p, "qmp");
	const struct opt_value *out = args_get(&checkpoint_spec, &p, "output");
	const struct opt_value *name = args_get(&checkpoint_spec, &p, "name");
	if (!qmp->set || !out->set)
		return cli_usage_error(checkpoint_spec.cmd, "give --qmp SOCKET and -o DIR");
	if (name->set && names_check(name->str))
		return cli_usage_error(checkpoint_spec.cmd, "bad --name '%s': %s", name->str,
				       names_check(name->str));
	for (int i = 0; i < p.npos; i++)
		if ((r = cli_check_volume_name(checkpoint_spec.cmd, p.pos[i])))
			return r;
	struct vm_checkpoint_opts o = {
		.qmp = qmp->path, .dir = out->path, .name = name->set ? name->str : NULL,
		.volumes = (char *const *)p.pos, .nvols = p.npos,
		.disks_only = args_get(&checkpoint_spec, &p, "disks-only")->set,
		.timeout_s = (int)args_get(&checkpoint_spec, &p, "timeout")->num,
	};
	if (vm_checkpoint_take(&o, &d, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "hotsnap vm checkpoint: %s\n", err);
		return EXIT_ERROR;
	}
	if (c.warning[0])
		fprintf(stderr, "hotsnap vm checkpoint: warning: %s\n", c.warning);
	if (cli->json) {
		json_object *j = vm_checkpoint_json(&c);
		json_object_object_add(j, "dir", json_object_new_string(out->path));
		if (c.warning[0])
			json_object_object_add(j, "warning", json_object_new_string(c.warning));
		cli_print_json(j);
		json_object_put(j);
	} else {
		uint64_t disk = 0;
		for (int i = 0; i < c.nvols; i++)
			disk += c.vols[i].bytes;
		printf("checkpoint %s of QEMU pid %d in %s: guest paused %.1f ms; memory and "
		       "devices %s; %d disk%s %s%s; %.1f s\n",
		       c.name, (int)c.qemu_pid, out->path, c.pause_ms,
		       cli_size(c.memory_bytes, a, sizeof(a)), c.nvols, c.nvols == 1 ? "" : "s",
		       c.disks_only ? "kept as snapshots" : cli_size(disk, b, sizeof(b)),
		       c.disks_only ? "" : " read into images", c.seconds);
	}
	vm_checkpoint_free(&c);
	return EXIT_OK;
}

static int vm_restore_cmd(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "vm restore", .positional = "DIR", .min_pos = 1, .max_pos = 1,
		.summary = "Puts the checkpoint's volumes back (a revert while its snapshots are\n"
			   "live, else from its images), starts QEMU with the saved arguments\n"
			   "from the saved state, and lets the guest go on from the checkpoint's\n"
			   "instant.  Refused while the guest's QEMU still runs.",
	};
	struct parsed_args p;
	struct vm_restore_result res;
	struct vm_daemon d = daemon_of(cli);
	char err[2048], a[32];
	int r = args_parse(&spec, argc, argv, &p);

	if (r)
		return r < 0 ? EXIT_OK : r;
	if ((r = local_only(cli, spec.cmd)))
		return r;
	/* absolute: QEMU starts in its saved working directory, and the
	 * daemon takes only absolute image paths */
	char dir[PATH_MAX];
	if (!realpath(p.pos[0], dir)) {
		fprintf(stderr, "hotsnap vm restore: %s: %s\n", p.pos[0], strerror(errno));
		return EXIT_ERROR;
	}
	if (vm_restore(dir, &d, &res, err, sizeof(err)) < 0) {
		fprintf(stderr, "hotsnap vm restore: %s\n", err);
		return EXIT_ERROR;
	}
	if (cli->json) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "qemu_pid", json_object_new_int(res.qemu_pid));
		json_object_object_add(j, "load_seconds", json_object_new_double(res.load_seconds));
		json_object_object_add(j, "disk_bytes", json_object_new_int64((int64_t)res.disk_bytes));
		json_object_object_add(j, "reverted", json_object_new_boolean(res.reverted));
		cli_print_json(j);
		json_object_put(j);
	} else {
		printf("guest running again from %s: QEMU pid %d; disks %s (%s written); state "
		       "loaded in %.1f s\n", p.pos[0], (int)res.qemu_pid,
		       res.reverted ? "reverted" : "restored from images",
		       cli_size(res.disk_bytes, a, sizeof(a)), res.load_seconds);
	}
	return EXIT_OK;
}

static const struct table_col vm_cols[] = {
	{ "NAME", "name", CELL_TEXT, 0, "the checkpoint" },
	{ "CREATED", "created", CELL_TEXT, 0, "when it was taken" },
	{ "VOLUMES", "volume_names", CELL_TEXT, 0, "its disks' volumes" },
	{ "PAUSE-MS", "pause_ms", CELL_TEXT, TABLE_RIGHT, "how long the guest stood still" },
	{ "MEMORY", "memory_bytes", CELL_SIZE, TABLE_RIGHT, "saved memory and device state" },
	{ "DISKS", "disks", CELL_TEXT, 0, "images, or snapshots (--disks-only)" },
	{ "DIR", "dir", CELL_TEXT, 0, "where it is" },
	{ NULL, NULL, CELL_TEXT, 0, NULL },
};

static void add_row(json_object *rows, const char *dir)
{
	struct vm_checkpoint c;
	char err[512], ms[32], names[1024] = "";

	if (vm_manifest_read(dir, &c, err, sizeof(err)) < 0)
		return;
	json_object *row = vm_checkpoint_json(&c);
	for (int i = 0; i < c.nvols; i++)
		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
			 i ? "," : "", c.vols[i].name);
	snprintf(ms, sizeof(ms), "%.1f", c.pause_ms);
	json_object_object_add(row, "volume_names", json_object_new_string(names));
	json_object_object_add(row, "pause_ms", json_object_new_string(ms));
	json_object_object_add(row, "disks",
			       json_object_new_string(c.disks_only ? "snapshots" : "images"));
	json_object_object_add(row, "dir", json_object_new_string(dir));
	json_object_array_add(rows, row);
	vm_checkpoint_free(&c);
}

static int vm_list(const struct cli *cli, int argc, char **argv)
{
	static const struct cmd_spec spec = {
		.cmd = "vm list", .positional = "DIR...", .min_pos = 1, .max_pos = 64,
		.summary = "Lists the checkpoints in each DIR (a checkpoint directory, or one\n"
			   "that holds checkpoint directories).",
		.opts = { TABLE_OPT_SPECS },
	};
	struct parsed_args p;
	struct table_style st;
	json_object *rows = json_object_new_array();
	char path[PATH_MAX], err[512];
	int r = args_parse(&spec, argc, argv, &p);

	if (!r)
		r = table_style_parse(&spec, &p, vm_cols, &st);
	if (r) {
		json_object_put(rows);
		return r < 0 ? EXIT_OK : r;
	}
	for (int i = 0; i < p.npos; i++) {
		struct vm_checkpoint c;
		r = vm_manifest_read(p.pos[i], &c, err, sizeof(err));
		if (r == 0) {
			vm_checkpoint_free(&c);
			add_row(rows, p.pos[i]);
			continue;
		}
		if (r != -ENOENT) {
			fprintf(stderr, "hotsnap vm list: %s\n", err);
			continue;
		}
		DIR *dir = opendir(p.pos[i]);
		if (!dir) {
			fprintf(stderr, "hotsnap vm list: cannot read %s: %s\n", p.pos[i],
				strerror(errno));
			continue;
		}
		struct dirent **names;
		closedir(dir);
		int n = scandir(p.pos[i], &names, NULL, alphasort);
		for (int k = 0; k < n; k++) {
			if (names[k]->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", p.pos[i], names[k]->d_name);
				add_row(rows, path);
			}
			free(names[k]);
		}
		if (n >= 0)
			free(names);
	}
	if (cli->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "checkpoints", rows);
		cli_print_json(o);
		json_object_put(o);
		return EXIT_OK;
	}
	r = table_print(&st, rows);
	json_object_put(rows);
	return r ? EXIT_ERROR : EXIT_OK;
}

int cli_vm(const struct cli *cli, int argc, char **argv)
{
	static const char help[] =
		"usage: hotsnap vm checkpoint|restore|list ...\n"
		"  checkpoint VOLUME... --qmp SOCKET -o DIR [--name NAME] [--disks-only]\n"
		"             [--timeout SECONDS]    disks and memory of a QEMU guest at one instant\n"
		"  restore DIR                        the guest back, going on from that instant\n"
		"  list DIR... [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n";
	static const struct cli_sub subs[] = {
		{ "checkpoint", vm_checkpoint },
		{ "restore", vm_restore_cmd },
		{ "list", vm_list },
		{ NULL, NULL },
	};
	return cli_group(cli, "vm", help, subs, argc, argv);
}
