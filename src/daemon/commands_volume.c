/* commands_volume.c - volume create, attach, detach, list, remove. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/units.h"
#include "daemon/commands.h"
#include "daemon/devlinks.h"
#include "daemon/events.h"
#include "daemon/freeze.h"
#include "engine/tracker.h"
#include "fuse/fuse_front.h"

#define DEFAULT_CHUNK 4096
#define DEFAULT_COW_BUFFER (UINT64_C(8) << 20)

/* Size of a backing file or device, or -errno. */
static int backing_size(const char *path, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (stat(path, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (!S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "backing %s is neither a regular file nor a block device",
			 path);
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, size) < 0) {
		int r = -errno;
		snprintf(err, errlen, "cannot read the size of %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	close(fd);
	return 0;
}

/* 10% of the volume, but at least 1 GiB (or the whole of a smaller volume):
 * a small volume gets room for a realistic burst of rewrites, a big one
 * keeps the classic 10%. */
static uint64_t default_diff_limit(const struct daemon *d, uint64_t size, uint64_t chunk)
{
	if (d->defaults.diff_limit)
		return HS_MAX(d->defaults.diff_limit, chunk);
	if (d->defaults.diff_limit_pct)
		return HS_MAX((uint64_t)((unsigned __int128)size * d->defaults.diff_limit_pct / 100),
			      16 * chunk);
	uint64_t floor = HS_MIN_U64(size, UINT64_C(1) << 30);
	return HS_MAX(HS_MAX(size / 10, floor), 16 * chunk);
}

int volume_defaults_option(struct daemon *d, const char *name, const char *value, char *err,
			   size_t errlen)
{
	struct volume_defaults *vd = &d->defaults;
	uint64_t v = 0;
	size_t len = strlen(value);

	if (strcmp(name, "default-diff-dir") == 0) {
		if (value[0] != '/' || len >= sizeof(d->default_diff_dir)) {
			snprintf(err, errlen, "--%s must be an absolute path", name);
			return -1;
		}
		snprintf(d->default_diff_dir, sizeof(d->default_diff_dir), "%s", value);
		return 0;
	}
	if (strcmp(name, "default-cache") == 0) {
		if (strcmp(value, "auto") && strcmp(value, "writeback") && strcmp(value, "none")) {
			snprintf(err, errlen, "--%s '%.32s' is not auto, writeback or none", name,
				 value);
			return -1;
		}
		snprintf(vd->cache, sizeof(vd->cache), "%s", value);
		return 0;
	}
	if (strcmp(name, "default-diff-limit") == 0 && len > 1 && value[len - 1] == '%') {
		char *end;
		unsigned long pct = strtoul(value, &end, 10);
		if (end != value + len - 1 || pct < 1 || pct > 100) {
			snprintf(err, errlen, "--%s '%s': a share is 1%% to 100%% of the volume", name,
				 value);
			return -1;
		}
		vd->diff_limit_pct = (unsigned)pct;
		vd->diff_limit = 0;
		return 0;
	}
	if (units_parse_size(value, &v) < 0) {
		snprintf(err, errlen, "--%s '%s' is not a size (such as 64K, 8M or 1.5G)", name,
			 value);
		return -1;
	}
	if (strcmp(name, "default-chunk-size") == 0) {
		if (!hs_is_pow2(v) || v < (1u << ENGINE_MIN_CHUNK_SHIFT) ||
		    v > (1u << ENGINE_MAX_CHUNK_SHIFT)) {
			snprintf(err, errlen, "--%s is not a power of two from 4 KiB to 1 MiB", name);
			return -1;
		}
		vd->chunk_size = v;
	} else if (strcmp(name, "default-cow-buffer") == 0) {
		if (v < 2 * (1u << ENGINE_MIN_CHUNK_SHIFT) || v > (UINT64_C(64) << 30)) {
			snprintf(err, errlen, "--%s is from 8 KiB to 64 GiB", name);
			return -1;
		}
		vd->cow_buffer = v;
	} else if (strcmp(name, "default-diff-limit") == 0) {
		if (v < (1u << ENGINE_MIN_CHUNK_SHIFT)) {
			snprintf(err, errlen, "--%s must hold at least one chunk (4 KiB)", name);
			return -1;
		}
		vd->diff_limit = v;
		vd->diff_limit_pct = 0;
	} else {
		snprintf(err, errlen, "--%s is not a volume default", name);
		return -1;
	}
	return 0;
}

static uint64_t default_chunk(const struct daemon *d)
{
	return d->defaults.chunk_size ? d->defaults.chunk_size : DEFAULT_CHUNK;
}

static uint64_t default_cow_buffer(const struct daemon *d)
{
	return d->defaults.cow_buffer ? d->defaults.cow_buffer : DEFAULT_COW_BUFFER;
}

/* Refuses (true, with err) a path in a file system this daemon serves
 * (registry_on_own_volume says why that would hang); a path that does not
 * exist yet is judged by its directory. */
static bool refuse_own_volume(struct daemon *d, const char *what, const char *path, char *err,
			      size_t errlen)
{
	char name[PATH_MAX], dir[PATH_MAX];
	const char *probe = path;

	if (access(path, F_OK) < 0) {
		snprintf(dir, sizeof(dir), "%s", path);
		char *slash = strrchr(dir, '/');
		if (slash)
			*(slash == dir ? slash + 1 : slash) = '\0';
		probe = dir;
	}
	if (!registry_on_own_volume(d, probe, name, sizeof(name)))
		return false;
	snprintf(err, errlen,
		 "%s %s lies on %s, which this daemon serves itself: its writes would wait for "
		 "the FUSE workers they hold up; put it on a file system outside hotsnap",
		 what, path, name);
	return true;
}

static enum cmd_status check_config(struct daemon *d, struct vol_config *c, char *err,
				    size_t errlen)
{
	char buf[32];

	if (!hs_is_pow2(c->chunk_size) || c->chunk_size < (1u << ENGINE_MIN_CHUNK_SHIFT) ||
	    c->chunk_size > (1u << ENGINE_MAX_CHUNK_SHIFT)) {
		snprintf(err, errlen,
			 "--chunk-size %llu is not a power of two from 4 KiB to 1 MiB",
			 (unsigned long long)c->chunk_size);
		return CMD_USAGE;
	}
	if (c->track_granularity != 0 &&
	    (!hs_is_pow2(c->track_granularity) || c->track_granularity < c->chunk_size ||
	     c->track_granularity > (UINT64_C(1) << 30))) {
		snprintf(err, errlen,
			 "--track-granularity %llu is not a power of two from the chunk size (%s) "
			 "to 1 GiB",
			 (unsigned long long)c->track_granularity,
			 units_format_size(c->chunk_size, buf, sizeof(buf)));
		return CMD_USAGE;
	}
	if (c->cow_buffer < 2 * c->chunk_size) {
		snprintf(err, errlen, "--cow-buffer must hold at least two chunks (%s)",
			 units_format_size(2 * c->chunk_size, buf, sizeof(buf)));
		return CMD_USAGE;
	}
	if (c->cow_buffer > (UINT64_C(64) << 30)) {
		snprintf(err, errlen, "--cow-buffer is at most 64 GiB");
		return CMD_USAGE;
	}
	if (c->diff_limit < c->chunk_size) {
		snprintf(err, errlen, "--diff-limit must hold at least one chunk (%s)",
			 units_format_size(c->chunk_size, buf, sizeof(buf)));
		return CMD_USAGE;
	}
	if (c->diff_dir[0] != '/') {
		snprintf(err, errlen, "--diff-dir must be an absolute path");
		return CMD_USAGE;
	}
	if (strcmp(c->diff_dir, d->default_diff_dir) == 0)
		(void)mkdir(c->diff_dir, 0700);
	if (refuse_own_volume(d, "--diff-dir", c->diff_dir, err, errlen))
		return CMD_USAGE;
	int fd = open(c->diff_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create diff files in %s: %s", c->diff_dir,
			 strerror(errno));
		return CMD_ERROR;
	}
	close(fd);
	return CMD_OK;
}

void volume_config_defaults(struct daemon *d, struct vol_config *c, const char *name,
			    const char *backing)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->backing, sizeof(c->backing), "%s", backing);
	c->chunk_size = default_chunk(d);
	c->cow_buffer = default_cow_buffer(d);
	snprintf(c->diff_dir, sizeof(c->diff_dir), "%s", d->default_diff_dir);
	c->next_snapshot = 1;
	c->track_granularity = HS_MAX(c->chunk_size, UINT64_C(1) << TRACKER_DEFAULT_REGION_SHIFT);
	snprintf(c->cache, sizeof(c->cache), "%s",
		 d->defaults.cache[0] ? d->defaults.cache : "auto");
}

