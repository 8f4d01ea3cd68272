/* fuse_front.c - see fuse_front.h.
 *
 * Notes on the design
 * -------------------
 * libfuse's low-level API with its multi-threaded loop: each worker thread
 * reads a request into its own buffer and answers it before reading the
 * next, so a request's data is never overwritten by another request (QEMU
 * 7.2's FUSE export corrupts exactly this under a direct-I/O loop device).
 * Write data is copied once into a per-thread buffer aligned for O_DIRECT,
 * because the payload inside libfuse's buffer sits after the request header
 * and would force the origin onto its slow buffered path.
 *
 * The directory is flat: inode 1 is the root, every file gets a fresh inode
 * number that is never reused while mounted, so a stale number from the
 * kernel simply finds nothing.  Entry and attribute timeouts are zero: files
 * come and go as snapshots are attached and detached.
 *
 * Stopping: unmount lazily (a loop device may still hold a file), then abort
 * the connection through fusectl so the workers blocked in read() return.
 */
#define FUSE_USE_VERSION 312

#include "fuse_front.h"

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
#include "common/log.h"
#include "common/names.h"

/* Largest request.  Each worker (up to 64) keeps a buffer of this
 * size, touched in full by the first request that size.  `make bench`
 * (frontend): at 1 MiB the daemon's RSS reached 132 MiB after 1 MiB I/O at
 * queue depth 64; at 256 KiB, 36 MiB, for about 14% less sequential read
 * throughput from the page cache (still three times the raw loop device's)
 * and no measurable change in sequential writes. */
#define MAX_TRANSFER (256u << 10)
#define ALIGN 4096

struct ff_file {
	char name[2 * HS_NAME_MAX + 2];
	fuse_ino_t ino;
	struct export *base;
	int opens;
	struct ff_file *next;
};

struct ff_handle {
	struct export *e;
	struct ff_file *f;
};

struct fuse_front {
	char mountpoint[PATH_MAX];
	struct fuse_session *se;
	pthread_t loop_thread;
	bool loop_started;
	dev_t dev; /* of the mounted file system, for fusectl */
	pthread_mutex_t mu;
	pthread_cond_t closed; /* a handle was released */
	struct ff_file *files; /* [mu] */
	fuse_ino_t next_ino;   /* [mu] */
	time_t start_time;
	pthread_key_t buf_key;
};

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
		if (posix_memalign(&p, ALIGN, want))
			return NULL;
		free(b->p);
		b->p = p;
		b->size = want;
	}
	return b->p;
}

/* --- the file table ---------------------------------------------------------- */

static struct ff_file *find_ino_locked(struct fuse_front *ff, fuse_ino_t ino)
{
	for (struct ff_file *f = ff->files; f; f = f->next)
		if (f->ino == ino)
			return f;
	return NULL;
}

static struct ff_file *find_name_locked(struct fuse_front *ff, const char *name)
{
	for (struct ff_file *f = ff->files; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void fill_attr(struct fuse_front *ff, fuse_ino_t ino, const struct export *e,
		      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = ff->start_time;
	if (!e) {
		st->st_mode = S_IFDIR | 0700;
		st->st_nlink = 2;
		return;
	}
	st->st_mode = S_IFREG | (export_readonly(e) ? 0400 : 0600);
	st->st_nlink = 1;
	st->st_size = (off_t)export_size(e);
	st->st_blocks = (blkcnt_t)(export_size(e) / 512);
	st->st_blksize = (blksize_t)export_preferred_block(e);
}

/* Gets attributes of ino; false when it does not exist. */
static bool get_attr(struct fuse_front *ff, fuse_ino_t ino, struct stat *st)
{
	struct ff_file *f;
	bool found = true;

	if (ino == FUSE_ROOT_ID) {
		fill_attr(ff, ino, NULL, st);
		return true;
	}
	pthread_mutex_lock(&ff->mu);
	f = find_ino_locked(ff, ino);
	if (f)
		fill_attr(ff, ino, f->base, st);
	else
		found = false;
	pthread_mutex_unlock(&ff->mu);
	return found;
}

/* --- errno for the kernel ------------------------------------------------- */

static int kernel_errno(int r)
{
	switch (r) {
	case -EPERM:
		return EROFS;
	case -ENODATA: /* consumed range */
	case -ESTALE:  /* deleted snapshot */
		return EIO;
	default:
		return -r;
	}
}

/* --- operations ------------------------------------------------------------ */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_write = MAX_TRANSFER;
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
	struct fuse_front *ff = fuse_req_userdata(req);
	struct fuse_entry_param ep;
	struct ff_file *f;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&ep, 0, sizeof(ep));
	pthread_mutex_lock(&ff->mu);
	f = find_name_locked(ff, name);
	if (f) {
		ep.ino = f->ino;
		ep.generation = 1;
		fill_attr(ff, f->ino, f->base, &ep.attr);
	}
	pthread_mutex_unlock(&ff->mu);
	if (!f) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	ep.attr_timeout = 0;
	ep.entry_timeout = 0;
	fuse_reply_entry(req, &ep);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	struct stat st;

