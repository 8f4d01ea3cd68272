/* remote.c - see remote.h. */
#include "cli/remote.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/client.h"
#include "tls/tls.h"

struct pump {
	struct tls_session *s;
	int plain;
};

static void *pump_main(void *arg)
{
	struct pump *p = arg;
	tls_pump(p->s, p->plain);
	tls_session_free(p->s);
	close(p->plain);
	free(p);
	return NULL;
}

int cli_remote_connect(const struct cli *cli, char *msg, size_t msglen)
{
	struct tls_client_opts o = { .psk_file = cli->tls_psk, .cert_dir = cli->tls_certificates };
	struct tls_session *s;
	char why[768];
	int sp[2], r;
	pthread_t t;

	r = tls_connect(cli->remote, &o, &s, why, sizeof(why));
	if (r < 0) {
		snprintf(msg, msglen, "%s", why); /* it names the address */
		return r;
	}
	struct pump *p = malloc(sizeof(*p));
	if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		r = -errno;
		snprintf(msg, msglen, "cannot make a local socket: %s", strerror(errno));
		free(p);
		tls_session_free(s);
		return r;
	}
	p->s = s;
	p->plain = sp[1];
	if (pthread_create(&t, NULL, pump_main, p) != 0) {
		snprintf(msg, msglen, "cannot start a thread");
		close(sp[0]);
		close(sp[1]);
		tls_session_free(s);
		free(p);
		return -EAGAIN;
	}
	pthread_detach(t); /* it ends when either side closes; so does the process */
	return sp[0];
}
