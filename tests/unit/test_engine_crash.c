/* Power loss under the engine.  The origin is a crash device that keeps
 * unflushed writes in a log; at random points every snapshot is checked
 * against its frozen copy and dropped (snapshots do not outlive the
 * daemon), and the power is cut: the device keeps a random subset of the
 * unflushed writes, some torn.  After each crash:
 *   - every byte that was flushed (or written with FUA) and not written
 *     since holds that value: nothing acknowledged as durable is lost;
 *   - the engine wrote nothing to the origin on its own: copy-on-write only
 *     reads it (covered by the same check: bytes nobody wrote keep their
 *     value);
 * and before it, no snapshot ever showed data written after its creation.
 * Prints its seed; HOTSNAP_SEED=N replays one run. */
#include <errno.h>

#include "engine/dev_fault.h"
#include "engine_util.h"

#define MAXSNAP 4

struct crash_model {
	uint64_t rs, size;
	struct volume *v;
	struct dev *origin;
	uint8_t *cur, *durable, *dirty, *after;
	struct snapshot *snap[MAXSNAP];
	uint8_t *frozen[MAXSNAP];
	unsigned nsnap, counter, crashes;
};

static void check_and_drop_snapshots(struct crash_model *m)
{
	uint8_t *got = malloc(m->size);
	for (unsigned i = 0; i < m->nsnap; i++) {
		struct snapshot_stats st;
		snapshot_get_stats(m->snap[i], &st);
		CHECK_EQ(st.state, SNAPSHOT_ACTIVE);
		CHECK(snapshot_read(m->snap[i], got, m->size, 0) == 0);
		CHECK(memcmp(got, m->frozen[i], m->size) == 0);
		CHECK(snapshot_delete(m->snap[i]) == 0);
		snapshot_put(m->snap[i]);
		free(m->frozen[i]);
	}
	m->nsnap = 0;
	free(got);
}

static void crash(struct crash_model *m)
{
	check_and_drop_snapshots(m);
	CHECK(dev_fault_crash(m->origin, &m->rs, m->after) == 0);
	for (uint64_t i = 0; i < m->size; i++) {
		if (!m->dirty[i] && m->after[i] != m->durable[i]) {
			fprintf(stderr, "byte %llu: durable %u, after the crash %u\n",
				(unsigned long long)i, m->durable[i], m->after[i]);
			CHECK(0);
		}
	}
	memcpy(m->cur, m->after, m->size);
	memcpy(m->durable, m->after, m->size);
	memset(m->dirty, 0, m->size);
	/* the volume goes on over what survived, as a restarted daemon would */
	uint8_t *got = malloc(m->size);
	CHECK(volume_read(m->v, got, m->size, 0) == 0 && memcmp(got, m->cur, m->size) == 0);
	free(got);
	m->crashes++;
}

static void run(uint64_t seed)
{
	struct crash_model m = { .rs = seed };

	check_run_seed = seed;
	struct dev *mem, *diff;
	struct volume_config cfg = { .name = "crash", .chunk_shift = 12, .cow_buffer = 8 * 4096 };

	m.size = (UINT64_C(256) + rng_below(&m.rs, 768)) * 4096;
	cfg.size = m.size;
	cfg.diff_limit = m.size * 2;
	m.cur = calloc(m.size, 1);
	m.durable = calloc(m.size, 1);
	m.dirty = calloc(m.size, 1);
	m.after = calloc(m.size, 1);
	CHECK(dev_mem_create(&mem, m.size) == 0);
	CHECK(dev_fault_wrap(&m.origin, mem, true) == 0);
	CHECK(dev_mem_create(&diff, m.size * 2) == 0);
	CHECK(volume_create(&m.v, &cfg, m.origin, diff) == 0);

	for (int op = 0; op < 600; op++) {
		unsigned what = (unsigned)rng_below(&m.rs, 100);
		if (what < 60) {
			uint64_t len = 512 * (1 + rng_below(&m.rs, 64));
			uint64_t off = 512 * rng_below(&m.rs, (m.size - len) / 512 + 1);
			bool fua = rng_below(&m.rs, 8) == 0;
			uint8_t *buf = malloc(len);
			fill(buf, len, rng_next(&m.rs));
			CHECK(volume_write(m.v, buf, len, off, fua ? VOLUME_FUA : 0) == 0);
			memcpy(m.cur + off, buf, len);
			if (fua) {
				memcpy(m.durable + off, buf, len);
				memset(m.dirty + off, 0, len);
			} else {
				memset(m.dirty + off, 1, len);
			}
			free(buf);
		} else if (what < 72) {
			CHECK(volume_flush(m.v) == 0);
			memcpy(m.durable, m.cur, m.size);
			memset(m.dirty, 0, m.size);
		} else if (what < 82 && m.nsnap < MAXSNAP) {
			char name[16];
			snprintf(name, sizeof(name), "c%u", m.counter++);
			m.snap[m.nsnap] = take(m.v, name);
			m.frozen[m.nsnap] = malloc(m.size);
			memcpy(m.frozen[m.nsnap], m.cur, m.size);
			m.nsnap++;
		} else if (what < 95) {
			/* a snapshot read somewhere: it must be its frozen copy */
			if (m.nsnap) {
				unsigned i = (unsigned)rng_below(&m.rs, m.nsnap);
				uint64_t off = 4096 * rng_below(&m.rs, m.size / 4096);
				uint8_t got[4096];
				CHECK(snapshot_read(m.snap[i], got, 4096, off) == 0);
				CHECK(memcmp(got, m.frozen[i] + off, 4096) == 0);
			}
		} else {
			crash(&m);
		}
	}
	crash(&m);
	volume_destroy(m.v);
	free(m.cur);
	free(m.durable);
	free(m.dirty);
	free(m.after);
}

int main(int argc, char **argv)
{
	uint64_t seed = test_seed("test_engine_crash");
	/* HOTSNAP_SEED alone replays one run; with a count, that many from it */
	int runs = argc > 1 ? atoi(argv[1]) : getenv("HOTSNAP_SEED") ? 1 : 20;

	for (int i = 0; i < runs; i++)
		run(seed + (uint64_t)i * 104729);
	printf("test_engine_crash: %d runs ok\n", runs);
	return 0;
}
