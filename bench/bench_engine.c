/* bench_engine.c - the engine's write path on a memory device, no I/O
 * latency in the way: 4 KiB random writes with no snapshot, on first touch
 * after a snapshot (copy-on-write), and rewriting chunks already copied;
 * then the same first run on a volume with change tracking (engine/
 * tracker.h; its map on a memory device, so what is left is the write
 * path's own cost); then snapshot creation on a 100 GiB volume and the map
 * memory of a snapshot there.  Prints one JSON object.  Under valgrind --tool=callgrind
 * the instruction counts per write are repeatable on a noisy machine. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "engine/engine.h"
#include "engine/tracker.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static struct volume *make_volume(uint64_t size, uint64_t diff_limit, bool tracked)
{
	struct dev *origin, *diff, *map;
	struct volume *v;
	struct volume_config cfg = { .name = "bench", .size = size, .chunk_shift = 12,
				     .cow_buffer = 64 * MiB, .diff_limit = diff_limit };
	struct tracker_geometry geo = { .size = size, .chunk_shift = 12, .region_shift = 16 };
	/* records of settled copies rest in a file, as the daemon's do
	 * (HOTSNAP_BENCH_NO_REST=1: all in memory, for an A/B) */
	if (getenv("HOTSNAP_BENCH_NO_REST") ||
	    dev_file_open(&cfg.copy_index, "/tmp", DEV_FILE_TMPFILE) < 0)
		cfg.copy_index = NULL;
	if (dev_mem_create(&origin, size) || dev_mem_create(&diff, diff_limit) ||
	    (tracked && (dev_mem_create(&map, 64 * MiB) ||
			 tracker_open(&cfg.tracker, map, origin, &geo))) ||
	    volume_create(&v, &cfg, origin, diff)) {
		fprintf(stderr, "bench_engine: cannot create a memory volume\n");
		exit(1);
	}
	return v;
}

/* ns per 4 KiB write at random chunks of the first `span` bytes */
static double run_writes(struct volume *v, uint64_t span, unsigned n, uint64_t seed)
{
	static uint8_t buf[4096];
	uint64_t t0 = clock_mono_ns();

	memset(buf, 0xab, sizeof(buf));
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (rng(&seed) % (span / 4096)) * 4096;
		if (volume_write(v, buf, sizeof(buf), off, 0)) {
			fprintf(stderr, "bench_engine: write failed\n");
			exit(1);
		}
	}
	return (double)(clock_mono_ns() - t0) / n;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 200000;
	uint64_t span = 256 * MiB;
	struct volume *v = make_volume(GiB, GiB, false);
	struct snapshot_request rq = { .volume = v, .name = "s" };
	struct snapshot *s;
	struct volume_stats st;

	/* fill the span so every write overwrites data and no page of the
	 * memory device faults in during the timed runs */
	static uint8_t fillbuf[1 << 20];
	memset(fillbuf, 0x11, sizeof(fillbuf));
	for (uint64_t off = 0; off < span; off += sizeof(fillbuf))
		volume_write(v, fillbuf, sizeof(fillbuf), off, 0);
	double nosnap = run_writes(v, span, n, 2);
	snapshot_create_set(&rq, 1, &s);
	/* sequential coverage would copy everything; random writes first touch
	 * most chunks once: the copy-on-write path */
	double cow = run_writes(v, span, n, 3);
	double rewrite = run_writes(v, span, n, 3); /* the same chunks again */
	volume_get_stats(v, &st);
	snapshot_delete(s);
	snapshot_put(s);
	volume_destroy(v);

	/* snapshot creation and map memory at 100 GiB (memory device: untouched
	 * pages cost nothing) */
	/* the same with change tracking: after the fill every region's bit is
	 * on its map, so this is the rewrite case every steady writer sees */
	struct volume *tv = make_volume(GiB, GiB, true);
	for (uint64_t off = 0; off < span; off += sizeof(fillbuf))
		volume_write(tv, fillbuf, sizeof(fillbuf), off, 0);
	double tracked = run_writes(tv, span, n, 2);
	volume_destroy(tv);

	struct volume *big = make_volume(100 * GiB, 16 * MiB, false);
	struct volume_stats b0, b1;
	volume_get_stats(big, &b0);
	struct snapshot_request brq = { .volume = big, .name = "big" };
	uint64_t t0 = clock_mono_ns();
	snapshot_create_set(&brq, 1, &s);
	double create_us = (double)(clock_mono_ns() - t0) / 1e3;
	volume_get_stats(big, &b1);
	snapshot_delete(s);
	snapshot_put(s);
	volume_destroy(big);

	printf("{\"writes\": %u, \"ns_per_write_nosnap\": %.0f, \"ns_per_write_tracked\": %.0f, "
	       "\"ns_per_write_cow\": %.0f, "
	       "\"ns_per_write_rewrite\": %.0f, \"cow_chunks\": %" PRIu64 ", "
	       "\"snapshot_create_us_100g\": %.1f, \"map_bytes_100g_snapshot\": %zu, "
	       "\"records_in_memory\": %" PRIu64 ", \"records_at_rest\": %" PRIu64 "}\n",
	       n, nosnap, tracked, cow, rewrite, st.cow_chunks, create_us,
	       b1.map_memory - b0.map_memory, st.records_in_memory, st.records_at_rest);
	return 0;
}
