/* Restore on memory volumes: a chain (a full qcow2 and an incremental over
 * it, with data, zero clusters and holes) restored into a fresh volume and
 * into one full of old data must read exactly as the chain's top; the
 * comparison mode finds a changed byte and names its offset; a volume of
 * the wrong size is refused.  Prints its seed; HOTSNAP_SEED=N replays. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "engine_util.h"
#include "restore/restore.h"

#define MiB (UINT64_C(1) << 20)
#define SIZE (9 * MiB + 64 * 1024) /* a partial last block */

static char dir[] = "/tmp/hs-test-restore.XXXXXX";

static void write_image(const char *path, const uint8_t *view, const uint8_t *mask,
			const char *backing)
{
	struct image_params ip = { .format = IMAGE_QCOW2, .size = SIZE, .cluster_size = 65536,
				   .compress = IMAGE_COMPRESS_ZSTD, .name = path,
				   .backing = backing, .backing_format = "qcow2" };
	struct image_writer *w;
	char err[256];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && image_writer_begin(&w, fd, &ip, err, sizeof(err)) == 0);
	for (uint64_t off = 0; off < SIZE; off += 65536) {
		if (mask && !mask[off / 65536])
			continue; /* left to the backing file */
		CHECK(image_writer_data(w, view + off, 65536, off) == 0);
	}
	CHECK(image_writer_finish(w, err, sizeof(err)) == 0);
	close(fd);
}

static int restore(struct volume *v, const char *path, bool fresh, bool verify_only,
		   struct restore_job *job)
{
	char err[256];
	memset(job, 0, sizeof(*job));
	CHECK(image_open(&job->src, path, 0, err, sizeof(err)) == 0);
	job->dst = v;
	job->fresh = fresh;
	job->verify_only = verify_only;
	job->threads = 3;
	int r = restore_job_run(job, NULL, NULL);
	image_close(job->src);
	return r;
}

static void check_volume(struct volume *v, const uint8_t *want)
{
	uint8_t *got = malloc(SIZE);
	CHECK(volume_read(v, got, SIZE, 0) == 0);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
}

int main(void)
{
	uint64_t seed = test_seed("test_restore"), rs = seed;
	uint8_t *view = malloc(SIZE), *mask = calloc(SIZE / 65536, 1);
	char full[128], inc[128];
	struct restore_job job;
	struct dev *origin;

	check_run_seed = seed;
	CHECK(mkdtemp(dir) != NULL);
	for (uint64_t off = 0; off < SIZE; off += 4096) {
		fill(view + off, 4096, rng_next(&rs));
		if (rng_below(&rs, 3) == 0)
			memset(view + off, 0, 4096);
	}
	memset(view + 2 * MiB, 0, 2 * MiB); /* whole blocks of zeros */
	snprintf(full, sizeof(full), "%s/full.qcow2", dir);
	write_image(full, view, NULL, NULL);
	/* the incremental: new data, and zeros where the parent had data */
	for (uint64_t c = 0; c < SIZE / 65536; c++)
		if (rng_below(&rs, 4) == 0) {
			mask[c] = 1;
			if (rng_below(&rs, 3))
				fill(view + c * 65536, 65536, rng_next(&rs));
			else
				memset(view + c * 65536, 0, 65536);
		}
	snprintf(inc, sizeof(inc), "%s/inc.qcow2", dir);
	write_image(inc, view, mask, "full.qcow2");

	/* into a fresh volume */
	struct volume *v = mem_volume("fresh", SIZE, 12, MiB, SIZE, NULL);
	CHECK(restore(v, inc, true, false, &job) == 0);
	CHECK(job.bytes_written > 0 && job.bytes_zeroed > 2 * MiB);
	CHECK_EQ(job.bytes_checked, SIZE);
	check_volume(v, view);
	volume_destroy(v);

	/* into a volume full of old data: zeros must be written too */
	v = mem_volume("old", SIZE, 12, MiB, SIZE, &origin);
	for (uint64_t off = 0; off < SIZE; off += 4096)
		fill(dev_mem_data(origin) + off, 4096, rng_next(&rs) | 1);
	CHECK(restore(v, inc, false, false, &job) == 0);
	check_volume(v, view);

	/* compare only: equal, then one changed byte found */
	CHECK(restore(v, inc, false, true, &job) == 0);
	CHECK_EQ(job.mismatched, 0);
	uint8_t x = view[3 * MiB + 12345] ^ 0xff;
	CHECK(volume_write(v, &x, 1, 3 * MiB + 12345, 0) == 0);
	CHECK(restore(v, inc, false, true, &job) == -EILSEQ);
	CHECK(job.mismatched >= 1);
	CHECK_EQ(job.first_mismatch, 3 * MiB + 12345);
	CHECK(strstr(job.error, "differs") != NULL);
	volume_destroy(v);

	/* the wrong size */
	v = mem_volume("small", SIZE - MiB, 12, MiB, SIZE, NULL);
	CHECK(restore(v, inc, true, false, &job) == -EINVAL);
	CHECK(strstr(job.error, "image's size") != NULL);
	volume_destroy(v);

	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	free(view);
	free(mask);
	printf("test_restore: ok\n");
	return 0;
}
