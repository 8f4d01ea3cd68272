/* table.c - see table.h. */
#include "table.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <libsmartcols/libsmartcols.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli/client.h"

static int col_count(const struct table_col *cols)
{
	int n = 0;
	while (cols[n].name)
		n++;
	return n;
}

static void style_defaults(const struct table_col *cols, struct table_style *st)
{
	st->cols = cols;
	st->chosen = false;
	st->nshown = 0;
	for (int i = 0; cols[i].name && st->nshown < TABLE_MAX_COLS; i++)
		if (!(cols[i].flags & TABLE_EXTRA)) {
			st->named[st->nshown] = false;
			st->shown[st->nshown++] = i;
		}
}

static void print_column_help(const struct table_col *cols)
{
	printf("columns (* shown unless -o says otherwise; + when some row has it):\n");
	for (int i = 0; cols[i].name; i++)
		printf(" %c %-12s %s\n",
		       cols[i].flags & TABLE_EXTRA ? ' ' : cols[i].flags & TABLE_SOME ? '+' : '*',
		       cols[i].name, cols[i].help);
}

static int column_usage_error(const struct cmd_spec *spec, const struct table_col *cols,
			      const char *word, size_t len)
{
	char known[512] = "";
	size_t used = 0;

	for (int i = 0; cols[i].name && used < sizeof(known); i++)
		used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
					 cols[i].name);
	return cli_usage_error(spec->cmd, "-o: unknown column '%.*s' (the columns: %s)", (int)len,
			       word, known);
}

int table_style_parse(const struct cmd_spec *spec, const struct parsed_args *p,
		      const struct table_col *cols, struct table_style *st)
{
	const struct opt_value *out = args_get(spec, p, "output");
	const char *s;

	st->bytes = args_get(spec, p, "bytes")->set;
	st->noheadings = args_get(spec, p, "noheadings")->set;
	st->raw = args_get(spec, p, "raw")->set;
	style_defaults(cols, st);
	if (!out->set)
		return 0;
	s = out->str;
	if (strcasecmp(s, "help") == 0) {
		print_column_help(cols);
		return -1;
	}
	st->chosen = true;
	if (*s == '+')
		s++; /* added to the usual columns */
	else
		st->nshown = 0;
	if (!*s)
		return cli_usage_error(spec->cmd, "-o names no column (-o help lists them)");
	while (*s) {
		size_t len = strcspn(s, ",");
		int found = -1;
		for (int i = 0; i < col_count(cols); i++)
			if (strlen(cols[i].name) == len && strncasecmp(cols[i].name, s, len) == 0)
				found = i;
		if (found < 0)
			return column_usage_error(spec, cols, s, len);
		if (st->nshown == TABLE_MAX_COLS)
			return cli_usage_error(spec->cmd, "-o: at most %d columns", TABLE_MAX_COLS);
		st->named[st->nshown] = true;
		st->shown[st->nshown++] = found;
		s += len;
		if (*s == ',')
			s++;
	}
	return 0;
}

const struct table_style *table_style_like(const struct table_style *from,
					  const struct table_col *cols, struct table_style *st)
{
	style_defaults(cols, st);
	st->bytes = from->bytes;
	st->noheadings = from->noheadings;
	st->raw = from->raw;
	return st;
}

static const char *cell_text(const struct table_col *c, const struct table_style *st,
			     json_object *row, char *buf, size_t len)
{
	json_object *v;

	if (!json_object_object_get_ex(row, c->key, &v) || !v)
		return c->flags & TABLE_DASH || c->cell != CELL_TEXT ? "-" : "";
	switch (c->cell) {
	case CELL_SIZE:
		if (st->bytes) {
			snprintf(buf, len, "%" PRId64, json_object_get_int64(v));
			return buf;
		}
		return cli_size((uint64_t)json_object_get_int64(v), buf, len);
	case CELL_COUNT:
		snprintf(buf, len, "%" PRId64, json_object_get_int64(v));
		return buf;
	case CELL_TEXT:
		break;
	}
	return json_object_get_string(v);
}

static bool some_row_has(json_object *rows, const char *key)
{
	json_object *v;

	for (size_t n = 0; rows && n < json_object_array_length(rows); n++)
		if (json_object_object_get_ex(json_object_array_get_idx(rows, n), key, &v) && v)
			return true;
	return false;
}

int table_print(const struct table_style *from, json_object *rows)
{
	struct libscols_table *tb = scols_new_table();
	struct table_style style = *from, *st = &style;
	char buf[64];
	int r = 0;

	/* the usual columns that -o did not name: drop those no row fills */
	st->nshown = 0;
	for (int i = 0; i < from->nshown; i++) {
		const struct table_col *c = &st->cols[from->shown[i]];
		if (from->named[i] || !(c->flags & TABLE_SOME) || some_row_has(rows, c->key))
			st->shown[st->nshown++] = from->shown[i];
	}

	if (!tb)
		return -ENOMEM;
	scols_table_enable_raw(tb, st->raw);
	scols_table_enable_noheadings(tb, st->noheadings);
	for (int i = 0; i < st->nshown; i++) {
		const struct table_col *c = &st->cols[st->shown[i]];
		int flags = (c->flags & TABLE_RIGHT ? SCOLS_FL_RIGHT : 0) |
			    (c->flags & TABLE_WIDE ? SCOLS_FL_NOEXTREMES : 0);
		if (!scols_table_new_column(tb, c->name, 0, flags)) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t n = 0; rows && n < json_object_array_length(rows); n++) {
		json_object *row = json_object_array_get_idx(rows, n);
		struct libscols_line *ln = scols_table_new_line(tb, NULL);
		if (!ln) {
			r = -ENOMEM;
			goto out;
		}
		for (int i = 0; i < st->nshown; i++) {
			const char *text = cell_text(&st->cols[st->shown[i]], st, row, buf, sizeof(buf));
			if (scols_line_set_data(ln, (size_t)i, text)) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	scols_print_table(tb);
out:
	scols_unref_table(tb);
	return r;
}
