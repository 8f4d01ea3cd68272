/* qcow2_write.c - writing qcow2 images (layout in qcow2_format.h).
 *
 * Notes on the design
 * -------------------
 * Clusters arrive from several threads in any order.  Whole clusters with
 * data are copied into the open job, up to JOB_BYTES of them, wherever they
 * lie (an incremental's are scattered); a full job goes to one of a few
 * worker threads that compress it (zstd or deflate, as QEMU
 * writes them, one frame per cluster); the worker then reserves the job's
 * bytes at the end of the file under the lock and writes them outside it,
 * in one write for the compressed clusters, packed back to back, and one
 * for those stored plain.  Jobs, not clusters, cost the locking and the
 * system calls: small clusters (an incremental's 4 KiB) come in hundreds
 * per job.
 * A piece of a cluster (a chunk the drain took early, say) cannot be
 * compressed alone: its cluster is allocated whole and uncompressed, and
 * the cluster's other pieces are written into it when they come.  A cluster
 * that compresses to no gain is stored uncompressed too.
 *
 * Metadata lives in memory until it can be written once: an L2 table is
 * written when the caller's position has passed its part of the image and
 * none of its clusters is still being compressed; at finish come the L1
 * table, the refcount blocks and table (sized so that they count
 * themselves), and last the header.  Refcounts are kept per host cluster as
 * they are allocated, counted the way `qemu-img check` counts them: every
 * host cluster a compressed cluster's sectors touch gets one reference per
 * compressed cluster.
 *
 * Memory: the job buffers (two of JOB_BYTES each, 3 per thread), the L2 tables
 * of the part of the image not yet passed, and two bytes per host cluster.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "image/image_internal.h"
#include "image/qcow2_format.h"

#define JOB_BYTES (256u << 10)

struct cjob {
	uint64_t *cls;   /* the virtual clusters, in the order they came */
	unsigned n;      /* how many */
	uint8_t *in;     /* n clusters of the view */
	uint8_t *out;    /* the compressed ones, packed */
	uint32_t *clen;  /* per cluster: compressed length; 0: stored plain */
	struct cjob *next;
};

struct qcow2_writer {
	struct image_writer w;
	int fd;
	char name[PATH_MAX];
	unsigned cb;          /* cluster bits */
	uint64_t cs;          /* cluster size */
	uint64_t nclusters;   /* of the view */
	uint64_t l2_entries;  /* per table: cs / 8 */
	uint64_t l1_size;     /* tables */
	enum image_compress compress;
	int level;
	bool has_backing;
	char backing[QCOW2_BACKING_MAX + 1];
	char backing_format[16];
	uint8_t *meta;
	size_t meta_len;
	struct image_writeback wb;

	unsigned job_clusters; /* per job */

	pthread_mutex_t mu;  /* guards everything below */
	pthread_cond_t cv;   /* a job was freed, or a failure: for producers */
	pthread_cond_t work; /* a job was queued, or the workers must stop */
	atomic_int err;      /* the first failure; w.error says it (read without mu) */
	uint64_t end;        /* the next free byte of the file */
	uint64_t *l1;        /* [l1_size] host offset of each written L2 table */
	uint64_t **l2;       /* [l1_size] tables in memory (native order), NULL = none */
	uint32_t *l2_busy;   /* [l1_size] clusters of the table being compressed */
	uint64_t closed;     /* tables below this index are written or empty, for good */
	uint64_t position;   /* the caller gives nothing below this any more */
	uint16_t *rc;        /* refcount per host cluster */
	uint64_t rc_cap;
	struct cjob *jobs;   /* all of them, for freeing */
	struct cjob *free_jobs, *queue, *queue_tail;
	struct cjob *open;   /* filling, not yet queued */
	unsigned njobs, busy_jobs;
	pthread_t *threads;
	unsigned nthreads;
	bool stop;
};

static struct qcow2_writer *to_q(struct image_writer *w)
{
	return hs_container_of(w, struct qcow2_writer, w);
}

