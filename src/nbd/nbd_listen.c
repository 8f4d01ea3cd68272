/* nbd_listen.c - listening sockets.
 *
 * unix: the socket file is created mode 0600.  The mode is set with fchmod()
 * on the socket before bind(): Linux gives the new file the socket inode's
 * mode less the umask, and this way we never touch the process-wide umask
 * (other threads of the daemon may be creating files).  A chmod() after bind
 * is kept as a second guard.  A stale socket file is removed first, but only
 * when nobody answers on it: a live server's socket, or a file that is not a
 * socket at all, is an error.
 *
 * tcp: exactly the host given is bound (a name that resolves to several
 * addresses gets a socket each); an empty host is an error, never a silent
 * wildcard.  IPv6 sockets are v6-only so "[::1]" does not also take 127.0.0.1. */
#include "nbd_listen.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static __thread char why_buf[512];

static int fail(const char **why, int err, const char *addr, const char *what)
{
	snprintf(why_buf, sizeof(why_buf), "%s: %s%s%s", addr, what, err ? ": " : "",
		 err ? strerror(-err) : "");
	*why = why_buf;
	return err ? err : -EINVAL;
}

static int push(struct nbd_listeners *ls, const struct nbd_listener *l)
{
	struct nbd_listener *v = realloc(ls->v, sizeof(*v) * (ls->n + 1));
	if (!v)
		return -ENOMEM;
	ls->v = v;
	ls->v[ls->n++] = *l;
	return 0;
}

/* --- unix ---------------------------------------------------------------------- */

static int remove_stale(const char *path, const char *addr, const char **why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, live;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : fail(why, -errno, addr, "cannot look at the path");
	if (!S_ISSOCK(st.st_mode))
		return fail(why, -EEXIST, addr, "exists and is not a socket");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(why, -errno, addr, "socket");
	memcpy(sa.sun_path, path, strlen(path));
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	if (live)
		return fail(why, -EADDRINUSE, addr, "another server is listening there");
	if (unlink(path) != 0 && errno != ENOENT)
		return fail(why, -errno, addr, "cannot remove the stale socket");
	return 0;
}

static int listen_unix(struct nbd_listeners *ls, const char *addr, const char *path,
		       const char **why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct nbd_listener l = { .fd = -1, .is_unix = true };
	struct stat st;
	int r;

	if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path))
		return fail(why, 0, addr, "socket path empty or too long");
	r = remove_stale(path, addr, why);
	if (r)
		return r;
	memcpy(sa.sun_path, path, strlen(path));
	l.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l.fd < 0)
		return fail(why, -errno, addr, "socket");
	if (fchmod(l.fd, 0600) != 0) {
		r = fail(why, -errno, addr, "fchmod");
		goto err_close;
	}
	if (bind(l.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r = fail(why, -errno, addr, "bind");
		goto err_close;
	}
	if (chmod(path, 0600) != 0 || stat(path, &st) != 0 || listen(l.fd, SOMAXCONN) != 0) {
		r = fail(why, -errno, addr, "listen");
		goto err_unlink;
	}
	l.dev = st.st_dev;
	l.ino = st.st_ino;
	l.path = strdup(path);
	if (!l.path || push(ls, &l) != 0) {
		free(l.path);
		r = fail(why, -ENOMEM, addr, "out of memory");
		goto err_unlink;
	}
	return 0;

err_unlink:
	unlink(path);
err_close:
	close(l.fd);
	return r;
}

/* --- tcp ----------------------------------------------------------------------- */

static int listen_one(struct nbd_listeners *ls, const char *addr, const struct addrinfo *ai,
		      const char *host, bool bracket, const char **why)
{
	struct nbd_listener l = { .is_unix = false, .bracket = bracket };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, r;

	l.fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, ai->ai_protocol);
	if (l.fd < 0)
		return fail(why, -errno, addr, "socket");
	setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(l.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(l.fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		r = fail(why, -errno, addr, "bind");
		goto err;
	}
	if (listen(l.fd, SOMAXCONN) != 0 || getsockname(l.fd, (struct sockaddr *)&ss, &sl) != 0) {
		r = fail(why, -errno, addr, "listen");
		goto err;
	}
	l.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	l.host = strdup(host);
	if (!l.host || push(ls, &l) != 0) {
		free(l.host);
		r = fail(why, -ENOMEM, addr, "out of memory");
		goto err;
	}
	return 0;
err:
	close(l.fd);
	return r;
}

