/* tracker.c - see tracker.h; the file format is in tracker_format.h.
 *
 * Notes on the design
 * -------------------
 * The live generation's coarse map is two dense bit arrays in memory:
 * `live` (regions some writer asked for) and `durable` (regions whose bit
 * is on disk in the live area).  A writer that finds its regions durable
 * goes on at once.  Otherwise it sets their bits in `live`, marks their
 * pages dirty, and waits until they are durable; the first waiter becomes
 * the leader of a round: it copies every dirty page, writes the copies to
 * the live area, flushes once, and adds the copied bits to `durable`.
 * Writers that arrive during a round wait for the next; one flush serves
 * all of them.
 *
 * A generation boundary (a snapshot) swaps in pre-zeroed arrays and makes
 * the spare area the live one, in memory, under the volume's gate: no I/O
 * in the freeze window.  The header that records it is written afterwards
 * (the thread, the next prepare, or a bookmark, whichever comes first);
 * until then a crash reads the new live area as the spare, whose bits count
 * for the older generation: over-reporting, never missing.  The spare area
 * must therefore be zero on disk before any header names it, and an area
 * a header stops naming is reused only after that header is on disk.
 *
 * Deltas are merged and dropped by the thread (io_mu), which reads two
 * areas, ORs them into the first, flushes, and only then writes a header
 * without the second.  Queries hold io_mu too, so the areas they read stay
 * what the plan says. */
#include "engine/tracker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zlib.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "common/log.h"
#include "common/units.h"
#include "engine/engine.h"

#define PAGE_BITS (TRACKER_PAGE * 8)
#define MAX_AREAS (TRACKER_MAX_DELTAS + 4)

struct tracker {
	struct dev *map;
	struct dev *origin; /* for its stamp only */
	char name[64];      /* for messages */
	uint64_t size, nchunks, nregions;
	unsigned chunk_shift, region_shift, rc_shift;
	uint64_t area_bytes, area_words, npages;

	pthread_mutex_t switch_mu; /* from prepare to done */
	pthread_mutex_t io_mu;     /* header commits, merges, spares, heartbeats, queries */
	pthread_mutex_t mu;        /* everything below */
	pthread_cond_t synced;     /* a round ended */
	pthread_cond_t wake;       /* for the thread */

	struct tracker_disk_header hdr; /* what the next commit writes */
	bool hdr_dirty;
	uint64_t committed_areas[(MAX_AREAS + 63) / 64]; /* named by the header on disk */
	uint64_t max_seq;

	uint64_t *live, *durable;          /* area_words each */
	uint64_t *next_live, *next_durable; /* zeroed, for the next boundary */
	uint64_t *page_req;                /* per page: a round is wanted */
	bool syncing;
	bool broken;
	char broken_reason[TRACKER_REASON_MAX];
	bool spare_ready; /* hdr.spare_area is zero on disk and named by a header on disk */

	struct bitmap exact_live;
	bool exact_live_ok;
	struct bitmap next_exact;
	bool next_exact_ok;
	struct bitmap *exact[TRACKER_MAX_DELTAS]; /* per hdr.deltas[i], or NULL */
	uint64_t exact_since;

	struct {
		uint64_t gen;
		unsigned refs;
	} bounds[ENGINE_MAX_SNAPSHOTS];
	unsigned nbounds;

	uint64_t syncs, sync_wait_ns;
	uint64_t hb_due_ns;        /* the write path refreshes the heartbeat after this */

	pthread_mutex_t hb_mu;     /* the heartbeat block, and these: */
	struct dev_stamp hb_stamp; /* the origin at the last heartbeat the thread wrote */
	uint64_t hb_seq;

	pthread_t thread;
	bool thread_started, stop;
};

/* --- small helpers ------------------------------------------------------------------ */

static bool test_bit(const uint64_t *a, uint64_t i)
{
	return a[i >> 6] >> (i & 63) & 1;
}

static void set_bit(uint64_t *a, uint64_t i)
{
	a[i >> 6] |= UINT64_C(1) << (i & 63);
}

static uint64_t area_off(const struct tracker *t, uint32_t area)
{
	return TRACKER_AREA0 + (uint64_t)area * t->area_bytes;
}

