/* nbd_server.c - listeners, the connections' lifecycle, and shutdown.
 *
 * One acceptor thread polls every listening socket and a wake pipe.  Each
 * accepted client gets a connection thread (nbd_conn.c: handshake, reader,
 * workers).  Connections are never detached: a connection thread that ends
 * marks itself done and pokes the wake pipe, and the acceptor joins and
 * frees it; at stop, nbd_server_stop() joins whatever is left.
 *
 * Stop, in order: tell the acceptor to leave and join it (no new clients);
 * close the listeners (unix socket files are removed); kill every live
 * connection - shutdown(2) of its socket, which wakes a reader blocked on an
 * idle client, a client stuck mid-request and a worker blocked sending to a
 * client that stopped reading; then wait for each connection thread to
 * finish, join and free it.  A socket is closed only after its threads are
 * joined, so no thread ever uses a descriptor number that was reused.
 *
 * Bounds: at most NBD_MAX_CONNS connections; more are accepted and closed at
 * once (the client sees the connection end before the greeting). */
#include "nbd_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd_internal.h"
#include "nbd_listen.h"
#include "nbd_tls.h"

struct srv_conn {
	struct nbd_server *srv;
	struct nbd_conn *conn;
	pthread_t thread;
	bool done; /* its thread has finished serving; under srv->mu */
	struct srv_conn *next;
};

struct nbd_server {
	struct nbd_catalog catalog;
	struct nbd_listeners ls;
	struct nbd_policy *policy; /* one per listener, same index */
	char (*where)[160];        /* each listener as "tcp:HOST:PORT", for the log */
	struct tls_creds *tls;     /* NULL: no credentials */
	int wake[2]; /* non-blocking pipe: stop, or a connection ended */
	pthread_t acceptor;

	pthread_mutex_t mu;  /* guards everything below */
	pthread_cond_t gone; /* a connection finished */
	struct srv_conn *conns;
	unsigned nlive;      /* not yet done */
	bool stopping;
};

static void poke(struct nbd_server *srv)
{
	char b = 1;
	/* full pipe: a wake-up is already pending, which is all we need */
	if (write(srv->wake[1], &b, 1) < 0 && errno != EAGAIN)
		hs_warn("nbd: wake pipe: %s", strerror(errno));
}

static void *conn_main(void *arg)
{
	struct srv_conn *sc = arg;
	struct nbd_server *srv = sc->srv;

	nbd_conn_serve(sc->conn);
	pthread_mutex_lock(&srv->mu);
	sc->done = true;
	srv->nlive--;
	pthread_cond_broadcast(&srv->gone);
	pthread_mutex_unlock(&srv->mu);
	poke(srv);
	return NULL;
}

/* Joins and frees finished connections (all of them when stopping). */
static void reap(struct nbd_server *srv)
{
	struct srv_conn *done = NULL;

	pthread_mutex_lock(&srv->mu);
	for (struct srv_conn **pp = &srv->conns; *pp;) {
		struct srv_conn *sc = *pp;
		if (sc->done) {
			*pp = sc->next;
			sc->next = done;
			done = sc;
		} else {
			pp = &sc->next;
		}
	}
	pthread_mutex_unlock(&srv->mu);
	while (done) {
		struct srv_conn *sc = done;
		done = sc->next;
		pthread_join(sc->thread, NULL);
		nbd_conn_free(sc->conn);
		free(sc);
	}
}

static void accept_one(struct nbd_server *srv, size_t li)
{
	int lfd = srv->ls.v[li].fd;
	struct srv_conn *sc;
	struct nbd_transport *t;
	int one = 1;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* out of descriptors: back off instead of spinning */
			struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
			hs_warn("nbd: accept: %s", strerror(errno));
			nanosleep(&ts, NULL);
		}
		return;
	}
	pthread_mutex_lock(&srv->mu);
	bool full = srv->nlive >= NBD_MAX_CONNS;
	pthread_mutex_unlock(&srv->mu);
	if (full) {
		hs_warn("nbd: %u connections already: refusing one more", NBD_MAX_CONNS);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on unix: fine */
	sc = calloc(1, sizeof(*sc));
	t = nbd_transport_socket(fd);
	if (!sc || !t) {
		free(sc);
		if (t)
			t->ops->close(t);
		return;
	}
	sc->srv = srv;
	sc->conn = nbd_conn_new(t, &srv->catalog, NBD_CONN_WORKERS);
	if (!sc->conn) {
		free(sc);
		return;
	}
	nbd_conn_set_policy(sc->conn, &srv->policy[li]);
	pthread_mutex_lock(&srv->mu);
	if (pthread_create(&sc->thread, NULL, conn_main, sc) != 0) {
		pthread_mutex_unlock(&srv->mu);
		hs_warn("nbd: cannot start a connection thread");
		nbd_conn_free(sc->conn);
		free(sc);
		return;
	}
	sc->next = srv->conns;
	srv->conns = sc;
	srv->nlive++;
	pthread_mutex_unlock(&srv->mu);
}

