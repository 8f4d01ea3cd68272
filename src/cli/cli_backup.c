/* cli_backup.c - hotsnap backup SOURCE -o FILE.
 *
 * The image is written to an unnamed file in the target's directory
 * (O_TMPFILE) and given its name only when the daemon reports success, so an
 * interrupted or failed backup never leaves a half image under the final
 * name; if the CLI is killed, the unnamed file simply vanishes.  Where
 * O_TMPFILE is not supported, a hidden temporary name is used and removed on
 * failure or on SIGINT/SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "pull/pull.h"
#include "cli/commands.h"
#include "cli/progress.h"

static const struct cmd_spec backup_spec = {
	.cmd = "backup",
	.positional = "SOURCE",
	.min_pos = 1,
	.max_pos = 1,
	.summary =
		"Writes an image of SOURCE to FILE: raw (sparse where the source reads zeros)\n"
		"or qcow2 (compressed with zstd unless --compress none).  SOURCE is\n"
		"VOLUME@SNAPSHOT, or a VOLUME: then the backup takes its own frozen snapshot,\n"
		"consumes it as it reads (so the diff store shrinks as it goes) and deletes it\n"
		"at the end.  -o - streams a raw image to standard output.  The backup yields\n"
		"to the volume's own I/O.\n"
		"--incremental PARENT (a qcow2 image hotsnap wrote of the same volume) writes\n"
		"only what changed since PARENT's instant, as a qcow2 whose backing file is\n"
		"PARENT.  Every backup leaves a bookmark VOLUME#SNAPSHOT for the next one.\n"
		"SOURCE may be an NBD URI of another host's daemon (a backup server pulls):\n"
		"nbds://HOST[:PORT]/VOLUME@SNAPSHOT?tls-psk-file=FILE (or tls-certificates=DIR),\n"
		"nbd://, nbd+unix://; it is read from here with libnbd over several\n"
		"connections, no local daemon needed; --consume releases on the remote what\n"
		"was written; --incremental PARENT (an earlier pull) reads only what changed\n"
		"since the bookmark of PARENT's snapshot, which the remote must keep\n"
		"(`hotsnap --remote HOST:PORT ... bookmark create VOLUME@SNAPSHOT`).",
	.opts = {
		{ "output", OPT_PATH, 'o', "FILE", "the image to write (required)" },
		{ "no-progress", OPT_FLAG, 0, "", "no progress bar, even on a terminal" },
		{ "consume", OPT_FLAG, 0, "", "release the snapshot's data as it is read (VOLUME@SNAPSHOT)" },
		{ "all-blocks", OPT_FLAG, 0, "", "read every block, not only those in use" },
		{ "rate", OPT_NUMBER, 0, "MB/s", "read at most this many MB (10^6 bytes) a second" },
		{ "no-yield", OPT_FLAG, 0, "", "full speed: do not step aside for the volume's own I/O" },
		{ "format", OPT_STRING, 0, "FORMAT", "raw (default) or qcow2" },
		{ "compress", OPT_STRING, 0, "zstd|zlib|none", "qcow2 compression (default zstd)" },
		{ "incremental", OPT_PATH, 0, "PARENT", "only the changes since PARENT's instant (qcow2)" },
	},
};

static char named_tmp[PATH_MAX]; /* removed on a signal, when used */

static void remove_tmp_and_exit(int sig)
{
	if (named_tmp[0])
		unlink(named_tmp);
	_exit(128 + sig);
}

/* Opens the unnamed (or hidden) temporary file next to final. */
static int open_temp(const char *final, char *dir, size_t dirlen)
{
	char copy[PATH_MAX];
	int fd;

	snprintf(copy, sizeof(copy), "%s", final);
	snprintf(dir, dirlen, "%s", dirname(copy));
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd < 0 ? -errno : fd;
	snprintf(copy, sizeof(copy), "%s", final);
	snprintf(named_tmp, sizeof(named_tmp), "%s/.%s.hotsnap-XXXXXX", dir, basename(copy));
	fd = mkstemp(named_tmp);
	if (fd < 0) {
		named_tmp[0] = '\0';
		return -errno;
	}
	signal(SIGINT, remove_tmp_and_exit);
	signal(SIGTERM, remove_tmp_and_exit);
	signal(SIGHUP, remove_tmp_and_exit);
	return fd;
}

