/* Engine scenarios on memory devices: each checks one promise of engine.h
 * or snapshot_backup.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine/snapshot_backup.h"
#include "engine_util.h"

#define MiB (UINT64_C(1) << 20)
#define CH 4096

static uint8_t *snapshot_of(struct snapshot *s, uint64_t size)
{
	uint8_t *buf = malloc(size);
	CHECK(snapshot_read(s, buf, size, 0) == 0);
	return buf;
}

static void test_plain_io(void)
{
	struct volume *v = mem_volume("plain", 4 * MiB, 12, 1 * MiB, 1 * MiB, NULL);
	uint8_t a[10000], b[10000];

	fill(a, sizeof(a), 1);
	CHECK(volume_write(v, a, sizeof(a), 1234, 0) == 0);
	CHECK(volume_read(v, b, sizeof(b), 1234) == 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	CHECK(volume_write(v, a, 10, 4 * MiB - 5, 0) == -EINVAL);
	CHECK(volume_read(v, b, 10, 4 * MiB - 5) == -EINVAL);
	volume_destroy(v);
}

static void test_snapshot_keeps_old_data(void)
{
	uint64_t size = 4 * MiB;
	struct volume *v = mem_volume("keep", size, 12, 1 * MiB, 2 * MiB, NULL);
	uint8_t *frozen = malloc(size), *now = malloc(size), buf[3 * CH];
	struct volume_stats vs;
	struct snapshot_stats ss;

	fill(frozen, size, 7);
	CHECK(volume_write(v, frozen, size, 0, 0) == 0);
	struct snapshot *s = take(v, "s1");
	/* partial-chunk write: the whole chunk is copied first */
	fill(buf, 100, 9);
	CHECK(volume_write(v, buf, 100, 5 * CH + 10, 0) == 0);
	/* a write over three chunks */
	fill(buf, sizeof(buf), 10);
	CHECK(volume_write(v, buf, sizeof(buf), 100 * CH, 0) == 0);
	/* discard and zeroes keep the old data too */
	CHECK(volume_discard(v, 200 * CH, 2 * CH) == 0);
	CHECK(volume_write_zeroes(v, 300 * CH + 512, 512, 0) == 0);

	uint8_t *got = snapshot_of(s, size);
	CHECK(memcmp(got, frozen, size) == 0);
	free(got);
	CHECK(volume_read(v, now, size, 0) == 0);
	CHECK(memcmp(now + 100 * CH, buf, sizeof(buf)) == 0);
	CHECK(now[200 * CH] == 0 && now[201 * CH + 5] == 0);

	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_chunks, 1 + 3 + 2 + 1);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.cow_bytes, 7 * CH);
	CHECK_EQ(ss.state, SNAPSHOT_ACTIVE);
	CHECK_EQ(ss.changed_chunks, 7);

	/* rewriting an already copied chunk copies nothing */
	CHECK(volume_write(v, buf, CH, 100 * CH, 0) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_chunks, 7);

	CHECK(snapshot_delete(s) == 0);
	CHECK(snapshot_read(s, buf, CH, 0) == -ESTALE);
	snapshot_put(s);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 0);
	CHECK_EQ(vs.snapshots, 0);
	free(frozen);
	free(now);
	volume_destroy(v);
}

static void test_one_copy_for_many_snapshots(void)
{
	uint64_t size = 1 * MiB;
	struct volume *v = mem_volume("share", size, 12, 1 * MiB, 1 * MiB, NULL);
	uint8_t a[CH], b[CH], c[CH], got[CH];
	struct volume_stats vs;

	fill(a, CH, 1);
	fill(b, CH, 2);
	fill(c, CH, 3);
	CHECK(volume_write(v, a, CH, 0, 0) == 0);
	struct snapshot *s1 = take(v, "s1");
	struct snapshot *s2 = take(v, "s2");
	CHECK(volume_write(v, b, CH, 0, 0) == 0); /* one copy of a for s1 and s2 */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_chunks, 1);
	CHECK_EQ(vs.diff_bytes, CH);
	struct snapshot *s3 = take(v, "s3");
	CHECK(volume_write(v, c, CH, 0, 0) == 0); /* a copy of b for s3 */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_chunks, 2);
	CHECK(snapshot_read(s1, got, CH, 0) == 0 && memcmp(got, a, CH) == 0);
	CHECK(snapshot_read(s2, got, CH, 0) == 0 && memcmp(got, a, CH) == 0);
	CHECK(snapshot_read(s3, got, CH, 0) == 0 && memcmp(got, b, CH) == 0);
	/* the shared copy lives until its last reader goes */
	snapshot_delete(s1);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 2 * CH);
	snapshot_delete(s2);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, CH);
	CHECK(snapshot_read(s3, got, CH, 0) == 0 && memcmp(got, b, CH) == 0);
	/* a duplicate name is refused */
	struct snapshot_request rq = { .volume = v, .name = "s3" };
	struct snapshot *dup;
	CHECK(snapshot_create_set(&rq, 1, &dup) == -EEXIST);
	snapshot_put(s1);
	snapshot_put(s2);
	snapshot_put(s3);
	volume_destroy(v);
}

