/* control_remote.c - the control channel over the network, always in TLS.
 *
 * `daemon --control tcp:HOST:PORT` listens with the daemon's TLS
 * credentials (the same --tls-psk / --tls-certificates as NBD); without
 * them the daemon does not start.  Each connection gets a thread that runs
 * the TLS handshake, makes a socketpair, hands one end to the control
 * server as a session that carries the client's identity
 * (control_server_adopt), and pumps bytes between the TLS session and the
 * other end.  So the control protocol, its parser and its handlers are the
 * very ones local clients use; what differs is only what a remote session
 * may run (control_remote_allows) and that each command is logged with who
 * asked.  The client side is cli/remote.c.
 *
 * Bounds: at most MAX_REMOTE connections at once (more are closed at
 * accept); a client has HANDSHAKE_SECONDS to finish the TLS handshake. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/daemon.h"
#include "nbd/nbd_listen.h"
#include "tls/tls.h"

#define MAX_REMOTE 16
#define HANDSHAKE_SECONDS 30

struct remote_conn {
	struct control_remote *cr;
	int fd;
	pthread_t thread;
	bool done; /* [cr->mu] */
	struct remote_conn *next;
};

struct control_remote {
	struct daemon *d;
	struct tls_creds *creds;
	struct nbd_listeners ls;
	int wake[2];
	pthread_t acceptor;
	pthread_mutex_t mu;
	struct remote_conn *conns; /* [mu] */
	unsigned nlive;            /* [mu] */
	bool stopping;             /* [mu] */
};

static const char *const allowed[] = {
	"status",	 "events",	    "volume.list",   "snapshot.create", "snapshot.list",
	"snapshot.delete", "bookmark.list", "bookmark.create", "bookmark.delete", "image.list",
};

bool control_remote_allows(const char *cmd)
{
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(allowed[i], cmd) == 0)
			return true;
	return false;
}

static void *conn_main(void *arg)
{
	struct remote_conn *rc = arg;
	struct control_remote *cr = rc->cr;
	struct tls_session *s = NULL;
	char peer[256], why[512];
	int sp[2];

	if (tls_accept(cr->creds, rc->fd, HANDSHAKE_SECONDS, &s, peer, sizeof(peer), why,
		       sizeof(why)) < 0) {
		hs_warn("remote control: a client was refused: %s", why);
	} else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		hs_warn("remote control: socketpair: %s", strerror(errno));
	} else {
		char desc[128];
		hs_info("remote control: %s connected %s", peer,
			tls_session_desc(s, desc, sizeof(desc)));
		control_server_adopt(cr->d, sp[0], peer);
		tls_pump(s, sp[1]);
		close(sp[1]);
	}
	tls_session_free(s);
	pthread_mutex_lock(&cr->mu);
	rc->done = true;
	cr->nlive--;
	pthread_mutex_unlock(&cr->mu);
	if (write(cr->wake[1], "x", 1) < 0) {
		/* a wake-up is pending anyway */
	}
	return NULL;
}

/* Joins and frees the connections that ended. */
static void reap(struct control_remote *cr, bool all)
{
	for (;;) {
		struct remote_conn *done = NULL;
		pthread_mutex_lock(&cr->mu);
		for (struct remote_conn **pp = &cr->conns; *pp; pp = &(*pp)->next)
			if ((*pp)->done || all) {
				done = *pp;
				*pp = done->next;
				break;
			}
		pthread_mutex_unlock(&cr->mu);
		if (!done)
			return;
		pthread_join(done->thread, NULL);
		close(done->fd);
		free(done);
	}
}

static void accept_one(struct control_remote *cr, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct remote_conn *rc = calloc(1, sizeof(*rc));
	pthread_mutex_lock(&cr->mu);
	if (!rc || cr->nlive >= MAX_REMOTE) {
		pthread_mutex_unlock(&cr->mu);
		hs_warn("remote control: %u clients already: refusing one more", MAX_REMOTE);
		free(rc);
		close(fd);
		return;
	}
	rc->cr = cr;
	rc->fd = fd;
	if (pthread_create(&rc->thread, NULL, conn_main, rc) != 0) {
		pthread_mutex_unlock(&cr->mu);
		free(rc);
		close(fd);
		return;
	}
	rc->next = cr->conns;
	cr->conns = rc;
	cr->nlive++;
	pthread_mutex_unlock(&cr->mu);
}

