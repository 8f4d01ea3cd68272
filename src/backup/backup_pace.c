/* backup_pace.c - see backup_pace.h. */
#include "backup/backup_pace.h"

#include "common/compiler.h"

#define CONTROL_MIN_OPS 16
/* The foreground service time allowed, TARGET x baseline + SLACK.  The aim
 * is a foreground at 0.8x its idle rate or better, which at a fixed queue
 * depth is 1.25x its latency; but the daemon sees a request only once a
 * FUSE worker has taken it, not its wait for a free worker in the kernel,
 * so what it sees grows less than what the application feels.  Measured
 * with the harness's row (d) (BENCHMARKS.md, 2026-12-06), 8 workers:
 * 1.25 + 50 us kept the foreground at 0.69-0.74x; 1.15 + 10 us at
 * 0.78-0.81x, the backup keeping 0.36-0.42x of its idle rate. */
#define TARGET 1.15
#define TARGET_SLACK_NS 10000.0
#define BASELINE_DRIFT 1.002
#define DECREASE 0.7
#define INCREASE 1.1
#define RATE_STEP (4.0 * 1000 * 1000)
#define BURST_NS 20000000u /* an idle stretch buys at most this much burst */

void backup_pacer_init(struct backup_pacer *p, uint64_t rate_limit, bool yield, uint64_t now_ns,
		       const struct volume_fg_sample *fg)
{
	*p = (struct backup_pacer){ 0 };
	p->yield = yield;
	p->max_rate = rate_limit ? (double)rate_limit : PACE_UNLIMITED;
	p->rate = yield ? HS_MIN(PACE_RATE_START, p->max_rate) : p->max_rate;
	p->next_ns = p->interval_start = now_ns;
	p->last = *fg;
}

/* One judgement of the closed loop. */
static void control(struct backup_pacer *p, uint64_t now, const struct volume_fg_sample *fg)
{
	uint64_t ops = fg->ops - p->last.ops;
	uint64_t busy = fg->busy_ns - p->last.busy_ns;
	double achieved =
		(double)p->interval_bytes * 1e9 / (double)HS_MAX(now - p->interval_start, 1);
	double ceiling = HS_MIN(HS_MAX(4 * achieved, PACE_RATE_START), p->max_rate);

	if (ops == 0) {
		p->rate = HS_MAX(HS_MIN(p->rate * 4, ceiling), p->rate * DECREASE);
	} else if (ops < CONTROL_MIN_OPS && now - p->interval_start < 4 * PACE_CONTROL_NS) {
		return; /* too few requests to judge yet: keep collecting */
	} else {
		double mean = (double)busy / (double)ops;
		if (p->baseline_ns == 0 || mean < p->baseline_ns)
			p->baseline_ns = mean;
		else
			p->baseline_ns *= BASELINE_DRIFT;
		if (mean > p->baseline_ns * TARGET + TARGET_SLACK_NS) {
			p->rate = HS_MAX(p->rate * DECREASE, PACE_RATE_FLOOR);
			p->yields++;
		} else {
			p->rate = HS_MAX(HS_MIN(p->rate * INCREASE + RATE_STEP, ceiling),
					 p->rate * DECREASE);
		}
	}
	p->last = *fg;
	p->interval_start = now;
	p->interval_bytes = 0;
}

uint64_t backup_pacer_step(struct backup_pacer *p, uint64_t now_ns, size_t n,
			   const struct volume_fg_sample *fg)
{
	p->interval_bytes += n;
	if (p->yield && now_ns - p->interval_start >= PACE_CONTROL_NS)
		control(p, now_ns, fg);
	if (p->rate >= PACE_UNLIMITED)
		return now_ns;
	if (p->next_ns + BURST_NS < now_ns)
		p->next_ns = now_ns - BURST_NS;
	p->next_ns += (uint64_t)((double)n / p->rate * 1e9);
	return HS_MAX(p->next_ns, now_ns);
}
