/* fuse_uring.c - the FUSE transport over io_uring (see fuse_uring_abi.h for
 * the kernel's side, fuse_internal.h for the interface).
 *
 * Notes on the design
 * -------------------
 * One worker thread per ring entry, each with a ring of its own.  The
 * kernel keeps one queue per possible CPU and gives a request to the queue
 * of the CPU that issued it; each queue gets WORKERS_PER_QUEUE entries, so
 * the loop device's requests are served where they arrive and a worker
 * answers a request and waits for the next in one system call
 * (COMMIT_AND_FETCH), with no hand-off between threads.  Write data lands
 * page-aligned at the start of the entry's payload buffer and the engine
 * writes it from there; reads land there too: no copy is made.
 *
 * Plain task work, no IORING_SETUP_DEFER_TASKRUN or SINGLE_ISSUER: the one
 * build that deferred task work left, after a kill -9, entries assigned for
 * good (dmesg: state 3) on a connection fusectl could not abort (2026-12-06;
 * a freezer child holding the rings, below, was part of that scene too, so
 * the share of each is not known).  Plain task work is what kill -9 was
 * tested with (tests/system/kill_daemon.sh).  And no forked child may keep
 * a ring's mappings (init_ring).
 *
 * Falling back: once the INIT reply accepted the ring, the kernel holds new
 * requests until every queue has an entry.  A failed REGISTER turns the
 * ring off for the connection and releases them; so when an entry cannot
 * even be sent (no thread, no submission) or the queues are not all
 * registered within REGISTER_TIMEOUT_MS, a REGISTER that the kernel must
 * refuse (one iovec instead of two) is sent from a ring kept for that, and
 * /dev/fuse serves.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "common/log.h"
#include "fuse/fuse_uring_abi.h"

#define WORKERS_PER_QUEUE 4
#define MIN_WORKERS 8
#define MAX_WORKERS 64
#define REGISTER_TIMEOUT_MS 10000
#define UD_ENTRY 1
#define UD_STOP 2

_Static_assert(sizeof(struct fuse_entry_out) == 128, "fuse_entry_out");
_Static_assert(sizeof(struct fuse_attr_out) == 104, "fuse_attr_out");
_Static_assert(sizeof(struct fuse_open_out) == 16, "fuse_open_out");
_Static_assert(sizeof(struct fuse_write_out) == 8, "fuse_write_out");
_Static_assert(sizeof(struct fuse_statfs_out) == 80, "fuse_statfs_out");

struct ring_worker {
	struct fuse_uring *fr;
	unsigned qid;
	bool ring_ready; /* io_uring_queue_init succeeded */
	bool started;	 /* the thread runs */
	struct io_uring ring;
	struct hs_fuse_uring_req_header *hdr;
	void *payload;
	struct iovec iov[HS_FUSE_URING_IOV_SEGS];
	pthread_t thread;
	uint64_t open_fh; /* a handle the last answer gave out, until it arrived */
	atomic_uint_fast64_t requests;
};

struct fuse_uring {
	struct fuse_front *ff;
	int fd;
	size_t payload;
	unsigned nr_queues, nworkers;
	struct ring_worker *w;
	int stop_efd;
	atomic_bool stopping;
	struct io_uring fallback_ring; /* for the REGISTER the kernel must refuse */
	bool fallback_ready;
	bool test_fail_register; /* HOTSNAP_TEST_FUSE_URING=fail-register: every
				  * REGISTER malformed, as a kernel refusing them */
	bool test_skip_queue0;	 /* =skip-queue0: queue 0 never gets an entry, as
				  * when a worker cannot start: fall_back() must
				  * free the requests the kernel holds */

	pthread_mutex_t mu;
	pthread_cond_t reported_cv;
	unsigned reported;	   /* [mu] workers whose first REGISTER is judged */
	unsigned *queue_entries;   /* [mu] entries registered per queue */
	bool fell_back;		   /* [mu] */
	uint64_t served_at_fallback; /* [mu] ring requests when it fell back */
	char why[160];		   /* [mu] why it did not start serving */
	char lost[160];		   /* [mu] why it stopped serving */
};

/* Reads a CPU list ("0-3,8-11") from sysfs into set (bit per CPU, up to
 * MAX_CPUS); the number of CPUs in it, or 0 when unreadable. */