/* Records the first failure (under mu); returns the error to pass on. */
static int fail_locked(struct qcow2_writer *q, int err, const char *fmt, ...) HS_PRINTF(3, 4);
static int fail_locked(struct qcow2_writer *q, int err, const char *fmt, ...)
{
	va_list ap;

	if (!q->err) {
		q->err = err;
		va_start(ap, fmt);
		vsnprintf(q->w.error, sizeof(q->w.error), fmt, ap);
		va_end(ap);
		pthread_cond_broadcast(&q->cv);
		pthread_cond_broadcast(&q->work);
	}
	return image_fail(q->err, "%s", q->w.error);
}

static int write_at(struct qcow2_writer *q, const void *buf, size_t len, uint64_t off)
{
	int r = image_pwrite_full(q->fd, buf, len, off);

	if (r < 0) {
		pthread_mutex_lock(&q->mu);
		fail_locked(q, r, "writing %s at offset %llu failed: %s", q->name,
			    (unsigned long long)off, strerror(-r));
		pthread_mutex_unlock(&q->mu);
		return r;
	}
	atomic_fetch_add(&q->w.bytes_written, len);
	image_writeback_note(&q->wb, off, len);
	return 0;
}

/* --- allocation and refcounts (under mu) ----------------------------------------- */

/* One more reference on every host cluster [off, off + len) touches. */
static int rc_add_locked(struct qcow2_writer *q, uint64_t off, uint64_t len)
{
	uint64_t last = (off + len - 1) >> q->cb;

	if (last >= q->rc_cap) {
		uint64_t cap = HS_MAX(last + 1, q->rc_cap * 2);
		uint16_t *rc = realloc(q->rc, cap * sizeof(*rc));
		if (!rc)
			return fail_locked(q, -ENOMEM, "out of memory for the refcounts of %s",
					   q->name);
		memset(rc + q->rc_cap, 0, (cap - q->rc_cap) * sizeof(*rc));
		q->rc = rc;
		q->rc_cap = cap;
	}
	for (uint64_t c = off >> q->cb; c <= last; c++) {
		if (q->rc[c] == UINT16_MAX)
			return fail_locked(q, -EOVERFLOW, "a cluster of %s has too many references",
					   q->name);
		q->rc[c]++;
	}
	return 0;
}

/* A whole host cluster, aligned; 0 on failure. */
static uint64_t alloc_cluster_locked(struct qcow2_writer *q)
{
	uint64_t off = hs_align_up(q->end, q->cs);

	if (rc_add_locked(q, off, q->cs) < 0)
		return 0;
	q->end = off + q->cs;
	return off;
}

static uint64_t *table_locked(struct qcow2_writer *q, uint64_t cl)
{
	uint64_t t = cl / q->l2_entries;

	if (t < q->closed) {
		fail_locked(q, -EINVAL,
			    "internal error: %s got cluster %llu after its part of the image was done",
			    q->name, (unsigned long long)cl);
		return NULL;
	}
	if (!q->l2[t]) {
		q->l2[t] = calloc(q->l2_entries, sizeof(uint64_t));
		if (!q->l2[t]) {
			fail_locked(q, -ENOMEM, "out of memory for an L2 table of %s", q->name);
			return NULL;
		}
	}
	return &q->l2[t][cl % q->l2_entries];
}

/* Writes the L2 tables the position has passed that nobody still fills.
 * Drops mu around each write. */
static void close_tables_locked(struct qcow2_writer *q, uint64_t below)
{
	while (q->closed < q->l1_size && !q->err) {
		uint64_t t = q->closed;
		uint64_t table_end = (t + 1) * q->l2_entries * q->cs;
		if (table_end > below && below < q->w.size)
			break;
		if (q->l2_busy[t])
			break;
		uint64_t *tab = q->l2[t];
		q->l2[t] = NULL;
		q->closed++;
		if (!tab)
			continue;
		uint64_t host = alloc_cluster_locked(q);
		if (!host) {
			free(tab);
			break;
		}
		q->l1[t] = host;
		pthread_mutex_unlock(&q->mu);
		for (uint64_t i = 0; i < q->l2_entries; i++)
			qcow2_put64((uint8_t *)&tab[i], tab[i]);
		(void)write_at(q, tab, q->cs, host);
		free(tab);
		pthread_mutex_lock(&q->mu);
	}
}

