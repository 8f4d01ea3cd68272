/* Randomized model test of the engine: random writes, discards, zeroes,
 * snapshot creates and deletes (some with used maps), consumes and reads,
 * against a reference that keeps the frozen copy of every snapshot.  Tiny
 * buffers and diff limits make copies spill and snapshots overflow; an
 * overflowed snapshot must fail cleanly and the volume must stay exact.
 * Prints its seed; HOTSNAP_SEED=N replays one run. */
#include <errno.h>

#include "engine/snapshot_backup.h"
#include "engine_util.h"

#define MAXSNAP 8

struct msnap {
	struct snapshot *s;
	uint8_t *frozen;
	uint8_t *used;     /* per chunk, NULL = all */
	uint8_t *consumed; /* per chunk */
	char name[16];
};

struct model {
	uint64_t rs;
	struct volume *v;
	uint64_t size, chunk, nch;
	uint8_t *cur;
	struct msnap snaps[MAXSNAP];
	unsigned nsnaps;
	unsigned counter;
	unsigned created, failed;
	bool rest; /* records go to rest (coldstore.h) */
};

static void random_range(struct model *m, uint64_t *off, uint64_t *len)
{
	switch (rng_below(&m->rs, 3)) {
	case 0: /* small, unaligned */
		*len = 1 + rng_below(&m->rs, 3000);
		break;
	case 1: /* sector aligned, a few chunks */
		*len = 512 * (1 + rng_below(&m->rs, 4 * m->chunk / 512));
		break;
	default: /* big */
		*len = 1 + rng_below(&m->rs, m->size / 4);
	}
	if (*len > m->size)
		*len = m->size;
	*off = rng_below(&m->rs, m->size - *len + 1);
}

static void op_write(struct model *m)
{
	uint64_t off, len;
	random_range(m, &off, &len);
	uint8_t *buf = malloc(len);
	fill(buf, len, rng_next(&m->rs));
	unsigned kind = (unsigned)rng_below(&m->rs, 10);
	if (kind < 7) {
		CHECK(volume_write(m->v, buf, len, off, 0) == 0);
		memcpy(m->cur + off, buf, len);
	} else if (kind < 9) {
		CHECK(volume_write_zeroes(m->v, off, len, kind == 8 ? VOLUME_MAY_UNMAP : 0) == 0);
		memset(m->cur + off, 0, len);
	} else {
		CHECK(volume_discard(m->v, off, len) == 0);
		memset(m->cur + off, 0, len);
	}
	free(buf);
}

static void op_create(struct model *m)
{
	struct msnap *ms;
	struct bitmap used;
	bool with_map = rng_below(&m->rs, 2);

	if (m->nsnaps == MAXSNAP)
		return;
	ms = &m->snaps[m->nsnaps];
	memset(ms, 0, sizeof(*ms));
	snprintf(ms->name, sizeof(ms->name), "s%u", m->counter++);
	ms->frozen = malloc(m->size);
	memcpy(ms->frozen, m->cur, m->size);
	ms->consumed = calloc(m->nch, 1);
	struct snapshot_request rq = { .volume = m->v, .name = ms->name };
	if (with_map) {
		CHECK(bitmap_init(&used, m->nch, false) == 0);
		ms->used = calloc(m->nch, 1);
		for (uint64_t c = 0; c < m->nch; c++)
			if (rng_below(&m->rs, 3)) {
				ms->used[c] = 1;
				CHECK(bitmap_set_range(&used, c, 1) == 0);
			}
		rq.used = &used;
	}
	CHECK(snapshot_create_set(&rq, 1, &ms->s) == 0);
	if (with_map)
		bitmap_destroy(&used);
	m->nsnaps++;
	m->created++;
}

static void drop(struct model *m, unsigned i)
{
	struct msnap *ms = &m->snaps[i];
	CHECK(snapshot_delete(ms->s) == 0);
	snapshot_put(ms->s);
	free(ms->frozen);
	free(ms->used);
	free(ms->consumed);
	m->snaps[i] = m->snaps[--m->nsnaps];
}

