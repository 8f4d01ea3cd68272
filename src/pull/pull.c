/* pull.c - see pull.h. */
#include "pull/pull.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backup/backup_meta.h"
#include "common/clock.h"
#include "common/paths.h"
#include "common/compiler.h"
#include "pull/libnbd_load.h"

/* A window's extents: data to read, or zeros to declare. */
struct piece {
	uint64_t off; /* within the export */
	uint64_t len;
	bool zero;
	bool skip; /* incrementals: unchanged, the parent has it */
};

#define MAX_PIECES 512 /* a window split finer than this is read whole */
#define PULL_REQUEST (256u << 10) /* bytes per read request, as nbdcopy asks */

struct worker {
	struct pull *pl;
	unsigned index;
	struct nbd_handle *h;
	uint8_t *buf; /* PULL_WINDOW */
	struct piece pieces[MAX_PIECES];
	unsigned npieces;
	bool overflow;
	pthread_t thread;
};

struct pull {
	struct pull_job *job;
	struct image_writer *w;
	bool meta; /* the server offers base:allocation */
	char changed_ctx[256]; /* incrementals: hotsnap:changed-since:VOLUME#NAME */
	uint32_t cluster;      /* incrementals: changed regions widen to these */
	uint64_t nwin;
	pthread_mutex_t mu;
	pthread_cond_t turn;
	uint64_t next; /* [mu] every window before it is in the image */
	uint8_t *done; /* [mu] per window: in the image */
	bool failed;   /* [mu] */
	uint64_t last_tick_ns;
	struct worker workers[PULL_MAX_CONNECTIONS];
};

bool pull_is_uri(const char *s)
{
	return strncmp(s, "nbd://", 6) == 0 || strncmp(s, "nbds://", 7) == 0 ||
	       strncmp(s, "nbd+unix://", 11) == 0 || strncmp(s, "nbds+unix://", 12) == 0;
}

/* The first error wins; the others stop at their next turn. */
static void fail(struct pull *pl, const char *fmt, ...) HS_PRINTF(2, 3);
static void fail(struct pull *pl, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&pl->mu);
	if (!pl->failed) {
		pl->failed = true;
		va_start(ap, fmt);
		vsnprintf(pl->job->error, sizeof(pl->job->error), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&pl->turn);
	pthread_mutex_unlock(&pl->mu);
}

static void add_piece2(struct worker *wk, uint64_t off, uint64_t len, bool zero, bool skip)
{
	struct piece *last = wk->npieces ? &wk->pieces[wk->npieces - 1] : NULL;

	if (last && last->zero == zero && last->skip == skip && last->off + last->len == off) {
		last->len += len;
	} else if (wk->npieces < MAX_PIECES) {
		wk->pieces[wk->npieces++] = (struct piece){ off, len, zero, skip };
	} else {
		wk->overflow = true;
	}
}

static void add_piece(struct worker *wk, uint64_t off, uint64_t len, bool zero)
{
	add_piece2(wk, off, len, zero, false);
}

static int extent_cb(void *arg, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
	struct worker *wk = arg;

	if (wk->pl->changed_ctx[0]) {
		/* incrementals: bit 0 set is changed since the bookmark */
		if (strcmp(ctx, wk->pl->changed_ctx) != 0)
			return 0;
		for (size_t i = 0; i + 1 < n; i += 2) {
			add_piece2(wk, off, e[i], false, !(e[i + 1] & 1));
			off += e[i];
		}
		return 0;
	}
	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		/* zero (2), or hole (1) that reads zeros: nothing to read */
		add_piece(wk, off, e[i], (e[i + 1] & LIBNBD_STATE_ZERO) != 0);
		off += e[i];
	}
	return 0;
}

/* An incremental writes whole clusters: a cluster the image holds hides
 * its parent's whole, so a changed byte anywhere in it means the cluster
 * is read whole from the snapshot.  Rebuilds wk->pieces as changed
 * (cluster-aligned, read) and unchanged (skipped) runs. */
