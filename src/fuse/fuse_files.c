/* fuse_files.c - the FUSE directory's files and the operations on them,
 * written once for both transports (see fuse_internal.h).
 *
 * The directory is flat and small (a file per volume and per attached
 * snapshot): a list under one mutex.  Entry and attribute timeouts are zero
 * (the transports say so), since files come and go as snapshots are
 * attached and detached. */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/test_hold.h"

static void give_slot_back(void *slot)
{
	struct ff_inflight *s = slot;
	atomic_store(&s->since_ns, 0);
	atomic_store(&s->taken, false);
}

void ff_files_init(struct fuse_front *ff)
{
	pthread_condattr_t ca;

	pthread_key_create(&ff->slot_key, give_slot_back);
	ff->test_holds = getenv("HOTSNAP_TEST_HOLD") != NULL;

	pthread_mutex_init(&ff->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* waits immune to clock steps */
	pthread_cond_init(&ff->closed, &ca);
	pthread_cond_init(&ff->init_done, &ca);
	pthread_condattr_destroy(&ca);
	ff->next_ino = FF_ROOT_INO + 1;
	ff->start_time = time(NULL);
}

void ff_files_destroy(struct fuse_front *ff)
{
	while (ff->files) {
		struct ff_file *f = ff->files;
		ff->files = f->next;
		export_close(f->base);
		free(f);
	}
	pthread_key_delete(ff->slot_key);
	pthread_mutex_destroy(&ff->mu);
	pthread_cond_destroy(&ff->closed);
	pthread_cond_destroy(&ff->init_done);
}

static struct ff_file *find_ino_locked(struct fuse_front *ff, uint64_t ino)
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

static void fill_attr(struct fuse_front *ff, uint64_t ino, const struct export *e,
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

/* An export's error as the kernel should see it. */
static int kernel_errno(int r)
{
	switch (r) {
	case -EPERM:
		return -EROFS;
	case -ENODATA: /* consumed range */
	case -ESTALE:  /* deleted snapshot */
		return -EIO;
	default:
		return r;
	}
}

static struct ff_handle *handle(uint64_t fh)
{
	return (struct ff_handle *)(uintptr_t)fh;
}

/* --- operations ------------------------------------------------------------ */

int ffo_lookup(struct fuse_front *ff, uint64_t parent, const char *name, uint64_t *ino,
	       struct stat *st)
{
	struct ff_file *f;

	if (parent != FF_ROOT_INO)
		return -ENOENT;
	pthread_mutex_lock(&ff->mu);
	f = find_name_locked(ff, name);
	if (f) {
		*ino = f->ino;
		fill_attr(ff, f->ino, f->base, st);
	}
	pthread_mutex_unlock(&ff->mu);
	return f ? 0 : -ENOENT;
}

int ffo_getattr(struct fuse_front *ff, uint64_t ino, struct stat *st)
{
	struct ff_file *f;

	if (ino == FF_ROOT_INO) {
		fill_attr(ff, ino, NULL, st);
		return 0;
	}
	pthread_mutex_lock(&ff->mu);
	f = find_ino_locked(ff, ino);
	if (f)
		fill_attr(ff, ino, f->base, st);
	pthread_mutex_unlock(&ff->mu);
	return f ? 0 : -ENOENT;
}

int ffo_setattr(struct fuse_front *ff, uint64_t ino, bool set_size, uint64_t size,
		struct stat *st)
{
	int r = ffo_getattr(ff, ino, st);

	if (r < 0)
		return r;
	/* A volume's size is fixed; times and modes are not ours to change. */
	if (set_size && size != (uint64_t)st->st_size)
		return -EPERM;
	return 0;
}

int ffo_open(struct fuse_front *ff, uint64_t ino, int flags, uint64_t *fh)
{
	struct ff_handle *h = calloc(1, sizeof(*h));
	struct ff_file *f;
	int err = 0;

	if (!h)
		return -ENOMEM;
	pthread_mutex_lock(&ff->mu);
	f = find_ino_locked(ff, ino);
	if (!f) {
		err = -ENOENT;
	} else if (export_readonly(f->base) && (flags & O_ACCMODE) != O_RDONLY) {
		err = -EROFS;
	} else {
		h->e = export_dup(f->base);
		if (!h->e) {
			err = errno == EBUSY ? -EBUSY : -ENOMEM; /* a restore or revert holds it */
		} else {
			h->f = f;
			h->ff = ff;
			f->opens++;
		}
	}
	pthread_mutex_unlock(&ff->mu);
	if (err) {
		free(h);
		return err;
	}
	*fh = (uint64_t)(uintptr_t)h;
	return 0;
}

void ffo_release(struct fuse_front *ff, uint64_t fh)
{
	struct ff_handle *h = handle(fh);

	export_close(h->e);
	pthread_mutex_lock(&ff->mu);
	h->f->opens--;
	pthread_cond_broadcast(&ff->closed);
	pthread_mutex_unlock(&ff->mu);
	free(h);
}

/* The calling thread's slot, taken at its first request; NULL when every
 * slot is taken (the request is then served, just not shown). */
static struct ff_inflight *my_slot(struct fuse_front *ff)
{
	struct ff_inflight *s = pthread_getspecific(ff->slot_key);

	for (unsigned i = 0; !s && i < FF_MAX_SERVERS; i++) {
		bool free = false;
		if (atomic_compare_exchange_strong(&ff->inflight[i].taken, &free, true)) {
			s = &ff->inflight[i];
			pthread_setspecific(ff->slot_key, s);
		}
	}
	return s;
}

static struct ff_inflight *busy_begin(struct ff_handle *h)
{
	struct ff_inflight *s = my_slot(h->ff);

	if (s) {
		atomic_store_explicit(&s->file, h->f, memory_order_relaxed);
		atomic_store_explicit(&s->since_ns, clock_mono_ns(), memory_order_release);
	}
	return s;
}

static void busy_end(struct ff_inflight *s)
{
	if (s)
		atomic_store_explicit(&s->since_ns, 0, memory_order_release);
}

ssize_t ffo_read(uint64_t fh, void *buf, size_t size, int64_t off)
{
	struct ff_handle *h = handle(fh);
	uint64_t vsize = export_size(h->e);
	int r;

	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= vsize)
		return 0;
	if (size > vsize - (uint64_t)off)
		size = vsize - (uint64_t)off;
	struct ff_inflight *s = busy_begin(h);
	r = export_pread(h->e, buf, size, (uint64_t)off);
	busy_end(s);
	return r < 0 ? kernel_errno(r) : (ssize_t)size;
}

int ffo_write(uint64_t fh, const void *buf, size_t size, int64_t off, int open_flags)
{
	struct ff_handle *h = handle(fh);
	int r;

	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off > export_size(h->e) || size > export_size(h->e) - (uint64_t)off)
		return -ENOSPC; /* a volume does not grow */
	struct ff_inflight *s = busy_begin(h);
	if (__builtin_expect(h->ff->test_holds, 0))
		test_hold_point("fuse-write");
	r = export_pwrite(h->e, buf, size, (uint64_t)off,
			  (open_flags & (O_DSYNC | O_SYNC)) ? EXPORT_FUA : 0);
	busy_end(s);
	return r < 0 ? kernel_errno(r) : 0;
}

