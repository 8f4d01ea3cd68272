/* backup_job.c - see backup.h.
 *
 * Notes on the design
 * -------------------
 * Two threads carry the block pass: this one reads the snapshot, an output
 * thread hands what was read to the image writer, with BUFFERS blocks of
 * BLOCK bytes between them, so memory stays at a few MiB whatever the
 * volume size.  Reads are aligned to BLOCK boundaries so the origin sees
 * large aligned reads.  The extent walk happens a window at a time, so a
 * 100 GiB sparse volume costs a few thousand extent queries, not a map of
 * its own.  Zero ranges travel through the same queue as data, so a writer
 * that takes bytes only in order (a pipe) gets them in order.
 *
 * Who writes what, so that no byte reaches the image twice: the copies pass
 * marks what it wrote in `taken`, which the block pass neither reads nor
 * writes (an incremental starts with every unchanged chunk taken, so its
 * block pass reads whole blocks minus what did not change); the drain
 * releases what it wrote, which the block pass finds consumed (and reads
 * around); the block pass announces its reach to the drain before it reads
 * (backup_drain.h).  Once the output thread has written a block, nobody
 * writes below its end any more, which it tells the writer (position).
 */
#include "backup/backup.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup_copies.h"
#include "backup/backup_drain.h"
#include "backup/backup_pace.h"
#include "common/clock.h"
#include "common/compiler.h"
#include "engine/snapshot_backup.h"

#define BLOCK (1u << 20)
#define BUFFERS 4
#define EXTENT_WINDOW (UINT64_C(256) << 20)
#define TICK_NS (200 * 1000000ull)
#define PREFETCH_AHEAD (UINT64_C(8) << 20)
#define PACE_MIN_SLEEP_NS 1000000u

/* --- extents ---------------------------------------------------------------- */

struct extent {
	uint64_t off, len;
	enum extent_type type;
};

struct extent_list {
	struct extent *v;
	size_t n, cap;
};

static int collect_extent(void *arg, uint64_t off, uint64_t len, enum extent_type type)
{
	struct extent_list *l = arg;

	if (l->n && l->v[l->n - 1].type == type && l->v[l->n - 1].off + l->v[l->n - 1].len == off) {
		l->v[l->n - 1].len += len;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct extent *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct extent){ off, len, type };
	return 0;
}

/* --- the output thread ------------------------------------------------------------ */

struct item {
	void *p;
	uint64_t off;
	size_t len;
	bool zero; /* the range reads as zeros; p unused */
	bool filled;
};

struct output {
	struct backup_job *job;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item items[BUFFERS];
	unsigned head, tail; /* the reader fills tail, the output empties head */
	bool done;
	int err;
	uint64_t chunk;
	const struct bitmap *taken; /* chunks not to write (written, or unchanged) */
};

/* --- the priority of the backup's threads ---------------------------------------- */

/* What a thread of the caller had before the job lowered it: the job runs on
 * a thread the daemon goes on using (a control client's), so it gives back
 * what it took.  Threads the job starts and ends need no such care. */
struct thread_prio {
	int ioprio; /* -1: unchanged */
	bool niced;
	int nice;
};

/* IOPRIO_WHO_PROCESS with 0: the calling thread. */
#define IOPRIO_WHO_PROCESS 1

static void set_idle_io_priority(struct thread_prio *saved)
{
	/* IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT; honoured by BFQ, ignored by
	 * schedulers without classes, harmless either way. */
	const int class_idle = 3, class_shift = 13;

	if (saved)
		saved->ioprio = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
	(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, class_idle << class_shift);
}

/* A yielding backup's threads run at nice 19: its reading costs the
 * foreground CPU as well as disk time, and on 2 vCPUs the backup's threads
 * (copying, compressing) compete with the FUSE workers that
 * serve the foreground.  Measured with the share pacer (issue 15): without
 * nice the foreground kept 0.79x and the backup 0.22x of their idle rates;
 * at nice 19, 0.84x and 0.38x.  On Linux nice is per thread
 * (setpriority(PRIO_PROCESS, gettid()) touches this thread alone), and a
 * new thread inherits its creator's.  Giving it back later (lowering nice)
 * needs CAP_SYS_NICE, which the daemon has as root; without it the thread
 * stays at 19: slower, never wrong.  Not for --no-yield, which asks for
 * the backup to go as fast as it can. */
