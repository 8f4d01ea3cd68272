/* restore.c - see restore.h.
 *
 * Notes on the design
 * -------------------
 * Worker threads take 1 MiB blocks from a shared cursor, so reads,
 * decompression and writes of different blocks overlap; memory is one
 * block per worker plus a 4-byte checksum per block.  A block the image
 * maps as zeros throughout is not read at all.  Within a block, runs of
 * zero pages are left out of the writes (a fresh volume) or written as
 * write-zeroes (an old one), so a restored sparse image stays sparse on a
 * sparse backing.
 */
#include "restore/restore.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/clock.h"
#include "common/compiler.h"

#define BLOCK (UINT64_C(1) << 20)
#define ZERO_UNIT 4096
#define TICK_NS (200 * 1000000ull)

enum phase { PHASE_WRITE, PHASE_VERIFY, PHASE_COMPARE };

struct shared {
	struct restore_job *job;
	enum phase phase;
	pthread_mutex_t mu; /* the cursor and the first error */
	uint64_t next, nblocks;
	uint64_t *crc;      /* per block: a hash of the image's content as written */
	uint64_t zero_crc;  /* of a whole block of zeros */
	int err;
};

double restore_job_seconds(const struct restore_job *job)
{
	return (double)(clock_mono_ns() - job->started_ns) / 1e9;
}

static void fail(struct shared *sh, int r, const char *fmt, ...) HS_PRINTF(3, 4);
static void fail(struct shared *sh, int r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&sh->mu);
	if (!sh->err) {
		sh->err = r;
		va_start(ap, fmt);
		vsnprintf(sh->job->error, sizeof(sh->job->error), fmt, ap);
		va_end(ap);
		atomic_store(&sh->job->cancel, true);
	}
	pthread_mutex_unlock(&sh->mu);
}

static bool next_block(struct shared *sh, uint64_t *b)
{
	bool ok;

	pthread_mutex_lock(&sh->mu);
	ok = !sh->err && !atomic_load(&sh->job->cancel) && sh->next < sh->nblocks;
	if (ok)
		*b = sh->next++;
	pthread_mutex_unlock(&sh->mu);
	return ok;
}

struct zero_probe {
	uint64_t data; /* bytes mapped as data */
};

static int probe(void *arg, uint64_t off, uint64_t len, enum image_extent type)
{
	struct zero_probe *z = arg;
	if (type == IMAGE_DATA)
		z->data += len;
	return 0;
}

/* Writes buf (the image's bytes at off) into the volume: data as data,
 * runs of zero pages as nothing (fresh) or write-zeroes. */
static int put(struct shared *sh, const uint8_t *buf, size_t len, uint64_t off)
{
	struct restore_job *job = sh->job;

	for (size_t i = 0; i < len;) {
		bool zero;
		size_t j = i + image_zero_run(buf + i, len - i, off + i, ZERO_UNIT, &zero);
		int r = 0;
		if (!zero) {
			r = volume_write(job->dst, buf + i, j - i, off + i, VOLUME_NOCACHE);
			atomic_fetch_add(&job->bytes_written, j - i);
		} else {
			if (!job->fresh)
				r = volume_write_zeroes(job->dst, off + i, j - i, VOLUME_MAY_UNMAP);
			atomic_fetch_add(&job->bytes_zeroed, j - i);
		}
		if (r < 0) {
			fail(sh, r, "writing the volume at offset %llu failed: %s",
			     (unsigned long long)(off + i), strerror(-r));
			return r;
		}
		i = j;
	}
	return 0;
}

static void write_block(struct shared *sh, uint64_t b, uint8_t *buf)
{
	struct restore_job *job = sh->job;
	uint64_t off = b * BLOCK;
	size_t len = (size_t)HS_MIN_U64(BLOCK, job->size - off);
	struct zero_probe z = { 0 };
	int r = image_map(job->src, off, len, probe, &z);

	if (r < 0) {
		fail(sh, r, "reading the image's map at offset %llu failed: %s",
		     (unsigned long long)off, image_error());
		return;
	}
	if (z.data == 0) { /* zeros throughout: nothing to read */
		memset(buf, 0, len);
		sh->crc[b] = len == BLOCK ? sh->zero_crc : XXH3_64bits(buf, len);
		(void)put(sh, buf, len, off);
		return;
	}
	r = image_read(job->src, buf, len, off);
	if (r < 0) {
		fail(sh, r, "%s", image_error());
		return;
	}
	sh->crc[b] = XXH3_64bits(buf, len);
	(void)put(sh, buf, len, off);
}

static void note_mismatch(struct restore_job *job, uint64_t off, uint64_t n)
{
	uint64_t first = atomic_load(&job->first_mismatch);
	atomic_fetch_add(&job->mismatched, n);
	while (off < first && !atomic_compare_exchange_weak(&job->first_mismatch, &first, off))
		;
}

static void verify_block(struct shared *sh, uint64_t b, uint8_t *buf)
{
	struct restore_job *job = sh->job;
	uint64_t off = b * BLOCK;
	size_t len = (size_t)HS_MIN_U64(BLOCK, job->size - off);
	int r = volume_read_flags(job->dst, buf, len, off, VOLUME_NOCACHE);

	if (r < 0) {
		fail(sh, r, "reading the volume back at offset %llu failed: %s",
		     (unsigned long long)off, strerror(-r));
		return;
	}
	if (XXH3_64bits(buf, len) != sh->crc[b])
		note_mismatch(job, off, len);
	atomic_fetch_add(&job->bytes_checked, len);
}

