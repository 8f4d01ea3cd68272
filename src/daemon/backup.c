/* backup.c - see backup.h.
 *
 * Notes on the design
 * -------------------
 * Two threads: this one reads the snapshot, a writer thread writes the image,
 * with BUFFERS blocks of BLOCK bytes between them, so memory stays at a few
 * MiB whatever the volume size.  Reads are aligned to BLOCK boundaries so
 * the origin sees large aligned direct reads.  The extent walk happens a
 * window at a time, so a 100 GiB sparse volume costs a few thousand extent
 * queries, not a map of its own.
 *
 * Pacing: a token bucket at the controller's current rate.  Every
 * CONTROL_NS the controller compares the mean service time of the volume's
 * foreground requests with its baseline: when the backup makes the
 * applications slower, the rate drops by a factor (never below a floor, so
 * the backup never starves); when it does not, or the volume is idle, the
 * rate grows (up to --rate, or without bound).  That aims the backup at the
 * throughput the applications leave free, without fixed sleeps.
 */
#include "backup.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "daemon/backup_copies.h"
#include "daemon/backup_io.h"

#define BLOCK (1u << 20)
#define BUFFERS 4
#define EXTENT_WINDOW (UINT64_C(256) << 20)
#define TICK_NS (200 * 1000000ull)
/* The pacing loop; see control(). */
#define CONTROL_NS (50 * 1000000ull)
#define CONTROL_MIN_OPS 16
#define TARGET 1.25             /* foreground service time allowed, x baseline */
#define TARGET_SLACK_NS 50000.0 /* plus this: noise on a shared virtual disk */
#define BASELINE_DRIFT 1.002
#define DECREASE 0.7
#define INCREASE 1.1
#define RATE_STEP (4.0 * 1000 * 1000)
#define RATE_FLOOR (16.0 * 1000 * 1000) /* bytes/s a busy volume still grants */
#define RATE_START (256.0 * 1000 * 1000) /* 12.8 MB before the first judgement */
#define RATE_MAX (1e12)

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

/* --- the writer thread ---------------------------------------------------------- */

struct slot {
	void *p;
	uint64_t off;
	size_t len;
	bool filled;
};

struct writer {
	struct backup_job *job;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct slot slots[BUFFERS];
	unsigned head, tail; /* reader fills tail, writer empties head */
	bool done;
	int err;
	uint64_t err_off;
	bool regular;        /* the output is a regular file */
	uint64_t unflushed;  /* bytes sent to writeback since the last wait */
	uint64_t chunk;
	const struct bitmap *taken; /* chunks the first pass wrote; not rewritten */
};

static void set_idle_io_priority(void)
{
	/* IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT; honoured by BFQ, ignored by
	 * schedulers without classes, harmless either way. */
	const int who_process = 1, class_idle = 3, class_shift = 13;
	(void)syscall(SYS_ioprio_set, who_process, 0, class_idle << class_shift);
}

/* Rolling writeback, as nbdcopy does it: each block written is sent to the
 * disk at once; the writer waits for what it sent WRITEBACK_LAG earlier and
 * drops it from the page cache.  Without it the whole image sits dirty in
 * the page cache and the final fsync writes it all after the reading is
 * over; with it writing overlaps reading, and the backup neither leaves
 * dirty memory behind nor evicts the applications' cache. */
#define WRITEBACK_LAG (UINT64_C(4) << 20)