void tracker_epoch_hex(const uint8_t epoch[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", epoch[i]);
}

static int origin_stamp(struct tracker *t, struct dev_stamp *st)
{
	memset(st, 0, sizeof(*st));
	if (!t->origin || !t->origin->ops->stamp)
		return -ENOTSUP;
	return t->origin->ops->stamp(t->origin, st);
}

/* Stops tracking for good (until the next open starts over): what failed,
 * and the error.  Under mu. */
static void break_locked(struct tracker *t, const char *what, int err)
{
	if (t->broken)
		return;
	t->broken = true;
	snprintf(t->broken_reason, sizeof(t->broken_reason), "%s: %s", what, strerror(-err));
	hs_error("change tracking of %s stopped: %s", t->name, t->broken_reason);
	pthread_cond_broadcast(&t->synced);
}

/* --- the header ------------------------------------------------------------------------ */

/* Over the header's own length: a first-version header is shorter. */
static uint32_t header_crc(const struct tracker_disk_header *h)
{
	struct tracker_disk_header c = *h;
	c.crc = 0;
	return (uint32_t)crc32(0, (const Bytef *)&c, (uInt)HS_MIN(h->header_len, sizeof(c)));
}

static bool area_named(const struct tracker_disk_header *h, uint32_t a)
{
	if (h->live_area == a || h->spare_area == a)
		return true;
	for (uint32_t i = 0; i < h->ndeltas; i++)
		if (h->deltas[i].area == a)
			return true;
	return false;
}

static void note_committed(struct tracker *t, const struct tracker_disk_header *h)
{
	memset(t->committed_areas, 0, sizeof(t->committed_areas));
	for (uint32_t a = 0; a < MAX_AREAS; a++)
		if (area_named(h, a))
			t->committed_areas[a / 64] |= UINT64_C(1) << (a % 64);
}

/* An area neither header names.  Under mu. */
static uint32_t free_area_locked(struct tracker *t)
{
	for (uint32_t a = 0; a < MAX_AREAS; a++)
		if (!area_named(&t->hdr, a) && !(t->committed_areas[a / 64] >> (a % 64) & 1))
			return a;
	return TRACKER_NO_AREA;
}

/* Writes the header if it changed.  Under io_mu, not mu. */
static int commit(struct tracker *t)
{
	struct tracker_disk_header *h = malloc(sizeof(*h));
	int r;

	if (!h)
		return -ENOMEM;
	pthread_mutex_lock(&t->mu);
	if (!t->hdr_dirty) {
		pthread_mutex_unlock(&t->mu);
		free(h);
		return 0;
	}
	t->hdr.seq = ++t->max_seq;
	*h = t->hdr;
	t->hdr_dirty = false;
	pthread_mutex_unlock(&t->mu);

	h->crc = header_crc(h);
	r = dev_pwrite(t->map, h, sizeof(*h), TRACKER_HB_SIZE + (h->seq & 1) * TRACKER_SLOT_SIZE,
		       false);
	if (r == 0)
		r = t->map->ops->flush(t->map);
	pthread_mutex_lock(&t->mu);
	if (r == 0) {
		note_committed(t, h);
	} else {
		t->hdr_dirty = true;
		hs_error("writing the change map header of %s failed: %s", t->name, strerror(-r));
	}
	pthread_mutex_unlock(&t->mu);
	free(h);
	return r;
}

static int zero_area(struct tracker *t, uint32_t a)
{
	int r = t->map->ops->write_zeroes(t->map, area_off(t, a), t->area_bytes, false);
	return r ? r : t->map->ops->flush(t->map);
}

/* Gives the header a spare area, zero on disk, and commits.  Under io_mu. */
static int ready_spare(struct tracker *t)
{
	uint32_t a;
	int r;

	pthread_mutex_lock(&t->mu);
	if (t->spare_ready || t->broken) {
		pthread_mutex_unlock(&t->mu);
		return t->broken ? -EIO : 0;
	}
	a = t->hdr.spare_area;
	if (a == TRACKER_NO_AREA)
		a = free_area_locked(t);
	pthread_mutex_unlock(&t->mu);
	if (a == TRACKER_NO_AREA)
		return -ENOSPC;
	r = zero_area(t, a);
	if (r < 0)
		return r;
	pthread_mutex_lock(&t->mu);
	t->hdr.spare_area = a;
	t->hdr_dirty = true;
	pthread_mutex_unlock(&t->mu);
	r = commit(t);
	pthread_mutex_lock(&t->mu);
	/* zero on disk, and named by the header on disk: it may serve */
	if (r == 0 && t->hdr.spare_area == a)
		t->spare_ready = true;
	pthread_mutex_unlock(&t->mu);
	return r;
}

/* --- merging deltas ------------------------------------------------------------------- */

static bool is_boundary_locked(struct tracker *t, uint64_t gen)
{
	for (unsigned i = 0; i < t->nbounds; i++)
		if (t->bounds[i].gen == gen)
			return true;
	for (uint32_t i = 0; i < t->hdr.nbookmarks; i++)
		if (t->hdr.bookmarks[i].gen == gen)
			return true;
	return false;
}

static uint64_t oldest_boundary_locked(struct tracker *t)
{
	uint64_t g = UINT64_MAX;
	for (unsigned i = 0; i < t->nbounds; i++)
		g = HS_MIN_U64(g, t->bounds[i].gen);
	for (uint32_t i = 0; i < t->hdr.nbookmarks; i++)
		g = HS_MIN_U64(g, t->hdr.bookmarks[i].gen);
	return g;
}

static void remove_delta_locked(struct tracker *t, uint32_t i)
{
	if (t->exact[i]) {
		bitmap_destroy(t->exact[i]);
		free(t->exact[i]);
	}
	memmove(&t->hdr.deltas[i], &t->hdr.deltas[i + 1],
		(t->hdr.ndeltas - i - 1) * sizeof(t->hdr.deltas[0]));
	memmove(&t->exact[i], &t->exact[i + 1], (t->hdr.ndeltas - i - 1) * sizeof(t->exact[0]));
	t->hdr.ndeltas--;
	t->exact[t->hdr.ndeltas] = NULL;
	t->hdr_dirty = true;
}

static int or_exact(struct bitmap *dst, const struct bitmap *src)
{
	for (uint64_t c = bitmap_next_set(src, 0, src->nbits); c < src->nbits;) {
		uint64_t e = bitmap_next_clear(src, c, src->nbits);
		int r = bitmap_set_range(dst, c, e - c);
		if (r < 0)
			return r;
		c = bitmap_next_set(src, e, src->nbits);
	}
	return 0;
}

/* One merge or drop, if one is due: 1 done, 0 nothing to do, -errno.
 * Under io_mu. */
static int merge_one(struct tracker *t, uint64_t *buf_a, uint64_t *buf_b)
{
	uint32_t i, a, b;
	int r;

	pthread_mutex_lock(&t->mu);
	uint64_t oldest = oldest_boundary_locked(t);
	/* deltas wholly before every boundary help no query */
	for (i = 0; i < t->hdr.ndeltas; i++)
		if (t->hdr.deltas[i].gen_to <= oldest) {
			remove_delta_locked(t, i);
			pthread_mutex_unlock(&t->mu);
			return 1;
		}
	for (i = 0; i + 1 < t->hdr.ndeltas; i++)
		if (t->hdr.deltas[i].gen_to == t->hdr.deltas[i + 1].gen_from &&
		    !is_boundary_locked(t, t->hdr.deltas[i].gen_to))
			break;
	if (i + 1 >= t->hdr.ndeltas) {
		pthread_mutex_unlock(&t->mu);
		return 0;
	}
	a = t->hdr.deltas[i].area;
	b = t->hdr.deltas[i + 1].area;
	uint64_t to = t->hdr.deltas[i + 1].gen_to;
	pthread_mutex_unlock(&t->mu);

	r = dev_pread(t->map, buf_a, t->area_bytes, area_off(t, a));
	if (r == 0)
		r = dev_pread(t->map, buf_b, t->area_bytes, area_off(t, b));
	for (uint64_t w = 0; r == 0 && w < t->area_words; w++)
		buf_a[w] |= buf_b[w];
	if (r == 0)
		r = dev_pwrite(t->map, buf_a, t->area_bytes, area_off(t, a), false);
	if (r == 0)
		r = t->map->ops->flush(t->map);
	if (r < 0)
		return r;

	pthread_mutex_lock(&t->mu);
	/* only io_mu holders change deltas: i is still i */
	t->hdr.deltas[i].gen_to = to;
	if (t->exact[i] && t->exact[i + 1] && or_exact(t->exact[i], t->exact[i + 1]) == 0) {
		/* both exact: the merged one is too */
	} else if (t->exact[i]) {
		bitmap_destroy(t->exact[i]);
		free(t->exact[i]);
		t->exact[i] = NULL;
	}
	remove_delta_locked(t, i + 1);
	pthread_mutex_unlock(&t->mu);
	return 1;
}

/* Merges and drops what is due, then commits.  Under io_mu. */
static int tidy(struct tracker *t)
{
	uint64_t *a = malloc(t->area_bytes), *b = malloc(t->area_bytes);
	int r = a && b ? 0 : -ENOMEM;

	while (r == 0 && (r = merge_one(t, a, b)) == 1)
		r = 0;
	free(a);
	free(b);
	if (r == 0)
		r = commit(t);
	return r;
}

/* --- the write path ------------------------------------------------------------------- */

static bool all_durable_locked(struct tracker *t, uint64_t r0, uint64_t r1)
{
	for (uint64_t r = r0; r <= r1; r++)
		if (!test_bit(t->durable, r))
			return false;
	return true;
}

/* One round: every dirty page to disk, one flush.  Drops mu for the I/O. */
static void sync_round_locked(struct tracker *t)
{
	uint64_t n = 0, *pages, *copy;
	uint32_t area = t->hdr.live_area;
	uint64_t t0 = clock_mono_ns();
	int r = 0;

	for (uint64_t p = 0; p < t->npages; p++)
		n += t->page_req[p] != 0;
	if (n == 0)
		return;
	pages = malloc(n * sizeof(*pages));
	copy = malloc(n * TRACKER_PAGE);
	if (!pages || !copy) {
		free(pages);
		free(copy);
		break_locked(t, "no memory for the change map", -ENOMEM);
		return;
	}
	t->syncing = true;
	uint64_t k = 0;
	for (uint64_t p = 0; p < t->npages; p++)
		if (t->page_req[p]) {
			t->page_req[p] = 0;
			pages[k] = p;
			memcpy(copy + k * (TRACKER_PAGE / 8), t->live + p * (TRACKER_PAGE / 8),
			       TRACKER_PAGE);
			k++;
		}
	pthread_mutex_unlock(&t->mu);

	for (uint64_t i = 0; i < n && r == 0;) {
		uint64_t j = i + 1;
		while (j < n && pages[j] == pages[j - 1] + 1)
			j++;
		uint64_t len = (j - i) * TRACKER_PAGE;
		/* the last page of an area may be short of a whole page: areas are
		 * whole pages, so it is not */
		r = dev_pwrite(t->map, copy + i * (TRACKER_PAGE / 8), len,
			       area_off(t, area) + pages[i] * TRACKER_PAGE, false);
		i = j;
	}
	if (r == 0)
		r = t->map->ops->flush(t->map);

	pthread_mutex_lock(&t->mu);
	if (r == 0 && area == t->hdr.live_area) {
		for (uint64_t i = 0; i < n; i++)
			for (uint64_t w = 0; w < TRACKER_PAGE / 8; w++)
				t->durable[pages[i] * (TRACKER_PAGE / 8) + w] |=
					copy[i * (TRACKER_PAGE / 8) + w];
	} else if (r < 0) {
		break_locked(t, "writing the change map failed", r);
	}
	t->syncs++;
	t->sync_wait_ns += clock_mono_ns() - t0;
	t->syncing = false;
	pthread_cond_broadcast(&t->synced);
	free(pages);
	free(copy);
}

static int write_heartbeat(struct tracker *t, const struct dev_stamp *st, bool flush);

/* After an idle stretch the last heartbeat may be old: a write refreshes
 * it first (at most twice a second, without a flush), so that after a
 * kill the origin's mtime is never much later than the last heartbeat. */
static void beat(struct tracker *t)
{
	(void)write_heartbeat(t, NULL, false);
}

void tracker_mark(struct tracker *t, uint64_t c0, uint64_t c1)
{
	uint64_t r0 = c0 >> t->rc_shift, r1 = c1 >> t->rc_shift;
	uint64_t now = clock_ns(CLOCK_REALTIME_COARSE);
	bool due;

	pthread_mutex_lock(&t->mu);
	if (t->broken) {
		pthread_mutex_unlock(&t->mu);
		return;
	}
	due = now >= t->hb_due_ns;
	if (due)
		t->hb_due_ns = now + TRACKER_HEARTBEAT_NS / 2;
	if (t->exact_live_ok && bitmap_next_clear(&t->exact_live, c0, c1 + 1) <= c1 &&
	    bitmap_set_range(&t->exact_live, c0, c1 - c0 + 1) < 0)
		t->exact_live_ok = false; /* this generation falls back to regions */
	if (all_durable_locked(t, r0, r1)) {
		pthread_mutex_unlock(&t->mu);
		if (due)
			beat(t);
		return;
	}
	for (uint64_t r = r0; r <= r1; r++)
		if (!test_bit(t->live, r)) {
			set_bit(t->live, r);
			t->page_req[r / PAGE_BITS] = 1;
		}
	while (!t->broken && !all_durable_locked(t, r0, r1)) {
		if (t->syncing)
			pthread_cond_wait(&t->synced, &t->mu);
		else
			sync_round_locked(t);
		/* a page copied before our bits were set: ask again */
		for (uint64_t r = r0; r <= r1 && !t->syncing; r++)
			if (!test_bit(t->durable, r))
				t->page_req[r / PAGE_BITS] = 1;
	}
	pthread_mutex_unlock(&t->mu);
	if (due)
		beat(t);
}

/* --- generation boundaries ------------------------------------------------------------ */

/* Zeroed arrays and an empty exact map for the next boundary.  Under mu
 * (allocations only). */
static int ready_next_locked(struct tracker *t)
{
	if (!t->next_live)
		t->next_live = calloc(t->area_words, sizeof(uint64_t));
	if (!t->next_durable)
		t->next_durable = calloc(t->area_words, sizeof(uint64_t));
	if (!t->next_exact_ok)
		t->next_exact_ok = bitmap_init(&t->next_exact, t->nchunks, false) == 0;
	return t->next_live && t->next_durable ? 0 : -ENOMEM;
}

int tracker_switch_prepare(struct tracker *t)
{
	int r;

	pthread_mutex_lock(&t->switch_mu);
	pthread_mutex_lock(&t->io_mu);
	/* room for one more delta: merge what can be merged first */
	r = tidy(t);
	if (r == 0)
		r = ready_spare(t);
	pthread_mutex_unlock(&t->io_mu);
	pthread_mutex_lock(&t->mu);
	if (r == 0)
		r = ready_next_locked(t);
	if (r == 0 && t->hdr.ndeltas >= TRACKER_MAX_DELTAS)
		r = -ENOSPC;
	pthread_mutex_unlock(&t->mu);
	return r;
}

uint64_t tracker_switch_locked(struct tracker *t)
{
	uint64_t *old_live, *old_durable;
	uint64_t gen = 0;

	pthread_mutex_lock(&t->mu);
	if (t->broken || !t->spare_ready || !t->next_live || !t->next_durable ||
	    t->hdr.ndeltas >= TRACKER_MAX_DELTAS) {
		pthread_mutex_unlock(&t->mu);
		return 0;
	}
	uint32_t i = t->hdr.ndeltas++;
	t->hdr.deltas[i] = (struct tracker_disk_delta){
		.area = t->hdr.live_area, .gen_from = t->hdr.gen, .gen_to = t->hdr.gen + 1,
	};
	t->exact[i] = NULL;
	if (t->exact_live_ok && t->hdr.gen >= t->exact_since &&
	    (t->exact[i] = malloc(sizeof(struct bitmap)))) {
		*t->exact[i] = t->exact_live; /* moved, not copied */
	} else if (t->exact_live_ok) {
		bitmap_destroy(&t->exact_live);
	}
	t->exact_live_ok = t->next_exact_ok;
	t->exact_live = t->next_exact;
	t->next_exact_ok = false;

	t->hdr.live_area = t->hdr.spare_area;
	t->hdr.spare_area = TRACKER_NO_AREA;
	t->spare_ready = false;
	gen = ++t->hdr.gen;
	t->hdr_dirty = true;
	old_live = t->live;
	old_durable = t->durable;
	t->live = t->next_live;
	t->durable = t->next_durable;
	t->next_live = old_live;     /* zeroed again before their next use */
	t->next_durable = old_durable;
	memset(t->page_req, 0, t->npages * sizeof(*t->page_req));
	pthread_mutex_unlock(&t->mu);
	return gen;
}

void tracker_switch_done(struct tracker *t)
{
	pthread_mutex_lock(&t->mu);
	/* the old arrays: zeroed here, outside the gate, for the next boundary */
	if (t->next_live)
		memset(t->next_live, 0, t->area_words * sizeof(uint64_t));
	if (t->next_durable)
		memset(t->next_durable, 0, t->area_words * sizeof(uint64_t));
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->mu);
	pthread_mutex_unlock(&t->switch_mu);
}

