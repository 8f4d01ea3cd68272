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

void hs_log_set_level(enum hs_log_level level)
{
	min_level = level;
}

void hs_log_set_prefix(const char *prefix)
{
	log_prefix = prefix;
}

/* Under systemd, stderr is a stream into the journal ($JOURNAL_STREAM names
 * it by device and inode): the journal stamps each line itself and reads a
 * "<N>" prefix as the line's syslog priority, so `journalctl -p warning`
 * finds the warnings.  Anywhere else a line carries the date and time. */
static bool stderr_is_journal(void)
{
	static int known = -1;
	if (known < 0) {
		const char *js = getenv("JOURNAL_STREAM");
		unsigned long long dev, ino;
		struct stat st;
		known = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
			(unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	}
	return known;
}

void hs_log(enum hs_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	static const int priority[] = { 7, 6, 4, 3 }; /* syslog's */
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level < min_level)
		return;
	if (stderr_is_journal()) {
		n = snprintf(line, sizeof(line), "<%d>%s %s: ", priority[level], log_prefix,
			     names[level]);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03ld %s %s: ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, log_prefix, names[level]);
	}
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines from several threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}
