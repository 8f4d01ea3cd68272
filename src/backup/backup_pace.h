/* backup_pace.h - how fast a backup may read.
 *
 * A token bucket at a rate a closed loop steers (LEDBAT-like).  The signal
 * is the mean service time of the volume's own (foreground) requests: the
 * lowest mean seen is the baseline (it drifts up slowly, so a workload that
 * changes is followed); above TARGET times the baseline the backup is in the
 * applications' way and backs off multiplicatively, never below a floor, so
 * it never starves; at or below it, and when the volume is idle, it speeds
 * up, never above a few times what it achieved (a rate the disk cannot
 * deliver would take many cuts to come back from) nor above --rate.
 *
 * Pure arithmetic on the times and counters it is given: the caller reads
 * the clock and the volume's counters and sleeps; so a test can drive it
 * with made-up ones. */
#ifndef HS_BACKUP_PACE_H
#define HS_BACKUP_PACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/snapshot_backup.h"

#define PACE_CONTROL_NS (50 * 1000000ull) /* how often the loop judges */
#define PACE_RATE_FLOOR (16.0 * 1000 * 1000)  /* bytes/s a busy volume still grants */
#define PACE_RATE_START (256.0 * 1000 * 1000) /* before the first judgement */
#define PACE_UNLIMITED (1e12)

struct backup_pacer {
	bool yield;       /* steer on the foreground at all */
	double rate;      /* bytes/s allowed now */
	double max_rate;  /* --rate, or PACE_UNLIMITED */
	uint64_t next_ns; /* when the next byte may be read */
	uint64_t interval_start;
	uint64_t interval_bytes; /* read since interval_start */
	struct volume_fg_sample last;
	double baseline_ns; /* foreground service time with the backup out of the way */
	uint64_t yields;    /* times the loop backed off */
};

/* rate_limit in bytes/s, 0 for none. */
void backup_pacer_init(struct backup_pacer *p, uint64_t rate_limit, bool yield, uint64_t now_ns,
		       const struct volume_fg_sample *fg);
/* Accounts n bytes about to be read at now_ns, given the volume's
 * foreground counters fg; returns when (CLOCK_MONOTONIC ns) the read may
 * start: now_ns or later. */
uint64_t backup_pacer_step(struct backup_pacer *p, uint64_t now_ns, size_t n,
			   const struct volume_fg_sample *fg);

#endif