	if (!get_attr(ff, ino, &st)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	struct stat st;

	if (!get_attr(ff, ino, &st)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* A volume's size is fixed; times and modes are not ours to change. */
	if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size != st.st_size) {
		fuse_reply_err(req, EPERM);
		return;
	}
	fuse_reply_attr(req, &st, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	struct ff_handle *h;
	struct ff_file *f;
	int err = 0;

	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&ff->mu);
	f = find_ino_locked(ff, ino);
	if (!f) {
		err = ENOENT;
	} else if (export_readonly(f->base) && (fi->flags & O_ACCMODE) != O_RDONLY) {
		err = EROFS;
	} else {
		h->e = export_dup(f->base);
		if (!h->e) {
			err = ENOMEM;
		} else {
			h->f = f;
			f->opens++;
		}
	}
	pthread_mutex_unlock(&ff->mu);
	if (err) {
		free(h);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	struct ff_handle *h = (struct ff_handle *)(uintptr_t)fi->fh;

	export_close(h->e);
	pthread_mutex_lock(&ff->mu);
	h->f->opens--;
	pthread_cond_broadcast(&ff->closed);
	pthread_mutex_unlock(&ff->mu);
	free(h);
	fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	struct ff_handle *h = (struct ff_handle *)(uintptr_t)fi->fh;
	uint64_t vsize = export_size(h->e);
	void *buf;
	int r;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= vsize) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > vsize - (uint64_t)off)
		size = vsize - (uint64_t)off;
	buf = thread_buffer(ff, size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r = export_pread(h->e, buf, size, (uint64_t)off);
	if (r < 0) {
		fuse_reply_err(req, kernel_errno(r));
		return;
	}
	fuse_reply_buf(req, buf, size);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	struct ff_handle *h = (struct ff_handle *)(uintptr_t)fi->fh;
	size_t size = fuse_buf_size(in);
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
	void *buf;
	ssize_t n;
	int r;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	buf = thread_buffer(ff, size);
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
	if ((uint64_t)off > export_size(h->e) || size > export_size(h->e) - (uint64_t)off) {
		fuse_reply_err(req, ENOSPC); /* a volume does not grow */
		return;
	}
	r = export_pwrite(h->e, buf, size, (uint64_t)off,
			  (fi->flags & (O_DSYNC | O_SYNC)) ? EXPORT_FUA : 0);
	if (r < 0) {
		fuse_reply_err(req, kernel_errno(r));
		return;
	}
	fuse_reply_write(req, size);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ff_handle *h = (struct ff_handle *)(uintptr_t)fi->fh;
	int r = export_flush(h->e);
	fuse_reply_err(req, r < 0 ? kernel_errno(r) : 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* close(2): nothing is cached here */
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct ff_handle *h = (struct ff_handle *)(uintptr_t)fi->fh;
	uint64_t size = export_size(h->e);
	int r;

	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (export_readonly(h->e)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((uint64_t)off >= size) {
		fuse_reply_err(req, mode & FALLOC_FL_KEEP_SIZE ? 0 : ENOSPC);
		return;
	}
	if ((uint64_t)len > size - (uint64_t)off) {
		if (!(mode & FALLOC_FL_KEEP_SIZE)) {
			fuse_reply_err(req, ENOSPC);
			return;
		}
		len = (off_t)(size - (uint64_t)off);
	}
	if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
		r = export_trim(h->e, (uint64_t)off, (uint64_t)len); /* discard */
	else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE)
		r = export_zero(h->e, (uint64_t)off, (uint64_t)len, 0);
	else if (mode == 0 || mode == FALLOC_FL_KEEP_SIZE)
		r = 0; /* every byte of a volume is already there */
	else
		r = -EOPNOTSUPP;
	fuse_reply_err(req, r < 0 ? kernel_errno(r) : 0);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fuse_front *ff = fuse_req_userdata(req);
	char *buf;
	size_t used = 0;
	off_t idx = 0;

	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&ff->mu);
	const char *dots[] = { ".", ".." };
	for (int i = 0; i < 2; i++, idx++) {
		if (idx < off)
			continue;
		struct stat st = { .st_ino = FUSE_ROOT_ID, .st_mode = S_IFDIR };
		size_t n = fuse_add_direntry(req, buf + used, size - used, dots[i], &st, idx + 1);
		if (n > size - used)
			goto full;
		used += n;
	}
	for (struct ff_file *f = ff->files; f; f = f->next, idx++) {
		if (idx < off)
			continue;
		struct stat st = { .st_ino = f->ino, .st_mode = S_IFREG };
		size_t n = fuse_add_direntry(req, buf + used, size - used, f->name, &st, idx + 1);
		if (n > size - used)
			break;
		used += n;
	}
full:
	pthread_mutex_unlock(&ff->mu);
	fuse_reply_buf(req, buf, used);
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

static void *loop_main(void *arg)
{
	struct fuse_front *ff = arg;
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();

	/* Workers: four per CPU, 8 to 64, and none retired when idle (libfuse
	 * otherwise destroys and recreates workers as a queue depth of 16 ebbs
	 * and flows, a thread creation per few requests).  Not one per request
	 * a loop device may have in flight: on two CPUs, 64 runnable workers
	 * queue behind each other and behind the one holding the backing
	 * file's inode lock (ext4 takes it for every buffered write), and a
	 * worker preempted while holding it stalls all the others for
	 * milliseconds.  The harness, 4k random writes at queue depth 16 on
	 * two vCPUs, three runs each (BENCHMARKS.md, 2026-12-06): 8 workers
	 * against 64 gave p99 561-692 us against 946-1122, at 49-60k IOPS
	 * against 52-54k. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int workers = (int)HS_MIN(HS_MAX(4 * (cpus > 0 ? cpus : 1), 8), 64);
	fuse_loop_cfg_set_max_threads(cfg, (unsigned)workers);
	fuse_loop_cfg_set_idle_threads(cfg, (unsigned)workers);
	hs_info("FUSE: %d workers (%ld CPUs)", workers, cpus);
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

	if (major(dev) != 0)
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

static void abort_connection(struct fuse_front *ff)
{
	abort_connection_dev(ff->dev);
}

/* A daemon killed while one of its own threads waited on its own FUSE mount
 * (a freeze flushing through it, a loop device opening its file) cannot
 * finish dying: that thread waits for workers that are gone, and the
 * connection lives as long as the thread holds the device open.  Aborting
 * the connection of a FUSE mount left at mountpoint frees it. */
static void abort_stale_mount(const char *mountpoint)
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
		hs_warn("aborting the FUSE connection left at %s by a previous daemon", mountpoint);
		abort_connection_dev(makedev(maj, min));
	}
	free(line);
	fclose(f);
}

int fuse_front_start(struct fuse_front **out, const char *mountpoint, const char **why)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_front *ff;
	struct stat st;
	int r;

