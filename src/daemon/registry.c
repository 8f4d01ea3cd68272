/* registry.c - finding, opening and releasing volumes and snapshots. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/devlinks.h"
#include "daemon/events.h"
#include "export/export.h"
#include "fuse/fuse_front.h"

struct vol_entry *registry_volume(struct daemon *d, const char *name)
{
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next)
		if (strcmp(ve->cfg.name, name) == 0)
			return ve;
	return NULL;
}

struct snap_entry *registry_snapshot(struct vol_entry *ve, const char *name)
{
	for (struct snap_entry *se = ve->snaps; se; se = se->next)
		if (strcmp(se->name, name) == 0)
			return se;
	return NULL;
}

struct lost_snap *registry_lost(struct vol_entry *ve, const char *name)
{
	for (struct lost_snap *ls = ve->lost; ls; ls = ls->next)
		if (strcmp(ls->name, name) == 0)
			return ls;
	return NULL;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	if (S_ISBLK(a->st_mode) || S_ISBLK(b->st_mode))
		return S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode) && a->st_rdev == b->st_rdev;
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

struct vol_entry *registry_volume_on(struct daemon *d, const struct stat *st)
{
	struct stat b;

	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next)
		if (stat(ve->cfg.backing, &b) == 0 && same_file(st, &b))
			return ve;
	return NULL;
}

bool registry_on_fuse(struct daemon *d, const struct stat *st)
{
	return d->fuse_dev != 0 && st->st_dev == d->fuse_dev;
}

/* mountinfo's octal escapes (\040 for a space) undone, in place. */
static void unescape_mountinfo(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++, w++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w = *r;
		}
	}
	*w = '\0';
}

/* The block device the file system holding path lies on.  Most give it as
 * st_dev; btrfs (and others with an anonymous device number, major 0) do
 * not, and the device is then the source of the mount the path is in (the
 * longest mount point above it in mountinfo).  0 when there is none
 * (tmpfs, a network file system). */
static dev_t fs_device(const char *path, dev_t st_dev)
{
	char line[4096], real[PATH_MAX], point[PATH_MAX], src[PATH_MAX];
	size_t best = 0;
	dev_t found = 0;
	FILE *f;

	if (major(st_dev) != 0)
		return st_dev;
	if (!realpath(path, real) || !(f = fopen("/proc/self/mountinfo", "re")))
		return 0;
	/* "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPER" */
	char winner[PATH_MAX] = "";
	bool whole = true; /* the previous read ended its line */
	while (fgets(line, sizeof(line), f)) {
		bool was_whole = whole;
		whole = strchr(line, '\n') != NULL;
		char *sep = strstr(line, " - ");
		if (!was_whole || !whole || !sep ||
		    sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    sscanf(sep + 3, "%*s %4095s", src) != 1)
			continue; /* a piece of a line too long for us: no mount we look for */
		unescape_mountinfo(point);
		size_t n = strlen(point);
		bool above = strcmp(point, "/") == 0 ||
			     (strncmp(real, point, n) == 0 && (real[n] == '/' || real[n] == '\0'));
		if (!above || (n < best && best))
			continue;
		best = n; /* the last of equal ones is the one on top */
		unescape_mountinfo(src);
		snprintf(winner, sizeof(winner), "%s", src);
	}
	fclose(f);
	/* only the one mount's source, and only a path: stat of a name some
	 * FUSE mount chose could hang, or resolve against our directory */
	struct stat bs;
	if (winner[0] == '/' && stat(winner, &bs) == 0 && S_ISBLK(bs.st_mode))
		found = bs.st_rdev;
	return found;
}

bool registry_on_own_volume(struct daemon *d, const char *path, char *name, size_t len)
{
	struct stat st;
	char mnt[PATH_MAX];

	name[0] = '\0';
	if (stat(path, &st) < 0)
		return false;
	if (registry_on_fuse(d, &st)) {
		snprintf(name, len, "%s", path);
		return true;
	}
	/* the kernel names a loop device's file by its real path */
	if (!realpath(d->mnt_dir, mnt))
		snprintf(mnt, sizeof(mnt), "%s", d->mnt_dir);
	/* a block device is judged by itself, a file by what it lies on, and
	 * either through what it is stacked on */
	dev_t dev = S_ISBLK(st.st_mode) ? st.st_rdev : fs_device(path, st.st_dev);
	return dev != 0 && loopdev_stack_under(dev, mnt, name, len);
}

/* --cache writeback (as QEMU's default): the host page cache holds writes,
 * and every flush and FUA of the file system on the volume is passed on
 * (fdatasync, RWF_DSYNC), so nothing it was told is durable can be lost;
 * it halves the CPU a small write costs here.  --cache none: O_DIRECT.
 * auto (the default): writeback for a regular file, where a full file
 * system still fails the write at once (delayed-allocation reservations),
 * none for a block device, whose page cache would report the device's
 * errors only at the next flush. */
bool registry_cache_writeback(const struct vol_entry *ve)
{
	struct stat st;

	if (strcmp(ve->cfg.cache, "writeback") == 0)
		return true;
	if (strcmp(ve->cfg.cache, "none") == 0)
		return false;
	return stat(ve->cfg.backing, &st) == 0 && S_ISREG(st.st_mode);
}

void registry_fuse_path(struct daemon *d, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", d->mnt_dir, file);
}