static void compare_block(struct shared *sh, uint64_t b, uint8_t *buf, uint8_t *mine)
{
	struct restore_job *job = sh->job;
	uint64_t off = b * BLOCK;
	size_t len = (size_t)HS_MIN_U64(BLOCK, job->size - off);
	int r = image_read(job->src, buf, len, off);

	if (r < 0) {
		fail(sh, r, "%s", image_error());
		return;
	}
	r = volume_read(job->dst, mine, len, off);
	if (r < 0) {
		fail(sh, r, "reading the volume at offset %llu failed: %s", (unsigned long long)off,
		     strerror(-r));
		return;
	}
	if (memcmp(buf, mine, len) != 0) {
		uint64_t n = 0, first = UINT64_MAX;
		for (size_t i = 0; i < len; i++)
			if (buf[i] != mine[i]) {
				n++;
				first = HS_MIN_U64(first, off + i);
			}
		note_mismatch(job, first, n);
	}
	atomic_fetch_add(&job->bytes_checked, len);
}

static void *worker(void *arg)
{
	struct shared *sh = arg;
	uint8_t *buf = NULL, *mine = NULL;
	uint64_t b;

	if (posix_memalign((void **)&buf, 4096, BLOCK) ||
	    (sh->phase == PHASE_COMPARE && posix_memalign((void **)&mine, 4096, BLOCK))) {
		fail(sh, -ENOMEM, "out of memory for the restore");
		free(buf);
		return NULL;
	}
	while (next_block(sh, &b)) {
		if (sh->phase == PHASE_WRITE)
			write_block(sh, b, buf);
		else if (sh->phase == PHASE_VERIFY)
			verify_block(sh, b, buf);
		else
			compare_block(sh, b, buf, mine);
		atomic_fetch_add(&sh->job->position,
				 HS_MIN_U64(BLOCK, sh->job->size - b * BLOCK));
	}
	free(buf);
	free(mine);
	return NULL;
}

/* Runs one phase on the workers, ticking from this thread. */
static int run_phase(struct shared *sh, enum phase ph, unsigned threads,
		     void (*tick)(void *arg, struct restore_job *job), void *arg)
{
	static const char *const names[] = { "writing", "verifying", "comparing" };
	pthread_t t[64];
	unsigned n = 0;

	sh->phase = ph;
	sh->next = 0;
	sh->job->phase = names[ph];
	atomic_store(&sh->job->position, 0);
	for (unsigned i = 0; i < threads && i < 64; i++)
		if (pthread_create(&t[n], NULL, worker, sh) == 0)
			n++;
	if (n == 0) {
		snprintf(sh->job->error, sizeof(sh->job->error), "cannot start the restore's threads");
		return -EAGAIN;
	}
	for (;;) {
		pthread_mutex_lock(&sh->mu);
		bool done = sh->next >= sh->nblocks || sh->err || atomic_load(&sh->job->cancel);
		pthread_mutex_unlock(&sh->mu);
		if (done)
			break;
		struct timespec ts = { 0, (long)TICK_NS };
		nanosleep(&ts, NULL);
		if (tick)
			tick(arg, sh->job);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (tick)
		tick(arg, sh->job);
	if (!sh->err && atomic_load(&sh->job->cancel)) {
		sh->err = -ECANCELED;
		snprintf(sh->job->error, sizeof(sh->job->error), "restore cancelled");
	}
	return sh->err;
}

int restore_job_run(struct restore_job *job, void (*tick)(void *arg, struct restore_job *job),
		    void *arg)
{
	struct shared sh = { .job = job };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	/* twice the CPUs: while some decompress, others wait for the disk */
	unsigned threads = job->threads ? job->threads : (unsigned)HS_MAX(2 * cpus, 2);
	int r;

	job->size = image_get_info(job->src)->size;
	job->started_ns = clock_mono_ns();
	atomic_store(&job->first_mismatch, UINT64_MAX);
	if (job->size != volume_size(job->dst)) {
		snprintf(job->error, sizeof(job->error),
			 "the image holds %llu bytes, the volume %llu: restore needs a volume of the "
			 "image's size",
			 (unsigned long long)job->size, (unsigned long long)volume_size(job->dst));
		return -EINVAL;
	}
	sh.nblocks = (job->size + BLOCK - 1) / BLOCK;
	pthread_mutex_init(&sh.mu, NULL);
	if (job->verify_only) {
		r = run_phase(&sh, PHASE_COMPARE, threads, tick, arg);
		goto out;
	}
	sh.crc = calloc(sh.nblocks, sizeof(*sh.crc));
	uint8_t *zeros = calloc(1, BLOCK);
	if (!sh.crc || !zeros) {
		free(zeros);
		snprintf(job->error, sizeof(job->error), "out of memory for the restore");
		r = -ENOMEM;
		goto out;
	}
	sh.zero_crc = XXH3_64bits(zeros, BLOCK);
	free(zeros);
	r = run_phase(&sh, PHASE_WRITE, threads, tick, arg);
	job->write_seconds = restore_job_seconds(job);
	if (r == 0) {
		r = volume_flush(job->dst);
		if (r < 0)
			snprintf(job->error, sizeof(job->error), "flushing the volume failed: %s",
				 strerror(-r));
	}
	if (r == 0 && !job->no_verify)
		r = run_phase(&sh, PHASE_VERIFY, threads, tick, arg);
	job->verify_seconds = restore_job_seconds(job) - job->write_seconds;
out:
	if (r == 0 && atomic_load(&job->mismatched)) {
		snprintf(job->error, sizeof(job->error),
			 "the volume differs from the image: %llu bytes, the first at offset %llu",
			 (unsigned long long)atomic_load(&job->mismatched),
			 (unsigned long long)atomic_load(&job->first_mismatch));
		r = -EILSEQ;
	}
	free(sh.crc);
	pthread_mutex_destroy(&sh.mu);
	return r;
}