static void widen_to_clusters(struct worker *wk, uint64_t start, uint64_t len)
{
	uint64_t cl = wk->pl->cluster, ncl = (len + cl - 1) / cl;
	bool changed[PULL_WINDOW / 512];
	unsigned n = wk->npieces;
	struct piece old[MAX_PIECES];

	memcpy(old, wk->pieces, sizeof(old[0]) * n);
	memset(changed, 0, sizeof(changed[0]) * ncl);
	for (unsigned i = 0; i < n; i++) {
		if (old[i].skip)
			continue;
		for (uint64_t c = (old[i].off - start) / cl;
		     c < ncl && start + c * cl < old[i].off + old[i].len; c++)
			changed[c] = true;
	}
	wk->npieces = 0;
	wk->overflow = false;
	for (uint64_t c = 0; c < ncl; c++) {
		uint64_t off = start + c * cl;
		uint64_t l = off + cl > start + len ? start + len - off : cl;
		add_piece2(wk, off, l, false, !changed[c]);
	}
}

/* What window k holds: its pieces, data read into wk->buf.  0 or -1. */
static int read_window(struct worker *wk, uint64_t k)
{
	struct pull *pl = wk->pl;
	uint64_t start = k * PULL_WINDOW;
	uint64_t len = pl->job->size - start < PULL_WINDOW ? pl->job->size - start : PULL_WINDOW;

	wk->npieces = 0;
	wk->overflow = false;
	if (pl->meta) {
		/* the server may answer for less than asked: ask again from there */
		uint64_t at = start;
		while (at < start + len && !wk->overflow) {
			unsigned before = wk->npieces;
			uint64_t covered = at;
			if (libnbd.block_status(wk->h, start + len - at, at,
					     (nbd_extent_callback){ .callback = extent_cb,
								    .user_data = wk },
					     0) < 0) {
				fail(pl, "asking which blocks hold data at offset %llu failed: %s",
				     (unsigned long long)at, libnbd.get_error());
				return -1;
			}
			for (unsigned i = before; i < wk->npieces; i++)
				covered = wk->pieces[i].off + wk->pieces[i].len;
			if (covered <= at)
				break; /* no progress: read the rest */
			at = covered;
		}
		/* clip what the server described past the window */
		while (wk->npieces && wk->pieces[wk->npieces - 1].off >= start + len)
			wk->npieces--;
		if (wk->npieces) {
			struct piece *l = &wk->pieces[wk->npieces - 1];
			if (l->off + l->len > start + len)
				l->len = start + len - l->off;
			if (l->off + l->len < start + len && !wk->overflow)
				add_piece(wk, l->off + l->len, start + len - l->off - l->len, false);
		}
	}
	if (!pl->meta || wk->overflow || wk->npieces == 0) {
		wk->npieces = 0;
		add_piece(wk, start, len, false);
	}
	if (pl->changed_ctx[0])
		widen_to_clusters(wk, start, len);
	/* the data pieces as requests of at most PULL_REQUEST, all in flight at
	 * once on this connection: one at a time, each would wait a round trip */
	int64_t cookies[PULL_WINDOW / PULL_REQUEST + MAX_PIECES];
	uint64_t offs[PULL_WINDOW / PULL_REQUEST + MAX_PIECES];
	unsigned nreq = 0;
	for (unsigned i = 0; i < wk->npieces; i++) {
		struct piece *p = &wk->pieces[i];
		if (p->zero || p->skip) {
			if (p->skip)
				atomic_fetch_add(&pl->job->bytes_unchanged, p->len);
			continue;
		}
		for (uint64_t at = p->off; at < p->off + p->len; at += PULL_REQUEST) {
			uint64_t n = p->off + p->len - at < PULL_REQUEST ? p->off + p->len - at
									  : PULL_REQUEST;
			cookies[nreq] = libnbd.aio_pread(wk->h, wk->buf + (at - start), n, at,
						      NBD_NULL_COMPLETION, 0);
			offs[nreq] = at;
			if (cookies[nreq] < 0) {
				fail(pl, "reading the export at offset %llu failed: %s",
				     (unsigned long long)at, libnbd.get_error());
				return -1;
			}
			nreq++;
		}
		atomic_fetch_add(&pl->job->bytes_read, p->len);
	}
	while (libnbd.aio_in_flight(wk->h) > 0)
		if (libnbd.poll(wk->h, -1) < 0) {
			fail(pl, "reading the export at offset %llu failed: %s",
			     (unsigned long long)start, libnbd.get_error());
			return -1;
		}
	for (unsigned i = 0; i < nreq; i++)
		if (libnbd.aio_command_completed(wk->h, (uint64_t)cookies[i]) != 1) {
			fail(pl, "reading the export at offset %llu failed: %s",
			     (unsigned long long)offs[i], libnbd.get_error());
			return -1;
		}
	return 0;
}

