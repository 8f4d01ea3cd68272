/* The backup job on memory volumes, and its pacer.
 *
 * Job: a volume is filled, snapshotted (its content frozen in a copy), then
 * a writer thread rewrites random chunks (copies on write, drained or left
 * for the copies pass) while the job writes the snapshot into an image;
 * the image, read back through image_open, must equal the frozen copy.
 * Every combination the job chooses between: raw or qcow2 (clusters larger
 * than a chunk: no copies pass, partial clusters from the drain),
 * consuming or not, full or incremental (only some chunks, over a parent).
 * Pacer: driven with made-up clocks and counters.
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

static void test_full(uint64_t *rs, enum image_format f, uint32_t cluster, bool consume)
{
	char path[128];
	struct volume *v = mem_volume("test", SIZE, 12, 2 * MiB, SIZE, NULL);
	struct run_opts o = { .format = f, .cluster = cluster, .consume = consume };

	populate(v, rs);
	snprintf(path, sizeof(path), "%s/full-%d-%u-%d", dir, (int)f, cluster, consume);
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

	/* yielding: an idle volume lets the rate grow, up to 4x what it achieves */
	backup_pacer_init(&p, 0, true, t, &fg);
	double r0 = p.rate;
	for (int i = 0; i < 20; i++) {
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 64 << 20, &fg); /* 64 MiB per 50 ms: 1.3 GB/s */
	}
	CHECK(p.rate > r0);
	CHECK(p.rate <= 4 * (64.0 * 1048576) * 1e9 / PACE_CONTROL_NS + 1);

	/* a busy foreground whose service time doubles: the rate drops to the
	 * floor, never below, and each cut counts as a yield */
	fg = (struct volume_fg_sample){ 1000, 1000 * 100000 }; /* 100 us each */
	t += PACE_CONTROL_NS;
	backup_pacer_step(&p, t, 1 << 20, &fg);
	uint64_t y0 = p.yields;
	for (int i = 0; i < 40; i++) {
		fg.ops += 1000;
		fg.busy_ns += 1000 * 400000; /* now 400 us each */
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 1 << 20, &fg);
	}
	CHECK(p.yields > y0);
	CHECK(p.rate >= PACE_RATE_FLOOR && p.rate < PACE_RATE_FLOOR * 1.01);
	/* the foreground recovers: the rate climbs again */
	double low = p.rate;
	for (int i = 0; i < 40; i++) {
		fg.ops += 1000;
		fg.busy_ns += 1000 * 100000;
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 1 << 20, &fg);
	}
	CHECK(p.rate > low);
	/* with --rate, never above it */
	backup_pacer_init(&p, 50000000, true, t, &fg);
	for (int i = 0; i < 40; i++) {
		t += PACE_CONTROL_NS;
		backup_pacer_step(&p, t, 64 << 20, &fg);
	}
	CHECK(p.rate <= 50000000);
}

int main(void)
{
	uint64_t seed = test_seed("test_backup"), rs = seed;
	check_run_seed = seed;

	CHECK(mkdtemp(dir) != NULL);
	test_pacer();
	test_full(&rs, IMAGE_RAW, 0, false);
	test_full(&rs, IMAGE_RAW, 0, true);
	test_full(&rs, IMAGE_QCOW2, 65536, false);
	test_full(&rs, IMAGE_QCOW2, 65536, true);
	test_full(&rs, IMAGE_QCOW2, 4096, false);
	test_incremental(&rs, false);
	test_incremental(&rs, true);
	test_stream(&rs);

	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	printf("test_backup: ok\n");
	return 0;
}