static enum cmd_status cmd_volume_create(struct daemon *d, const struct ctl_request *req,
					 struct ctl_session *sess, json_object **result,
					 char *err, size_t errlen)
{
	struct vol_config c;
	const char *why;
	enum cmd_status st;

	if ((why = names_check(ctl_str(req, "name")))) {
		snprintf(err, errlen, "bad volume name '%.64s': %s", ctl_str(req, "name"), why);
		return CMD_USAGE;
	}
	if (strlen(ctl_str(req, "backing")) >= sizeof(c.backing) ||
	    ctl_str(req, "backing")[0] != '/') {
		snprintf(err, errlen, "--backing must be an absolute path");
		return CMD_USAGE;
	}
	volume_config_defaults(d, &c, ctl_str(req, "name"), ctl_str(req, "backing"));
	c.chunk_size = ctl_u64(req, "chunk_size", default_chunk(d));
	c.cow_buffer = ctl_u64(req, "cow_buffer", default_cow_buffer(d));
	const char *dd = ctl_str(req, "diff_dir");
	if (dd && strlen(dd) >= sizeof(c.diff_dir)) {
		snprintf(err, errlen, "--diff-dir is too long");
		return CMD_USAGE;
	}
	if (dd)
		snprintf(c.diff_dir, sizeof(c.diff_dir), "%s", dd);
	c.track_granularity = ctl_u64(req, "track_granularity",
				      HS_MAX(c.chunk_size, UINT64_C(1) << TRACKER_DEFAULT_REGION_SHIFT));
	if (ctl_has(req, "track_granularity") && c.track_granularity == 0 &&
	    !ctl_bool(req, "no_tracking", false)) {
		snprintf(err, errlen, "--track-granularity must be at least the chunk size "
				      "(--no-tracking turns tracking off)");
		return CMD_USAGE;
	}
	if (ctl_bool(req, "no_tracking", false))
		c.track_granularity = 0;
	const char *cache = ctl_str(req, "cache");
	if (cache && strcmp(cache, "none") != 0 && strcmp(cache, "writeback") != 0 &&
	    strcmp(cache, "auto") != 0) {
		snprintf(err, errlen, "--cache '%.32s' is not auto, writeback or none", cache);
		return CMD_USAGE;
	}
	if (cache)
		snprintf(c.cache, sizeof(c.cache), "%s", cache);

	c.diff_limit = ctl_u64(req, "diff_limit", 0);
	if (ctl_has(req, "diff_limit") && c.diff_limit < c.chunk_size) {
		char buf[32];
		snprintf(err, errlen, "--diff-limit must hold at least one chunk (%s)",
			 units_format_size(c.chunk_size, buf, sizeof(buf)));
		return CMD_USAGE;
	}
	c.size = ctl_u64(req, "size", 0);
	struct vol_entry *ve;
	st = volume_create_locked(d, &c, ctl_has(req, "size"), &ve, NULL, err, errlen);
	if (st != CMD_OK)
		return st;
	*result = status_volume_json(d, ve);
	return CMD_OK;
}