/* --- the compression workers ------------------------------------------------------- */

static size_t compress_cluster(struct qcow2_writer *q, ZSTD_CCtx *zc, z_stream *zs,
			       const uint8_t *in, uint8_t *out)
{
	size_t room = q->cs - 1; /* as QEMU: no gain, no compression */

	if (q->compress == IMAGE_COMPRESS_ZSTD) {
		size_t n = ZSTD_compressCCtx(zc, out, room, in, q->cs, q->level ? q->level : 3);
		return ZSTD_isError(n) ? 0 : n;
	}
	/* raw deflate with a 4 KiB window, as QEMU reads it */
	if (deflateReset(zs) != Z_OK)
		return 0;
	zs->next_in = (Bytef *)in;
	zs->avail_in = (uInt)q->cs;
	zs->next_out = out;
	zs->avail_out = (uInt)room;
	if (deflate(zs, Z_FINISH) != Z_STREAM_END)
		return 0;
	return room - zs->avail_out;
}

/* Stores a job: its plain clusters first (aligned, next to each other),
 * then its compressed ones packed after them; sets their entries.  One
 * write for each kind. */
static void store_job(struct qcow2_writer *q, struct cjob *j)
{
	struct iovec iov[JOB_BYTES / 512];
	uint64_t plain_off = 0, packed_off = 0, packed = 0;
	unsigned nplain = 0;
	int r = 0;

	for (unsigned i = 0; i < j->n; i++) {
		if (j->clen[i])
			packed += j->clen[i];
		else
			iov[nplain++] = (struct iovec){ j->in + (uint64_t)i * q->cs, q->cs };
	}
	pthread_mutex_lock(&q->mu);
	for (unsigned i = 0; i < j->n && r == 0; i++) {
		uint64_t *e = table_locked(q, j->cls[i]);
		if (!e) {
			r = q->err;
		} else if (!j->clen[i]) {
			uint64_t off = alloc_cluster_locked(q);
			if (!off)
				r = q->err;
			else if (!plain_off)
				plain_off = off;
			*e = off | QCOW2_OFLAG_COPIED;
		}
	}
	packed_off = q->end;
	for (unsigned i = 0, pos = 0; i < j->n && r == 0; i++) {
		if (!j->clen[i])
			continue;
		uint64_t off = packed_off + pos;
		/* QEMU reads, and counts, whole sectors from off */
		r = rc_add_locked(q, off, hs_align_up(off + j->clen[i], 512) - off);
		if (r == 0)
			q->l2[j->cls[i] / q->l2_entries][j->cls[i] % q->l2_entries] =
				qcow2_compressed_entry(q->cb, off, j->clen[i]);
		pos += j->clen[i];
	}
	if (r == 0)
		q->end = packed_off + packed;
	pthread_mutex_unlock(&q->mu);
	if (r < 0)
		return;
	if (nplain) {
		r = image_pwritev_full(q->fd, iov, (int)nplain, plain_off);
		if (r < 0) {
			pthread_mutex_lock(&q->mu);
			fail_locked(q, r, "writing %s at offset %llu failed: %s", q->name,
				    (unsigned long long)plain_off, strerror(-r));
			pthread_mutex_unlock(&q->mu);
			return;
		}
		atomic_fetch_add(&q->w.bytes_written, (uint64_t)nplain * q->cs);
		image_writeback_note(&q->wb, plain_off, (uint64_t)nplain * q->cs);
	}
	if (packed)
		(void)write_at(q, j->out, packed, packed_off);
}