static void lower_cpu_priority(struct thread_prio *saved)
{
	pid_t tid = gettid();
	int old;

	errno = 0;
	old = getpriority(PRIO_PROCESS, (id_t)tid);
	if ((old == -1 && errno) || old >= 19)
		return;
	if (setpriority(PRIO_PROCESS, (id_t)tid, 19) == 0 && saved) {
		saved->niced = true;
		saved->nice = old;
	}
}

static void restore_priority(const struct thread_prio *saved)
{
	if (saved->niced)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), saved->nice);
	if (saved->ioprio >= 0)
		(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, saved->ioprio);
}

static int put_item(struct image_writer *w, const struct item *it, uint64_t from, uint64_t len)
{
	if (it->zero)
		return image_writer_zero(w, from, len);
	return image_writer_data(w, (const uint8_t *)it->p + (from - it->off), len, from);
}

/* Writes a block (or a zero range), except the taken chunks. */
static int write_block(struct output *o, const struct item *it)
{
	struct image_writer *w = o->job->out;
	uint64_t end = it->off + it->len;
	uint64_t c_first = it->off / o->chunk, c_end = (end + o->chunk - 1) / o->chunk;

	if (!o->taken || bitmap_next_set(o->taken, c_first, c_end) == c_end)
		return put_item(w, it, it->off, it->len);
	for (uint64_t c = c_first; c < c_end;) {
		if (bitmap_test(o->taken, c)) {
			c++;
			continue;
		}
		uint64_t c2 = bitmap_next_set(o->taken, c, c_end);
		uint64_t from = HS_MAX(c * o->chunk, it->off), to = HS_MIN_U64(c2 * o->chunk, end);
		int r = put_item(w, it, from, to - from);
		if (r)
			return r;
		c = c2;
	}
	return 0;
}

