/* progress.h - the progress bar of long commands (backup, restore), drawn
 * on stderr from the daemon's progress events when stderr is a terminal. */
#ifndef HS_CLI_PROGRESS_H
#define HS_CLI_PROGRESS_H

#include <json-c/json.h>
#include <stdbool.h>

struct progress {
	bool show;
	bool drawn;
};

/* An event_fn (client.h): arg is a struct progress. */
void progress_draw(void *arg, json_object *ev);
/* Ends the bar's line, if one was drawn. */
void progress_end(struct progress *pr);

#endif
