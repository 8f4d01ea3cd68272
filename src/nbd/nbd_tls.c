/* nbd_tls.c - see nbd_tls.h. */
#include "nbd_tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd_internal.h"

struct nbd_tls {
	gnutls_certificate_credentials_t x509; /* NULL: no certificates */
	gnutls_psk_server_credentials_t psk;   /* NULL: no keys */
	gnutls_priority_t prio;
	bool verify_peer;
};

/* --- credentials ----------------------------------------------------------------- */

/* "WHAT PATH: gnutls's reason" (path may be NULL) */
static int load_fail(char *why, size_t len, int gerr, const char *what, const char *path)
{
	snprintf(why, len, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 gnutls_strerror(gerr));
	return -EINVAL;
}

/* A key others can read is a key others have: say so (the daemon still
 * starts; the administrator decides). */
static void warn_if_readable(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && (st.st_mode & 0077))
		hs_warn("%s can be read by users other than its owner (mode %o): "
			"chmod 600 it", path, st.st_mode & 0777);
}

static int load_x509(struct nbd_tls *tls, const char *dir, char *why, size_t len)
{
	char ca[4096], cert[4096], key[4096], crl[4096];
	int r;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/server-cert.pem", dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", dir);
	snprintf(crl, sizeof(crl), "%s/ca-crl.pem", dir);
	if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
		snprintf(why, len, "--tls-certificates %s needs server-cert.pem and server-key.pem "
				   "(and ca-cert.pem to check client certificates): %s",
			 dir, strerror(errno));
		return -ENOENT;
	}
	if ((r = gnutls_certificate_allocate_credentials(&tls->x509)) < 0)
		return load_fail(why, len, r, "TLS certificate credentials", NULL);
	if (access(ca, R_OK) == 0) {
		if ((r = gnutls_certificate_set_x509_trust_file(tls->x509, ca,
								 GNUTLS_X509_FMT_PEM)) < 0)
			return load_fail(why, len, r, "cannot load the CA certificate", ca);
	} else if (tls->verify_peer) {
		snprintf(why, len, "%s is needed to check client certificates (or "
				   "--tls-no-verify-peer: encryption only, any client reads)", ca);
		return -ENOENT;
	}
	if (access(crl, R_OK) == 0 &&
	    (r = gnutls_certificate_set_x509_crl_file(tls->x509, crl, GNUTLS_X509_FMT_PEM)) < 0)
		return load_fail(why, len, r, "cannot load the revocation list", crl);
	if ((r = gnutls_certificate_set_x509_key_file(tls->x509, cert, key,
						       GNUTLS_X509_FMT_PEM)) < 0)
		return load_fail(why, len, r, "cannot load the server certificate and key from", dir);
	warn_if_readable(key);
	gnutls_certificate_set_known_dh_params(tls->x509, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

static int load_psk(struct nbd_tls *tls, const char *file, char *why, size_t len)
{
	int r;

	if (access(file, R_OK) != 0) {
		snprintf(why, len, "--tls-psk %s: %s (psktool -u NAME -p FILE makes one)", file,
			 strerror(errno));
		return -ENOENT;
	}
	if ((r = gnutls_psk_allocate_server_credentials(&tls->psk)) < 0)
		return load_fail(why, len, r, "TLS PSK credentials", NULL);
	if ((r = gnutls_psk_set_server_credentials_file(tls->psk, file)) < 0)
		return load_fail(why, len, r, "cannot read the keys in", file);
	warn_if_readable(file);
	gnutls_psk_set_server_known_dh_params(tls->psk, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

int nbd_tls_new(struct nbd_tls **out, const char *cert_dir, const char *psk_file,
		bool verify_peer, char *why, size_t whylen)
{
	struct nbd_tls *tls = calloc(1, sizeof(*tls));
	int r = 0;

	*out = NULL;
	if (!tls)
		return -ENOMEM;
	tls->verify_peer = verify_peer;
	if (cert_dir)
		r = load_x509(tls, cert_dir, why, whylen);
	if (r == 0 && psk_file)
		r = load_psk(tls, psk_file, why, whylen);
	if (r == 0 && !tls->x509 && !tls->psk) {
		snprintf(why, whylen, "TLS needs --tls-certificates DIR or --tls-psk FILE");
		r = -EINVAL;
	}
	/* TLS 1.3 and 1.2; PSK suites only when keys are configured.  AES-GCM
	 * first, chosen by the server: GnuTLS's NORMAL let clients pick
	 * ChaCha20, which ran at a tenth of AES-GCM's speed on a CPU with AES
	 * instructions (BENCHMARKS.md, 2026-12-05) */
	if (r == 0) {
		char prio[512];
		snprintf(prio, sizeof(prio),
			 "NORMAL:%%SERVER_PRECEDENCE:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1:"
			 "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:"
			 "+AES-256-CCM%s",
			 tls->psk ? ":+ECDHE-PSK:+DHE-PSK:+PSK" : "");
		int g = gnutls_priority_init(&tls->prio, prio, NULL);
		if (g < 0)
			r = load_fail(why, whylen, g, "TLS priorities", NULL);
	}
	if (r < 0) {
		nbd_tls_free(tls);
		return r;
	}
	*out = tls;
	return 0;
}

void nbd_tls_free(struct nbd_tls *tls)
{
	if (!tls)
		return;
	if (tls->prio)
		gnutls_priority_deinit(tls->prio);
	if (tls->x509)
		gnutls_certificate_free_credentials(tls->x509);
	if (tls->psk)
		gnutls_psk_free_server_credentials(tls->psk);
	free(tls);
}

const char *nbd_tls_kind(const struct nbd_tls *tls)
{
	return tls->x509 && tls->psk ? "X.509 and PSK" : tls->x509 ? "X.509" : "PSK";
}

/* --- the transport ------------------------------------------------------------------ */

struct tls_transport {
	struct nbd_transport t;
	struct nbd_transport *raw; /* the socket; shut down and closed through it */
	gnutls_session_t s;
};

static gnutls_session_t sess(struct nbd_transport *t)
{
	return hs_container_of(t, struct tls_transport, t)->s;
}

static int tls_err(ssize_t g)
{
	switch (g) {
	case GNUTLS_E_AGAIN: /* SO_RCVTIMEO ran out */
		return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
		return -ECONNRESET;
	default:
		return -EPROTO;
	}
}

static int tls_read(struct nbd_transport *t, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = gnutls_record_recv(sess(t), p, len);
		if (n == 0)
			return -ECONNRESET;
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return tls_err(n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_all(gnutls_session_t s, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = gnutls_record_send(s, p, len);
		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue;
		if (n < 0)
			return tls_err(n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Small pieces (a reply header and a short payload) go out as one record;
 * big payloads as they are, so no reply is copied whole. */
static int tls_writev(struct nbd_transport *t, const struct iovec *iov, int iovcnt)
{
	uint8_t small[4096];
	size_t total = 0;
	int r = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total <= sizeof(small)) {
		size_t at = 0;
		for (int i = 0; i < iovcnt; i++) {
			memcpy(small + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		return send_all(sess(t), small, total);
	}
	for (int i = 0; i < iovcnt && r == 0; i++)
		r = send_all(sess(t), iov[i].iov_base, iov[i].iov_len);
	return r;
}

static void tls_shutdown(struct nbd_transport *t)
{
	struct tls_transport *x = hs_container_of(t, struct tls_transport, t);
	x->raw->ops->shutdown(x->raw);
}

static int tls_set_read_timeout(struct nbd_transport *t, unsigned seconds)
{
	struct tls_transport *x = hs_container_of(t, struct tls_transport, t);
	return x->raw->ops->set_read_timeout ? x->raw->ops->set_read_timeout(x->raw, seconds) : 0;
}

static void tls_close(struct nbd_transport *t)
{
	struct tls_transport *x = hs_container_of(t, struct tls_transport, t);
	/* close_notify, best effort: the peer may be gone already */
	(void)gnutls_bye(x->s, GNUTLS_SHUT_WR);
	gnutls_deinit(x->s);
	x->raw->ops->close(x->raw);
	free(x);
}

static const struct nbd_transport_ops tls_ops = {
	.read = tls_read,
	.writev = tls_writev,
	.shutdown = tls_shutdown,
	.set_read_timeout = tls_set_read_timeout,
	.close = tls_close,
};

/* --- the handshake -------------------------------------------------------------------- */

/* Who the client is: its PSK username, or its certificate's DN once the
 * certificate chains to our CA.  0, or -EACCES with why. */
static int check_peer(struct nbd_tls *tls, gnutls_session_t s, char *peer, size_t peerlen,
		      char *why, size_t whylen)
{
	if (gnutls_auth_get_type(s) == GNUTLS_CRD_PSK) {
		const char *user = gnutls_psk_server_get_username(s);
		snprintf(peer, peerlen, "PSK identity '%s'", user ? user : "");
		return 0;
	}
	unsigned n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
	if (!certs || n == 0) {
		if (tls->verify_peer) { /* the handshake refuses this already */
			snprintf(why, whylen, "no client certificate, and one is required");
			return -EACCES;
		}
		snprintf(peer, peerlen, "a client without a certificate");
		return 0;
	}
	unsigned status = 0;
	int g = gnutls_certificate_verify_peers2(s, &status);
	if (g < 0 || status != 0) {
		gnutls_datum_t text = { NULL, 0 };
		if (g >= 0 && gnutls_certificate_verification_status_print(
				      status, GNUTLS_CRT_X509, &text, 0) == 0) {
			snprintf(why, whylen, "client certificate refused: %s", text.data);
			gnutls_free(text.data);
		} else {
			snprintf(why, whylen, "client certificate refused: %s",
				 gnutls_strerror(g < 0 ? g : GNUTLS_E_CERTIFICATE_ERROR));
		}
		return -EACCES;
	}
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn = { NULL, 0 };
	snprintf(peer, peerlen, "a certificate");
	if (gnutls_x509_crt_init(&crt) == 0) {
		if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
		    gnutls_x509_crt_get_dn2(crt, &dn) == 0) {
			snprintf(peer, peerlen, "certificate '%s'", dn.data);
			gnutls_free(dn.data);
		}
		gnutls_x509_crt_deinit(crt);
	}
	return 0;
}

int nbd_tls_upgrade(struct nbd_tls *tls, struct nbd_transport *raw, struct nbd_transport **out,
		    char *peer, size_t peerlen, char *why, size_t whylen)
{
	int fd = nbd_transport_socket_fd(raw);
	gnutls_session_t s;
	int g;

	*out = NULL;
	if (fd < 0) {
		snprintf(why, whylen, "TLS runs over sockets only");
		return -ENOTSUP;
	}
	/* NO_SIGNAL: a client that went away is an error here, not SIGPIPE */
	if ((g = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL)) < 0) {
		snprintf(why, whylen, "%s", gnutls_strerror(g));
		return -ENOMEM;
	}
	gnutls_priority_set(s, tls->prio);
	if (tls->x509) {
		gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, tls->x509);
		gnutls_certificate_server_set_request(s, tls->verify_peer ? GNUTLS_CERT_REQUIRE
									 : GNUTLS_CERT_REQUEST);
	}
	if (tls->psk)
		gnutls_credentials_set(s, GNUTLS_CRD_PSK, tls->psk);
	gnutls_transport_set_int(s, fd);
	gnutls_handshake_set_timeout(s, NBD_HANDSHAKE_TIMEOUT * 1000);
	do
		g = gnutls_handshake(s);
	while (g == GNUTLS_E_INTERRUPTED);
	if (g < 0) {
		snprintf(why, whylen, "TLS handshake failed: %s", gnutls_strerror(g));
		gnutls_deinit(s);
		return -EPROTO;
	}
	if (check_peer(tls, s, peer, peerlen, why, whylen) < 0) {
		gnutls_deinit(s);
		return -EACCES;
	}
	/* what protects the stream, for the log: "(TLS1.3)-(...)-(AES-256-GCM)" */
	char *desc = gnutls_session_get_desc(s);
	if (desc) {
		size_t used = strlen(peer);
		snprintf(peer + used, peerlen - used, " %s", desc);
		gnutls_free(desc);
	}
	struct tls_transport *x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(why, whylen, "out of memory");
		gnutls_deinit(s);
		return -ENOMEM;
	}
	x->t.ops = &tls_ops;
	x->raw = raw;
	x->s = s;
	*out = &x->t;
	return 0;
}
