/* nbd_server.h - the NBD front end: serves exports to NBD clients.
 *
 * The daemon starts one server with its listen addresses and a catalog that
 * resolves export names.  The server holds the protocol and nothing else:
 * every byte of data goes through export.h. */
#ifndef HS_NBD_SERVER_H
#define HS_NBD_SERVER_H

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

/* listen: "unix:PATH" or "tcp:HOST:PORT" (HOST may be an IPv6 address in
 * brackets).  0 or -errno; on error *why names the address and the cause. */
int nbd_server_start(struct nbd_server **out, const char *const *listen, size_t nlisten,
		     const struct nbd_catalog *catalog, const char **why);
/* Stops listening, ends every connection, frees the server. */
void nbd_server_stop(struct nbd_server *srv);

/* The URI a client uses for export name on the first listen address, e.g.
 * "nbd+unix:///vol0@s1?socket=/var/lib/hotsnap/nbd.sock". */
const char *nbd_server_uri(const struct nbd_server *srv, const char *name, char *buf,
			   size_t len);

#endif