static void op_consume(struct model *m)
{
	if (!m->nsnaps)
		return;
	struct msnap *ms = &m->snaps[rng_below(&m->rs, m->nsnaps)];
	uint64_t off, len;
	random_range(m, &off, &len);
	int r = snapshot_consume(ms->s, off, len);
	if (r == -EIO)
		return; /* failed snapshot */
	CHECK(r == 0);
	uint64_t first = (off + m->chunk - 1) / m->chunk;
	uint64_t end = (off + len == m->size) ? m->nch : (off + len) / m->chunk;
	for (uint64_t c = first; c < end; c++)
		ms->consumed[c] = 1;
}

static void check_snapshot(struct model *m, struct msnap *ms, uint64_t off, uint64_t len)
{
	struct snapshot_stats st;
	uint8_t *buf = malloc(m->chunk);

	snapshot_get_stats(ms->s, &st);
	if (st.state == SNAPSHOT_FAILED) {
		CHECK(strstr(st.reason, "diff limit") != NULL);
		CHECK(snapshot_read(ms->s, buf, 1, 0) == -EIO);
		free(buf);
		return;
	}
	CHECK_EQ(st.state, SNAPSHOT_ACTIVE);
	for (uint64_t c = off / m->chunk; c * m->chunk < off + len; c++) {
		uint64_t a = c * m->chunk, n = HS_MIN_U64(m->chunk, m->size - a);
		int r = snapshot_read(ms->s, buf, n, a);
		if (ms->consumed[c]) {
			CHECK(r == -ENODATA);
			continue;
		}
		CHECK(r == 0);
		if (ms->used && !ms->used[c]) {
			for (uint64_t i = 0; i < n; i++)
				CHECK(buf[i] == 0);
		} else if (memcmp(buf, ms->frozen + a, n) != 0) {
			fprintf(stderr, "snapshot %s differs at chunk %llu\n", ms->name,
				(unsigned long long)c);
			CHECK(0);
		}
	}
	free(buf);
}

/* A backup's first pass (backup_copies.c): held copies in diff-file order,
 * read in batches by the slots given, while other steps may run between
 * the listing and the read (consumes free slots, writes and rests reuse
 * them), as the backup's calls interleave with writers.  Whatever is read
 * must be the frozen chunk. */
static unsigned long first_pass_chunks; /* chunks read that way */

static void op_first_pass(struct model *m)
{
	if (!m->nsnaps)
		return;
	struct msnap *ms = &m->snaps[rng_below(&m->rs, m->nsnaps)];
	size_t max = 1 + (size_t)rng_below(&m->rs, 8);
	uint64_t *chunks = malloc(max * sizeof(*chunks));
	uint32_t *slots = malloc(max * sizeof(*slots));
	uint8_t *buf = malloc(max * m->chunk);
	bool got[8];

	for (uint64_t cursor = 0; cursor != UINT64_MAX;) {
		size_t n = snapshot_held_by_slot(ms->s, chunks, slots, max, &cursor);
		if (rng_below(&m->rs, 3) == 0) {
			if (rng_below(&m->rs, 2))
				op_consume(m);
			op_write(m);
			if (m->rest && rng_below(&m->rs, 2))
				volume_wait_rest(m->v);
		}
		int r = snapshot_read_held_batch(ms->s, chunks, rng_below(&m->rs, 4) ? slots : NULL,
						 n, buf, got);
		if (r == -EIO)
			break; /* failed snapshot: check_snapshot says why */
		CHECK(r == 0);
		for (size_t i = 0; i < n; i++) {
			if (!got[i])
				continue;
			uint64_t a = chunks[i] * m->chunk, len = HS_MIN_U64(m->chunk, m->size - a);
			CHECK(!ms->consumed[chunks[i]]);
			CHECK(memcmp(buf + i * m->chunk, ms->frozen + a, len) == 0);
			first_pass_chunks++;
		}
	}
	free(chunks);
	free(slots);
	free(buf);
}