/* Checks and creates a volume from c (size 0 unless size_given: the
 * backing's; diff_limit 0: the default); the backing file is created when
 * missing and a size is given.  Under d->mu. */
enum cmd_status volume_create_locked(struct daemon *d, struct vol_config *c, bool size_given,
				     struct vol_entry **vep, bool *created_backing, char *err,
				     size_t errlen)
{
	bool created = false;
	uint64_t have;
	enum cmd_status st;
	int r;

	if (registry_volume(d, c->name)) {
		snprintf(err, errlen, "volume '%s' exists already", c->name);
		return CMD_ERROR;
	}
	/* The same file under another path or a symlink is the same backing:
	 * two volumes on one file would bypass each other's copy-on-write. */
	struct stat bst;
	if (stat(c->backing, &bst) == 0) {
		struct vol_entry *other = registry_volume_on(d, &bst);
		char canon[PATH_MAX];
		if (registry_on_fuse(d, &bst)) {
			snprintf(err, errlen,
				 "--backing %s cannot be a file of hotsnap's own FUSE directory",
				 c->backing);
			return CMD_USAGE;
		}
		if (other) {
			snprintf(err, errlen, "%s is already the backing of volume '%s'", c->backing,
				 other->cfg.name);
			return CMD_ERROR;
		}
		if (realpath(c->backing, canon) && strlen(canon) < sizeof(c->backing))
			strcpy(c->backing, canon); /* kept canonical in volumes.json */
	}
	if (refuse_own_volume(d, "--backing", c->backing, err, errlen))
		return CMD_USAGE;
	r = backing_size(c->backing, &have, err, errlen);
	if (r == -ENOENT) {
		if (!size_given) {
			snprintf(err, errlen,
				 "backing file %s does not exist (give --size to create it)",
				 c->backing);
			return CMD_ERROR;
		}
		if (c->size == 0 || c->size % 512) {
			snprintf(err, errlen, "--size must be a positive multiple of 512 bytes");
			return CMD_USAGE;
		}
		int fd = open(c->backing, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			snprintf(err, errlen, "cannot create backing file %s: %s", c->backing,
				 strerror(errno));
			return CMD_ERROR;
		}
		if (ftruncate(fd, (off_t)c->size) < 0) {
			snprintf(err, errlen, "cannot size backing file %s: %s", c->backing,
				 strerror(errno));
			close(fd);
			unlink(c->backing);
			return CMD_ERROR;
		}
		close(fd);
		created = true;
	} else if (r < 0) {
		if (!err[0])
			snprintf(err, errlen, "cannot use backing %s: %s", c->backing, strerror(-r));
		return CMD_ERROR;
	} else {
		if (!size_given)
			c->size = have;
		if (c->size > have) {
			char a[32], b[32];
			snprintf(err, errlen, "--size %s is larger than backing %s (%s)",
				 units_format_size(c->size, a, sizeof(a)), c->backing,
				 units_format_size(have, b, sizeof(b)));
			return CMD_ERROR;
		}
		if (c->size == 0 || c->size % 512) {
			snprintf(err, errlen,
				 "the volume size (%llu bytes) must be a positive multiple of 512; "
				 "give --size",
				 (unsigned long long)c->size);
			return CMD_USAGE;
		}
	}
	if (!c->diff_limit)
		c->diff_limit = default_diff_limit(d, c->size, c->chunk_size);
	st = check_config(d, c, err, errlen);
	if (st != CMD_OK)
		goto undo;

	struct vol_entry *ve = calloc(1, sizeof(*ve));
	if (!ve) {
		snprintf(err, errlen, "out of memory");
		st = CMD_ERROR;
		goto undo;
	}
	ve->cfg = *c;
	tracking_forget(d, c->name); /* a map left by an earlier volume of this name */
	if (registry_open_volume(d, ve, err, errlen) < 0) {
		free(ve);
		st = CMD_ERROR;
		goto undo;
	}
	struct vol_entry **tail = &d->volumes;
	while (*tail)
		tail = &(*tail)->next;
	*tail = ve;
	if (persist_save_volumes(d) < 0) {
		*tail = NULL;
		registry_close_volume(d, ve);
		free(ve);
		snprintf(err, errlen, "cannot save volumes.json in %s", d->state_dir);
		st = CMD_ERROR;
		goto undo;
	}
	hs_info("volume %s created on %s (%llu bytes, %llu-byte chunks)", c->name, c->backing,
		(unsigned long long)c->size, (unsigned long long)c->chunk_size);
	if (created_backing)
		*created_backing = created;
	*vep = ve;
	return CMD_OK;

undo:
	if (created)
		unlink(c->backing);
	return st;
}

