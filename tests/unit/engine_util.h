/* engine_util.h - memory volumes for engine tests. */
#ifndef HS_TEST_ENGINE_UTIL_H
#define HS_TEST_ENGINE_UTIL_H

#include "check.h"
#include "common/compiler.h"
#include "engine/engine.h"

/* A memory device big enough for a volume's records at rest (coldstore.h):
 * the by-chunk table, then the by-slot table on a 1 MiB boundary. */
static inline struct dev *mem_copy_index(uint64_t size, unsigned chunk_shift, uint64_t diff_limit)
{
	uint64_t nchunks = (size + (UINT64_C(1) << chunk_shift) - 1) >> chunk_shift;
	uint64_t base = (nchunks * 16 + (UINT64_C(1) << 20) - 1) & ~((UINT64_C(1) << 20) - 1);
	struct dev *d;
	CHECK(dev_mem_create(&d, base + ((diff_limit >> chunk_shift) + 1) * 16) == 0);
	return d;
}

/* As mem_volume, with hot_records (0: none) records in memory at most
 * before the rest go to a memory copy index. */
static inline struct volume *mem_volume_rest(const char *name, uint64_t size,
					     unsigned chunk_shift, uint64_t cow_buffer,
					     uint64_t diff_limit, uint32_t hot_records,
					     struct dev **origin_out)
{
	struct dev *origin, *diff;
	struct volume *v;
	struct volume_config cfg = {
		.name = name,
		.size = size,
		.chunk_shift = chunk_shift,
		.cow_buffer = cow_buffer,
		.diff_limit = diff_limit,
		.hot_records = hot_records,
		.copy_index = hot_records ? mem_copy_index(size, chunk_shift, diff_limit) : NULL,
	};

	CHECK(dev_mem_create(&origin, size) == 0);
	CHECK(dev_mem_create(&diff, diff_limit + (UINT64_C(1) << chunk_shift)) == 0);
	if (origin_out)
		*origin_out = origin;
	CHECK(volume_create(&v, &cfg, origin, diff) == 0);
	return v;
}

static inline struct volume *mem_volume(const char *name, uint64_t size, unsigned chunk_shift,
					uint64_t cow_buffer, uint64_t diff_limit,
					struct dev **origin_out)
{
	return mem_volume_rest(name, size, chunk_shift, cow_buffer, diff_limit, 0, origin_out);
}

static inline struct snapshot *take(struct volume *v, const char *name)
{
	struct snapshot_request rq = { .volume = v, .name = name };
	struct snapshot *s;
	CHECK(snapshot_create_set(&rq, 1, &s) == 0);
	return s;
}

static inline void fill(uint8_t *buf, size_t len, uint64_t tag)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(tag * 31 + i * 7 + (i >> 9));
}

#endif
