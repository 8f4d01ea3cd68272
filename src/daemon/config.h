/* config.h - the daemon's config file (/etc/hotsnap/hotsnap.conf, named by
 * `daemon --config FILE`): one option per line, as on the command line
 * without the dashes,
 *
 *     # comments and blank lines are skipped
 *     nbd = unix:/run/hotsnap/nbd.sock
 *     nbd = tcp:0.0.0.0:10809
 *     hooks-dir = /etc/hotsnap/hooks.d
 *     hook-timeout = 120
 *     no-nbd = no
 *
 * The file becomes words the option parser reads before the command line,
 * so flags given there win, and both are checked by the same code.  A key
 * that is not a daemon option is refused with its line number. */
#ifndef HS_DAEMON_CONFIG_H
#define HS_DAEMON_CONFIG_H

#define CONFIG_MAX_WORDS 128

struct config_words {
	int argc;
	char *argv[CONFIG_MAX_WORDS + 1];
	char store[16384];
};

/* 0, or -1 after a message on stderr naming the file and line. */
int config_read(const char *path, struct config_words *cw);

#endif
