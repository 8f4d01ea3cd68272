/* I/O errors under the engine: origin errors go back to the writer; diff
 * store errors fail the snapshots that needed the copy, never the write. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine/dev_fault.h"
#include "engine_util.h"

#define MiB (UINT64_C(1) << 20)
#define CH 4096

struct rig {
	struct volume *v;
	struct dev *origin; /* fault wrappers, owned by the volume */
	struct dev *diff;
};

/* With index, copy records rest (4 at most in memory) in a copy index
 * behind a fault wrapper too, returned there. */
static struct rig make_rig_rest(uint64_t size, uint64_t buffer, struct dev **index)
{
	struct rig g;
	struct dev *o, *d;
	struct volume_config cfg = { .name = "faulty", .size = size, .chunk_shift = 12,
				     .cow_buffer = buffer, .diff_limit = size };

	if (index) {
		CHECK(dev_fault_wrap(index, mem_copy_index(size, 12, size), false) == 0);
		cfg.copy_index = *index;
		cfg.hot_records = 4;
	}
	CHECK(dev_mem_create(&o, size) == 0);
	CHECK(dev_mem_create(&d, size) == 0);
	CHECK(dev_fault_wrap(&g.origin, o, false) == 0);
	CHECK(dev_fault_wrap(&g.diff, d, false) == 0);
	CHECK(volume_create(&g.v, &cfg, g.origin, g.diff) == 0);
	return g;
}

static struct rig make_rig(uint64_t size, uint64_t buffer)
{
	return make_rig_rest(size, buffer, NULL);
}

static void test_origin_write_error_goes_to_writer(void)
{
	struct rig g = make_rig(MiB, 64 * 1024);
	uint8_t a[CH], b[CH], got[CH];
	struct snapshot_stats ss;

	fill(a, CH, 1);
	fill(b, CH, 2);
	CHECK(volume_write(g.v, a, CH, 0, 0) == 0);
	struct snapshot *s = take(g.v, "s");
	dev_fault_fail(g.origin, -1, 0, EIO); /* every write from now on */
	CHECK(volume_write(g.v, b, CH, 0, 0) == -EIO);
	CHECK(volume_flush(g.v) == -EIO);
	dev_fault_fail(g.origin, -1, -1, EIO);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_ACTIVE); /* the snapshot kept its copy */
	CHECK(snapshot_read(s, got, CH, 0) == 0 && memcmp(got, a, CH) == 0);
	CHECK(volume_write(g.v, b, CH, 0, 0) == 0); /* and works again */
	snapshot_put(s);
	volume_destroy(g.v);
}

static void test_origin_read_error_during_copy(void)
{
	struct rig g = make_rig(MiB, 64 * 1024);
	uint8_t b[CH], got[CH];
	struct snapshot_stats ss;

	fill(b, CH, 2);
	struct snapshot *s = take(g.v, "s");
	dev_fault_fail(g.origin, 0, -1, EIO); /* reading originals fails */
	/* the write itself goes through: only the snapshot cannot be kept */
	CHECK(volume_write(g.v, b, CH, 4 * CH, 0) == 0);
	dev_fault_fail(g.origin, -1, -1, EIO);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	CHECK(strstr(ss.reason, "reading the original") != NULL);
	CHECK(snapshot_read(s, got, CH, 0) == -EIO);
	CHECK(volume_read(g.v, got, CH, 4 * CH) == 0 && memcmp(got, b, CH) == 0);
	snapshot_put(s);
	volume_destroy(g.v);
}

static void test_diff_write_error_fails_snapshot_not_write(void)
{
	/* a buffer of 4 chunks: the flusher has to write to the diff file */
	struct rig g = make_rig(MiB, 4 * CH);
	uint8_t *data = malloc(MiB), *back = malloc(MiB);
	struct snapshot_stats ss;

	fill(data, MiB, 1);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0);
	struct snapshot *s = take(g.v, "s");
	dev_fault_fail(g.diff, -1, 0, ENOSPC);
	fill(data, MiB, 2);
	for (uint64_t off = 0; off < MiB; off += CH)
		CHECK(volume_write(g.v, data + off, CH, off, 0) == 0);
	CHECK(volume_read(g.v, back, MiB, 0) == 0 && memcmp(back, data, MiB) == 0);
	CHECK(dev_fault_failures(g.diff) > 0);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	CHECK(strstr(ss.reason, "diff file") != NULL && strstr(ss.reason, "No space") != NULL);
	struct volume_stats vs;
	volume_settle(g.v); /* a failed snapshot's copies are freed once flushed */
	volume_get_stats(g.v, &vs);
	CHECK_EQ(vs.diff_bytes, 0);
	CHECK_EQ(vs.ram_bytes, 0);
	snapshot_put(s);
	free(data);
	free(back);
	volume_destroy(g.v);
}

static void test_diff_read_error_fails_snapshot(void)
{
	struct rig g = make_rig(MiB, 4 * CH);
	uint8_t *data = malloc(MiB), got[CH];
	struct snapshot_stats ss;

	fill(data, MiB, 1);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0);
	struct snapshot *s = take(g.v, "s");
	fill(data, MiB, 2);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0); /* copies spill to the file */
	dev_fault_fail(g.diff, 0, -1, EIO);
	/* some chunk is in the file by now; reading it fails the snapshot */
	int r = 0;
	for (uint64_t off = 0; off < MiB && r == 0; off += CH)
		r = snapshot_read(s, got, CH, off);
	CHECK(r == -EIO);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	CHECK(strstr(ss.reason, "reading a copy") != NULL);
	snapshot_put(s);
	free(data);
	volume_destroy(g.v);
}

