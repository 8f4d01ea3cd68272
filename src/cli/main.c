/* main.c - hotsnap [--state-dir DIR] [--json] COMMAND ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/paths.h"
#include "daemon/daemon_main.h"

static const char usage[] =
	"usage: hotsnap [--state-dir DIR] [--json] COMMAND ...\n"
	"       hotsnap --remote HOST:PORT --tls-psk FILE|--tls-certificates DIR [--json] COMMAND ...\n"
	"\n"
	"  daemon [--detach] [--nbd unix:PATH|tcp:HOST:PORT]... [--no-nbd]   run the daemon\n"
	"         [--hooks-dir DIR] [--hook-timeout SECONDS] [--dev-dir DIR]\n"
	"         [--config FILE] [--debug]\n"
	"         [--default-chunk-size SIZE] [--default-cow-buffer SIZE]\n"
	"         [--default-diff-limit SIZE|N%] [--default-diff-dir DIR]\n"
	"         [--default-cache MODE]         what new volumes get unless told\n"
	"         [--tls off|on|require] [--tls-psk FILE] [--tls-certificates DIR]\n"
	"         [--tls-no-verify-peer] [--nbd-writable]   NBD over TLS, TCP policy\n"
	"         [--control tcp:HOST:PORT]...     the commands over the network (TLS)\n"
	"         [--fuse-transport auto|io-uring|dev]   how the kernel's FUSE requests come\n"
	"         [--stall-warning SECONDS]      status flags a FUSE request older (30)\n"
	"  volume create NAME --backing PATH [--size SIZE] [--chunk-size SIZE]\n"
	"                [--cow-buffer SIZE] [--diff-dir DIR] [--diff-limit SIZE]\n"
	"                [--cache MODE] [--track-granularity SIZE | --no-tracking]\n"
	"  volume set NAME [--diff-limit SIZE] [--diff-dir DIR] [--hook PATH]\n"
	"  volume attach|detach|remove NAME\n"
	"  volume list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
	"  snapshot create VOLUME... [--name NAME] [--no-freeze] [--all-blocks] [--no-hooks]\n"
	"  snapshot list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
	"  snapshot attach|detach|delete VOLUME@NAME\n"
	"  snapshot revert VOLUME@NAME [--no-progress]\n"
	"  backup SOURCE -o|--output FILE|- [--format raw|qcow2] [--compress zstd|zlib|none]\n"
	"         [--incremental PARENT] [--consume] [--all-blocks] [--rate MB/s]\n"
	"         [--no-yield] [--no-progress]\n"
	"  restore IMAGE --to VOLUME [--verify-only] | --new NAME --backing PATH\n"
	"          [--no-progress]\n"
	"  image attach IMAGE [--name NAME] | detach NAME | info IMAGE\n"
	"  image list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
	"  bookmark list [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
	"  bookmark create VOLUME@SNAPSHOT [--name NAME]\n"
	"  bookmark delete VOLUME#NAME...\n"
	"  vm checkpoint VOLUME... --qmp SOCKET -o|--output DIR [--name NAME]\n"
	"             [--disks-only] [--timeout SECONDS]   a QEMU guest's disks and memory\n"
	"  vm restore DIR\n"
	"  vm list DIR... [-o|--output COLUMNS] [--bytes] [--noheadings] [--raw]\n"
	"  status [--prometheus]\n"
	"  events [--recent N] [--no-follow]\n"
	"  shutdown\n"
	"\n"
	"The state dir is $HOTSNAP_STATE_DIR, else /var/lib/hotsnap.  'hotsnap COMMAND --help'\n"
	"describes a command.  Exit status: 0 done, 1 error, 2 bad usage.\n";

int main(int argc, char **argv)
{
	struct cli cli = { .state_dir = getenv("HOTSNAP_STATE_DIR") };
	int i = 1;

	if (!cli.state_dir || !cli.state_dir[0])
		cli.state_dir = HS_DEFAULT_STATE_DIR;
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--state-dir") == 0) {
			if (i + 1 >= argc || !argv[i + 1][0]) {
				fprintf(stderr, "hotsnap: --state-dir needs a directory\n");
				return EXIT_USAGE;
			}
			cli.state_dir = argv[++i];
		} else if (strncmp(argv[i], "--state-dir=", 12) == 0) {
			cli.state_dir = argv[i] + 12;
		} else if (strcmp(argv[i], "--remote") == 0 || strcmp(argv[i], "--tls-psk") == 0 ||
			   strcmp(argv[i], "--tls-certificates") == 0) {
			if (i + 1 >= argc || !argv[i + 1][0]) {
				fprintf(stderr, "hotsnap: %s needs a value\n", argv[i]);
				return EXIT_USAGE;
			}
			const char *value = argv[i + 1];
			if (strcmp(argv[i], "--remote") == 0)
				cli.remote = value;
			else if (strcmp(argv[i], "--tls-psk") == 0)
				cli.tls_psk = value;
			else
				cli.tls_certificates = value;
			i++;
		} else if (strcmp(argv[i], "--json") == 0) {
			cli.json = true;
			cli_set_json_errors(true);
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("%s", usage);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("hotsnap %s\n", HOTSNAP_VERSION);
			return EXIT_OK;
		} else {
			fprintf(stderr, "hotsnap: unknown option '%s'\n%s", argv[i], usage);
			return EXIT_USAGE;
		}
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "%s", usage);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i];
	argc -= i;
	argv += i;
	/* --json reads naturally after the command too: take it from anywhere
	 * (no name may start with '-', so it is never a value) */
	int kept = 1;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--json") == 0 && strcmp(cmd, "daemon") != 0) {
			cli.json = true;
			cli_set_json_errors(true);
		} else
			argv[kept++] = argv[k];
	}
	argc = kept;
	argv[argc] = NULL;
	if (strcmp(cmd, "daemon") == 0) {
		if (cli.remote) {
			fprintf(stderr, "hotsnap: --remote runs commands on a daemon elsewhere; "
					"a daemon runs here\n");
			return EXIT_USAGE;
		}
		return daemon_main(cli.state_dir, argc, argv);
	}
	if (cli.remote && !cli.tls_psk && !cli.tls_certificates) {
		fprintf(stderr, "hotsnap: --remote %s needs --tls-psk FILE or --tls-certificates "
				"DIR (the remote control channel is always TLS)\n",
			cli.remote);
		return EXIT_USAGE;
	}
	if (!cli.remote && (cli.tls_psk || cli.tls_certificates)) {
		fprintf(stderr, "hotsnap: --tls-psk and --tls-certificates go with --remote "
				"HOST:PORT\n");
		return EXIT_USAGE;
	}
	if (cli.state_dir[0] != '/') {
		fprintf(stderr, "hotsnap: the state dir must be an absolute path, not '%s'\n",
			cli.state_dir);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "volume") == 0)
		return cli_volume(&cli, argc, argv);
	if (strcmp(cmd, "snapshot") == 0)
		return cli_snapshot(&cli, argc, argv);
	if (strcmp(cmd, "backup") == 0)
		return cli_backup(&cli, argc, argv);
	if (strcmp(cmd, "restore") == 0)
		return cli_restore(&cli, argc, argv);
	if (strcmp(cmd, "image") == 0)
		return cli_image(&cli, argc, argv);
	if (strcmp(cmd, "bookmark") == 0)
		return cli_bookmark(&cli, argc, argv);
	if (strcmp(cmd, "vm") == 0)
		return cli_vm(&cli, argc, argv);
	if (strcmp(cmd, "status") == 0)
		return cli_status(&cli, argc, argv);
	if (strcmp(cmd, "shutdown") == 0)
		return cli_shutdown(&cli, argc, argv);
	if (strcmp(cmd, "events") == 0)
		return cli_events(&cli, argc, argv);
	if (strcmp(cmd, "help") == 0) {
		printf("%s", usage);
		return EXIT_OK;
	}
	fprintf(stderr, "hotsnap: unknown command '%s'\n%s", cmd, usage);
	return EXIT_USAGE;
}
