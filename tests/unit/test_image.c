/* Image formats: what a writer is given, a reader gives back.
 *
 * A view of random data with zero stretches is written in pieces of random
 * sizes, in random order, from two threads at once (the way the backup's
 * output, drain and copies passes write), then read back through
 * image_open and compared byte for byte, and its map compared with where
 * the zeros are.  For qcow2: every cluster size class, with and without
 * compression, and a chain of incrementals whose top must read as the
 * latest view.  Prints its seed; HOTSNAP_SEED=N replays a run. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/compiler.h"
#include "image/image.h"

/* compressed L2 entries, as qcow2_format.h parses them */
static void qcow2_parse_compressed_test(unsigned cb, uint64_t e, uint64_t *off, uint64_t *csize)
{
	unsigned x = 62 - (cb - 8);
	uint64_t nsect = (e >> x) & ((UINT64_C(1) << (cb - 8)) - 1);
	*off = e & ((UINT64_C(1) << x) - 1);
	*csize = (nsect + 1) * 512 - (*off & 511);
}

#define KiB 1024u

static char dir[] = "/tmp/hs-test-image.XXXXXX";

struct piece {
	uint64_t off, len;
};

struct feeder {
	struct image_writer *w;
	const uint8_t *view;
	struct piece *pieces;
	size_t n, next;
	pthread_mutex_t mu;
	const uint8_t *zero_hint; /* 1 where the caller says "zeros" instead of data */
};

static void *feed(void *arg)
{
	struct feeder *f = arg;

	for (;;) {
		pthread_mutex_lock(&f->mu);
		size_t i = f->next++;
		pthread_mutex_unlock(&f->mu);
		if (i >= f->n)
			return NULL;
		struct piece *p = &f->pieces[i];
		if (f->zero_hint && f->zero_hint[p->off / 512])
			CHECK(image_writer_zero(f->w, p->off, p->len) == 0);
		else
			CHECK(image_writer_data(f->w, f->view + p->off, p->len, p->off) == 0);
	}
}

/* Random data with zero runs; pieces cover [0, size) in aligned steps. */
static uint8_t *make_view(uint64_t *rs, uint64_t size)
{
	uint8_t *v = malloc(size);
	for (uint64_t i = 0; i < size; i += 512) {
		bool zero = rng_below(rs, 3) == 0;
		for (uint64_t k = 0; k < 512; k++)
			v[i + k] = zero ? 0 : (uint8_t)rng_next(rs);
		/* some all-zero runs of whole clusters */
		if (rng_below(rs, 64) == 0) {
			uint64_t run = HS_MIN_U64(rng_below(rs, 256 * KiB), size - i);
			memset(v + i, 0, run);
			i += run & ~UINT64_C(511);
		}
	}
	return v;
}

static struct piece *cut(uint64_t *rs, uint64_t size, uint64_t step, size_t *n)
{
	struct piece *p = malloc((size / step + 1) * sizeof(*p));
	size_t k = 0;
	for (uint64_t off = 0; off < size;) {
		uint64_t len = step * (1 + rng_below(rs, 8));
		if (len > size - off)
			len = size - off;
		p[k++] = (struct piece){ off, len };
		off += len;
	}
	for (size_t i = k; i > 1; i--) { /* any order */
		size_t j = rng_below(rs, i);
		struct piece t = p[i - 1];
		p[i - 1] = p[j];
		p[j] = t;
	}
	*n = k;
	return p;
}

static void write_image(const char *path, const struct image_params *ip, const uint8_t *view,
			struct piece *pieces, size_t n, const uint8_t *zero_hint)
{
	char err[512];
	struct image_writer *w;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	int r = image_writer_begin(&w, fd, ip, err, sizeof(err));
	if (r)
		fprintf(stderr, "begin: %s\n", err);
	CHECK(r == 0);
	struct feeder f = { .w = w, .view = view, .pieces = pieces, .n = n, .zero_hint = zero_hint };
	pthread_mutex_init(&f.mu, NULL);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, feed, &f) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&f.mu);
	r = image_writer_finish(w, err, sizeof(err));
	if (r)
		fprintf(stderr, "finish: %s\n", err);
	CHECK(r == 0);
	close(fd);
}

struct map_check {
	const uint8_t *view;
	uint64_t next;
};

static int check_extent(void *arg, uint64_t off, uint64_t len, enum image_extent type)
{
	struct map_check *m = arg;
	CHECK_EQ(off, m->next);
	m->next = off + len;
	if (type == IMAGE_ZERO)
		for (uint64_t i = 0; i < len; i++)
			CHECK(m->view[off + i] == 0);
	return 0;
}

