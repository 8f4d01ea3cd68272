/* fuse_front.c - see fuse_front.h: the lifecycle, the choice of transport,
 * and the /dev/fuse transport through libfuse.
 *
 * Notes on the design
 * -------------------
 * libfuse's low-level API with its multi-threaded loop serves /dev/fuse:
 * each worker thread reads a request into its own buffer and answers it
 * before reading the next, so a request's data is never overwritten by
 * another request (QEMU 7.2's FUSE export corrupts exactly this under a
 * direct-I/O loop device).  Write data is copied once into a per-thread
 * buffer aligned for O_DIRECT, because the payload inside libfuse's buffer
 * sits after the request header and would force the origin onto its slow
 * buffered path.  The operations themselves are in fuse_files.c, shared
 * with the ring.
 *
 * The ring: Debian 12's libfuse (3.14) predates FUSE over io_uring and
 * cannot accept it in its INIT reply.  So libfuse keeps reading and writing
 * /dev/fuse through fuse_session_custom_io() hooks (fuse_init_hook.c) that
 * see the kernel's INIT request and, in the reply, set up the rings and
 * accept them.  The libfuse loop stays: FORGET and INTERRUPT still come
 * over /dev/fuse, and it is the whole transport when the ring is off.
 *
 * Stopping: unmount lazily (a loop device may still hold a file), then abort
 * the connection through fusectl so the workers blocked in read() and the
 * ring entries waiting for a request return.
 */
#define FUSE_USE_VERSION 312

#include "fuse/fuse_front.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "common/log.h"
#include "fuse/fuse_internal.h"

/* How long a start waits for the kernel's INIT to be answered. */
#define INIT_TIMEOUT_MS 15000

/* --- per-thread buffers ------------------------------------------------------ */

struct tls_buf {
	void *p;
	size_t size;
};

static void tls_buf_free(void *arg)
{
	struct tls_buf *b = arg;
	free(b->p);
	free(b);
}

static void *thread_buffer(struct fuse_front *ff, size_t size)
{
	struct tls_buf *b = pthread_getspecific(ff->buf_key);

	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		pthread_setspecific(ff->buf_key, b);
	}
	if (b->size < size) {
		void *p;
		/* grow in 128 KiB steps: a thread that only ever sees 4 KiB
		 * requests keeps a small buffer */
		size_t want = (size + (128u << 10) - 1) & ~(size_t)((128u << 10) - 1);
		if (posix_memalign(&p, FF_ALIGN, want))
			return NULL;
		free(b->p);
		b->p = p;
		b->size = want;
	}
	return b->p;
}

/* --- the /dev/fuse transport: libfuse's operations --------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_write = FF_MAX_TRANSFER;
	conn->max_readahead = 0;
	/* Async direct I/O requests count as background requests: let the
	 * loop device keep a deep queue in flight. */
	conn->max_background = 128;
	conn->congestion_threshold = 96;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_WRITE;
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_MOVE;
	conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param ep;
	uint64_t ino = 0;
	int r;

	memset(&ep, 0, sizeof(ep));
	r = ffo_lookup(fuse_req_userdata(req), parent, name, &ino, &ep.attr);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	ep.ino = ino;
	ep.generation = 1;
	fuse_reply_entry(req, &ep); /* timeouts 0: files come and go */
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = ffo_getattr(fuse_req_userdata(req), ino, &st);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct stat st;
	int r = ffo_setattr(fuse_req_userdata(req), ino, to_set & FUSE_SET_ATTR_SIZE,
			    (uint64_t)attr->st_size, &st);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	uint64_t fh;
	int r = ffo_open(ff, ino, fi->flags, &fh);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = fh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* An open interrupted meanwhile gets no release: drop the handle here,
	 * or the file would count as open for good. */
	if (fuse_reply_open(req, fi) == -ENOENT)
		ffo_release(ff, fh);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ffo_release(fuse_req_userdata(req), fi->fh);
	fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	void *buf = thread_buffer(fuse_req_userdata(req), size);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = ffo_read(fi->fh, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	size_t size = fuse_buf_size(in);
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
	void *buf = thread_buffer(fuse_req_userdata(req), size);
	ssize_t n;
	int r;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	dst.buf[0].mem = buf;
	n = fuse_buf_copy(&dst, in, 0);
	if (n < 0 || (size_t)n != size) {
		fuse_reply_err(req, n < 0 ? (int)-n : EIO);
		return;
	}
	r = ffo_write(fi->fh, buf, size, off, fi->flags);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -ffo_fsync(fi->fh));
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* close(2): nothing is cached here */
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	fuse_reply_err(req, -ffo_fallocate(fi->fh, mode, off, len));
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	char *buf = malloc(size);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = ffo_readdir(fuse_req_userdata(req), ino, off, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255 };
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops fuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.release = op_release,
	.read = op_read,
	.write_buf = op_write_buf,
	.fsync = op_fsync,
	.flush = op_flush,
	.fallocate = op_fallocate,
	.readdir = op_readdir,
	.statfs = op_statfs,
};