/* Gives the finished temporary file its final name, atomically. */
static int publish(int fd, const char *final, const char *dir)
{
	char proc[64], tmp[PATH_MAX];
	int dfd;

	if (named_tmp[0]) {
		if (rename(named_tmp, final) < 0)
			return -errno;
		named_tmp[0] = '\0';
	} else {
		/* linkat cannot replace a file: link to a private name, rename over */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		snprintf(tmp, sizeof(tmp), "%s/.hotsnap-backup-%d", dir, (int)getpid());
		unlink(tmp);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0)
			return -errno;
		if (rename(tmp, final) < 0) {
			int r = -errno;
			unlink(tmp);
			return r;
		}
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* What a reader needs: what was written where, how much was read and how
 * fast, how big the image is, and the bookmark for the next incremental. */
static void print_summary(FILE *f, json_object *res, const char *output)
{
	char a[32], b[32], c[32], d[32];
	const char *inc = cli_get_str(res, "incremental");
	double secs = cli_get_double(res, "seconds");

	fprintf(f, "%s -> %s: %s", cli_get_str(res, "source"), output, cli_get_str(res, "format"));
	if (cli_get_str(res, "compress"))
		fprintf(f, " (%s)", cli_get_str(res, "compress"));
	if (inc)
		fprintf(f, " over %s, %s changed%s", cli_get_str(res, "backing_file"),
			cli_size((uint64_t)cli_get_int(res, "changed_bytes"), a, sizeof(a)),
			cli_get_bool(res, "changed_exact") ? "" : " (in whole regions: the daemon "
								  "restarted since)");
	fprintf(f, ", volume %s\n", cli_size((uint64_t)cli_get_int(res, "size_bytes"), a, sizeof(a)));
	fprintf(f, "  read %s in %.2f s (%.0f MB/s), %s skipped as free or zero",
		cli_size((uint64_t)cli_get_int(res, "bytes_read"), a, sizeof(a)), secs,
		cli_get_double(res, "read_mb_per_s"),
		cli_size((uint64_t)cli_get_int(res, "bytes_skipped"), b, sizeof(b)));
	if (cli_get_int(res, "image_bytes"))
		fprintf(f, "; image %s on disk",
			cli_size((uint64_t)cli_get_int(res, "image_bytes"), c, sizeof(c)));
	fprintf(f, "\n  copied on write %s, diff store peak %s\n",
		cli_size((uint64_t)cli_get_int(res, "cow_bytes"), c, sizeof(c)),
		cli_size((uint64_t)cli_get_int(res, "diff_peak_bytes"), d, sizeof(d)));
	if (cli_get_str(res, "consume_refused"))
		fprintf(f, "  not consumed: %s; the snapshot keeps its data (consume it once it is "
			   "detached and no one else reads it, or delete it)\n",
			cli_get_str(res, "consume_refused"));
	if (cli_get_str(res, "bookmark"))
		fprintf(f, "  bookmark %s: the next --incremental can start from this image\n",
			cli_get_str(res, "bookmark"));
	else if (cli_get_str(res, "bookmark_problem"))
		fprintf(f, "  no bookmark: %s\n", cli_get_str(res, "bookmark_problem"));
}

struct pull_progress {
	struct progress *pr;
	struct timespec t0;
};

static void pull_tick(void *arg, uint64_t done, uint64_t size)
{
	struct pull_progress *pp = arg;
	json_object *ev = json_object_new_object();
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	json_object_object_add(ev, "position", json_object_new_int64((int64_t)done));
	json_object_object_add(ev, "size", json_object_new_int64((int64_t)size));
	json_object_object_add(ev, "seconds",
			       json_object_new_double((double)(now.tv_sec - pp->t0.tv_sec) +
						      (double)(now.tv_nsec - pp->t0.tv_nsec) / 1e9));
	progress_draw(pp->pr, ev);
	json_object_put(ev);
}

/* A backup of a remote export (pull.h), here, without a local daemon; its
 * result in the shape a summary prints.  The exit status. */
static int pull_backup(const char *uri, const char *output, int fd,
		       const char *format, const char *compress, bool consume, const char *parent,
		       struct progress *pr, json_object **res)
{
	struct pull_progress pp = { .pr = pr };
	struct pull_job job = { .uri = uri, .output = output, .fd = fd, .consume = consume,
				.parent = parent, .tick = pr->show ? pull_tick : NULL,
				.tick_arg = &pp };

	clock_gettime(CLOCK_MONOTONIC, &pp.t0);
	*res = NULL;
	image_format_parse(format, &job.format);
	job.compress = job.format == IMAGE_QCOW2 ? IMAGE_COMPRESS_ZSTD : IMAGE_COMPRESS_NONE;
	if (compress)
		image_compress_parse(compress, &job.compress);
	if (pull_run(&job) < 0) {
		progress_end(pr);
		fprintf(stderr, "hotsnap: backup of %s failed: %s\n", uri, job.error);
		return EXIT_ERROR;
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "source", json_object_new_string(uri));
	json_object_object_add(o, "output", json_object_new_string(output));
	json_object_object_add(o, "format", json_object_new_string(format));
	if (job.format == IMAGE_QCOW2)
		json_object_object_add(o, "compress",
				       json_object_new_string(image_compress_name(job.compress)));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)job.size));
	json_object_object_add(o, "bytes_read", json_object_new_int64((int64_t)job.bytes_read));
	json_object_object_add(o, "bytes_skipped", json_object_new_int64((int64_t)job.bytes_zero));
	json_object_object_add(o, "image_bytes", json_object_new_int64((int64_t)job.image_bytes));
	json_object_object_add(o, "seconds", json_object_new_double(job.seconds));
	json_object_object_add(o, "read_mb_per_s",
			       json_object_new_double(job.seconds > 0 ? (double)job.bytes_read /
									  job.seconds / 1e6
								      : 0));
	json_object_object_add(o, "connections", json_object_new_int((int)job.connections));
	json_object_object_add(o, "consumed", json_object_new_boolean(consume));
	if (parent) {
		json_object_object_add(o, "incremental", json_object_new_string(parent));
		json_object_object_add(o, "since", json_object_new_string(job.since));
		json_object_object_add(o, "unchanged_bytes",
				       json_object_new_int64((int64_t)job.bytes_unchanged));
	}
	*res = o;
	return EXIT_OK;
}

