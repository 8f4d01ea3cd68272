/* qcow2_read.c - reading qcow2 images (version 2 and 3), with their backing
 * files, as QEMU reads them.
 *
 * Every number taken from the file is checked before it is used: the
 * header's fields against QEMU's own limits, extensions against the end of
 * cluster 0, each L1 and L2 entry for reserved bits, alignment and a place
 * inside the file when it is followed.  A defect gives -EINVAL or -EIO and
 * a sentence naming the file, the structure and the offset (image_error()).
 * Reads past the end of the file give zeros, as in QEMU (a compressed
 * cluster's last sector may lie past it).
 *
 * L2 tables are cached (a few, least recently used, under the reader's
 * mutex); data and compressed clusters are read and decompressed outside
 * the lock, so several threads read one image in parallel. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "image/image_internal.h"
#include "image/qcow2_format.h"

#define L2_CACHE 16

struct l2_slot {
	uint64_t table; /* L2 table index; UINT64_MAX when empty */
	uint64_t last_use;
	uint64_t *entries; /* native order */
};

struct qcow2_reader {
	struct image_reader r;
	unsigned cb;
	uint64_t cs;
	uint64_t l2_entries;
	uint64_t file_size;
	int ctype;
	uint64_t l1_size;
	uint64_t *l1; /* native order */
	uint8_t *meta;
	pthread_mutex_t mu; /* guards the cache */
	struct l2_slot cache[L2_CACHE];
	uint64_t clock;
};

static struct qcow2_reader *to_q(struct image_reader *r)
{
	return hs_container_of(r, struct qcow2_reader, r);
}

bool qcow2_probe(const void *head, size_t len)
{
	return len >= 4 && qcow2_get32(head) == QCOW2_MAGIC;
}

/* --- decompression ------------------------------------------------------------------- */

static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void free_dctx(void *p)
{
	ZSTD_freeDCtx(p);
}

static void make_key(void)
{
	(void)pthread_key_create(&dctx_key, free_dctx);
}

/* One thread's zstd context, made on first use and freed when it ends. */
static ZSTD_DCtx *thread_dctx(void)
{
	ZSTD_DCtx *d;

	pthread_once(&dctx_once, make_key);
	d = pthread_getspecific(dctx_key);
	if (!d && (d = ZSTD_createDCtx()))
		(void)pthread_setspecific(dctx_key, d);
	return d;
}

/* Exactly one cluster out of in[0..len), as QEMU decodes it: frames until
 * the cluster is full, whatever follows; less or more is damage. */
static int decompress(struct qcow2_reader *q, const uint8_t *in, size_t len, uint8_t *out)
{
	if (q->ctype == QCOW2_COMPRESSION_ZSTD) {
		ZSTD_DCtx *d = thread_dctx();
		ZSTD_inBuffer ib = { in, len, 0 };
		ZSTD_outBuffer ob = { out, q->cs, 0 };
		size_t ret = 1;
		if (!d)
			return -ENOMEM;
		ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
		while (ob.pos < ob.size) {
			size_t in0 = ib.pos, out0 = ob.pos;
			ret = ZSTD_decompressStream(d, &ob, &ib);
			if (ZSTD_isError(ret) || (ib.pos == in0 && ob.pos == out0))
				return -EIO;
		}
		return ret == 0 ? 0 : -EIO;
	}
	z_stream zs = { 0 };
	int zr;
	if (inflateInit2(&zs, -12) != Z_OK)
		return -ENOMEM;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)q->cs;
	zr = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	return zs.avail_out == 0 && (zr == Z_STREAM_END || zr == Z_BUF_ERROR) ? 0 : -EIO;
}

/* --- metadata ----------------------------------------------------------------------- */

/* Reads [off, off + len) of the file; zeros past its end. */
static int read_file(struct qcow2_reader *q, void *buf, size_t len, uint64_t off)
{
	size_t have = off >= q->file_size ? 0 : (size_t)HS_MIN_U64(len, q->file_size - off);
	int r = have ? image_pread_full(q->r.fd, buf, have, off) : 0;

	if (r < 0)
		return image_fail(r, "reading %s at offset %llu failed: %s", q->r.path,
				  (unsigned long long)off, strerror(-r));
	memset((uint8_t *)buf + have, 0, len - have);
	return 0;
}

