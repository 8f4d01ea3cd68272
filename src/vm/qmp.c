/* qmp.c - see qmp.h. */
#include "vm/qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/scm.h"

struct queued {
	json_object *ev;
	struct queued *next;
};

struct qmp {
	int fd;
	pid_t pid;
	char version[64];
	char *buf; /* bytes read but not yet parsed */
	size_t len, cap;
	struct queued *head, *tail;
	unsigned nqueued;
	int reply_ms; /* how long a command's answer may take; 0: no bound */
	int64_t last_id; /* every command carries the next one; QEMU quotes it back */
};

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return r;
}

static void queue_event(struct qmp *q, json_object *ev)
{
	struct queued *e = malloc(sizeof(*e));
	if (!e) {
		json_object_put(ev);
		return;
	}
	e->ev = ev;
	e->next = NULL;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	if (++q->nqueued > QMP_MAX_QUEUED) {
		struct queued *old = q->head;
		q->head = old->next;
		json_object_put(old->ev);
		free(old);
		q->nqueued--;
	}
}

/* The next message, waiting until deadline_ns (0: forever).  0 with *msg,
 * -ETIMEDOUT, -ECONNRESET or -EPROTO. */
static int read_message(struct qmp *q, uint64_t deadline_ns, json_object **msg)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - q->buf) + 1;
			*nl = '\0';
			json_object *o = json_tokener_parse(q->buf);
			memmove(q->buf, q->buf + n, q->len - n);
			q->len -= n;
			if (!o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				return -EPROTO;
			}
			*msg = o;
			return 0;
		}
		if (q->len >= QMP_MAX_LINE)
			return -EPROTO;
		/* every QMP message is a JSON object: anything else is not QEMU
		 * (an NBD server greets with bytes, and no newline to wait for) */
		size_t sp = 0;
		while (sp < q->len && (q->buf[sp] == ' ' || q->buf[sp] == '\r' || q->buf[sp] == '\n'))
			sp++;
		if (sp < q->len && q->buf[sp] != '{')
			return -EPROTO;
		if (q->cap - q->len < 4096) {
			size_t cap = q->cap ? q->cap * 2 : 65536;
			char *b = realloc(q->buf, cap);
			if (!b)
				return -ENOMEM;
			q->buf = b;
			q->cap = cap;
		}
		int wait_ms = -1;
		if (deadline_ns) {
			uint64_t now = clock_mono_ns();
			if (now >= deadline_ns)
				return -ETIMEDOUT;
			wait_ms = (int)((deadline_ns - now) / 1000000u) + 1;
		}
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		int r = poll(&p, 1, wait_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			continue; /* the deadline check above ends it */
		ssize_t got = read(q->fd, q->buf + q->len, q->cap - q->len - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -ECONNRESET;
		q->len += (size_t)got;
	}
}

static int send_line(struct qmp *q, const char *line, int fd)
{
	size_t len = strlen(line), off = 0;
	union scm_one_fd ctl;

	while (off < len) {
		struct iovec iov = { .iov_base = (char *)line + off, .iov_len = len - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (fd >= 0 && off == 0)
			scm_attach_fd(&mh, &ctl, fd);
		ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -ECONNRESET;
		off += (size_t)n;
	}
	return 0;
}

int qmp_open(const char *path, struct qmp **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	json_object *greeting = NULL, *qmp, *v;
	struct qmp *q;
	int r;

	if (stat(path, &st) < 0)
		return fail(err, errlen, -errno, "QMP socket %s: %s (start QEMU with -qmp "
			    "unix:%s,server=on,wait=off)", path, strerror(errno), path);
	if (!S_ISSOCK(st.st_mode))
		return fail(err, errlen, -ENOTSOCK, "%s is not a socket (QEMU's -qmp unix:PATH is "
			    "wanted)", path);
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= (int)sizeof(sa.sun_path))
		return fail(err, errlen, -ENAMETOOLONG, "the QMP socket path %s is too long", path);
	q = calloc(1, sizeof(*q));
	if (!q)
		return fail(err, errlen, -ENOMEM, "out of memory");
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		fail(err, errlen, r, "cannot connect to the QMP socket %s: %s%s", path,
		     strerror(errno), errno == ECONNREFUSED ? " (QEMU is not running?)" : "");
		goto out_free;
	}
	if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
		q->pid = cred.pid;
	r = read_message(q, clock_mono_ns() + QMP_GREETING_MS * 1000000ull, &greeting);
	if (r == -ETIMEDOUT) {
		fail(err, errlen, r, "%s accepted the connection but did not greet in %d s: another "
		     "client holds QEMU's monitor (a QMP socket serves one at a time), or it is "
		     "not QEMU", path, QMP_GREETING_MS / 1000);
		goto out_free;
	}
	if (r < 0 || !json_object_object_get_ex(greeting, "QMP", &qmp)) {
		json_object_put(greeting);
		r = r < 0 && r != -EPROTO ? r : -EPROTO;
		fail(err, errlen, r, "%s does not speak QMP (is it QEMU's -qmp socket?)", path);
		goto out_free;
	}
	if (json_object_object_get_ex(qmp, "version", &v) &&
	    json_object_object_get_ex(v, "qemu", &v)) {
		snprintf(q->version, sizeof(q->version), "%d.%d.%d",
			 json_object_get_int(json_object_object_get(v, "major")),
			 json_object_get_int(json_object_object_get(v, "minor")),
			 json_object_get_int(json_object_object_get(v, "micro")));
	}
	json_object_put(greeting);
	r = qmp_execute(q, "qmp_capabilities", NULL, -1, NULL, err, errlen);
	if (r < 0)
		goto out_free;
	*out = q;
	return 0;