int ffo_fsync(uint64_t fh)
{
	struct ff_handle *h = handle(fh);
	struct ff_inflight *s = busy_begin(h);
	int r = export_flush(h->e);
	busy_end(s);
	return r < 0 ? kernel_errno(r) : 0;
}

void fuse_front_busy(struct fuse_front *ff, struct fuse_busy_info *out)
{
	uint64_t now = clock_mono_ns();
	const struct ff_file *oldest = NULL;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ff->mu); /* no file is freed meanwhile */
	for (unsigned i = 0; i < FF_MAX_SERVERS; i++) {
		uint64_t since = atomic_load_explicit(&ff->inflight[i].since_ns, memory_order_acquire);
		if (!since || since > now)
			continue;
		out->in_flight++;
		if (now - since > out->oldest_ns) {
			out->oldest_ns = now - since;
			oldest = atomic_load_explicit(&ff->inflight[i].file, memory_order_relaxed);
		}
	}
	for (const struct ff_file *f = ff->files; oldest && f; f = f->next)
		if (f == oldest) { /* still a file: copy its name */
			snprintf(out->oldest_file, sizeof(out->oldest_file), "%s", f->name);
			for (unsigned i = 0; i < FF_MAX_SERVERS; i++)
				out->oldest_file_requests +=
					atomic_load(&ff->inflight[i].since_ns) != 0 &&
					atomic_load(&ff->inflight[i].file) == oldest;
		}
	pthread_mutex_unlock(&ff->mu);
}