static void *output_main(void *arg)
{
	struct output *o = arg;

	set_idle_io_priority(NULL);
	if (o->job->yield)
		lower_cpu_priority(NULL); /* it compresses and copies: CPU */
	pthread_mutex_lock(&o->mu);
	for (;;) {
		while (!o->items[o->head].filled && !o->done)
			pthread_cond_wait(&o->cv, &o->mu);
		if (!o->items[o->head].filled)
			break; /* done and drained */
		struct item *it = &o->items[o->head];
		pthread_mutex_unlock(&o->mu);
		int r = o->err ? 0 : write_block(o, it);
		if (r == 0)
			image_writer_position(o->job->out, it->off + it->len);
		pthread_mutex_lock(&o->mu);
		if (r < 0 && !o->err) {
			o->err = r;
			snprintf(o->job->error, sizeof(o->job->error), "%s", o->job->out->error);
		}
		it->filled = false;
		o->head = (o->head + 1) % BUFFERS;
		pthread_cond_broadcast(&o->cv);
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

/* The next empty item for the reader, or NULL when the output failed. */
static struct item *output_slot(struct output *o)
{
	struct item *it;

	pthread_mutex_lock(&o->mu);
	while (o->items[o->tail].filled && !o->err)
		pthread_cond_wait(&o->cv, &o->mu);
	it = o->err ? NULL : &o->items[o->tail];
	pthread_mutex_unlock(&o->mu);
	return it;
}

static void output_submit(struct output *o, struct item *it, uint64_t off, size_t len, bool zero)
{
	pthread_mutex_lock(&o->mu);
	it->off = off;
	it->len = len;
	it->zero = zero;
	it->filled = true;
	o->tail = (o->tail + 1) % BUFFERS;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

/* --- one run of the job ---------------------------------------------------------- */

struct run {
	struct backup_job *job;
	uint64_t chunk;
	struct output out;
	struct backup_pacer pacer;
	struct backup_drain drain;
	struct extent_list ext;
	struct bitmap taken;
	bool have_taken;
	uint64_t frontier; /* consumed up to here */
	uint64_t prefetched; /* origin reads asked for up to here */
	uint64_t last_tick;
	void (*tick)(void *arg, struct backup_job *job);
	void *tick_arg;
};

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(t_ns / 1000000000u),
			       .tv_nsec = (long)(t_ns % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void pace(struct run *ru, size_t n)
{
	struct volume *v = snapshot_volume(ru->job->snap);
	struct volume_fg_sample fg;
	uint64_t now, until;

	/* During a probe the pacer says when to ask again: the pause must
	 * really happen, and its end be judged on counters read after it. */
	for (;;) {
		volume_fg_sample(v, &fg);
		now = clock_mono_ns();
		until = backup_pacer_step(&ru->pacer, now, n, &fg);
		if (!ru->pacer.probing)
			break;
		sleep_until(until);
	}
	atomic_store(&ru->job->current_rate, (uint64_t)ru->pacer.rate);
	atomic_store(&ru->job->yields, ru->pacer.yields);
	/* small debts add up and are paid in one sleep: a sleep costs more than
	 * a small read (timer slack) */
	if (until > now + PACE_MIN_SLEEP_NS)
		sleep_until(until);
}

double backup_job_seconds(const struct backup_job *job)
{
	return (double)(clock_mono_ns() - job->started_ns) / 1e9;
}

static void consume_behind(struct run *ru, uint64_t pos)
{
	struct backup_job *job = ru->job;
	uint64_t to = pos >= job->size ? job->size : hs_align_down(pos, ru->chunk);

	if (!job->consume || to <= ru->frontier)
		return;
	(void)snapshot_consume(job->snap, ru->frontier, to - ru->frontier);
	ru->frontier = to;
}

static void note_diff_peak(struct backup_job *job)
{
	uint64_t now = volume_diff_bytes(snapshot_volume(job->snap));
	uint64_t peak = atomic_load(&job->diff_peak);
	while (now > peak && !atomic_compare_exchange_weak(&job->diff_peak, &peak, now))
		;
}

void backup_read_error(struct backup_job *job, int r, uint64_t off)
{
	struct snapshot_stats ss;

	snapshot_get_stats(job->snap, &ss);
	if (ss.state == SNAPSHOT_FAILED)
		snprintf(job->error, sizeof(job->error), "snapshot %s failed during the backup: %s",
			 job->source, ss.reason);
	else if (ss.state == SNAPSHOT_DELETED)
		snprintf(job->error, sizeof(job->error),
			 "snapshot %s was deleted during the backup", job->source);
	else if (r == -ENODATA)
		snprintf(job->error, sizeof(job->error),
			 "the range at offset %llu of %s was consumed already (by another "
			 "backup, or trimmed over NBD); take a new snapshot",
			 (unsigned long long)off, job->source);
	else
		snprintf(job->error, sizeof(job->error), "reading %s at offset %llu failed: %s",
			 job->source, (unsigned long long)off, strerror(-r));
}

/* Reads the chunks of [off, off+n) that are still there one by one, straight
 * into the image: for a block some of whose chunks the drain has taken
 * (released) since the extents were listed.  Rare, so simple. */
static int read_around_drained(struct run *ru, void *buf, uint64_t off, size_t n)
{
	struct backup_job *job = ru->job;

	for (uint64_t p = off; p < off + n;) {
		size_t len = (size_t)(HS_MIN_U64(hs_align_down(p, ru->chunk) + ru->chunk, off + n) - p);
		if (ru->have_taken && bitmap_test(&ru->taken, p / ru->chunk)) {
			p += len; /* written already, or unchanged since the parent */
			continue;
		}
		int r = snapshot_read(job->snap, buf, len, p);
		if (r == 0) {
			atomic_fetch_add(&job->bytes_read, len);
			r = image_writer_data(job->out, buf, len, p);
			if (r < 0) {
				snprintf(job->error, sizeof(job->error), "%s", job->out->error);
				return r;
			}
		} else if (r != -ENODATA) {
			backup_read_error(job, r, p);
			return r;
		}
		p += len;
	}
	return 0;
}

/* Bytes of [off, off + n) that the copies pass took (and counted). */
static uint64_t taken_bytes(const struct run *ru, uint64_t off, size_t n)
{
	if (!ru->have_taken)
		return 0;
	uint64_t c0 = off / ru->chunk, c1 = (off + n + ru->chunk - 1) / ru->chunk;
	uint64_t bytes = bitmap_count_range(&ru->taken, c0, c1 - c0) * ru->chunk;
	return HS_MIN_U64(bytes, n);
}

static void progress(struct run *ru, uint64_t pos)
{
	struct backup_job *job = ru->job;
	uint64_t now;

	atomic_store(&job->position, pos);
	consume_behind(ru, pos);
	note_diff_peak(job);
	now = clock_mono_ns();
	if (ru->tick && now - ru->last_tick >= TICK_NS) {
		ru->last_tick = now;
		ru->tick(ru->tick_arg, job);
	}
}

static int cancelled(struct backup_job *job)
{
	if (!atomic_load(&job->cancel))
		return 0;
	if (!job->error[0])
		snprintf(job->error, sizeof(job->error), "backup cancelled");
	return -ECANCELED;
}

/* Keeps the origin's queue deep: asks for what the pass reads next.  A full
 * backup asks for the rest of the extent it reads; an incremental for the
 * chunks it wants ahead, wherever they are (scattered 4 KiB reads one at a
 * time would each wait for the disk). */
static void prefetch(struct run *ru, uint64_t pos, uint64_t extent_end)
{
	struct backup_job *job = ru->job;
	uint64_t nchunks = (job->size + ru->chunk - 1) / ru->chunk;

	if (ru->prefetched < pos)
		ru->prefetched = pos;
	if (!job->only) {
		uint64_t ahead = HS_MIN_U64(pos + PREFETCH_AHEAD, extent_end);
		if (ahead > ru->prefetched) {
			snapshot_prefetch(job->snap, ru->prefetched, ahead - ru->prefetched);
			ru->prefetched = ahead;
		}
		return;
	}
	uint64_t limit = HS_MIN_U64((pos + PREFETCH_AHEAD + ru->chunk - 1) / ru->chunk, nchunks);
	for (uint64_t c = ru->prefetched / ru->chunk; c < limit;) {
		uint64_t c0 = bitmap_next_clear(&ru->taken, c, limit);
		if (c0 >= limit)
			break;
		uint64_t c1 = bitmap_next_set(&ru->taken, c0, limit);
		snapshot_prefetch(job->snap, c0 * ru->chunk, (c1 - c0) * ru->chunk);
		c = c1;
	}
	ru->prefetched = HS_MAX(ru->prefetched, limit * ru->chunk);
}

/* A data extent [off, off + len): read a block at a time. */
static int pass_data(struct run *ru, uint64_t off, uint64_t len)
{
	struct backup_job *job = ru->job;

	for (uint64_t p = off; p < off + len;) {
		size_t n = (size_t)HS_MIN_U64(BLOCK - p % BLOCK, off + len - p);
		struct item *it;
		int r = cancelled(job);

		if (r)
			return r;
		pace(ru, n);
		prefetch(ru, p + n, off + len);
		it = output_slot(&ru->out);
		if (!it)
			return -EPIPE; /* the output failed; job->error says how */
		backup_drain_advance(&ru->drain, p + n);
		r = snapshot_read_except(job->snap, it->p, n, p, ru->have_taken ? &ru->taken : NULL);
		if (r == -ENODATA && job->consume) {
			/* the drain took part of this block */
			r = read_around_drained(ru, it->p, p, n);
			if (r < 0)
				return r;
		} else if (r < 0) {
			backup_read_error(job, r, p);
			return r;
		} else {
			atomic_fetch_add(&job->bytes_read, n - taken_bytes(ru, p, n));
			output_submit(&ru->out, it, p, n, false);
		}
		p += n;
		progress(ru, p);
	}
	return 0;
}

/* [from, to) in block order, window by window of extents. */
static int pass_range(struct run *ru, uint64_t from, uint64_t to)
{
	struct backup_job *job = ru->job;
	int r = 0;

	for (uint64_t win = from; win < to && r == 0;) {
		uint64_t wlen = HS_MIN_U64(EXTENT_WINDOW - win % EXTENT_WINDOW, to - win);
		ru->ext.n = 0;
		r = snapshot_extents(job->snap, win, wlen, collect_extent, &ru->ext);
		if (r < 0) {
			backup_read_error(job, r, win);
			break;
		}
		for (size_t i = 0; i < ru->ext.n && r == 0; i++) {
			struct extent *e = &ru->ext.v[i];
			struct item *it;
			switch (e->type) {
			case EXTENT_CONSUMED:
				if (!job->consume) {
					r = -ENODATA;
					backup_read_error(job, r, e->off);
					break;
				}
				/* taken by our drain */
				progress(ru, e->off + e->len);
				break;
			case EXTENT_ZERO:
				/* free at the snapshot instant, or a hole: zeros, unread */
				it = output_slot(&ru->out);
				if (!it) {
					r = -EPIPE;
					break;
				}
				output_submit(&ru->out, it, e->off, e->len, true);
				atomic_fetch_add(&job->bytes_skipped,
						 e->len - taken_bytes(ru, e->off, e->len));
				progress(ru, e->off + e->len);
				break;
			case EXTENT_DATA:
				r = pass_data(ru, e->off, e->len);
				break;
			}
		}
		win += wlen;
	}
	return r;
}

/* The whole volume, or for an incremental the blocks holding chunks it
 * wants (the rest of each block is taken: neither read nor written). */
static int block_pass(struct run *ru)
{
	struct backup_job *job = ru->job;
	uint64_t nchunks = (job->size + ru->chunk - 1) / ru->chunk;
	int r = 0;

	if (!job->only)
		return pass_range(ru, 0, job->size);
	for (uint64_t c = 0; c < nchunks && r == 0;) {
		uint64_t c0 = bitmap_next_clear(&ru->taken, c, nchunks);
		if (c0 >= nchunks)
			break;
		uint64_t c1 = bitmap_next_set(&ru->taken, c0, nchunks);
		uint64_t from = hs_align_down(c0 * ru->chunk, BLOCK);
		uint64_t to = HS_MIN_U64(hs_align_up(c1 * ru->chunk, BLOCK), job->size);
		r = pass_range(ru, from, to);
		c = (to + ru->chunk - 1) / ru->chunk;
	}
	if (r == 0)
		progress(ru, job->size);
	return r;
}

/* The copies pass's pacing and cancel point. */
static int copies_step(void *arg, size_t n)
{
	struct run *ru = arg;

	if (cancelled(ru->job))
		return 1;
	pace(ru, n);
	return 0;
}

/* Nothing taken yet; for an incremental, everything it does not want. */
static int init_taken(struct run *ru)
{
	struct backup_job *job = ru->job;
	uint64_t nchunks = (job->size + ru->chunk - 1) / ru->chunk;
	int r = bitmap_init(&ru->taken, nchunks, job->only != NULL);

	for (uint64_t c = 0; r == 0 && job->only && c < nchunks;) {
		uint64_t c0 = bitmap_next_set(job->only, c, nchunks);
		if (c0 >= nchunks)
			break;
		uint64_t c1 = bitmap_next_clear(job->only, c0, nchunks);
		r = bitmap_clear_range(&ru->taken, c0, c1 - c0);
		c = c1;
	}
	if (r < 0)
		bitmap_destroy(&ru->taken);
	return r;
}

static int output_start(struct run *ru)
{
	struct output *o = &ru->out;

	o->job = ru->job;
	o->chunk = ru->chunk;
	o->taken = ru->have_taken ? &ru->taken : NULL;
	for (unsigned i = 0; i < BUFFERS; i++)
		if (posix_memalign(&o->items[i].p, 4096, BLOCK))
			return -ENOMEM;
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	int r = pthread_create(&o->thread, NULL, output_main, o);
	if (r) {
		pthread_cond_destroy(&o->cv);
		pthread_mutex_destroy(&o->mu);
		return -r;
	}
	return 0;
}

/* Waits for the output thread to write what it has; its error, or 0. */
static int output_stop(struct output *o)
{
	pthread_mutex_lock(&o->mu);
	o->done = true;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
	pthread_join(o->thread, NULL);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	return o->err;
}

int backup_job_run(struct backup_job *job, void (*tick)(void *arg, struct backup_job *job),
		   void *arg)
{
	struct volume *v = snapshot_volume(job->snap);
	struct run *ru = calloc(1, sizeof(*ru));
	struct volume_fg_sample fg;
	struct snapshot_stats st0;
	struct thread_prio prio = { .ioprio = -1 };
	int r = 0, r2;

	job->size = volume_size(v);
	job->started_ns = clock_mono_ns();
	if (!ru) {
		snprintf(job->error, sizeof(job->error), "out of memory for the backup");
		return -ENOMEM;
	}
	ru->job = job;
	ru->chunk = UINT64_C(1) << volume_chunk_shift(v);
	ru->tick = tick;
	ru->tick_arg = arg;
	ru->last_tick = job->started_ns;
	volume_fg_sample(v, &fg);
	backup_pacer_init(&ru->pacer, job->rate_limit, job->yield, job->started_ns, &fg);
	atomic_store(&job->current_rate, (uint64_t)ru->pacer.rate);

	snapshot_get_stats(job->snap, &st0);
	if (st0.consumed_chunks) {
		snprintf(job->error, sizeof(job->error),
			 "%s was partly consumed already (by an earlier backup, or trimmed over "
			 "NBD); take a new snapshot",
			 job->source);
		free(ru);
		return -ENODATA;
	}
	/* The copies pass needs an image that takes single chunks out of
	 * order; a consuming backup has its drain instead, which also releases
	 * what it takes. */
	bool copies = !job->consume && !job->out->sequential && job->out->granularity <= ru->chunk;
	ru->have_taken = copies || job->only;
	if (ru->have_taken && init_taken(ru) < 0) {
		snprintf(job->error, sizeof(job->error), "out of memory for the backup");
		free(ru);
		return -ENOMEM;
	}
	r = output_start(ru);
	if (r < 0) {
		snprintf(job->error, sizeof(job->error), "cannot start the backup's output: %s",
			 strerror(-r));
		goto out_free;
	}
	/* The drain (consuming) and the copies pass (not consuming) never
	 * both run.  The drain starts before this thread lowers its
	 * priorities, so it keeps the caller's: writers that find the RAM
	 * buffer full wait for it. */
	if (job->consume && !job->out->sequential && backup_drain_start(&ru->drain, job) < 0) {
		/* without it the backup is still right; the diff store may grow */
		ru->drain.started = false;
	}
	if (job->yield)
		lower_cpu_priority(&prio);
	if (copies) {
		uint64_t t0 = clock_mono_ns(), b0 = atomic_load(&job->bytes_read);
		r = backup_copies_first(job, &ru->taken, copies_step, ru);
		if (r < 0 && !job->error[0])
			backup_read_error(job, r, 0);
		job->copies_seconds = (double)(clock_mono_ns() - t0) / 1e9;
		job->copies_bytes = atomic_load(&job->bytes_read) - b0;
	}
	set_idle_io_priority(&prio);
	if (r == 0)
		r = block_pass(ru);
	restore_priority(&prio);
	r2 = backup_drain_stop(&ru->drain);
	if (r == 0 && r2 < 0)
		r = r2;
	r2 = output_stop(&ru->out);
	if ((r == 0 || r == -EPIPE) && r2 < 0)
		r = r2; /* job->error holds the writer's words */
	note_diff_peak(job);
	if (tick)
		tick(arg, job);
out_free:
	if (ru->have_taken)
		bitmap_destroy(&ru->taken);
	for (unsigned i = 0; i < BUFFERS; i++)
		free(ru->out.items[i].p);
	free(ru->ext.v);
	free(ru);
	return r;
}