/* Hands window k to the writer (in turn only for a stream). */
static int write_window(struct worker *wk, uint64_t k)
{
	struct pull *pl = wk->pl;
	uint64_t start = k * PULL_WINDOW;
	int r = 0;

	for (unsigned i = 0; i < wk->npieces && r == 0; i++) {
		struct piece *p = &wk->pieces[i];
		if (p->skip)
			continue; /* the parent's */
		if (p->zero) {
			r = image_writer_zero(pl->w, p->off, p->len);
			atomic_fetch_add(&pl->job->bytes_zero, p->len);
		} else {
			r = image_writer_data(pl->w, wk->buf + (p->off - start), p->len, p->off);
		}
	}
	if (r < 0) {
		fail(pl, "writing the image at offset %llu failed: %s", (unsigned long long)start,
		     pl->w->error[0] ? pl->w->error : strerror(-r));
		return -1;
	}
	return 0;
}

/* Window k is in the image: the written prefix grows over every window
 * done in a row, and the writer may forget what lies before it.  Under
 * pl->mu (position hints come from one thread at a time). */
static void window_done_locked(struct pull *pl, uint64_t k)
{
	pl->done[k] = 1;
	while (pl->next < pl->nwin && pl->done[pl->next])
		pl->next++;
	uint64_t end = pl->next * (uint64_t)PULL_WINDOW;
	if (end > pl->job->size)
		end = pl->job->size;
	image_writer_position(pl->w, end);
	atomic_store(&pl->job->position, end);
	pthread_cond_broadcast(&pl->turn);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct pull *pl = wk->pl;
	unsigned n = pl->job->connections;

	for (uint64_t k = wk->index; k < pl->nwin; k += n) {
		if (read_window(wk, k) < 0)
			return NULL;
		/* a stream (a pipe) takes windows in order; a file in any order,
		 * from every worker at once */
		pthread_mutex_lock(&pl->mu);
		while (pl->w->sequential && pl->next != k && !pl->failed)
			pthread_cond_wait(&pl->turn, &pl->mu);
		bool stop = pl->failed;
		pthread_mutex_unlock(&pl->mu);
		if (stop || write_window(wk, k) < 0)
			return NULL;
		pthread_mutex_lock(&pl->mu);
		window_done_locked(pl, k);
		uint64_t now = clock_mono_ns();
		if (pl->job->tick && now - pl->last_tick_ns >= 200000000u) {
			pl->last_tick_ns = now;
			pl->job->tick(pl->job->tick_arg, atomic_load(&pl->job->position),
				      pl->job->size);
		}
		pthread_mutex_unlock(&pl->mu);
		/* the window is in the image: the remote snapshot may let it go */
		if (pl->job->consume) {
			uint64_t start = k * PULL_WINDOW;
			uint64_t len = k + 1 == pl->nwin ? pl->job->size - start : PULL_WINDOW;
			if (libnbd.trim(wk->h, len, start, 0) < 0) {
				fail(pl, "releasing what was read (TRIM at offset %llu) failed: %s",
				     (unsigned long long)start, libnbd.get_error());
				return NULL;
			}
		}
	}
	return NULL;
}

static struct nbd_handle *connect_one(struct pull *pl, bool consume)
{
	struct pull_job *job = pl->job;
	struct nbd_handle *h = libnbd.create();

	if (!h)
		return NULL;
	libnbd.add_meta_context(h, pl->changed_ctx[0] ? pl->changed_ctx
						  : LIBNBD_CONTEXT_BASE_ALLOCATION);
	/* TRIM of a read-only snapshot export is how a reader says it is done
	 * with a range (hotsnap's NBD server allows it); libnbd's own check
	 * would refuse it before asking */
	if (consume)
		libnbd.set_strict_mode(h, libnbd.get_strict_mode(h) & ~LIBNBD_STRICT_COMMANDS);
	/* the URI is the administrator's own (the command line): its
	 * tls-psk-file= and tls-certificates= may name local files */
	libnbd.set_uri_allow_local_file(h, true);
	if (libnbd.connect_uri(h, job->uri) < 0) {
		snprintf(job->error, sizeof(job->error), "cannot read %s: %s", job->uri,
			 libnbd.get_error());
		libnbd.close(h);
		return NULL;
	}
	return h;
}

