/* control_server.c - the control socket.
 *
 * A unix socket in the state dir, mode 0600, and on every connection the
 * peer's credentials are checked: root, or the owner of the state dir.  One
 * thread per client, at most MAX_CLIENTS at once (the next is told to try
 * again and closed), each with a small stack; a client that stays silent is
 * dropped after IDLE_SECONDS.  Requests are parsed and checked against
 * their schema (proto.c) before any handler sees them, so malformed input
 * gets an error reply and never reaches the registry.  Handlers run under
 * d->mu, except the backup, which locks for itself.
 *
 * Remote clients (control_remote.c) reach the same sessions through a
 * socketpair behind their TLS session; such a session carries the client's
 * identity, runs only what control_remote_allows, and logs each command
 * with who asked. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "control/transport.h"
#include "daemon/commands.h"

#define MAX_CLIENTS 64
#define IDLE_SECONDS 30
#define CLIENT_STACK (1024 * 1024) /* virtual; only what a handler touches is used */

struct ctl_session {
	struct daemon *d;
	int fd;
	struct ctl_reader rd;
	uid_t uid;
	char remote[256]; /* a remote client's identity (control_remote.c); "" when local */
	char line[CONTROL_MAX_LINE + 2];
	struct ctl_session *next; /* in the list of live sessions */
};

static pthread_mutex_t sessions_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sessions_cv = PTHREAD_COND_INITIALIZER;
static struct ctl_session *sessions;
static pthread_t accept_thread;

int ctl_session_take_fd(struct ctl_session *sess)
{
	return ctl_reader_take_fd(&sess->rd);
}

void ctl_session_event(struct ctl_session *sess, json_object *event)
{
	const char *s = json_object_to_json_string_ext(event, JSON_C_TO_STRING_PLAIN);
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "%s\n", s);

	/* A client too slow to read misses an event rather than stalling us. */
	if (n > 0 && (size_t)n < sizeof(buf))
		(void)send(sess->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

bool ctl_session_send_line(struct ctl_session *sess, const char *line)
{
	size_t len = strlen(line);
	struct iovec iov[2] = { { .iov_base = (void *)line, .iov_len = len },
				{ .iov_base = "\n", .iov_len = 1 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	size_t want = len + 1;

	while (want > 0) {
		ssize_t n = sendmsg(sess->fd, &m, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		want -= (size_t)n;
		while (n > 0 && m.msg_iovlen > 0) {
			size_t take = (size_t)n < m.msg_iov[0].iov_len ? (size_t)n : m.msg_iov[0].iov_len;
			m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + take;
			m.msg_iov[0].iov_len -= take;
			n -= (ssize_t)take;
			if (m.msg_iov[0].iov_len == 0) {
				m.msg_iov++;
				m.msg_iovlen--;
			}
		}
	}
	return true;
}

bool ctl_session_gone(struct ctl_session *sess)
{
	struct pollfd p = { .fd = sess->fd, .events = POLLRDHUP };

	if (atomic_load(&sess->d->stopping))
		return true;
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void reply(struct ctl_session *sess, enum cmd_status st, json_object *result,
		  const char *err)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(st == CMD_OK));
	if (st == CMD_OK) {
		json_object_object_add(o, "result", result ? result : json_object_new_object());
	} else {
		json_object_object_add(o, "error", json_object_new_string(err));
		json_object_object_add(o, "usage", json_object_new_boolean(st == CMD_USAGE));
		if (result)
			json_object_put(result);
	}
	(void)ctl_send_json(sess->fd, o, -1);
	json_object_put(o);
}

static void serve_request(struct ctl_session *sess, const char *line, size_t len)
{
	struct daemon *d = sess->d;
	struct ctl_request req;
	json_object *result = NULL;
	char err[1024] = "";
	enum cmd_status st;
	cmd_handler fn;

	if (ctl_request_parse(line, len, &req, err, sizeof(err)) < 0) {
		ctl_reader_close_fd(&sess->rd);
		reply(sess, CMD_USAGE, NULL, err);
		return;
	}
	if (!req.cmd->takes_fd)
		ctl_reader_close_fd(&sess->rd); /* nobody asked for it */
	if (sess->remote[0]) {
		if (!control_remote_allows(req.cmd->name)) {
			hs_warn("remote %s: %s refused (not over the network)", sess->remote,
				req.cmd->name);
			snprintf(err, sizeof(err),
				 "'%s' is not run over the network: it works on paths and devices of "
				 "the daemon's host; run it there (a remote backup pulls over NBD: "
				 "hotsnap backup nbds://HOST/VOLUME@SNAPSHOT)",
				 req.cmd->name);
			reply(sess, CMD_ERROR, NULL, err);
			ctl_request_free(&req);
			return;
		}
		hs_info("remote %s: %s", sess->remote, req.cmd->name);
	}
	fn = commands_find(req.cmd->name);
	if (!fn) {
		snprintf(err, sizeof(err), "command '%s' is not available", req.cmd->name);
		reply(sess, CMD_ERROR, NULL, err);
		ctl_request_free(&req);
		return;
	}
	if (req.cmd->long_running) {
		st = fn(d, &req, sess, &result, err, sizeof(err));
	} else {
		pthread_mutex_lock(&d->mu);
		st = fn(d, &req, sess, &result, err, sizeof(err));
		pthread_mutex_unlock(&d->mu);
	}
	ctl_reader_close_fd(&sess->rd);
	if (st != CMD_OK && !err[0])
		snprintf(err, sizeof(err), "%s failed", req.cmd->name);
	reply(sess, st, result, err);
	ctl_request_free(&req);
}

static void *client_main(void *arg)
{
	struct ctl_session *sess = arg;
	struct daemon *d = sess->d;
	struct timeval tv = { .tv_sec = IDLE_SECONDS };

	/* silent clients, and clients that never read their replies, go */
	setsockopt(sess->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sess->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ctl_reader_init(&sess->rd, sess->fd);
	while (!atomic_load(&d->stopping)) {
		long n = ctl_read_line(&sess->rd, sess->line, sizeof(sess->line));
		if (n == -EMSGSIZE) {
			char err[96];
			snprintf(err, sizeof(err), "request too long (at most %d bytes)",
				 CONTROL_MAX_LINE);
			reply(sess, CMD_USAGE, NULL, err);
			break; /* the rest of the stream cannot be trusted */
		}
		if (n <= 0)
			break; /* end, idle timeout, or error */
		serve_request(sess, sess->line, (size_t)n);
	}
	ctl_reader_close_fd(&sess->rd);

	pthread_mutex_lock(&sessions_mu);
	for (struct ctl_session **pp = &sessions; *pp; pp = &(*pp)->next)
		if (*pp == sess) {
			*pp = sess->next;
			break;
		}
	close(sess->fd);
	atomic_fetch_sub(&d->clients, 1);
	pthread_cond_broadcast(&sessions_cv);
	pthread_mutex_unlock(&sessions_mu);
	free(sess);
	return NULL;
}

static void refuse(int fd, const char *why)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(why));
	json_object_object_add(o, "usage", json_object_new_boolean(0));
	(void)ctl_send_json(fd, o, -1);
	json_object_put(o);
	close(fd);
}

static void start_session(struct daemon *d, int fd, uid_t uid, const char *remote);

static void *accept_main(void *arg)
{
	struct daemon *d = arg;
	struct stat sd;

	while (!atomic_load(&d->stopping)) {
		int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE || errno == ENOMEM) {
				if (errno != EINTR && errno != ECONNABORTED)
					usleep(10000); /* out of descriptors: let some go */
				continue;
			}
			break; /* the socket was shut down */
		}
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		    stat(d->state_dir, &sd) < 0 || (cred.uid != 0 && cred.uid != sd.st_uid)) {
			refuse(fd, "permission denied: only root or the owner of the state dir may "
				   "use this daemon");
			continue;
		}
		start_session(d, fd, cred.uid, "");
	}
	return NULL;
}

