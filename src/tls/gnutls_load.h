/* gnutls_load.h - GnuTLS, loaded when TLS is first needed.
 *
 * Why not linked: GnuTLS brings libp11-kit, libtasn1, libnettle, libhogweed,
 * libgmp, libidn2, libunistring and libffi, and its constructor runs at
 * every start of the one binary: 4 ms of a program's start here (stub
 * programs linked to hotsnap's libraries with and without it: 10.6-12.2 ms
 * against 6.8-8.2 ms).  The CLI starts inside the freeze window of every
 * snapshot a script takes, and only TLS listeners, remote control and
 * TLS pulls use GnuTLS.  So the first TLS call dlopen()s libgnutls.so.30
 * and calls through this table; types and constants still come from
 * <gnutls/gnutls.h>, and each entry has the exact type of the function it
 * stands for.  Not a replacement for GnuTLS: every call is GnuTLS's own. */
#ifndef HS_GNUTLS_LOAD_H
#define HS_GNUTLS_LOAD_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stddef.h>

/* gnutls_transport_set_int and gnutls_free are macros over these */
#define HS_GNUTLS_FUNCTIONS(X)                                                              \
	X(strerror) X(init) X(deinit) X(bye) X(credentials_set) X(transport_set_int2)        \
	X(handshake) X(handshake_set_timeout) X(set_default_priority) X(server_name_set)     \
	X(priority_init) X(priority_deinit) X(priority_set) X(priority_set_direct)           \
	X(record_send) X(record_recv) X(record_check_pending) X(auth_get_type)               \
	X(session_get_desc) X(session_set_verify_cert) X(session_get_verify_cert_status)     \
	X(certificate_allocate_credentials) X(certificate_free_credentials)                  \
	X(certificate_set_x509_trust_file) X(certificate_set_x509_key_file)                  \
	X(certificate_set_x509_crl_file) X(certificate_set_known_dh_params)                  \
	X(certificate_server_set_request) X(certificate_get_peers)                           \
	X(certificate_verify_peers2) X(certificate_verification_status_print)                \
	X(x509_crt_init) X(x509_crt_deinit) X(x509_crt_import) X(x509_crt_get_dn2)           \
	X(psk_allocate_server_credentials) X(psk_free_server_credentials)                    \
	X(psk_allocate_client_credentials) X(psk_free_client_credentials)                    \
	X(psk_set_server_credentials_file) X(psk_set_server_known_dh_params)                 \
	X(psk_set_client_credentials) X(psk_server_get_username)

struct gnutls_table {
#define HS_GNUTLS_ENTRY(name) __typeof__(gnutls_##name) *name;
	HS_GNUTLS_FUNCTIONS(HS_GNUTLS_ENTRY)
#undef HS_GNUTLS_ENTRY
	gnutls_free_function *free; /* GnuTLS's own deallocator, a variable */
};

/* Loads GnuTLS once (thread safe); 0, or -1 with why filled (libgnutls30
 * not installed, or too old for a function named in why). */
int gnutls_load(char *why, size_t len);
/* Valid after gnutls_load returned 0. */
extern struct gnutls_table gtls;

#endif
