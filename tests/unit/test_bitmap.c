/* Sparse bitmap against a flat reference, with random ranges. */
#include "check.h"
#include "common/bitmap.h"

static void check_same(const struct bitmap *bm, const uint8_t *ref, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(bitmap_test(bm, i), ref[i]);
	CHECK_EQ(bitmap_count(bm), ({
			 uint64_t c = 0;
			 for (uint64_t i = 0; i < n; i++)
				 c += ref[i];
			 c;
		 }));
}

static void random_test(uint64_t seed, uint64_t nbits)
{
	struct bitmap bm;
	uint8_t *ref = calloc(nbits, 1);
	uint64_t rs = seed;

	CHECK(bitmap_init(&bm, nbits, false) == 0);
	for (int op = 0; op < 400; op++) {
		uint64_t a = rng_below(&rs, nbits);
		uint64_t len = rng_below(&rs, 4) == 0 ? rng_below(&rs, nbits - a + 1)
						      : rng_below(&rs, 200);
		bool set = rng_below(&rs, 2);
		if (set)
			CHECK(bitmap_set_range(&bm, a, len) == 0);
		else
			CHECK(bitmap_clear_range(&bm, a, len) == 0);
		for (uint64_t i = a; i < a + len && i < nbits; i++)
			ref[i] = set;
		/* queries */
		uint64_t from = rng_below(&rs, nbits), lim = from + rng_below(&rs, nbits);
		uint64_t exp_set = from, exp_clear = from;
		uint64_t l = lim < nbits ? lim : nbits;
		while (exp_set < l && !ref[exp_set])
			exp_set++;
		while (exp_clear < l && ref[exp_clear])
			exp_clear++;
		CHECK_EQ(bitmap_next_set(&bm, from, lim), exp_set < l ? exp_set : (lim < nbits ? lim : nbits));
		CHECK_EQ(bitmap_next_clear(&bm, from, lim), exp_clear < l ? exp_clear : (lim < nbits ? lim : nbits));
		uint64_t cnt = 0;
		for (uint64_t i = from; i < l; i++)
			cnt += ref[i];
		CHECK_EQ(bitmap_count_range(&bm, from, lim - from), cnt);
		if (op % 50 == 0)
			check_same(&bm, ref, nbits);
	}
	check_same(&bm, ref, nbits);
	struct bitmap copy;
	CHECK(bitmap_copy(&copy, &bm) == 0);
	check_same(&copy, ref, nbits);
	bitmap_destroy(&copy);
	bitmap_destroy(&bm);
	free(ref);
}

static void test_memory_follows_mixed_leaves(void)
{
	struct bitmap bm;
	uint64_t n = UINT64_C(26214400); /* 100 GiB in 4 KiB chunks */

	CHECK(bitmap_init(&bm, n, true) == 0);
	size_t base = bitmap_memory(&bm);
	CHECK(base < 16 * 1024);
	/* consume in order: one mixed leaf at a time */
	for (uint64_t c = 0; c < n; c += 256) {
		CHECK(bitmap_clear_range(&bm, c, 256) == 0);
		CHECK(bitmap_memory(&bm) <= base + 4096);
	}
	CHECK_EQ(bitmap_count(&bm), 0);
	CHECK_EQ(bitmap_memory(&bm), base);
	bitmap_destroy(&bm);
}

/* Growing keeps every bit, the last leaf's short run of ones included, and
 * the new bits are clear. */
static void test_grow(void)
{
	struct bitmap bm;

	CHECK(bitmap_init(&bm, 40000, false) == 0);
	CHECK(bitmap_set_range(&bm, 0, 32768) == 0);    /* a full leaf */
	CHECK(bitmap_set_range(&bm, 39990, 10) == 0);   /* the end of the short one */
	CHECK(bitmap_set_range(&bm, 35000, 1) == 0);
	CHECK(bitmap_grow(&bm, 100000) == 0);
	CHECK_EQ(bm.nbits, 100000);
	CHECK_EQ(bitmap_count(&bm), 32768 + 10 + 1);
	CHECK(bitmap_test(&bm, 39999) && bitmap_test(&bm, 35000) && !bitmap_test(&bm, 40000));
	CHECK_EQ(bitmap_next_set(&bm, 40000, 100000), 100000);
	CHECK(bitmap_grow(&bm, 50) == 0); /* smaller: nothing changes */
	CHECK_EQ(bm.nbits, 100000);
	bitmap_destroy(&bm);
}

int main(void)
{
	uint64_t seed = test_seed("test_bitmap");
	uint64_t sizes[] = { 1, 63, 64, 65, 32767, 32768, 32769, 100000, 70001 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		random_test(seed + i, sizes[i]);
	test_memory_follows_mixed_leaves();
	test_grow();
	printf("test_bitmap: ok\n");
	return 0;
}