static struct vol_entry *open_volume_arg(struct daemon *d, const char *name, char *err,
					 size_t errlen, enum cmd_status *st)
{
	struct vol_entry *ve;
	const char *why = names_check(name);

	if (why) {
		snprintf(err, errlen, "bad volume name '%.64s': %s", name, why);
		*st = CMD_USAGE;
		return NULL;
	}
	ve = registry_volume(d, name);
	if (!ve) {
		snprintf(err, errlen, "volume '%s' does not exist (see 'hotsnap volume list')", name);
		*st = CMD_ERROR;
		return NULL;
	}
	return ve;
}

/* A volume that exists and is open; else an error. */
struct vol_entry *commands_usable_volume(struct daemon *d, const char *name, char *err,
					 size_t errlen, enum cmd_status *st)
{
	struct vol_entry *ve = open_volume_arg(d, name, err, errlen, st);

	if (ve && !ve->vol) {
		snprintf(err, errlen, "volume '%s' is not available: %s", name, ve->open_error);
		*st = CMD_ERROR;
		return NULL;
	}
	return ve;
}

static enum cmd_status cmd_volume_attach(struct daemon *d, const struct ctl_request *req,
					 struct ctl_session *sess, json_object **result,
					 char *err, size_t errlen)
{
	enum cmd_status st;
	struct vol_entry *ve = commands_usable_volume(d, ctl_str(req, "name"), err, errlen, &st);
	char path[PATH_MAX];
	const char *why = "";
	int r;

	if (!ve)
		return st;
	if (ve->busy) {
		snprintf(err, errlen, "volume '%s' is busy: %s is running; attach it afterwards",
			 ve->cfg.name, ve->busy);
		return CMD_ERROR;
	}
	registry_fuse_path(d, ve->cfg.name, path, sizeof(path));
	if (!loopdev_attached(&ve->loop)) {
		r = loopdev_attach(path, false, &ve->loop, &why);
		if (r < 0) {
			snprintf(err, errlen, "cannot attach volume '%s': %s: %s", ve->cfg.name, why,
				 strerror(-r));
			return CMD_ERROR;
		}
		json_object *ev = json_object_new_object();
		json_object_object_add(ev, "volume", json_object_new_string(ve->cfg.name));
		json_object_object_add(ev, "device", json_object_new_string(ve->loop.dev));
		events_post("volume.attached", ev, "volume %s attached as %s", ve->cfg.name,
			    ve->loop.dev);
	}
	devlinks_set(d, ve->cfg.name, ve->loop.dev);
	if (!ve->cfg.attached) {
		/* a restarted daemon attaches it again */
		ve->cfg.attached = true;
		persist_save_volumes(d);
	}
	char link[PATH_MAX];
	*result = json_object_new_object();
	json_object_object_add(*result, "device", json_object_new_string(ve->loop.dev));
	json_object_object_add(*result, "link", json_object_new_string(
			devlinks_path(d, ve->cfg.name, link, sizeof(link))));
	return CMD_OK;
}