static void test_overflow_fails_snapshot_not_write(void)
{
	uint64_t size = 4 * MiB;
	/* room for 8 copies only */
	struct volume *v = mem_volume("ovf", size, 12, 64 * 1024, 8 * CH, NULL);
	uint8_t *data = malloc(size), *back = malloc(size), got[CH];
	struct snapshot_stats ss;
	struct volume_stats vs;

	fill(data, size, 4);
	CHECK(volume_write(v, data, size, 0, 0) == 0);
	struct snapshot *s = take(v, "small");
	fill(data, size, 5);
	for (uint64_t off = 0; off < size; off += CH)
		CHECK(volume_write(v, data + off, CH, off, 0) == 0);
	CHECK(volume_read(v, back, size, 0) == 0);
	CHECK(memcmp(back, data, size) == 0); /* no write lost */
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	CHECK(strstr(ss.reason, "diff limit") != NULL);
	CHECK(snapshot_read(s, got, CH, 0) == -EIO);
	volume_settle(v); /* a failed snapshot's copies are freed once flushed */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 0); /* a failed snapshot holds nothing */
	/* after failure writes are plain again */
	CHECK(volume_write(v, data, CH, 0, 0) == 0);
	snapshot_delete(s);
	snapshot_put(s);
	free(data);
	free(back);
	volume_destroy(v);
}

static void test_consume(void)
{
	uint64_t size = 1 * MiB;
	struct volume *v = mem_volume("consume", size, 12, 256 * 1024, 1 * MiB, NULL);
	uint8_t a[4 * CH], b[4 * CH], got[4 * CH];
	struct volume_stats vs;
	struct snapshot_stats ss;

	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	CHECK(volume_write(v, a, sizeof(a), 0, 0) == 0);
	struct snapshot *s = take(v, "b");
	CHECK(volume_write(v, b, CH, 0, 0) == 0); /* chunk 0 copied */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, CH);
	/* the backup reads chunks 0..1 and is done with them */
	CHECK(snapshot_read(s, got, 2 * CH, 0) == 0 && memcmp(got, a, 2 * CH) == 0);
	CHECK(snapshot_consume(s, 0, 2 * CH) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 0); /* the held copy is released at once */
	CHECK(volume_write(v, b, 2 * CH, 0, 0) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_chunks, 1); /* no copy for consumed chunks */
	CHECK(snapshot_read(s, got, CH, CH) == -ENODATA);
	CHECK(snapshot_read(s, got, 2 * CH, 2 * CH) == 0 && memcmp(got, a + 2 * CH, 2 * CH) == 0);
	/* a partial chunk is not consumed */
	CHECK(snapshot_consume(s, 2 * CH + 1, CH) == 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.consumed_chunks, 2);
	snapshot_delete(s);
	snapshot_put(s);
	volume_destroy(v);
}

static void test_used_map(void)
{
	uint64_t size = 1 * MiB;
	uint64_t nch = size / CH;
	struct volume *v = mem_volume("used", size, 12, 256 * 1024, 1 * MiB, NULL);
	uint8_t a[CH], b[CH], got[CH], zero[CH] = { 0 };
	struct bitmap used;
	struct volume_stats vs;

	fill(a, CH, 1);
	fill(b, CH, 2);
	for (uint64_t c = 0; c < nch; c++)
		CHECK(volume_write(v, a, CH, c * CH, 0) == 0);
	CHECK(bitmap_init(&used, nch, false) == 0);
	CHECK(bitmap_set_range(&used, 0, 10) == 0); /* only chunks 0..9 in use */
	struct snapshot_request rq = { .volume = v, .name = "m", .used = &used };
	struct snapshot *s;
	CHECK(snapshot_create_set(&rq, 1, &s) == 0);
	CHECK(volume_write(v, b, CH, 20 * CH, 0) == 0); /* free: no copy */
	CHECK(volume_write(v, b, CH, 5 * CH, 0) == 0);  /* used: copied */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_chunks, 1);
	CHECK(snapshot_read(s, got, CH, 5 * CH) == 0 && memcmp(got, a, CH) == 0);
	CHECK(snapshot_read(s, got, CH, 20 * CH) == 0 && memcmp(got, zero, CH) == 0);
	CHECK(snapshot_read(s, got, CH, 30 * CH) == 0 && memcmp(got, zero, CH) == 0);
	/* applied later, a map releases copies already made of free chunks */
	struct snapshot *all = take(v, "all");
	CHECK(volume_write(v, a, CH, 40 * CH, 0) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 2 * CH);
	CHECK(snapshot_apply_used_map(all, &used) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, CH);
	bitmap_destroy(&used);
	snapshot_put(s);
	snapshot_put(all);
	volume_destroy(v);
}

struct ext_acc {
	uint64_t data, zero, consumed, next;
};
static int ext_cb(void *arg, uint64_t off, uint64_t len, enum extent_type t)
{
	struct ext_acc *a = arg;
	CHECK_EQ(off, a->next);
	a->next = off + len;
	if (t == EXTENT_DATA)
		a->data += len;
	else if (t == EXTENT_ZERO)
		a->zero += len;
	else
		a->consumed += len;
	return 0;
}

