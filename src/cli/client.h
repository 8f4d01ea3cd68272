/* client.h - the CLI's side of the control socket. */
#ifndef HS_CLI_CLIENT_H
#define HS_CLI_CLIENT_H

#include <json-c/json.h>
#include <stdbool.h>

struct cli {
	const char *state_dir;
	bool json;
	const char *remote;           /* --remote HOST:PORT, or NULL: the local daemon */
	const char *tls_psk;          /* with --remote: a psktool file */
	const char *tls_certificates; /* ... or a directory of certificates */
};

/* Exit statuses of every command. */
enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2 };

typedef void (*event_fn)(void *arg, json_object *event);

/* --json: errors are also printed as {"error": ..., "usage": ...} on stdout. */
void cli_set_json_errors(bool on);

/* Sends one request (args is consumed; fd passed along when >= 0), calls
 * on_event for each event line, and returns the exit status.  On success
 * *result gets the reply's result (the caller puts it); on failure the
 * daemon's message is printed on stderr. */
int cli_call(const struct cli *cli, const char *cmd, json_object *args, int fd,
	     event_fn on_event, void *arg, json_object **result);

struct cmd_spec;
struct table_col;
struct table_style;
/* The common part of a listing command that takes no arguments but the
 * table options (table.h): parses them for the columns cols into st, calls
 * cmd, and under --json prints the reply.  Returns the exit status;
 * *result is set only when the caller still has to print it (and put it),
 * otherwise NULL. */
int cli_fetch_listing(const struct cli *cli, const struct cmd_spec *spec, int argc, char **argv,
		      const char *cmd, const struct table_col *cols, struct table_style *st,
		      json_object **result);

/* Prints the result as JSON on stdout (for --json). */
void cli_print_json(json_object *result);

/* Helpers for human output. */
const char *cli_size(uint64_t bytes, char *buf, size_t len);
int64_t cli_get_int(json_object *o, const char *key);
const char *cli_get_str(json_object *o, const char *key);
double cli_get_double(json_object *o, const char *key);
bool cli_get_bool(json_object *o, const char *key);

int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
