/* nbd_server.h - the NBD front end: serves exports to NBD clients.
 *
 * The daemon starts one server with its listen addresses and a catalog that
 * resolves export names.  The server holds the protocol and nothing else:
 * every byte of data goes through export.h. */
#ifndef HS_NBD_SERVER_H
#define HS_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "export/export.h"

struct nbd_server;

struct nbd_catalog {
	/* Opens the export called name ("VOLUME" or "VOLUME@SNAPSHOT").  NULL
	 * when there is none; then *why says why, for the client's error text. */
	struct export *(*open)(void *ctx, const char *name, const char **why);
	/* Calls fn once per export that can be opened now. */
	void (*list)(void *ctx,
		     void (*fn)(void *arg, const char *name, const char *description),
		     void *arg);
	void *ctx;
};

enum nbd_tls_mode {
	NBD_TLS_DEFAULT, /* TCP: require; unix: offered when credentials exist */
	NBD_TLS_OFF,     /* never: STARTTLS is refused */
	NBD_TLS_ON,      /* offered, not required */
	NBD_TLS_REQUIRE, /* on TCP, nothing but STARTTLS before TLS */
};

/* How the server treats its clients.  TLS applies to TCP listeners as the
 * mode says; a unix socket is guarded by its file mode (0600) and never
 * requires TLS, but offers it when credentials are given.  A TCP listener
 * that would need TLS without credentials is refused at start: plain text
 * over a network is only ever asked for (--tls off). */
struct nbd_server_config {
	enum nbd_tls_mode tls_mode;
	const char *tls_certificates; /* a directory (nbd_tls.h), or NULL */
	const char *tls_psk;          /* a psktool file, or NULL */
	bool tls_anonymous;           /* X.509 clients need no certificate of their
				       * own (encryption only: anyone who reaches
				       * the port reads); else one signed by the CA */
	bool tcp_writable;            /* volumes writable over TCP too */
};

/* listen: "unix:PATH" or "tcp:HOST:PORT" (HOST may be an IPv6 address in
 * brackets); cfg NULL: all defaults, no TLS.  0 or -errno; on error *why
 * names the address (or the credentials) and the cause. */
int nbd_server_start(struct nbd_server **out, const char *const *listen, size_t nlisten,
		     const struct nbd_catalog *catalog, const struct nbd_server_config *cfg,
		     const char **why);
/* Stops listening, ends every connection, frees the server. */
void nbd_server_stop(struct nbd_server *srv);

/* The URI a client uses for export name on the first listen address, e.g.
 * "nbd+unix:///vol0@s1?socket=/var/lib/hotsnap/nbd.sock". */
const char *nbd_server_uri(const struct nbd_server *srv, const char *name, char *buf,
			   size_t len);

#endif
