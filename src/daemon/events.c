/* events.c - see events.h.  A ring of the last EVENTS_KEPT events, as the
 * JSON lines clients get, under one mutex; waiters sleep on a condition
 * variable with a timeout so they notice a client that has gone. */
#include "daemon/events.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/units.h"

#define EVENT_LINE_MAX 2048

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static char ring[EVENTS_KEPT][EVENT_LINE_MAX];
static uint64_t next_seq = 1; /* [mu] */

void events_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &a);
	pthread_condattr_destroy(&a);
}

void events_post(const char *type, json_object *fields, const char *fmt, ...)
{
	char msg[1024], stamp[40];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S%z", &tm);

	json_object *o = fields ? fields : json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string(type));
	json_object_object_add(o, "time", json_object_new_string(stamp));
	json_object_object_add(o, "message", json_object_new_string(msg));

	/* what the line is about, for the journal's fields (copied: o is put
	 * before the line is logged) */
	char volume[256] = "", snapshot[512] = "";
	json_object *v;
	if (json_object_object_get_ex(o, "volume", &v) && v)
		snprintf(volume, sizeof(volume), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "snapshot", &v) && v)
		snprintf(snapshot, sizeof(snapshot), "%s", json_object_get_string(v));

	pthread_mutex_lock(&mu);
	json_object_object_add(o, "seq", json_object_new_int64((int64_t)next_seq));
	const char *line = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	snprintf(ring[next_seq % EVENTS_KEPT], EVENT_LINE_MAX, "%s", line);
	next_seq++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	json_object_put(o);

	bool bad = strstr(type, "failed") != NULL;
	struct hs_log_about about = { volume[0] ? volume : NULL, snapshot[0] ? snapshot : NULL,
				      type };
	hs_log_about(bad ? HS_LOG_WARN : HS_LOG_INFO, &about, "event %s: %s", type, msg);
}

uint64_t events_next_seq(void)
{
	pthread_mutex_lock(&mu);
	uint64_t s = next_seq;
	pthread_mutex_unlock(&mu);
	return s;
}

bool events_wait(uint64_t *seq, uint64_t *missed, char *buf, size_t len, int timeout_ms)
{
	struct timespec until = clock_mono_deadline(timeout_ms > 0 ? (unsigned)timeout_ms : 0);
	bool got = false;

	pthread_mutex_lock(&mu);
	while (*seq >= next_seq)
		if (pthread_cond_timedwait(&cv, &mu, &until) != 0)
			break;
	if (*seq < next_seq) {
		if (next_seq - *seq > EVENTS_KEPT) {
			*missed += next_seq - EVENTS_KEPT - *seq;
			*seq = next_seq - EVENTS_KEPT;
		}
		snprintf(buf, len, "%s", ring[*seq % EVENTS_KEPT]);
		(*seq)++;
		got = true;
	}
	pthread_mutex_unlock(&mu);
	return got;
}

void events_wake_all(void)
{
	pthread_mutex_lock(&mu);
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void add_str(json_object *o, const char *k, const char *v)
{
	if (v)
		json_object_object_add(o, k, json_object_new_string(v));
}

void events_from_engine(void *arg, const struct volume_event *ev)
{
	json_object *o = json_object_new_object();
	char held[32], limit[32], full[2 * 128];

	add_str(o, "volume", ev->volume);
	switch (ev->type) {
	case VOLUME_EVENT_SNAPSHOT_FAILED:
		snprintf(full, sizeof(full), "%s@%s", ev->volume, ev->snapshot);
		add_str(o, "snapshot", full);
		add_str(o, "reason", ev->reason);
		events_post("snapshot.failed", o, "snapshot %s failed: %s", full, ev->reason);
		break;
	case VOLUME_EVENT_DIFF_LEVEL:
		json_object_object_add(o, "level_pct", json_object_new_int((int)ev->level_pct));
		json_object_object_add(o, "held_bytes", json_object_new_int64((int64_t)ev->held));
		json_object_object_add(o, "limit_bytes", json_object_new_int64((int64_t)ev->limit));
		units_format_size(ev->held, held, sizeof(held));
		units_format_size(ev->limit, limit, sizeof(limit));
		if (ev->seconds_to_full >= 0) {
			json_object_object_add(o, "seconds_to_full",
					       json_object_new_double(ev->seconds_to_full));
			events_post("diff.level", o,
				    "the diff store of volume %s is past %u%% of its limit (%s of "
				    "%s); full in about %.0f s at the present rate",
				    ev->volume, ev->level_pct, held, limit, ev->seconds_to_full);
		} else {
			events_post("diff.level", o,
				    "the diff store of volume %s is past %u%% of its limit (%s of %s)",
				    ev->volume, ev->level_pct, held, limit);
		}
		break;
	}
}
