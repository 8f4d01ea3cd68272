/* nbd_tls.h - NBD over TLS: after NBD_OPT_STARTTLS, the connection's
 * stream goes through a TLS session (tls/tls.h) on the same socket, and the
 * protocol reads and writes through it unchanged. */
#ifndef HS_NBD_TLS_H
#define HS_NBD_TLS_H

#include <stddef.h>

#include "nbd_transport.h"
#include "tls/tls.h"

/* Runs the server side of the TLS handshake on the socket under raw.  On
 * success *out is a transport through TLS that owns raw from now on, and
 * peer holds who the client proved to be; on failure raw is untouched
 * (the caller still owns it) and why says what went wrong. */
int nbd_tls_upgrade(struct tls_creds *creds, struct nbd_transport *raw,
		    struct nbd_transport **out, char *peer, size_t peerlen, char *why,
		    size_t whylen);

#endif