static void print_pull_summary(FILE *f, json_object *res, const char *output)
{
	char a[32], b[32], c[32];

	fprintf(f, "%s -> %s: %s", cli_get_str(res, "source"), output, cli_get_str(res, "format"));
	if (cli_get_str(res, "compress"))
		fprintf(f, " (%s)", cli_get_str(res, "compress"));
	if (cli_get_str(res, "incremental"))
		fprintf(f, " over %s (changed since %s; %s unchanged, not read)",
			cli_get_str(res, "incremental"), cli_get_str(res, "since"),
			cli_size((uint64_t)cli_get_int(res, "unchanged_bytes"), c, sizeof(c)));
	fprintf(f, ", volume %s, over %lld connection%s%s\n",
		cli_size((uint64_t)cli_get_int(res, "size_bytes"), a, sizeof(a)),
		(long long)cli_get_int(res, "connections"),
		cli_get_int(res, "connections") == 1 ? "" : "s",
		cli_get_bool(res, "consumed") ? ", consumed as read" : "");
	fprintf(f, "  read %s in %.2f s (%.0f MB/s), %s skipped as holes or zeros; image %s on "
		   "disk\n",
		cli_size((uint64_t)cli_get_int(res, "bytes_read"), a, sizeof(a)),
		cli_get_double(res, "seconds"), cli_get_double(res, "read_mb_per_s"),
		cli_size((uint64_t)cli_get_int(res, "bytes_skipped"), b, sizeof(b)),
		cli_size((uint64_t)cli_get_int(res, "image_bytes"), c, sizeof(c)));
}