static void test_extents_and_changed(void)
{
	uint64_t size = 1 * MiB;
	struct volume *v = mem_volume("ext", size, 12, 256 * 1024, 1 * MiB, NULL);
	uint8_t a[CH];
	struct bitmap used;

	fill(a, CH, 1);
	CHECK(bitmap_init(&used, size / CH, false) == 0);
	CHECK(bitmap_set_range(&used, 0, 16) == 0);
	struct snapshot_request rq = { .volume = v, .name = "e", .used = &used };
	struct snapshot *s;
	CHECK(volume_write(v, a, CH, 8 * CH, 0) == 0); /* chunk 8 holds data */
	CHECK(snapshot_create_set(&rq, 1, &s) == 0);
	CHECK(snapshot_consume(s, 0, 4 * CH) == 0);
	CHECK(volume_write(v, a, CH, 100 * CH, 0) == 0);
	CHECK(volume_write(v, a, CH, 101 * CH, 0) == 0);
	CHECK(volume_write(v, a, CH, 8 * CH, 0) == 0);
	struct ext_acc acc = { 0 };
	CHECK(snapshot_extents(s, 0, size, ext_cb, &acc) == 0);
	CHECK_EQ(acc.next, size);
	CHECK_EQ(acc.consumed, 4 * CH);
	CHECK_EQ(acc.data, 12 * CH); /* memory device: no holes under pending */
	CHECK_EQ(acc.zero, size - 16 * CH);
	struct ext_acc ch = { 0 };
	CHECK(snapshot_changed(s, 0, size, ext_cb, &ch) == 0);
	CHECK_EQ(ch.data, 3 * CH);
	/* an original of zeros is a zero record: read and reported as zeros */
	CHECK(volume_write(v, a, CH, 9 * CH, 0) == 0);
	struct ext_acc z = { .next = 9 * CH };
	CHECK(snapshot_extents(s, 9 * CH, CH, ext_cb, &z) == 0);
	CHECK_EQ(z.zero, CH);
	bitmap_destroy(&used);
	snapshot_put(s);
	volume_destroy(v);
}

static void test_odd_sizes(void)
{
	/* 1 MiB chunks over a volume that ends in the middle of one */
	uint64_t size = 3 * MiB + 512 * 3;
	struct volume *v = mem_volume("odd", size, 20, 4 * MiB, 8 * MiB, NULL);
	uint8_t *a = malloc(size), *b = malloc(size), *got = malloc(size);

	fill(a, size, 1);
	fill(b, size, 2);
	CHECK(volume_write(v, a, size, 0, 0) == 0);
	struct snapshot *s = take(v, "odd");
	CHECK(volume_write(v, b + size - 700, 700, size - 700, 0) == 0);
	CHECK(volume_write(v, b + 1000, 3 * MiB, 1000, 0) == 0);
	CHECK(snapshot_read(s, got, size, 0) == 0);
	CHECK(memcmp(got, a, size) == 0);
	CHECK(snapshot_consume(s, 0, size) == 0);
	struct snapshot_stats ss;
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.consumed_chunks, 4);
	snapshot_put(s);
	free(a);
	free(b);
	free(got);
	volume_destroy(v);
}

static void test_set_of_two(void)
{
	struct volume *v1 = mem_volume("one", MiB, 12, 256 * 1024, MiB, NULL);
	struct volume *v2 = mem_volume("two", MiB, 13, 256 * 1024, MiB, NULL);
	uint8_t a[CH], b[CH], got[CH];
	struct snapshot *out[2];

	fill(a, CH, 1);
	fill(b, CH, 2);
	CHECK(volume_write(v1, a, CH, 0, 0) == 0);
	CHECK(volume_write(v2, a, CH, 0, 0) == 0);
	struct snapshot_request rq[2] = { { .volume = v1, .name = "x" },
					  { .volume = v2, .name = "x" } };
	CHECK(snapshot_create_set(rq, 2, out) == 0);
	CHECK(volume_write(v1, b, CH, 0, 0) == 0);
	CHECK(volume_write(v2, b, CH, 0, 0) == 0);
	CHECK(snapshot_read(out[0], got, CH, 0) == 0 && memcmp(got, a, CH) == 0);
	CHECK(snapshot_read(out[1], got, CH, 0) == 0 && memcmp(got, a, CH) == 0);
	/* a set naming one volume twice with the same name is refused whole */
	struct snapshot_request bad[2] = { { .volume = v1, .name = "y" },
					   { .volume = v1, .name = "y" } };
	struct snapshot *dup[2];
	CHECK(snapshot_create_set(bad, 2, dup) == -EEXIST);
	CHECK(volume_find_snapshot(v1, "y") == NULL);
	snapshot_put(out[0]);
	snapshot_put(out[1]);
	volume_destroy(v1);
	volume_destroy(v2);
}

static void test_snapshot_limit(void)
{
	struct volume *v = mem_volume("limit", MiB, 12, 256 * 1024, MiB, NULL);
	struct snapshot *s[ENGINE_MAX_SNAPSHOTS];
	char name[16];

	for (int i = 0; i < ENGINE_MAX_SNAPSHOTS; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		s[i] = take(v, name);
	}
	struct snapshot_request rq = { .volume = v, .name = "one-too-many" };
	struct snapshot *extra;
	CHECK(snapshot_create_set(&rq, 1, &extra) == -EBUSY);
	for (int i = 0; i < ENGINE_MAX_SNAPSHOTS; i++)
		snapshot_put(s[i]);
	volume_destroy(v);
}

/* Writers hammer the volume while readers compare every snapshot with the
 * copy frozen at its creation, through a buffer of two chunks. */
