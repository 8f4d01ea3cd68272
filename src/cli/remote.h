/* remote.h - `hotsnap --remote HOST:PORT` (with --tls-psk FILE or
 * --tls-certificates DIR): the CLI's side of the remote control channel.
 * The connection is TLS (tls/tls.h); a thread pumps it into a socketpair
 * whose other end the CLI reads and writes as it does the local control
 * socket, so every command's code is the same either way. */
#ifndef HS_CLI_REMOTE_H
#define HS_CLI_REMOTE_H

#include <stddef.h>

struct cli;

/* A socket that speaks to the remote daemon; -errno with msg saying why
 * not (the address, the key, the certificate). */
int cli_remote_connect(const struct cli *cli, char *msg, size_t msglen);

#endif