int cli_backup(const struct cli *cli, int argc, char **argv)
{
	struct parsed_args p;
	struct progress pr = { 0 };
	json_object *args, *res;
	const struct opt_value *out, *v;
	char dir[PATH_MAX];
	struct stat st;
	bool direct = false;
	int fd, r;

	r = args_parse(&backup_spec, argc, argv, &p);
	if (r)
		return r < 0 ? EXIT_OK : r;
	out = args_get(&backup_spec, &p, "output");
	if (!out->set)
		return cli_usage_error("backup", "-o FILE is required");
	bool remote = pull_is_uri(p.pos[0]);
	if (remote) {
		static const char *const local_only[] = { "all-blocks", "rate", "no-yield" };
		for (size_t k = 0; k < sizeof(local_only) / sizeof(local_only[0]); k++)
			if (args_get(&backup_spec, &p, local_only[k])->set)
				return cli_usage_error("backup", "--%s is for a local source; an NBD "
								 "URI is read as its server serves it",
						       local_only[k]);
		if (cli->remote)
			return cli_usage_error("backup", "an NBD URI is read from here: drop --remote");
	} else if (strchr(p.pos[0], '@') ? (r = cli_check_snapshot_name("backup", p.pos[0]))
					 : (r = cli_check_volume_name("backup", p.pos[0]))) {
		return r;
	}
	if (args_get(&backup_spec, &p, "consume")->set && !strchr(p.pos[0], '@') && !remote)
		return cli_usage_error("backup",
				       "--consume is for VOLUME@SNAPSHOT (a backup of a VOLUME always "
				       "consumes its own snapshot)");
	const char *format = "raw";
	if ((v = args_get(&backup_spec, &p, "format"))->set) {
		if (strcmp(v->str, "raw") != 0 && strcmp(v->str, "qcow2") != 0)
			return cli_usage_error("backup", "--format '%s' is not raw or qcow2", v->str);
		format = v->str;
	}
	const struct opt_value *compress = args_get(&backup_spec, &p, "compress");
	if (compress->set) {
		if (strcmp(compress->str, "zstd") != 0 && strcmp(compress->str, "zlib") != 0 &&
		    strcmp(compress->str, "none") != 0)
			return cli_usage_error("backup", "--compress '%s' is not zstd, zlib or none",
					       compress->str);
		if (strcmp(format, "qcow2") != 0 && strcmp(compress->str, "none") != 0)
			return cli_usage_error("backup", "--compress needs --format qcow2 (a raw image "
							 "is not compressed; pipe -o - into zstd)");
	}
	bool to_stdout = strcmp(out->str, "-") == 0;
	const struct opt_value *parent = args_get(&backup_spec, &p, "incremental");
	if (parent->set && !args_get(&backup_spec, &p, "format")->set)
		format = "qcow2"; /* an incremental is a qcow2 over its parent */
	if (parent->set && strcmp(format, "qcow2") != 0)
		return cli_usage_error("backup", "--incremental writes qcow2 (its parent is the "
						 "backing file); not --format %s", format);

	if (to_stdout) {
		/* a stream: raw, in order, straight to our standard output */
		if (strcmp(format, "raw") != 0)
			return cli_usage_error("backup", "-o - streams a raw image; qcow2 needs a file");
		if (isatty(STDOUT_FILENO))
			return cli_usage_error("backup", "-o - would write the image to a terminal; "
							 "redirect or pipe it");
		fd = dup(STDOUT_FILENO);
		direct = true;
		if (fd < 0) {
			fprintf(stderr, "hotsnap: cannot use standard output: %s\n", strerror(errno));
			return EXIT_ERROR;
		}
	} else if (stat(out->str, &st) == 0 && S_ISBLK(st.st_mode)) {
		/* a block device is written in place; anything else through a temp file */
		fd = open(out->str, O_WRONLY | O_CLOEXEC);
		direct = true;
		if (fd < 0) {
			fprintf(stderr, "hotsnap: cannot open %s: %s\n", out->str, strerror(errno));
			return EXIT_ERROR;
		}
	} else {
		fd = open_temp(out->str, dir, sizeof(dir));
		if (fd < 0) {
			fprintf(stderr, "hotsnap: cannot create the image in %s: %s\n", dir,
				strerror(-fd));
			return EXIT_ERROR;
		}
	}
	if (remote) {
		pr.show = !args_get(&backup_spec, &p, "no-progress")->set && isatty(STDERR_FILENO);
		r = pull_backup(p.pos[0], out->str, fd, format, compress->set ? compress->str : NULL,
				args_get(&backup_spec, &p, "consume")->set,
				parent->set ? parent->str : NULL, &pr, &res);
		goto done;
	}
	args = json_object_new_object();
	json_object_object_add(args, "source", json_object_new_string(p.pos[0]));
	json_object_object_add(args, "output",
			       json_object_new_string(to_stdout ? "(standard output)" : out->str));
	json_object_object_add(args, "format", json_object_new_string(format));
	if (compress->set)
		json_object_object_add(args, "compress", json_object_new_string(compress->str));
	if (parent->set)
		json_object_object_add(args, "incremental", json_object_new_string(parent->str));
	json_object_object_add(args, "consume",
			       json_object_new_boolean(args_get(&backup_spec, &p, "consume")->set));
	json_object_object_add(args, "all_blocks",
			       json_object_new_boolean(args_get(&backup_spec, &p, "all-blocks")->set));
	if ((v = args_get(&backup_spec, &p, "rate"))->set)
		json_object_object_add(args, "rate", json_object_new_int64((int64_t)(v->num * 1000000)));
	json_object_object_add(args, "yield",
			       json_object_new_boolean(!args_get(&backup_spec, &p, "no-yield")->set));
	pr.show = !args_get(&backup_spec, &p, "no-progress")->set && isatty(STDERR_FILENO);
	json_object_object_add(args, "progress", json_object_new_boolean(pr.show));

	r = cli_call(cli, "backup", args, fd, progress_draw, &pr, &res);
done:
	progress_end(&pr);
	if (r == EXIT_OK && !direct) {
		int pr_err = publish(fd, out->str, dir);
		if (pr_err < 0) {
			fprintf(stderr, "hotsnap: the backup finished but naming it %s failed: %s\n",
				out->str, strerror(-pr_err));
			r = EXIT_ERROR;
		}
	}
	close(fd);
	if (named_tmp[0])
		unlink(named_tmp);
	if (r != EXIT_OK) {
		json_object_put(res);
		return r;
	}
	if (cli->json && !to_stdout) {
		cli_print_json(res);
	} else if (remote) {
		print_pull_summary(to_stdout ? stderr : stdout, res, out->str);
	} else {
		/* with the image on standard output, the summary goes to stderr */
		print_summary(to_stdout ? stderr : stdout, res, out->str);
	}
	json_object_put(res);
	return EXIT_OK;
}