static void read_back(const char *path, const uint8_t *view, uint64_t size, unsigned depth)
{
	char err[512];
	struct image_reader *r;
	int e = image_open(&r, path, 0, err, sizeof(err));
	if (e)
		fprintf(stderr, "open: %s\n", err);
	CHECK(e == 0);
	CHECK_EQ(image_get_info(r)->size, size);
	CHECK_EQ(image_get_info(r)->depth, depth);
	uint8_t *got = malloc(size);
	/* in odd pieces, so reads start and end inside clusters */
	for (uint64_t off = 0; off < size;) {
		uint64_t len = HS_MIN_U64(size - off, 512 * (1 + (off / 512) % 37));
		e = image_read(r, got + off, len, off);
		if (e)
			fprintf(stderr, "read: %s\n", image_error());
		CHECK(e == 0);
		off += len;
	}
	for (uint64_t i = 0; i < size; i++)
		if (got[i] != view[i]) {
			fprintf(stderr, "%s: byte %llu is %u, expected %u\n", path,
				(unsigned long long)i, got[i], view[i]);
			CHECK(0);
		}
	struct map_check m = { view, 0 };
	CHECK(image_map(r, 0, size, check_extent, &m) == 0);
	CHECK_EQ(m.next, size);
	CHECK(image_read(r, got, 512, size) == -EINVAL);
	free(got);
	image_close(r);
}

static void test_raw(uint64_t *rs)
{
	char path[128];
	uint64_t size = 3 * 1024 * KiB + 512;
	uint8_t *view = make_view(rs, size);
	size_t n;
	struct piece *p = cut(rs, size, 512, &n);
	struct image_params ip = { .format = IMAGE_RAW, .size = size, .name = "raw" };
	struct stat st;

	snprintf(path, sizeof(path), "%s/raw.img", dir);
	write_image(path, &ip, view, p, n, NULL);
	CHECK(stat(path, &st) == 0);
	CHECK_EQ(st.st_size, (long long)size);
	CHECK((uint64_t)st.st_blocks * 512 < size); /* zeros stayed holes */
	read_back(path, view, size, 1);
	free(p);
	free(view);
}

static void test_qcow2(uint64_t *rs, uint32_t cs, enum image_compress c)
{
	char path[128];
	/* not a multiple of the cluster: the last one is partial */
	uint64_t size = 5 * 1024 * KiB + 3 * 512;
	uint8_t *view = make_view(rs, size);
	size_t n;
	/* pieces of whole clusters mostly, and some smaller ones */
	struct piece *p = cut(rs, size, rng_below(rs, 2) ? cs : 4 * KiB > cs ? cs : 4 * KiB, &n);
	struct image_params ip = {
		.format = IMAGE_QCOW2, .size = size, .cluster_size = cs, .compress = c,
		.threads = 2, .meta = "volume=test\n", .meta_len = 12, .name = "q",
	};

	snprintf(path, sizeof(path), "%s/q-%u-%d.qcow2", dir, cs, (int)c);
	write_image(path, &ip, view, p, n, NULL);
	read_back(path, view, size, 1);

	char err[512];
	struct image_reader *r;
	CHECK(image_open(&r, path, 0, err, sizeof(err)) == 0);
	const struct image_info *info = image_get_info(r);
	CHECK_EQ(info->cluster_size, cs);
	CHECK_EQ(info->meta_len, 12);
	CHECK(memcmp(info->meta, "volume=test\n", 12) == 0);
	CHECK(info->backing[0] == '\0');
	image_close(r);
	free(p);
	free(view);
}

/* A base and incrementals on top: each top reads as its own view. */
static void test_chain(uint64_t *rs, enum image_compress c)
{
	const uint32_t cs = 4 * KiB;
	uint64_t size = 2 * 1024 * KiB;
	uint8_t *view = make_view(rs, size);
	uint8_t *zero_hint = calloc(size / 512, 1);
	char path[128], parent[64];
	size_t n;
	struct piece *p = cut(rs, size, cs, &n);
	struct image_params ip = { .format = IMAGE_QCOW2, .size = size, .cluster_size = cs,
				   .compress = c, .name = "chain" };

	snprintf(path, sizeof(path), "%s/chain0.qcow2", dir);
	write_image(path, &ip, view, p, n, NULL);
	free(p);
	for (int level = 1; level <= 4; level++) {
		/* change some clusters: new data, or zeros */
		struct piece *ch = malloc(64 * sizeof(*ch));
		size_t nch = 0;
		memset(zero_hint, 0, size / 512);
		for (int i = 0; i < 64; i++) {
			uint64_t cl = rng_below(rs, size / cs);
			bool dup = false;
			for (size_t k = 0; k < nch; k++)
				dup |= ch[k].off == cl * cs;
			if (dup)
				continue;
			ch[nch++] = (struct piece){ cl * cs, cs };
			if (rng_below(rs, 4) == 0) {
				memset(view + cl * cs, 0, cs);
				zero_hint[cl * cs / 512] = 1;
			} else {
				for (uint32_t k = 0; k < cs; k++)
					view[cl * cs + k] = (uint8_t)rng_next(rs);
			}
		}
		snprintf(parent, sizeof(parent), "chain%d.qcow2", level - 1);
		snprintf(path, sizeof(path), "%s/chain%d.qcow2", dir, level);
		ip.backing = parent;
		ip.backing_format = "qcow2";
		write_image(path, &ip, view, ch, nch, zero_hint);
		read_back(path, view, size, (unsigned)level + 1);
		free(ch);
	}
	free(zero_hint);
	free(view);
}

