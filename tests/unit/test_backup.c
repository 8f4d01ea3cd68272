/* The backup job on memory volumes, and its pacer.
 *
 * Job: a volume is filled, snapshotted (its content frozen in a copy), then
 * a writer thread rewrites random chunks (copies on write, drained or left
 * for the copies pass) while the job writes the snapshot into an image;
 * the image, read back through image_open, must equal the frozen copy.
 * Every combination the job chooses between: raw or qcow2 (clusters larger
 * than a chunk: no copies pass, partial clusters from the drain),
 * consuming or not, full or incremental (only some chunks, over a parent).
 * Pacer: driven with made-up clocks and counters, and against a simulated
 * foreground that shares a disk with it (its figures are printed).
 * Prints its seed; HOTSNAP_SEED=N replays a run. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "backup/backup.h"
#include "backup/backup_pace.h"
#include "engine_util.h"

#define MiB (UINT64_C(1) << 20)
#define CH 4096
#define SIZE (24 * MiB)

static char dir[] = "/tmp/hs-test-backup.XXXXXX";

struct churn {
	struct volume *v;
	uint64_t seed;
	atomic_bool stop;
	atomic_uint_fast64_t writes;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	uint64_t rs = c->seed;
	uint8_t buf[4 * CH];

	while (!atomic_load(&c->stop)) {
		uint64_t off = rng_below(&rs, SIZE / CH - 4) * CH;
		size_t len = CH * (1 + rng_below(&rs, 4));
		fill(buf, len, rng_next(&rs));
		if (rng_below(&rs, 8) == 0)
			CHECK(volume_discard(c->v, off, len) == 0);
		else
			CHECK(volume_write(c->v, buf, len, off, 0) == 0);
		atomic_fetch_add(&c->writes, 1);
	}
	return NULL;
}

/* Fills the volume: data with holes and all-zero chunks. */
static void populate(struct volume *v, uint64_t *rs)
{
	uint8_t *buf = malloc(MiB);
	for (uint64_t off = 0; off < SIZE; off += MiB) {
		fill(buf, MiB, rng_next(rs));
		for (uint64_t c = 0; c < MiB / CH; c++)
			if (rng_below(rs, 4) == 0)
				memset(buf + c * CH, 0, CH);
		if (rng_below(rs, 5))
			CHECK(volume_write(v, buf, MiB, off, 0) == 0);
	}
	free(buf);
}

struct run_opts {
	enum image_format format;
	uint32_t cluster;
	bool consume;
	const char *parent;       /* incremental over this image */
	const struct bitmap *only;
	bool expect_rest; /* copy records rest when the backup starts */
};

static void run_backup(struct snapshot *s, const char *path, const struct run_opts *o)
{
	struct backup_job job = { .snap = s, .consume = o->consume, .yield = true, .only = o->only };
	struct image_params ip = { .format = o->format, .size = SIZE, .cluster_size = o->cluster,
				   .compress = o->format == IMAGE_QCOW2 ? IMAGE_COMPRESS_ZSTD
									: IMAGE_COMPRESS_NONE,
				   .threads = 2, .name = path };
	char err[512];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (o->parent) {
		ip.backing = o->parent;
		ip.backing_format = "qcow2";
	}
	CHECK(fd >= 0);
	CHECK(image_writer_begin(&job.out, fd, &ip, err, sizeof(err)) == 0);
	snprintf(job.source, sizeof(job.source), "test@%s", snapshot_name(s));
	int r = backup_job_run(&job, NULL, NULL);
	if (r)
		fprintf(stderr, "backup: %s\n", job.error);
	CHECK(r == 0);
	r = image_writer_finish(job.out, err, sizeof(err));
	if (r)
		fprintf(stderr, "finish: %s\n", err);
	CHECK(r == 0);
	close(fd);
}

