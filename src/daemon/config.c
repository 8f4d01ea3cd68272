/* config.c - see config.h. */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *key;
	bool takes_value;
} keys[] = {
	{ "state-dir", true },  { "nbd", true },	   { "no-nbd", false },
	{ "debug", false },	{ "hooks-dir", true },	   { "hook-timeout", true },
	{ "dev-dir", true },	{ "default-chunk-size", true }, { "default-cow-buffer", true },
	{ "default-diff-limit", true }, { "default-diff-dir", true }, { "default-cache", true },
	{ "tls", true },	{ "tls-certificates", true },	{ "tls-psk", true },
	{ "tls-no-verify-peer", false },	{ "nbd-writable", false },	{ "control", true },
	{ "fuse-transport", true }, { "stall-warning", true },
};

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static char *keep(struct config_words *cw, size_t *used, const char *a, const char *b)
{
	size_t need = strlen(a) + strlen(b) + 1;
	if (*used + need > sizeof(cw->store))
		return NULL;
	char *p = cw->store + *used;
	snprintf(p, need, "%s%s", a, b);
	*used += need;
	return p;
}

int config_read(const char *path, struct config_words *cw)
{
	char line[4096];
	unsigned lineno = 0;
	size_t used = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "hotsnap daemon: cannot read the config file %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	cw->argc = 0;
	cw->argv[cw->argc++] = keep(cw, &used, "hotsnap-daemon", "");
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *s = trim(line), *val = NULL, *eq = strchr(s, '=');
		if (!*s)
			continue;
		if (eq) {
			*eq = 0;
			val = trim(eq + 1);
			s = trim(s);
		}
		size_t k;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strcmp(keys[k].key, s) == 0)
				break;
		const char *why = NULL;
		if (k == sizeof(keys) / sizeof(keys[0]))
			why = "is not a daemon option (see hotsnap daemon --help)";
		else if (keys[k].takes_value && (!val || !*val))
			why = "needs a value: KEY = VALUE";
		else if (!keys[k].takes_value && val && strcmp(val, "yes") != 0 &&
			 strcmp(val, "true") != 0 && strcmp(val, "no") != 0 &&
			 strcmp(val, "false") != 0)
			why = "takes yes or no";
		if (why) {
			fprintf(stderr, "hotsnap daemon: %s, line %u: '%s' %s\n", path, lineno, s, why);
			fclose(f);
			return -1;
		}
		if (!keys[k].takes_value && val && (!strcmp(val, "no") || !strcmp(val, "false")))
			continue;
		if (cw->argc + 2 > CONFIG_MAX_WORDS) {
			fprintf(stderr, "hotsnap daemon: %s: too many options\n", path);
			fclose(f);
			return -1;
		}
		char *opt = keep(cw, &used, "--", s);
		char *arg = keys[k].takes_value ? keep(cw, &used, val, "") : opt;
		if (!opt || !arg) {
			fprintf(stderr, "hotsnap daemon: %s is too long\n", path);
			fclose(f);
			return -1;
		}
		cw->argv[cw->argc++] = opt;
		if (keys[k].takes_value)
			cw->argv[cw->argc++] = arg;
	}
	cw->argv[cw->argc] = NULL;
	fclose(f);
	return 0;
}