static void *worker_main(void *arg)
{
	struct qcow2_writer *q = arg;
	ZSTD_CCtx *zc = NULL;
	z_stream zs = { 0 };
	bool zs_ok = false;

	if (q->compress == IMAGE_COMPRESS_ZSTD)
		zc = ZSTD_createCCtx();
	else
		zs_ok = deflateInit2(&zs, q->level ? q->level : Z_DEFAULT_COMPRESSION, Z_DEFLATED,
				     -12, 9, Z_DEFAULT_STRATEGY) == Z_OK;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->queue && !q->stop)
			pthread_cond_wait(&q->work, &q->mu);
		if (!q->queue)
			break;
		struct cjob *j = q->queue;
		q->queue = j->next;
		if (!q->queue)
			q->queue_tail = NULL;
		pthread_mutex_unlock(&q->mu);

		size_t packed = 0;
		for (unsigned i = 0; i < j->n; i++) {
			j->clen[i] = 0;
			if ((zc || zs_ok) && !q->err)
				j->clen[i] = (uint32_t)compress_cluster(q, zc, &zs, j->in + (uint64_t)i * q->cs,
									j->out + packed);
			packed += j->clen[i];
		}
		if (!q->err)
			store_job(q, j);

		pthread_mutex_lock(&q->mu);
		for (unsigned i = 0; i < j->n; i++)
			q->l2_busy[j->cls[i] / q->l2_entries]--;
		j->next = q->free_jobs;
		q->free_jobs = j;
		q->busy_jobs--;
		close_tables_locked(q, q->position);
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	ZSTD_freeCCtx(zc);
	if (zs_ok)
		deflateEnd(&zs);
	return NULL;
}

/* The open job to the workers.  Under mu. */
static void submit_open_locked(struct qcow2_writer *q)
{
	struct cjob *j = q->open;

	if (!j || !j->n)
		return;
	q->open = NULL;
	j->next = NULL;
	if (q->queue_tail)
		q->queue_tail->next = j;
	else
		q->queue = j;
	q->queue_tail = j;
	pthread_cond_signal(&q->work);
}

/* Adds a whole cluster to the open job (len < cs only for the last cluster
 * of the view: padded with zeros, as QEMU compresses it); the caller's
 * buffer is free on return. */
static int add_cluster(struct qcow2_writer *q, uint64_t cl, const uint8_t *p, size_t len)
{
	int r = 0;

	pthread_mutex_lock(&q->mu);
	while (!q->open && !q->free_jobs && !q->err)
		pthread_cond_wait(&q->cv, &q->mu);
	if (!q->err && !table_locked(q, cl))
		r = q->err;
	if (q->err) {
		r = image_fail(q->err, "%s", q->w.error);
		pthread_mutex_unlock(&q->mu);
		return r;
	}
	if (!q->open) {
		q->open = q->free_jobs;
		q->free_jobs = q->open->next;
		q->open->n = 0;
		q->busy_jobs++;
	}
	struct cjob *j = q->open;
	uint8_t *dst = j->in + (uint64_t)j->n * q->cs;
	memcpy(dst, p, len); /* 4 KiB to 256 KiB under the lock: cheaper than a handshake */
	memset(dst + len, 0, q->cs - len);
	j->cls[j->n++] = cl;
	q->l2_busy[cl / q->l2_entries]++;
	if (j->n == q->job_clusters)
		submit_open_locked(q);
	pthread_mutex_unlock(&q->mu);
	return r;
}

/* --- data and zeros ------------------------------------------------------------------- */

/* The host cluster of cl, allocated (uncompressed) if it has none yet; 0
 * after a failure. */
static uint64_t plain_cluster(struct qcow2_writer *q, uint64_t cl)
{
	uint64_t host = 0;

	pthread_mutex_lock(&q->mu);
	uint64_t *e = table_locked(q, cl);
	if (!e) {
		/* failed; said so */
	} else if (*e == 0) {
		host = alloc_cluster_locked(q);
		if (host)
			*e = host | QCOW2_OFLAG_COPIED;
	} else if (!(*e & QCOW2_OFLAG_COMPRESSED) && (*e & QCOW2_L2E_OFFSET_MASK)) {
		host = *e & QCOW2_L2E_OFFSET_MASK;
	} else {
		fail_locked(q, -EINVAL, "internal error: cluster %llu of %s was given twice",
			    (unsigned long long)cl, q->name);
	}
	pthread_mutex_unlock(&q->mu);
	return host;
}