/* A snapshot deleted while the flusher writes its copies has freed their
 * space when the delete returns: the delete waits for that write. */
struct releaser {
	struct rig *g;
	struct snapshot *s;
	atomic_bool checked; /* the deleter read the stats */
};

static void *release_when_deleted(void *arg)
{
	struct releaser *rl = arg;
	struct snapshot_stats ss;

	do {
		snapshot_get_stats(rl->s, &ss);
		sched_yield();
	} while (ss.state != SNAPSHOT_DELETED);
	/* A delete that did not wait has read the stats by now: let it show
	 * what it saw before the held write ends.  One that waits is released
	 * after a moment; either way the check below decides. */
	for (int i = 0; i < 100 && !atomic_load(&rl->checked); i++)
		usleep(1000);
	dev_fault_hold_writes(rl->g->diff, false);
	return NULL;
}

static void test_delete_waits_for_flush_in_flight(void)
{
	struct rig g = make_rig(MiB, 16 * CH);
	uint8_t buf[CH];
	struct volume_stats vs;
	pthread_t t;

	fill(buf, CH, 7);
	/* data under every chunk: originals of zeros would need no flush */
	for (uint64_t c = 0; c < 12; c++)
		CHECK(volume_write(g.v, buf, CH, c * CH, 0) == 0);
	struct snapshot *s = take(g.v, "s");
	struct releaser rl = { .g = &g, .s = s };
	dev_fault_hold_writes(g.diff, true);
	/* past half the buffer: the flusher takes a batch and is held */
	for (uint64_t c = 0; c < 12; c++)
		CHECK(volume_write(g.v, buf, CH, c * CH, 0) == 0);
	dev_fault_wait_held(g.diff);
	CHECK(pthread_create(&t, NULL, release_when_deleted, &rl) == 0);
	CHECK(snapshot_delete(s) == 0);
	volume_get_stats(g.v, &vs);
	atomic_store(&rl.checked, true);
	CHECK_EQ(vs.diff_bytes, 0);
	pthread_join(t, NULL);
	snapshot_put(s);
	volume_destroy(g.v);
}

/* Records that cannot be written to rest stay in memory: the snapshot
 * stays whole. */
static void test_index_write_error_keeps_records(void)
{
	struct dev *index;
	struct rig g = make_rig_rest(MiB, 4 * CH, &index);
	uint8_t *old = malloc(MiB), *data = malloc(MiB), *got = malloc(MiB);
	struct volume_stats vs;

	fill(old, MiB, 1);
	CHECK(volume_write(g.v, old, MiB, 0, 0) == 0);
	struct snapshot *s = take(g.v, "s");
	dev_fault_fail(index, -1, 0, EIO);
	fill(data, MiB, 2);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0);
	volume_wait_rest(g.v);
	CHECK(dev_fault_failures(index) > 0);
	volume_get_stats(g.v, &vs);
	CHECK_EQ(vs.records_at_rest, 0);
	CHECK_EQ(vs.records_in_memory, MiB / CH);
	CHECK(snapshot_read(s, got, MiB, 0) == 0);
	CHECK(memcmp(got, old, MiB) == 0);
	CHECK(snapshot_delete(s) == 0);
	snapshot_put(s);
	volume_get_stats(g.v, &vs);
	CHECK_EQ(vs.diff_bytes, 0);
	free(old);
	free(data);
	free(got);
	volume_destroy(g.v);
}

/* Records at rest that cannot be read back fail the snapshots that hold
 * copies, saying why; the volume goes on, and the diff space comes back. */
static void test_index_read_error_fails_snapshot(void)
{
	struct dev *index;
	struct rig g = make_rig_rest(MiB, 4 * CH, &index);
	uint8_t *data = malloc(MiB), *got = malloc(MiB);
	struct volume_stats vs;
	struct snapshot_stats ss;

	fill(data, MiB, 1);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0);
	struct snapshot *s = take(g.v, "s");
	fill(data, MiB, 2);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0);
	volume_wait_rest(g.v);
	volume_get_stats(g.v, &vs);
	CHECK(vs.records_at_rest > 0);
	dev_fault_fail(index, 0, -1, EIO);
	CHECK(snapshot_read(s, got, MiB, 0) == -EIO);
	snapshot_get_stats(s, &ss);
	CHECK_EQ(ss.state, SNAPSHOT_FAILED);
	CHECK(strstr(ss.reason, "copy records") != NULL);
	volume_settle(g.v);
	volume_get_stats(g.v, &vs);
	CHECK_EQ(vs.records_at_rest, 0);
	CHECK_EQ(vs.diff_bytes, 0);
	fill(data, MiB, 3);
	CHECK(volume_write(g.v, data, MiB, 0, 0) == 0);
	CHECK(volume_read(g.v, got, MiB, 0) == 0);
	CHECK(memcmp(got, data, MiB) == 0);
	CHECK(snapshot_delete(s) == 0);
	snapshot_put(s);
	free(data);
	free(got);
	volume_destroy(g.v);
}

int main(void)
{
	test_origin_write_error_goes_to_writer();
	test_origin_read_error_during_copy();
	test_diff_write_error_fails_snapshot_not_write();
	test_diff_read_error_fails_snapshot();
	test_delete_waits_for_flush_in_flight();
	test_index_write_error_keeps_records();
	test_index_read_error_fails_snapshot();
	printf("test_engine_faults: ok\n");
	return 0;
}
