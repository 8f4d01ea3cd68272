/* Revert on memory volumes: a volume reverted to an older snapshot reads as
 * that snapshot, writing back only what changed since it (zeros as
 * write-zeroes); a newer snapshot taken in between still reads as it did;
 * with a used-block map, the chunks in use read as the snapshot (free
 * ones are free space either way); a consumed snapshot
 * and a failed one are refused and change nothing.  Prints its seed;
 * HOTSNAP_SEED=N replays. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "engine_util.h"
#include "revert/revert.h"

#define MiB (UINT64_C(1) << 20)
#define SIZE (8 * MiB)
#define CHUNK 4096

static uint8_t *read_all_snap(struct snapshot *s)
{
	uint8_t *b = malloc(SIZE);
	CHECK(snapshot_read(s, b, SIZE, 0) == 0);
	return b;
}

static void check_volume(struct volume *v, const uint8_t *want)
{
	uint8_t *got = malloc(SIZE);
	CHECK(volume_read(v, got, SIZE, 0) == 0);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
}

static void scribble(struct volume *v, uint64_t *rs, unsigned n)
{
	uint8_t buf[3 * CHUNK];
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = rng_below(rs, SIZE / CHUNK - 3) * CHUNK + rng_below(rs, 2) * 512;
		size_t len = (size_t)(1 + rng_below(rs, 2)) * CHUNK;
		if (rng_below(rs, 4) == 0)
			CHECK(volume_write_zeroes(v, off, len, VOLUME_MAY_UNMAP) == 0);
		else {
			fill(buf, len, rng_next(rs));
			CHECK(volume_write(v, buf, len, off, 0) == 0);
		}
	}
}

static int revert(struct snapshot *s, struct revert_job *job)
{
	memset(job, 0, sizeof(*job));
	job->snap = s;
	return revert_job_run(job, NULL, NULL);
}

int main(void)
{
	uint64_t seed = test_seed("test_revert"), rs = seed;
	struct revert_job job;
	uint8_t *a_view, *b_view;

	check_run_seed = seed;
	struct volume *v = mem_volume("vol", SIZE, 12, MiB, SIZE, NULL);
	scribble(v, &rs, 2000);
	struct snapshot *a = take(v, "a");
	a_view = read_all_snap(a);
	scribble(v, &rs, 300);
	struct snapshot *b = take(v, "b");
	b_view = read_all_snap(b);
	scribble(v, &rs, 300);

	/* back to a: only what changed is written; b keeps its view */
	struct snapshot_stats st;
	snapshot_get_stats(a, &st);
	CHECK(revert(a, &job) == 0);
	CHECK_EQ(job.changed, st.changed_chunks * CHUNK);
	CHECK_EQ(job.bytes_written + job.bytes_zeroed, job.changed);
	CHECK(job.changed > 0 && job.changed < SIZE);
	check_volume(v, a_view);
	uint8_t *b_now = read_all_snap(b);
	CHECK(memcmp(b_now, b_view, SIZE) == 0);
	free(b_now);
	/* and again: a no-op in content */
	CHECK(revert(a, &job) == 0);
	check_volume(v, a_view);

	/* free chunks of a used-block map come back as zeros */
	struct bitmap used;
	CHECK(bitmap_init(&used, SIZE / CHUNK, false) == 0);
	for (uint64_t c = 0; c < SIZE / CHUNK; c += 2)
		CHECK(bitmap_set_range(&used, c, 1) == 0);
	struct snapshot_request rq = { .volume = v, .name = "u", .used = &used };
	struct snapshot *u;
	CHECK(snapshot_create_set(&rq, 1, &u) == 0);
	uint8_t *u_view = read_all_snap(u);
	for (uint64_t c = 1; c < SIZE / CHUNK; c += 2)
		for (uint64_t i = 0; i < CHUNK; i++)
			CHECK(u_view[c * CHUNK + i] == 0);
	scribble(v, &rs, 300);
	CHECK(revert(u, &job) == 0);
	uint8_t *now = malloc(SIZE);
	CHECK(volume_read(v, now, SIZE, 0) == 0);
	for (uint64_t c = 0; c < SIZE / CHUNK; c += 2) /* the used ones read as u */
		CHECK(memcmp(now + c * CHUNK, u_view + c * CHUNK, CHUNK) == 0);
	free(now);
	bitmap_destroy(&used);

	/* refused: consumed in part, or failed; nothing changes */
	scribble(v, &rs, 50);
	uint8_t *before = malloc(SIZE);
	CHECK(volume_read(v, before, SIZE, 0) == 0);
	CHECK(snapshot_consume(b, 0, MiB) == 0);
	CHECK(revert(b, &job) == -ENODATA);
	CHECK(strstr(job.error, "consumed") != NULL);
	snapshot_fail(a, "a test says so");
	CHECK(revert(a, &job) == -EIO);
	CHECK(strstr(job.error, "a test says so") != NULL);
	check_volume(v, before);

	free(before);
	free(u_view);
	free(a_view);
	free(b_view);
	snapshot_put(u);
	snapshot_put(b);
	snapshot_put(a);
	volume_destroy(v);
	printf("test_revert: ok\n");
	return 0;
}