/* Shared by volume and snapshot detach: refuses while mounted. */
enum cmd_status commands_detach_loop(struct daemon *d, struct loop_attachment *loop,
				     const char *what, const char *file, const char *link,
				     char *err, size_t errlen)
{
	char dev[LOOPDEV_NAME_MAX];
	struct frozen_fs fs;
	int opens, r;

	if (!loop->dev[0]) {
		snprintf(err, errlen, "%s is not attached", what);
		return CMD_ERROR;
	}
	snprintf(dev, sizeof(dev), "%s", loop->dev);
	opens = fuse_front_open_count(d->fuse, file);
	r = loopdev_detach(loop);
	if (r == -EBUSY) {
		if (freeze_find_mount(dev, &fs))
			snprintf(err, errlen, "%s is in use: %s is mounted at %s; unmount it first",
				 what, dev, fs.mountpoint);
		else
			snprintf(err, errlen, "%s is in use: something holds %s; close it first",
				 what, dev);
		return CMD_ERROR;
	}
	if (r == -ESTALE) {
		snprintf(err, errlen,
			 "%s was attached as %s, but that device is no longer on its file (detached "
			 "by someone else?); nothing was done",
			 what, dev);
		return CMD_ERROR;
	}
	if (r < 0) {
		snprintf(err, errlen, "cannot detach %s of %s: %s", dev, what, strerror(-r));
		return CMD_ERROR;
	}
	/* the kernel sends the file's release after LOOP_CLR_FD returns */
	if (opens > 0 && !fuse_front_wait_closes(d->fuse, file, opens, 5000))
		hs_warn("%s: %s let go of its file, but the release has not arrived after 5 s",
			what, dev);
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "what", json_object_new_string(what));
	json_object_object_add(ev, "device", json_object_new_string(dev));
	events_post("volume.detached", ev, "%s detached from %s", what, dev);
	if (link)
		devlinks_remove(d, link);
	return CMD_OK;
}