struct hammer {
	struct volume *v;
	uint64_t size;
	atomic_int stop;
	pthread_rwlock_t pause; /* writers share it; the test takes it to freeze */
};

struct writer_arg {
	struct hammer *h;
	uint64_t seed;
};

static void *writer_thread(void *arg)
{
	struct hammer *h = ((struct writer_arg *)arg)->h;
	uint64_t rs = ((struct writer_arg *)arg)->seed;
	uint8_t buf[3 * CH];

	while (!atomic_load(&h->stop)) {
		uint64_t len = 512 * (1 + rng_below(&rs, 3 * CH / 512));
		uint64_t off = 512 * rng_below(&rs, (h->size - len) / 512);
		fill(buf, len, rng_next(&rs));
		pthread_rwlock_rdlock(&h->pause);
		CHECK(volume_write(h->v, buf, len, off, 0) == 0);
		pthread_rwlock_unlock(&h->pause);
	}
	return NULL;
}

static void test_concurrent_writers(void)
{
	uint64_t size = 2 * MiB;
	struct hammer h = { .size = size };
	pthread_t tw[4];
	struct writer_arg wa[4];
	uint8_t *frozen = malloc(size), *got = malloc(size);

	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&h.pause, &ra);
	h.v = mem_volume("hammer", size, 12, 2 * CH, 4 * MiB, NULL);
	fill(frozen, size, 3);
	CHECK(volume_write(h.v, frozen, size, 0, 0) == 0);
	for (int i = 0; i < 4; i++) {
		wa[i].h = &h;
		wa[i].seed = 100 + (uint64_t)i;
		CHECK(pthread_create(&tw[i], NULL, writer_thread, &wa[i]) == 0);
	}
	for (int round = 0; round < 20; round++) {
		/* freeze the writers, keep the reference, snapshot, thaw */
		pthread_rwlock_wrlock(&h.pause);
		CHECK(volume_read(h.v, frozen, size, 0) == 0);
		struct snapshot *s = take(h.v, "r");
		pthread_rwlock_unlock(&h.pause);
		for (int k = 0; k < 5; k++) {
			usleep(2000);
			CHECK(snapshot_read(s, got, size, 0) == 0);
			CHECK(memcmp(got, frozen, size) == 0);
		}
		snapshot_delete(s);
		snapshot_put(s);
	}
	atomic_store(&h.stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(tw[i], NULL);
	struct volume_stats vs;
	volume_get_stats(h.v, &vs);
	printf("concurrent: %llu copies, %llu writer waits\n", (unsigned long long)vs.cow_chunks,
	       (unsigned long long)vs.writer_waits);
	CHECK_EQ(vs.diff_bytes, 0);
	free(frozen);
	free(got);
	volume_destroy(h.v);
}

/* A drained snapshot: writers overwrite everything through a buffer of
 * four chunks while a drainer takes every copy; the diff store never holds
 * more than the buffer, no writer is stuck, and every drained copy is the
 * snapshot's data. */
struct drainer {
	struct snapshot *s;
	const uint8_t *frozen;
	atomic_int stop;
	uint64_t drained;
	uint64_t max_diff;
};

static void *drainer_thread(void *arg)
{
	struct drainer *d = arg;
	struct volume *v = snapshot_volume(d->s);
	uint64_t chunks[64];
	uint8_t buf[CH];

	while (!atomic_load(&d->stop)) {
		size_t n = snapshot_held_chunks(d->s, chunks, 64, 10 * 1000000ull);
		for (size_t i = 0; i < n; i++) {
			int r = snapshot_read_held(d->s, chunks[i], buf);
			if (r == -EAGAIN)
				continue;
			CHECK(r == 0);
			CHECK(memcmp(buf, d->frozen + chunks[i] * CH, CH) == 0);
			CHECK(snapshot_consume(d->s, chunks[i] * CH, CH) == 0);
			d->drained++;
		}
		uint64_t diff = volume_diff_bytes(v);
		if (diff > d->max_diff)
			d->max_diff = diff;
	}
	return NULL;
}

static void test_drain_bounds_diff_store(void)
{
	uint64_t size = 2 * MiB, buffer = 4 * CH;
	struct volume *v = mem_volume("drain", size, 12, buffer, size, NULL);
	uint8_t *frozen = malloc(size), *b = malloc(size);
	struct drainer d = { 0 };
	pthread_t t;

	fill(frozen, size, 1);
	fill(b, size, 2);
	CHECK(volume_write(v, frozen, size, 0, 0) == 0);
	d.s = take(v, "drained");
	d.frozen = frozen;
	snapshot_set_drain(d.s, true);
	CHECK(pthread_create(&t, NULL, drainer_thread, &d) == 0);
	/* rewrite every chunk, in big and small writes */
	for (uint64_t off = 0; off < size; off += 64 * 1024)
		CHECK(volume_write(v, b + off, 64 * 1024, off, 0) == 0);
	atomic_store(&d.stop, 1);
	pthread_join(t, NULL);
	snapshot_set_drain(d.s, false);
	struct volume_stats vs;
	volume_get_stats(v, &vs);
	printf("drain: %llu chunks drained, diff store peak %llu bytes (buffer %llu)\n",
	       (unsigned long long)d.drained, (unsigned long long)vs.diff_peak_bytes,
	       (unsigned long long)buffer);
	CHECK(vs.diff_peak_bytes <= buffer);
	CHECK(d.max_diff <= buffer);
	CHECK_EQ(vs.cow_chunks, size / CH);
	snapshot_put(d.s);
	free(frozen);
	free(b);
	volume_destroy(v);
}