/* --- lifecycle --------------------------------------------------------------- */

static unsigned dev_workers(void)
{
	/* Four per CPU, 8 to 64, and none retired when idle (libfuse otherwise
	 * destroys and recreates workers as a queue depth of 16 ebbs and flows,
	 * a thread creation per few requests).  Not one per request a loop
	 * device may have in flight: on two CPUs, 64 runnable workers queue
	 * behind each other and behind the one holding the backing file's inode
	 * lock (ext4 takes it for every buffered write), and a worker preempted
	 * while holding it stalls all the others for milliseconds.  The
	 * harness, 4k random writes at queue depth 16 on two vCPUs, three runs
	 * each (BENCHMARKS.md, 2026-12-06): 8 workers against 64 gave p99
	 * 561-692 us against 946-1122, at 49-60k IOPS against 52-54k.  With
	 * the ring serving, these threads only see FORGET and INTERRUPT, and
	 * libfuse starts them as they are needed. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return (unsigned)HS_MIN(HS_MAX(4 * (cpus > 0 ? cpus : 1), 8), 64);
}

static void *loop_main(void *arg)
{
	struct fuse_front *ff = arg;
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	unsigned workers = dev_workers();

	fuse_loop_cfg_set_max_threads(cfg, workers);
	fuse_loop_cfg_set_idle_threads(cfg, workers);
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_session_loop_mt(ff->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return NULL;
}

/* Writes 1 to the fusectl abort file of the connection on device dev: the
 * kernel fails every pending request and wakes every worker.  Mounts
 * fusectl if needed. */
static void abort_connection_dev(dev_t dev)
{
	char path[128];
	int fd;

	if (dev == 0 || major(dev) != 0) /* 0: never mounted (a start that failed) */
		return;
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", minor(dev));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		(void)mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL);
		fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return; /* connection already gone */
	if (write(fd, "1", 1) < 0)
		hs_debug("fusectl abort: %s", strerror(errno));
	close(fd);
}

/* Aborts the connection of every FUSE mount at mountpoint (stale: one a
 * previous daemon left). */
static void abort_mount(const char *mountpoint, bool stale)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		unsigned maj, min;
		char mnt[PATH_MAX];
		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &maj, &min, mnt) != 3 ||
		    strcmp(mnt, mountpoint) != 0 || !strstr(line, " - fuse"))
			continue;
		if (stale)
			hs_warn("aborting the FUSE connection left at %s by a previous daemon",
				mountpoint);
		else
			hs_warn("aborting the FUSE connection at %s", mountpoint);
		abort_connection_dev(makedev(maj, min));
	}
	free(line);
	fclose(f);
}

/* A daemon killed while one of its own threads waited on its own FUSE mount
 * (a freeze flushing through it, a loop device opening its file) cannot
 * finish dying: that thread waits for workers that are gone, and the
 * connection lives as long as the thread holds the device open.  Aborting
 * the connection of a FUSE mount left at mountpoint frees it. */
static void abort_stale_mount(const char *mountpoint)
{
	abort_mount(mountpoint, true);
}

void ff_abort_mount(const char *mountpoint)
{
	abort_mount(mountpoint, false);
}


#define ENABLE_URING "/sys/module/fuse/parameters/enable_uring"