static enum cmd_status cmd_volume_detach(struct daemon *d, const struct ctl_request *req,
					 struct ctl_session *sess, json_object **result,
					 char *err, size_t errlen)
{
	enum cmd_status st;
	struct vol_entry *ve = open_volume_arg(d, ctl_str(req, "name"), err, errlen, &st);
	char what[HS_NAME_MAX + 16];

	if (!ve)
		return st;
	snprintf(what, sizeof(what), "volume '%s'", ve->cfg.name);
	st = commands_detach_loop(d, &ve->loop, what, ve->cfg.name, ve->cfg.name, err, errlen);
	if (st == CMD_OK && ve->cfg.attached) {
		ve->cfg.attached = false;
		persist_save_volumes(d);
	}
	return st;
}

static enum cmd_status cmd_volume_list(struct daemon *d, const struct ctl_request *req,
				       struct ctl_session *sess, json_object **result,
				       char *err, size_t errlen)
{
	json_object *arr = json_object_new_array();

	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next)
		json_object_array_add(arr, status_volume_json(d, ve));
	*result = json_object_new_object();
	json_object_object_add(*result, "volumes", arr);
	return CMD_OK;
}

static enum cmd_status cmd_volume_remove(struct daemon *d, const struct ctl_request *req,
					 struct ctl_session *sess, json_object **result,
					 char *err, size_t errlen)
{
	enum cmd_status st;
	struct vol_entry *ve = open_volume_arg(d, ctl_str(req, "name"), err, errlen, &st);
	char list[512] = "";

	if (!ve)
		return st;
	if (ve->loop.dev[0]) {
		snprintf(err, errlen,
			 "volume '%s' is attached as %s: detach it first (hotsnap volume detach %s)",
			 ve->cfg.name, ve->loop.dev, ve->cfg.name);
		return CMD_ERROR;
	}
	if (ve->snaps || ve->lost) {
		size_t n = 0;
		for (struct snap_entry *se = ve->snaps; se && n < sizeof(list) - 140; se = se->next)
			n += (size_t)snprintf(list + n, sizeof(list) - n, " %s@%s", ve->cfg.name,
					      se->name);
		for (struct lost_snap *ls = ve->lost; ls && n < sizeof(list) - 140; ls = ls->next)
			n += (size_t)snprintf(list + n, sizeof(list) - n, " %s@%s", ve->cfg.name,
					      ls->name);
		snprintf(err, errlen,
			 "volume '%s' has snapshots: delete them first (hotsnap snapshot delete%s)",
			 ve->cfg.name, list);
		return CMD_ERROR;
	}
	if (ve->backups || ve->busy) {
		snprintf(err, errlen, "%s of volume '%s' is running",
			 ve->busy ? ve->busy : "a backup", ve->cfg.name);
		return CMD_ERROR;
	}
	if (ve->vol && fuse_front_open_count(d->fuse, ve->cfg.name) > 0) {
		snprintf(err, errlen,
			 "the FUSE file of volume '%s' is open (a loop device or a program); "
			 "close it first",
			 ve->cfg.name);
		return CMD_ERROR;
	}
	registry_close_volume(d, ve);
	tracking_forget(d, ve->cfg.name);
	for (struct vol_entry **pp = &d->volumes; *pp; pp = &(*pp)->next)
		if (*pp == ve) {
			*pp = ve->next;
			break;
		}
	hs_info("volume %s removed (its backing file %s is left as it is)", ve->cfg.name,
		ve->cfg.backing);
	free(ve);
	persist_save_volumes(d);
	persist_save_snapshots(d);
	*result = json_object_new_object();
	return CMD_OK;
}