#define MAX_CPUS 4096
static unsigned read_cpu_list(const char *path, uint8_t *set)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	unsigned n = 0;

	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return 0;
	}
	fclose(f);
	char *save = NULL;
	for (char *tok = strtok_r(line, ",\n", &save); tok; tok = strtok_r(NULL, ",\n", &save)) {
		unsigned lo, hi;
		int k = sscanf(tok, "%u-%u", &lo, &hi);
		if (k == 1)
			hi = lo;
		else if (k != 2)
			continue;
		for (unsigned c = lo; c <= hi && c < MAX_CPUS; c++)
			if (!(set[c / 8] & (1u << (c % 8)))) {
				set[c / 8] |= (uint8_t)(1u << (c % 8));
				n++;
			}
	}
	return n;
}

/* Possible CPUs: the kernel's number of queues. */
static unsigned nr_queues(void)
{
	/* The kernel makes one queue per possible CPU (num_possible_cpus()). */
	uint8_t set[MAX_CPUS / 8] = { 0 };
	unsigned n = read_cpu_list("/sys/devices/system/cpu/possible", set);

	return n ? n : (unsigned)HS_MAX(get_nprocs_conf(), 1);
}

/* Which queue each entry serves, into qids (room for MAX_WORKERS); the
 * number of entries, or 0 when there are more queues than MAX_WORKERS.
 * Every possible CPU's queue needs an entry before the kernel sends
 * anything, but only online CPUs issue requests: each of those gets up to
 * WORKERS_PER_QUEUE, an offline one (hot-pluggable) just the one; at least
 * MIN_WORKERS and at most MAX_WORKERS in all. */
static unsigned plan_entries(unsigned nr_queues, unsigned *qids)
{
	uint8_t online[MAX_CPUS / 8] = { 0 };
	bool know = read_cpu_list("/sys/devices/system/cpu/online", online) > 0;
	unsigned n = 0, nonline = 0;

	if (nr_queues > MAX_WORKERS)
		return 0;
	for (unsigned q = 0; q < nr_queues; q++)
		qids[n++] = q;
	for (unsigned q = 0; q < nr_queues; q++) {
		if (know && !(online[q / 8] & (1u << (q % 8))))
			continue;
		online[q / 8] |= (uint8_t)(1u << (q % 8));
		nonline++;
	}
	if (nonline == 0)
		return n;
	for (unsigned round = 1; round < WORKERS_PER_QUEUE || n < MIN_WORKERS; round++)
		for (unsigned q = 0; q < nr_queues; q++) {
			if (!(online[q / 8] & (1u << (q % 8))))
				continue;
			if (n == MAX_WORKERS)
				return n; /* many CPUs: fewer entries each */
			qids[n++] = q;
		}
	return n;
}

/* --- commands ------------------------------------------------------------------ */

static void prep_cmd(struct io_uring_sqe *sqe, const struct ring_worker *w, uint32_t op,
		     uint64_t commit_id)
{
	struct hs_fuse_uring_cmd_req *req;

	memset(sqe, 0, sizeof(*sqe)); /* the command block is set whole below */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = w->fr->fd;
	sqe->cmd_op = op;
	sqe->user_data = UD_ENTRY;
	if (op == HS_FUSE_IO_URING_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)w->iov;
		sqe->len = HS_FUSE_URING_IOV_SEGS;
	}
	req = (struct hs_fuse_uring_cmd_req *)(void *)sqe->cmd;
	*req = (struct hs_fuse_uring_cmd_req){ .qid = (uint16_t)w->qid, .commit_id = commit_id };
}

/* Hands the entry to the kernel.  0 when it took it, else -errno, and
 * *by_kernel when the kernel refused it (failures the kernel finds are
 * completed at once, inside the submission) rather than it never got there. */
static int register_entry(struct ring_worker *w, bool malformed, bool *by_kernel)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	struct io_uring_cqe *cqe;
	int r;

	*by_kernel = false;
	if (!sqe)
		return -EBUSY;
	prep_cmd(sqe, w, HS_FUSE_IO_URING_CMD_REGISTER, 0);
	if (malformed)
		sqe->len = 1;
	r = io_uring_submit(&w->ring);
	if (r < 0)
		return r;
	if (io_uring_peek_cqe(&w->ring, &cqe) == 0 && cqe->user_data == UD_ENTRY && cqe->res < 0) {
		r = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		*by_kernel = true;
		return r;
	}
	return 0; /* a request that came at once stays for the loop */
}

