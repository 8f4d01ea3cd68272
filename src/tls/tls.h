/* tls.h - TLS sessions over sockets, with GnuTLS: what NBD over TLS
 * (nbd/nbd_tls.c) and the remote control channel (daemon/control_remote.c,
 * cli/remote.c) share.
 *
 * Credentials are the ones qemu-nbd and nbdkit read, so one set of files
 * serves every tool:
 *  - X.509: a directory with ca-cert.pem, and server-cert.pem +
 *    server-key.pem on a server (ca-crl.pem when present), or
 *    client-cert.pem + client-key.pem on a client;
 *  - PSK: the "username:hexkey" file psktool writes (a client uses its
 *    first line).
 * A server with X.509 and verify_peer (the default everywhere) serves only
 * clients whose certificate chains to its CA: the server's certificate
 * proves the server, the client's proves the client, as a PSK proves both.
 * A client checks the server's certificate against its CA and the host name
 * it connected to.
 *
 * AES-GCM is chosen before ChaCha20 by the server: GnuTLS's NORMAL let
 * clients pick ChaCha20, which ran at a tenth of AES-GCM's speed on a CPU
 * with AES instructions (BENCHMARKS.md, 2026-12-05).
 *
 * Threads: one thread may receive while another sends on one session
 * (GnuTLS allows exactly that); waking a blocked one is shutdown(2) of the
 * socket. */
#ifndef HS_TLS_H
#define HS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tls_creds;   /* a server's credentials, loaded once */
struct tls_session; /* one connection */

/* Server credentials from cert_dir and/or psk_file (at least one).  0, or
 * -errno with why naming the file and the cause. */
int tls_creds_new(struct tls_creds **out, const char *cert_dir, const char *psk_file,
		  bool verify_peer, char *why, size_t whylen);
void tls_creds_free(struct tls_creds *c);
/* "X.509", "PSK" or "X.509 and PSK", for messages. */
const char *tls_creds_kind(const struct tls_creds *c);

/* The server side of the handshake on the connected socket fd (not owned:
 * the session never closes it).  0 with *out and peer ("PSK identity
 * 'NAME'" or "certificate 'DN'"); or -errno with why. */
int tls_accept(struct tls_creds *c, int fd, unsigned timeout_s, struct tls_session **out,
	       char *peer, size_t peerlen, char *why, size_t whylen);

/* What a client proves itself with: a PSK file, or a directory of
 * certificates (one of the two). */
struct tls_client_opts {
	const char *psk_file;
	const char *cert_dir;
};
/* Connects to "HOST:PORT" ("[v6]:PORT") over TCP and runs the client side
 * of the handshake.  0 with *out (whose socket tls_session_free closes),
 * or -errno with why. */
int tls_connect(const char *hostport, const struct tls_client_opts *o, struct tls_session **out,
		char *why, size_t whylen);

/* What a read got: > 0 bytes; 0 at the peer's end of stream; -ETIMEDOUT
 * when SO_RCVTIMEO ran out; -ECONNRESET when the stream broke; -EPROTO. */
ssize_t tls_recv(struct tls_session *s, void *buf, size_t len);
/* The whole of buf, or -errno. */
int tls_send_all(struct tls_session *s, const void *buf, size_t len);
/* The protocol and cipher, for the log: "(TLS1.3)-(...)-(AES-128-GCM)". */
const char *tls_session_desc(struct tls_session *s, char *buf, size_t len);
/* Says goodbye (close_notify, best effort) and frees; closes the socket
 * only when tls_connect opened it. */
void tls_session_free(struct tls_session *s);

/* Copies both ways between the session and a plain socket until either
 * side ends; then shuts the plain socket's writing side.  For a stream of
 * lines that some local code reads and writes unchanged. */
void tls_pump(struct tls_session *s, int plain_fd);

#endif