int ffo_fallocate(uint64_t fh, int mode, int64_t off, int64_t len)
{
	struct ff_handle *h = handle(fh);
	uint64_t size = export_size(h->e);
	int r;

	if (off < 0 || len <= 0)
		return -EINVAL;
	if (export_readonly(h->e))
		return -EROFS;
	if ((uint64_t)off >= size)
		return mode & FALLOC_FL_KEEP_SIZE ? 0 : -ENOSPC;
	if ((uint64_t)len > size - (uint64_t)off) {
		if (!(mode & FALLOC_FL_KEEP_SIZE))
			return -ENOSPC;
		len = (int64_t)(size - (uint64_t)off);
	}
	if (mode == 0 || mode == FALLOC_FL_KEEP_SIZE)
		return 0; /* every byte of a volume is already there */
	bool discard = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	if (!discard && (mode & ~FALLOC_FL_KEEP_SIZE) != FALLOC_FL_ZERO_RANGE)
		return -EOPNOTSUPP;
	struct ff_inflight *s = busy_begin(h);
	r = discard ? export_trim(h->e, (uint64_t)off, (uint64_t)len)
		    : export_zero(h->e, (uint64_t)off, (uint64_t)len, 0);
	busy_end(s);
	return r < 0 ? kernel_errno(r) : 0;
}

/* Appends one struct fuse_dirent; false when it does not fit. */
static bool add_dirent(char *buf, size_t size, size_t *used, const char *name, uint64_t ino,
		       unsigned type, uint64_t next_off)
{
	size_t namelen = strlen(name);
	size_t len = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
	struct fuse_dirent *d = (struct fuse_dirent *)(buf + *used);

	if (len > size - *used)
		return false;
	memset(d, 0, len);
	d->ino = ino;
	d->off = next_off;
	d->namelen = (uint32_t)namelen;
	d->type = type;
	memcpy(d->name, name, namelen);
	*used += len;
	return true;
}

ssize_t ffo_readdir(struct fuse_front *ff, uint64_t ino, int64_t off, char *buf, size_t size)
{
	static const char *const dots[] = { ".", ".." };
	size_t used = 0;
	int64_t idx = 0;

	if (ino != FF_ROOT_INO)
		return -ENOTDIR;
	pthread_mutex_lock(&ff->mu);
	for (int i = 0; i < 2; i++, idx++)
		if (idx >= off &&
		    !add_dirent(buf, size, &used, dots[i], FF_ROOT_INO, S_IFDIR >> 12,
				(uint64_t)idx + 1))
			goto full;
	for (struct ff_file *f = ff->files; f; f = f->next, idx++)
		if (idx >= off &&
		    !add_dirent(buf, size, &used, f->name, f->ino, S_IFREG >> 12, (uint64_t)idx + 1))
			break;
full:
	pthread_mutex_unlock(&ff->mu);
	return (ssize_t)used;
}

/* --- the public file table ----------------------------------------------------- */

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