static void start_writeback(struct writer *w, uint64_t off, size_t len)
{
	if (!w->regular)
		return;
	(void)sync_file_range(w->job->out_fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
	w->unflushed += len;
	if (w->unflushed >= WRITEBACK_LAG && off + len > WRITEBACK_LAG) {
		off_t done = (off_t)(off + len - WRITEBACK_LAG);
		(void)sync_file_range(w->job->out_fd, 0, done,
				      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					      SYNC_FILE_RANGE_WAIT_AFTER);
		(void)posix_fadvise(w->job->out_fd, 0, done, POSIX_FADV_DONTNEED);
		w->unflushed = 0;
	}
}

static int write_run(struct writer *w, const uint8_t *p, uint64_t off, size_t len)
{
	long r = backup_image_put(w->job, p, len, off);

	if (r > 0) /* not a hole */
		start_writeback(w, off, len);
	return r < 0 ? (int)r : 0;
}

/* Writes a block, except the chunks the first pass wrote already. */
static int write_block(struct writer *w, const struct slot *s)
{
	uint64_t end = s->off + s->len;
	uint64_t c_first = s->off / w->chunk, c_end = (end + w->chunk - 1) / w->chunk;

	if (!w->taken || bitmap_next_set(w->taken, c_first, c_end) == c_end)
		return write_run(w, s->p, s->off, s->len);
	for (uint64_t c = c_first; c < c_end;) {
		if (bitmap_test(w->taken, c)) {
			c++;
			continue;
		}
		uint64_t c2 = bitmap_next_set(w->taken, c, c_end);
		uint64_t from = HS_MAX(c * w->chunk, s->off), to = HS_MIN_U64(c2 * w->chunk, end);
		int r = write_run(w, (const uint8_t *)s->p + (from - s->off), from, to - from);
		if (r)
			return r;
		c = c2;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	set_idle_io_priority();
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->slots[w->head].filled && !w->done)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->slots[w->head].filled)
			break; /* done and drained */
		struct slot *s = &w->slots[w->head];
		pthread_mutex_unlock(&w->mu);
		int r = write_block(w, s);
		pthread_mutex_lock(&w->mu);
		if (r < 0 && !w->err) {
			w->err = r;
			w->err_off = s->off;
		}
		s->filled = false;
		w->head = (w->head + 1) % BUFFERS;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* The next empty slot for the reader, or NULL when the writer failed. */
static struct slot *writer_slot(struct writer *w)
{
	struct slot *s;

	pthread_mutex_lock(&w->mu);
	while (w->slots[w->tail].filled && !w->err)
		pthread_cond_wait(&w->cv, &w->mu);
	s = w->err ? NULL : &w->slots[w->tail];
	pthread_mutex_unlock(&w->mu);
	return s;
}

static void writer_submit(struct writer *w, struct slot *s, uint64_t off, size_t len)
{
	pthread_mutex_lock(&w->mu);
	s->off = off;
	s->len = len;
	s->filled = true;
	w->tail = (w->tail + 1) % BUFFERS;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* --- pacing ------------------------------------------------------------------ */

struct pacer {
	double rate;      /* bytes/s the controller allows now */
	double max_rate;
	uint64_t next_ns; /* when the next byte may be read */
	uint64_t interval_start;
	struct volume_fg_sample last;
	double baseline_ns; /* foreground service time with the backup out of the way */
	uint64_t interval_bytes; /* read since interval_start */
};

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(t_ns / 1000000000u),
			       .tv_nsec = (long)(t_ns % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* One step of the closed loop (LEDBAT-like): the signal is the mean service
 * time of the volume's foreground requests.  The lowest mean seen is the
 * baseline (it drifts up slowly, so a workload that changes is followed);
 * above TARGET times the baseline the backup is in the applications' way and
 * backs off multiplicatively; at or below it, and when the volume is idle,
 * it speeds up. */
static void control(struct backup_job *job, struct pacer *p, uint64_t now)
{
	struct volume *v = snapshot_volume(job->snap);
	struct volume_fg_sample s;
	uint64_t ops, busy;

	volume_fg_sample(v, &s);
	ops = s.ops - p->last.ops;
	busy = s.busy_ns - p->last.busy_ns;
	/* growth is capped at a few times what the backup achieved: a rate the
	 * disk cannot deliver would take many cuts to come back from */
	double achieved = (double)p->interval_bytes * 1e9 / (double)HS_MAX(now - p->interval_start, 1);
	double ceiling = HS_MIN(HS_MAX(4 * achieved, RATE_START), p->max_rate);
	if (ops == 0) {
		p->rate = HS_MAX(HS_MIN(p->rate * 4, ceiling), p->rate * DECREASE);
	} else if (ops < CONTROL_MIN_OPS && now - p->interval_start < 4 * CONTROL_NS) {
		return; /* too few requests to judge yet: keep collecting */
	} else {
		double mean = (double)busy / (double)ops;
		if (p->baseline_ns == 0 || mean < p->baseline_ns)
			p->baseline_ns = mean;
		else
			p->baseline_ns *= BASELINE_DRIFT;
		if (mean > p->baseline_ns * TARGET + TARGET_SLACK_NS) {
			p->rate = HS_MAX(p->rate * DECREASE, RATE_FLOOR);
			atomic_fetch_add(&job->yields, 1);
		} else {
			p->rate = HS_MAX(HS_MIN(p->rate * INCREASE + RATE_STEP, ceiling),
					 p->rate * DECREASE);
		}
	}
	p->last = s;
	p->interval_start = now;
	p->interval_bytes = 0;
	atomic_store(&job->current_rate, (uint64_t)p->rate);
}

static void pace(struct backup_job *job, struct pacer *p, size_t n)
{
	uint64_t now = clock_mono_ns();

	p->interval_bytes += n;
	if (job->yield && now - p->interval_start >= CONTROL_NS)
		control(job, p, now);
	if (p->rate >= RATE_MAX)
		return;
	/* no saving up: an idle stretch buys at most 20 ms of burst */
	if (p->next_ns + 20000000u < now)
		p->next_ns = now - 20000000u;
	p->next_ns += (uint64_t)((double)n / p->rate * 1e9);
	if (p->next_ns > now)
		sleep_until(p->next_ns);
}

/* --- the drain thread ------------------------------------------------------------ */

/* While a consuming backup runs, this thread takes every copy the snapshot
 * holds, wherever it is, writes it into the image at its place and consumes
 * it: copies never pile up ahead of the sequential reader, and writers that
 * wait for RAM room wait for this thread, which never waits on them. */
struct drain {
	struct backup_job *job;
	pthread_t thread;
	atomic_bool stop;
	int err;
	uint64_t err_off;
};

#define DRAIN_BATCH 256
#define DRAIN_WAIT_NS (100 * 1000000ull)

static void *drain_main(void *arg)
{
	struct drain *dr = arg;
	struct backup_job *job = dr->job;
	struct volume *v = snapshot_volume(job->snap);
	uint64_t chunk = UINT64_C(1) << volume_chunk_shift(v);
	uint64_t chunks[DRAIN_BATCH];
	void *buf;

	if (posix_memalign(&buf, 4096, chunk)) {
		dr->err = -ENOMEM;
		return NULL;
	}
	while (!atomic_load(&dr->stop) && !atomic_load(&job->cancel)) {
		size_t n = snapshot_held_chunks(job->snap, chunks, DRAIN_BATCH, DRAIN_WAIT_NS);
		for (size_t i = 0; i < n; i++) {
			uint64_t off = chunks[i] * chunk;
			size_t len = (size_t)HS_MIN_U64(chunk, job->size - off);
			int r = snapshot_read_held(job->snap, chunks[i], buf);
			if (r == -EAGAIN)
				continue; /* consumed by the sequential pass meanwhile */
			long put = r == 0 ? backup_image_put(job, buf, len, off) : 0;
			if (put < 0)
				r = (int)put;
			if (r < 0) {
				dr->err = r;
				dr->err_off = off;
				atomic_store(&job->cancel, true);
				break;
			}
			atomic_fetch_add(&job->bytes_read, len);
			atomic_fetch_add(&job->bytes_drained, len);
			(void)snapshot_consume(job->snap, off, len);
		}
	}
	free(buf);
	return NULL;
}

/* The first pass's pacing and cancel point. */
struct copies_step {
	struct backup_job *job;
	struct pacer *pacer;
};

static int copies_step(void *arg, size_t n)
{
	struct copies_step *cs = arg;

	if (atomic_load(&cs->job->cancel)) {
		snprintf(cs->job->error, sizeof(cs->job->error), "backup cancelled");
		return 1;
	}
	pace(cs->job, cs->pacer, n);
	return 0;
}

/* Bytes of [off, off + n) that the first pass took (and counted). */
static uint64_t taken_bytes(const struct writer *w, uint64_t off, size_t n)
{
	if (!w->taken)
		return 0;
	uint64_t c0 = off / w->chunk, c1 = (off + n + w->chunk - 1) / w->chunk;
	uint64_t bytes = bitmap_count_range(w->taken, c0, c1 - c0) * w->chunk;
	return HS_MIN_U64(bytes, n);
}

/* --- the job -------------------------------------------------------------------- */

double backup_job_seconds(const struct backup_job *job)
{
	return (double)(clock_mono_ns() - job->started_ns) / 1e9;
}

static void consume_behind(struct backup_job *job, uint64_t *frontier, uint64_t pos,
			   uint64_t chunk)
{
	uint64_t to = pos >= job->size ? job->size : hs_align_down(pos, chunk);

	if (!job->consume || to <= *frontier)
		return;
	(void)snapshot_consume(job->snap, *frontier, to - *frontier);
	*frontier = to;
}

static void note_diff_peak(struct backup_job *job)
{
	uint64_t now = volume_diff_bytes(snapshot_volume(job->snap));
	uint64_t peak = atomic_load(&job->diff_peak);
	while (now > peak && !atomic_compare_exchange_weak(&job->diff_peak, &peak, now))
		;
}

/* Reads the chunks of [off, off+n) that are still there one by one, straight
 * into the image: for a block some of whose chunks the drain has taken
 * (consumed) since the extents were listed.  Rare, so simple. */
static int read_around_drained(struct backup_job *job, void *buf, uint64_t off, size_t n)
{
	uint64_t chunk = UINT64_C(1) << volume_chunk_shift(snapshot_volume(job->snap));

	for (uint64_t p = off; p < off + n;) {
		size_t len = (size_t)HS_MIN_U64(hs_align_down(p, chunk) + chunk, off + n) - (size_t)p;
		int r = snapshot_read(job->snap, buf, len, p);
		if (r == 0) {
			atomic_fetch_add(&job->bytes_read, len);
			long put = backup_image_put(job, buf, len, p);
			if (put < 0)
				return (int)put;
		} else if (r != -ENODATA) {
			return r;
		}
		p += len;
	}
	return 0;
}

static void read_error(struct backup_job *job, int r, uint64_t off)
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

int backup_job_run(struct backup_job *job, void (*tick)(void *arg, struct backup_job *job),
		   void *arg)
{
	struct volume *v = snapshot_volume(job->snap);
	uint64_t chunk = UINT64_C(1) << volume_chunk_shift(v);
	struct extent_list ext = { 0 };
	struct writer w = { .job = job };
	struct pacer pacer = { 0 };
	struct drain drain = { 0 };
	struct bitmap taken;
	bool drain_started = false;
	uint64_t last_tick, frontier = 0;
	int r = 0;

	job->size = volume_size(v);
	job->started_ns = clock_mono_ns();
	last_tick = job->started_ns;
	pacer.max_rate = job->rate_limit ? (double)job->rate_limit : RATE_MAX;
	pacer.rate = job->yield ? HS_MIN(RATE_START, pacer.max_rate) : pacer.max_rate;
	pacer.next_ns = pacer.interval_start = job->started_ns;
	volume_fg_sample(v, &pacer.last);
	atomic_store(&job->current_rate, (uint64_t)pacer.rate);

	for (unsigned i = 0; i < BUFFERS; i++)
		if (posix_memalign(&w.slots[i].p, 4096, BLOCK)) {
			snprintf(job->error, sizeof(job->error), "out of memory for backup buffers");
			r = -ENOMEM;
			goto out_free;
		}
	if (!job->consume) {
		r = bitmap_init(&taken, (job->size + chunk - 1) / chunk, false);
		if (r < 0) {
			snprintf(job->error, sizeof(job->error), "out of memory for the backup");
			goto out_free;
		}
		w.taken = &taken;
	}
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	struct stat ost;
	w.regular = fstat(job->out_fd, &ost) == 0 && S_ISREG(ost.st_mode);
	w.chunk = chunk;
	r = pthread_create(&w.thread, NULL, writer_main, &w);
	if (r) {
		snprintf(job->error, sizeof(job->error), "cannot start the writer thread");
		r = -r;
		goto out_sync;
	}
	struct snapshot_stats st0;
	snapshot_get_stats(job->snap, &st0);
	if (st0.consumed_chunks) {
		snprintf(job->error, sizeof(job->error),
			 "%s was partly consumed already (by an earlier backup, or trimmed over "
			 "NBD); take a new snapshot",
			 job->source);
		r = -ENODATA;
		goto out_writer;
	}
	if (w.taken) {
		/* a consuming backup has its drain instead, which also releases
		 * what it takes */
		struct copies_step step = { job, &pacer };
		r = backup_copies_first(job, &taken, copies_step, &step);
		if (r < 0) {
			if (!job->error[0])
				read_error(job, r, 0);
			goto out_writer;
		}
	}
	if (job->consume) {
		drain.job = job;
		snapshot_set_drain(job->snap, true);
		if (pthread_create(&drain.thread, NULL, drain_main, &drain) == 0) {
			drain_started = true;
		} else {
			snapshot_set_drain(job->snap, false);
		}
	}
	set_idle_io_priority();

	for (uint64_t win = 0; win < job->size && r == 0;) {
		uint64_t wlen = HS_MIN_U64(EXTENT_WINDOW, job->size - win);
		ext.n = 0;
		r = snapshot_extents(job->snap, win, wlen, collect_extent, &ext);
		if (r < 0) {
			read_error(job, r, win);
			break;
		}
		for (size_t i = 0; i < ext.n && r == 0; i++) {
			struct extent *e = &ext.v[i];
			if (e->type == EXTENT_CONSUMED) {
				if (job->consume) { /* taken by our drain */
					atomic_store(&job->position, e->off + e->len);
					continue;
				}
				r = -ENODATA;
				read_error(job, r, e->off);
				break;
			}
			if (e->type == EXTENT_ZERO) {
				atomic_fetch_add(&job->bytes_skipped, e->len);
				atomic_store(&job->position, e->off + e->len);
				consume_behind(job, &frontier, e->off + e->len, chunk);
				continue;
			}
			for (uint64_t p = e->off; p < e->off + e->len && r == 0;) {
				size_t n = (size_t)HS_MIN_U64(BLOCK - p % BLOCK, e->off + e->len - p);
				struct slot *s;

				if (atomic_load(&job->cancel)) {
					snprintf(job->error, sizeof(job->error), "backup cancelled");
					r = -ECANCELED;
					break;
				}
				pace(job, &pacer, n);
				s = writer_slot(&w);
				if (!s) {
					r = -EPIPE; /* the writer failed; reported below */
					break;
				}
				r = snapshot_read_except(job->snap, s->p, n, p, w.taken);
				if (r == -ENODATA && job->consume) {
					/* the drain took part of this block */
					r = read_around_drained(job, s->p, p, n);
					if (r < 0) {
						read_error(job, r, p);
						break;
					}
				} else if (r < 0) {
					read_error(job, r, p);
					break;
				} else {
					atomic_fetch_add(&job->bytes_read, n - taken_bytes(&w, p, n));
					writer_submit(&w, s, p, n);
				}
				p += n;
				atomic_store(&job->position, p);
				consume_behind(job, &frontier, p, chunk);
				note_diff_peak(job);
				uint64_t now = clock_mono_ns();
				if (tick && now - last_tick >= TICK_NS) {
					last_tick = now;
					tick(arg, job);
				}
			}
		}
		win += wlen;
	}

	if (drain_started) {
		atomic_store(&drain.stop, true);
		pthread_join(drain.thread, NULL);
		snapshot_set_drain(job->snap, false);
		if (r == 0 && drain.err) {
			r = drain.err;
			snprintf(job->error, sizeof(job->error), "writing %s at offset %llu failed: %s",
				 job->output, (unsigned long long)drain.err_off, strerror(-r));
		}
	}
out_writer:
	pthread_mutex_lock(&w.mu);
	w.done = true;
	pthread_cond_broadcast(&w.cv);
	pthread_mutex_unlock(&w.mu);
	pthread_join(w.thread, NULL);
	if ((r == 0 || r == -EPIPE) && w.err) {
		r = w.err;
		snprintf(job->error, sizeof(job->error), "writing %s at offset %llu failed: %s",
			 job->output, (unsigned long long)w.err_off, strerror(-r));
	}
	if (r == 0) {
		struct stat st;
		/* the tail may be a hole: give the image its full size */
		if (fstat(job->out_fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    ftruncate(job->out_fd, (off_t)job->size) < 0) {
			r = -errno;
			snprintf(job->error, sizeof(job->error), "cannot size %s: %s", job->output,
				 strerror(errno));
		} else if (fsync(job->out_fd) < 0 && errno != EINVAL) {
			r = -errno;
			snprintf(job->error, sizeof(job->error), "cannot flush %s: %s", job->output,
				 strerror(errno));
		}
	}
	note_diff_peak(job);
	if (tick)
		tick(arg, job);
out_sync:
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
out_free:
	if (w.taken)
		bitmap_destroy(&taken);
	for (unsigned i = 0; i < BUFFERS; i++)
		free(w.slots[i].p);
	free(ext.v);
	return r;
}
