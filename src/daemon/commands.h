/* commands.h - the control command handlers, grouped by subject. */
#ifndef HS_COMMANDS_H
#define HS_COMMANDS_H

#include "daemon/daemon.h"

struct command_entry {
	const char *name;
	cmd_handler fn;
};

extern const struct command_entry commands_volume[];
extern const struct command_entry commands_snapshot[];
extern const struct command_entry commands_backup[];
extern const struct command_entry commands_bookmark[];
extern const struct command_entry commands_restore[];
extern const struct command_entry commands_image[];
extern const struct command_entry commands_status[];
extern const struct command_entry commands_events[];
extern const struct command_entry commands_revert[];

/* Every volume's bookmarks, oldest first per volume (for listings). */
json_object *bookmarks_json(struct daemon *d);

enum cmd_status volume_create_locked(struct daemon *d, struct vol_config *c, bool size_given,
				     struct vol_entry **vep, bool *created_backing, char *err,
				     size_t errlen);
/* Fills c with what `volume create NAME --backing PATH` would use. */
void volume_config_defaults(struct daemon *d, struct vol_config *c, const char *name,
			    const char *backing);

/* Sends a long command's progress to its client (when show); returns true
 * when the client has gone away, and the command should stop. */
bool commands_progress(struct ctl_session *sess, bool show, const char *phase,
		       uint64_t position, uint64_t size, uint64_t bytes_read, double seconds);

struct vol_entry *commands_usable_volume(struct daemon *d, const char *name, char *err,
					 size_t errlen, enum cmd_status *st);
/* file: the FUSE file the device sits on; link: the stable name to remove
 * with it (devlinks.h), or NULL.  Returns once the device's handle on the
 * file is closed, so the caller may count the file's openers at once. */
enum cmd_status commands_detach_loop(struct daemon *d, struct loop_attachment *loop,
				     const char *what, const char *file, const char *link,
				     char *err, size_t errlen);

#endif