int registry_open_volume(struct daemon *d, struct vol_entry *ve, char *err, size_t errlen)
{
	struct volume_config cfg = {
		.name = ve->cfg.name,
		.size = ve->cfg.size,
		.chunk_shift = (unsigned)__builtin_ctzll(ve->cfg.chunk_size),
		.cow_buffer = ve->cfg.cow_buffer,
		.diff_limit = ve->cfg.diff_limit,
		.diff_dir = ve->cfg.diff_dir,
		.on_event = events_from_engine,
		.event_arg = d,
	};
	struct dev *origin, *diff;
	struct export *e;
	int r;

	ve->tracking_error[0] = '\0';

	r = dev_file_open(&origin, ve->cfg.backing,
			  registry_cache_writeback(ve) ? DEV_FILE_BUFFERED : 0);
	if (r < 0) {
		snprintf(err, errlen, "cannot open backing file %s: %s", ve->cfg.backing,
			 strerror(-r));
		return r;
	}
	if (origin->size < ve->cfg.size) {
		snprintf(err, errlen,
			 "backing file %s is %llu bytes, smaller than the volume (%llu bytes)",
			 ve->cfg.backing, (unsigned long long)origin->size,
			 (unsigned long long)ve->cfg.size);
		dev_destroy(origin);
		return -EINVAL;
	}
	if (strcmp(ve->cfg.diff_dir, d->default_diff_dir) == 0)
		(void)mkdir(ve->cfg.diff_dir, 0700);
	r = dev_file_open(&diff, ve->cfg.diff_dir, DEV_FILE_TMPFILE);
	if (r < 0) {
		snprintf(err, errlen, "cannot create a diff file in %s: %s", ve->cfg.diff_dir,
			 strerror(-r));
		dev_destroy(origin);
		return r;
	}
	/* records of settled copies rest beside the diff file, not in memory;
	 * without it they stay in memory, which works, only costs more */
	r = dev_file_open(&cfg.copy_index, ve->cfg.diff_dir, DEV_FILE_TMPFILE);
	if (r < 0) {
		hs_warn("volume %s: cannot create a file for copy records in %s: %s; they stay in "
			"memory",
			ve->cfg.name, ve->cfg.diff_dir, strerror(-r));
		cfg.copy_index = NULL;
	}
	cfg.tracker = tracking_open(d, ve, origin);
	r = volume_create(&ve->vol, &cfg, origin, diff);
	if (r < 0) {
		snprintf(err, errlen, "cannot open volume %s: %s", ve->cfg.name, strerror(-r));
		ve->vol = NULL;
		return r;
	}
	e = export_open_volume(ve->vol);
	r = e ? fuse_front_add(d->fuse, ve->cfg.name, e) : -ENOMEM;
	if (r < 0) {
		snprintf(err, errlen, "cannot publish volume %s in the FUSE directory: %s",
			 ve->cfg.name, strerror(-r));
		volume_destroy(ve->vol);
		ve->vol = NULL;
		return r;
	}
	ve->open_error[0] = '\0';
	return 0;
}

void registry_drop_snapshot(struct daemon *d, struct vol_entry *ve, struct snap_entry *se)
{
	char full[2 * HS_NAME_MAX + 2];

	snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, se->name);
	if (se->loop.dev[0])
		devlinks_remove(d, full);
	loopdev_detach_force(&se->loop);
	if (se->published) {
		if (fuse_front_remove(d->fuse, full) < 0)
			hs_warn("the FUSE file of %s is still open; it goes when closed", full);
		se->published = false;
	}
	snapshot_delete(se->snap);
	snapshot_put(se->snap);
	for (struct snap_entry **pp = &ve->snaps; *pp; pp = &(*pp)->next)
		if (*pp == se) {
			*pp = se->next;
			break;
		}
	free(se);
}

void registry_close_volume(struct daemon *d, struct vol_entry *ve)
{
	while (ve->snaps)
		registry_drop_snapshot(d, ve, ve->snaps);
	if (ve->loop.dev[0])
		devlinks_remove(d, ve->cfg.name);
	loopdev_detach_force(&ve->loop);
	if (ve->vol) {
		(void)fuse_front_remove(d->fuse, ve->cfg.name);
		volume_flush(ve->vol);
		volume_destroy(ve->vol);
		ve->vol = NULL;
	}
}

struct snap_entry *registry_resolve_snapshot(struct daemon *d, const char *full,
					     struct vol_entry **vep, char *err, size_t errlen,
					     bool *usage)
{
	char vol[HS_NAME_MAX + 1], snap[HS_NAME_MAX + 1];
	const char *why = names_split_snapshot(full, vol, snap);
	struct vol_entry *ve;
	struct snap_entry *se;
	struct lost_snap *ls;

	*usage = false;
	if (why) {
		snprintf(err, errlen, "bad snapshot name '%.140s': %s", full, why);
		*usage = true;
		return NULL;
	}
	ve = registry_volume(d, vol);
	if (!ve) {
		snprintf(err, errlen, "volume '%s' does not exist (see 'hotsnap volume list')", vol);
		return NULL;
	}
	*vep = ve;
	se = registry_snapshot(ve, snap);
	if (se)
		return se;
	ls = registry_lost(ve, snap);
	if (ls)
		snprintf(err, errlen, "snapshot %s@%s is gone: %s", vol, snap, ls->reason);
	else
		snprintf(err, errlen, "snapshot %s@%s does not exist (see 'hotsnap snapshot list')",
			 vol, snap);
	return NULL;
}
