/* compiler.h - small language helpers shared by every layer. */
#ifndef HS_COMPILER_H
#define HS_COMPILER_H

#include <stddef.h>
#include <stdint.h>

#define HS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HS_UNUSED __attribute__((unused))
#define HS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define HS_NORETURN __attribute__((noreturn))
#define HS_LIKELY(x) __builtin_expect(!!(x), 1)
#define HS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HS_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline uint64_t HS_MIN_U64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

#define hs_container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* Round up/down to a power-of-two alignment. */
static inline uint64_t hs_align_down(uint64_t v, uint64_t align)
{
	return v & ~(align - 1);
}
static inline uint64_t hs_align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}
static inline int hs_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Cleanup helpers in the style of nbdkit's cleanup.h. */
void hs_free_ptr(void *pp);
#define HS_AUTOFREE __attribute__((cleanup(hs_free_ptr)))

#endif
