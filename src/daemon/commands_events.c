/* commands_events.c - hotsnap events: the daemon's event stream (events.h).
 *
 * A long-running command: the recent events asked for, then (with follow)
 * every new one as it happens, until the client goes or the daemon stops.
 * It never takes the registry lock. */
#include <stdio.h>
#include <string.h>

#include "daemon/commands.h"
#include "daemon/events.h"

#define RECENT_MAX EVENTS_KEPT

static enum cmd_status cmd_events(struct daemon *d, const struct ctl_request *req,
				  struct ctl_session *sess, json_object **result, char *err,
				  size_t errlen)
{
	uint64_t recent = ctl_u64(req, "recent", 0), missed = 0;
	bool follow = ctl_bool(req, "follow", true);
	uint64_t end = events_next_seq();
	uint64_t seq = end - (recent < end - 1 ? recent : end - 1);
	char line[4096];

	if (recent > RECENT_MAX) {
		snprintf(err, errlen, "--recent is at most %d (the events the daemon keeps)",
			 RECENT_MAX);
		return CMD_USAGE;
	}
	for (;;) {
		if (!follow && seq >= end)
			break;
		if (ctl_session_gone(sess))
			break;
		if (!events_wait(&seq, &missed, line, sizeof(line), 1000))
			continue;
		if (!ctl_session_send_line(sess, line))
			break;
	}
	*result = json_object_new_object();
	json_object_object_add(*result, "missed", json_object_new_int64((int64_t)missed));
	return CMD_OK;
}

const struct command_entry commands_events[] = {
	{ "events", cmd_events },
	{ NULL, NULL },
};
