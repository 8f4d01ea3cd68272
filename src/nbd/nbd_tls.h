/* nbd_tls.h - NBD over TLS (the NBD_OPT_STARTTLS upgrade), with GnuTLS.
 *
 * The server loads its credentials once (nbd_tls_new): X.509 from a
 * directory laid out as qemu-nbd and nbdkit read it (ca-cert.pem,
 * server-cert.pem, server-key.pem, and ca-crl.pem when present), and/or
 * pre-shared keys from the "username:hexkey" file psktool writes.  A
 * connection that asks for STARTTLS is upgraded in place
 * (nbd_tls_upgrade): the handshake runs on its socket, and from then on
 * the protocol reads and writes through a transport that encrypts; the
 * protocol code does not change.
 *
 * Client certificates: with verify_peer (the default, as qemu-nbd's) an
 * X.509 client must show a certificate that chains to ca-cert.pem: the
 * server's certificate proves the server, the client's proves the client,
 * as a PSK proves both.  Without verify_peer a certificate is still asked
 * for and checked when sent, but a client without one is served
 * (encryption only).  The peer's identity (PSK username or certificate DN)
 * is returned for the log.
 *
 * Threads: one thread receives while another sends (GnuTLS allows exactly
 * that: the connection's reader, and workers that send under send_mu);
 * waking a blocked reader is the socket's shutdown(2), as without TLS. */
#ifndef HS_NBD_TLS_H
#define HS_NBD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "nbd_transport.h"

struct nbd_tls;

/* Credentials from cert_dir and/or psk_file (at least one).  0, or -errno
 * with why naming the file and the cause. */
int nbd_tls_new(struct nbd_tls **out, const char *cert_dir, const char *psk_file,
		bool verify_peer, char *why, size_t whylen);
void nbd_tls_free(struct nbd_tls *tls);
/* "X.509", "PSK" or "X.509 and PSK", for messages. */
const char *nbd_tls_kind(const struct nbd_tls *tls);

/* Runs the server side of the TLS handshake on the socket under raw.  On
 * success *out is a transport through TLS that owns raw from now on, and
 * peer holds who the client proved to be; on failure raw is untouched
 * (the caller still owns it) and why says what went wrong. */
int nbd_tls_upgrade(struct nbd_tls *tls, struct nbd_transport *raw, struct nbd_transport **out,
		    char *peer, size_t peerlen, char *why, size_t whylen);

#endif
