/* service.c - see service.h.  libsystemd's sd_notify does the talking (an
 * abstract or path socket, credentials), so this file only decides when. */
#include "daemon/service.h"

#include <stdbool.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/clock.h"

static uint64_t watchdog_usec; /* 0: no watchdog */
static uint64_t last_ping_ns;
static bool probed;

void service_ready(const char *status)
{
	(void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	if (sd_watchdog_enabled(0, &watchdog_usec) <= 0)
		watchdog_usec = 0;
	probed = true;
	last_ping_ns = clock_mono_ns();
}

void service_stopping(void)
{
	(void)sd_notify(0, "STOPPING=1\nSTATUS=stopping: detaching devices");
}

void service_status(const char *status)
{
	(void)sd_notifyf(0, "STATUS=%s", status);
}

void service_watchdog_tick(void)
{
	if (!probed || !watchdog_usec)
		return;
	uint64_t now = clock_mono_ns();
	if (now - last_ping_ns >= watchdog_usec * 1000 / 2) {
		(void)sd_notify(0, "WATCHDOG=1");
		last_ping_ns = now;
	}
}