static void *acceptor_main(void *arg)
{
	struct control_remote *cr = arg;
	struct pollfd p[1 + DAEMON_MAX_CONTROL * 4];
	size_t n = 1;

	p[0] = (struct pollfd){ .fd = cr->wake[0], .events = POLLIN };
	for (size_t i = 0; i < cr->ls.n && n < sizeof(p) / sizeof(p[0]); i++)
		p[n++] = (struct pollfd){ .fd = cr->ls.v[i].fd, .events = POLLIN };
	for (;;) {
		if (poll(p, n, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			char drain[64];
			while (read(cr->wake[0], drain, sizeof(drain)) > 0)
				;
			pthread_mutex_lock(&cr->mu);
			bool stopping = cr->stopping;
			pthread_mutex_unlock(&cr->mu);
			if (stopping)
				break;
			reap(cr, false);
		}
		for (size_t i = 1; i < n; i++)
			if (p[i].revents & POLLIN)
				accept_one(cr, p[i].fd);
	}
	return NULL;
}

int control_remote_start(struct daemon *d, char *err, size_t errlen)
{
	const struct nbd_server_config *c = &d->nbd_cfg;
	struct control_remote *cr;
	char why[512] = "";
	const char *lwhy = NULL;
	int r;

	if (d->control_nlisten == 0)
		return 0;
	if (!c->tls_certificates && !c->tls_psk) {
		snprintf(err, errlen, "--control %s runs the daemon's commands over the network "
				      "and needs TLS: give --tls-psk FILE or --tls-certificates DIR",
			 d->control_listen[0]);
		return -EINVAL;
	}
	cr = calloc(1, sizeof(*cr));
	if (!cr || pipe2(cr->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(cr);
		snprintf(err, errlen, "remote control: out of resources");
		return -ENOMEM;
	}
	cr->d = d;
	pthread_mutex_init(&cr->mu, NULL);
	r = tls_creds_new(&cr->creds, c->tls_certificates, c->tls_psk, !c->tls_anonymous, why,
			  sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "remote control: TLS: %s", why);
		goto fail;
	}
	for (size_t i = 0; i < d->control_nlisten && r == 0; i++) {
		if (strncmp(d->control_listen[i], "tcp:", 4) != 0) {
			snprintf(err, errlen, "--control %s: expected tcp:HOST:PORT (the local "
					      "control socket is always there)",
				 d->control_listen[i]);
			r = -EINVAL;
		} else if ((r = nbd_listen_add(&cr->ls, d->control_listen[i], &lwhy)) < 0) {
			snprintf(err, errlen, "--control %s", lwhy ? lwhy : d->control_listen[i]);
		}
	}
	if (r == 0 && (r = -pthread_create(&cr->acceptor, NULL, acceptor_main, cr)) < 0)
		snprintf(err, errlen, "remote control: cannot start its thread");
	if (r < 0)
		goto fail;
	d->remote = cr;
	for (size_t i = 0; i < cr->ls.n; i++)
		hs_info("remote control on tcp:%s:%u (TLS, %s)", cr->ls.v[i].host, cr->ls.v[i].port,
			tls_creds_kind(cr->creds));
	return 0;
fail:
	nbd_listen_close_all(&cr->ls);
	tls_creds_free(cr->creds);
	close(cr->wake[0]);
	close(cr->wake[1]);
	pthread_mutex_destroy(&cr->mu);
	free(cr);
	return r;
}

void control_remote_stop(struct daemon *d)
{
	struct control_remote *cr = d->remote;

	if (!cr)
		return;
	pthread_mutex_lock(&cr->mu);
	cr->stopping = true;
	/* wake every pump: the TLS side reads end, the sessions see EOF */
	for (struct remote_conn *rc = cr->conns; rc; rc = rc->next)
		shutdown(rc->fd, SHUT_RDWR);
	pthread_mutex_unlock(&cr->mu);
	if (write(cr->wake[1], "x", 1) < 0) {
		/* pending anyway */
	}
	pthread_join(cr->acceptor, NULL);
	nbd_listen_close_all(&cr->ls);
	reap(cr, true);
	tls_creds_free(cr->creds);
	close(cr->wake[0]);
	close(cr->wake[1]);
	pthread_mutex_destroy(&cr->mu);
	free(cr);
	d->remote = NULL;
}