static void test_hostile_chain(void)
{
	char a[128], b[128], err[512];
	struct image_params ip = { .format = IMAGE_QCOW2, .size = 1024 * KiB, .name = "loop",
				   .backing = "loop-b.qcow2", .backing_format = "qcow2" };
	struct image_reader *r;
	uint8_t x[4096] = { 1 };

	/* a -> b -> a */
	snprintf(a, sizeof(a), "%s/loop-a.qcow2", dir);
	snprintf(b, sizeof(b), "%s/loop-b.qcow2", dir);
	struct piece pa = { 0, 4096 };
	write_image(a, &ip, x, &pa, 1, NULL);
	ip.backing = "loop-a.qcow2";
	write_image(b, &ip, x, &pa, 1, NULL);
	CHECK(image_open(&r, a, 0, err, sizeof(err)) == -ELOOP);
	CHECK(strstr(err, "loops") != NULL);
	/* a missing backing file is named */
	ip.backing = "nowhere.qcow2";
	write_image(a, &ip, x, &pa, 1, NULL);
	CHECK(image_open(&r, a, 0, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, "nowhere.qcow2") != NULL);
	CHECK(image_open(&r, a, IMAGE_OPEN_NO_BACKING, err, sizeof(err)) == -EINVAL);
}

/* --- hostile files ---------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	CHECK(f != NULL);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*len);
	CHECK(fread(b, 1, *len, f) == *len);
	fclose(f);
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL && fwrite(b, 1, len, f) == len);
	fclose(f);
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Opens and reads the whole view: an error is fine, a crash is not.
 * Returns the error text ("" when everything read). */
static const char *try_image(const char *path, int *stage)
{
	static char err[IMAGE_ERROR_MAX];
	struct image_reader *r;
	uint8_t buf[65536];

	*stage = 0;
	if (image_open(&r, path, IMAGE_OPEN_NO_BACKING, err, sizeof(err)) < 0)
		return err;
	*stage = 1;
	uint64_t size = image_get_info(r)->size;
	for (uint64_t off = 0; off < size && off < (UINT64_C(8) << 20); off += sizeof(buf)) {
		if (image_read(r, buf, (size_t)HS_MIN_U64(sizeof(buf), size - off), off) < 0) {
			snprintf(err, sizeof(err), "%s", image_error());
			image_close(r);
			return err;
		}
	}
	image_close(r);
	*stage = 2;
	return "";
}

struct corruption {
	const char *what;
	int stage;        /* 0: open refuses, 1: a read fails */
	const char *words;
};