static void compare_image(const char *path, const uint8_t *frozen)
{
	struct image_reader *r;
	char err[512];
	uint8_t *got = malloc(SIZE);

	CHECK(image_open(&r, path, 0, err, sizeof(err)) == 0);
	CHECK(image_read(r, got, SIZE, 0) == 0);
	for (uint64_t i = 0; i < SIZE; i++)
		if (got[i] != frozen[i]) {
			fprintf(stderr, "%s: byte %llu (chunk %llu) differs\n", path,
				(unsigned long long)i, (unsigned long long)(i / CH));
			CHECK(0);
		}
	image_close(r);
	free(got);
}

/* One backup of a fresh snapshot while the volume churns; returns the
 * frozen view. */
static uint8_t *backup_under_churn(struct volume *v, uint64_t *rs, const char *name,
				   const char *path, const struct run_opts *o)
{
	struct snapshot *s = take(v, name);
	uint8_t *frozen = malloc(SIZE);
	struct churn c = { .v = v, .seed = rng_next(rs) };
	pthread_t t;

	CHECK(snapshot_read(s, frozen, SIZE, 0) == 0);
	/* copies made before the backup starts: for the copies pass */
	for (int i = 0; i < 64; i++) {
		uint8_t buf[CH];
		fill(buf, CH, rng_next(rs));
		CHECK(volume_write(v, buf, CH, rng_below(rs, SIZE / CH) * CH, 0) == 0);
	}
	/* on a volume with a copy index, their records rest before the backup
	 * starts (none when it has none) */
	volume_wait_rest(v);
	if (o->expect_rest) {
		struct volume_stats vs;
		volume_get_stats(v, &vs);
		CHECK(vs.records_at_rest > 0);
	}
	CHECK(pthread_create(&t, NULL, churn_main, &c) == 0);
	run_backup(s, path, o);
	atomic_store(&c.stop, true);
	pthread_join(t, NULL);
	struct snapshot_stats st;
	snapshot_get_stats(s, &st);
	CHECK_EQ(st.state, SNAPSHOT_ACTIVE);
	CHECK(st.cow_bytes > 0); /* the churn made copies: the test tested something */
	CHECK(snapshot_delete(s) == 0);
	snapshot_put(s);
	return frozen;
}

/* hot: records kept in memory before the rest go to a copy index (0: no
 * index), so the backup's walks find copies at rest. */
static void test_full(uint64_t *rs, enum image_format f, uint32_t cluster, bool consume,
		      uint32_t hot)
{
	char path[128];
	/* with an index, a small buffer: copies reach the file, their records rest */
	struct volume *v = mem_volume_rest("test", SIZE, 12, hot ? 64 * 1024 : 2 * MiB, SIZE, hot,
					   NULL);
	struct run_opts o = { .format = f, .cluster = cluster, .consume = consume,
			      .expect_rest = hot != 0 };

	populate(v, rs);
	snprintf(path, sizeof(path), "%s/full-%d-%u-%d-%u", dir, (int)f, cluster, consume, hot);
	uint8_t *frozen = backup_under_churn(v, rs, "s", path, &o);
	compare_image(path, frozen);
	free(frozen);
	volume_destroy(v);
}

/* A full qcow2, then incrementals holding only the chunks changed since
 * the parent's instant (tracked here by the test), each whole-cluster. */
