/* nbd_listen.h - listening sockets from "unix:PATH" and "tcp:HOST:PORT". */
#ifndef HS_NBD_LISTEN_H
#define HS_NBD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct nbd_listener {
	int fd;
	bool is_unix;
	char *path;     /* unix: the socket file we made */
	dev_t dev;      /* ... and its identity, so stop removes only ours */
	ino_t ino;
	char *host;     /* tcp: the host as given, without brackets */
	bool bracket;   /* tcp: an IPv6 literal, bracketed in URIs */
	unsigned port;  /* tcp: the bound port (a given 0 becomes the real one) */
	bool tls;       /* clients must use TLS: URIs say nbds:// */
};

struct nbd_listeners {
	struct nbd_listener *v;
	size_t n;
};

/* Opens the listener(s) for one address (a host name may resolve to several
 * addresses: each gets a socket).  0 or -errno with *why set (static,
 * per-thread storage). */
int nbd_listen_add(struct nbd_listeners *ls, const char *addr, const char **why);
/* Closes every listener and removes the unix socket files still ours. */
void nbd_listen_close_all(struct nbd_listeners *ls);
/* The client URI for export name on listener l; NULL when buf is too small. */
const char *nbd_listen_uri(const struct nbd_listener *l, const char *name, char *buf,
			   size_t len);

#endif
