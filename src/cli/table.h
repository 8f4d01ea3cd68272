/* table.h - the CLI's human tables, through libsmartcols (lsblk's library),
 * so hotsnap's listings read and script like util-linux's: -o picks the
 * columns (+COL adds to the usual ones, "-o help" lists them), --bytes
 * prints sizes as plain numbers, --noheadings drops the header, --raw
 * separates cells by one space with no padding (cells are escaped, so a
 * row splits on spaces).  --json does not come here: it prints the daemon's
 * reply as it is.
 *
 * A listing declares its columns once (struct table_col) and reads rows
 * from the reply's JSON array; the column names are the -o words. */
#ifndef HS_CLI_TABLE_H
#define HS_CLI_TABLE_H

#include <json-c/json.h>
#include <stdbool.h>

#include "cli/args.h"

enum table_cell {
	CELL_TEXT,  /* the string field; empty text when absent */
	CELL_SIZE,  /* a byte count: "1.5 GiB", or with --bytes 1610612736 */
	CELL_COUNT, /* a whole number */
};

/* flags of a column */
#define TABLE_RIGHT 1u  /* right-aligned (numbers) */
#define TABLE_EXTRA 2u  /* shown only when -o names it */
#define TABLE_DASH 4u   /* "-" when the field is absent (a device not attached) */
#define TABLE_WIDE 8u   /* long text (paths, reasons): does not widen the other columns */
#define TABLE_SOME 16u  /* shown unless -o is given only when some row has the field
			 * (an ERROR column that is empty on a healthy machine) */

struct table_col {
	const char *name; /* header and -o word, upper case */
	const char *key;  /* field of a row of the reply */
	enum table_cell cell;
	unsigned flags;
	const char *help; /* one line, for -o help */
};

#define TABLE_MAX_COLS 24

/* The options every listing takes, for its cmd_spec's opts. */
#define TABLE_OPT_SPECS                                                                         \
	{ "output", OPT_STRING, 'o', "COLUMNS",                                                   \
	  "the columns to show, comma-separated (+COL,... adds to the usual ones; "               \
	  "-o help lists them)" },                                                                \
	{ "bytes", OPT_FLAG, 0, "", "sizes in bytes" },                                          \
	{ "noheadings", OPT_FLAG, 0, "", "no header line" },                                     \
	{ "raw", OPT_FLAG, 0, "", "cells separated by one space, no padding (for scripts)" }

struct table_style {
	const struct table_col *cols; /* ended by a NULL name */
	int shown[TABLE_MAX_COLS];    /* indexes into cols, in the order shown */
	bool named[TABLE_MAX_COLS];   /* shown[i] was named by -o: shown even when empty */
	int nshown;
	bool chosen; /* -o was given */
	bool bytes, noheadings, raw;
};

/* Reads the table options of a listing (spec must hold TABLE_OPT_SPECS)
 * into st for the columns cols.  0 when done; 2 after a usage error that
 * names the unknown column and lists the known ones; -1 after printing
 * the columns for "-o help". */
int table_style_parse(const struct cmd_spec *spec, const struct parsed_args *p,
		      const struct table_col *cols, struct table_style *st);

/* The same --bytes, --noheadings and --raw, for another table of the same
 * command (its usual columns).  Returns st. */
const struct table_style *table_style_like(const struct table_style *from,
					  const struct table_col *cols, struct table_style *st);

/* Prints rows (a JSON array of objects) on stdout.  0, or -ENOMEM. */
int table_print(const struct table_style *st, json_object *rows);

#endif