/* The L2 entry of virtual cluster cl (0: unallocated). */
static int get_entry(struct qcow2_reader *q, uint64_t cl, uint64_t *entry)
{
	uint64_t t = cl / q->l2_entries, l1e, l2off;
	struct l2_slot *slot = NULL, *victim = &q->cache[0];
	int r = 0;

	if (t >= q->l1_size) /* the open checked the size against l1_size: cannot happen */
		return image_fail(-EIO, "%s: cluster %llu is past its L1 table", q->r.path,
				  (unsigned long long)cl);
	l1e = q->l1[t];
	if (l1e & QCOW2_L1E_RESERVED_MASK)
		return image_fail(-EIO, "%s is damaged: L1 entry %llu has reserved bits set",
				  q->r.path, (unsigned long long)t);
	l2off = l1e & QCOW2_L1E_OFFSET_MASK;
	if (!l2off) {
		*entry = 0;
		return 0;
	}
	if (l2off & (q->cs - 1) || l2off >= q->file_size)
		return image_fail(-EIO, "%s is damaged: L1 entry %llu points to %llu, %s", q->r.path,
				  (unsigned long long)t, (unsigned long long)l2off,
				  l2off & (q->cs - 1) ? "not a cluster boundary"
						      : "past the end of the file");
	pthread_mutex_lock(&q->mu);
	for (unsigned i = 0; i < L2_CACHE; i++) {
		if (q->cache[i].table == t) {
			slot = &q->cache[i];
			break;
		}
		if (q->cache[i].last_use < victim->last_use)
			victim = &q->cache[i];
	}
	if (!slot) {
		slot = victim;
		slot->table = UINT64_MAX;
		if (!slot->entries && !(slot->entries = malloc(q->cs)))
			r = image_fail(-ENOMEM, "out of memory reading %s", q->r.path);
		if (r == 0)
			r = read_file(q, slot->entries, q->cs, l2off);
		if (r == 0) {
			for (uint64_t i = 0; i < q->l2_entries; i++)
				slot->entries[i] = qcow2_get64((uint8_t *)&slot->entries[i]);
			slot->table = t;
		}
	}
	if (r == 0) {
		slot->last_use = ++q->clock;
		*entry = slot->entries[cl % q->l2_entries];
	}
	pthread_mutex_unlock(&q->mu);
	return r;
}

enum kind { K_UNALLOCATED, K_ZERO, K_DATA, K_COMPRESSED };

/* What an entry says about its cluster: for K_DATA the host offset, for
 * K_COMPRESSED the offset and length of its bytes. */
static int classify(struct qcow2_reader *q, uint64_t cl, enum kind *k, uint64_t *host,
		    uint64_t *clen)
{
	uint64_t e = 0;
	int r = get_entry(q, cl, &e);

	if (r < 0)
		return r;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		qcow2_parse_compressed(q->cb, e, host, clen);
		if (*host >= q->file_size)
			return image_fail(-EIO, "%s is damaged: compressed cluster %llu lies past the "
						"end of the file",
					  q->r.path, (unsigned long long)cl);
		*k = K_COMPRESSED;
		return 0;
	}
	if (e & QCOW2_L2E_STD_RESERVED_MASK)
		return image_fail(-EIO, "%s is damaged: the L2 entry of cluster %llu has reserved "
					"bits set",
				  q->r.path, (unsigned long long)cl);
	*host = e & QCOW2_L2E_OFFSET_MASK;
	if (e & QCOW2_OFLAG_ZERO) {
		*k = K_ZERO;
	} else if (!*host) {
		*k = K_UNALLOCATED;
	} else {
		if (*host & (q->cs - 1) || *host >= q->file_size)
			return image_fail(-EIO, "%s is damaged: cluster %llu points to %llu, %s",
					  q->r.path, (unsigned long long)cl,
					  (unsigned long long)*host,
					  *host & (q->cs - 1) ? "not a cluster boundary"
							      : "past the end of the file");
		*k = K_DATA;
	}
	return 0;
}

/* --- reading ----------------------------------------------------------------------- */

/* What the backing file holds at [off, off + len); zeros past its end. */
static int read_backing(struct qcow2_reader *q, uint8_t *buf, size_t len, uint64_t off)
{
	struct image_reader *b = q->r.backing;
	size_t have = 0;

	if (b && off < b->info.size)
		have = (size_t)HS_MIN_U64(len, b->info.size - off);
	if (have) {
		int r = b->ops->read(b, buf, have, off);
		if (r < 0)
			return r;
	}
	memset(buf + have, 0, len - have);
	return 0;
}

