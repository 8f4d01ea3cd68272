/* group.c - the dispatch of a command group ("volume create", "image info"):
 * one place for its usage, its help and the refusal of unknown words. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int cli_group(const struct cli *cli, const char *group, const char *help,
	      const struct cli_sub *subs, int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "%s", help);
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	for (const struct cli_sub *s = subs; s->name; s++)
		if (strcmp(s->name, sub) == 0)
			return s->run(cli, argc - 1, argv + 1);
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		printf("%s", help);
		return EXIT_OK;
	}
	fprintf(stderr, "hotsnap %s: unknown subcommand '%s'\n%s", group, sub, help);
	return EXIT_USAGE;
}
