/* Change tracking (engine/tracker.h), on memory devices.
 *
 * exact:   a volume with a tracker takes random writes, snapshots, bookmarks
 *          and deletions; every query between a bookmark and a later
 *          snapshot must name exactly the chunks the test wrote between
 *          their instants (the daemon ran throughout), through merges.
 * crash:   the origin and the map are crash devices; at random points the
 *          power goes (each keeps a random part of its unflushed writes,
 *          some torn) and the volume is opened again on what survived.
 *          Every bookmark added before the crash must still be there, and
 *          every chunk that differs from a bookmark's frozen content must be
 *          in the changes the tracker reports since it: over-reporting is
 *          allowed, a miss is not.
 * trust:   a map is not trusted when the origin changed while nobody
 *          served it (after a clean close: any change; after a crash: one
 *          later than the heartbeat allows), when it is damaged, or when it
 *          cannot be written: then tracking starts over, says why, and
 *          queries against old bookmarks are refused.
 * Prints its seed; HOTSNAP_SEED=N replays a run. */
#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "common/clock.h"
#include "engine/dev_fault.h"
#include "engine/tracker.h"
#include "engine/tracker_format.h"
#include "engine_util.h"

#define CH 4096
#define SIZE (UINT64_C(8) << 20) /* 2048 chunks */
#define NCH (SIZE / CH)
#define REGION_SHIFT 15            /* 8 chunks per region */
#define MAXS 6

static uint64_t map_size(void)
{
	uint64_t area = hs_align_up((SIZE >> REGION_SHIFT) / 8, TRACKER_PAGE);
	return TRACKER_AREA0 + (TRACKER_MAX_DELTAS + 4) * area;
}

static struct volume *tracked_volume(struct dev *origin, struct dev *map)
{
	struct tracker *t;
	struct tracker_geometry geo = { .size = SIZE, .chunk_shift = 12, .region_shift = REGION_SHIFT };
	struct dev *diff;
	struct volume *v;
	struct volume_config cfg = { .name = "t", .size = SIZE, .chunk_shift = 12,
				     .cow_buffer = 64 * CH, .diff_limit = SIZE };

	CHECK(tracker_open(&t, map, origin, &geo) == 0);
	cfg.tracker = t;
	CHECK(dev_mem_create(&diff, SIZE + CH) == 0);
	CHECK(volume_create(&v, &cfg, origin, diff) == 0);
	return v;
}

static void random_write(struct volume *v, uint64_t *rs, uint8_t *touched)
{
	uint8_t buf[8 * CH];
	uint64_t c = rng_below(rs, NCH - 8), n = 1 + rng_below(rs, 8);
	fill(buf, n * CH, rng_next(rs));
	if (rng_below(rs, 10) == 0)
		CHECK(volume_discard(v, c * CH, n * CH) == 0);
	else
		CHECK(volume_write(v, buf, n * CH, c * CH, 0) == 0);
	for (uint64_t k = c; k < c + n; k++)
		touched[k] = 1;
}

/* --- exact ------------------------------------------------------------------ */

struct mark {
	char name[16];
	uint64_t gen;
	uint32_t writes_at[NCH]; /* each chunk's write count at its instant */
	struct snapshot *snap;   /* live snapshots only */
	bool used;
};