/* --diff-limit: at once, also under live snapshots; never below what is
 * held. */
static enum cmd_status set_diff_limit(struct vol_entry *ve, uint64_t lim, char *err,
				      size_t errlen)
{
	char a[32], b[32];
	int r;

	if (lim < ve->cfg.chunk_size) {
		snprintf(err, errlen, "--diff-limit must hold at least one chunk (%s)",
			 units_format_size(ve->cfg.chunk_size, a, sizeof(a)));
		return CMD_USAGE;
	}
	r = ve->vol ? volume_set_diff_limit(ve->vol, lim) : 0;
	if (r == -EBUSY) {
		struct volume_stats vs;
		volume_get_stats(ve->vol, &vs);
		snprintf(err, errlen,
			 "the diff store of volume '%s' holds %s now; a limit of %s would be below "
			 "it: back up (--consume) or delete snapshots first; nothing was changed",
			 ve->cfg.name, units_format_size(vs.diff_bytes, a, sizeof(a)),
			 units_format_size(lim, b, sizeof(b)));
		return CMD_ERROR;
	}
	if (r < 0) {
		snprintf(err, errlen, "cannot change the diff limit: %s", strerror(-r));
		return CMD_ERROR;
	}
	ve->cfg.diff_limit = lim;
	return CMD_OK;
}

/* --diff-dir: new spills go there from the moment the present diff file
 * holds nothing (at once when it is empty). */
static enum cmd_status set_diff_dir(struct daemon *d, struct vol_entry *ve, const char *dir,
				    char *err, size_t errlen)
{
	struct dev *diff;
	int r;

	if (dir[0] != '/' || strlen(dir) >= sizeof(ve->cfg.diff_dir)) {
		snprintf(err, errlen, "--diff-dir must be an absolute path");
		return CMD_USAGE;
	}
	if (refuse_own_volume(d, "--diff-dir", dir, err, errlen))
		return CMD_USAGE;
	r = dev_file_open(&diff, dir, DEV_FILE_TMPFILE);
	if (r < 0) {
		snprintf(err, errlen, "cannot create diff files in %s: %s; nothing was changed", dir,
			 strerror(-r));
		return CMD_ERROR;
	}
	if (ve->vol) {
		/* the copy records follow; without a file there, they stay put */
		struct dev *index = NULL;
		if (dev_file_open(&index, dir, DEV_FILE_TMPFILE) < 0)
			index = NULL;
		volume_set_diff_file(ve->vol, diff, index, dir);
	} else {
		dev_destroy(diff);
	}
	snprintf(ve->cfg.diff_dir, sizeof(ve->cfg.diff_dir), "%s", dir);
	return CMD_OK;
}