void tracker_boundary_get(struct tracker *t, uint64_t gen)
{
	if (!gen)
		return;
	pthread_mutex_lock(&t->mu);
	unsigned i;
	for (i = 0; i < t->nbounds && t->bounds[i].gen != gen; i++)
		;
	if (i == t->nbounds && t->nbounds < ENGINE_MAX_SNAPSHOTS)
		t->bounds[t->nbounds++] = (typeof(t->bounds[0])){ gen, 0 };
	if (i < t->nbounds)
		t->bounds[i].refs++;
	pthread_mutex_unlock(&t->mu);
}

void tracker_boundary_put(struct tracker *t, uint64_t gen)
{
	if (!gen)
		return;
	pthread_mutex_lock(&t->mu);
	for (unsigned i = 0; i < t->nbounds; i++)
		if (t->bounds[i].gen == gen) {
			if (--t->bounds[i].refs == 0)
				t->bounds[i] = t->bounds[--t->nbounds];
			break;
		}
	pthread_cond_broadcast(&t->wake); /* merges may be due */
	pthread_mutex_unlock(&t->mu);
}

/* --- heartbeat, sync, the thread ------------------------------------------------------ */

/* The heartbeat says the daemon was alive at wall_ns, and what the origin's
 * stamp was (st, or the last one known).  With flush it survives a power
 * cut; without, a kill. */