static int read_compressed(struct qcow2_reader *q, uint64_t cl, uint64_t coff, uint64_t clen,
			   uint8_t *dst, uint64_t in, size_t n)
{
	uint8_t *raw = malloc(clen), *plain = n == q->cs ? dst : malloc(q->cs);
	int r = raw && plain ? 0 : image_fail(-ENOMEM, "out of memory reading %s", q->r.path);

	if (r == 0)
		r = read_file(q, raw, clen, coff);
	if (r == 0 && (r = decompress(q, raw, clen, plain)) < 0)
		r = image_fail(r == -ENOMEM ? r : -EIO,
			       "%s is damaged: compressed cluster %llu (at %llu) does not decompress "
			       "to one cluster",
			       q->r.path, (unsigned long long)cl, (unsigned long long)coff);
	if (r == 0 && plain != dst)
		memcpy(dst, plain + in, n);
	free(raw);
	if (plain != dst)
		free(plain);
	return r;
}

static int q_read(struct image_reader *r, void *buf, size_t len, uint64_t off)
{
	struct qcow2_reader *q = to_q(r);
	uint8_t *dst = buf;
	int e = 0;

	while (len > 0 && e == 0) {
		uint64_t cl = off >> q->cb, in = off & (q->cs - 1), host, clen;
		size_t n = (size_t)HS_MIN_U64(q->cs - in, len);
		enum kind k;
		if ((e = classify(q, cl, &k, &host, &clen)) < 0)
			break;
		/* runs of neighbours: one read for clusters next to each other on
		 * disk, one backing read for unallocated ones */
		if (k == K_DATA || k == K_UNALLOCATED || k == K_ZERO) {
			while (n < len) {
				uint64_t h2, c2;
				enum kind k2;
				if (classify(q, cl + (in + n) / q->cs, &k2, &h2, &c2) < 0 || k2 != k ||
				    (k == K_DATA && h2 != host + in + n))
					break;
				n += (size_t)HS_MIN_U64(q->cs, len - n);
			}
		}
		switch (k) {
		case K_ZERO:
			memset(dst, 0, n);
			break;
		case K_UNALLOCATED:
			e = read_backing(q, dst, n, off);
			break;
		case K_DATA:
			e = read_file(q, dst, n, host + in);
			break;
		case K_COMPRESSED:
			e = read_compressed(q, cl, host, clen, dst, in, n);
			break;
		}
		dst += n;
		off += n;
		len -= n;
	}
	return e;
}

static int q_map(struct image_reader *r, uint64_t off, uint64_t len, image_map_fn fn, void *arg)
{
	struct qcow2_reader *q = to_q(r);
	uint64_t end = off + len;
	int e = 0;

	while (off < end && e == 0) {
		uint64_t cl = off >> q->cb, host, clen, n;
		enum kind k, k2;
		if ((e = classify(q, cl, &k, &host, &clen)) < 0)
			break;
		n = HS_MIN_U64(((cl + 1) << q->cb) - off, end - off);
		while (off + n < end && classify(q, (off + n) >> q->cb, &k2, &host, &clen) == 0 &&
		       k2 == k)
			n += HS_MIN_U64(q->cs, end - off - n);
		if (k == K_UNALLOCATED) {
			struct image_reader *b = r->backing;
			uint64_t have = b && off < b->info.size ? HS_MIN_U64(n, b->info.size - off) : 0;
			if (have)
				e = b->ops->map(b, off, have, fn, arg);
			if (e == 0 && have < n)
				e = fn(arg, off + have, n - have, IMAGE_ZERO);
		} else {
			e = fn(arg, off, n, k == K_ZERO ? IMAGE_ZERO : IMAGE_DATA);
		}
		off += n;
	}
	return e;
}

static void q_close(struct image_reader *r)
{
	struct qcow2_reader *q = to_q(r);

	for (unsigned i = 0; i < L2_CACHE; i++)
		free(q->cache[i].entries);
	free(q->l1);
	free(q->meta);
	pthread_mutex_destroy(&q->mu);
	close(r->fd);
	free(q);
}

static const struct image_reader_ops qcow2_reader_ops = {
	.read = q_read,
	.map = q_map,
	.close = q_close,
};

/* --- opening ------------------------------------------------------------------------ */

#define BAD(...) image_fail(-EINVAL, __VA_ARGS__)

