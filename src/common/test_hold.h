/* test_hold.h - a pause point for system tests, without timing.
 *
 * When the daemon runs with HOTSNAP_TEST_HOLD=DIR and DIR/NAME is a FIFO, a
 * job reaching test_hold_point(NAME) opens the FIFO for reading, which
 * blocks until the test opens it for writing: so the test knows the job is
 * exactly here.  It then reads until the test closes its end, and goes on.
 * Without the variable, or without the FIFO, it does nothing.  Used where a
 * test must act while a job runs (a client refused during a restore). */
#ifndef HS_TEST_HOLD_H
#define HS_TEST_HOLD_H

void test_hold_point(const char *name);

#endif