static int write_heartbeat(struct tracker *t, const struct dev_stamp *st, bool flush)
{
	struct tracker_disk_heartbeat *hb = calloc(1, TRACKER_HB_SIZE);
	int r;

	if (!hb)
		return -ENOMEM;
	pthread_mutex_lock(&t->hb_mu);
	if (st)
		t->hb_stamp = *st;
	memcpy(hb->magic, TRACKER_HB_MAGIC, 8);
	hb->seq = ++t->hb_seq;
	hb->wall_ns = clock_wall_ns();
	hb->stamp = (struct tracker_disk_stamp){ t->hb_stamp.size, t->hb_stamp.mtime_ns,
						 t->hb_stamp.ctime_ns };
	hb->crc = (uint32_t)crc32(0, (const Bytef *)hb, sizeof(*hb));
	r = dev_pwrite(t->map, hb, TRACKER_HB_SIZE, 0, false);
	if (r == 0 && flush)
		r = t->map->ops->flush(t->map);
	pthread_mutex_unlock(&t->hb_mu);
	free(hb);
	return r;
}

int tracker_sync(struct tracker *t)
{
	struct dev_stamp st;
	int r;

	pthread_mutex_lock(&t->io_mu);
	r = tidy(t);
	if (r == 0)
		r = ready_spare(t);
	/* the heartbeat: only when the origin changed since the last one */
	pthread_mutex_lock(&t->hb_mu);
	/* the times and size the heartbeat keeps: a block device's write
	 * count moves with every write, and is for clean closes only */
	bool changed = origin_stamp(t, &st) == 0 &&
		       (st.size != t->hb_stamp.size || st.mtime_ns != t->hb_stamp.mtime_ns ||
			st.ctime_ns != t->hb_stamp.ctime_ns);
	pthread_mutex_unlock(&t->hb_mu);
	if (r == 0 && changed)
		r = write_heartbeat(t, &st, true);
	pthread_mutex_unlock(&t->io_mu);
	return r;
}