static void test_hostile(uint64_t *rs)
{
	char good[128], bad[128];
	uint64_t size = 256 * KiB;
	uint8_t *view = make_view(rs, size);
	size_t n, len;
	struct piece *p = cut(rs, size, 4 * KiB, &n);
	struct image_params ip = { .format = IMAGE_QCOW2, .size = size, .cluster_size = 4 * KiB,
				   .compress = IMAGE_COMPRESS_ZSTD, .name = "hostile" };
	static const struct corruption cases[] = {
		{ "truncated header", 0, "too short" },
		{ "version 4", 0, "version 4" },
		{ "cluster bits 30", 0, "cluster bits 30" },
		{ "encrypted", 0, "encrypted" },
		{ "unknown incompatible feature", 0, "unknown to hotsnap" },
		{ "L1 too small for the size", 0, "too small" },
		{ "L1 table huge", 0, "too large" },
		{ "L1 past the end", 0, "outside the file" },
		{ "header extension too long", 0, "runs past its room" },
		{ "backing name outside cluster 0", 0, "does not fit" },
		{ "backing format name too long", 0, "too long" },
		{ "L1 entry past the end", 1, "past the end of the file" },
		{ "L1 entry misaligned", 1, "not a cluster boundary" },
		{ "L1 entry reserved bits", 1, "reserved bits" },
		{ "L2 entry reserved bits", 1, "reserved bits" },
		{ "L2 entry past the end", 1, "past the end of the file" },
		{ "compressed cluster garbage", 1, "does not decompress" },
		{ "truncated data", 1, "" },
	};

	snprintf(good, sizeof(good), "%s/good.qcow2", dir);
	write_image(good, &ip, view, p, n, NULL);
	uint8_t *orig = slurp(good, &len);
	uint64_t l1_off = be64(orig + 40);
	uint64_t l2_off = be64(orig + l1_off) & UINT64_C(0x00fffffffffffe00);
	/* the first compressed and the first plain L2 entries */
	uint64_t comp = 0, plain = 0;
	for (uint64_t i = 0; i < 512; i++) {
		uint64_t e = be64(orig + l2_off + i * 8);
		if (!comp && (e >> 62 & 1))
			comp = l2_off + i * 8;
		if (!plain && e && !(e >> 62 & 1))
			plain = l2_off + i * 8;
	}
	CHECK(l1_off && l2_off && comp);
	for (size_t i = 0; i < HS_ARRAY_SIZE(cases); i++) {
		uint8_t *b = malloc(len);
		size_t blen = len;
		memcpy(b, orig, len);
		switch (i) {
		case 0: blen = 60; break;
		case 1: put_be32(b + 4, 4); break;
		case 2: put_be32(b + 20, 30); break;
		case 3: put_be32(b + 32, 1); break;
		case 4: b[72 + 7] |= 0x80; break;
		case 5: put_be64(b + 24, UINT64_C(1) << 50); break;
		case 6: put_be32(b + 36, 0x7fffffff); break;
		case 7: put_be64(b + 40, hs_align_up(len, 4096) + 4096 * 16); break;
		case 8: put_be32(b + 112, 0x12345678); put_be32(b + 116, 0x7ffffff0); break;
		case 9: put_be64(b + 8, 8000); put_be32(b + 16, 500); break;
		case 10: put_be32(b + 112, 0xe2792aca); put_be32(b + 116, 20); break;
		case 11: put_be64(b + l1_off, (hs_align_up(len, 4096) + 4096 * 64) | (UINT64_C(1) << 63)); break;
		case 12: put_be64(b + l1_off, l2_off + 512); break;
		case 13: b[l1_off + 7] |= 1; break;
		case 14: put_be64(b + (plain ? plain : comp), (UINT64_C(1) << 63) | 4096 | 2); break;
		case 15:
			put_be64(b + (plain ? plain : comp),
				 (hs_align_up(len, 4096) + (UINT64_C(1) << 30)) | (UINT64_C(1) << 63));
			break;
		case 16: {
			uint64_t coff, csize;
			qcow2_parse_compressed_test(12, be64(b + comp), &coff, &csize);
			memset(b + coff, 0xa5, (size_t)HS_MIN_U64(csize, len - coff));
			break;
		}
		case 17: blen = (size_t)l2_off + 100; put_be64(b + 40, 4096); break;
		}
		snprintf(bad, sizeof(bad), "%s/bad-%zu.qcow2", dir, i);
		spit(bad, b, blen);
		int stage;
		const char *err = try_image(bad, &stage);
		if (stage == 2 && cases[i].words[0]) {
			fprintf(stderr, "%s: read without an error\n", cases[i].what);
			CHECK(0);
		}
		if (cases[i].words[0] && (stage != cases[i].stage || !strstr(err, cases[i].words))) {
			fprintf(stderr, "%s: stage %d, '%s' (expected stage %d, '%s')\n", cases[i].what,
				stage, err, cases[i].stage, cases[i].words);
			CHECK(0);
		}
		if (stage < 2)
			CHECK(strstr(err, bad) != NULL); /* the file is named */
		free(b);
	}
	free(orig);
	free(p);
	free(view);
}

int main(void)
{
	uint64_t seed = test_seed("test_image"), rs = seed;
	check_run_seed = seed;

	CHECK(mkdtemp(dir) != NULL);
	test_raw(&rs);
	for (uint32_t cs = 512; cs <= 2048 * KiB; cs *= 8) {
		test_qcow2(&rs, cs, IMAGE_COMPRESS_NONE);
		test_qcow2(&rs, cs, IMAGE_COMPRESS_ZSTD);
	}
	test_qcow2(&rs, 64 * KiB, IMAGE_COMPRESS_ZLIB);
	test_chain(&rs, IMAGE_COMPRESS_ZSTD);
	test_chain(&rs, IMAGE_COMPRESS_NONE);
	test_hostile_chain();
	test_hostile(&rs);

	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	printf("test_image: ok\n");
	return 0;
}