static void test_exact(uint64_t *rs)
{
	struct dev *origin, *map;
	static struct mark snaps[MAXS], books[MAXS];
	static uint32_t writes[NCH];
	uint8_t touched[NCH];
	unsigned counter = 0, queries = 0;

	memset(snaps, 0, sizeof(snaps));
	memset(books, 0, sizeof(books));
	CHECK(dev_mem_create(&origin, SIZE) == 0);
	CHECK(dev_mem_create(&map, map_size()) == 0);
	struct volume *v = tracked_volume(origin, map);
	struct tracker *t = volume_tracker(v);

	for (int step = 0; step < 3000; step++) {
		unsigned op = (unsigned)rng_below(rs, 20);
		if (op < 12) {
			memset(touched, 0, sizeof(touched));
			random_write(v, rs, touched);
			for (uint64_t c = 0; c < NCH; c++)
				writes[c] += touched[c];
		} else if (op < 14) { /* a snapshot */
			int i = (int)rng_below(rs, MAXS);
			if (snaps[i].used)
				continue;
			snprintf(snaps[i].name, sizeof(snaps[i].name), "s%u", ++counter);
			snaps[i].snap = take(v, snaps[i].name);
			snaps[i].gen = snapshot_generation(snaps[i].snap);
			CHECK(snaps[i].gen > 0);
			memcpy(snaps[i].writes_at, writes, sizeof(writes));
			snaps[i].used = true;
		} else if (op < 15) { /* it leaves a bookmark */
			int i = (int)rng_below(rs, MAXS), b = (int)rng_below(rs, MAXS);
			if (!snaps[i].used)
				continue;
			books[b] = snaps[i];
			books[b].snap = NULL;
			books[b].used = true;
			snprintf(books[b].name, sizeof(books[b].name), "b%d", b);
			CHECK(tracker_bookmark_add(t, books[b].name, books[b].gen, 0) == 0);
		} else if (op < 16) { /* a snapshot goes */
			int i = (int)rng_below(rs, MAXS);
			if (!snaps[i].used)
				continue;
			CHECK(snapshot_delete(snaps[i].snap) == 0);
			snapshot_put(snaps[i].snap);
			snaps[i].used = false;
		} else if (op < 17) { /* a bookmark goes */
			int b = (int)rng_below(rs, MAXS);
			if (!books[b].used)
				continue;
			CHECK(tracker_bookmark_remove(t, books[b].name) == 0);
			books[b].used = false;
		} else if (op < 18) {
			CHECK(tracker_sync(t) == 0);
		} else { /* a query: bookmark -> later snapshot */
			int b = (int)rng_below(rs, MAXS), i = (int)rng_below(rs, MAXS);
			if (!books[b].used || !snaps[i].used || snaps[i].gen <= books[b].gen)
				continue;
			struct bitmap got;
			bool exact;
			CHECK(bitmap_init(&got, NCH, false) == 0);
			CHECK(tracker_changed(t, books[b].gen, snaps[i].gen, &got, &exact) == 0);
			CHECK(exact);
			for (uint64_t c = 0; c < NCH; c++) {
				bool want = snaps[i].writes_at[c] > books[b].writes_at[c];
				if (bitmap_test(&got, c) != want) {
					fprintf(stderr, "chunk %llu: reported %d, written %d (%s..%s)\n",
						(unsigned long long)c, bitmap_test(&got, c), want,
						books[b].name, snaps[i].name);
					CHECK(0);
				}
			}
			bitmap_destroy(&got);
			queries++;
		}
	}
	CHECK(queries > 20);
	struct tracker_status st;
	tracker_status(t, &st);
	CHECK(st.deltas <= TRACKER_MAX_DELTAS);
	CHECK(!st.broken);
	for (int i = 0; i < MAXS; i++)
		if (snaps[i].used) {
			CHECK(snapshot_delete(snaps[i].snap) == 0);
			snapshot_put(snaps[i].snap);
		}
	volume_destroy(v);
}

/* --- crash -------------------------------------------------------------------- */

struct frozen_book {
	char name[16];
	uint8_t *content;
	bool used;
};

struct crash_world {
	struct dev *origin_mem, *map_mem; /* what the disks hold */
	struct dev *origin, *map;         /* the crash devices over shares of them */
	struct volume *v;
};

static void world_open(struct crash_world *w)
{
	struct dev *os, *ms;
	static const struct dev_stamp still = { SIZE, 1, 1 }; /* nothing else writes it */

	CHECK(dev_mem_share(&os, w->origin_mem) == 0);
	CHECK(dev_mem_share(&ms, w->map_mem) == 0);
	dev_mem_set_stamp(os, &still);
	CHECK(dev_fault_wrap(&w->origin, os, true) == 0);
	CHECK(dev_fault_wrap(&w->map, ms, true) == 0);
	w->v = tracked_volume(w->origin, w->map);
}