/* The parent of an incremental: a qcow2 a pull (or a backup) of the same
 * volume wrote; its chain must open.  Sets the changed-since context and
 * the backing name (relative to the new image's directory).  0 or -1. */
static int read_parent(struct pull *pl, struct backup_meta *m, char *backing, size_t len)
{
	struct pull_job *job = pl->job;
	struct image_reader *r;
	const struct image_info *info;
	char real[4096], copy[4096], dir[4096], msg[IMAGE_ERROR_MAX];
	const char *why = NULL;
	int e;

	if (!realpath(job->parent, real)) {
		snprintf(job->error, sizeof(job->error), "--incremental %s: %s", job->parent,
			 strerror(errno));
		return -1;
	}
	if (image_open(&r, real, 0, msg, sizeof(msg)) < 0) {
		snprintf(job->error, sizeof(job->error), "--incremental %s cannot be opened: %s",
			 job->parent, msg);
		return -1;
	}
	info = image_get_info(r);
	e = info->format != IMAGE_QCOW2 || !info->meta ? -EINVAL
	    : backup_meta_decode(info->meta, info->meta_len, m, &why);
	if (e == 0 && !m->bookmark[0]) {
		why = "it records no snapshot name";
		e = -EINVAL;
	}
	image_close(r);
	if (e < 0) {
		snprintf(job->error, sizeof(job->error),
			 "--incremental %s is not a qcow2 image hotsnap wrote of a snapshot%s%s; "
			 "a full pull is needed",
			 job->parent, why ? ": " : "", why ? why : "");
		return -1;
	}
	snprintf(copy, sizeof(copy), "%s", job->output);
	if (!realpath(dirname(copy), dir) || path_relative(dir, real, backing, len) < 0) {
		snprintf(job->error, sizeof(job->error), "cannot name %s relative to %s", real,
			 job->output);
		return -1;
	}
	snprintf(job->since, sizeof(job->since), "%s#%s", m->volume, m->bookmark);
	snprintf(pl->changed_ctx, sizeof(pl->changed_ctx), "hotsnap:changed-since:%s",
		 job->since);
	pl->cluster = 65536;
	return 0;
}