out_free:
	qmp_close(q);
	return r;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	while (q->head) {
		struct queued *e = q->head;
		q->head = e->next;
		json_object_put(e->ev);
		free(e);
	}
	free(q->buf);
	free(q);
}

pid_t qmp_peer_pid(const struct qmp *q)
{
	return q->pid;
}

void qmp_set_reply_timeout(struct qmp *q, int ms)
{
	q->reply_ms = ms > 0 ? ms : 0;
}

const char *qmp_version(const struct qmp *q)
{
	return q->version[0] ? q->version : "unknown";
}

int qmp_execute(struct qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
		char *err, size_t errlen)
{
	json_object *m = json_object_new_object(), *msg, *v;
	int r;

	int64_t id = ++q->last_id;

	json_object_object_add(m, "execute", json_object_new_string(cmd));
	json_object_object_add(m, "id", json_object_new_int64(id));
	if (args)
		json_object_object_add(m, "arguments", args);
	char *line;
	if (asprintf(&line, "%s\n", json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN)) < 0)
		line = NULL;
	json_object_put(m);
	if (!line)
		return fail(err, errlen, -ENOMEM, "out of memory");
	r = send_line(q, line, fd);
	free(line);
	if (r < 0)
		return fail(err, errlen, r, "QEMU closed its monitor (it exited?) before '%s'", cmd);
	uint64_t deadline = q->reply_ms ? clock_mono_ns() + (uint64_t)q->reply_ms * 1000000u : 0;
	for (;;) {
		r = read_message(q, deadline, &msg);
		if (r == -ETIMEDOUT)
			return fail(err, errlen, r, "QEMU did not answer '%s' in %d s (is it hung?)",
				    cmd, q->reply_ms / 1000);
		if (r == -ECONNRESET)
			return fail(err, errlen, r, "QEMU closed its monitor (it exited?) during '%s'",
				    cmd);
		if (r < 0)
			return fail(err, errlen, r, "QEMU's answer to '%s' is not QMP: %s", cmd,
				    strerror(-r));
		if (json_object_object_get_ex(msg, "event", NULL)) {
			queue_event(q, msg);
			continue;
		}
		/* A late answer to a command that timed out quotes that command's
		 * id: it must not pass for this one's.  (A reply without an id is
		 * QEMU's answer to a line it could not parse: ours.) */
		if (json_object_object_get_ex(msg, "id", &v) &&
		    (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != id)) {
			json_object_put(msg);
			continue;
		}
		if (json_object_object_get_ex(msg, "return", &v)) {
			if (ret)
				*ret = json_object_get(v);
			json_object_put(msg);
			return 0;
		}
		if (json_object_object_get_ex(msg, "error", &v)) {
			json_object *desc = json_object_object_get(v, "desc");
			fail(err, errlen, -EIO, "QEMU refused '%s': %s", cmd,
			     desc ? json_object_get_string(desc) : "no reason given");
			json_object_put(msg);
			return -EIO;
		}
		json_object_put(msg); /* something else: not ours */
	}
}

int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, json_object **event,
		   char *err, size_t errlen)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;

	for (struct queued **pp = &q->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
		struct queued *e = *pp;
		if (strcmp(json_object_get_string(json_object_object_get(e->ev, "event")), name))
			continue;
		*event = e->ev;
		*pp = e->next;
		if (q->tail == e)
			q->tail = prev;
		q->nqueued--;
		free(e);
		return 0;
	}
	for (;;) {
		json_object *msg;
		int r = read_message(q, deadline, &msg);
		if (r == -ETIMEDOUT)
			return fail(err, errlen, r, "QEMU sent no %s event in %d s", name,
				    timeout_ms / 1000);
		if (r < 0)
			return fail(err, errlen, -ECONNRESET, "QEMU closed its monitor (it exited?) "
				    "while %s was awaited", name);
		json_object *ev;
		if (json_object_object_get_ex(msg, "event", &ev) &&
		    strcmp(json_object_get_string(ev), name) == 0) {
			*event = msg;
			return 0;
		}
		if (ev)
			queue_event(q, msg);
		else
			json_object_put(msg);
	}
}

uint64_t qmp_event_time_us(json_object *event)
{
	json_object *ts;
	if (!json_object_object_get_ex(event, "timestamp", &ts))
		return 0;
	return (uint64_t)json_object_get_int64(json_object_object_get(ts, "seconds")) * 1000000u +
	       (uint64_t)json_object_get_int64(json_object_object_get(ts, "microseconds"));
}