static void test_crash(uint64_t *rs)
{
	struct crash_world w;
	struct frozen_book books[MAXS] = { 0 };
	struct snapshot *live[MAXS] = { 0 };
	uint8_t *frozen_live[MAXS] = { 0 };
	uint8_t touched[NCH];
	uint8_t *after_o = malloc(SIZE), *after_m = malloc(map_size());
	unsigned counter = 0, crashes = 0, checked = 0;

	CHECK(dev_mem_create(&w.origin_mem, SIZE) == 0);
	CHECK(dev_mem_create(&w.map_mem, map_size()) == 0);
	world_open(&w);
	for (int step = 0; step < 1500; step++) {
		struct tracker *t = volume_tracker(w.v);
		unsigned op = (unsigned)rng_below(rs, 24);
		if (op < 12) {
			random_write(w.v, rs, touched);
		} else if (op < 13) {
			CHECK(volume_flush(w.v) == 0);
		} else if (op < 15) {
			int i = (int)rng_below(rs, MAXS);
			if (live[i])
				continue;
			char name[16];
			snprintf(name, sizeof(name), "s%u", ++counter);
			live[i] = take(w.v, name);
			frozen_live[i] = malloc(SIZE);
			CHECK(snapshot_read(live[i], frozen_live[i], SIZE, 0) == 0);
		} else if (op < 17) { /* bookmark a live snapshot: durable on return */
			int i = (int)rng_below(rs, MAXS), b = (int)rng_below(rs, MAXS);
			if (!live[i] || !snapshot_generation(live[i]))
				continue;
			snprintf(books[b].name, sizeof(books[b].name), "b%d", b);
			CHECK(tracker_bookmark_add(t, books[b].name, snapshot_generation(live[i]), 0) ==
			      0);
			free(books[b].content);
			books[b].content = malloc(SIZE);
			memcpy(books[b].content, frozen_live[i], SIZE);
			books[b].used = true;
		} else if (op < 18) {
			int i = (int)rng_below(rs, MAXS);
			if (!live[i])
				continue;
			CHECK(snapshot_delete(live[i]) == 0);
			snapshot_put(live[i]);
			live[i] = NULL;
			free(frozen_live[i]);
			frozen_live[i] = NULL;
		} else if (op < 19) {
			int b = (int)rng_below(rs, MAXS);
			if (!books[b].used)
				continue;
			CHECK(tracker_bookmark_remove(t, books[b].name) == 0);
			books[b].used = false;
		} else if (op < 20) {
			(void)tracker_sync(t);
		} else if (op < 21) {
			/* the power goes: both disks keep a random part of what was
			 * not flushed */
			CHECK(dev_fault_crash(w.map, rs, after_m) == 0);
			CHECK(dev_fault_crash(w.origin, rs, after_o) == 0);
			crashes++;
			for (int i = 0; i < MAXS; i++)
				if (live[i]) {
					CHECK(snapshot_delete(live[i]) == 0);
					snapshot_put(live[i]);
					live[i] = NULL;
					free(frozen_live[i]);
					frozen_live[i] = NULL;
				}
			/* what the old volume writes while it closes is undone below */
			volume_destroy(w.v);
			memcpy(dev_mem_data(w.origin_mem), after_o, SIZE);
			memcpy(dev_mem_data(w.map_mem), after_m, map_size());
			world_open(&w);
			t = volume_tracker(w.v);
			struct tracker_status st;
			tracker_status(t, &st);
			CHECK(!st.broken);
			if (st.lost_reason[0])
				fprintf(stderr, "lost: %s\n", st.lost_reason);
			CHECK(st.lost_reason[0] == '\0'); /* nothing else wrote: trusted */
			/* every bookmark survived, and covers what changed since */
			struct snapshot *now = take(w.v, "after");
			uint8_t *cur = malloc(SIZE);
			CHECK(snapshot_read(now, cur, SIZE, 0) == 0);
			for (int b = 0; b < MAXS; b++) {
				struct tracker_bookmark tb;
				if (!books[b].used) {
					if (books[b].name[0])
						CHECK(tracker_bookmark_find(t, books[b].name, &tb) == -ENOENT);
					continue;
				}
				CHECK(tracker_bookmark_find(t, books[b].name, &tb) == 0);
				struct bitmap got;
				bool exact;
				CHECK(bitmap_init(&got, NCH, false) == 0);
				CHECK(tracker_changed(t, tb.gen, snapshot_generation(now), &got, &exact) == 0);
				for (uint64_t c = 0; c < NCH; c++)
					if (memcmp(cur + c * CH, books[b].content + c * CH, CH) != 0 &&
					    !bitmap_test(&got, c)) {
						fprintf(stderr, "after crash %u: chunk %llu changed since %s "
								"but is not reported\n",
							crashes, (unsigned long long)c, books[b].name);
						CHECK(0);
					}
				bitmap_destroy(&got);
				checked++;
			}
			free(cur);
			CHECK(snapshot_delete(now) == 0);
			snapshot_put(now);
		}
	}
	CHECK(crashes > 10 && checked > 10);
	for (int i = 0; i < MAXS; i++) {
		if (live[i]) {
			CHECK(snapshot_delete(live[i]) == 0);
			snapshot_put(live[i]);
		}
		free(frozen_live[i]);
		free(books[i].content);
	}
	volume_destroy(w.v);
	dev_destroy(w.origin_mem);
	dev_destroy(w.map_mem);
	free(after_o);
	free(after_m);
}