struct waiting_writer {
	struct volume *v;
	const uint8_t *data;
	uint64_t off;
};

static void *write_one(void *arg)
{
	struct waiting_writer *w = arg;
	CHECK(volume_write(w->v, w->data, CH, w->off, 0) == 0);
	return NULL;
}

/* RAM full of copies for a drain that leaves them to its block pass, and a
 * writer waiting for room: the drainer's yield lets the flusher spill a
 * batch, so the writer (and a block pass behind its range) goes on. */
static void test_drain_yield_unblocks_writer(void)
{
	uint64_t size = 1 * MiB;
	struct volume *v = mem_volume("yield", size, 12, 4 * CH, size, NULL);
	uint8_t *frozen = malloc(size), b[CH], got[CH];
	struct volume_stats vs;
	pthread_t t;

	fill(frozen, size, 41);
	fill(b, CH, 42);
	CHECK(volume_write(v, frozen, size, 0, 0) == 0);
	struct snapshot *s = take(v, "y");
	snapshot_set_drain(s, true);
	for (uint64_t c = 10; c < 14; c++) /* the buffer's four slots */
		CHECK(volume_write(v, b, CH, c * CH, 0) == 0);
	struct waiting_writer w = { .v = v, .data = b, .off = 20 * CH };
	CHECK(pthread_create(&t, NULL, write_one, &w) == 0);
	do { /* until it waits for room (it cannot go on by itself) */
		usleep(1000);
		volume_get_stats(v, &vs);
	} while (vs.writer_waits == 0);
	snapshot_drain_yield(s);
	pthread_join(t, NULL);
	CHECK(snapshot_read(s, got, CH, 20 * CH) == 0);
	CHECK(memcmp(got, frozen + 20 * CH, CH) == 0);
	volume_get_stats(v, &vs);
	CHECK(vs.diff_file_bytes > 0); /* drained copies were spilled */
	snapshot_set_drain(s, false);
	snapshot_put(s);
	volume_destroy(v);
	free(frozen);
}

/* A backup's first pass: every held copy once, in diff-file order, read in
 * batches; the block pass then leaves those chunks alone. */
/* hot: records in memory before the rest go to a copy index (0: none). */
static void test_copies_in_slot_order(uint32_t hot)
{
	uint64_t size = 4 * MiB, nch = size / CH;
	struct volume *v = mem_volume_rest("slots", size, 12, 64 * 1024, 4 * MiB, hot, NULL);
	uint8_t *frozen = malloc(size), *got = malloc(size), *batch = malloc(37 * CH), b[CH];
	uint64_t chunks[50], all[1024];
	uint32_t slots[50], all_slots[1024], wrong[37];
	bool seen[1024] = { false }, ok[37];
	size_t total = 0;

	fill(frozen, size, 3);
	CHECK(volume_write(v, frozen, size, 0, 0) == 0);
	struct snapshot *s = take(v, "slots");
	/* 300 chunks in a scattered order: copies land in the file unsorted */
	for (uint64_t i = 0; i < 300; i++) {
		uint64_t c = (i * 577) % nch;
		fill(b, CH, 100 + i);
		CHECK(volume_write(v, b, CH, c * CH, 0) == 0);
	}
	if (hot) {
		struct volume_stats vs;
		volume_wait_rest(v);
		volume_get_stats(v, &vs);
		CHECK(vs.records_at_rest > 250); /* all but the buffer's and the hot ones */
		CHECK(vs.records_in_memory <= hot + 16);
	}
	for (uint64_t cursor = 0; cursor != UINT64_MAX;) {
		size_t n = snapshot_held_by_slot(s, chunks, slots, 50, &cursor);
		for (size_t i = 0; i < n; i++) {
			CHECK(chunks[i] < nch && !seen[chunks[i]]);
			CHECK(i == 0 || slots[i] > slots[i - 1]);
			seen[chunks[i]] = true;
			all_slots[total] = slots[i];
			all[total++] = chunks[i];
		}
	}
	CHECK_EQ(total, 300);
	struct bitmap taken;
	CHECK(bitmap_init(&taken, nch, false) == 0);
	for (size_t i = 0; i < total; i += 37) {
		size_t m = total - i < 37 ? total - i : 37;
		/* by the slots given, by chunk alone, and by slots that name
		 * other records (as when slots are reused between the calls) */
		const uint32_t *by = all_slots + i;
		if (i / 37 % 3 == 1)
			by = NULL;
		if (i / 37 % 3 == 2) {
			for (size_t k = 0; k < m; k++)
				wrong[k] = k + 1 < m ? all_slots[i + k + 1] : UINT32_MAX;
			by = wrong;
		}
		CHECK(snapshot_read_held_batch(s, all + i, by, m, batch, ok) == 0);
		for (size_t k = 0; k < m; k++) {
			CHECK(ok[k]);
			CHECK(memcmp(batch + k * CH, frozen + all[i + k] * CH, CH) == 0);
			CHECK(bitmap_set_range(&taken, all[i + k], 1) == 0);
		}
	}
	memset(got, 0xee, size);
	CHECK(snapshot_read_except(s, got, size, 0, &taken) == 0);
	for (uint64_t c = 0; c < nch; c++) {
		if (seen[c])
			CHECK(got[c * CH] == 0xee && got[c * CH + CH - 1] == 0xee);
		else
			CHECK(memcmp(got + c * CH, frozen + c * CH, CH) == 0);
	}
	bitmap_destroy(&taken);
	snapshot_delete(s);
	snapshot_put(s);
	volume_destroy(v);
	free(frozen);
	free(got);
	free(batch);
}