static int parse_extensions(struct qcow2_reader *q, const uint8_t *h, uint64_t start,
			    uint64_t end, char *backing_format, size_t fmtlen)
{
	const char *path = q->r.path;

	for (uint64_t p = start; p + 8 <= end;) {
		uint32_t type = qcow2_get32(h + p), elen = qcow2_get32(h + p + 4);
		if (type == QCOW2_EXT_END)
			return 0;
		if (elen > end - p - 8)
			return BAD("%s is damaged: header extension %#x at %llu runs past its room",
				   path, type, (unsigned long long)p);
		const uint8_t *data = h + p + 8;
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			if (elen >= 16 || elen >= fmtlen)
				return BAD("%s is damaged: its backing format name is too long", path);
			memcpy(backing_format, data, elen);
			backing_format[elen] = '\0';
		} else if (type == QCOW2_EXT_HOTSNAP && elen <= IMAGE_META_MAX && !q->meta) {
			q->meta = malloc(elen ? elen : 1);
			if (!q->meta)
				return image_fail(-ENOMEM, "out of memory reading %s", path);
			memcpy(q->meta, data, elen);
			q->r.info.meta = q->meta;
			q->r.info.meta_len = elen;
		}
		p += 8 + hs_align_up(elen, 8);
	}
	return 0;
}

static int parse_header(struct qcow2_reader *q, const uint8_t *h, char *backing_format,
			size_t fmtlen)
{
	const char *path = q->r.path;
	uint32_t version = qcow2_get32(h + QH_VERSION);
	uint64_t hlen = version == 2 ? QCOW2_HEADER_V2_LEN : qcow2_get32(h + QH_HEADER_LENGTH);
	uint64_t incompat = version == 2 ? 0 : qcow2_get64(h + QH_INCOMPATIBLE);
	uint64_t boff = qcow2_get64(h + QH_BACKING_OFFSET);
	uint32_t blen = qcow2_get32(h + QH_BACKING_SIZE);
	uint64_t size = qcow2_get64(h + QH_SIZE) & ~UINT64_C(511);
	uint64_t l1_off = qcow2_get64(h + QH_L1_OFFSET);
	uint64_t nclusters, need;

	q->l1_size = qcow2_get32(h + QH_L1_SIZE);
	if (hlen < (version == 2 ? QCOW2_HEADER_V2_LEN : 104) || hlen > q->cs)
		return BAD("%s is damaged: header length %llu", path, (unsigned long long)hlen);
	if (qcow2_get32(h + QH_CRYPT_METHOD) != 0)
		return BAD("%s is encrypted, which hotsnap does not read", path);
	if (incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE |
			 QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2))
		return BAD("%s uses qcow2 features unknown to hotsnap (incompatible bits %#llx)",
			   path, (unsigned long long)incompat);
	if (incompat & QCOW2_INCOMPAT_CORRUPT)
		return BAD("%s is marked corrupt (by QEMU); repair it with qemu-img check -r all",
			   path);
	if (incompat & QCOW2_INCOMPAT_DATA_FILE)
		return BAD("%s keeps its data in an external file, which hotsnap does not read", path);
	if (incompat & QCOW2_INCOMPAT_EXTL2)
		return BAD("%s uses extended L2 entries (subclusters), which hotsnap does not read",
			   path);
	q->ctype = hlen > QH_COMPRESSION_TYPE ? h[QH_COMPRESSION_TYPE] : QCOW2_COMPRESSION_ZLIB;
	if (q->ctype != QCOW2_COMPRESSION_ZLIB && q->ctype != QCOW2_COMPRESSION_ZSTD)
		return BAD("%s has an unknown compression type %d", path, q->ctype);
	if ((q->ctype != QCOW2_COMPRESSION_ZLIB) != !!(incompat & QCOW2_INCOMPAT_COMPRESSION))
		return BAD("%s is damaged: its compression type and feature bits disagree", path);
	if (qcow2_get32(h + QH_REFCOUNT_ORDER) > 6 && version != 2)
		return BAD("%s is damaged: refcount order %u", path, qcow2_get32(h + QH_REFCOUNT_ORDER));
	/* QEMU's own bound (a view whose L1 would pass INT_MAX entries), and
	 * one that keeps the arithmetic below from wrapping */
	if (size > (UINT64_C(1) << 62))
		return BAD("%s is damaged: its size %llu is beyond any image", path,
			   (unsigned long long)size);
	/* the L1 table: big enough, not too big, aligned, inside the file */
	nclusters = (size + q->cs - 1) >> q->cb;
	need = (nclusters + q->l2_entries - 1) / q->l2_entries;
	if (q->l1_size < need)
		return BAD("%s is damaged: its L1 table (%llu entries) is too small for %llu bytes",
			   path, (unsigned long long)q->l1_size, (unsigned long long)size);
	if (q->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return BAD("%s is damaged: its L1 table is too large", path);
	if (l1_off & (q->cs - 1) || (q->l1_size && (l1_off < q->cs || l1_off > q->file_size ||
						    q->l1_size * 8 > q->file_size - l1_off)))
		return BAD("%s is damaged: its L1 table at %llu lies outside the file or off a "
			   "cluster boundary",
			   path, (unsigned long long)l1_off);
	/* extensions end where the backing file name starts */
	uint64_t ext_end = boff ? boff : q->cs;
	if (boff) {
		if (boff > q->cs || boff < hlen || blen > QCOW2_BACKING_MAX || blen == 0 ||
		    blen > q->cs - boff)
			return BAD("%s is damaged: its backing file name (at %llu, %u bytes) does not "
				   "fit in the first cluster",
				   path, (unsigned long long)boff, blen);
		if (memchr(h + boff, '\0', blen))
			return BAD("%s is damaged: its backing file name holds a NUL byte", path);
		memcpy(q->r.info.backing, h + boff, blen);
		q->r.info.backing[blen] = '\0';
	}
	int r = parse_extensions(q, h, hlen, ext_end, backing_format, fmtlen);
	if (r < 0)
		return r;
	q->r.info.size = size;
	return 0;
}

