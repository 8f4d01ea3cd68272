/* service.c - see service.h.  libsystemd's sd_notify does the talking (an
 * abstract or path socket, credentials), so this file only decides when.
 *
 * libsystemd is loaded by the daemon when it starts, not linked: with
 * libgcrypt, liblz4, liblzma and libcap it cost every start of the one
 * binary 1.7 ms, and the CLI starts inside the freeze window of every
 * snapshot a script takes.  Without libsystemd0 (a container, say) the
 * daemon runs as well, with no one to notify and its log on stderr. */
#include "daemon/service.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/uio.h>
/* sd_journal_sendv itself, not a macro adding this file's location */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define SD_FUNCTIONS(X) X(sd_notify) X(sd_notifyf) X(sd_watchdog_enabled) X(sd_journal_sendv)

static struct {
#define SD_ENTRY(name) __typeof__(name) *name;
	SD_FUNCTIONS(SD_ENTRY)
#undef SD_ENTRY
	bool loaded;
} sd;

static pthread_once_t sd_once = PTHREAD_ONCE_INIT;

static void sd_load(void)
{
	void *h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		hs_debug("libsystemd not loaded (%s): no service notification, no journal", dlerror());
		return;
	}
	sd.loaded = true;
#define SD_RESOLVE(name) sd.loaded = sd.loaded && (sd.name = (__typeof__(sd.name))dlsym(h, #name));
	SD_FUNCTIONS(SD_RESOLVE)
#undef SD_RESOLVE
	/* the handle stays open for the process's life: the table points into it */
}

static bool sd_ready(void)
{
	pthread_once(&sd_once, sd_load);
	return sd.loaded;
}

static uint64_t watchdog_usec; /* 0: no watchdog */
static uint64_t last_ping_ns;
static bool probed;

void service_ready(const char *status)
{
	if (!sd_ready())
		return;
	(void)sd.sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	if (sd.sd_watchdog_enabled(0, &watchdog_usec) <= 0)
		watchdog_usec = 0;
	probed = true;
	last_ping_ns = clock_mono_ns();
}

void service_stopping(void)
{
	if (sd_ready())
		(void)sd.sd_notify(0, "STOPPING=1\nSTATUS=stopping: detaching devices");
}

void service_status(const char *status)
{
	if (sd_ready())
		(void)sd.sd_notifyf(0, "STATUS=%s", status);
}

void service_watchdog_tick(void)
{
	if (!probed || !watchdog_usec)
		return;
	uint64_t now = clock_mono_ns();
	if (now - last_ping_ns >= watchdog_usec * 1000 / 2) {
		(void)sd.sd_notify(0, "WATCHDOG=1");
		last_ping_ns = now;
	}
}

/* One journal field as "NAME=value" in buf; the iovec points into buf. */
static void field(struct iovec *iov, int *n, char *buf, size_t len, const char *name,
		  const char *value)
{
	if (!value || !value[0])
		return;
	int w = snprintf(buf, len, "%s=%s", name, value);
	iov[*n].iov_base = buf;
	iov[*n].iov_len = (size_t)w < len ? (size_t)w : len - 1;
	(*n)++;
}

static int journal_sink(enum hs_log_level level, const struct hs_log_about *about,
			const char *prefix, const char *message)
{
	static const char *const prio[] = { "7", "6", "4", "3" }; /* syslog's */
	char b[6][1100];
	struct iovec iov[6];
	int n = 0;

	field(iov, &n, b[0], sizeof(b[0]), "MESSAGE", message);
	field(iov, &n, b[1], sizeof(b[1]), "PRIORITY", prio[level]);
	field(iov, &n, b[2], sizeof(b[2]), "SYSLOG_IDENTIFIER", prefix);
	if (about) {
		field(iov, &n, b[3], sizeof(b[3]), "VOLUME", about->volume);
		field(iov, &n, b[4], sizeof(b[4]), "SNAPSHOT", about->snapshot);
		field(iov, &n, b[5], sizeof(b[5]), "HOTSNAP_EVENT", about->event);
	}
	/* sd_journal_sendv drops a line silently when the journal's socket is
	 * missing; such a line belongs on stderr */
	if (access("/run/systemd/journal/socket", F_OK) != 0)
		return -1;
	return sd.sd_journal_sendv(iov, n) < 0 ? -1 : 0;
}

void service_journal_init(void)
{
	if (hs_log_stderr_is_journal() && sd_ready())
		hs_log_set_sink(journal_sink);
}
