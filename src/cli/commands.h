/* commands.h - the CLI's command groups. argv[0] is the subcommand word. */
#ifndef HS_CLI_COMMANDS_H
#define HS_CLI_COMMANDS_H

#include "cli/client.h"
#include "cli/table.h"

int cli_volume(const struct cli *cli, int argc, char **argv);
int cli_snapshot(const struct cli *cli, int argc, char **argv);
int cli_backup(const struct cli *cli, int argc, char **argv);
int cli_bookmark(const struct cli *cli, int argc, char **argv);
int cli_restore(const struct cli *cli, int argc, char **argv);
int cli_image(const struct cli *cli, int argc, char **argv);
int cli_vm(const struct cli *cli, int argc, char **argv);
/* The columns of a bookmark listing (table.h). */
extern const struct table_col cli_bookmark_cols[];
/* The "bookmarks" list of a reply, as a table (nothing when empty);
 * 0 or -ENOMEM. */
int cli_print_bookmarks(json_object *res, const struct table_style *st);
int cli_status(const struct cli *cli, int argc, char **argv);
int cli_shutdown(const struct cli *cli, int argc, char **argv);
int cli_events(const struct cli *cli, int argc, char **argv);
/* The status reply in the Prometheus text format (node-exporter's textfile
 * collector); res NULL: the daemon did not answer (hotsnap_up 0). */
void cli_print_prometheus(json_object *res);

/* A command group's subcommands, for cli_group. */
struct cli_sub {
	const char *name;
	int (*run)(const struct cli *cli, int argc, char **argv); /* argv[0]: the name */
};
/* Runs the subcommand argv[1] of group from subs (ended by a NULL name);
 * help is printed for "help" and with a usage error when none is given;
 * an unknown word is refused (exit 2). */
int cli_group(const struct cli *cli, const char *group, const char *help,
	      const struct cli_sub *subs, int argc, char **argv);

/* Checks a VOLUME or VOLUME@SNAPSHOT word; prints a usage error if bad. */
int cli_check_volume_name(const char *cmd, const char *name);
int cli_check_snapshot_name(const char *cmd, const char *name);

#endif