static void test_incremental(uint64_t *rs, bool consume)
{
	char path[128], parent[64];
	struct volume *v = mem_volume("test", SIZE, 12, 2 * MiB, SIZE, NULL);
	struct run_opts o = { .format = IMAGE_QCOW2, .cluster = CH, .consume = consume };
	uint8_t *prev;

	populate(v, rs);
	snprintf(path, sizeof(path), "%s/inc0.qcow2", dir);
	prev = backup_under_churn(v, rs, "s0", path, &o);
	compare_image(path, prev);
	for (int level = 1; level <= 3; level++) {
		struct snapshot *s;
		struct bitmap only;
		/* the changed set: a superset of what differs from the parent (a miss
		 * would show in the comparison); half of the unchanged chunks left out */
		CHECK(bitmap_init(&only, SIZE / CH, true) == 0);
		snprintf(parent, sizeof(parent), "inc%d.qcow2", level - 1);
		snprintf(path, sizeof(path), "%s/inc%d.qcow2", dir, level);
		o.parent = parent;
		o.only = &only;
		/* chunks the next snapshot will show equal to prev may be left out */
		s = take(v, "s");
		uint8_t *frozen = malloc(SIZE);
		CHECK(snapshot_read(s, frozen, SIZE, 0) == 0);
		for (uint64_t c = 0; c < SIZE / CH; c++)
			if (memcmp(frozen + c * CH, prev + c * CH, CH) == 0 && rng_below(rs, 2))
				CHECK(bitmap_clear_range(&only, c, 1) == 0);
		struct churn ch = { .v = v, .seed = rng_next(rs) };
		pthread_t t;
		CHECK(pthread_create(&t, NULL, churn_main, &ch) == 0);
		run_backup(s, path, &o);
		atomic_store(&ch.stop, true);
		pthread_join(t, NULL);
		CHECK(snapshot_delete(s) == 0);
		snapshot_put(s);
		bitmap_destroy(&only);
		compare_image(path, frozen);
		free(prev);
		prev = frozen;
	}
	free(prev);
	volume_destroy(v);
}

/* A stream (a pipe) gets the bytes in order, zeros included. */
struct sink {
	int fd;
	uint8_t *got;
	uint64_t n;
};

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	ssize_t r;
	while ((r = read(k->fd, k->got + k->n, SIZE - k->n + 1)) > 0)
		k->n += (uint64_t)r;
	return NULL;
}

static void test_stream(uint64_t *rs)
{
	struct volume *v = mem_volume("test", SIZE, 12, 2 * MiB, SIZE, NULL);
	struct snapshot *s;
	struct backup_job job = { .consume = true, .yield = false };
	struct image_params ip = { .format = IMAGE_RAW, .size = SIZE, .name = "pipe" };
	struct sink k = { .got = malloc(SIZE + 1) };
	uint8_t *frozen = malloc(SIZE);
	char err[256];
	int p[2];
	pthread_t t;

	populate(v, rs);
	s = take(v, "s");
	CHECK(snapshot_read(s, frozen, SIZE, 0) == 0);
	CHECK(pipe(p) == 0);
	k.fd = p[0];
	CHECK(pthread_create(&t, NULL, sink_main, &k) == 0);
	job.snap = s;
	CHECK(image_writer_begin(&job.out, p[1], &ip, err, sizeof(err)) == 0);
	CHECK(job.out->sequential);
	CHECK(backup_job_run(&job, NULL, NULL) == 0);
	CHECK(image_writer_finish(job.out, err, sizeof(err)) == 0);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	CHECK_EQ(k.n, SIZE);
	CHECK(memcmp(k.got, frozen, SIZE) == 0);
	CHECK(snapshot_delete(s) == 0);
	snapshot_put(s);
	free(k.got);
	free(frozen);
	volume_destroy(v);
}

/* --- the pacer ------------------------------------------------------------ */