static uint64_t ring_requests(const struct fuse_uring *fr)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < fr->nworkers; i++)
		n += atomic_load_explicit(&fr->w[i].requests, memory_order_relaxed);
	return n;
}

/* Sends the kernel back to /dev/fuse (see the notes at the top). */
static bool fall_back(struct fuse_uring *fr)
{
	struct ring_worker probe = { .fr = fr, .qid = 0 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 2 };
	int res = 0;

	pthread_mutex_lock(&fr->mu);
	fr->fell_back = true;
	fr->served_at_fallback = ring_requests(fr);
	pthread_mutex_unlock(&fr->mu);
	if (!fr->fallback_ready || !(sqe = io_uring_get_sqe(&fr->fallback_ring)))
		return false;
	probe.iov[0] = fr->w[0].iov[0];
	prep_cmd(sqe, &probe, HS_FUSE_IO_URING_CMD_REGISTER, 0);
	sqe->addr = (uint64_t)(uintptr_t)probe.iov;
	sqe->len = 1;
	if (io_uring_submit(&fr->fallback_ring) == 1 &&
	    io_uring_wait_cqe_timeout(&fr->fallback_ring, &cqe, &ts) == 0) {
		res = cqe->res;
		io_uring_cqe_seen(&fr->fallback_ring, cqe);
	}
	hs_debug("FUSE ring: the fallback REGISTER was answered %d", res);
	return res < 0; /* refused, as it must be: the kernel dropped the ring */
}

/* --- serving ------------------------------------------------------------------- */

static void to_fuse_attr(const struct stat *st, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atime;
	a->mtime = (uint64_t)st->st_mtime;
	a->ctime = (uint64_t)st->st_ctime;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->blksize = (uint32_t)st->st_blksize;
}

/* Serves the request in the entry's buffers and writes the answer there;
 * returns the commit id to quote. */
