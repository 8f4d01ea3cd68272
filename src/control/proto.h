/* proto.h - the control protocol between the CLI and the daemon.
 *
 * One JSON object per line over the control socket (a unix socket, mode
 * 0600, in the state dir).  A request:
 *     {"cmd": "snapshot.create", "args": {"volumes": ["vol0"], "freeze": true}}
 * A reply, one per request:
 *     {"ok": true, "result": {...}}
 *     {"ok": false, "error": "volume 'x' does not exist", "usage": false}
 * A streaming command (backup) sends {"event": "progress", ...} lines before
 * its reply.  The backup's output file travels as a descriptor (SCM_RIGHTS)
 * with the request line.
 *
 * Every request is checked against the command's schema here, once: unknown
 * commands, unknown or missing arguments and wrong types are refused with a
 * message naming the argument.  Handlers then read typed values without
 * checking again (names and sizes are checked by the handlers, which know
 * the rules). */
#ifndef HS_CONTROL_PROTO_H
#define HS_CONTROL_PROTO_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTROL_MAX_LINE (64 * 1024)
#define CONTROL_MAX_LIST 64 /* items in a string array */

enum ctl_arg_type { CTL_STRING, CTL_BOOL, CTL_U64, CTL_STRINGS };

struct ctl_arg {
	const char *key;
	enum ctl_arg_type type;
	bool required;
};

struct ctl_command {
	const char *name;
	const struct ctl_arg *args; /* terminated by a NULL key */
	bool takes_fd;              /* expects a descriptor with the request */
	bool long_running;          /* runs for minutes: its handler takes the daemon's
				     * registry lock itself, when it needs it */
};

struct ctl_request {
	const struct ctl_command *cmd;
	json_object *root;
	json_object *args; /* never NULL after a successful parse */
};

/* Parses one request line (without its newline).  0, or -EINVAL with a
 * message for the client in err. */
int ctl_request_parse(const char *line, size_t len, struct ctl_request *req, char *err,
		      size_t errlen);
void ctl_request_free(struct ctl_request *req);
const struct ctl_command *ctl_command_find(const char *name);

/* Typed access to checked arguments. */
bool ctl_has(const struct ctl_request *r, const char *key);
const char *ctl_str(const struct ctl_request *r, const char *key);
bool ctl_bool(const struct ctl_request *r, const char *key, bool dflt);
uint64_t ctl_u64(const struct ctl_request *r, const char *key, uint64_t dflt);
/* Fills out (up to max) with the array's strings; returns the count. */
size_t ctl_strings(const struct ctl_request *r, const char *key, const char **out, size_t max);

/* Builds a request; takes ownership of args (may be NULL). */
json_object *ctl_request_new(const char *cmd, json_object *args);

#endif