static int listen_tcp(struct nbd_listeners *ls, const char *addr, const char *spec,
		      const char **why)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char host[256], *end;
	const char *port;
	bool bracket = spec[0] == '[';
	size_t hlen;
	int r;

	if (bracket) {
		const char *close_br = strchr(spec, ']');
		if (!close_br || close_br[1] != ':')
			return fail(why, 0, addr, "expected [IPV6]:PORT");
		hlen = (size_t)(close_br - spec - 1);
		port = close_br + 2;
		spec++;
	} else {
		const char *colon = strrchr(spec, ':');
		if (!colon)
			return fail(why, 0, addr, "expected HOST:PORT");
		hlen = (size_t)(colon - spec);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return fail(why, 0, addr, "the host is empty or too long");
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	errno = 0;
	unsigned long pn = strtoul(port, &end, 10);
	if (port[0] == '\0' || *end || pn > 65535 || errno)
		return fail(why, 0, addr, "the port is not a number from 0 to 65535");
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		snprintf(why_buf, sizeof(why_buf), "%s: %s", addr, gai_strerror(r));
		*why = why_buf;
		return -EADDRNOTAVAIL;
	}
	size_t first = ls->n;
	for (ai = res; ai; ai = ai->ai_next) {
		r = listen_one(ls, addr, ai, host, bracket, why);
		if (r)
			break;
	}
	freeaddrinfo(res);
	if (r) {
		/* all or nothing for one address */
		for (size_t i = first; i < ls->n; i++) {
			close(ls->v[i].fd);
			free(ls->v[i].host);
		}
		ls->n = first;
	}
	return r;
}

/* --- common --------------------------------------------------------------------- */

int nbd_listen_add(struct nbd_listeners *ls, const char *addr, const char **why)
{
	if (!addr)
		return fail(why, 0, "(null)", "no address");
	if (strncmp(addr, "unix:", 5) == 0)
		return listen_unix(ls, addr, addr + 5, why);
	if (strncmp(addr, "tcp:", 4) == 0)
		return listen_tcp(ls, addr, addr + 4, why);
	return fail(why, 0, addr, "expected unix:PATH or tcp:HOST:PORT");
}

void nbd_listen_close_all(struct nbd_listeners *ls)
{
	for (size_t i = 0; i < ls->n; i++) {
		struct nbd_listener *l = &ls->v[i];
		struct stat st;
		close(l->fd);
		if (l->is_unix && stat(l->path, &st) == 0 && st.st_dev == l->dev &&
		    st.st_ino == l->ino)
			unlink(l->path);
		free(l->path);
		free(l->host);
	}
	free(ls->v);
	ls->v = NULL;
	ls->n = 0;
}

/* Appends s percent-encoded (RFC 3986: unreserved and keep stay as they are). */
static bool put_encoded(char **p, char *end, const char *s, const char *keep)
{
	static const char hex[] = "0123456789ABCDEF";
	if (*p >= end)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9') || strchr("-._~", ch) ||
			     strchr(keep, ch);
		size_t need = plain ? 1 : 3;
		if (end - *p <= (ptrdiff_t)need)
			return false;
		if (plain) {
			*(*p)++ = (char)ch;
		} else {
			*(*p)++ = '%';
			*(*p)++ = hex[ch >> 4];
			*(*p)++ = hex[ch & 15];
		}
	}
	**p = '\0';
	return true;
}

const char *nbd_listen_uri(const struct nbd_listener *l, const char *name, char *buf,
			   size_t len)
{
	char *p = buf, *end = buf + len;
	int n;

	if (len == 0)
		return NULL;
	if (l->is_unix) {
		n = snprintf(p, len, "nbd+unix:///");
		if (n < 0 || (size_t)n >= len)
			return NULL;
		p += n;
		if (!put_encoded(&p, end, name, "@") || !put_encoded(&p, end, "?socket=", "?=") ||
		    !put_encoded(&p, end, l->path, "/"))
			return NULL;
		return buf;
	}
	n = snprintf(p, len, l->bracket ? "%s://[%s]:%u/" : "%s://%s:%u/", l->tls ? "nbds" : "nbd",
		     l->host, l->port);
	if (n < 0 || (size_t)n >= len)
		return NULL;
	p += n;
	return put_encoded(&p, end, name, "@") ? buf : NULL;
}