static uint64_t serve(struct ring_worker *w)
{
	struct fuse_front *ff = w->fr->ff;
	struct hs_fuse_uring_req_header *h = w->hdr;
	struct fuse_in_header in;
	struct fuse_out_header oh;
	const void *op = h->op_in;
	char *pl = w->payload;
	size_t plen = HS_MIN((size_t)h->ring_ent_in_out.payload_sz, w->fr->payload);
	uint64_t commit_id = h->ring_ent_in_out.commit_id;
	size_t out = 0;
	struct stat st;
	ssize_t n;

	/* a request here means the kernel uses the ring, also when a late
	 * registration made it take the ring after a fallback: INTERRUPTs for
	 * such requests are to be dropped (fuse_init_hook.c) */
	if (!atomic_load_explicit(&ff->ring_serves, memory_order_relaxed))
		atomic_store(&ff->ring_serves, true);
	int err = 0;

	memcpy(&in, h->in_out, sizeof(in));
	w->open_fh = 0;
	switch (in.opcode) {
	case FUSE_LOOKUP: {
		uint64_t ino = 0;
		if (plen == 0 || pl[plen - 1] != 0) {
			err = -EINVAL;
			break;
		}
		err = ffo_lookup(ff, in.nodeid, pl, &ino, &st);
		if (err)
			break;
		struct fuse_entry_out *eo = (void *)pl; /* the name is no longer needed */
		memset(eo, 0, sizeof(*eo));
		eo->nodeid = ino;
		eo->generation = 1;
		to_fuse_attr(&st, &eo->attr);
		out = sizeof(*eo);
		break;
	}
	case FUSE_GETATTR:
	case FUSE_SETATTR: {
		const struct fuse_setattr_in *si = op;
		err = in.opcode == FUSE_GETATTR ? ffo_getattr(ff, in.nodeid, &st)
						: ffo_setattr(ff, in.nodeid, si->valid & FATTR_SIZE,
							      si->size, &st);
		if (err)
			break;
		struct fuse_attr_out *ao = (void *)pl;
		memset(ao, 0, sizeof(*ao));
		to_fuse_attr(&st, &ao->attr);
		out = sizeof(*ao);
		break;
	}
	case FUSE_OPEN:
	case FUSE_OPENDIR: {
		const struct fuse_open_in *oi = op;
		uint64_t fh = 0;
		if (in.opcode == FUSE_OPEN) {
			err = ffo_open(ff, in.nodeid, (int)oi->flags, &fh);
			if (err)
				break;
			w->open_fh = fh;
		}
		struct fuse_open_out *oo = (void *)pl;
		memset(oo, 0, sizeof(*oo));
		oo->fh = fh;
		oo->open_flags = in.opcode == FUSE_OPEN ? FOPEN_DIRECT_IO : 0;
		out = sizeof(*oo);
		break;
	}
	case FUSE_RELEASE:
		ffo_release(ff, ((const struct fuse_release_in *)op)->fh);
		break;
	case FUSE_READ: {
		const struct fuse_read_in *ri = op;
		n = ffo_read(ri->fh, pl, HS_MIN((size_t)ri->size, w->fr->payload),
			     (int64_t)ri->offset);
		if (n < 0)
			err = (int)n;
		else
			out = (size_t)n;
		break;
	}
	case FUSE_WRITE: {
		const struct fuse_write_in *wi = op;
		if (wi->size > plen) {
			err = -EINVAL;
			break;
		}
		err = ffo_write(wi->fh, pl, wi->size, (int64_t)wi->offset, (int)wi->flags);
		if (err)
			break;
		struct fuse_write_out *wo = (void *)pl;
		memset(wo, 0, sizeof(*wo));
		wo->size = wi->size;
		out = sizeof(*wo);
		break;
	}
	case FUSE_FSYNC:
		err = ffo_fsync(((const struct fuse_fsync_in *)op)->fh);
		break;
	case FUSE_FALLOCATE: {
		const struct fuse_fallocate_in *fa = op;
		err = ffo_fallocate(fa->fh, (int)fa->mode, (int64_t)fa->offset,
				    (int64_t)fa->length);
		break;
	}
	case FUSE_READDIR: {
		const struct fuse_read_in *ri = op;
		n = ffo_readdir(ff, in.nodeid, (int64_t)ri->offset, pl,
				HS_MIN((size_t)ri->size, w->fr->payload));
		if (n < 0)
			err = (int)n;
		else
			out = (size_t)n;
		break;
	}
	case FUSE_STATFS: {
		struct fuse_statfs_out *so = (void *)pl;
		memset(so, 0, sizeof(*so));
		so->st.bsize = so->st.frsize = 4096;
		so->st.namelen = 255;
		out = sizeof(*so);
		break;
	}
	case FUSE_FLUSH:	/* close(2): nothing is cached here */
	case FUSE_RELEASEDIR:
	case FUSE_DESTROY:
		break;
	default:
		err = -ENOSYS; /* what libfuse answers for an operation we do not have */
		break;
	}
	memset(&oh, 0, sizeof(oh));
	oh.unique = in.unique;
	oh.error = err;
	oh.len = (uint32_t)(sizeof(oh) + (err ? 0 : out));
	memcpy(h->in_out, &oh, sizeof(oh));
	h->ring_ent_in_out.payload_sz = err ? 0 : (uint32_t)out;
	/* one writer, readers only sum: an increment without a locked instruction */
	atomic_store_explicit(&w->requests, atomic_load_explicit(&w->requests, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	return commit_id;
}

/* How the first REGISTER of a worker went: r 0 (taken), or -errno and
 * whether the kernel said so (else it never reached the kernel). */
static void report(struct ring_worker *w, int r, bool by_kernel)
{
	struct fuse_uring *fr = w->fr;

	pthread_mutex_lock(&fr->mu);
	fr->reported++;
	if (r == 0) {
		fr->queue_entries[w->qid]++;
	} else if (!fr->why[0]) { /* the first failure says why */
		snprintf(fr->why, sizeof(fr->why), "%s: %s",
			 by_kernel ? "the kernel refused the ring's registration"
				   : "a ring entry could not be registered",
			 strerror(-r));
	}
	pthread_cond_broadcast(&fr->reported_cv);
	pthread_mutex_unlock(&fr->mu);
}

static bool every_queue_has_entries_locked(const struct fuse_uring *fr)
{
	for (unsigned q = 0; q < fr->nr_queues; q++)
		if (fr->queue_entries[q] == 0)
			return false;
	return true;
}

static bool every_queue_served_locked(const struct fuse_uring *fr)
{
	return !fr->fell_back && !fr->lost[0] && every_queue_has_entries_locked(fr);
}

static bool connection_gone(int res)
{
	return res == -ENOTCONN || res == -ECONNABORTED || res == -ECANCELED || res == -ENODEV;
}

/* One entry fewer on the worker's queue.  A queue whose last entry is gone
 * holds the requests of its CPU until a COMMIT_AND_FETCH takes them, so
 * that is said loudly, and status stops calling the ring the transport. */
static void entry_lost(struct ring_worker *w, int res)
{
	struct fuse_uring *fr = w->fr;
	bool last;

	pthread_mutex_lock(&fr->mu);
	last = --fr->queue_entries[w->qid] == 0 && !connection_gone(res) &&
	       !atomic_load(&fr->stopping);
	if (last)
		snprintf(fr->lost, sizeof(fr->lost), "queue %u lost its last ring entry (%s)",
			 w->qid, strerror(-res));
	pthread_mutex_unlock(&fr->mu);
	if (last)
		hs_error("FUSE ring: queue %u lost its last entry (%s): requests issued on CPU %u "
			 "wait for a new one; restart the daemon if I/O stalls",
			 w->qid, strerror(-res), w->qid);
}

/* Sends the answer in the entry and asks for the next request.  0 when it
 * went (the kernel may still have the next request on its way), a refusal
 * (*refused: the kernel completes those inside the submission, and takes
 * the entry with it), or a submission that failed (the request stays
 * unanswered). */
static int submit_answer(struct ring_worker *w, uint64_t commit_id, bool *refused)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring); /* never NULL: one in flight */
	struct io_uring_cqe *cqe;
	int r;

	*refused = false;
	if (!sqe)
		return -EBUSY;
	prep_cmd(sqe, w, HS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH, commit_id);
	/* transient failures (memory, a signal) are retried for about a
	 * second: the SQE stays queued and the next submit sends it */
	for (int tries = 0; (r = io_uring_submit(&w->ring)) != 1; tries++) {
		if (tries == 100 || (r != -EAGAIN && r != -EINTR && r != -EBUSY && r != -ENOMEM))
			return r < 0 ? r : -EIO;
		usleep(10000);
	}
	if (io_uring_peek_cqe(&w->ring, &cqe) == 0 && cqe->user_data == UD_ENTRY && cqe->res < 0) {
		r = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		*refused = true;
		return r;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct ring_worker *w = arg;
	struct fuse_uring *fr = w->fr;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	bool by_kernel;
	int r;

	/* the stop wake, armed once (a fresh ring has room) */
	if (!sqe || (fr->test_skip_queue0 && w->qid == 0)) {
		report(w, sqe ? -ECANCELED : -EBUSY, false);
		return NULL;
	}
	io_uring_prep_poll_add(sqe, fr->stop_efd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD_STOP);
	r = register_entry(w, fr->test_fail_register, &by_kernel);
	report(w, r, by_kernel);
	if (r < 0)
		return NULL;
	while (!atomic_load(&fr->stopping)) {
		struct io_uring_cqe *cqe;
		bool refused;
		uint64_t ud;
		int res;

		r = io_uring_wait_cqe(&w->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			hs_error("FUSE ring: queue %u: waiting for a request: %s", w->qid,
				 strerror(-r));
			entry_lost(w, r);
			break;
		}
		ud = cqe->user_data;
		res = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		if (ud == UD_STOP || atomic_load(&fr->stopping))
			break;
		if (res == 0) {
			/* a request */
			res = submit_answer(w, serve(w), &refused);
			if (res == 0) {
				w->open_fh = 0; /* the kernel has it: its RELEASE will come */
				continue;
			}
			/* An answer the kernel never took: an OPEN's handle would
			 * never be released. */
			if (w->open_fh)
				ffo_release(fr->ff, w->open_fh);
			w->open_fh = 0;
			if (!refused) {
				hs_error("FUSE ring: queue %u: cannot send an answer (%s); its "
					 "request waits for the connection's end", w->qid, strerror(-res));
				entry_lost(w, res);
				break;
			}
		}
		/* The entry is gone: its answer was refused (the request had
		 * ended), or the kernel ended the wait (abort, unmount). */
		entry_lost(w, res);
		if (connection_gone(res))
			break;
		hs_debug("FUSE ring: queue %u: %s; registering the entry again", w->qid,
			 strerror(-res));
		if (register_entry(w, false, &by_kernel) < 0)
			break;
		pthread_mutex_lock(&fr->mu);
		fr->queue_entries[w->qid]++;
		if (every_queue_has_entries_locked(fr))
			fr->lost[0] = 0;
		pthread_mutex_unlock(&fr->mu);
	}
	return NULL;
}

/* --- lifecycle ------------------------------------------------------------------ */

static void free_ring(struct fuse_uring *fr)
{
	for (unsigned i = 0; fr->w && i < fr->nworkers; i++) {
		struct ring_worker *w = &fr->w[i];
		if (w->ring_ready)
			io_uring_queue_exit(&w->ring);
		free(w->hdr);
		free(w->payload);
	}
	if (fr->fallback_ready)
		io_uring_queue_exit(&fr->fallback_ring);
	if (fr->stop_efd >= 0)
		close(fr->stop_efd);
	pthread_mutex_destroy(&fr->mu);
	pthread_cond_destroy(&fr->reported_cv);
	free(fr->queue_entries);
	free(fr->w);
	free(fr);
}

static int init_ring(struct io_uring *ring)
{
	struct io_uring_params p;
	int r;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128; /* the command block lives in the SQE */
	r = io_uring_queue_init_params(4, ring, &p);
	if (r < 0)
		return r;
	/* Not into a fork (the freezer child, daemon/freeze.c): its copy of
	 * the ring's mappings would keep the ring alive after the daemon died,
	 * the ring its entries, and the entries the /dev/fuse file, so the
	 * connection would not end; and the child, thawing a file system on a
	 * volume of that connection, would wait for it for good. */
	r = io_uring_ring_dontfork(ring);
	if (r < 0) {
		io_uring_queue_exit(ring);
		return r;
	}
	return 0;
}

int fuse_uring_prepare(struct fuse_front *ff, int dev_fd, size_t payload,
		       struct fuse_uring **out, const char **why)
{
	struct fuse_uring *fr = calloc(1, sizeof(*fr));
	const char *test = getenv("HOTSNAP_TEST_FUSE_URING");
	unsigned qids[MAX_WORKERS];
	pthread_condattr_t ca;
	int r = -ENOMEM;

	*why = "out of memory for the ring";
	if (!fr)
		return -ENOMEM;
	fr->ff = ff;
	fr->fd = dev_fd;
	fr->payload = payload;
	fr->stop_efd = -1;
	fr->test_fail_register = test && strcmp(test, "fail-register") == 0;
	fr->test_skip_queue0 = test && strcmp(test, "skip-queue0") == 0;
	fr->nr_queues = nr_queues();
	fr->nworkers = plan_entries(fr->nr_queues, qids);
	if (fr->nworkers == 0) {
		/* a thread and a payload buffer per entry: past MAX_WORKERS the
		 * ring would cost more than it saves */
		free(fr);
		*why = "too many possible CPUs to give each queue its ring entries";
		return -E2BIG;
	}
	pthread_mutex_init(&fr->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fr->reported_cv, &ca);
	pthread_condattr_destroy(&ca);
	fr->w = calloc(fr->nworkers, sizeof(*fr->w));
	fr->queue_entries = calloc(fr->nr_queues, sizeof(*fr->queue_entries));
	if (!fr->w || !fr->queue_entries)
		goto fail;
	fr->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fr->stop_efd < 0) {
		r = -errno;
		*why = "cannot make an eventfd for the ring";
		goto fail;
	}
	for (unsigned i = 0; i < fr->nworkers; i++) {
		struct ring_worker *w = &fr->w[i];
		w->fr = fr;
		w->qid = qids[i];
		if (posix_memalign((void **)&w->hdr, FF_ALIGN, sizeof(*w->hdr)) ||
		    posix_memalign(&w->payload, FF_ALIGN, payload)) {
			r = -ENOMEM;
			goto fail;
		}
		memset(w->hdr, 0, sizeof(*w->hdr));
		w->iov[0] = (struct iovec){ .iov_base = w->hdr, .iov_len = sizeof(*w->hdr) };
		w->iov[1] = (struct iovec){ .iov_base = w->payload, .iov_len = payload };
		r = init_ring(&w->ring);
		if (r < 0) {
			*why = "cannot set up an io_uring (io_uring disabled by "
			       "kernel.io_uring_disabled, or out of locked memory)";
			goto fail;
		}
		w->ring_ready = true;
	}
	r = init_ring(&fr->fallback_ring);
	if (r < 0) {
		*why = "cannot set up an io_uring";
		goto fail;
	}
	fr->fallback_ready = true;
	*out = fr;
	*why = NULL;
	return 0;
fail:
	free_ring(fr);
	return r;
}

