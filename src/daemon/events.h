/* events.h - what happens in the daemon, as it happens.
 *
 * One event per line: a type (snapshot.created, snapshot.failed,
 * snapshot.deleted, diff.level, backup.started, backup.done, backup.failed,
 * hook.done, hook.failed, volume.attached, volume.detached), the time, a
 * human message and the fields a program wants.  Each goes to the log and
 * to every `hotsnap events` client; the last EVENTS_KEPT stay for a client
 * that asks for recent ones.
 *
 * events_post may be called from anywhere, the engine's writer path
 * included (with a volume's lock held): it takes only the bus's own lock,
 * never blocks on a client, and a client too slow to keep up loses the
 * oldest events, which it is told (a "missed" count), rather than holding
 * anyone up. */
#ifndef HS_DAEMON_EVENTS_H
#define HS_DAEMON_EVENTS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/compiler.h"
#include "engine/engine.h"

#define EVENTS_KEPT 256

struct daemon;

void events_init(void);
/* Posts an event: fields (may be NULL) is consumed; the message is the
 * human line. */
void events_post(const char *type, json_object *fields, const char *fmt, ...) HS_PRINTF(3, 4);

/* The sequence number the next event will get. */
uint64_t events_next_seq(void);
/* The event numbered *seq (or the oldest still kept, counting what was
 * missed into *missed) as a JSON line, waiting up to timeout_ms for it.
 * Advances *seq.  true when one was copied into buf. */
bool events_wait(uint64_t *seq, uint64_t *missed, char *buf, size_t len, int timeout_ms);
/* Wakes every waiter (shutdown). */
void events_wake_all(void);

/* The engine's callback (volume_config.on_event). */
void events_from_engine(void *arg, const struct volume_event *ev);

#endif
