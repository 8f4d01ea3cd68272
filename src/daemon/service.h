/* service.h - the daemon under systemd (Type=notify): it says READY only
 * once every volume that should be attached is served and named, STOPPING
 * when it begins to stop, and pings the watchdog while its threads turn.
 * Without NOTIFY_SOCKET (run by hand, or by a test) every call is a no-op. */
#ifndef HS_DAEMON_SERVICE_H
#define HS_DAEMON_SERVICE_H

#include <stdint.h>

void service_ready(const char *status);
void service_stopping(void);
void service_status(const char *status);
/* Called about once a second; pings at half the watchdog interval. */
void service_watchdog_tick(void);
/* When stderr is the journal's stream, log lines go to the journal as
 * entries with PRIORITY= and the fields of log.h's hs_log_about (VOLUME=,
 * SNAPSHOT=, HOTSNAP_EVENT=); a line the journal refuses goes to stderr. */
void service_journal_init(void);

#endif
