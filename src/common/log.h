/* log.h - one place where messages leave the program.
 *
 * The layer that knows the context (volume, offset, path) logs an error once;
 * the layers above only return it.  Messages go to stderr with a level
 * prefix; the daemon can redirect them to a file, or (under systemd) hand
 * them to the journal with fields that say what a line is about. */
#ifndef HS_LOG_H
#define HS_LOG_H

#include <stdbool.h>

#include "compiler.h"

enum hs_log_level { HS_LOG_DEBUG, HS_LOG_INFO, HS_LOG_WARN, HS_LOG_ERROR };

void hs_log_set_level(enum hs_log_level level);
void hs_log_set_prefix(const char *prefix);
void hs_log(enum hs_log_level level, const char *fmt, ...) HS_PRINTF(2, 3);

/* What a line is about, for the journal's fields VOLUME=, SNAPSHOT=
 * (VOLUME@NAME) and HOTSNAP_EVENT=, so `journalctl VOLUME=db` finds a
 * volume's lines; any may be NULL. */
struct hs_log_about {
	const char *volume, *snapshot, *event;
};
void hs_log_about(enum hs_log_level level, const struct hs_log_about *about, const char *fmt,
		  ...) HS_PRINTF(3, 4);

/* A writer that takes lines instead of stderr (the daemon's journal
 * writer).  It returns 0 when it took the line; otherwise the line goes to
 * stderr as usual.  Called from any thread. */
typedef int (*hs_log_sink_fn)(enum hs_log_level level, const struct hs_log_about *about,
			      const char *prefix, const char *message);
void hs_log_set_sink(hs_log_sink_fn sink);
/* stderr is a stream into the journal ($JOURNAL_STREAM names it). */
bool hs_log_stderr_is_journal(void);

#define hs_debug(...) hs_log(HS_LOG_DEBUG, __VA_ARGS__)
#define hs_info(...) hs_log(HS_LOG_INFO, __VA_ARGS__)
#define hs_warn(...) hs_log(HS_LOG_WARN, __VA_ARGS__)
#define hs_error(...) hs_log(HS_LOG_ERROR, __VA_ARGS__)

#endif