void fuse_uring_discard(struct fuse_uring *fr)
{
	if (fr)
		free_ring(fr);
}

bool fuse_uring_go(struct fuse_uring *fr, char *why, size_t why_len)
{
	struct timespec until = clock_mono_deadline(REGISTER_TIMEOUT_MS);
	unsigned started = 0;
	bool ok;

	for (unsigned i = 0; i < fr->nworkers; i++) {
		struct ring_worker *w = &fr->w[i];
		if (pthread_create(&w->thread, NULL, worker_main, w) == 0) {
			w->started = true;
			started++;
		}
	}
	pthread_mutex_lock(&fr->mu);
	while (fr->reported < started)
		if (pthread_cond_timedwait(&fr->reported_cv, &fr->mu, &until) == ETIMEDOUT)
			break;
	ok = every_queue_served_locked(fr);
	if (!ok && !fr->why[0])
		snprintf(fr->why, sizeof(fr->why), "%s",
			 started < fr->nworkers ? "cannot start the ring's threads"
						: "the ring's queues did not all register in time");
	snprintf(why, why_len, "%s", fr->why);
	pthread_mutex_unlock(&fr->mu);
	if (!ok && !fall_back(fr)) {
		/* The kernel still holds every request for a ring that will not
		 * serve: only ending the connection frees them. */
		hs_error("FUSE ring: the kernel did not drop the ring when told to; ending the "
			 "FUSE connection so that nothing waits on it for good");
		ff_abort_mount(fr->ff->mountpoint);
	}
	return ok;
}