/* Copy records at rest (coldstore.h): memory holds the hot target however
 * many copies there are; two snapshots share records at rest, one lets go
 * of them (their masks are rewritten in place), the other still reads
 * every chunk, zero records included, and reports them in its extents. */
static void test_records_at_rest(void)
{
	uint64_t size = 32 * MiB, nch = size / CH;
	struct volume *v = mem_volume_rest("rest", size, 12, 64 * 1024, size, 32, NULL);
	uint8_t *frozen = malloc(size), *got = malloc(size), *next = malloc(size);
	struct volume_stats vs, before;

	struct volume_stats empty;
	volume_get_stats(v, &empty);
	fill(frozen, size, 5);
	for (uint64_t c = 0; c < nch; c += 7)
		memset(frozen + c * CH, 0, CH); /* originals of zeros: zero records */
	CHECK(volume_write(v, frozen, size, 0, 0) == 0);
	struct snapshot *s1 = take(v, "s1"), *s2 = take(v, "s2");
	fill(next, size, 6);
	CHECK(volume_write(v, next, size, 0, 0) == 0);
	volume_wait_rest(v);
	volume_get_stats(v, &before);
	CHECK(before.records_in_memory <= 32 + 16);
	CHECK(before.records_in_memory + before.records_at_rest == nch);
	/* one record per chunk in memory would be 38 bytes each */
	CHECK(before.map_memory < nch * 38 / 4);
	CHECK(before.records_rested >= before.records_at_rest);

	/* a read brings the records back; unchanged, they rest again without
	 * being written (only those that never rested may be) */
	CHECK(snapshot_read(s2, got, size, 0) == 0);
	CHECK(memcmp(got, frozen, size) == 0);
	volume_wait_rest(v);
	volume_get_stats(v, &vs);
	CHECK(vs.records_in_memory <= 32 + 16);
	CHECK(vs.records_rested - before.records_rested <= 32 + 16);

	/* s1 lets go of everything: s2's records stay, rewritten */
	CHECK(snapshot_consume(s1, 0, size) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, before.diff_bytes);
	CHECK(snapshot_read(s2, got, size, 0) == 0);
	CHECK(memcmp(got, frozen, size) == 0);
	struct ext_acc acc = { 0 };
	CHECK(snapshot_extents(s2, 0, size, ext_cb, &acc) == 0);
	CHECK_EQ(acc.zero, ((nch + 6) / 7) * CH);

	/* s2 consumes half: that half's space comes back */
	CHECK(snapshot_consume(s2, 0, size / 2) == 0);
	volume_settle(v);
	volume_get_stats(v, &vs);
	CHECK(vs.diff_bytes < before.diff_bytes * 6 / 10);
	CHECK(snapshot_read(s2, got, size / 2, size / 2) == 0);
	CHECK(memcmp(got, frozen + size / 2, size / 2) == 0);
	CHECK(snapshot_delete(s2) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 0);
	CHECK_EQ(vs.records_at_rest, 0);
	CHECK(snapshot_delete(s1) == 0);
	/* no snapshot left: what the burst of records took is given back */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.records_in_memory, 0);
	CHECK(vs.map_memory <= empty.map_memory);
	snapshot_put(s1);
	snapshot_put(s2);
	volume_destroy(v);
	free(frozen);
	free(got);
	free(next);
}

/* A new diff directory: the copy index moves there once no record rests
 * in the old one; until then the records at rest are read from the old. */
static void test_copy_index_moves(void)
{
	uint64_t size = 4 * MiB;
	struct volume *v = mem_volume_rest("move", size, 12, 16 * CH, size, 4, NULL);
	uint8_t *data = malloc(size), *got = malloc(size), b[CH];
	struct volume_stats vs;
	struct dev *diff, *index;

	fill(data, size, 31);
	CHECK(volume_write(v, data, size, 0, 0) == 0);
	struct snapshot *s = take(v, "a");
	fill(b, CH, 32);
	for (uint64_t c = 0; c < 64; c++)
		CHECK(volume_write(v, b, CH, c * CH, 0) == 0);
	volume_wait_rest(v);
	volume_get_stats(v, &vs);
	CHECK(vs.records_at_rest > 0);
	CHECK(dev_mem_create(&diff, size + CH) == 0);
	index = mem_copy_index(size, 12, size);
	const uint8_t *fresh = dev_mem_data(index);
	volume_set_diff_file(v, diff, index, "elsewhere");
	CHECK(snapshot_read(s, got, size, 0) == 0);
	CHECK(memcmp(got, data, size) == 0);
	CHECK(snapshot_delete(s) == 0);
	snapshot_put(s);

	/* nothing rests in the old index now: new records go to the new one */
	memcpy(data, got, size);
	for (uint64_t c = 0; c < 64; c++)
		memcpy(data + c * CH, b, CH);
	s = take(v, "b");
	for (uint64_t c = 0; c < 64; c++)
		CHECK(volume_write(v, data + 100 * CH, CH, c * CH, 0) == 0);
	volume_wait_rest(v);
	volume_get_stats(v, &vs);
	CHECK(vs.records_at_rest > 0);
	bool used = false;
	for (size_t i = 0; i < 64 * 16 && !used; i++)
		used = fresh[i] != 0;
	CHECK(used);
	CHECK(snapshot_read(s, got, size, 0) == 0);
	CHECK(memcmp(got, data, size) == 0);
	CHECK(snapshot_delete(s) == 0);
	snapshot_put(s);
	/* the last snapshot gone, the index gives its blocks back */
	bool punched = true;
	for (size_t i = 0; i < index->size && punched; i++)
		punched = fresh[i] == 0;
	CHECK(punched);
	volume_destroy(v);
	free(data);
	free(got);
}