/* Makes sure the kernel will offer the ring: NULL, or why it will not. */
static const char *switch_on_uring(void)
{
	char v[8] = "";
	int fd = open(ENABLE_URING, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return "this kernel has no FUSE over io_uring (no fuse module parameter "
		       "enable_uring; it came with Linux 6.14)";
	n = read(fd, v, sizeof(v) - 1);
	close(fd);
	if (n > 0 && (v[0] == 'Y' || v[0] == '1'))
		return NULL;
	if (geteuid() != 0)
		return "the fuse module parameter enable_uring is off, and only root may switch it on";
	fd = open(ENABLE_URING, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		if (fd >= 0)
			close(fd);
		return "the fuse module parameter enable_uring is off and could not be switched on";
	}
	close(fd);
	hs_info("FUSE: switched on the fuse module parameter enable_uring");
	return NULL;
}

bool fuse_transport_parse(const char *s, enum fuse_transport_mode *out)
{
	if (strcmp(s, "auto") == 0)
		*out = FUSE_TRANSPORT_AUTO;
	else if (strcmp(s, "io-uring") == 0)
		*out = FUSE_TRANSPORT_IO_URING;
	else if (strcmp(s, "dev") == 0)
		*out = FUSE_TRANSPORT_DEV;
	else
		return false;
	return true;
}

static const struct fuse_custom_io dev_io = {
	.read = ff_dev_read,
	.writev = ff_dev_writev,
};

/* Waits until the kernel's INIT has been answered (and with it the choice
 * of transport made); false after INIT_TIMEOUT_MS. */
static bool wait_init(struct fuse_front *ff)
{
	struct timespec until = clock_mono_deadline(INIT_TIMEOUT_MS);
	bool done;

	pthread_mutex_lock(&ff->mu);
	while (!ff->init_answered)
		if (pthread_cond_timedwait(&ff->init_done, &ff->mu, &until) == ETIMEDOUT)
			break;
	done = ff->init_answered;
	pthread_mutex_unlock(&ff->mu);
	return done;
}

static void free_front(struct fuse_front *ff)
{
	if (ff->dev_fd >= 0)
		close(ff->dev_fd);
	pthread_key_delete(ff->buf_key);
	ff_files_destroy(ff);
	free(ff);
}

int fuse_front_start(struct fuse_front **out, const char *mountpoint,
		     enum fuse_transport_mode mode, const char **why)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_transport_info ti;
	struct fuse_front *ff;
	struct stat st;
	int r;

	/* aligned as its in-flight slots ask (a cache line each); calloc
	 * promises only 16 bytes */
	if (posix_memalign((void **)&ff, _Alignof(struct fuse_front), sizeof(*ff)) != 0) {
		*why = "out of memory";
		return -ENOMEM;
	}
	memset(ff, 0, sizeof(*ff));
	snprintf(ff->mountpoint, sizeof(ff->mountpoint), "%s", mountpoint);
	ff_files_init(ff);
	pthread_key_create(&ff->buf_key, tls_buf_free);
	ff->mode = mode;
	ff->dev_fd = -1;
	if (mode == FUSE_TRANSPORT_DEV) {
		snprintf(ff->why_not_ring, sizeof(ff->why_not_ring), "--fuse-transport dev");
	} else {
		const char *no = switch_on_uring();
		if (no) {
			snprintf(ff->why_not_ring, sizeof(ff->why_not_ring), "%s", no);
			if (mode == FUSE_TRANSPORT_IO_URING) {
				r = -EOPNOTSUPP;
				*why = "--fuse-transport io-uring: the ring is not available";
				goto err_free;
			}
		}
	}

	/* A daemon killed earlier leaves its mount behind, disconnected. */
	abort_stale_mount(mountpoint);
	(void)umount2(mountpoint, MNT_DETACH);
	if (mkdir(mountpoint, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		*why = "cannot create the FUSE mount point";
		goto err_free;
	}
	if (fuse_opt_add_arg(&args, "hotsnap") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, "fsname=hotsnap,subtype=hotsnap,default_permissions")) {
		r = -ENOMEM;
		*why = "out of memory";
		goto err_free;
	}
	ff->se = fuse_session_new(&args, &fuse_ops, sizeof(fuse_ops), ff);
	fuse_opt_free_args(&args);
	if (!ff->se) {
		r = -EIO;
		*why = "fuse_session_new failed (is the fuse3 package installed and /dev/fuse present?)";
		goto err_free;
	}
	if (fuse_session_mount(ff->se, mountpoint) != 0) {
		r = -EIO;
		*why = "mounting the FUSE file system failed (is /dev/fuse available?)";
		goto err_session;
	}
	/* The rings keep their own descriptor: libfuse closes its own at
	 * unmount, while ring entries may still be answering. */
	ff->dev_fd = fcntl(fuse_session_fd(ff->se), F_DUPFD_CLOEXEC, 0);
	if (ff->dev_fd < 0 ||
	    fuse_session_custom_io(ff->se, &dev_io, fuse_session_fd(ff->se)) != 0) {
		r = -EIO;
		*why = "cannot set up the FUSE transport";
		goto err_unmount;
	}
	r = pthread_create(&ff->loop_thread, NULL, loop_main, ff);
	if (r) {
		r = -r;
		*why = "cannot start the FUSE threads";
		goto err_unmount;
	}
	ff->loop_started = true;
	if (!wait_init(ff)) {
		r = -ETIMEDOUT;
		*why = "the kernel's FUSE INIT went unanswered";
		goto err_stop;
	}
	/* only now: a stat of the mount is a request our workers answer */
	if (stat(mountpoint, &st) == 0)
		ff->dev = st.st_dev;
	fuse_front_transport(ff, &ti);
	if (mode == FUSE_TRANSPORT_IO_URING && strcmp(ti.name, "io-uring") != 0) {
		hs_error("FUSE: --fuse-transport io-uring, but %s", ti.why_not_ring);
		r = -EOPNOTSUPP;
		*why = "--fuse-transport io-uring: the ring does not serve (see the log)";
		goto err_stop;
	}
	if (ti.queues)
		hs_info("FUSE: io_uring transport, %u queues, %u workers", ti.queues, ti.workers);
	else
		hs_info("FUSE: /dev/fuse transport, up to %u workers (not io_uring: %s)", ti.workers,
			ti.why_not_ring);
	*out = ff;
	return 0;

err_stop:
	fuse_front_stop(ff);
	return r;
err_unmount:
	fuse_session_unmount(ff->se);
err_session:
	fuse_session_destroy(ff->se);
err_free:
	free_front(ff);
	return r;
}