	ff = calloc(1, sizeof(*ff));
	if (!ff) {
		*why = "out of memory";
		return -ENOMEM;
	}
	snprintf(ff->mountpoint, sizeof(ff->mountpoint), "%s", mountpoint);
	pthread_mutex_init(&ff->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* waits immune to clock steps */
	pthread_cond_init(&ff->closed, &ca);
	pthread_condattr_destroy(&ca);
	pthread_key_create(&ff->buf_key, tls_buf_free);
	ff->next_ino = FUSE_ROOT_ID + 1;
	ff->start_time = time(NULL);

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
	r = pthread_create(&ff->loop_thread, NULL, loop_main, ff);
	if (r) {
		r = -r;
		*why = "cannot start the FUSE threads";
		goto err_unmount;
	}
	ff->loop_started = true;
	/* only now: a stat of the mount is a request our workers answer */
	if (stat(mountpoint, &st) == 0)
		ff->dev = st.st_dev;
	*out = ff;
	return 0;

err_unmount:
	fuse_session_unmount(ff->se);
err_session:
	fuse_session_destroy(ff->se);
err_free:
	pthread_key_delete(ff->buf_key);
	pthread_mutex_destroy(&ff->mu);
	pthread_cond_destroy(&ff->closed);
	free(ff);
	return r;
}

void fuse_front_stop(struct fuse_front *ff)
{
	if (!ff)
		return;
	fuse_session_exit(ff->se);
	fuse_session_unmount(ff->se);
	abort_connection(ff);
	if (ff->loop_started)
		pthread_join(ff->loop_thread, NULL);
	fuse_session_destroy(ff->se);
	while (ff->files) {
		struct ff_file *f = ff->files;
		ff->files = f->next;
		export_close(f->base);
		free(f);
	}
	pthread_key_delete(ff->buf_key);
	pthread_mutex_destroy(&ff->mu);
	pthread_cond_destroy(&ff->closed);
	free(ff);
}

int fuse_front_add(struct fuse_front *ff, const char *name, struct export *e)
{
	struct ff_file *f;
	int r = 0;

	pthread_mutex_lock(&ff->mu);
	if (find_name_locked(ff, name)) {
		r = -EEXIST;
	} else if (!(f = calloc(1, sizeof(*f)))) {
		r = -ENOMEM;
	} else {
		snprintf(f->name, sizeof(f->name), "%s", name);
		f->ino = ff->next_ino++;
		f->base = e;
		f->next = ff->files;
		ff->files = f;
	}
	pthread_mutex_unlock(&ff->mu);
	if (r)
		export_close(e);
	return r;
}

int fuse_front_remove(struct fuse_front *ff, const char *name)
{
	struct ff_file **pp, *f = NULL;
	int r = -ENOENT;

	pthread_mutex_lock(&ff->mu);
	for (pp = &ff->files; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) != 0)
			continue;
		if ((*pp)->opens > 0) {
			r = -EBUSY;
			break;
		}
		f = *pp;
		*pp = f->next;
		r = 0;
		break;
	}
	pthread_mutex_unlock(&ff->mu);
	if (f) {
		export_close(f->base);
		free(f);
	}
	return r;
}

const char *fuse_front_path(const struct fuse_front *ff, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", ff->mountpoint, name);
	return buf;
}

int fuse_front_open_count(struct fuse_front *ff, const char *name)
{
	struct ff_file *f;
	int n = 0;

	pthread_mutex_lock(&ff->mu);
	f = find_name_locked(ff, name);
	if (f)
		n = f->opens;
	pthread_mutex_unlock(&ff->mu);
	return n;
}

bool fuse_front_mounted(const struct fuse_front *ff)
{
	struct stat st;
	return stat(ff->mountpoint, &st) == 0 && st.st_dev == ff->dev;
}

bool fuse_front_wait_closes(struct fuse_front *ff, const char *name, int fewer_than,
			    unsigned timeout_ms)
{
	struct timespec until = clock_mono_deadline(timeout_ms);
	bool done = false;

	pthread_mutex_lock(&ff->mu);
	for (;;) {
		struct ff_file *f = find_name_locked(ff, name);
		if (!f || f->opens < fewer_than) {
			done = true;
			break;
		}
		if (pthread_cond_timedwait(&ff->closed, &ff->mu, &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&ff->mu);
	return done;
}