void fuse_uring_stop(struct fuse_uring *fr)
{
	uint64_t one = 1;

	atomic_store(&fr->stopping, true);
	if (write(fr->stop_efd, &one, sizeof(one)) < 0)
		hs_debug("FUSE ring: stop wake: %s", strerror(errno));
	for (unsigned i = 0; i < fr->nworkers; i++)
		if (fr->w[i].started)
			pthread_join(fr->w[i].thread, NULL);
	free_ring(fr);
}

bool fuse_uring_serving(const struct fuse_uring *fr)
{
	struct fuse_uring *m = (struct fuse_uring *)fr; /* the lock, not the state */
	bool ok;

	pthread_mutex_lock(&m->mu);
	ok = every_queue_served_locked(fr) ||
	     /* a registration that came after the fallback's deadline made the
	      * kernel take the ring after all: what it sends there says so */
	     (fr->fell_back && !fr->lost[0] && every_queue_has_entries_locked(fr) &&
	      ring_requests(fr) > fr->served_at_fallback);
	pthread_mutex_unlock(&m->mu);
	return ok;
}

void fuse_uring_counts(const struct fuse_uring *fr, unsigned *queues, unsigned *workers,
		       uint64_t *requests)
{
	*queues = fr->nr_queues;
	*workers = fr->nworkers;
	*requests = ring_requests(fr);
}

void fuse_uring_why(const struct fuse_uring *fr, char *buf, size_t len)
{
	struct fuse_uring *m = (struct fuse_uring *)fr; /* the lock, not the state */

	pthread_mutex_lock(&m->mu);
	snprintf(buf, len, "%s", fr->lost[0] ? fr->lost : fr->why[0] ? fr->why : "the ring stopped serving");
	pthread_mutex_unlock(&m->mu);
}
