/* check.h - assertions for unit tests that stay on in every build and say
 * where and what failed. */
#ifndef HS_TEST_CHECK_H
#define HS_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A randomized test sets this to the seed of the run under way, so that a
 * failure names the one run to replay rather than the first of many. */
static uint64_t check_run_seed;

static inline void check_failed(void)
{
	if (check_run_seed)
		fprintf(stderr, "failing run: replay with HOTSNAP_SEED=%" PRIu64 "\n",
			check_run_seed);
	abort();
}

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
				#cond);                                              \
			check_failed();                                              \
		}                                                                    \
	} while (0)

#define CHECK_EQ(a, b)                                                               \
	do {                                                                         \
		long long _a = (long long)(a), _b = (long long)(b);                  \
		if (_a != _b) {                                                      \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
				__FILE__, __LINE__, #a, #b, _a, _b);                 \
			check_failed();                                              \
		}                                                                    \
	} while (0)

/* xorshift64*: small, fast, reproducible from a printed seed. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(2685821657736338717);
}

static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

/* Seed from $HOTSNAP_SEED when set (to replay a failure), else the clock. */
static inline uint64_t test_seed(const char *name)
{
	const char *env = getenv("HOTSNAP_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
	if (!seed)
		seed = 1;
	printf("%s: seed %" PRIu64 " (replay with HOTSNAP_SEED=%" PRIu64 ")\n", name, seed,
	       seed);
	fflush(stdout);
	return seed;
}

#endif
