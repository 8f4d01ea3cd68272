/* nbd_catalog.c - what the NBD server may open: every usable volume,
 * every active snapshot and every attached image, by "VOLUME",
 * "VOLUME@SNAPSHOT" or "image:NAME". */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/units.h"
#include "daemon/daemon.h"
#include "nbd/nbd_server.h"

/* The reason a client gets while a job rewrites the volume (ve->busy). */
static const char *busy_why(const char *busy)
{
	if (busy && strcmp(busy, "a restore") == 0)
		return "the volume is being restored from an image; connect after the restore ends";
	if (busy && strcmp(busy, "a revert") == 0)
		return "the volume is being reverted to a snapshot; connect after the revert ends";
	return "the volume is held by a job that rewrites it; try again after it";
}

static struct export *catalog_open(void *ctx, const char *name, const char **why)
{
	struct daemon *d = ctx;
	char vol[HS_NAME_MAX + 1], snap[HS_NAME_MAX + 1];
	struct export *e = NULL;
	struct vol_entry *ve;

	pthread_mutex_lock(&d->mu);
	if (strncmp(name, "image:", 6) == 0) {
		struct image_entry *ie = images_find(d, name + 6);
		if (!ie)
			*why = "no such attached image (see hotsnap image list)";
		else if (!(e = export_dup(ie->base)))
			*why = "out of memory";
	} else if (strchr(name, '@')) {
		if (names_split_snapshot(name, vol, snap)) {
			*why = "not a valid export name (VOLUME or VOLUME@SNAPSHOT)";
		} else if (!(ve = registry_volume(d, vol)) || !ve->vol) {
			*why = "no such volume";
		} else {
			struct snap_entry *se = registry_snapshot(ve, snap);
			struct snapshot_stats ss;
			if (!se) {
				*why = registry_lost(ve, snap) ? "the snapshot was lost in a restart"
							      : "no such snapshot";
			} else {
				snapshot_get_stats(se->snap, &ss);
				if (ss.state != SNAPSHOT_ACTIVE)
					*why = "the snapshot failed (see hotsnap snapshot list)";
				else if (!(e = export_open_snapshot(se->snap)))
					*why = "out of memory";
			}
		}
	} else if (names_check(name)) {
		*why = "not a valid export name (VOLUME or VOLUME@SNAPSHOT)";
	} else if (!(ve = registry_volume(d, name)) || !ve->vol) {
		*why = "no such volume";
	} else if (!(e = export_open_volume(ve->vol))) {
		*why = errno == EBUSY ? busy_why(ve->busy) : "out of memory";
	}
	pthread_mutex_unlock(&d->mu);
	return e;
}

static void catalog_list(void *ctx, void (*fn)(void *arg, const char *name, const char *desc),
			 void *arg)
{
	struct daemon *d = ctx;
	char full[2 * HS_NAME_MAX + 2], desc[256], size[32], when[32];

	pthread_mutex_lock(&d->mu);
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		if (!ve->vol)
			continue;
		snprintf(desc, sizeof(desc), "hotsnap volume, %s, read-write",
			 units_format_size(ve->cfg.size, size, sizeof(size)));
		fn(arg, ve->cfg.name, desc);
		for (struct snap_entry *se = ve->snaps; se; se = se->next) {
			struct snapshot_stats ss;
			struct tm tm;
			time_t t;
			snapshot_get_stats(se->snap, &ss);
			if (ss.state != SNAPSHOT_ACTIVE)
				continue;
			t = (time_t)(ss.created_ns / 1000000000u);
			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			snprintf(full, sizeof(full), "%s@%s", ve->cfg.name, se->name);
			snprintf(desc, sizeof(desc), "hotsnap snapshot of %s taken %s, read-only",
				 ve->cfg.name, when);
			fn(arg, full, desc);
		}
	}
	for (struct image_entry *ie = d->images; ie; ie = ie->next) {
		snprintf(full, sizeof(full), "image:%s", ie->name);
		snprintf(desc, sizeof(desc), "image %.180s, read-only", ie->path);
		fn(arg, full, desc);
	}
	pthread_mutex_unlock(&d->mu);
}

void nbd_catalog_init(struct daemon *d, struct nbd_catalog *cat)
{
	cat->open = catalog_open;
	cat->list = catalog_list;
	cat->ctx = d;
}

const char *daemon_nbd_uri(struct daemon *d, const char *name, char *buf, size_t len)
{
	if (!d->nbd) {
		buf[0] = '\0';
		return buf;
	}
	return nbd_server_uri(d->nbd, name, buf, len);
}