static unsigned long seen_at_rest; /* steps that found records at rest */

static void run(uint64_t seed, int ops)
{
	struct model m = { .rs = seed };

	check_run_seed = seed;
	static const unsigned shifts[] = { 12, 13, 16 };

	unsigned shift = shifts[rng_below(&m.rs, 3)];
	m.chunk = UINT64_C(1) << shift;
	m.size = (16 + rng_below(&m.rs, 48)) * m.chunk - 512 * rng_below(&m.rs, 2);
	m.nch = (m.size + m.chunk - 1) / m.chunk;
	uint64_t buffer = m.chunk * (2 + rng_below(&m.rs, 8));
	/* a third of the runs get a diff limit small enough to overflow */
	uint64_t limit = rng_below(&m.rs, 3) == 0 ? m.chunk * (1 + rng_below(&m.rs, 8))
						  : m.size * 2;
	/* half the runs keep at most a few records in memory, the rest at rest */
	m.rest = rng_below(&m.rs, 2);
	m.v = mem_volume_rest("model", m.size, shift, buffer, limit,
			      m.rest ? 1 + (uint32_t)rng_below(&m.rs, 4) : 0, NULL);
	m.cur = calloc(m.size, 1);

	for (int i = 0; i < ops; i++) {
		unsigned what = (unsigned)rng_below(&m.rs, 100);
		if (what < 55)
			op_write(&m);
		else if (what < 63)
			op_create(&m);
		else if (what < 68 && m.nsnaps)
			drop(&m, (unsigned)rng_below(&m.rs, m.nsnaps));
		else if (what < 73)
			op_consume(&m);
		else if (what < 76 && m.rest)
			volume_wait_rest(m.v); /* everything that can rest, rests */
		else if (what < 79)
			op_first_pass(&m);
		else if (m.nsnaps) {
			uint64_t off, len;
			random_range(&m, &off, &len);
			check_snapshot(&m, &m.snaps[rng_below(&m.rs, m.nsnaps)], off, len);
		}
		struct volume_stats vs;
		volume_get_stats(m.v, &vs);
		CHECK(vs.diff_bytes <= vs.diff_limit);
		if (vs.records_at_rest)
			seen_at_rest++;
	}
	/* full check of the volume and every snapshot */
	uint8_t *got = malloc(m.size);
	CHECK(volume_read(m.v, got, m.size, 0) == 0);
	CHECK(memcmp(got, m.cur, m.size) == 0);
	free(got);
	for (unsigned i = 0; i < m.nsnaps; i++) {
		struct snapshot_stats st;
		check_snapshot(&m, &m.snaps[i], 0, m.size);
		snapshot_get_stats(m.snaps[i].s, &st);
		m.failed += st.state == SNAPSHOT_FAILED;
	}
	while (m.nsnaps)
		drop(&m, 0);
	struct volume_stats vs;
	volume_get_stats(m.v, &vs);
	CHECK_EQ(vs.diff_bytes, 0); /* nothing leaks */
	CHECK_EQ(vs.ram_bytes, 0);
	free(m.cur);
	volume_destroy(m.v);
}

int main(int argc, char **argv)
{
	uint64_t seed = test_seed("test_engine_model");
	/* HOTSNAP_SEED alone replays one run; with a count, that many from it */
	int runs = argc > 1 ? atoi(argv[1]) : getenv("HOTSNAP_SEED") ? 1 : 40;

	for (int i = 0; i < runs; i++)
		run(seed + (uint64_t)i * 7919, 1500);
	/* the runs with a copy index really put records to rest */
	if (runs >= 8) {
		CHECK(seen_at_rest > 0);
		CHECK(first_pass_chunks > 0);
	}
	printf("test_engine_model: %d runs ok, %lu steps with records at rest, %lu chunks read "
	       "in diff-file order\n",
	       runs, seen_at_rest, first_pass_chunks);
	return 0;
}
