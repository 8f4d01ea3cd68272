/* Version map: random alloc/free/lookup against a reference list. */
#include "check.h"
#include "engine/cowmap.h"

#define N 20000

int main(void)
{
	uint64_t seed = test_seed("test_cowmap");
	struct cowmap m;
	static uint32_t ids[N];
	static uint64_t chunk[N], mask[N];
	static int live[N];
	unsigned nlive = 0;

	CHECK(cowmap_init(&m) == 0);
	for (int op = 0; op < 200000; op++) {
		unsigned k = (unsigned)rng_below(&seed, N);
		if (!live[k]) {
			chunk[k] = rng_below(&seed, 3000); /* collisions: several versions per chunk */
			mask[k] = UINT64_C(1) << (k % 64);
			ids[k] = cowmap_alloc(&m, chunk[k]);
			CHECK(ids[k] != COW_NONE);
			cowmap_get(&m, ids[k])->mask = mask[k];
			live[k] = 1;
			nlive++;
		} else if (rng_below(&seed, 2)) {
			cowmap_free(&m, ids[k]);
			live[k] = 0;
			nlive--;
		}
		if (op % 1000 == 0) {
			CHECK_EQ(m.live, nlive);
			for (unsigned i = 0; i < N; i++) {
				if (!live[i])
					continue;
				uint32_t id = cowmap_lookup(&m, chunk[i], mask[i]);
				CHECK(id != COW_NONE);
				CHECK_EQ(cowmap_get(&m, id)->chunk, chunk[i]);
			}
		}
	}
	/* free everything: the table shrinks back */
	for (unsigned i = 0; i < N; i++)
		if (live[i])
			cowmap_free(&m, ids[i]);
	CHECK_EQ(m.live, 0);
	CHECK_EQ(m.tused, 0);
	CHECK(cowmap_lookup(&m, 5, 1) == COW_NONE);
	cowmap_destroy(&m);
	printf("test_cowmap: ok\n");
	return 0;
}