static int zero_piece(struct qcow2_writer *q, uint64_t cl, uint64_t in, uint64_t n, bool whole)
{
	int r = 0;

	if (!q->has_backing)
		return 0; /* unallocated clusters read as zeros */
	if (!whole)
		/* the rest of the cluster will come: a plain cluster reads
		 * zeros where nothing is written into it */
		return plain_cluster(q, cl) ? 0 : q->err;
	pthread_mutex_lock(&q->mu);
	uint64_t *e = table_locked(q, cl);
	if (!e)
		r = q->err;
	else if (*e == 0)
		*e = QCOW2_OFLAG_ZERO;
	pthread_mutex_unlock(&q->mu);
	return r;
}

static int check_range(struct qcow2_writer *q, uint64_t off, uint64_t len)
{
	if (off > q->w.size || len > q->w.size - off)
		return image_fail(-EINVAL, "internal error: range past the end of %s", q->name);
	if (q->err)
		return image_fail(q->err, "%s", q->w.error);
	return 0;
}

static int q_zero(struct image_writer *w, uint64_t off, uint64_t len)
{
	struct qcow2_writer *q = to_q(w);
	int r = check_range(q, off, len);

	while (r == 0 && len > 0) {
		uint64_t cl = off >> q->cb, in = off & (q->cs - 1);
		uint64_t n = HS_MIN_U64(q->cs - in, len);
		bool whole = in == 0 && (n == q->cs || off + n == w->size);
		r = zero_piece(q, cl, in, n, whole);
		off += n;
		len -= n;
	}
	return r;
}

static int q_data(struct image_writer *w, const void *buf, size_t len, uint64_t off)
{
	struct qcow2_writer *q = to_q(w);
	const uint8_t *p = buf;
	int r = check_range(q, off, len);

	while (r == 0 && len > 0) {
		uint64_t cl = off >> q->cb, in = off & (q->cs - 1);
		size_t n = (size_t)HS_MIN_U64(q->cs - in, len);
		bool whole = in == 0 && (n == q->cs || off + n == w->size);
		bool zero = image_all_zero(p, n);
		if (!zero && whole && q->compress != IMAGE_COMPRESS_NONE) {
			r = add_cluster(q, cl, p, n);
			atomic_fetch_add(&w->data_bytes, n);
		} else if (zero) {
			r = zero_piece(q, cl, in, n, whole);
		} else if (r == 0) {
			atomic_fetch_add(&w->data_bytes, n);
			uint64_t host = plain_cluster(q, cl);
			r = host ? write_at(q, p, n, host + in) : q->err;
		}
		p += n;
		off += n;
		len -= n;
	}
	return r;
}

static void q_position(struct image_writer *w, uint64_t off)
{
	struct qcow2_writer *q = to_q(w);

	pthread_mutex_lock(&q->mu);
	if (off > q->position)
		q->position = off;
	close_tables_locked(q, q->position);
	pthread_mutex_unlock(&q->mu);
}

/* --- the end ------------------------------------------------------------------------- */

static void stop_workers(struct qcow2_writer *q)
{
	pthread_mutex_lock(&q->mu);
	submit_open_locked(q); /* what is left is stored before they stop */
	q->stop = true;
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->mu);
	for (unsigned i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	q->nthreads = 0;
}

