/* engine_util.h - memory volumes for engine tests. */
#ifndef HS_TEST_ENGINE_UTIL_H
#define HS_TEST_ENGINE_UTIL_H

#include "check.h"
#include "common/compiler.h"
#include "engine/engine.h"

static inline struct volume *mem_volume(const char *name, uint64_t size, unsigned chunk_shift,
					uint64_t cow_buffer, uint64_t diff_limit,
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
	};

	CHECK(dev_mem_create(&origin, size) == 0);
	CHECK(dev_mem_create(&diff, diff_limit + (UINT64_C(1) << chunk_shift)) == 0);
	if (origin_out)
		*origin_out = origin;
	CHECK(volume_create(&v, &cfg, origin, diff) == 0);
	return v;
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