static void test_pacer(void)
{
	struct backup_pacer p;
	struct volume_fg_sample fg = { 0, 0 };
	uint64_t t = 1000000000, until;

	/* no yield, no limit: never waits */
	backup_pacer_init(&p, 0, false, t, &fg);
	CHECK_EQ(backup_pacer_step(&p, t, 1 << 20, &fg), t);

	/* a limit of 100 MB/s: 10 MB is due 100 ms after the start, bursts capped */
	backup_pacer_init(&p, 100000000, false, t, &fg);
	for (int i = 0; i < 10; i++)
		until = backup_pacer_step(&p, t, 1000000, &fg);
	CHECK(until >= t + 99000000 && until <= t + 101000000);

	/* yielding: an idle volume lets the rate grow, up to 4x what it
	 * achieves, and is never probed */
	backup_pacer_init(&p, 0, true, t, &fg);
	double r0 = p.rate;
	for (int i = 0; i < 20; i++) {
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 64 << 20, &fg); /* 64 MiB per 50 ms: 1.3 GB/s */
		CHECK(!p.probing);
	}
	CHECK(p.rate > r0);
	CHECK(p.rate <= 4 * (64.0 * 1048576) * 1e9 / PACE_CONTROL_NS + 1);
	CHECK_EQ(p.probes, 0);

	/* a light foreground (too few requests to measure its share, so no
	 * probes: latency alone) whose service time quadruples: the rate drops
	 * to the floor, never below, and each cut counts as a yield */
	for (int i = 0; i < 8; i++) {
		fg.ops += 2;
		fg.busy_ns += 2 * 100000; /* 100 us each */
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 1 << 20, &fg);
	}
	uint64_t y0 = p.yields;
	for (int i = 0; i < 200; i++) {
		fg.ops += 2;
		fg.busy_ns += 2 * 400000; /* now 400 us each */
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 1 << 20, &fg);
		CHECK(!p.probing);
	}
	CHECK(p.yields > y0);
	CHECK(p.rate >= PACE_RATE_FLOOR && p.rate < PACE_RATE_FLOOR * 1.01);
	/* the foreground recovers: the rate climbs again */
	double low = p.rate;
	for (int i = 0; i < 40; i++) {
		fg.ops += 2;
		fg.busy_ns += 2 * 100000;
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 1 << 20, &fg);
	}
	CHECK(p.rate > low);
	CHECK_EQ(p.probes, 0);
	/* with --rate, never above it */
	backup_pacer_init(&p, 50000000, true, t, &fg);
	for (int i = 0; i < 40; i++) {
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 64 << 20, &fg);
	}
	CHECK(p.rate <= 50000000);
}

/* The pacer against a simulated disk, shared by a foreground and the
 * backup, on a simulated clock.
 *
 * The backup reads 1 MiB at a time at DISK bytes/s (its idle rate), and
 * sleeps as the pacer says (as pace() does).  The foreground is closed loop
 * (SIM_QD requests outstanding): alone it completes F0 ops/s; while the
 * backup reads, half that (fg = F0 (1 - b / 2 DISK), b the backup's
 * instantaneous rate).  Service time follows by Little's law, QD / rate.
 * Or open loop: F0 ops/s whatever the backup does, each taking twice as
 * long while the backup reads; its harm is in latency alone.
 * Noise: each simulated millisecond's ops are scaled by a factor uniform in
 * [0.6, 1.4] from a fixed-seed PRNG, so a run is the same every time. */
#define SIM_DISK (400.0 * 1000 * 1000)
#define SIM_F0 20000.0
#define SIM_QD 8.0
#define SIM_SECONDS 60
#define SIM_SEED UINT64_C(0x5eed)

struct sim {
	const char *name;
	double f0;        /* foreground ops/s alone; 0: idle */
	double f0_middle; /* from 20 s to 40 s, if not 0: a workload that changes */
	bool open_loop;
	unsigned stall_ms; /* the first this many ms of each second, nothing
			    * completes, backup or not (a flush, writeback
			    * throttling): requests are under way, none served */
	uint64_t rate_limit;
	bool yield;
	/* results */
	double fg_share;     /* foreground ops / what it would do alone */
	double backup_share; /* backup bytes / DISK x time */
	double mean_ratio;   /* foreground mean service time / alone */
	double max_rate;     /* the pacer's highest rate */
	double final_rate;
	uint64_t probes, yields;
	uint64_t probe_ns; /* time paused in probes */
	bool waited;       /* ever returned a time after now */
};

struct sim_fg {
	uint64_t rs;
	double ops, busy_ns; /* fractional: the sample takes the floor */
	double alone_ops;    /* what it would have done alone */
	double alone_busy_ns;
};

static double sim_f0(const struct sim *s, uint64_t t_rel)
{
	if (s->f0_middle && t_rel >= 20 * 1000000000ull && t_rel < 40 * 1000000000ull)
		return s->f0_middle;
	return s->f0;
}

