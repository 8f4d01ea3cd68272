/* clock.h - monotonic and wall-clock time in nanoseconds. */
#ifndef HS_CLOCK_H
#define HS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* Cheap (a few ns, jiffy resolution): for "when was the last I/O". */
static inline uint64_t clock_coarse_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC_COARSE);
}

/* CLOCK_MONOTONIC ms from now, as pthread_cond_timedwait wants it (for a
 * condition variable made with pthread_condattr_setclock(CLOCK_MONOTONIC)). */
static inline struct timespec clock_mono_deadline(unsigned ms)
{
	uint64_t t = clock_mono_ns() + (uint64_t)ms * 1000000u;
	return (struct timespec){ .tv_sec = (time_t)(t / 1000000000u),
				  .tv_nsec = (long)(t % 1000000000u) };
}

static inline uint64_t clock_wall_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

#endif