void fuse_front_stop(struct fuse_front *ff)
{
	struct fuse_uring *ring;

	if (!ff)
		return;
	fuse_session_exit(ff->se);
	fuse_session_unmount(ff->se);
	abort_connection_dev(ff->dev);
	/* The libfuse loop first: its INIT answer may still be setting up the
	 * ring (a start that timed out), and the ring is only known after. */
	if (ff->loop_started)
		pthread_join(ff->loop_thread, NULL);
	pthread_mutex_lock(&ff->mu);
	ring = ff->ring;
	ff->ring = NULL;
	pthread_mutex_unlock(&ff->mu);
	if (ring)
		fuse_uring_stop(ring);
	fuse_session_destroy(ff->se);
	free_front(ff);
}

void fuse_front_transport(struct fuse_front *ff, struct fuse_transport_info *out)
{
	memset(out, 0, sizeof(*out));
	out->dev_requests = atomic_load(&ff->dev_requests);
	pthread_mutex_lock(&ff->mu);
	if (ff->ring)
		fuse_uring_counts(ff->ring, &out->queues, &out->workers, &out->ring_requests);
	if (ff->ring && fuse_uring_serving(ff->ring)) {
		out->name = "io-uring";
	} else {
		out->name = "dev";
		out->queues = 0;
		out->workers = dev_workers();
		if (ff->ring) /* accepted, then lost or never whole */
			fuse_uring_why(ff->ring, out->why_not_ring, sizeof(out->why_not_ring));
		else
			snprintf(out->why_not_ring, sizeof(out->why_not_ring), "%s",
				 ff->why_not_ring[0] ? ff->why_not_ring
				 : ff->init_answered ? "the ring was not set up"
						     : "the kernel's INIT is not answered yet");
	}
	pthread_mutex_unlock(&ff->mu);
}

bool fuse_front_mounted(const struct fuse_front *ff)
{
	struct stat st;
	return stat(ff->mountpoint, &st) == 0 && st.st_dev == ff->dev;
}