/* --- trust --------------------------------------------------------------------- */

static struct tracker *open_on(struct dev *origin_mem, struct dev *map_mem,
			       const struct dev_stamp *st, struct dev **origin_share)
{
	struct dev *os, *ms;
	struct tracker *t;
	struct tracker_geometry geo = { .size = SIZE, .chunk_shift = 12, .region_shift = REGION_SHIFT };

	CHECK(dev_mem_share(&os, origin_mem) == 0);
	CHECK(dev_mem_share(&ms, map_mem) == 0);
	dev_mem_set_stamp(os, st);
	CHECK(tracker_open(&t, ms, os, &geo) == 0);
	*origin_share = os;
	return t;
}

/* Ends a tracker cleanly, or as a crash would, with its share of the origin. */
static void close_on(struct tracker *t, struct dev *origin_share)
{
	tracker_close(t);
	dev_destroy(origin_share);
}

static void abandon_on(struct tracker *t, struct dev *origin_share)
{
	tracker_abandon(t);
	dev_destroy(origin_share);
}

/* A tracker with one bookmark "keep" at a boundary after some marks. */
static struct tracker *with_bookmark(struct dev *o, struct dev *m, const struct dev_stamp *st,
				     struct dev **os)
{
	struct tracker *t = open_on(o, m, st, os);
	tracker_mark(t, 3, 5);
	CHECK(tracker_switch_prepare(t) == 0);
	uint64_t gen = tracker_switch_locked(t);
	tracker_switch_done(t);
	CHECK(gen > 1);
	tracker_boundary_get(t, gen);
	CHECK(tracker_bookmark_add(t, "keep", gen, 0) == 0);
	tracker_boundary_put(t, gen);
	tracker_mark(t, 100, 100);
	return t;
}

static void expect_lost(struct tracker *t, const char *words)
{
	struct tracker_status st;
	struct tracker_bookmark b;
	tracker_status(t, &st);
	if (!strstr(st.lost_reason, words))
		fprintf(stderr, "lost reason '%s' lacks '%s'\n", st.lost_reason, words);
	CHECK(strstr(st.lost_reason, words) != NULL);
	CHECK(tracker_bookmark_find(t, "keep", &b) == -ENOENT);
}

static void expect_kept(struct tracker *t)
{
	struct tracker_status st;
	struct tracker_bookmark b;
	struct bitmap got;
	bool exact;
	tracker_status(t, &st);
	CHECK(!st.broken);
	CHECK(tracker_bookmark_find(t, "keep", &b) == 0);
	/* the writes since it, as regions (the exact map did not survive) */
	CHECK(tracker_switch_prepare(t) == 0);
	uint64_t now = tracker_switch_locked(t);
	tracker_switch_done(t);
	CHECK(bitmap_init(&got, NCH, false) == 0);
	CHECK(tracker_changed(t, b.gen, now, &got, &exact) == 0);
	CHECK(!exact);
	CHECK(bitmap_test(&got, 100) && !bitmap_test(&got, 3) && bitmap_test(&got, 96));
	bitmap_destroy(&got);
}

/* Rewrites every valid header slot of the map as the first version wrote
 * it: shorter, without the device's write counter. */
static void make_first_version(struct dev *m)
{
	for (int i = 0; i < 2; i++) {
		struct tracker_disk_header *h =
			(void *)(dev_mem_data(m) + TRACKER_HB_SIZE + i * TRACKER_SLOT_SIZE);
		if (memcmp(h->magic, TRACKER_MAGIC, 8) != 0)
			continue;
		h->header_len = TRACKER_HEADER_LEN_1;
		memset(&h->io, 0, sizeof(h->io));
		h->crc = 0;
		h->crc = (uint32_t)crc32(0, (const Bytef *)h, TRACKER_HEADER_LEN_1);
	}
}

/* A block device's times do not move when it is written: its write counter
 * (boot, written) says, within one boot. */