int qcow2_reader_open(struct image_reader **out, int fd, const char *path, char *backing_format,
		      size_t fmtlen)
{
	struct qcow2_reader *q = calloc(1, sizeof(*q));
	uint8_t first[QCOW2_HEADER_V2_LEN];
	uint8_t *h = NULL;
	int r;

	if (!q) {
		close(fd);
		return image_fail(-ENOMEM, "out of memory");
	}
	pthread_mutex_init(&q->mu, NULL);
	for (unsigned i = 0; i < L2_CACHE; i++)
		q->cache[i].table = UINT64_MAX;
	q->r.ops = &qcow2_reader_ops;
	q->r.fd = fd;
	snprintf(q->r.path, sizeof(q->r.path), "%s", path);
	backing_format[0] = '\0';
	if (fstat(fd, &q->r.st) < 0) {
		r = image_fail(-errno, "cannot examine %s: %s", path, strerror(errno));
		goto fail;
	}
	q->file_size = (uint64_t)q->r.st.st_size;
	if (q->file_size < sizeof(first) ||
	    image_pread_full(fd, first, sizeof(first), 0) < 0) {
		r = BAD("%s is too short to be a qcow2 image", path);
		goto fail;
	}
	uint32_t version = qcow2_get32(first + QH_VERSION);
	uint32_t cb = qcow2_get32(first + QH_CLUSTER_BITS);
	if (version != 2 && version != 3) {
		r = BAD("%s is qcow2 version %u; hotsnap reads versions 2 and 3", path, version);
		goto fail;
	}
	if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS) {
		r = BAD("%s is damaged: cluster bits %u (9 to 21 are possible)", path, cb);
		goto fail;
	}
	q->cb = cb;
	q->cs = UINT64_C(1) << cb;
	q->l2_entries = q->cs / 8;
	q->r.info.format = IMAGE_QCOW2;
	q->r.info.cluster_size = (uint32_t)q->cs;
	h = calloc(1, q->cs);
	if (!h) {
		r = image_fail(-ENOMEM, "out of memory");
		goto fail;
	}
	/* cluster 0, as much of it as the file has */
	r = read_file(q, h, q->cs, 0);
	if (r < 0)
		goto fail;
	r = parse_header(q, h, backing_format, fmtlen);
	if (r < 0)
		goto fail;
	q->r.info.compress = q->ctype == QCOW2_COMPRESSION_ZSTD ? IMAGE_COMPRESS_ZSTD
								 : IMAGE_COMPRESS_ZLIB;
	q->l1 = calloc(q->l1_size ? q->l1_size : 1, sizeof(*q->l1));
	if (!q->l1) {
		r = image_fail(-ENOMEM, "out of memory");
		goto fail;
	}
	if (q->l1_size) {
		r = read_file(q, q->l1, q->l1_size * 8, qcow2_get64(h + QH_L1_OFFSET));
		if (r < 0)
			goto fail;
		for (uint64_t i = 0; i < q->l1_size; i++)
			q->l1[i] = qcow2_get64((uint8_t *)&q->l1[i]);
	}
	free(h);
	*out = &q->r;
	return 0;
fail:
	free(h);
	q_close(&q->r);
	return r;
}
