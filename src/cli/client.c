/* client.c - see client.h. */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/remote.h"
#include "cli/table.h"
#include "common/units.h"
#include "control/proto.h"
#include "control/transport.h"

/* With --json, an error is also a JSON object on stdout ({"error": ...,
 * "usage": ...}), so a program reading stdout never gets nothing. */
static bool json_errors;

void cli_set_json_errors(bool on)
{
	json_errors = on;
}

static void json_error(const char *msg, bool usage)
{
	json_object *o;

	if (!json_errors)
		return;
	o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "usage", json_object_new_boolean(usage));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static int connect_daemon(const struct cli *cli)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (cli->remote) {
		char msg[1024];
		fd = cli_remote_connect(cli, msg, sizeof(msg));
		if (fd < 0) {
			fprintf(stderr, "hotsnap: %s\n", msg);
			json_error(msg, false);
		}
		return fd;
	}

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", cli->state_dir) >=
	    (int)sizeof(sa.sun_path)) {
		fprintf(stderr, "hotsnap: the state dir path %s is too long\n", cli->state_dir);
		return -ENAMETOOLONG;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "hotsnap: socket: %s\n", strerror(errno));
		return -errno;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		char msg[PATH_MAX * 2 + 128];
		if (e == ENOENT || e == ECONNREFUSED)
			snprintf(msg, sizeof(msg),
				 "no daemon is running on %s (start one with 'hotsnap --state-dir %s "
				 "daemon --detach')",
				 cli->state_dir, cli->state_dir);
		else
			snprintf(msg, sizeof(msg), "cannot reach the daemon at %s: %s", sa.sun_path,
				 strerror(e));
		fprintf(stderr, "hotsnap: %s\n", msg);
		json_error(msg, false);
		close(fd);
		return -e;
	}
	return fd;
}

int cli_call(const struct cli *cli, const char *cmd, json_object *args, int fd,
	     event_fn on_event, void *arg, json_object **result)
{
	static char line[CONTROL_MAX_LINE + 2];
	struct ctl_reader rd;
	json_object *req = ctl_request_new(cmd, args);
	int status = EXIT_ERROR;
	int sock;

	*result = NULL;
	if (cli->remote && fd >= 0) {
		const char *msg = "this command hands a file of this machine to the daemon, which "
				  "a remote daemon cannot take: run it on the daemon's host (a "
				  "remote backup pulls: hotsnap backup nbds://HOST/VOLUME@SNAPSHOT)";
		fprintf(stderr, "hotsnap: %s\n", msg);
		json_error(msg, false);
		json_object_put(req);
		return EXIT_ERROR;
	}
	sock = connect_daemon(cli);
	if (sock < 0) {
		json_object_put(req);
		return EXIT_ERROR;
	}
	/* A daemon that refuses a client (busy, not allowed) answers and
	 * closes at once, so the send may fail: its answer can still be read. */
	int send_err = ctl_send_json(sock, req, fd);
	ctl_reader_init(&rd, sock);
	for (;;) {
		long n = ctl_read_line(&rd, line, sizeof(line));
		json_object *o, *v;
		if (n <= 0) {
			if (send_err < 0)
				fprintf(stderr, "hotsnap: cannot send the request: %s\n",
					strerror(-send_err));
			else if (cli->remote)
				fprintf(stderr, "hotsnap: the daemon at %s closed the connection "
						"without an answer: it refused this client (a "
						"certificate its CA did not sign?) or stopped; its "
						"log says which\n", cli->remote);
			else
				fprintf(stderr, "hotsnap: the daemon closed the connection without "
						"an answer (did it stop? see its log)\n");
			goto out;
		}
		o = json_tokener_parse(line);
		if (!o || !json_object_is_type(o, json_type_object)) {
			fprintf(stderr, "hotsnap: the daemon sent something unreadable\n");
			json_object_put(o);
			goto out;
		}
		if (json_object_object_get_ex(o, "event", NULL)) {
			if (on_event)
				on_event(arg, o);
			json_object_put(o);
			continue;
		}
		if (json_object_object_get_ex(o, "ok", &v) && json_object_get_boolean(v)) {
			if (json_object_object_get_ex(o, "result", &v))
				*result = json_object_get(v);
			else
				*result = json_object_new_object();
			status = EXIT_OK;
		} else {
			const char *err = cli_get_str(o, "error");
			fprintf(stderr, "hotsnap: %s\n", err ? err : "the command failed");
			status = cli_get_bool(o, "usage") ? EXIT_USAGE : EXIT_ERROR;
			json_error(err ? err : "the command failed", status == EXIT_USAGE);
		}
		json_object_put(o);
		break;
	}
out:
	json_object_put(req);
	close(sock);
	return status;
}

void cli_print_json(json_object *result)
{
	printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY |
								       JSON_C_TO_STRING_NOSLASHESCAPE));
}

const char *cli_size(uint64_t bytes, char *buf, size_t len)
{
	return units_format_size(bytes, buf, len);
}

int64_t cli_get_int(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

const char *cli_get_str(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

double cli_get_double(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

bool cli_get_bool(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	char msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "hotsnap %s: %s (see 'hotsnap %s --help')\n", cmd, msg, cmd);
	json_error(msg, true);
	return EXIT_USAGE;
}

int cli_fetch_listing(const struct cli *cli, const struct cmd_spec *spec, int argc, char **argv,
		      const char *cmd, const struct table_col *cols, struct table_style *st,
		      json_object **result)
{
	struct parsed_args p;
	json_object *res;
	int r = args_parse(spec, argc, argv, &p);

	*result = NULL;
	if (!r)
		r = table_style_parse(spec, &p, cols, st);
	if (r)
		return r < 0 ? EXIT_OK : r; /* < 0: --help or -o help was printed */
	r = cli_call(cli, cmd, NULL, -1, NULL, NULL, &res);
	if (r)
		return r;
	if (cli->json) {
		cli_print_json(res);
		json_object_put(res);
		return EXIT_OK;
	}
	*result = res;
	return EXIT_OK;
}