/* The foreground over [t, t + dt), the backup reading throughout or not. */
static void sim_advance(const struct sim *s, struct sim_fg *f, uint64_t t_rel, uint64_t dt,
			bool reading)
{
	while (dt) {
		uint64_t step = HS_MIN_U64(dt, 1000000);
		double f0 = sim_f0(s, t_rel);
		double slow = reading ? 2.0 : 1.0; /* the backup's cost */
		double rate = s->open_loop ? f0 : f0 / slow;
		double noise = 0.6 + 0.8 * (double)rng_below(&f->rs, 1000001) / 1e6;
		bool stalled = s->stall_ms && (t_rel / 1000000) % 1000 < s->stall_ms;
		if (f0 > 0 && !stalled) {
			double ops = rate * noise * (double)step / 1e9;
			double alone_mean_ns = SIM_QD / f0 * 1e9;
			f->ops += ops;
			f->busy_ns += ops * alone_mean_ns * slow;
			f->alone_ops += f0 * (double)step / 1e9;
			f->alone_busy_ns += f0 * (double)step / 1e9 * alone_mean_ns;
		}
		t_rel += step;
		dt -= step;
	}
}

static void simulate_pacer(struct sim *s)
{
	const uint64_t t0 = 1000000000, end = t0 + SIM_SECONDS * 1000000000ull;
	const size_t n = 1 << 20;
	struct sim_fg f = { .rs = SIM_SEED };
	struct backup_pacer p;
	struct volume_fg_sample fg = { 0, 0 };
	double bytes = 0;
	uint64_t t = t0;

	backup_pacer_init(&p, s->rate_limit, s->yield, t, &fg);
	s->max_rate = p.rate;
	s->probe_ns = 0;
	s->waited = false;
	while (t < end) {
		/* a closed loop keeps its requests under way */
		fg = (struct volume_fg_sample){ (uint64_t)f.ops, (uint64_t)f.busy_ns,
						sim_f0(s, t - t0) > 0 ? (uint64_t)SIM_QD : 0 };
		uint64_t until = backup_pacer_step(&p, t, n, &fg);
		CHECK(until >= t);
		s->max_rate = HS_MAX(s->max_rate, p.rate);
		if (s->rate_limit)
			CHECK(p.rate <= (double)s->rate_limit);
		if (!s->yield)
			CHECK(!p.probing);
		if (until > t)
			s->waited = true;
		if (p.probing) {
			s->probe_ns += until - t;
			sim_advance(s, &f, t - t0, until - t, false);
			t = until;
			continue;
		}
		if (until > t + 1000000) { /* as pace() does: small debts wait */
			sim_advance(s, &f, t - t0, until - t, false);
			t = until;
		}
		uint64_t read_ns = (uint64_t)((double)n / SIM_DISK * 1e9);
		sim_advance(s, &f, t - t0, read_ns, true);
		t += read_ns;
		bytes += (double)n;
	}
	s->fg_share = f.alone_ops > 0 ? f.ops / f.alone_ops : 1;
	s->mean_ratio = f.ops > 0 ? (f.busy_ns / f.ops) / (f.alone_busy_ns / f.alone_ops) : 1;
	s->backup_share = bytes / (SIM_DISK * (double)(t - t0) / 1e9);
	s->final_rate = p.rate;
	s->probes = p.probes;
	s->yields = p.yields;
	printf("pacer sim %-22s fg %.3f of alone (latency %.2fx), backup %.3f of idle rate, "
	       "%" PRIu64 " probes (%.1f s paused), %" PRIu64 " cuts, rate max %.0f MB/s, "
	       "last %.0f MB/s\n",
	       s->name, s->fg_share, s->mean_ratio, s->backup_share, s->probes,
	       (double)s->probe_ns / 1e9, s->yields, s->max_rate / 1e6, s->final_rate / 1e6);
	fflush(stdout); /* before a failed check aborts */
}

