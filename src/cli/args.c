/* args.c - see args.h. */
#include "args.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "common/units.h"

void args_print_help(const struct cmd_spec *spec, FILE *f)
{
	fprintf(f, "usage: hotsnap [--state-dir DIR] [--json] %s%s%s", spec->cmd,
		spec->positional[0] ? " " : "", spec->positional);
	for (const struct opt_spec *o = spec->opts; o->name; o++)
		fprintf(f, " [--%s%s%s]", o->name, o->type == OPT_FLAG ? "" : " ",
			o->type == OPT_FLAG ? "" : o->metavar);
	fprintf(f, "\n\n%s\n", spec->summary);
	if (spec->opts[0].name)
		fprintf(f, "\noptions:\n");
	for (const struct opt_spec *o = spec->opts; o->name; o++) {
		char left[64];
		snprintf(left, sizeof(left), "%s%c%s--%s%s%s", o->short_name ? "-" : "",
			 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
			 o->type == OPT_FLAG ? "" : " ", o->type == OPT_FLAG ? "" : o->metavar);
		fprintf(f, "  %-28s %s\n", o->short_name ? left : left + 2, o->help);
	}
}

static int make_absolute(const char *in, char *out, size_t len)
{
	char cwd[PATH_MAX];

	if (in[0] == '/' || strcmp(in, "-") == 0) { /* "-": standard input or output */
		if (strlen(in) >= len)
			return -ENAMETOOLONG;
		strcpy(out, in);
		return 0;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	if ((size_t)snprintf(out, len, "%s/%s", cwd, in) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int args_parse(const struct cmd_spec *spec, int argc, char **argv, struct parsed_args *out)
{
	struct option longopts[ARGS_MAX_OPTS + 2];
	char shortopts[2 * ARGS_MAX_OPTS + 4] = ":h"; /* ':' reports a missing value */
	size_t ns = 2;
	int n = 0, c;

	memset(out, 0, sizeof(*out));
	for (const struct opt_spec *o = spec->opts; o->name; o++, n++) {
		longopts[n] = (struct option){ o->name,
					       o->type == OPT_FLAG ? no_argument : required_argument,
					       NULL, 1000 + n };
		if (o->short_name) {
			shortopts[ns++] = o->short_name;
			if (o->type != OPT_FLAG)
				shortopts[ns++] = ':';
		}
	}
	longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };
	shortopts[ns] = '\0';

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const struct opt_spec *o = NULL;
		int idx = -1;
		if (c == 'h') {
			args_print_help(spec, stdout);
			return -1;
		}
		if (c >= 1000) {
			idx = c - 1000;
		} else {
			for (int i = 0; spec->opts[i].name; i++)
				if (spec->opts[i].short_name == c)
					idx = i;
		}
		if (c == ':') {
			if (optopt >= 1000)
				return cli_usage_error(spec->cmd, "--%s needs a value",
						       spec->opts[optopt - 1000].name);
			return cli_usage_error(spec->cmd, "-%c needs a value", optopt);
		}
		if (idx < 0) {
			if (optopt > 0 && optopt < 1000)
				return cli_usage_error(spec->cmd, "unknown option -%c", optopt);
			return cli_usage_error(spec->cmd, "unknown option '%s'", argv[optind - 1]);
		}
		o = &spec->opts[idx];
		struct opt_value *v = &out->val[idx];
		if (v->set && o->type != OPT_FLAG)
			return cli_usage_error(spec->cmd, "--%s is given twice", o->name);
		v->set = true;
		v->str = optarg;
		switch (o->type) {
		case OPT_FLAG:
		case OPT_STRING:
			break;
		case OPT_SIZE: {
			int r = units_parse_size(optarg, &v->num);
			if (r == -ERANGE || (r == 0 && v->num > (uint64_t)INT64_MAX))
				return cli_usage_error(spec->cmd, "--%s '%s' is too large", o->name,
						       optarg);
			if (r < 0)
				return cli_usage_error(spec->cmd,
						       "--%s '%s' is not a size (expected a number of "
						       "bytes, or with K, M, G, T, such as 512M, 1.5G or 10G)",
						       o->name, optarg);
			break;
		}
		case OPT_NUMBER: {
			char *end;
			errno = 0;
			unsigned long long x = strtoull(optarg, &end, 10);
			if (!optarg[0] || *end || errno || optarg[0] == '-' || x == 0)
				return cli_usage_error(spec->cmd,
						       "--%s '%s' is not a positive whole number",
						       o->name, optarg);
			v->num = x;
			break;
		}
		case OPT_PATH:
			if (!optarg[0])
				return cli_usage_error(spec->cmd, "--%s needs a path", o->name);
			if (make_absolute(optarg, v->path, sizeof(v->path)) < 0)
				return cli_usage_error(spec->cmd, "--%s '%s' is too long", o->name,
						       optarg);
			v->str = v->path;
			break;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (out->npos == spec->max_pos || out->npos == ARGS_MAX_POS)
			return cli_usage_error(spec->cmd, "unexpected argument '%s'", argv[i]);
		out->pos[out->npos++] = argv[i];
	}
	if (out->npos < spec->min_pos)
		return cli_usage_error(spec->cmd, "missing %s", spec->positional);
	return 0;
}

const struct opt_value *args_get(const struct cmd_spec *spec, const struct parsed_args *p,
				 const char *name)
{
	for (int i = 0; spec->opts[i].name; i++)
		if (strcmp(spec->opts[i].name, name) == 0)
			return &p->val[i];
	abort(); /* a name not in the spec is a programming error */
}
