/* args.h - one table-driven parser for every command's arguments, so each
 * argument is checked the same way and every mistake gets a message naming
 * the argument and what was expected. */
#ifndef HS_CLI_ARGS_H
#define HS_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define ARGS_MAX_OPTS 12
#define ARGS_MAX_POS 64

enum opt_type {
	OPT_FLAG,   /* --x */
	OPT_STRING, /* --x VALUE */
	OPT_SIZE,   /* --x SIZE: bytes, or with K, M, G, T */
	OPT_NUMBER, /* --x N: a positive integer */
	OPT_PATH,   /* --x PATH: made absolute against the current directory; "-" stays */
};

struct opt_spec {
	const char *name;
	enum opt_type type;
	char short_name; /* 0 for none */
	const char *metavar;
	const char *help;
};

struct cmd_spec {
	const char *cmd;      /* "volume create" */
	const char *positional; /* "NAME", "VOLUME...", "" */
	int min_pos, max_pos;
	const char *summary;
	struct opt_spec opts[ARGS_MAX_OPTS];
};

struct opt_value {
	bool set;
	const char *str;
	uint64_t num;
	char path[4096];
};

struct parsed_args {
	const char *pos[ARGS_MAX_POS];
	int npos;
	struct opt_value val[ARGS_MAX_OPTS];
};

/* 0 when parsed; 2 after printing a usage error; -1 after printing --help. */
int args_parse(const struct cmd_spec *spec, int argc, char **argv, struct parsed_args *out);
/* The value of option name (which must be in the spec). */
const struct opt_value *args_get(const struct cmd_spec *spec, const struct parsed_args *p,
				 const char *name);
void args_print_help(const struct cmd_spec *spec, FILE *f);

#endif
