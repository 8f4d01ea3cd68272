/* qmp.h - a small client of QEMU's machine protocol (QMP) over its unix socket.
 *
 * QMP is JSON lines: a greeting ({"QMP": ...}), then replies ({"return": ...}
 * or {"error": {"class", "desc"}}) in the order of the commands, with events
 * ({"event", "timestamp", "data"}) interleaved anywhere.  Every command
 * carries an "id" that its reply quotes, so the late answer to a command
 * that timed out is dropped rather than taken for the next one's.  Events that arrive
 * while a reply is awaited are queued, so a caller waiting for RESUME after
 * `migrate` sees it even when QEMU sent it before the reply.
 *
 * A QMP socket serves one client at a time: a second one is accepted by the
 * kernel but gets no greeting until the first goes, so opening waits for the
 * greeting at most QMP_GREETING_MS and then names that as the likely cause.
 *
 * Bounds: a line longer than QMP_MAX_LINE closes the session (QEMU's replies
 * here are far smaller); at most QMP_MAX_QUEUED events are kept unread, the
 * oldest dropped first. */
#ifndef HS_VM_QMP_H
#define HS_VM_QMP_H

#include <json-c/json.h>
#include <stdint.h>
#include <sys/types.h>

#define QMP_GREETING_MS 5000
#define QMP_MAX_LINE (4u << 20)
#define QMP_MAX_QUEUED 256

struct qmp;

/* Connects to path, reads the greeting and leaves capabilities negotiation
 * mode.  0, or -errno with err saying what path is not (missing, not a
 * socket, not QEMU, held by another client). */
int qmp_open(const char *path, struct qmp **out, char *err, size_t errlen);
void qmp_close(struct qmp *q);

/* QEMU's process id (the peer of the socket) and its version string. */
pid_t qmp_peer_pid(const struct qmp *q);
const char *qmp_version(const struct qmp *q);

/* Bounds the wait for each command's answer (ms; 0, the default, waits as
 * long as QEMU lives): a QEMU that hangs, e.g. draining a stuck disk on
 * stop, then fails the command with -ETIMEDOUT instead of hanging us. */
void qmp_set_reply_timeout(struct qmp *q, int ms);

/* Runs cmd with args (consumed; NULL for none).  fd >= 0 goes along with it
 * (SCM_RIGHTS), for getfd.  On success *ret (if ret) gets the "return" value,
 * which the caller puts.  -EIO with err = QEMU's words when it refuses;
 * -ECONNRESET when QEMU went away; -ETIMEDOUT past the reply timeout. */
int qmp_execute(struct qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
		char *err, size_t errlen);

/* Waits up to timeout_ms for the event name (queued ones count).  0 with
 * *event (the whole message; the caller puts it), -ETIMEDOUT, or
 * -ECONNRESET. */
int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, json_object **event,
		   char *err, size_t errlen);

/* An event's "timestamp" in microseconds since the epoch (QEMU's clock);
 * 0 when it has none. */
uint64_t qmp_event_time_us(json_object *event);

#endif