int pull_run(struct pull_job *job)
{
	struct pull *pl = calloc(1, sizeof(*pl));
	uint64_t t0 = clock_mono_ns();
	unsigned n = job->connections ? job->connections : 4, started = 0;
	int r = -EIO;

	if (!pl) {
		snprintf(job->error, sizeof(job->error), "out of memory");
		return -ENOMEM;
	}
	if (libnbd_load(job->error, sizeof(job->error)) < 0) {
		free(pl);
		return -ENOSYS;
	}
	if (n > PULL_MAX_CONNECTIONS)
		n = PULL_MAX_CONNECTIONS;
	pl->job = job;
	pthread_mutex_init(&pl->mu, NULL);
	pthread_cond_init(&pl->turn, NULL);

	struct backup_meta parent = { 0 };
	char backing[4096] = "";
	if (job->parent && read_parent(pl, &parent, backing, sizeof(backing)) < 0)
		goto out;
	struct nbd_handle *h0 = connect_one(pl, job->consume);
	if (!h0)
		goto out;
	int64_t size = libnbd.get_size(h0);
	if (size <= 0 || size % 512) {
		snprintf(job->error, sizeof(job->error), "%s: the export's size (%lld) is not a "
				 "positive multiple of 512", job->uri, (long long)size);
		libnbd.close(h0);
		goto out;
	}
	job->size = (uint64_t)size;
	/* the export's own name: VOLUME@SNAPSHOT, for the image's metadata */
	struct backup_meta meta = { .volume_size = job->size };
	char *export = libnbd.get_export_name(h0), *at = export ? strchr(export, '@') : NULL;
	if (export && at && (size_t)(at - export) < sizeof(meta.volume)) {
		snprintf(meta.volume, sizeof(meta.volume), "%.*s", (int)(at - export), export);
		snprintf(meta.bookmark, sizeof(meta.bookmark), "%s", at + 1);
		meta.instant_s = (uint64_t)time(NULL);
	}
	free(export);
	if (job->parent) {
		if (strcmp(meta.volume, parent.volume) != 0 || parent.volume_size != job->size) {
			snprintf(job->error, sizeof(job->error),
				 "--incremental %s is an image of volume %s (%llu bytes), not of "
				 "this export's (%s, %llu bytes)",
				 job->parent, parent.volume, (unsigned long long)parent.volume_size,
				 meta.volume[0] ? meta.volume : "not a snapshot",
				 (unsigned long long)job->size);
			libnbd.close(h0);
			goto out;
		}
		if (libnbd.can_meta_context(h0, pl->changed_ctx) <= 0) {
			snprintf(job->error, sizeof(job->error),
				 "the remote keeps no bookmark %s older than this snapshot, so what "
				 "changed since %s is not known there: after a pull, keep its instant "
				 "with `hotsnap --remote HOST:PORT ... bookmark create %s@%s`, or "
				 "pull a full image",
				 job->since, job->parent, parent.volume, parent.bookmark);
			libnbd.close(h0);
			goto out;
		}
		pl->meta = true;
	} else {
		pl->meta = libnbd.can_meta_context(h0, LIBNBD_CONTEXT_BASE_ALLOCATION) > 0;
	}
	if (libnbd.can_multi_conn(h0) <= 0)
		n = 1; /* the server does not promise that connections see each other */
	pl->nwin = (job->size + PULL_WINDOW - 1) / PULL_WINDOW;
	pl->done = calloc(pl->nwin, 1);
	if (!pl->done) {
		snprintf(job->error, sizeof(job->error), "out of memory");
		libnbd.close(h0);
		goto out;
	}
	if (pl->nwin < n)
		n = (unsigned)pl->nwin;
	job->connections = n;
	pl->workers[0].h = h0;
	for (unsigned i = 1; i < n; i++) {
		pl->workers[i].h = connect_one(pl, job->consume);
		if (!pl->workers[i].h)
			goto out;
	}
	struct image_params ip = { .format = job->format, .size = job->size,
				   .compress = job->compress, .name = job->output };
	char err[512], metabuf[IMAGE_META_MAX];
	if (job->format == IMAGE_QCOW2 && meta.volume[0]) {
		ip.meta = metabuf; /* what the next incremental pull starts from */
		ip.meta_len = backup_meta_encode(&meta, metabuf, sizeof(metabuf));
	}
	if (job->parent) {
		ip.backing = backing;
		ip.backing_format = "qcow2";
		ip.cluster_size = pl->cluster;
	}
	if (image_writer_begin(&pl->w, job->fd, &ip, err, sizeof(err)) < 0) {
		snprintf(job->error, sizeof(job->error), "%s", err);
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		struct worker *wk = &pl->workers[i];
		wk->pl = pl;
		wk->index = i;
		wk->buf = malloc(PULL_WINDOW);
		if (!wk->buf || pthread_create(&wk->thread, NULL, worker_main, wk) != 0) {
			fail(pl, "cannot start the reading threads");
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(pl->workers[i].thread, NULL);
	if (!pl->failed && started == n) {
		r = image_writer_finish(pl->w, err, sizeof(err));
		if (r < 0)
			snprintf(job->error, sizeof(job->error), "%s", err);
	} else {
		image_writer_abort(pl->w);
		r = -EIO;
	}
	pl->w = NULL;
	if (r == 0) {
		struct stat st;
		job->image_bytes = fstat(job->fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
		if (job->tick)
			job->tick(job->tick_arg, job->size, job->size);
	}
out:
	if (pl->w)
		image_writer_abort(pl->w);
	for (unsigned i = 0; i < PULL_MAX_CONNECTIONS; i++) {
		if (pl->workers[i].h) {
			libnbd.shutdown(pl->workers[i].h, 0);
			libnbd.close(pl->workers[i].h);
		}
		free(pl->workers[i].buf);
	}
	pthread_cond_destroy(&pl->turn);
	pthread_mutex_destroy(&pl->mu);
	free(pl->done);
	free(pl);
	job->seconds = (double)(clock_mono_ns() - t0) / 1e9;
	return r;
}
