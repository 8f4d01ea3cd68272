/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static enum hs_log_level min_level = HS_LOG_INFO;
static const char *log_prefix = "hotsnap";
static hs_log_sink_fn log_sink;

void hs_log_set_level(enum hs_log_level level)
{
	min_level = level;
}

void hs_log_set_prefix(const char *prefix)
{
	log_prefix = prefix;
}

void hs_log_set_sink(hs_log_sink_fn sink)
{
	log_sink = sink;
}

/* Under systemd, stderr is a stream into the journal ($JOURNAL_STREAM names
 * it by device and inode): the journal stamps each line itself and reads a
 * "<N>" prefix as the line's syslog priority, so `journalctl -p warning`
 * finds the warnings.  Anywhere else a line carries the date and time. */
bool hs_log_stderr_is_journal(void)
{
	/* asked for each line, not cached: the daemon may point stderr at a
	 * log file (--detach) after its first lines */
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static void vlog(enum hs_log_level level, const struct hs_log_about *about, const char *fmt,
		 va_list ap)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	static const int priority[] = { 7, 6, 4, 3 }; /* syslog's */
	char line[1024], msg[1024];
	struct timespec ts;
	struct tm tm;

	if (level < min_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_sink && log_sink(level, about, log_prefix, msg) == 0)
		return;
	if (hs_log_stderr_is_journal()) {
		snprintf(line, sizeof(line), "<%d>%s %s: %s", priority[level], log_prefix,
			 names[level], msg);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03ld %s %s: %s",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, log_prefix, names[level], msg);
	}
	/* One write per line so lines from several threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}

void hs_log(enum hs_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, NULL, fmt, ap);
	va_end(ap);
}

void hs_log_about(enum hs_log_level level, const struct hs_log_about *about, const char *fmt,
		  ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, about, fmt, ap);
	va_end(ap);
}
