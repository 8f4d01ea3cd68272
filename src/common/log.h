/* log.h - one place where messages leave the program.
 *
 * The layer that knows the context (volume, offset, path) logs an error once;
 * the layers above only return it.  Messages go to stderr with a level
 * prefix; the daemon can redirect them to a file. */
#ifndef HS_LOG_H
#define HS_LOG_H

#include "compiler.h"

enum hs_log_level { HS_LOG_DEBUG, HS_LOG_INFO, HS_LOG_WARN, HS_LOG_ERROR };

void hs_log_set_level(enum hs_log_level level);
void hs_log_set_prefix(const char *prefix);
void hs_log(enum hs_log_level level, const char *fmt, ...) HS_PRINTF(2, 3);

#define hs_debug(...) hs_log(HS_LOG_DEBUG, __VA_ARGS__)
#define hs_info(...) hs_log(HS_LOG_INFO, __VA_ARGS__)
#define hs_warn(...) hs_log(HS_LOG_WARN, __VA_ARGS__)
#define hs_error(...) hs_log(HS_LOG_ERROR, __VA_ARGS__)

#endif