/* Zeros cost nothing (engine.h invariant 6): originals that read zeros are
 * zero records, with no RAM or diff-file space, even when the diff file is
 * full; a data chunk that finds it full still fails the snapshot. */
static void test_zero_records(void)
{
	uint64_t size = 4 * MiB, nch = size / CH;
	/* room for 2 copies only */
	struct volume *v = mem_volume("zeros", size, 12, 64 * 1024, 2 * CH, NULL);
	uint8_t *frozen = calloc(1, size), *got = malloc(size), b[CH], batch[4 * CH];
	struct snapshot_stats ss;
	struct volume_stats vs;
	uint64_t held[8];
	uint32_t held_slots[8];
	bool ok[4];

	/* chunks 0..3 hold data; the rest never written */
	for (uint64_t c = 0; c < 4; c++)
		fill(frozen + c * CH, CH, 10 + c);
	CHECK(volume_write(v, frozen, 4 * CH, 0, 0) == 0);
	struct snapshot *s = take(v, "z"); /* every chunk protected */
	struct snapshot *t = take(v, "z2");
	/* overwrite every zero chunk, twice over in one big write */
	uint8_t *junk = malloc(size);
	fill(junk, size, 77);
	CHECK(volume_write(v, junk + 4 * CH, size - 4 * CH, 4 * CH, 0) == 0);
	CHECK(volume_discard(v, 8 * CH, 64 * CH) == 0);
	CHECK(volume_write_zeroes(v, 100 * CH, 8 * CH, 0) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_bytes, 0);
	CHECK_EQ(vs.zero_chunks, nch - 4);
	CHECK_EQ(vs.diff_bytes, 0);
	CHECK_EQ(vs.ram_bytes, 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_ACTIVE);
	CHECK_EQ(ss.held_bytes, 0);
	CHECK_EQ(ss.zero_chunks, nch - 4);
	CHECK_EQ(ss.protected_chunks, 4);
	/* two data chunks fit; the third overflows the 2-chunk limit */
	fill(b, CH, 5);
	CHECK(volume_write(v, b, CH, 0, 0) == 0);
	CHECK(volume_write(v, b, CH, 1 * CH, 0) == 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_ACTIVE);
	CHECK_EQ(ss.held_bytes, 2 * CH);
	memset(got, 0xee, size);
	CHECK(snapshot_read(s, got, size, 0) == 0);
	CHECK(memcmp(got, frozen, size) == 0);
	/* a backup's drain sees zero records as held chunks that read zeros */
	CHECK(snapshot_read_held(s, 50, b) == 0);
	CHECK(b[0] == 0 && memcmp(b, b + 1, CH - 1) == 0);
	uint64_t pick[4] = { 1, 60, 0, 61 };
	memset(batch, 0xee, sizeof(batch));
	CHECK(snapshot_read_held_batch(s, pick, NULL, 4, batch, ok) == 0);
	CHECK(ok[0] && ok[1] && ok[2] && ok[3]);
	CHECK(memcmp(batch, frozen + CH, CH) == 0);
	CHECK(memcmp(batch + CH, frozen + 60 * CH, CH) == 0);
	CHECK(memcmp(batch + 2 * CH, frozen, CH) == 0);
	/* the diff-file order lists only copies with data */
	uint64_t cursor = 0;
	size_t n = 0;
	while (cursor != UINT64_MAX)
		n += snapshot_held_by_slot(s, held + n, held_slots + n, 8 - n, &cursor);
	CHECK_EQ(n, 2);
	/* consuming releases zero records too */
	CHECK(snapshot_consume(s, 50 * CH, 10 * CH) == 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.zero_chunks, nch - 4); /* all time */
	CHECK(volume_write(v, b, CH, 2 * CH, 0) == 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	CHECK(strstr(ss.reason, "diff limit") != NULL);
	/* consuming and deleting release zero records as well */
	snapshot_delete(s);
	snapshot_put(s);
	snapshot_get_stats(t, &ss); /* it needed the same copy */
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	snapshot_delete(t);
	snapshot_put(t);
	volume_settle(v);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_bytes, 0);
	free(junk);
	free(frozen);
	free(got);
	volume_destroy(v);
}

/* A discard over holes of a file origin (the second weekly fstrim) copies
 * nothing and reads nothing; a discard over data still copies. */