static void *acceptor_main(void *arg)
{
	struct nbd_server *srv = arg;
	size_t n = srv->ls.n;
	struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));

	if (!pfd) {
		hs_error("nbd: out of memory: not accepting clients");
		return NULL;
	}
	pfd[0] = (struct pollfd){ .fd = srv->wake[0], .events = POLLIN };
	for (size_t i = 0; i < n; i++)
		pfd[i + 1] = (struct pollfd){ .fd = srv->ls.v[i].fd, .events = POLLIN };
	for (;;) {
		if (poll(pfd, n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			hs_error("nbd: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents) {
			char drain[64];
			while (read(srv->wake[0], drain, sizeof(drain)) > 0)
				;
			pthread_mutex_lock(&srv->mu);
			bool stopping = srv->stopping;
			pthread_mutex_unlock(&srv->mu);
			if (stopping)
				break;
			reap(srv);
		}
		for (size_t i = 0; i < n; i++)
			if (pfd[i + 1].revents & POLLIN)
				accept_one(srv, i);
	}
	free(pfd);
	return NULL;
}

/* --- policies ------------------------------------------------------------------- */

static void free_policies(struct nbd_server *srv)
{
	free(srv->policy);
	free(srv->where);
	tls_creds_free(srv->tls);
	srv->policy = NULL;
	srv->where = NULL;
	srv->tls = NULL;
}

/* What each listener allows (nbd_server.h says the rules).  0, or -errno
 * with *why naming the listener or the credentials. */
static int set_policies(struct nbd_server *srv, const struct nbd_server_config *cfg,
			const char **why)
{
	static __thread char msg[768];
	char err[512] = "";
	int r;

	srv->policy = calloc(srv->ls.n, sizeof(*srv->policy));
	srv->where = calloc(srv->ls.n, sizeof(*srv->where));
	if (!srv->policy || !srv->where) {
		*why = "nbd: out of memory";
		return -ENOMEM;
	}
	if (cfg->tls_certificates || cfg->tls_psk) {
		r = tls_creds_new(&srv->tls, cfg->tls_certificates, cfg->tls_psk,
				!cfg->tls_anonymous, err, sizeof(err));
		if (r) {
			snprintf(msg, sizeof(msg), "TLS: %s", err);
			*why = msg;
			return r;
		}
	}
	for (size_t i = 0; i < srv->ls.n; i++) {
		struct nbd_listener *l = &srv->ls.v[i];
		struct nbd_policy *p = &srv->policy[i];
		if (l->is_unix)
			snprintf(srv->where[i], sizeof(srv->where[i]), "unix:%s", l->path);
		else
			snprintf(srv->where[i], sizeof(srv->where[i]),
				 l->bracket ? "tcp:[%s]:%u" : "tcp:%s:%u", l->host, l->port);
		p->where = srv->where[i];
		if (cfg->tls_mode != NBD_TLS_OFF)
			p->tls = srv->tls; /* offered wherever there are credentials */
		if (l->is_unix)
			continue; /* the socket file's mode guards it */
		p->volumes_readonly = !cfg->tcp_writable;
		if (cfg->tls_mode == NBD_TLS_OFF)
			continue;
		p->tls_required = cfg->tls_mode != NBD_TLS_ON;
		l->tls = p->tls_required;
		if (!srv->tls) {
			snprintf(msg, sizeof(msg),
				 "%s serves volumes over the network and needs TLS: give "
				 "--tls-psk FILE or --tls-certificates DIR (or --tls off, on a "
				 "trusted network only)",
				 srv->where[i]);
			*why = msg;
			return -EINVAL;
		}
	}
	return 0;
}

int nbd_server_start(struct nbd_server **out, const char *const *listen, size_t nlisten,
		     const struct nbd_catalog *catalog, const struct nbd_server_config *cfg,
		     const char **why)
{
	static const char *dummy;
	struct nbd_server *srv;
	int r;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!out || !listen || nlisten == 0 || !catalog || !catalog->open || !catalog->list) {
		*why = "nbd: no listen address or no catalog";
		return -EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		*why = "nbd: out of memory";
		return -ENOMEM;
	}
	srv->catalog = *catalog;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->gone, NULL);
	if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		r = -errno;
		*why = "nbd: cannot make a pipe";
		goto err_free;
	}
	for (size_t i = 0; i < nlisten; i++) {
		r = nbd_listen_add(&srv->ls, listen[i], why);
		if (r)
			goto err_listen;
	}
	r = set_policies(srv, cfg ? cfg : &(struct nbd_server_config){ 0 }, why);
	if (r)
		goto err_listen;
	r = -pthread_create(&srv->acceptor, NULL, acceptor_main, srv);
	if (r) {
		*why = "nbd: cannot start the acceptor thread";
		goto err_listen;
	}
	*out = srv;
	return 0;

err_listen:
	nbd_listen_close_all(&srv->ls);
	free_policies(srv);
	close(srv->wake[0]);
	close(srv->wake[1]);
err_free:
	pthread_cond_destroy(&srv->gone);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
	return r;
}

void nbd_server_stop(struct nbd_server *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&srv->mu);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->mu);
	poke(srv);
	pthread_join(srv->acceptor, NULL);
	nbd_listen_close_all(&srv->ls);

	pthread_mutex_lock(&srv->mu);
	for (struct srv_conn *sc = srv->conns; sc; sc = sc->next)
		if (!sc->done)
			nbd_conn_kill(sc->conn);
	while (srv->nlive > 0)
		pthread_cond_wait(&srv->gone, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	reap(srv);
	free_policies(srv);

	close(srv->wake[0]);
	close(srv->wake[1]);
	pthread_cond_destroy(&srv->gone);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}

const char *nbd_server_uri(const struct nbd_server *srv, const char *name, char *buf,
			   size_t len)
{
	if (!srv || srv->ls.n == 0 || !name || !buf)
		return NULL;
	return nbd_listen_uri(&srv->ls.v[0], name, buf, len);
}
