/* dev_fault.h - a device wrapper for tests: injected failures and
 * simulated power loss (see dev_fault.c). */
#ifndef HS_DEV_FAULT_H
#define HS_DEV_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/dev.h"

/* Wraps inner (taking ownership).  crash_mode keeps the log of unflushed
 * writes that dev_fault_crash needs. */
int dev_fault_wrap(struct dev **out, struct dev *inner, bool crash_mode);
/* From now on, the read (write, flush, discard) after reads_after (writes_after)
 * more ones fails with -err; -1 plans no failure; 0 fails the next one and
 * every one after. */
void dev_fault_fail(struct dev *d, long reads_after, long writes_after, int err);
uint64_t dev_fault_failures(struct dev *d);
/* While held, writes wait inside the device, for tests of what happens
 * meanwhile; releasing lets them go.  dev_fault_wait_held returns once a
 * write is waiting. */
void dev_fault_hold_writes(struct dev *d, bool hold);
void dev_fault_wait_held(struct dev *d);
/* Power loss: after gets (and the device becomes) the durable content plus
 * a random subset of unflushed writes, some torn.  The caller must have
 * stopped every user of the device first.  0 or -errno. */
int dev_fault_crash(struct dev *d, uint64_t *seed, uint8_t *after);

#endif