static void q_free(struct qcow2_writer *q)
{
	if (q->nthreads)
		stop_workers(q);
	for (uint64_t t = 0; q->l2 && t < q->l1_size; t++)
		free(q->l2[t]);
	for (unsigned i = 0; q->jobs && i < q->njobs; i++) {
		free(q->jobs[i].in);
		free(q->jobs[i].out);
		free(q->jobs[i].clen);
		free(q->jobs[i].cls);
	}
	free(q->jobs);
	free(q->threads);
	free(q->l2);
	free(q->l2_busy);
	free(q->l1);
	free(q->rc);
	free(q->meta);
	image_writeback_destroy(&q->wb);
	pthread_cond_destroy(&q->work);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* Header, extensions and backing name: cluster 0. */
static size_t build_header(struct qcow2_writer *q, uint8_t *h, uint64_t l1_off,
			   uint64_t rt_off, uint64_t rt_clusters)
{
	size_t p = QCOW2_HEADER_V3_LEN;
	bool zstd = q->compress == IMAGE_COMPRESS_ZSTD;

	qcow2_put32(h + QH_MAGIC, QCOW2_MAGIC);
	qcow2_put32(h + QH_VERSION, QCOW2_VERSION);
	qcow2_put32(h + QH_CLUSTER_BITS, q->cb);
	qcow2_put64(h + QH_SIZE, q->w.size);
	qcow2_put32(h + QH_L1_SIZE, (uint32_t)q->l1_size);
	qcow2_put64(h + QH_L1_OFFSET, l1_off);
	qcow2_put64(h + QH_REFTABLE_OFFSET, rt_off);
	qcow2_put32(h + QH_REFTABLE_CLUSTERS, (uint32_t)rt_clusters);
	qcow2_put64(h + QH_INCOMPATIBLE, zstd ? QCOW2_INCOMPAT_COMPRESSION : 0);
	qcow2_put32(h + QH_REFCOUNT_ORDER, QCOW2_REFCOUNT_ORDER);
	qcow2_put32(h + QH_HEADER_LENGTH, QCOW2_HEADER_V3_LEN);
	h[QH_COMPRESSION_TYPE] = zstd ? QCOW2_COMPRESSION_ZSTD : QCOW2_COMPRESSION_ZLIB;
	if (q->has_backing) {
		size_t n = strlen(q->backing_format);
		qcow2_put32(h + p, QCOW2_EXT_BACKING_FORMAT);
		qcow2_put32(h + p + 4, (uint32_t)n);
		memcpy(h + p + 8, q->backing_format, n);
		p += 8 + hs_align_up(n, 8);
	}
	if (q->meta_len) {
		qcow2_put32(h + p, QCOW2_EXT_HOTSNAP);
		qcow2_put32(h + p + 4, (uint32_t)q->meta_len);
		memcpy(h + p + 8, q->meta, q->meta_len);
		p += 8 + hs_align_up(q->meta_len, 8);
	}
	p += 8; /* the end marker: type 0, length 0 */
	if (q->has_backing) {
		size_t n = strlen(q->backing);
		qcow2_put64(h + QH_BACKING_OFFSET, p);
		qcow2_put32(h + QH_BACKING_SIZE, (uint32_t)n);
		memcpy(h + p, q->backing, n);
		p += n;
	}
	return p;
}

static int q_finish(struct image_writer *w)
{
	struct qcow2_writer *q = to_q(w);
	uint8_t *buf = NULL;
	int r;

	stop_workers(q); /* after the queue is empty */
	pthread_mutex_lock(&q->mu);
	close_tables_locked(q, w->size);
	if (q->err) {
		r = image_fail(q->err, "%s", w->error);
		pthread_mutex_unlock(&q->mu);
		goto out;
	}
	/* L1: counted over its entries only */
	uint64_t l1_bytes = q->l1_size * 8;
	uint64_t l1_off = hs_align_up(q->end, q->cs);
	if (rc_add_locked(q, l1_off, l1_bytes) < 0) {
		r = q->err;
		pthread_mutex_unlock(&q->mu);
		goto out;
	}
	q->end = l1_off + hs_align_up(l1_bytes, q->cs);
	/* refcount blocks and table, sized to count themselves */
	uint64_t n = q->end >> q->cb, per_block = q->cs * 8 / 16, rb = 0, rt = 0, prev;
	do {
		prev = rb + rt;
		rb = (n + rb + rt + per_block - 1) / per_block;
		rt = (rb * 8 + q->cs - 1) / q->cs;
	} while (rb + rt != prev);
	uint64_t rt_off = q->end, rb_off = rt_off + rt * q->cs;
	if (rc_add_locked(q, rt_off, (rt + rb) * q->cs) < 0) {
		r = q->err;
		pthread_mutex_unlock(&q->mu);
		goto out;
	}
	q->end = rb_off + rb * q->cs;
	pthread_mutex_unlock(&q->mu);

	/* every table and block is written from one buffer of the largest */
	size_t bufsize = (size_t)HS_MAX(hs_align_up(l1_bytes, q->cs), rt * q->cs);
	buf = calloc(1, HS_MAX(bufsize, q->cs));
	if (!buf) {
		r = image_fail(-ENOMEM, "out of memory finishing %s", q->name);
		goto out;
	}
	for (uint64_t t = 0; t < q->l1_size; t++)
		qcow2_put64(buf + t * 8, q->l1[t] ? q->l1[t] | QCOW2_OFLAG_COPIED : 0);
	r = write_at(q, buf, (size_t)hs_align_up(l1_bytes, q->cs), l1_off);
	for (uint64_t b = 0; b < rb && r == 0; b++) {
		memset(buf, 0, q->cs);
		for (uint64_t i = 0; i < per_block; i++) {
			uint64_t c = b * per_block + i;
			if (c < q->rc_cap)
				buf[2 * i] = (uint8_t)(q->rc[c] >> 8), buf[2 * i + 1] = (uint8_t)q->rc[c];
		}
		r = write_at(q, buf, q->cs, rb_off + b * q->cs);
	}
	if (r == 0) {
		memset(buf, 0, rt * q->cs);
		for (uint64_t b = 0; b < rb; b++)
			qcow2_put64(buf + b * 8, rb_off + b * q->cs);
		r = write_at(q, buf, rt * q->cs, rt_off);
	}
	if (r == 0) {
		memset(buf, 0, q->cs);
		size_t hlen = build_header(q, buf, l1_off, rt_off, rt);
		r = write_at(q, buf, hlen, 0);
	}
	if (r == 0 && ftruncate(q->fd, (off_t)q->end) < 0)
		r = image_fail(-errno, "sizing %s failed: %s", q->name, strerror(errno));
	if (r == 0 && fsync(q->fd) < 0)
		r = image_fail(-errno, "flushing %s failed: %s", q->name, strerror(errno));
	if (r < 0 && !q->err)
		snprintf(w->error, sizeof(w->error), "%s", image_error());
out:
	free(buf);
	q_free(q);
	return r;
}

static void q_abort(struct image_writer *w)
{
	q_free(to_q(w));
}

static const struct image_writer_ops qcow2_writer_ops = {
	.data = q_data,
	.zero = q_zero,
	.position = q_position,
	.finish = q_finish,
	.abort = q_abort,
};

int qcow2_writer_begin(struct image_writer **out, int fd, const struct image_params *p,
		       char *err, size_t errlen)
{
	uint64_t cs = p->cluster_size ? p->cluster_size : UINT64_C(1) << QCOW2_DEFAULT_CLUSTER_BITS;
	struct qcow2_writer *q;
	struct stat st;

	if (!hs_is_pow2(cs) || cs < (1u << QCOW2_MIN_CLUSTER_BITS) ||
	    cs > (1u << QCOW2_MAX_CLUSTER_BITS)) {
		snprintf(err, errlen, "a qcow2 cluster size must be a power of two from 512 B to 2 MiB");
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "a qcow2 image needs a regular file (%s is not one)",
			 p->name ? p->name : "the output");
		return -EINVAL;
	}
	if (p->backing && (strlen(p->backing) > QCOW2_BACKING_MAX || !p->backing_format ||
			   strlen(p->backing_format) >= 16)) {
		snprintf(err, errlen, "the backing file name is longer than %d bytes",
			 QCOW2_BACKING_MAX);
		return -ENAMETOOLONG;
	}
	size_t need = QCOW2_HEADER_V3_LEN + 8 +
		      (p->backing ? 8 + 16 + strlen(p->backing) : 0) +
		      (p->meta_len ? 8 + hs_align_up(p->meta_len, 8) : 0);
	if (need > cs) {
		snprintf(err, errlen,
			 "the header, the backing file name and the metadata do not fit in one "
			 "%llu-byte cluster; use a larger cluster size",
			 (unsigned long long)cs);
		return -EINVAL;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	pthread_cond_init(&q->work, NULL);
	image_writeback_init(&q->wb, fd, true, WRITEBACK_APPEND);
	q->w.ops = &qcow2_writer_ops;
	q->w.format = IMAGE_QCOW2;
	q->w.size = p->size;
	q->w.granularity = (uint32_t)cs;
	q->fd = fd;
	snprintf(q->name, sizeof(q->name), "%s", p->name ? p->name : "the image");
	q->cb = (unsigned)__builtin_ctzll(cs);
	q->cs = cs;
	q->nclusters = (p->size + cs - 1) / cs;
	q->l2_entries = cs / 8;
	q->l1_size = (q->nclusters + q->l2_entries - 1) / q->l2_entries;
	q->compress = p->compress;
	q->level = p->compress_level;
	if (p->backing) {
		q->has_backing = true;
		snprintf(q->backing, sizeof(q->backing), "%s", p->backing);
		snprintf(q->backing_format, sizeof(q->backing_format), "%s", p->backing_format);
	}
	if (q->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		snprintf(err, errlen, "the image is too large for %llu-byte clusters; use larger ones",
			 (unsigned long long)cs);
		q_free(q);
		return -EFBIG;
	}
	q->l1 = calloc(q->l1_size, sizeof(*q->l1));
	q->l2 = calloc(q->l1_size, sizeof(*q->l2));
	q->l2_busy = calloc(q->l1_size, sizeof(*q->l2_busy));
	if (p->meta_len && (q->meta = malloc(p->meta_len)))
		memcpy(q->meta, p->meta, q->meta_len = p->meta_len);
	if (!q->l1 || !q->l2 || !q->l2_busy || (p->meta_len && !q->meta))
		goto nomem;
	/* cluster 0: the header, written last */
	if (rc_add_locked(q, 0, cs) < 0)
		goto nomem;
	q->end = cs;
	if (q->compress != IMAGE_COMPRESS_NONE) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		unsigned nt = p->threads ? p->threads : (unsigned)HS_MAX(cpus, 1);
		q->njobs = 3 * nt + 1;
		q->jobs = calloc(q->njobs, sizeof(*q->jobs));
		q->threads = calloc(nt, sizeof(*q->threads));
		if (!q->jobs || !q->threads)
			goto nomem;
		q->job_clusters = (unsigned)HS_MAX(UINT64_C(1), JOB_BYTES / cs);
		for (unsigned i = 0; i < q->njobs; i++) {
			uint64_t bytes = (uint64_t)q->job_clusters * cs;
			q->jobs[i].in = malloc(bytes);
			q->jobs[i].out = malloc(bytes);
			q->jobs[i].clen = calloc(q->job_clusters, sizeof(uint32_t));
			q->jobs[i].cls = calloc(q->job_clusters, sizeof(uint64_t));
			if (!q->jobs[i].in || !q->jobs[i].out || !q->jobs[i].clen || !q->jobs[i].cls)
				goto nomem;
			q->jobs[i].next = q->free_jobs;
			q->free_jobs = &q->jobs[i];
		}
		for (unsigned i = 0; i < nt; i++) {
			if (pthread_create(&q->threads[i], NULL, worker_main, q) != 0)
				break;
			q->nthreads++;
		}
		if (!q->nthreads) {
			snprintf(err, errlen, "cannot start the compression threads");
			q_free(q);
			return -EAGAIN;
		}
	}
	*out = &q->w;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory for the qcow2 writer");
	q_free(q);
	return -ENOMEM;
}