static void test_pacer_sim(void)
{
	/* the stated aim: the foreground keeps 0.8x, the backup 0.25x or more */
	struct sim busy = { .name = "busy fg:", .f0 = SIM_F0, .yield = true };
	simulate_pacer(&busy);
	CHECK(busy.fg_share >= 0.8);
	CHECK(busy.backup_share >= 0.25);
	CHECK(busy.probes >= SIM_SECONDS / 2);

	/* the same across a workload that changes: a third as busy, then back */
	struct sim phases = { .name = "fg 1x, 1/3x, 1x:", .f0 = SIM_F0, .f0_middle = SIM_F0 / 3,
			      .yield = true };
	simulate_pacer(&phases);
	CHECK(phases.fg_share >= 0.8);
	CHECK(phases.backup_share >= 0.25);

	/* a foreground that stalls a tenth of each second, whatever the
	 * backup does: a stall is not idleness, and it must not let the
	 * backup's rate run away (taken for idle, it cost the foreground
	 * 0.77x here, and 0.7x on the harness's row (d)) */
	struct sim stalls = { .name = "busy fg, stalls:", .f0 = SIM_F0, .stall_ms = 150,
			      .yield = true };
	simulate_pacer(&stalls);
	CHECK(stalls.fg_share >= 0.8);
	CHECK(stalls.backup_share >= 0.25);

	/* a foreground at a fixed pace: its share stays 1, its latency is what
	 * the pacer guards */
	struct sim paced = { .name = "open-loop fg:", .f0 = SIM_F0, .open_loop = true,
			     .yield = true };
	simulate_pacer(&paced);
	CHECK(paced.mean_ratio <= 1.35);
	CHECK(paced.backup_share >= 0.25);

	/* an idle foreground: no probes, no cuts, the backup at the disk's
	 * speed and the pacer's rate at its ceiling (above what the disk
	 * gives: the pacer is not what limits it) */
	struct sim idle = { .name = "idle fg:", .f0 = 0, .yield = true };
	simulate_pacer(&idle);
	CHECK_EQ(idle.probes, 0);
	CHECK_EQ(idle.yields, 0);
	CHECK(idle.backup_share >= 0.98);
	CHECK(idle.final_rate >= 2 * SIM_DISK);

	/* --rate: the pacer's rate never above it (checked at every step) */
	struct sim limited = { .name = "busy fg, --rate 50MB/s:", .f0 = SIM_F0,
			       .rate_limit = 50000000, .yield = true };
	simulate_pacer(&limited);
	CHECK(limited.max_rate <= 50e6);
	CHECK(limited.backup_share <= 50e6 / SIM_DISK * 1.01);
	struct sim limited_idle = { .name = "idle fg, --rate 50MB/s:", .rate_limit = 50000000,
				    .yield = true };
	simulate_pacer(&limited_idle);
	CHECK(limited_idle.max_rate <= 50e6);
	CHECK(limited_idle.backup_share >= 50e6 / SIM_DISK * 0.98);

	/* --no-yield: never a pause, the disk's speed whatever the foreground */
	struct sim no_yield = { .name = "busy fg, --no-yield:", .f0 = SIM_F0, .yield = false };
	simulate_pacer(&no_yield);
	CHECK(!no_yield.waited);
	CHECK_EQ(no_yield.probes, 0);
	CHECK_EQ(no_yield.yields, 0);
	CHECK(no_yield.backup_share >= 0.99);
}

int main(void)
{
	uint64_t seed = test_seed("test_backup"), rs = seed;
	check_run_seed = seed;

	CHECK(mkdtemp(dir) != NULL);
	test_pacer();
	test_pacer_sim();
	test_full(&rs, IMAGE_RAW, 0, false, 0);
	test_full(&rs, IMAGE_RAW, 0, true, 0);
	test_full(&rs, IMAGE_QCOW2, 65536, false, 0);
	test_full(&rs, IMAGE_QCOW2, 65536, true, 0);
	test_full(&rs, IMAGE_QCOW2, 4096, false, 0);
	test_full(&rs, IMAGE_RAW, 0, false, 8);
	test_full(&rs, IMAGE_RAW, 0, true, 8);
	test_full(&rs, IMAGE_QCOW2, 65536, true, 8);
	test_incremental(&rs, false);
	test_incremental(&rs, true);
	test_stream(&rs);

	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	printf("test_backup: ok\n");
	return 0;
}