static void test_trust_device(void)
{
	struct dev *o, *m, *os;
	struct dev_stamp st = { .size = SIZE, .mtime_ns = 1000, .ctime_ns = 1000, .boot = 7,
				.written = 100 };
	struct tracker *t;

	CHECK(dev_mem_create(&o, SIZE) == 0);
	CHECK(dev_mem_create(&m, map_size()) == 0);

	/* clean close, not written since: kept */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	t = open_on(o, m, &st, &os);
	expect_kept(t);
	close_on(t, os);

	/* clean close, then 8 sectors written on the device, times unchanged: lost */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	st.written += 8;
	t = open_on(o, m, &st, &os);
	expect_lost(t, "backing device was written while no hotsnap daemon served it (4 KiB");
	close_on(t, os);

	/* another boot: its count started over, nothing to tell: kept */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	st.boot = 8;
	st.written = 3;
	t = open_on(o, m, &st, &os);
	expect_kept(t);
	close_on(t, os);

	/* a map the first version wrote (no counter kept) is read and kept,
	 * and its next clean close keeps the counter */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	make_first_version(m);
	st.written += 8;
	t = open_on(o, m, &st, &os);
	expect_kept(t);
	close_on(t, os);
	st.written += 8;
	t = open_on(o, m, &st, &os);
	expect_lost(t, "backing device was written");
	close_on(t, os);

	dev_destroy(o);
	dev_destroy(m);
}

static void test_trust(void)
{
	struct dev *o, *m, *os;
	struct dev_stamp st = { SIZE, 1000, 1000 };
	struct tracker *t;

	CHECK(dev_mem_create(&o, SIZE) == 0);
	CHECK(dev_mem_create(&m, map_size()) == 0);

	/* clean close, nothing changed: kept */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	t = open_on(o, m, &st, &os);
	expect_kept(t);
	close_on(t, os);

	/* clean close, then the origin changed: lost */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	st.mtime_ns += 1;
	t = open_on(o, m, &st, &os);
	expect_lost(t, "changed while no hotsnap daemon served it");
	close_on(t, os);

	/* a crash; the origin's last change is old: kept */
	t = with_bookmark(o, m, &st, &os);
	abandon_on(t, os);
	st.mtime_ns = 1;
	t = open_on(o, m, &st, &os);
	expect_kept(t);
	close_on(t, os);

	/* a crash; the origin changed long after the last heartbeat: lost */
	t = with_bookmark(o, m, &st, &os);
	abandon_on(t, os);
	st.mtime_ns = clock_wall_ns() + 60 * UINT64_C(1000000000);
	t = open_on(o, m, &st, &os);
	expect_lost(t, "without a clean shutdown");
	close_on(t, os);

	/* a crash and a resize: lost */
	t = with_bookmark(o, m, &st, &os);
	abandon_on(t, os);
	st.size += 4096;
	t = open_on(o, m, &st, &os);
	expect_lost(t, "resized");
	close_on(t, os);

	/* both header slots damaged: lost */
	t = with_bookmark(o, m, &st, &os);
	close_on(t, os);
	dev_mem_data(m)[TRACKER_HB_SIZE + 100] ^= 1;
	dev_mem_data(m)[TRACKER_HB_SIZE + TRACKER_SLOT_SIZE + 100] ^= 1;
	t = open_on(o, m, &st, &os);
	expect_lost(t, "damaged");
	close_on(t, os);

	/* the map cannot be written: tracking stops, writes go on */
	struct dev *ms, *fm;
	struct tracker_geometry geo = { .size = SIZE, .chunk_shift = 12, .region_shift = REGION_SHIFT };
	CHECK(dev_mem_share(&ms, m) == 0);
	CHECK(dev_fault_wrap(&fm, ms, false) == 0);
	CHECK(dev_mem_share(&os, o) == 0);
	CHECK(tracker_open(&t, fm, os, &geo) == 0);
	dev_fault_fail(fm, -1, 0, EIO);
	tracker_mark(t, 200, 200); /* returns: the write may go on */
	struct tracker_status ts;
	tracker_status(t, &ts);
	CHECK(ts.broken && strstr(ts.lost_reason, "writing the change map failed"));
	struct bitmap got;
	bool exact;
	CHECK(bitmap_init(&got, NCH, false) == 0);
	CHECK(tracker_changed(t, 1, 2, &got, &exact) == -ESTALE);
	bitmap_destroy(&got);
	abandon_on(t, os);

	dev_destroy(o);
	dev_destroy(m);
}

int main(void)
{
	uint64_t seed = test_seed("test_tracker"), rs = seed;
	check_run_seed = seed;

	test_trust();
	test_trust_device();
	test_exact(&rs);
	test_crash(&rs);
	printf("test_tracker: ok\n");
	return 0;
}
