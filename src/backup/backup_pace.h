/* backup_pace.h - how fast a backup may read.
 *
 * The aim, stated: the foreground (the volume's own requests) keeps at least
 * 0.8x the rate it gets alone, and the backup takes whatever that leaves; it
 * does not back off further than the aim asks (issue 15).  --rate caps it,
 * --no-yield turns the loop off.
 *
 * A token bucket at a rate a closed loop steers, on what it measures:
 *   - Probes: while the foreground is busy, PACE_PROBE_EVERY_NS (1 s) after
 *     the last probe the backup stops for one.  Its first
 *     PACE_PROBE_SETTLE_NS (20 ms) are not counted (reads the backup slowed
 *     down are still draining); over the next PACE_PROBE_MEASURE_NS (80 ms)
 *     the foreground runs alone, and its ops/s and mean service time are a
 *     baseline.  The baseline is the median of the last PACE_PROBE_KEEP (3)
 *     probes: 80 ms is short and one probe can be off either way (a stall,
 *     a burst); a median ignores one bad probe where a max would keep the
 *     lucky one and an average be dragged by it.  A probe costs the backup
 *     a tenth of its time.
 *   - Between probes, every PACE_CONTROL_NS (50 ms; longer if too few
 *     requests came to judge) the share is the foreground's ops/s over the
 *     baseline's.  Below PACE_SHARE_AIM (0.85: the stated 0.8 plus margin
 *     for the noise of 50 ms measurements) the rate is cut to what should
 *     meet the aim, by a fifth at most; so is it when the mean service time
 *     is well above the baseline's (a foreground that issues at a fixed pace
 *     shows harm in latency, not throughput).  Otherwise it grows.  Never
 *     below PACE_RATE_FLOOR (16 MB/s), so the backup never starves.
 *   - The workload changes: a share well above 1 means it grew (the
 *     baseline is dropped and a probe taken at once); still harmed at the
 *     floor, it likely shrank (the next probe comes sooner).
 *   - Before the first probe, and whenever the foreground is too light to
 *     measure its share (no probes then), the rule is latency alone: a mean
 *     service time above 1.15x the lowest seen, plus 10 us, cuts.
 *   - An idle foreground has nothing to protect: no probes, and the rate
 *     grows fast.  A stalled one (requests under way, none served in an
 *     interval) is not idle: the rate holds until it is served again.
 * The rate never grows above 4x what the backup achieved (a rate the disk
 * cannot deliver would take many cuts to come back from), nor above --rate.
 * Without yield there is no loop and no probe: the bucket runs at --rate,
 * or not at all.
 *
 * Pure arithmetic on the times and counters it is given: the caller reads
 * the clock and the volume's counters and sleeps; so a test drives it with
 * made-up ones (tests/unit/test_backup.c simulates a shared disk). */
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
#define PACE_SHARE_AIM 0.85 /* of the foreground's rate alone, kept */
#define PACE_PROBE_EVERY_NS (1000 * 1000000ull)  /* from the end of one probe to the next */
#define PACE_PROBE_SETTLE_NS (20 * 1000000ull)   /* a probe's uncounted start */
#define PACE_PROBE_MEASURE_NS (80 * 1000000ull)  /* then the foreground alone */
#define PACE_PROBE_KEEP 3                         /* probes the baseline is the median of */

struct backup_pacer {
	bool yield;       /* steer on the foreground at all */
	double rate;      /* bytes/s allowed now */
	double max_rate;  /* --rate, or PACE_UNLIMITED */
	uint64_t next_ns; /* when the next byte may be read */
	uint64_t interval_start;
	uint64_t interval_bytes; /* read since interval_start */
	struct volume_fg_sample last; /* at interval_start */
	double lowest_ns; /* lowest foreground service time seen (the fallback's baseline) */
	/* probes: the foreground alone */
	bool probing;             /* a probe is under way: the backup waits */
	bool settled;             /* ... and is past its settle time */
	uint64_t probe_start;     /* when it stopped */
	uint64_t measure_start;   /* when its counted part began */
	struct volume_fg_sample probe_fg; /* at measure_start */
	uint64_t next_probe_ns;
	uint64_t probe_end_ns; /* of the last one */
	double probe_ops[PACE_PROBE_KEEP];  /* ops/s alone, newest first */
	double probe_mean[PACE_PROBE_KEEP]; /* mean service time alone, ns */
	unsigned nprobe;                    /* valid: [0, nprobe); 0: no baseline */
	double base_ops, base_mean;         /* their medians */
	/* for status */
	uint64_t yields; /* times the loop cut the rate */
	uint64_t probes; /* probes taken */
};

/* rate_limit in bytes/s, 0 for none. */
void backup_pacer_init(struct backup_pacer *p, uint64_t rate_limit, bool yield, uint64_t now_ns,
		       const struct volume_fg_sample *fg);
/* n bytes are about to be read at now_ns, given the volume's foreground
 * counters fg; returns a time (CLOCK_MONOTONIC ns), now_ns or later.
 * If p->probing is false on return, n was accounted and the read may start
 * at that time.  If it is true, a probe is under way and n was not
 * accounted: the caller sleeps until that time, reads the counters again
 * and calls again with the same n, until probing is false. */
uint64_t backup_pacer_step(struct backup_pacer *p, uint64_t now_ns, size_t n,
			   const struct volume_fg_sample *fg);

#endif
