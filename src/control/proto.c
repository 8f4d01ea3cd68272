/* proto.c - see proto.h. */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ctl_arg no_args[] = { { NULL, CTL_STRING, false } };

static const struct ctl_arg name_arg[] = {
	{ "name", CTL_STRING, true },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg snapshot_arg[] = {
	{ "snapshot", CTL_STRING, true },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg snapshot_revert_args[] = {
	{ "snapshot", CTL_STRING, true },
	{ "progress", CTL_BOOL, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg volume_create_args[] = {
	{ "name", CTL_STRING, true },       { "backing", CTL_STRING, true },
	{ "size", CTL_U64, false },         { "chunk_size", CTL_U64, false },
	{ "cow_buffer", CTL_U64, false },   { "diff_dir", CTL_STRING, false },
	{ "diff_limit", CTL_U64, false },   { "cache", CTL_STRING, false },
	{ "track_granularity", CTL_U64, false }, { "no_tracking", CTL_BOOL, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg volume_set_args[] = {
	{ "name", CTL_STRING, true },       { "diff_limit", CTL_U64, false },
	{ "diff_dir", CTL_STRING, false },  { "hook", CTL_STRING, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg events_args[] = {
	{ "recent", CTL_U64, false }, { "follow", CTL_BOOL, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg snapshot_create_args[] = {
	{ "volumes", CTL_STRINGS, true },  { "name", CTL_STRING, false },
	{ "freeze", CTL_BOOL, false },     { "all_blocks", CTL_BOOL, false },
	{ "hooks", CTL_BOOL, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg bookmark_arg[] = {
	{ "bookmark", CTL_STRING, true },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg bookmark_create_args[] = {
	{ "snapshot", CTL_STRING, true }, { "name", CTL_STRING, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg restore_args[] = {
	{ "image", CTL_STRING, true },        { "volume", CTL_STRING, true },
	{ "new_backing", CTL_STRING, false }, { "verify_only", CTL_BOOL, false },
	{ "progress", CTL_BOOL, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg image_attach_args[] = {
	{ "image", CTL_STRING, true }, { "name", CTL_STRING, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_arg backup_args[] = {
	{ "source", CTL_STRING, true },    { "output", CTL_STRING, true },
	{ "consume", CTL_BOOL, false },    { "all_blocks", CTL_BOOL, false },
	{ "rate", CTL_U64, false },        { "format", CTL_STRING, false },
	{ "progress", CTL_BOOL, false },   { "yield", CTL_BOOL, false },
	{ "compress", CTL_STRING, false }, { "incremental", CTL_STRING, false },
	{ NULL, CTL_STRING, false },
};

static const struct ctl_command commands[] = {
	{ "ping", no_args, false },
	{ "status", no_args, false },
	{ "shutdown", no_args, false },
	{ "volume.create", volume_create_args, false },
	{ "volume.set", volume_set_args, false },
	{ "events", events_args, false, true },
	{ "volume.attach", name_arg, false },
	{ "volume.detach", name_arg, false },
	{ "volume.list", no_args, false },
	{ "volume.remove", name_arg, false },
	{ "snapshot.create", snapshot_create_args, false },
	{ "snapshot.list", no_args, false },
	{ "snapshot.attach", snapshot_arg, false },
	{ "snapshot.detach", snapshot_arg, false },
	{ "snapshot.delete", snapshot_arg, false },
	{ "snapshot.revert", snapshot_revert_args, false, true },
	{ "backup", backup_args, true, true },
	{ "restore", restore_args, false, true },
	{ "image.attach", image_attach_args, false },
	{ "image.detach", name_arg, false },
	{ "image.list", no_args, false },
	{ "bookmark.list", no_args, false },
	{ "bookmark.create", bookmark_create_args, false },
	{ "bookmark.delete", bookmark_arg, false },
	{ NULL, NULL, false },
};

const struct ctl_command *ctl_command_find(const char *name)
{
	for (const struct ctl_command *c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static const char *type_name(enum ctl_arg_type t)
{
	switch (t) {
	case CTL_STRING:
		return "a string";
	case CTL_BOOL:
		return "true or false";
	case CTL_U64:
		return "a non-negative integer";
	case CTL_STRINGS:
		return "a list of strings";
	}
	return "?";
}

static bool type_ok(json_object *v, enum ctl_arg_type t)
{
	switch (t) {
	case CTL_STRING:
		return json_object_is_type(v, json_type_string) &&
		       strlen(json_object_get_string(v)) ==
			       (size_t)json_object_get_string_len(v); /* no NUL inside */
	case CTL_BOOL:
		return json_object_is_type(v, json_type_boolean);
	case CTL_U64:
		return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0;
	case CTL_STRINGS: {
		size_t n;
		if (!json_object_is_type(v, json_type_array))
			return false;
		n = json_object_array_length(v);
		if (n == 0 || n > CONTROL_MAX_LIST)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!type_ok(json_object_array_get_idx(v, i), CTL_STRING))
				return false;
		return true;
	}
	}
	return false;
}

/* --- duplicate keys ---------------------------------------------------------- */

/* json-c keeps the last of two equal keys, so {"cmd":"status","cmd":"shutdown"}
 * would mean what its last key says; such ambiguous input is refused.  This
 * runs on text json-c has accepted, so it only has to find keys: strings
 * followed by ':'. */
#define SCAN_DEPTH 8
#define SCAN_KEYS 64

struct scan_level {
	bool object;
	unsigned n;
	char *keys[SCAN_KEYS];
};

/* The key between quotes at s[0..len), unescaped through json-c. */
static char *key_text(const char *s, size_t len)
{
	if (!memchr(s, '\\', len))
		return strndup(s + 1, len - 2);
	char *quoted = strndup(s, len);
	json_object *o = quoted ? json_tokener_parse(quoted) : NULL;
	char *k = o && json_object_is_type(o, json_type_string)
			  ? strdup(json_object_get_string(o))
			  : NULL;
	json_object_put(o);
	free(quoted);
	return k;
}

static void scan_pop(struct scan_level *l)
{
	for (unsigned i = 0; i < l->n; i++)
		free(l->keys[i]);
	l->n = 0;
}

/* 0 when every object's keys are distinct; else -EINVAL with err set. */
static int check_keys(const char *text, size_t len, char *err, size_t errlen)
{
	struct scan_level stack[SCAN_DEPTH];
	int depth = -1, r = 0;

	for (size_t i = 0; i < len && r == 0; i++) {
		char c = text[i];
		if (c == '{' || c == '[') {
			if (++depth == SCAN_DEPTH) {
				snprintf(err, errlen, "request is nested too deeply");
				r = -EINVAL;
				depth--;
				break;
			}
			stack[depth].object = c == '{';
			stack[depth].n = 0;
		} else if (c == '}' || c == ']') {
			if (depth >= 0)
				scan_pop(&stack[depth--]);
		} else if (c == '"') {
			size_t start = i++;
			while (i < len && text[i] != '"')
				i += text[i] == '\\' ? 2 : 1;
			size_t after = i + 1;
			while (after < len && (text[after] == ' ' || text[after] == '\t' ||
					       text[after] == '\r' || text[after] == '\n'))
				after++;
			if (depth < 0 || !stack[depth].object || after >= len || text[after] != ':')
				continue; /* a value, not a key */
			struct scan_level *l = &stack[depth];
			char *k = key_text(text + start, i + 1 - start);
			if (!k || l->n == SCAN_KEYS) {
				free(k);
				snprintf(err, errlen, "request has too many fields");
				r = -EINVAL;
				break;
			}
			for (unsigned j = 0; j < l->n; j++)
				if (strcmp(l->keys[j], k) == 0) {
					snprintf(err, errlen, "field '%.64s' appears twice in the request",
						 k);
					r = -EINVAL;
				}
			l->keys[l->n++] = k;
		}
	}
	while (depth >= 0)
		scan_pop(&stack[depth--]);
	return r;
}

int ctl_request_parse(const char *line, size_t len, struct ctl_request *req, char *err,
		      size_t errlen)
{
	struct json_tokener *tok;
	json_object *cmd, *args = NULL;
	const struct ctl_arg *a;

	memset(req, 0, sizeof(*req));
	if (len > CONTROL_MAX_LINE) {
		snprintf(err, errlen, "request too long (at most %d bytes)", CONTROL_MAX_LINE);
		return -EINVAL;
	}
	tok = json_tokener_new_ex(32);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return -EINVAL;
	}
	req->root = json_tokener_parse_ex(tok, line, (int)len);
	if (!req->root || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		json_tokener_free(tok);
		if (req->root)
			json_object_put(req->root);
		req->root = NULL;
		snprintf(err, errlen, "request is not one JSON object");
		return -EINVAL;
	}
	json_tokener_free(tok);
	if (check_keys(line, len, err, errlen) < 0)
		goto bad;
	if (!json_object_is_type(req->root, json_type_object)) {
		snprintf(err, errlen, "request is not a JSON object");
		goto bad;
	}
	json_object_object_foreach(req->root, key, val)
	{
		(void)val;
		if (strcmp(key, "cmd") != 0 && strcmp(key, "args") != 0) {
			snprintf(err, errlen, "unknown field '%.64s' in request", key);
			goto bad;
		}
	}
	if (!json_object_object_get_ex(req->root, "cmd", &cmd) ||
	    !json_object_is_type(cmd, json_type_string)) {
		snprintf(err, errlen, "request has no \"cmd\" string");
		goto bad;
	}
	req->cmd = ctl_command_find(json_object_get_string(cmd));
	if (!req->cmd) {
		snprintf(err, errlen, "unknown command '%.64s'", json_object_get_string(cmd));
		goto bad;
	}
	if (json_object_object_get_ex(req->root, "args", &args)) {
		if (!json_object_is_type(args, json_type_object)) {
			snprintf(err, errlen, "\"args\" must be a JSON object");
			goto bad;
		}
	} else {
		args = json_object_new_object();
		if (!args) {
			snprintf(err, errlen, "out of memory");
			goto bad;
		}
		json_object_object_add(req->root, "args", args);
	}
	req->args = args;
	json_object_object_foreach(args, k, v)
	{
		for (a = req->cmd->args; a->key; a++)
			if (strcmp(a->key, k) == 0)
				break;
		if (!a->key) {
			snprintf(err, errlen, "%s: unknown argument '%.64s'", req->cmd->name, k);
			goto bad;
		}
		if (!type_ok(v, a->type)) {
			snprintf(err, errlen, "%s: argument '%s' must be %s%s", req->cmd->name, k,
				 type_name(a->type),
				 a->type == CTL_STRINGS ? " (1 to 64 items)" : "");
			goto bad;
		}
	}
	for (a = req->cmd->args; a->key; a++)
		if (a->required && !json_object_object_get_ex(args, a->key, NULL)) {
			snprintf(err, errlen, "%s: missing argument '%s'", req->cmd->name, a->key);
			goto bad;
		}
	return 0;

bad:
	ctl_request_free(req);
	return -EINVAL;
}

void ctl_request_free(struct ctl_request *req)
{
	if (req->root)
		json_object_put(req->root);
	memset(req, 0, sizeof(*req));
}

bool ctl_has(const struct ctl_request *r, const char *key)
{
	return json_object_object_get_ex(r->args, key, NULL);
}

const char *ctl_str(const struct ctl_request *r, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(r->args, key, &v) ? json_object_get_string(v) : NULL;
}

bool ctl_bool(const struct ctl_request *r, const char *key, bool dflt)
{
	json_object *v;
	return json_object_object_get_ex(r->args, key, &v) ? json_object_get_boolean(v) : dflt;
}

uint64_t ctl_u64(const struct ctl_request *r, const char *key, uint64_t dflt)
{
	json_object *v;
	return json_object_object_get_ex(r->args, key, &v) ? (uint64_t)json_object_get_int64(v)
							    : dflt;
}

size_t ctl_strings(const struct ctl_request *r, const char *key, const char **out, size_t max)
{
	json_object *v;
	size_t n;

	if (!json_object_object_get_ex(r->args, key, &v))
		return 0;
	n = json_object_array_length(v);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		out[i] = json_object_get_string(json_object_array_get_idx(v, i));
	return n;
}

json_object *ctl_request_new(const char *cmd, json_object *args)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "cmd", json_object_new_string(cmd));
	json_object_object_add(o, "args", args ? args : json_object_new_object());
	return o;
}