static void *tracker_main(void *arg)
{
	struct tracker *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&t->wake, &t->mu, &until);
		if (t->stop)
			break;
		pthread_mutex_unlock(&t->mu);
		(void)tracker_sync(t);
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* --- bookmarks ---------------------------------------------------------------------------- */

static int find_bookmark_locked(struct tracker *t, const char *name)
{
	for (uint32_t i = 0; i < t->hdr.nbookmarks; i++)
		if (strcmp(t->hdr.bookmarks[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void drop_bookmark_locked(struct tracker *t, uint32_t i)
{
	memmove(&t->hdr.bookmarks[i], &t->hdr.bookmarks[i + 1],
		(t->hdr.nbookmarks - i - 1) * sizeof(t->hdr.bookmarks[0]));
	t->hdr.nbookmarks--;
	t->hdr_dirty = true;
}

int tracker_bookmark_add(struct tracker *t, const char *name, uint64_t gen, uint64_t instant_ns)
{
	int r = 0, i;

	if (strlen(name) > TRACKER_NAME_MAX)
		return -ENAMETOOLONG;
	/* What the origin held at the bookmark's instant must be durable before
	 * the bookmark is: a write from before the instant that a power cut
	 * undid would differ from the backup, yet belong to no generation
	 * after it. */
	if (t->origin && (r = t->origin->ops->flush(t->origin)) < 0)
		return r;
	pthread_mutex_lock(&t->io_mu);
	pthread_mutex_lock(&t->mu);
	bool held = false;
	for (unsigned k = 0; k < t->nbounds; k++)
		held |= t->bounds[k].gen == gen;
	for (uint32_t k = 0; k < t->hdr.nbookmarks; k++)
		held |= t->hdr.bookmarks[k].gen == gen;
	if (t->broken || !gen || !held) {
		r = -ESTALE;
	} else {
		if ((i = find_bookmark_locked(t, name)) >= 0)
			drop_bookmark_locked(t, (uint32_t)i);
		if (t->hdr.nbookmarks == TRACKER_MAX_BOOKMARKS) {
			/* the oldest goes */
			uint32_t old = 0;
			for (uint32_t k = 1; k < t->hdr.nbookmarks; k++)
				if (t->hdr.bookmarks[k].gen < t->hdr.bookmarks[old].gen)
					old = k;
			hs_warn("change tracking of %s keeps %d bookmarks: %s goes", t->name,
				TRACKER_MAX_BOOKMARKS, t->hdr.bookmarks[old].name);
			drop_bookmark_locked(t, old);
		}
		struct tracker_disk_bookmark *b = &t->hdr.bookmarks[t->hdr.nbookmarks++];
		memset(b, 0, sizeof(*b));
		snprintf(b->name, sizeof(b->name), "%s", name);
		b->gen = gen;
		b->instant_ns = instant_ns;
		b->created_ns = clock_wall_ns();
		t->hdr_dirty = true;
	}
	pthread_mutex_unlock(&t->mu);
	/* durable before it is reported: the boundary's own header comes first */
	if (r == 0)
		r = tidy(t);
	pthread_mutex_unlock(&t->io_mu);
	return r;
}

int tracker_bookmark_remove(struct tracker *t, const char *name)
{
	int r = 0, i;

	pthread_mutex_lock(&t->io_mu);
	pthread_mutex_lock(&t->mu);
	if ((i = find_bookmark_locked(t, name)) < 0)
		r = -ENOENT;
	else
		drop_bookmark_locked(t, (uint32_t)i);
	pthread_mutex_unlock(&t->mu);
	if (r == 0)
		r = tidy(t);
	pthread_mutex_unlock(&t->io_mu);
	return r;
}

static void to_bookmark(const struct tracker_disk_bookmark *d, struct tracker_bookmark *b)
{
	snprintf(b->name, sizeof(b->name), "%s", d->name);
	b->gen = d->gen;
	b->instant_ns = d->instant_ns;
	b->created_ns = d->created_ns;
}

size_t tracker_bookmarks(struct tracker *t, struct tracker_bookmark *out, size_t max)
{
	size_t n;

	pthread_mutex_lock(&t->mu);
	n = t->hdr.nbookmarks;
	uint32_t order[TRACKER_MAX_BOOKMARKS];
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	for (uint32_t i = 1; i < n; i++) /* oldest first */
		for (uint32_t j = i; j > 0 &&
				     t->hdr.bookmarks[order[j]].gen < t->hdr.bookmarks[order[j - 1]].gen;
		     j--) {
			uint32_t x = order[j];
			order[j] = order[j - 1];
			order[j - 1] = x;
		}
	for (size_t i = 0; i < n && i < max; i++)
		to_bookmark(&t->hdr.bookmarks[order[i]], &out[i]);
	pthread_mutex_unlock(&t->mu);
	return n;
}

int tracker_bookmark_find(struct tracker *t, const char *name, struct tracker_bookmark *out)
{
	int i;

	pthread_mutex_lock(&t->mu);
	i = find_bookmark_locked(t, name);
	if (i >= 0)
		to_bookmark(&t->hdr.bookmarks[i], out);
	pthread_mutex_unlock(&t->mu);
	return i >= 0 ? 0 : -ENOENT;
}

/* --- queries ------------------------------------------------------------------------------- */

int tracker_changed(struct tracker *t, uint64_t from, uint64_t to, struct bitmap *out,
		    bool *exact)
{
	uint32_t areas[TRACKER_MAX_DELTAS];
	const struct bitmap *maps[TRACKER_MAX_DELTAS];
	uint32_t n = 0;
	uint64_t *buf = NULL;
	int r = 0;

	if (out->nbits != t->nchunks || from == 0 || to <= from)
		return -EINVAL;
	pthread_mutex_lock(&t->io_mu); /* no merge moves the areas meanwhile */
	pthread_mutex_lock(&t->mu);
	if (t->broken) {
		r = -ESTALE;
	} else {
		/* deltas are sorted and contiguous: follow them from `from` to `to` */
		uint64_t at = from;
		for (uint32_t i = 0; i < t->hdr.ndeltas && at < to; i++) {
			struct tracker_disk_delta *d = &t->hdr.deltas[i];
			if (d->gen_from != at)
				continue;
			if (d->gen_to > to) {
				r = -ESTALE; /* merged across `to`: cannot split */
				break;
			}
			areas[n] = d->area;
			maps[n] = t->exact[i];
			n++;
			at = d->gen_to;
		}
		if (r == 0 && at != to)
			r = -ESTALE;
	}
	pthread_mutex_unlock(&t->mu);
	*exact = true;
	for (uint32_t k = 0; k < n && r == 0; k++) {
		if (maps[k]) {
			r = or_exact(out, maps[k]);
			continue;
		}
		*exact = false;
		if (!buf && !(buf = malloc(t->area_bytes))) {
			r = -ENOMEM;
			break;
		}
		r = dev_pread(t->map, buf, t->area_bytes, area_off(t, areas[k]));
		for (uint64_t w = 0; r == 0 && w < t->area_words; w++) {
			uint64_t bits = buf[w];
			while (bits && r == 0) {
				uint64_t reg = w * 64 + (uint64_t)__builtin_ctzll(bits);
				bits &= bits - 1;
				if (reg >= t->nregions)
					break;
				uint64_t c0 = reg << t->rc_shift;
				uint64_t c1 = HS_MIN_U64((reg + 1) << t->rc_shift, t->nchunks);
				r = bitmap_set_range(out, c0, c1 - c0);
			}
		}
	}
	pthread_mutex_unlock(&t->io_mu);
	free(buf);
	return r;
}

void tracker_status(struct tracker *t, struct tracker_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&t->mu);
	memcpy(st->epoch, t->hdr.epoch, 16);
	st->epoch_ns = t->hdr.epoch_ns;
	st->gen = t->hdr.gen;
	st->region_shift = t->region_shift;
	st->exact_since = t->exact_since;
	st->bookmarks = t->hdr.nbookmarks;
	st->deltas = t->hdr.ndeltas;
	st->broken = t->broken;
	if (t->broken)
		snprintf(st->lost_reason, sizeof(st->lost_reason), "%s", t->broken_reason);
	else
		snprintf(st->lost_reason, sizeof(st->lost_reason), "%s", t->hdr.lost_reason);
	st->lost_ns = t->hdr.lost_ns;
	uint32_t top = 0;
	for (uint32_t a = 0; a < MAX_AREAS; a++)
		if (area_named(&t->hdr, a))
			top = a + 1;
	st->map_bytes = area_off(t, top);
	st->syncs = t->syncs;
	st->sync_wait_ns = t->sync_wait_ns;
	pthread_mutex_unlock(&t->mu);
}

/* --- opening and closing --------------------------------------------------------------- */

static bool header_ok(const struct tracker_disk_header *h)
{
	return memcmp(h->magic, TRACKER_MAGIC, 8) == 0 && h->version == TRACKER_VERSION &&
	       (h->header_len == sizeof(*h) || h->header_len == TRACKER_HEADER_LEN_1) &&
	       h->crc == header_crc(h) &&
	       h->ndeltas <= TRACKER_MAX_DELTAS && h->nbookmarks <= TRACKER_MAX_BOOKMARKS &&
	       h->live_area < MAX_AREAS &&
	       (h->spare_area < MAX_AREAS || h->spare_area == TRACKER_NO_AREA) && h->gen > 0;
}

/* Deltas sorted, within [1, gen), areas distinct and in range; bookmarks
 * named and within the kept generations. */
static bool header_consistent(const struct tracker_disk_header *h)
{
	uint64_t seen[(MAX_AREAS + 63) / 64] = { 0 };
	uint32_t areas[TRACKER_MAX_DELTAS + 2];
	uint32_t n = 0;

	areas[n++] = h->live_area;
	if (h->spare_area != TRACKER_NO_AREA)
		areas[n++] = h->spare_area;
	for (uint32_t i = 0; i < h->ndeltas; i++) {
		const struct tracker_disk_delta *d = &h->deltas[i];
		if (d->area >= MAX_AREAS || d->gen_from == 0 || d->gen_to <= d->gen_from ||
		    d->gen_to > h->gen || (i && d->gen_from < h->deltas[i - 1].gen_to))
			return false;
		areas[n++] = d->area;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (seen[areas[i] / 64] >> (areas[i] % 64) & 1)
			return false;
		seen[areas[i] / 64] |= UINT64_C(1) << (areas[i] % 64);
	}
	for (uint32_t i = 0; i < h->nbookmarks; i++)
		if (!memchr(h->bookmarks[i].name, '\0', sizeof(h->bookmarks[i].name)) ||
		    !h->bookmarks[i].name[0] || h->bookmarks[i].gen == 0 ||
		    h->bookmarks[i].gen > h->gen)
			return false;
	return true;
}

/* A new tracking: a new epoch, no bookmarks, area 0 live (zeroed).  The
 * caller commits. */
static int start_over(struct tracker *t, const char *reason)
{
	struct tracker_disk_header *h = &t->hdr;

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, TRACKER_MAGIC, 8);
	h->version = TRACKER_VERSION;
	h->header_len = sizeof(*h);
	if (getrandom(h->epoch, sizeof(h->epoch), 0) != sizeof(h->epoch)) {
		uint64_t x = clock_wall_ns() ^ (uint64_t)(uintptr_t)t;
		memcpy(h->epoch, &x, 8);
	}
	h->epoch_ns = clock_wall_ns();
	h->volume_size = t->size;
	h->chunk_shift = t->chunk_shift;
	h->region_shift = t->region_shift;
	h->gen = 1;
	h->live_area = 0;
	h->spare_area = TRACKER_NO_AREA;
	if (reason && reason[0]) {
		snprintf(h->lost_reason, sizeof(h->lost_reason), "%s", reason);
		h->lost_ns = h->epoch_ns;
		hs_warn("change tracking of %s starts over: %s", t->name, reason);
	}
	memset(t->committed_areas, 0, sizeof(t->committed_areas));
	t->hdr_dirty = true;
	return zero_area(t, 0);
}

static bool read_heartbeat(struct tracker *t, struct tracker_disk_heartbeat *hb)
{
	uint8_t *blk = malloc(TRACKER_HB_SIZE);
	bool ok = false;

	if (blk && dev_pread(t->map, blk, TRACKER_HB_SIZE, 0) == 0) {
		memcpy(hb, blk, sizeof(*hb));
		uint32_t crc = hb->crc;
		hb->crc = 0;
		ok = memcmp(hb->magic, TRACKER_HB_MAGIC, 8) == 0 &&
		     crc == (uint32_t)crc32(0, (const Bytef *)hb, sizeof(*hb));
		hb->crc = crc;
	}
	free(blk);
	return ok;
}

static void fmt_time(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	localtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Whether the origin is as the tracking left it; else why not. */
static bool origin_trusted(struct tracker *t, const struct tracker_disk_header *h,
			   char *why, size_t whylen)
{
	struct tracker_disk_heartbeat hb;
	struct dev_stamp now;
	char a[32], b[32];

	if (origin_stamp(t, &now) < 0)
		return true; /* a device without stamps: nothing to compare */
	if (h->clean && now.boot && now.boot == h->io.boot && now.written != h->io.written) {
		/* In another boot the count started over, and nothing can be told
		 * (as for a file's times, the promise is then the admin's).  After
		 * a crash our own last writes count too: the heartbeat's time
		 * rule below is all there is. */
		units_format_size(now.written > h->io.written ? (now.written - h->io.written) * 512
							       : 0,
				  a, sizeof(a));
		snprintf(why, whylen,
			 "the backing device was written while no hotsnap daemon served it (%s "
			 "written or discarded on it since the daemon stopped)",
			 now.written > h->io.written ? a : "its write count went back");
		return false;
	}
	if (h->clean) {
		if (now.size == h->stamp.size && now.mtime_ns == h->stamp.mtime_ns &&
		    now.ctime_ns == h->stamp.ctime_ns)
			return true;
		fmt_time(HS_MAX(now.mtime_ns, now.ctime_ns), a, sizeof(a));
		snprintf(why, whylen,
			 "the backing was changed while no hotsnap daemon served it (%s at %s)",
			 now.size != h->stamp.size ? "resized" : "modified", a);
		return false;
	}
	if (!read_heartbeat(t, &hb)) {
		snprintf(why, whylen, "the daemon stopped without a clean shutdown and its last "
				      "heartbeat is unreadable");
		return false;
	}
	if (now.size == hb.stamp.size &&
	    ((now.mtime_ns == hb.stamp.mtime_ns && now.ctime_ns == hb.stamp.ctime_ns) ||
	     HS_MAX(now.mtime_ns, now.ctime_ns) <= hb.wall_ns + TRACKER_GRACE_NS))
		return true;
	fmt_time(HS_MAX(now.mtime_ns, now.ctime_ns), a, sizeof(a));
	fmt_time(hb.wall_ns, b, sizeof(b));
	snprintf(why, whylen,
		 "the backing was changed (%s at %s) after the daemon stopped without a clean "
		 "shutdown (last heard of at %s)",
		 now.size != hb.stamp.size ? "resized" : "modified", a, b);
	return false;
}

/* Loads the live map from the live and spare areas.  Under nothing. */
static int load_live(struct tracker *t)
{
	uint64_t *buf = malloc(t->area_bytes);
	int r = buf ? 0 : -ENOMEM;

	if (r == 0)
		r = dev_pread(t->map, t->live, t->area_bytes, area_off(t, t->hdr.live_area));
	bool from_spare = false;
	if (r == 0 && t->hdr.spare_area != TRACKER_NO_AREA) {
		r = dev_pread(t->map, buf, t->area_bytes, area_off(t, t->hdr.spare_area));
		for (uint64_t w = 0; r == 0 && w < t->area_words; w++) {
			from_spare |= (buf[w] & ~t->live[w]) != 0;
			t->live[w] |= buf[w];
		}
	}
	free(buf);
	if (r == 0) {
		/* bits past the last region are noise */
		for (uint64_t r2 = t->nregions; r2 < t->area_words * 64; r2++)
			t->live[r2 >> 6] &= ~(UINT64_C(1) << (r2 & 63));
		/* the spare is zeroed before it serves again: what it held goes
		 * into the live area first */
		if (from_spare) {
			r = dev_pwrite(t->map, t->live, t->area_bytes, area_off(t, t->hdr.live_area),
				       false);
			if (r == 0)
				r = t->map->ops->flush(t->map);
		}
		memcpy(t->durable, t->live, t->area_bytes);
	}
	return r;
}

static void free_tracker(struct tracker *t)
{
	for (uint32_t i = 0; i < TRACKER_MAX_DELTAS; i++)
		if (t->exact[i]) {
			bitmap_destroy(t->exact[i]);
			free(t->exact[i]);
		}
	if (t->exact_live_ok)
		bitmap_destroy(&t->exact_live);
	if (t->next_exact_ok)
		bitmap_destroy(&t->next_exact);
	free(t->live);
	free(t->durable);
	free(t->next_live);
	free(t->next_durable);
	free(t->page_req);
	dev_destroy(t->map);
	pthread_cond_destroy(&t->wake);
	pthread_cond_destroy(&t->synced);
	pthread_mutex_destroy(&t->mu);
	pthread_mutex_destroy(&t->io_mu);
	pthread_mutex_destroy(&t->switch_mu);
	pthread_mutex_destroy(&t->hb_mu);
	free(t);
}

static void stop_thread(struct tracker *t)
{
	if (!t->thread_started)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	t->thread_started = false;
}

int tracker_open(struct tracker **out, struct dev *map, struct dev *origin,
		 const struct tracker_geometry *geo)
{
	struct tracker *t;
	struct tracker_disk_header *slot = NULL;
	char why[TRACKER_REASON_MAX] = "";
	int r;

	if (geo->chunk_shift < ENGINE_MIN_CHUNK_SHIFT || geo->chunk_shift > ENGINE_MAX_CHUNK_SHIFT ||
	    geo->region_shift < geo->chunk_shift || geo->region_shift > 30 || geo->size == 0) {
		dev_destroy(map);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		dev_destroy(map);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->switch_mu, NULL);
	pthread_mutex_init(&t->io_mu, NULL);
	pthread_mutex_init(&t->mu, NULL);
	pthread_mutex_init(&t->hb_mu, NULL);
	pthread_cond_init(&t->synced, NULL);
	pthread_cond_init(&t->wake, NULL);
	t->map = map;
	t->origin = origin;
	t->size = geo->size;
	t->chunk_shift = geo->chunk_shift;
	t->region_shift = geo->region_shift;
	t->rc_shift = geo->region_shift - geo->chunk_shift;
	t->nchunks = (geo->size + (UINT64_C(1) << geo->chunk_shift) - 1) >> geo->chunk_shift;
	t->nregions = (geo->size + (UINT64_C(1) << geo->region_shift) - 1) >> geo->region_shift;
	t->area_bytes = hs_align_up((t->nregions + 7) / 8, TRACKER_PAGE);
	t->area_words = t->area_bytes / 8;
	t->npages = t->area_bytes / TRACKER_PAGE;
	t->live = calloc(t->area_words, 8);
	t->durable = calloc(t->area_words, 8);
	t->page_req = calloc(t->npages, sizeof(*t->page_req));
	slot = malloc(2 * sizeof(*slot));
	if (!t->live || !t->durable || !t->page_req || !slot) {
		r = -ENOMEM;
		goto fail;
	}

	/* the header: the valid slot with the higher sequence */
	int best = -1;
	for (int i = 0; i < 2; i++) {
		if (dev_pread(map, &slot[i], sizeof(slot[i]), TRACKER_HB_SIZE + i * TRACKER_SLOT_SIZE) ==
			    0 &&
		    header_ok(&slot[i])) {
			if (slot[i].header_len < sizeof(slot[i])) /* first version: none kept */
				memset((char *)&slot[i] + slot[i].header_len, 0,
				       sizeof(slot[i]) - slot[i].header_len);
			t->max_seq = HS_MAX(t->max_seq, slot[i].seq);
			if (best < 0 || slot[i].seq > slot[best].seq)
				best = i;
		} else if (memcmp(slot[i].magic, TRACKER_MAGIC, 8) == 0) {
			t->max_seq = HS_MAX(t->max_seq, slot[i].seq);
		}
	}
	bool fresh = best < 0 && memcmp(slot[0].magic, TRACKER_MAGIC, 8) != 0 &&
		     memcmp(slot[1].magic, TRACKER_MAGIC, 8) != 0;
	if (best < 0) {
		if (!fresh)
			snprintf(why, sizeof(why), "the change map file was damaged (no valid header)");
	} else if (!header_consistent(&slot[best])) {
		snprintf(why, sizeof(why), "the change map file was damaged (its header "
					   "contradicts itself)");
	} else if (slot[best].volume_size != geo->size || slot[best].chunk_shift != geo->chunk_shift ||
		   slot[best].region_shift != geo->region_shift) {
		snprintf(why, sizeof(why), "the volume's size or granularity changed");
	} else if (origin_trusted(t, &slot[best], why, sizeof(why))) {
		t->hdr = slot[best];
		t->hdr.header_len = sizeof(t->hdr); /* a first-version one grows */
		why[0] = '\0';
	}
	snprintf(t->name, sizeof(t->name), "%s", "volume");
	if (best < 0 || why[0]) {
		r = start_over(t, why);
		if (r < 0)
			goto fail;
	} else {
		note_committed(t, &t->hdr);
		r = load_live(t);
		if (r < 0)
			goto fail;
		/* the spare may hold writes of a boundary that never reached the
		 * header: counted above; it is zeroed before it serves again */
		t->spare_ready = false;
	}
	/* the live generation holds writes from before the open unless it is new */
	t->exact_since = best < 0 || why[0] ? t->hdr.gen : t->hdr.gen + 1;
	t->exact_live_ok = bitmap_init(&t->exact_live, t->nchunks, false) == 0;
	/* from now on a crash is not a clean stop */
	t->hdr.clean = 0;
	t->hdr_dirty = true;
	r = commit(t);
	if (r == 0) {
		struct dev_stamp st;
		if (origin_stamp(t, &st) == 0)
			r = write_heartbeat(t, &st, true);
	}
	if (r < 0)
		goto fail;
	free(slot);
	slot = NULL;
	if (pthread_create(&t->thread, NULL, tracker_main, t) == 0)
		t->thread_started = true;
	*out = t;
	return 0;
fail:
	free(slot);
	t->map = map;
	free_tracker(t);
	return r;
}

void tracker_set_name(struct tracker *t, const char *name)
{
	snprintf(t->name, sizeof(t->name), "%s", name);
}

void tracker_close(struct tracker *t)
{
	struct dev_stamp st;

	if (!t)
		return;
	stop_thread(t);
	pthread_mutex_lock(&t->io_mu);
	(void)tidy(t);
	pthread_mutex_lock(&t->mu);
	if (!t->broken && origin_stamp(t, &st) == 0) {
		t->hdr.clean = 1;
		t->hdr.stamp = (struct tracker_disk_stamp){ st.size, st.mtime_ns, st.ctime_ns };
		t->hdr.io = (struct tracker_disk_iostamp){ st.boot, st.written };
		t->hdr_dirty = true;
	}
	pthread_mutex_unlock(&t->mu);
	if (commit(t) < 0)
		hs_error("the change map of %s could not be marked clean; the next start checks "
			 "it as after a crash",
			 t->name);
	pthread_mutex_unlock(&t->io_mu);
	free_tracker(t);
}

void tracker_abandon(struct tracker *t)
{
	if (!t)
		return;
	stop_thread(t);
	free_tracker(t);
}