static enum cmd_status set_hook(struct vol_entry *ve, const char *path, char *err,
				size_t errlen)
{
	struct stat st;

	if (path[0] && (path[0] != '/' || strlen(path) >= sizeof(ve->cfg.hook))) {
		snprintf(err, errlen, "--hook must be an absolute path ('' removes the hook)");
		return CMD_USAGE;
	}
	errno = 0;
	if (path[0] && (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, X_OK) < 0)) {
		snprintf(err, errlen, "--hook %s is not an executable file%s%s", path,
			 errno ? ": " : "", errno ? strerror(errno) : "");
		return CMD_ERROR;
	}
	snprintf(ve->cfg.hook, sizeof(ve->cfg.hook), "%s", path);
	return CMD_OK;
}

static enum cmd_status cmd_volume_set(struct daemon *d, const struct ctl_request *req,
				      struct ctl_session *sess, json_object **result, char *err,
				      size_t errlen)
{
	enum cmd_status st = CMD_OK;
	struct vol_entry *ve = open_volume_arg(d, ctl_str(req, "name"), err, errlen, &st);

	if (!ve)
		return st;
	if (!ctl_has(req, "diff_limit") && !ctl_has(req, "diff_dir") && !ctl_has(req, "hook")) {
		snprintf(err, errlen, "nothing to set: give --diff-limit, --diff-dir or --hook");
		return CMD_USAGE;
	}
	/* the checks that can refuse come first, so a refusal changes nothing */
	if (ctl_has(req, "hook")) {
		struct vol_config keep = ve->cfg;
		st = set_hook(ve, ctl_str(req, "hook"), err, errlen);
		ve->cfg = keep;
		if (st != CMD_OK)
			return st;
	}
	if (ctl_has(req, "diff_dir")) {
		const char *dir = ctl_str(req, "diff_dir");
		if (dir[0] != '/') {
			snprintf(err, errlen, "--diff-dir must be an absolute path");
			return CMD_USAGE;
		}
	}
	if (ctl_has(req, "diff_limit") &&
	    (st = set_diff_limit(ve, ctl_u64(req, "diff_limit", 0), err, errlen)) != CMD_OK)
		return st;
	if (ctl_has(req, "diff_dir") &&
	    (st = set_diff_dir(d, ve, ctl_str(req, "diff_dir"), err, errlen)) != CMD_OK) {
		persist_save_volumes(d); /* the limit above did change */
		return st;
	}
	if (ctl_has(req, "hook"))
		(void)set_hook(ve, ctl_str(req, "hook"), err, errlen);
	persist_save_volumes(d);
	json_object *ev = json_object_new_object();
	char lim[32];
	json_object_object_add(ev, "volume", json_object_new_string(ve->cfg.name));
	events_post("volume.changed", ev, "volume %s: diff limit %s, diff dir %s, hook %s",
		    ve->cfg.name, units_format_size(ve->cfg.diff_limit, lim, sizeof(lim)),
		    ve->cfg.diff_dir, ve->cfg.hook[0] ? ve->cfg.hook : "none");
	*result = status_volume_json(d, ve);
	return CMD_OK;
}

const struct command_entry commands_volume[] = {
	{ "volume.set", cmd_volume_set },
	{ "volume.create", cmd_volume_create },
	{ "volume.attach", cmd_volume_attach },
	{ "volume.detach", cmd_volume_detach },
	{ "volume.list", cmd_volume_list },
	{ "volume.remove", cmd_volume_remove },
	{ NULL, NULL },
};
