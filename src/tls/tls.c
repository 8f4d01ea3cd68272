/* tls.c - see tls.h. */
#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "tls/gnutls_load.h"

struct tls_creds {
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
		 gtls.strerror(gerr));
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

static int load_x509(struct tls_creds *tls, const char *dir, char *why, size_t len)
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
	if ((r = gtls.certificate_allocate_credentials(&tls->x509)) < 0)
		return load_fail(why, len, r, "TLS certificate credentials", NULL);
	if (access(ca, R_OK) == 0) {
		if ((r = gtls.certificate_set_x509_trust_file(tls->x509, ca,
								 GNUTLS_X509_FMT_PEM)) < 0)
			return load_fail(why, len, r, "cannot load the CA certificate", ca);
	} else if (tls->verify_peer) {
		snprintf(why, len, "%s is needed to check client certificates (or "
				   "--tls-no-verify-peer: encryption only, any client reads)", ca);
		return -ENOENT;
	}
	if (access(crl, R_OK) == 0 &&
	    (r = gtls.certificate_set_x509_crl_file(tls->x509, crl, GNUTLS_X509_FMT_PEM)) < 0)
		return load_fail(why, len, r, "cannot load the revocation list", crl);
	if ((r = gtls.certificate_set_x509_key_file(tls->x509, cert, key,
						       GNUTLS_X509_FMT_PEM)) < 0)
		return load_fail(why, len, r, "cannot load the server certificate and key from", dir);
	warn_if_readable(key);
	gtls.certificate_set_known_dh_params(tls->x509, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

static int load_psk(struct tls_creds *tls, const char *file, char *why, size_t len)
{
	int r;

	if (access(file, R_OK) != 0) {
		snprintf(why, len, "--tls-psk %s: %s (psktool -u NAME -p FILE makes one)", file,
			 strerror(errno));
		return -ENOENT;
	}
	if ((r = gtls.psk_allocate_server_credentials(&tls->psk)) < 0)
		return load_fail(why, len, r, "TLS PSK credentials", NULL);
	if ((r = gtls.psk_set_server_credentials_file(tls->psk, file)) < 0)
		return load_fail(why, len, r, "cannot read the keys in", file);
	warn_if_readable(file);
	gtls.psk_set_server_known_dh_params(tls->psk, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

int tls_creds_new(struct tls_creds **out, const char *cert_dir, const char *psk_file,
		bool verify_peer, char *why, size_t whylen)
{
	struct tls_creds *tls = calloc(1, sizeof(*tls));
	int r = 0;

	*out = NULL;
	if (!tls)
		return -ENOMEM;
	if (gnutls_load(why, whylen) < 0) {
		free(tls);
		return -ENOPKG;
	}
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
		int g = gtls.priority_init(&tls->prio, prio, NULL);
		if (g < 0)
			r = load_fail(why, whylen, g, "TLS priorities", NULL);
	}
	if (r < 0) {
		tls_creds_free(tls);
		return r;
	}
	*out = tls;
	return 0;
}

void tls_creds_free(struct tls_creds *tls)
{
	if (!tls)
		return;
	if (tls->prio)
		gtls.priority_deinit(tls->prio);
	if (tls->x509)
		gtls.certificate_free_credentials(tls->x509);
	if (tls->psk)
		gtls.psk_free_server_credentials(tls->psk);
	free(tls);
}

const char *tls_creds_kind(const struct tls_creds *tls)
{
	return tls->x509 && tls->psk ? "X.509 and PSK" : tls->x509 ? "X.509" : "PSK";
}

/* --- sessions ------------------------------------------------------------------------ */

struct tls_session {
	gnutls_session_t s;
	int fd;
	bool own_fd; /* tls_connect opened it */
	gnutls_certificate_credentials_t x509; /* a client's own, freed with it */
	gnutls_psk_client_credentials_t psk;
};

static void session_free_parts(struct tls_session *t)
{
	if (t->s)
		gtls.deinit(t->s);
	if (t->x509)
		gtls.certificate_free_credentials(t->x509);
	if (t->psk)
		gtls.psk_free_client_credentials(t->psk);
	if (t->own_fd && t->fd >= 0)
		close(t->fd);
	free(t);
}

static int err_of(ssize_t g)
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

ssize_t tls_recv(struct tls_session *t, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = gtls.record_recv(t->s, buf, len);
		if (n >= 0)
			return n;
		if (n != GNUTLS_E_INTERRUPTED)
			return err_of(n);
	}
}

int tls_send_all(struct tls_session *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = gtls.record_send(t->s, p, len);
		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue;
		if (n < 0)
			return err_of(n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Bytes already decrypted and waiting, which poll(2) cannot see. */
static size_t tls_pending(struct tls_session *t)
{
	return gtls.record_check_pending(t->s);
}

void tls_session_free(struct tls_session *t)
{
	if (!t)
		return;
	(void)gtls.bye(t->s, GNUTLS_SHUT_WR); /* best effort: the peer may be gone */
	session_free_parts(t);
}

const char *tls_session_desc(struct tls_session *t, char *buf, size_t len)
{
	char *desc = gtls.session_get_desc(t->s);
	snprintf(buf, len, "%s", desc ? desc : "TLS");
	(*gtls.free)(desc);
	return buf;
}

/* --- the server's handshake ------------------------------------------------------------- */

/* Who the client is: its PSK username, or its certificate's DN once the
 * certificate chains to our CA.  0, or -EACCES with why. */
static int check_peer(struct tls_creds *tls, gnutls_session_t s, char *peer, size_t peerlen,
		      char *why, size_t whylen)
{
	if (gtls.auth_get_type(s) == GNUTLS_CRD_PSK) {
		const char *user = gtls.psk_server_get_username(s);
		snprintf(peer, peerlen, "PSK identity '%s'", user ? user : "");
		return 0;
	}
	unsigned n = 0;
	const gnutls_datum_t *certs = gtls.certificate_get_peers(s, &n);
	if (!certs || n == 0) {
		if (tls->verify_peer) { /* the handshake refuses this already */
			snprintf(why, whylen, "no client certificate, and one is required");
			return -EACCES;
		}
		snprintf(peer, peerlen, "a client without a certificate");
		return 0;
	}
	unsigned status = 0;
	int g = gtls.certificate_verify_peers2(s, &status);
	if (g < 0 || status != 0) {
		gnutls_datum_t text = { NULL, 0 };
		if (g >= 0 && gtls.certificate_verification_status_print(
				      status, GNUTLS_CRT_X509, &text, 0) == 0) {
			snprintf(why, whylen, "client certificate refused: %s", text.data);
			(*gtls.free)(text.data);
		} else {
			snprintf(why, whylen, "client certificate refused: %s",
				 gtls.strerror(g < 0 ? g : GNUTLS_E_CERTIFICATE_ERROR));
		}
		return -EACCES;
	}
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn = { NULL, 0 };
	snprintf(peer, peerlen, "a certificate");
	if (gtls.x509_crt_init(&crt) == 0) {
		if (gtls.x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
		    gtls.x509_crt_get_dn2(crt, &dn) == 0) {
			snprintf(peer, peerlen, "certificate '%s'", dn.data);
			(*gtls.free)(dn.data);
		}
		gtls.x509_crt_deinit(crt);
	}
	return 0;
}

int tls_accept(struct tls_creds *c, int fd, unsigned timeout_s, struct tls_session **out,
	       char *peer, size_t peerlen, char *why, size_t whylen)
{
	struct tls_session *t = calloc(1, sizeof(*t));
	int g;

	*out = NULL;
	if (!t) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	t->fd = fd;
	/* NO_SIGNAL: a peer that went away is an error here, not SIGPIPE */
	if ((g = gtls.init(&t->s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL)) < 0) {
		snprintf(why, whylen, "%s", gtls.strerror(g));
		t->s = NULL;
		session_free_parts(t);
		return -ENOMEM;
	}
	gtls.priority_set(t->s, c->prio);
	if (c->x509) {
		gtls.credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509);
		gtls.certificate_server_set_request(t->s, c->verify_peer ? GNUTLS_CERT_REQUIRE
									  : GNUTLS_CERT_REQUEST);
	}
	if (c->psk)
		gtls.credentials_set(t->s, GNUTLS_CRD_PSK, c->psk);
	gtls.transport_set_int2(t->s, fd, fd);
	gtls.handshake_set_timeout(t->s, timeout_s * 1000);
	do
		g = gtls.handshake(t->s);
	while (g == GNUTLS_E_INTERRUPTED);
	if (g < 0) {
		snprintf(why, whylen, "TLS handshake failed: %s", gtls.strerror(g));
		session_free_parts(t);
		return -EPROTO;
	}
	if (check_peer(c, t->s, peer, peerlen, why, whylen) < 0) {
		session_free_parts(t);
		return -EACCES;
	}
	*out = t;
	return 0;
}

/* --- the client ------------------------------------------------------------------------- */

/* The first "username:hexkey" line of a psktool file. */
static int load_client_psk(struct tls_session *t, const char *file, char *why, size_t whylen)
{
	char line[1024];
	FILE *f = fopen(file, "re");
	int g;

	if (!f) {
		snprintf(why, whylen, "--tls-psk %s: %s", file, strerror(errno));
		return -errno;
	}
	bool got = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	char *colon = got ? strchr(line, ':') : NULL;
	if (!colon) {
		snprintf(why, whylen, "--tls-psk %s: no username:hexkey line (psktool writes "
				      "one)", file);
		return -EINVAL;
	}
	*colon = '\0';
	char *key = colon + 1;
	key[strcspn(key, "\r\n")] = '\0';
	gnutls_datum_t k = { (unsigned char *)key, (unsigned)strlen(key) };
	if ((g = gtls.psk_allocate_client_credentials(&t->psk)) < 0 ||
	    (g = gtls.psk_set_client_credentials(t->psk, line, &k, GNUTLS_PSK_KEY_HEX)) < 0) {
		snprintf(why, whylen, "--tls-psk %s: %s", file, gtls.strerror(g));
		return -EINVAL;
	}
	return 0;
}

static int load_client_x509(struct tls_session *t, const char *dir, char *why, size_t whylen)
{
	char ca[4096], cert[4096], key[4096];
	int g;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/client-cert.pem", dir);
	snprintf(key, sizeof(key), "%s/client-key.pem", dir);
	if ((g = gtls.certificate_allocate_credentials(&t->x509)) < 0)
		return load_fail(why, whylen, g, "TLS certificate credentials", NULL);
	if ((g = gtls.certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM)) < 0)
		return load_fail(why, whylen, g, "cannot load the CA certificate", ca);
	if (access(cert, R_OK) == 0 &&
	    (g = gtls.certificate_set_x509_key_file(t->x509, cert, key,
						       GNUTLS_X509_FMT_PEM)) < 0)
		return load_fail(why, whylen, g, "cannot load the client certificate and key from",
				 dir);
	return 0;
}

static int dial(const char *hostport, char *host, size_t hostlen, char *why, size_t whylen)
{
	char port[16];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, g;

	if (!colon || colon == hostport || !colon[1] || (size_t)(colon - hostport) >= hostlen) {
		snprintf(why, whylen, "'%s' is not HOST:PORT", hostport);
		return -EINVAL;
	}
	snprintf(host, hostlen, "%.*s", (int)(colon - hostport), hostport);
	if (host[0] == '[') { /* [v6]:port */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	if ((g = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(why, whylen, "%s: %s", hostport, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	int err = ECONNREFUSED;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, whylen, "cannot connect to %s: %s", hostport, strerror(err));
		return -err;
	}
	return fd;
}

int tls_connect(const char *hostport, const struct tls_client_opts *o, struct tls_session **out,
		char *why, size_t whylen)
{
	struct tls_session *t = calloc(1, sizeof(*t));
	char host[256];
	int g, r;

	*out = NULL;
	if (!t) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (gnutls_load(why, whylen) < 0) {
		free(t);
		return -ENOPKG;
	}
	t->fd = -1;
	t->own_fd = true;
	r = o->psk_file ? load_client_psk(t, o->psk_file, why, whylen)
	    : o->cert_dir ? load_client_x509(t, o->cert_dir, why, whylen)
			  : (snprintf(why, whylen, "give --tls-psk FILE or --tls-certificates DIR"),
			     -EINVAL);
	if (r == 0 && (r = dial(hostport, host, sizeof(host), why, whylen)) >= 0) {
		t->fd = r;
		r = 0;
	}
	if (r == 0 && (g = gtls.init(&t->s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL)) < 0) {
		t->s = NULL;
		r = load_fail(why, whylen, g, "TLS session", NULL);
	}
	if (r < 0) {
		session_free_parts(t);
		return r;
	}
	gtls.set_default_priority(t->s);
	if (t->psk) {
		gtls.priority_set_direct(t->s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", NULL);
		gtls.credentials_set(t->s, GNUTLS_CRD_PSK, t->psk);
	} else {
		gtls.credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, t->x509);
		gtls.server_name_set(t->s, GNUTLS_NAME_DNS, host, strlen(host));
		gtls.session_set_verify_cert(t->s, host, 0); /* the CA and the host name */
	}
	gtls.transport_set_int2(t->s, t->fd, t->fd);
	gtls.handshake_set_timeout(t->s, 30 * 1000);
	do
		g = gtls.handshake(t->s);
	while (g == GNUTLS_E_INTERRUPTED);
	if (g < 0) {
		if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
			gnutls_datum_t text = { NULL, 0 };
			unsigned status = gtls.session_get_verify_cert_status(t->s);
			gtls.certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
			snprintf(why, whylen, "%s: the server's certificate is refused: %s", hostport,
				 text.data ? (char *)text.data : "not trusted");
			(*gtls.free)(text.data);
		} else {
			snprintf(why, whylen, "%s: TLS handshake failed: %s%s", hostport,
				 gtls.strerror(g),
				 t->psk ? " (is the key the server's?)" : "");
		}
		session_free_parts(t);
		return -EACCES;
	}
	*out = t;
	return 0;
}

/* --- the pump ------------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void tls_pump(struct tls_session *t, int plain_fd)
{
	char buf[16384];
	struct pollfd p[2] = { { .fd = t->fd, .events = POLLIN },
			       { .fd = plain_fd, .events = POLLIN } };

	for (;;) {
		if (tls_pending(t) == 0 && poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (tls_pending(t) > 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = tls_recv(t, buf, sizeof(buf));
			if (n <= 0 || write_all(plain_fd, buf, (size_t)n) < 0)
				break;
			p[0].revents = 0;
			continue;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(plain_fd, buf, sizeof(buf), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || tls_send_all(t, buf, (size_t)n) < 0)
				break;
		}
	}
	shutdown(plain_fd, SHUT_WR);
}