/* A session on fd (owned from now on), served by its own thread. */
static void start_session(struct daemon *d, int fd, uid_t uid, const char *remote)
{
	pthread_attr_t attr;
	pthread_t t;

	if (atomic_load(&d->clients) >= MAX_CLIENTS) {
		refuse(fd, "the daemon is busy (too many clients at once); try again");
		return;
	}
	struct ctl_session *sess = calloc(1, sizeof(*sess));
	if (!sess) {
		close(fd);
		return;
	}
	sess->d = d;
	sess->fd = fd;
	sess->uid = uid;
	snprintf(sess->remote, sizeof(sess->remote), "%s", remote);
	pthread_mutex_lock(&sessions_mu);
	sess->next = sessions;
	sessions = sess;
	atomic_fetch_add(&d->clients, 1);
	pthread_mutex_unlock(&sessions_mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, CLIENT_STACK);
	if (pthread_create(&t, &attr, client_main, sess) != 0) {
		pthread_mutex_lock(&sessions_mu);
		for (struct ctl_session **pp = &sessions; *pp; pp = &(*pp)->next)
			if (*pp == sess) {
				*pp = sess->next;
				break;
			}
		atomic_fetch_sub(&d->clients, 1);
		pthread_cond_broadcast(&sessions_cv);
		pthread_mutex_unlock(&sessions_mu);
		refuse(fd, "the daemon cannot start a thread for this client; try again");
		free(sess);
	}
	pthread_attr_destroy(&attr);
}

void control_server_adopt(struct daemon *d, int fd, const char *remote)
{
	start_session(d, fd, 0, remote);
}

int control_server_start(struct daemon *d, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;

	if (strlen(d->control_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "the state dir path is too long for a unix socket");
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, d->control_path);
	d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (d->listen_fd < 0) {
		snprintf(err, errlen, "cannot create the control socket: %s", strerror(errno));
		return -errno;
	}
	unlink(d->control_path); /* a stale socket of a dead daemon (we hold the lock) */
	old = umask(0077);
	int r = bind(d->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || chmod(d->control_path, 0600) < 0 || listen(d->listen_fd, 128) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", d->control_path, strerror(errno));
		close(d->listen_fd);
		d->listen_fd = -1;
		return r;
	}
	r = pthread_create(&accept_thread, NULL, accept_main, d);
	if (r) {
		snprintf(err, errlen, "cannot start the control thread");
		close(d->listen_fd);
		d->listen_fd = -1;
		return -r;
	}
	return 0;
}

void control_server_stop(struct daemon *d)
{
	struct timespec until;

	if (d->listen_fd < 0)
		return;
	shutdown(d->listen_fd, SHUT_RDWR);
	pthread_join(accept_thread, NULL);
	close(d->listen_fd);
	d->listen_fd = -1;
	unlink(d->control_path);
	/* End the clients: their reads return, backups see stopping and cancel. */
	pthread_mutex_lock(&sessions_mu);
	for (struct ctl_session *s = sessions; s; s = s->next)
		shutdown(s->fd, SHUT_RD);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	while (sessions) {
		if (pthread_cond_timedwait(&sessions_cv, &sessions_mu, &until) == ETIMEDOUT) {
			hs_warn("%u control clients did not finish", atomic_load(&d->clients));
			break;
		}
	}
	pthread_mutex_unlock(&sessions_mu);
}