static void test_discard_over_holes(void)
{
	uint64_t size = 8 * MiB;
	char dir[] = "/tmp/hs-holes-XXXXXX", path[64];
	struct dev *origin, *diff;
	struct volume *v;
	struct volume_stats vs;
	uint8_t *frozen = calloc(1, size), *got = malloc(size);

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/origin", dir);
	int fd = open(path, O_CREAT | O_RDWR, 0600);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	close(fd);
	CHECK(dev_file_open(&origin, path, DEV_FILE_BUFFERED) == 0);
	CHECK(dev_mem_create(&diff, 1 * MiB) == 0);
	struct volume_config cfg = { .name = "holes", .size = size, .chunk_shift = 16,
				     .cow_buffer = 256 * 1024, .diff_limit = 512 * 1024 };
	CHECK(volume_create(&v, &cfg, origin, diff) == 0);
	fill(frozen + 2 * MiB, 128 * 1024, 9); /* two chunks of data, the rest a hole */
	CHECK(volume_write(v, frozen + 2 * MiB, 128 * 1024, 2 * MiB, 0) == 0);
	CHECK(volume_flush(v) == 0);
	struct snapshot *s = take(v, "h");
	CHECK(volume_discard(v, 0, size) == 0);
	CHECK(volume_discard(v, 0, size) == 0);
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.cow_bytes, 128 * 1024);
	CHECK_EQ(vs.zero_chunks, size / (64 * 1024) - 2);
	CHECK(snapshot_read(s, got, size, 0) == 0);
	CHECK(memcmp(got, frozen, size) == 0);
	snapshot_delete(s);
	snapshot_put(s);
	volume_destroy(v);
	unlink(path);
	rmdir(dir);
	free(frozen);
	free(got);
}

/* The diff store of a running snapshot grows and shrinks at once, and moves
 * to a new file once the old one holds nothing. */
static void test_diff_store_live(void)
{
	uint64_t size = 4 * MiB;
	struct volume *v = mem_volume("live", size, 12, 16 * CH, 8 * CH, NULL);
	uint8_t *data = malloc(size), b[CH];
	struct snapshot_stats ss;
	struct volume_stats vs;
	struct dev *bigger;

	fill(data, size, 21);
	CHECK(volume_write(v, data, size, 0, 0) == 0);
	/* empty: the new file takes over at once */
	CHECK(dev_mem_create(&bigger, 64 * CH) == 0);
	volume_set_diff_file(v, bigger, NULL, "elsewhere");
	struct snapshot *s = take(v, "live");
	fill(b, CH, 22);
	for (uint64_t c = 0; c < 6; c++)
		CHECK(volume_write(v, b, CH, c * CH, 0) == 0);
	CHECK(volume_set_diff_limit(v, 4 * CH) == -EBUSY); /* 6 held */
	volume_get_stats(v, &vs);
	CHECK_EQ(vs.diff_limit, 8 * CH);
	CHECK(volume_set_diff_limit(v, 32 * CH) == 0);
	for (uint64_t c = 6; c < 30; c++)
		CHECK(volume_write(v, b, CH, c * CH, 0) == 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_ACTIVE);
	CHECK_EQ(ss.held_bytes, 30 * CH);
	/* shrink to what is held, then the next copy overflows */
	CHECK(volume_set_diff_limit(v, 30 * CH) == 0);
	uint8_t *got = malloc(size);
	CHECK(snapshot_read(s, got, size, 0) == 0);
	CHECK(memcmp(got, data, size) == 0);
	CHECK(volume_write(v, b, CH, 40 * CH, 0) == 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	snapshot_delete(s);
	snapshot_put(s);
	free(got);
	free(data);
	volume_destroy(v);
}

/* A sole claim (restore, revert) is granted only when no more than the
 * given openers hold the volume, once at a time; what opens is counted. */
static void test_sole_claim(void)
{
	struct volume *v = mem_volume("sole", 4 * MiB, 12, 1 * MiB, 1 * MiB, NULL);

	volume_openers_add(v, 1); /* the daemon's own export */
	CHECK(!volume_claimed(v));
	volume_openers_add(v, 1); /* a client */
	CHECK(!volume_claim_sole(v, 1));
	CHECK(!volume_claimed(v)); /* a refused claim leaves nothing behind */
	volume_openers_add(v, -1);
	CHECK(volume_claim_sole(v, 1));
	CHECK(volume_claimed(v));
	CHECK(!volume_claim_sole(v, 1)); /* one job at a time */
	volume_release_sole(v);
	CHECK(!volume_claimed(v));
	CHECK(volume_claim_sole(v, 1));
	volume_release_sole(v);
	volume_openers_add(v, -1);
	volume_destroy(v);
}

int main(void)
{
	test_plain_io();
	test_snapshot_keeps_old_data();
	test_one_copy_for_many_snapshots();
	test_overflow_fails_snapshot_not_write();
	test_consume();
	test_used_map();
	test_extents_and_changed();
	test_odd_sizes();
	test_set_of_two();
	test_snapshot_limit();
	test_concurrent_writers();
	test_drain_bounds_diff_store();
	test_drain_yield_unblocks_writer();
	test_copies_in_slot_order(0);
	test_copies_in_slot_order(4);
	test_records_at_rest();
	test_copy_index_moves();
	test_zero_records();
	test_discard_over_holes();
	test_diff_store_live();
	test_sole_claim();
	printf("test_engine: ok\n");
	return 0;
}
